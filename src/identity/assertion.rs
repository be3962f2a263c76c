//! The signed identity assertion (SPEC §3 `[identity.assertion]`): for a
//! backend that would rather verify than trust a header, every request with
//! an identity also carries a compact JWS (RFC 7515 §7.1), ES256 (RFC 7518
//! §3.4), whose claims (RFC 7519 §4.1) are `iss`, `sub`, `aud` = the
//! upstream's name — so an assertion replayed to another upstream fails
//! there — `iat`, `exp` = iat + ttl, and the claims named in
//! `[identity] headers`.
//!
//! The key is a P-256 private key in PKCS#8 PEM (RFC 5208, RFC 7468 §10).
//! Its `kid` is the RFC 7638 thumbprint of the public JWK, and the public
//! key is published as a JWKS (RFC 7517 §5) at
//! `/.well-known/wristband/jwks.json` on both listeners.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair};
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::Identity;
pub use crate::assertion_key::KeyError;
use crate::assertion_key::load_key;
use crate::config::AssertionConfig;
use crate::encoding::base64url;

/// The claims the proxy itself sets: an identity claim of the same name
/// never overrides them.
const REGISTERED: [&str; 5] = ["iss", "sub", "aud", "iat", "exp"];

/// Signs assertions with one key; built once per config.
pub struct AssertionSigner {
    header: HeaderName,
    issuer: String,
    ttl_secs: u64,
    /// Identity claims copied into every assertion, in file order, without
    /// duplicates and without the registered ones.
    claims: Vec<String>,
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    /// The JOSE header, base64url-encoded once.
    encoded_header: String,
    /// The public JWK with `kid`, `alg` and `use`.
    jwk: Value,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("header", &self.header)
            .field("issuer", &self.issuer)
            .field("kid", &self.jwk["kid"])
            .finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// Loads the key of `config`; `claims` are the claim names of
    /// `[identity] headers`.
    pub fn load<'c>(
        config: &AssertionConfig,
        claims: impl IntoIterator<Item = &'c str>,
    ) -> Result<Self, KeyError> {
        let pair = load_key(&config.key_file)?;
        Ok(Self::new(config, claims, pair))
    }

    fn new<'c>(
        config: &AssertionConfig,
        claims: impl IntoIterator<Item = &'c str>,
        pair: EcdsaKeyPair,
    ) -> Self {
        // An uncompressed SEC 1 point: 0x04 || x || y.
        let coordinates = pair.public_key().as_ref().get(1..).unwrap_or_default();
        let (x, y) = coordinates.split_at(coordinates.len() / 2);
        let (x, y) = (base64url(x), base64url(y));
        let kid = jwk_thumbprint(&[("crv", "P-256"), ("kty", "EC"), ("x", &x), ("y", &y)]);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "alg": "ES256", "use": "sig",
        });
        let header = json!({ "alg": "ES256", "typ": "JWT", "kid": kid });
        let mut names: Vec<String> = Vec::new();
        for claim in claims {
            if !REGISTERED.contains(&claim) && !names.iter().any(|n| n == claim) {
                names.push(claim.to_owned());
            }
        }
        AssertionSigner {
            header: config.header.clone(),
            issuer: config.issuer.clone(),
            ttl_secs: config.ttl.as_secs(),
            claims: names,
            pair,
            rng: SystemRandom::new(),
            encoded_header: base64url(header.to_string().as_bytes()),
            jwk,
        }
    }

    /// The header the assertion travels in.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The public key as a JWK (RFC 7517 §4, RFC 7518 §6.2.1).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The assertion for `identity` addressed to the upstream `audience`,
    /// issued now. `None` only if the signature itself fails.
    pub fn sign(&self, identity: &Identity, audience: &str) -> Option<HeaderValue> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.sign_at(identity, audience, now)
    }

    fn sign_at(&self, identity: &Identity, audience: &str, now: u64) -> Option<HeaderValue> {
        let mut claims = Map::new();
        for name in &self.claims {
            if let Some(value) = identity.claim(name) {
                claims.insert(name.clone(), value.clone());
            }
        }
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("sub".into(), json!(identity.sub()));
        claims.insert("aud".into(), json!(audience));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + self.ttl_secs));
        let payload = base64url(Value::Object(claims).to_string().as_bytes());
        let mut token = format!("{}.{payload}", self.encoded_header);
        match self.pair.sign(&self.rng, token.as_bytes()) {
            Ok(signature) => {
                token.push('.');
                token.push_str(&base64url(signature.as_ref()));
                // base64url and '.' only: always a valid header value.
                HeaderValue::try_from(token).ok()
            }
            // aws-lc-rs says only "unspecified". The request is refused
            // (503) and logged once, at error level, as that rejection.
            Err(_) => None,
        }
    }
}

