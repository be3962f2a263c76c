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

    mod props {
        //! Properties of `parse`, checked against a reading of RFC 7515 §7.1
        //! and RFC 8725 §2 written here, not against `parse` itself.

        use super::*;
        use base64::Engine;
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        use proptest::prelude::*;
        use serde_json::{Map, json};

        /// Takes any spelling, so that "canonical" below means "what
        /// `base64url` writes for the same bytes", not "what the decoder
        /// under test accepts".
        const LENIENT: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            GeneralPurposeConfig::new()
                .with_decode_padding_mode(DecodePaddingMode::Indifferent)
                .with_decode_allow_trailing_bits(true),
        );

        fn canonical(segment: &str) -> Option<Vec<u8>> {
            let bytes = LENIENT.decode(segment).ok()?;
            (base64url(&bytes) == segment).then_some(bytes)
        }

        /// What a well-formed token is: three canonical segments, a
        /// non-empty signature, a header object whose `alg` is one we
        /// support, whose `kid` (if any) is a string, and which names none
        /// of the key-choosing parameters; a payload object. Duplicate
        /// members are not generated where this oracle is compared (a
        /// `Map` keeps the last one), and are a property of their own.
        fn well_formed(raw: &str) -> Option<(JwtAlgorithm, Option<String>, Claims)> {
            let [header, payload, signature] = raw.split('.').collect::<Vec<_>>()[..] else {
                return None;
            };
            canonical(signature).filter(|s| !s.is_empty())?;
            let header: Map<String, Value> = serde_json::from_slice(&canonical(header)?).ok()?;
            let claims: Claims = serde_json::from_slice(&canonical(payload)?).ok()?;
            let alg = JwtAlgorithm::ALL
                .into_iter()
                .find(|a| header.get("alg") == Some(&json!(a.as_str())))?;
            let kid = match header.get("kid") {
                None | Some(Value::Null) => None,
                Some(Value::String(kid)) => Some(kid.clone()),
                Some(_) => return None,
            };
            if FORBIDDEN_HEADER_PARAMS
                .iter()
                .any(|p| header.contains_key(*p))
            {
                return None;
            }
            Some((alg, kid, claims))
        }

        fn agrees_with_oracle(raw: &str) -> Result<(), TestCaseError> {
            match (parse(raw), well_formed(raw)) {
                (Ok(token), Some((alg, kid, claims))) => {
                    prop_assert_eq!(token.alg, alg);
                    prop_assert_eq!(token.kid, kid);
                    prop_assert_eq!(token.claims, claims);
                    prop_assert_eq!(
                        Some(token.signing_input),
                        raw.rfind('.').map(|dot| &raw[..dot])
                    );
                }
                (Err(_), None) => {}
                (verdict, oracle) => prop_assert!(
                    false,
                    "{raw:?}: parse says {verdict:?}, well-formed: {}",
                    oracle.is_some()
                ),
            }
            Ok(())
        }

        fn json_scalar() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                "\\PC{0,8}".prop_map(Value::from),
            ]
        }

        /// `alg` values: every supported name, near misses of them, `none`
        /// in several spellings, and values that are not strings.
        fn alg() -> impl Strategy<Value = Value> {
            let names: Vec<&str> = JwtAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
            prop_oneof![
                4 => proptest::sample::select(names.clone()).prop_map(Value::from),
                1 => proptest::sample::select(names).prop_map(|n| json!(n.to_lowercase())),
                1 => prop_oneof![Just("none"), Just("None"), Just("NONE"), Just("RS256 "), Just("")]
                    .prop_map(Value::from),
                1 => "[A-Z]{2}[0-9]{3}".prop_map(Value::from),
                1 => json_scalar(),
            ]
        }

        /// A header object without duplicate members: mostly a valid `alg`,
        /// sometimes a `kid`, a `typ`, or one of the forbidden parameters.
        fn header() -> impl Strategy<Value = Map<String, Value>> {
            (
                proptest::option::weighted(0.95, alg()),
                proptest::option::of(prop_oneof![
                    3 => "\\PC{0,8}".prop_map(Value::from),
                    1 => json_scalar(),
                ]),
                proptest::option::of(Just(json!("JWT"))),
                proptest::option::weighted(
                    0.2,
                    (
                        proptest::sample::select(FORBIDDEN_HEADER_PARAMS.to_vec()),
                        json_scalar(),
                    ),
                ),
            )
                .prop_map(|(alg, kid, typ, forbidden)| {
                    let mut header = Map::new();
                    let members = [("alg", alg), ("kid", kid), ("typ", typ)];
                    for (name, value) in members {
                        if let Some(value) = value {
                            header.insert(name.into(), value);
                        }
                    }
                    if let Some((name, value)) = forbidden {
                        header.insert(name.into(), value);
                    }
                    header
                })
        }

        fn payload() -> impl Strategy<Value = Value> {
            prop_oneof![
                9 => proptest::collection::btree_map("[a-z]{1,4}", json_scalar(), 0..5)
                    .prop_map(|m| json!(m)),
                1 => json_scalar(),
            ]
        }

        fn segment() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => header().prop_map(|h| base64url(Value::Object(h).to_string().as_bytes())),
                3 => payload().prop_map(|p| base64url(p.to_string().as_bytes())),
                2 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| base64url(&b)),
                2 => "[A-Za-z0-9_=+/ -]{0,12}",
            ]
        }

        /// A token this module must accept.
        fn valid_token() -> impl Strategy<Value = String> {
            let names: Vec<&str> = JwtAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
            (
                proptest::sample::select(names),
                proptest::option::of("\\PC{0,8}"),
                payload().prop_filter("an object", Value::is_object),
                proptest::collection::vec(any::<u8>(), 1..70),
            )
                .prop_map(|(alg, kid, payload, signature)| {
                    let header = json!({ "alg": alg, "kid": kid, "typ": "JWT" });
                    format!(
                        "{}.{}.{}",
                        base64url(header.to_string().as_bytes()),
                        base64url(payload.to_string().as_bytes()),
                        base64url(&signature)
                    )
                })
        }

        /// Ways to spell a token differently without changing what it
        /// decodes to, or to break its three-segment shape.
        #[derive(Debug, Clone)]
        enum Respelling {
            /// `=` or `==` after a segment.
            Padding(usize, usize),
            /// The last character of a segment with its unused bits set
            /// (RFC 4648 §3.5); falls back to padding for a segment with
            /// none.
            TrailingBits(usize),
            /// A character replaced by one outside the base64url alphabet
            /// (the standard alphabet's `+` `/` included).
            Foreign(usize, char),
            Dropped(usize),
            Duplicated(usize),
            Whitespace(usize, char),
        }

        fn respelling() -> impl Strategy<Value = Respelling> {
            let foreign = proptest::sample::select(vec!['+', '/', '=', '.', '!', '%', 'é', '\0']);
            let space = proptest::sample::select(vec![' ', '\t', '\r', '\n']);
            prop_oneof![
                (0..3usize, 1..3usize).prop_map(|(s, n)| Respelling::Padding(s, n)),
                (0..3usize).prop_map(Respelling::TrailingBits),
                (any::<usize>(), foreign).prop_map(|(i, c)| Respelling::Foreign(i, c)),
                (0..3usize).prop_map(Respelling::Dropped),
                (0..3usize).prop_map(Respelling::Duplicated),
                (any::<usize>(), space).prop_map(|(i, c)| Respelling::Whitespace(i, c)),
            ]
        }

        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

        fn respell(token: &str, how: &Respelling) -> String {
            let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
            match *how {
                Respelling::Padding(s, n) => segments[s].push_str(&"=".repeat(n)),
                Respelling::TrailingBits(s) => {
                    let seg = &mut segments[s];
                    // Bits of the last character no byte uses: 4 after two
                    // characters of a group, 2 after three.
                    let unused = match seg.len() % 4 {
                        2 => 0b1111,
                        3 => 0b11,
                        _ => return respell(token, &Respelling::Padding(s, 1)),
                    };
                    let last = seg
                        .pop()
                        .and_then(|c| ALPHABET.iter().position(|&a| char::from(a) == c));
                    let value = last.map_or(0, |v| v | unused);
                    seg.push(char::from(ALPHABET[value]));
                }
                Respelling::Foreign(i, c) => {
                    let mut chars: Vec<char> = token.chars().collect();
                    let places: Vec<usize> =
                        (0..chars.len()).filter(|&p| chars[p] != '.').collect();
                    chars[places[i % places.len()]] = c;
                    return chars.into_iter().collect();
                }
                Respelling::Dropped(s) => {
                    segments.remove(s);
                }
                Respelling::Duplicated(s) => {
                    let copy = segments[s].clone();
                    segments.insert(s, copy);
                }
                Respelling::Whitespace(i, c) => {
                    let mut respelled = token.to_owned();
                    respelled.insert(i % (token.len() + 1), c);
                    return respelled;
                }
            }
            segments.join(".")
        }

        /// The header members `Header` reads; each may appear once.
        const READ_MEMBERS: [&str; 7] = ["alg", "kid", "jku", "x5u", "jwk", "x5c", "crit"];

        proptest! {
            // PROPTEST_CASES raises the count for a deep run.
            #![proptest_config(ProptestConfig {
                cases: ProptestConfig::default().cases.max(4096),
                ..ProptestConfig::default()
            })]

            #[test]
            fn any_text_is_parsed_as_the_oracle_says(raw in any::<String>()) {
                agrees_with_oracle(&raw)?;
            }

            #[test]
            fn base64url_ish_text_is_parsed_as_the_oracle_says(
                raw in "[A-Za-z0-9_.=+/ -]{0,40}"
            ) {
                agrees_with_oracle(&raw)?;
            }

            #[test]
            fn three_segment_tokens_are_parsed_as_the_oracle_says(
                header in segment(), payload in segment(), signature in segment()
            ) {
                agrees_with_oracle(&format!("{header}.{payload}.{signature}"))?;
            }

            #[test]
            fn a_respelled_token_is_refused(token in valid_token(), how in respelling()) {
                prop_assert!(parse(&token).is_ok(), "{token}");
                let respelled = respell(&token, &how);
                prop_assert!(parse(&respelled).is_err(), "{how:?}: {respelled:?}");
            }

            /// A member `Header` reads, written twice, is refused whatever
            /// the two values; a member it does not read (`typ`) is not
            /// looked at, twice or once.
            #[test]
            fn a_read_header_member_named_twice_is_refused(
                name in proptest::sample::select(READ_MEMBERS.to_vec()),
                first in json_scalar(),
                second in json_scalar(),
                payload in payload().prop_filter("an object", Value::is_object),
            ) {
                let header = if name == "alg" {
                    format!(r#"{{"alg":{first},"alg":{second}}}"#)
                } else {
                    format!(r#"{{"alg":"ES256","{name}":{first},"{name}":{second}}}"#)
                };
                let raw = format!(
                    "{}.{}.c2ln",
                    base64url(header.as_bytes()),
                    base64url(payload.to_string().as_bytes())
                );
                prop_assert!(parse(&raw).is_err(), "{header}");
            }

            #[test]
            fn a_key_choosing_header_member_is_refused_whatever_its_value(
                name in proptest::sample::select(FORBIDDEN_HEADER_PARAMS.to_vec()),
                value in json_scalar(),
                token in valid_token(),
            ) {
                let payload = token.split('.').nth(1).unwrap_or_default();
                let header = json!({ "alg": "RS256", name: value });
                let raw = format!("{}.{payload}.c2ln", base64url(header.to_string().as_bytes()));
                prop_assert!(
                    matches!(parse(&raw), Err(Invalid::ForbiddenHeader(n)) if n == name),
                    "{header}"
                );
            }

            /// Only the exact, case-sensitive names of RFC 7518 §3.1 that
            /// we support are algorithms; anything else is refused before
            /// a key is looked for.
            #[test]
            fn an_alg_we_do_not_support_is_refused(alg in alg()) {
                let header = json!({ "alg": alg });
                let raw = format!("{}.e30.c2ln", base64url(header.to_string().as_bytes()));
                let supported = JwtAlgorithm::ALL.iter().any(|a| alg == json!(a.as_str()));
                match parse(&raw) {
                    Ok(token) => prop_assert!(supported && alg == json!(token.alg.as_str())),
                    Err(Invalid::Algorithm(_)) => prop_assert!(!supported),
                    // Not a string, or null: not an alg at all.
                    Err(Invalid::Malformed(_)) => prop_assert!(!alg.is_string()),
                    Err(other) => prop_assert!(false, "{alg}: {other:?}"),
                }
            }
        }
    }
}
