//! The compact JWS form of a JWT (RFC 7515 §7.1, RFC 7519), parsed just
//! enough to choose a provider and a key — and to refuse the header tricks
//! of RFC 8725 §2 before any key is touched.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::Invalid;
use crate::config::JwtAlgorithm;
use crate::encoding::base64url_decode;

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
    let header_json = segment(header)?;
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
    let signature = segment(signature)?;
    let claims: Claims = serde_json::from_slice(&segment(payload)?)
        .map_err(|_| Invalid::Malformed("payload is not a JSON object"))?;
    Ok(Unverified {
        signing_input,
        signature,
        alg,
        kid,
        claims,
    })
}

/// One segment of the compact form, decoded: unpadded base64url only
/// (RFC 7515 §2), in its one canonical spelling.
fn segment(text: &str) -> Result<Vec<u8>, Invalid> {
    base64url_decode(text).map_err(|e| Invalid::Malformed(e.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::base64url;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            base64url(header.as_bytes()),
            base64url(payload.as_bytes()),
            base64url(b"sig")
        )
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