/// RFC 7638 §3: the SHA-256 of the JWK's required members, as JSON with the
/// members in lexicographic order and no whitespace, in base64url.
pub fn jwk_thumbprint(required: &[(&str, &str)]) -> String {
    let members: BTreeMap<&str, &str> = required.iter().copied().collect();
    // serde_json writes a map of strings exactly as §3.3 asks: sorted (it is
    // a BTreeMap), no whitespace, escaping only what JSON requires.
    let canonical = serde_json::to_string(&members).unwrap_or_default();
    base64url(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn thumbprint_of_the_rfc_7638_example_key() {
        // RFC 7638 §3.1: the RSA key of RFC 7517 Appendix A.1, whose
        // thumbprint the RFC gives.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        // Given out of order: the canonical form sorts them.
        assert_eq!(
            jwk_thumbprint(&[("n", n), ("kty", "RSA"), ("e", "AQAB")]),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn thumbprint_of_an_ec_key() {
        // The P-256 key of RFC 7517 Appendix A.1; the value was computed
        // independently (Python: hashlib.sha256 over json.dumps with
        // sort_keys=True and separators=(',', ':')).
        let x = "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4";
        let y = "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM";
        assert_eq!(
            jwk_thumbprint(&[("y", y), ("x", x), ("kty", "EC"), ("crv", "P-256")]),
            "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"
        );
    }

    fn signer() -> AssertionSigner {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("key");
        let config = AssertionConfig {
            header: HeaderName::from_static("x-auth-assertion"),
            key_file: PathBuf::new(),
            issuer: "wristband".into(),
            ttl: Duration::from_secs(60),
        };
        AssertionSigner::new(&config, ["sub", "roles", "iss", "roles", "email"], pair)
    }

    fn decode(segment: &str) -> Value {
        let bytes = crate::encoding::base64url_decode(segment).expect("base64url segment");
        serde_json::from_slice(&bytes).expect("JSON segment")
    }

    #[test]
    fn registered_claims_are_the_proxys_and_named_claims_are_copied() {
        let signer = signer();
        let mut claims = BTreeMap::new();
        claims.insert("iss".into(), json!("https://idp.example"));
        claims.insert("aud".into(), json!("someone-else"));
        claims.insert("exp".into(), json!(9_999_999_999u64));
        claims.insert("roles".into(), json!(["admin", "dev"]));
        claims.insert("secret".into(), json!("not named by any header"));
        let identity = Identity::new("alice", claims);
        let token = signer.sign_at(&identity, "app", 1000).expect("signed");
        let token = token.to_str().expect("ascii");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode(parts[0]),
            json!({"alg": "ES256", "typ": "JWT", "kid": signer.jwk()["kid"]})
        );
        assert_eq!(
            decode(parts[1]),
            json!({
                "iss": "wristband", "sub": "alice", "aud": "app",
                "iat": 1000, "exp": 1060, "roles": ["admin", "dev"],
            })
        );
    }

    #[test]
    fn the_kid_is_the_thumbprint_of_the_published_key() {
        let signer = signer();
        let jwk = signer.jwk();
        let text = |k: &str| jwk[k].as_str().expect("string member").to_owned();
        let (x, y) = (text("x"), text("y"));
        assert_eq!(x.len(), 43);
        assert_eq!(y.len(), 43);
        assert_eq!(
            text("kid"),
            jwk_thumbprint(&[("crv", "P-256"), ("kty", "EC"), ("x", &x), ("y", &y)])
        );
        assert_eq!(text("alg"), "ES256");
        assert_eq!(text("use"), "sig");
        assert!(jwk.get("d").is_none(), "never the private part");
    }

    mod props {
        use super::*;
        use crate::identity::tests::props::claim_value;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
        use proptest::prelude::*;

        proptest! {
            /// Whatever the claims hold (CR, LF, NUL, any character, any
            /// nesting), the assertion is a valid header of base64url and
            /// dots, verifies under the published key, and carries each
            /// named claim whole.
            #[test]
            fn any_identity_is_asserted_whole_in_a_clean_header(
                sub in any::<String>(),
                claims in proptest::collection::btree_map(
                    proptest::sample::select(vec!["roles", "email", "iss", "other"])
                        .prop_map(str::to_owned),
                    claim_value(),
                    0..4,
                ),
                audience in "[a-z0-9-]{1,8}",
            ) {
                let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("key");
                let public = pair.public_key().as_ref().to_vec();
                let config = AssertionConfig {
                    header: HeaderName::from_static("x-auth-assertion"),
                    key_file: PathBuf::new(),
                    issuer: "wristband".into(),
                    ttl: Duration::from_secs(60),
                };
                let signer = AssertionSigner::new(&config, ["sub", "roles", "email", "iss"], pair);
                let identity = Identity::new(sub.clone(), claims.clone());
                let token = signer.sign_at(&identity, &audience, 1000).expect("signed");
                let token = token.as_bytes();
                prop_assert!(token
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b)));
                let token = std::str::from_utf8(token).expect("ASCII");
                let (signing_input, signature) = token.rsplit_once('.').expect("three segments");
                let signature = crate::encoding::base64url_decode(signature).expect("base64url");
                prop_assert!(UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
                    .verify(signing_input.as_bytes(), &signature)
                    .is_ok());
                let payload = signing_input.split('.').nth(1).unwrap_or_default();
                let mut expected = Map::new();
                for name in ["roles", "email"] {
                    if let Some(value) = claims.get(name) {
                        expected.insert(name.into(), value.clone());
                    }
                }
                expected.insert("iss".into(), json!("wristband"));
                expected.insert("sub".into(), json!(sub));
                expected.insert("aud".into(), json!(audience));
                expected.insert("iat".into(), json!(1000));
                expected.insert("exp".into(), json!(1060));
                // Compared as text: reading floats back through serde_json
                // may move them by one ulp.
                let payload = crate::encoding::base64url_decode(payload).expect("base64url");
                prop_assert_eq!(
                    String::from_utf8_lossy(&payload),
                    Value::Object(expected).to_string()
                );
            }
        }
    }
}
