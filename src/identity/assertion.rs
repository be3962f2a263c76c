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
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use http::{HeaderName, HeaderValue};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Map, Value, json};

use super::Identity;
use crate::config::AssertionConfig;
use crate::encoding::base64url;

/// The claims the proxy itself sets: an identity claim of the same name
/// never overrides them.
const REGISTERED: [&str; 5] = ["iss", "sub", "aud", "iat", "exp"];

/// Why the assertion key cannot be used. The key material never appears.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read \"{}\": {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "\"{}\" holds no \"-----BEGIN PRIVATE KEY-----\" block (a PKCS#8 key; convert a SEC1 \"EC PRIVATE KEY\" with `openssl pkcs8 -topk8 -nocrypt`)",
        path.display()
    )]
    NotPkcs8Pem { path: PathBuf },
    #[error("\"{}\" is not a P-256 (prime256v1) private key", path.display())]
    NotP256 { path: PathBuf },
}

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

/// Reads and parses the key file: what `wristband check` and the start-up
/// both run, so a bad key never gets as far as a request.
pub fn load_key(path: &Path) -> Result<EcdsaKeyPair, KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|_| KeyError::NotPkcs8Pem {
        path: path.to_owned(),
    })?;
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der()).map_err(
        |_| KeyError::NotP256 {
            path: path.to_owned(),
        },
    )
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
            Err(_) => {
                tracing::error!("signing the identity assertion failed; header not sent");
                None
            }
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

/// A fresh P-256 key as PKCS#8 PEM, for tests that need a key file.
#[cfg(test)]
pub(crate) fn generated_p256_pem() -> String {
    let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .and_then(|pair| pair.to_pkcs8v1())
        .expect("P-256 key generation");
    pem_text(pkcs8.as_ref())
}

#[cfg(test)]
/// PEM armour (RFC 7468) around DER.
pub(crate) fn pem_text(der: &[u8]) -> String {
    const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(STANDARD[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("ascii"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
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
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = 0u32;
        let mut count = 0;
        let mut bytes = Vec::new();
        for c in segment.bytes() {
            let v = ALPHABET.iter().position(|a| *a == c).expect("base64url") as u32;
            bits = (bits << 6) | v;
            count += 6;
            if count >= 8 {
                count -= 8;
                bytes.push((bits >> count) as u8);
            }
        }
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

    #[test]
    fn bad_key_files_are_named_and_explained() {
        let dir = std::env::temp_dir().join(format!("wristband-assertion-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let missing = dir.join("missing.pem");
        assert!(matches!(load_key(&missing), Err(KeyError::Read { .. })));
        let sec1 = dir.join("sec1.pem");
        std::fs::write(
            &sec1,
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        )
        .expect("write");
        let err = load_key(&sec1).expect_err("SEC1 is not PKCS#8");
        assert!(err.to_string().contains("BEGIN PRIVATE KEY"), "{err}");
        // A P-384 key is PKCS#8 but not P-256.
        let p384 = EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING)
            .expect("P-384")
            .to_pkcs8v1()
            .expect("pkcs8");
        let pem = PrivatePkcs8KeyDer::from(p384.as_ref().to_vec());
        let path = dir.join("p384.pem");
        std::fs::write(&path, pem_text(pem.secret_pkcs8_der())).expect("write");
        assert!(matches!(load_key(&path), Err(KeyError::NotP256 { .. })));
        // A P-256 key loads.
        let path = dir.join("p256.pem");
        std::fs::write(&path, generated_p256_pem()).expect("write");
        assert!(load_key(&path).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
