//! The compact JWS form of a JWT (RFC 7515 §7.1, RFC 7519), parsed just
//! enough to choose a provider and a key — and to refuse the header tricks
//! of RFC 8725 §2 before any key is touched.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::Invalid;
use crate::config::JwtAlgorithm;

/// Header parameters that would let the token choose its own key or change
/// how it must be processed. None of them is ever honoured (guarantee 4).
const FORBIDDEN_HEADER_PARAMS: [&str; 5] = ["jku", "x5u", "jwk", "x5c", "crit"];

pub type Claims = BTreeMap<String, Value>;

/// The JOSE header, read into fields rather than a map: no allocation per
/// parameter on every uncached request. A parameter named twice is refused
/// (serde's derive rejects duplicate fields), never "last one wins".
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    kid: Option<String>,
    #[serde(default)]
    jku: Present,
    #[serde(default)]
    x5u: Present,
    #[serde(default)]
    jwk: Present,
    #[serde(default)]
    x5c: Present,
    #[serde(default)]
    crit: Present,
}

impl Header<'_> {
    fn forbidden_param(&self) -> Option<&'static str> {
        let present = [self.jku, self.x5u, self.jwk, self.x5c, self.crit];
        FORBIDDEN_HEADER_PARAMS
            .into_iter()
            .zip(present)
            .find_map(|(name, Present(here))| here.then_some(name))
    }
}

/// Whether a header parameter appears at all, whatever its value (`null`
/// included: `"jku": null` is still a token asking for a key URL).
#[derive(Clone, Copy, Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Present(true))
    }
}

/// A structurally valid token whose signature has not been checked yet.
#[derive(Debug)]
pub struct Unverified<'t> {
    /// `header.payload`, what the signature covers (RFC 7515 §5.2).
    pub signing_input: &'t str,
    pub signature: Vec<u8>,
    pub alg: JwtAlgorithm,
    pub kid: Option<String>,
    pub claims: Claims,
}

impl Unverified<'_> {
    /// The issuer, read before verification only to pick the provider.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
}

pub fn parse(raw: &str) -> Result<Unverified<'_>, Invalid> {
    let mut segments = raw.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(Invalid::Malformed("not three segments"));
    };
    if signature.is_empty() {
        return Err(Invalid::Malformed("empty signature"));
    }
    let signing_input = &raw[..header.len() + 1 + payload.len()];
    let header_json = base64url(header)?;
    let header: Header = serde_json::from_slice(&header_json)
        .map_err(|_| Invalid::Malformed("header is not a JSON object of JOSE parameters"))?;
    let alg_name = header
        .alg
        .as_deref()
        .ok_or(Invalid::Malformed("header has no alg"))?;
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(Invalid::Algorithm("alg none"));
    }
    let alg = JwtAlgorithm::parse(alg_name).ok_or(Invalid::Algorithm("unsupported alg"))?;
    if let Some(param) = header.forbidden_param() {
        return Err(Invalid::ForbiddenHeader(param));
    }
    let kid = header.kid;
    let signature = base64url(signature)?;
    let claims: Claims = serde_json::from_slice(&base64url(payload)?)
        .map_err(|_| Invalid::Malformed("payload is not a JSON object"))?;
    Ok(Unverified {
        signing_input,
        signature,
        alg,
        kid,
        claims,
    })
}

/// Each byte's 6-bit value in the base64url alphabet, or `INVALID`.
const DECODE: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const INVALID: u8 = 0xff;

