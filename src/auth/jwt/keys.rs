//! Verification keys and the algorithms each one may be used with.
//!
//! The token never chooses the algorithm (RFC 8725 §3.1): every key is bound
//! to its JWK `alg`, or else to the provider's allow-list intersected with
//! what its key type can do. A JWKS `oct` key is dropped: a symmetric secret
//! published in a key set is a way to forge tokens, not to verify them.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::config::JwtAlgorithm;

/// SPEC §5.4: a JWKS larger than this is refused.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// SPEC §5.4: a JWKS with more keys than this is refused.
pub const MAX_JWKS_KEYS: usize = 100;

pub struct VerifyingKey {
    pub kid: Option<String>,
    /// Never empty.
    pub algorithms: Vec<JwtAlgorithm>,
    pub key: DecodingKey,
    /// What identifies this key across refreshes (kid + material), so a
    /// refresh can tell whether a key disappeared.
    pub fingerprint: String,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("key set is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("key set has more than {MAX_JWKS_KEYS} keys")]
    TooManyKeys,
    #[error("key set is not a JSON object with a \"keys\" array")]
    NotAKeySet,
    #[error("key set has no key usable with the configured algorithms")]
    NoUsableKey,
}

pub fn to_jsonwebtoken(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// The algorithms a JWK's key type can serve.
fn fits(alg: JwtAlgorithm, kty: &str, crv: Option<&str>) -> bool {
    use JwtAlgorithm::*;
    match (kty, crv) {
        ("RSA", _) => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
        ("EC", Some("P-256")) => alg == ES256,
        ("EC", Some("P-384")) => alg == ES384,
        ("OKP", Some("Ed25519")) => alg == EdDSA,
        _ => false,
    }
}

/// Parses a JWKS document, keeping the keys usable with `allowed`.
/// Unusable keys (other uses, unknown types, algorithms outside the list)
/// are skipped, not fatal: IdPs publish encryption keys too.
pub fn parse_jwks(
    bytes: &[u8],
    allowed: &[JwtAlgorithm],
) -> Result<Vec<Arc<VerifyingKey>>, JwksError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|_| JwksError::NotAKeySet)?;
    let jwks = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NotAKeySet)?;
    if jwks.len() > MAX_JWKS_KEYS {
        return Err(JwksError::TooManyKeys);
    }
    let keys: Vec<Arc<VerifyingKey>> = jwks
        .iter()
        .filter_map(|jwk| match parse_jwk(jwk, allowed) {
            Ok(key) => Some(Arc::new(key)),
            Err(reason) => {
                let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
                tracing::debug!(kid, reason, "JWK skipped");
                None
            }
        })
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(keys)
}

fn parse_jwk(jwk: &Value, allowed: &[JwtAlgorithm]) -> Result<VerifyingKey, &'static str> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let kty = text("kty").ok_or("no kty")?;
    if kty == "oct" {
        return Err("symmetric keys are never taken from a key set");
    }
    if text("use").is_some_and(|u| u != "sig") {
        return Err("not a signing key");
    }
    let crv = text("crv");
    let algorithms: Vec<JwtAlgorithm> = match text("alg") {
        Some(name) => {
            let alg = JwtAlgorithm::parse(name).ok_or("unknown alg")?;
            if !allowed.contains(&alg) {
                return Err("alg not in the provider's algorithms");
            }
            if !fits(alg, kty, crv) {
                return Err("alg does not fit the key type");
            }
            vec![alg]
        }
        None => allowed
            .iter()
            .copied()
            .filter(|alg| fits(*alg, kty, crv))
            .collect(),
    };
    if algorithms.is_empty() {
        return Err("no configured algorithm fits the key type");
    }
    let (key, material) = match kty {
        "RSA" => {
            let (n, e) = (text("n").ok_or("no n")?, text("e").ok_or("no e")?);
            let key = DecodingKey::from_rsa_components(n, e).map_err(|_| "bad RSA key")?;
            (key, format!("{n}.{e}"))
        }
        "EC" => {
            let (x, y) = (text("x").ok_or("no x")?, text("y").ok_or("no y")?);
            let key = DecodingKey::from_ec_components(x, y).map_err(|_| "bad EC key")?;
            (key, format!("{x}.{y}"))
        }
        "OKP" => {
            let x = text("x").ok_or("no x")?;
            let key = DecodingKey::from_ed_components(x).map_err(|_| "bad OKP key")?;
            (key, x.to_owned())
        }
        _ => return Err("unsupported kty"),
    };
    let kid = text("kid").map(str::to_owned);
    Ok(VerifyingKey {
        fingerprint: format!("{}|{material}", kid.as_deref().unwrap_or("")),
        kid,
        algorithms,
        key,
    })
}

/// The one key of an HMAC provider.
pub fn hmac_key(secret: &[u8], algorithms: &[JwtAlgorithm]) -> Arc<VerifyingKey> {
    Arc::new(VerifyingKey {
        kid: None,
        algorithms: algorithms.to_vec(),
        key: DecodingKey::from_secret(secret),
        fingerprint: "hmac".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use JwtAlgorithm::*;
    use serde_json::json;

    // A real 2048-bit modulus is not needed to test the binding rules, but
    // from_rsa_components wants valid base64url.
    fn rsa(kid: &str, alg: Option<&str>) -> Value {
        let mut jwk = json!({"kty": "RSA", "kid": kid, "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    fn set(keys: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).expect("json")
    }

    #[test]
    fn a_key_without_alg_gets_the_list_intersected_with_its_type() {
        let keys = parse_jwks(&set(vec![rsa("k", None)]), &[RS256, ES256, PS256]).expect("keys");
        assert_eq!(keys[0].algorithms, vec![RS256, PS256]);
    }

    #[test]
    fn a_key_with_alg_is_bound_to_it_alone() {
        let keys = parse_jwks(&set(vec![rsa("k", Some("RS256"))]), &[RS256, PS256]).expect("keys");
        assert_eq!(keys[0].algorithms, vec![RS256]);
        let err = parse_jwks(&set(vec![rsa("k", Some("RS512"))]), &[RS256]);
        assert_eq!(
            err.err(),
            Some(JwksError::NoUsableKey),
            "alg outside the list"
        );
        let err = parse_jwks(&set(vec![rsa("k", Some("ES256"))]), &[ES256]);
        assert_eq!(err.err(), Some(JwksError::NoUsableKey), "alg unfit for RSA");
    }

    #[test]
    fn oct_and_encryption_keys_are_ignored() {
        let oct = json!({"kty": "oct", "kid": "s", "k": "c2VjcmV0", "alg": "HS256"});
        let mut enc = rsa("e", None);
        enc["use"] = json!("enc");
        let keys = parse_jwks(&set(vec![oct, enc, rsa("k", None)]), &[RS256, HS256]).expect("keys");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("k"));
    }

    #[test]
    fn oversized_and_overfull_key_sets_are_refused() {
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(parse_jwks(&big, &[RS256]).err(), Some(JwksError::TooLarge));
        let many: Vec<Value> = (0..=MAX_JWKS_KEYS)
            .map(|i| rsa(&i.to_string(), None))
            .collect();
        assert_eq!(
            parse_jwks(&set(many), &[RS256]).err(),
            Some(JwksError::TooManyKeys)
        );
        assert_eq!(
            parse_jwks(b"[]", &[RS256]).err(),
            Some(JwksError::NotAKeySet)
        );
    }
}