/// Unpadded base64url (RFC 7515 §2); padding or other alphabets are refused.
/// Table-driven, four characters at a time: every request without a cached
/// token decodes ~1 KB of it.
pub fn base64url(segment: &str) -> Result<Vec<u8>, Invalid> {
    let bytes = segment.as_bytes();
    let tail_len = bytes.len() % 4;
    if tail_len == 1 {
        return Err(Invalid::Malformed("bad base64url length"));
    }
    let (full, tail) = bytes.split_at(bytes.len() - tail_len);
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    for chunk in full.chunks_exact(4) {
        let [a, b, c, d] = [chunk[0], chunk[1], chunk[2], chunk[3]].map(|x| DECODE[usize::from(x)]);
        // Valid values are below 64; INVALID has the top bits set.
        if (a | b | c | d) & 0xc0 != 0 {
            return Err(Invalid::Malformed("not base64url"));
        }
        let acc = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        let [_, x, y, z] = acc.to_be_bytes();
        out.extend_from_slice(&[x, y, z]);
    }
    if !tail.is_empty() {
        let mut acc: u32 = 0;
        for (i, &x) in tail.iter().enumerate() {
            let v = DECODE[usize::from(x)];
            if v == INVALID {
                return Err(Invalid::Malformed("not base64url"));
            }
            acc |= u32::from(v) << (18 - 6 * i);
        }
        // Canonical only: the bits a short final chunk does not use must be
        // zero, so one signature has one spelling (RFC 4648 §3.5).
        let unused = if tail.len() == 2 {
            acc & 0xffff
        } else {
            acc & 0xff
        };
        if unused != 0 {
            return Err(Invalid::Malformed("non-canonical base64url"));
        }
        let [_, x, y, _] = acc.to_be_bytes();
        out.push(x);
        if tail.len() == 3 {
            out.push(y);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.len();
            let mut buf = [0u8; 3];
            buf[..n].copy_from_slice(chunk);
            let v = u32::from(buf[0]) << 16 | u32::from(buf[1]) << 8 | u32::from(buf[2]);
            for i in 0..=n {
                out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            b64(header.as_bytes()),
            b64(payload.as_bytes()),
            b64(b"sig")
        )
    }

    #[test]
    fn every_ascii_byte_outside_the_alphabet_is_refused_in_any_position() {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for x in (0u8..128).filter(|x| !alphabet.contains(x)) {
            // Four full-chunk positions, then the two of a 2-character tail.
            for pos in 0..6 {
                let mut text = *b"QUFBQQ";
                text[pos] = x;
                let text = std::str::from_utf8(&text).expect("ascii");
                assert!(base64url(text).is_err(), "{x:#04x} at {pos} accepted");
            }
        }
        assert!(base64url("QUé").is_err(), "non-ASCII in a full chunk");
        assert_eq!(base64url("QUFBQQ").ok(), Some(b"AAAA".to_vec()));
    }

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64url(&b64(&data)).ok(), Some(data));
        }
        assert!(base64url("ab=").is_err());
        assert!(base64url("a+b/").is_err());
        assert!(base64url("abcde").is_err());
        // "QQ" is "A"; "QR" spells the same byte with a stray bit.
        assert_eq!(base64url("QQ").ok(), Some(b"A".to_vec()));
        assert!(base64url("QR").is_err());
        assert!(base64url("QUE").is_ok() && base64url("QUF").is_err());
    }

    #[test]
    fn a_well_formed_token_parses() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"i","sub":"s"}"#,
        );
        let parsed = parse(&t).expect("parses");
        assert_eq!(parsed.alg, JwtAlgorithm::RS256);
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.issuer(), Some("i"));
    }

    #[test]
    fn alg_none_in_any_spelling_is_refused() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert!(matches!(parse(&t), Err(Invalid::Algorithm(_))), "{alg}");
        }
    }

    #[test]
    fn header_params_that_choose_keys_are_refused() {
        for param in FORBIDDEN_HEADER_PARAMS {
            let t = token(&format!(r#"{{"alg":"RS256","{param}":"x"}}"#), "{}");
            assert!(
                matches!(parse(&t), Err(Invalid::ForbiddenHeader(_))),
                "{param}"
            );
        }
    }

    #[test]
    fn a_forbidden_header_param_is_refused_whatever_its_value() {
        for value in ["null", "{}", "[]", "0", "false"] {
            let t = token(&format!(r#"{{"alg":"RS256","jku":{value}}}"#), "{}");
            assert!(
                matches!(parse(&t), Err(Invalid::ForbiddenHeader("jku"))),
                "{value}"
            );
        }
    }

    #[test]
    fn a_header_param_named_twice_is_refused() {
        for header in [
            r#"{"alg":"none","alg":"RS256"}"#,
            r#"{"alg":"RS256","kid":"a","kid":"b"}"#,
        ] {
            assert!(parse(&token(header, "{}")).is_err(), "{header}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!.e30.c2ln",
            "e30.e30.",
            "e30.e30.c2ln",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let t = token(r#"{"alg":"RS256"}"#, "[1,2]");
        assert!(parse(&t).is_err(), "payload must be an object");
        let t = token(r#"{"alg":"RS256","kid":7}"#, "{}");
        assert!(parse(&t).is_err(), "kid must be a string");
    }
}
