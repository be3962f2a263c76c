//! Verification keys and the algorithms each one may be used with.
//!
//! The token never chooses the algorithm (RFC 8725 §3.1): every key is bound
//! to its JWK `alg`, or else to the provider's allow-list intersected with
//! what its key type can do, and is parsed for exactly those algorithms. A
//! JWKS `oct` key is dropped: a symmetric secret published in a key set is a
//! way to forge tokens, not to verify them.

use std::sync::Arc;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use serde_json::Value;

use crate::config::JwtAlgorithm;
use crate::encoding::base64url_decode;

/// SPEC §5.4: a JWKS larger than this is refused.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// SPEC §5.4: a JWKS with more keys than this is refused.
pub const MAX_JWKS_KEYS: usize = 100;

/// A key parsed once, ready to verify: parsing a public key (for RSA, the
/// Montgomery set-up) costs more than the verification itself, so it is
/// never redone per request.
enum Verifier {
    /// One parsed key per algorithm the key is bound to.
    Public(Vec<(JwtAlgorithm, ParsedPublicKey)>),
    Hmac(Vec<(JwtAlgorithm, hmac::Key)>),
}

pub struct VerifyingKey {
    pub kid: Option<String>,
    /// Never empty.
    pub algorithms: Vec<JwtAlgorithm>,
    verifier: Verifier,
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

impl VerifyingKey {
    /// Checks `signature` over `message` with `alg`, which must be one this
    /// key is bound to (the token never picks the algorithm on its own).
    pub fn verify(&self, alg: JwtAlgorithm, message: &[u8], signature: &[u8]) -> bool {
        match &self.verifier {
            Verifier::Public(keys) => keys
                .iter()
                .find(|(a, _)| *a == alg)
                .is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok()),
            Verifier::Hmac(keys) => keys
                .iter()
                .find(|(a, _)| *a == alg)
                .is_some_and(|(_, key)| hmac::verify(key, message, signature).is_ok()),
        }
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

/// The aws-lc-rs verification algorithm of a public-key JWS algorithm
/// (RFC 7518 §3). RSA keys under 2048 bits are refused by these.
fn public_algorithm(alg: JwtAlgorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        JwtAlgorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        JwtAlgorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        JwtAlgorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        JwtAlgorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        JwtAlgorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        JwtAlgorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        JwtAlgorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        JwtAlgorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        JwtAlgorithm::EdDSA => &signature::ED25519,
        JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => return None,
    })
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
    let bytes = |name: &'static str| -> Result<Vec<u8>, &'static str> {
        base64url_decode(text(name).ok_or(name)?).map_err(|_| "member is not base64url")
    };
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
    let public_key = match (kty, crv) {
        ("RSA", _) => rsa_public_key_der(&bytes("n")?, &bytes("e")?),
        ("EC", Some(curve)) => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            let size = if curve == "P-256" { 32 } else { 48 };
            if x.len() != size || y.len() != size {
                return Err("EC coordinates of the wrong size");
            }
            // SEC1 uncompressed point.
            [&[4u8][..], &x, &y].concat()
        }
        ("OKP", _) => bytes("x")?,
        _ => return Err("unsupported kty"),
    };
    let parsed = algorithms
        .iter()
        .map(|alg| {
            let verification = public_algorithm(*alg).ok_or("not a public-key algorithm")?;
            let key = ParsedPublicKey::new(verification, &public_key)
                .map_err(|_| "key rejected (malformed, or RSA under 2048 bits)")?;
            Ok((*alg, key))
        })
        .collect::<Result<Vec<_>, &'static str>>()?;
    let kid = text("kid").map(str::to_owned);
    Ok(VerifyingKey {
        fingerprint: format!(
            "{}|{}",
            kid.as_deref().unwrap_or(""),
            crate::encoding::hex(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &public_key).as_ref()
            )
        ),
        kid,
        algorithms,
        verifier: Verifier::Public(parsed),
    })
}

/// DER `RSAPublicKey` (RFC 8017 A.1.1) from the JWK's big-endian `n`, `e`.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let trimmed = match bytes.iter().position(|b| *b != 0) {
            Some(first) => &bytes[first..],
            None => &[0u8][..],
        };
        // A leading 1 bit would make the INTEGER negative.
        let pad = trimmed[0] & 0x80 != 0;
        let mut content = Vec::with_capacity(trimmed.len() + 1);
        if pad {
            content.push(0);
        }
        content.extend_from_slice(trimmed);
        tlv(0x02, &content)
    }
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let len_bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | len_bytes.len() as u8);
            out.extend_from_slice(&len_bytes);
        }
        out.extend_from_slice(content);
        out
    }
    tlv(0x30, &[integer(n), integer(e)].concat())
}

/// The one key of an HMAC provider.
pub fn hmac_key(secret: &[u8], algorithms: &[JwtAlgorithm]) -> Arc<VerifyingKey> {
    let keys = algorithms
        .iter()
        .filter_map(|alg| {
            let algorithm = match alg {
                JwtAlgorithm::HS256 => hmac::HMAC_SHA256,
                JwtAlgorithm::HS384 => hmac::HMAC_SHA384,
                JwtAlgorithm::HS512 => hmac::HMAC_SHA512,
                _ => return None,
            };
            Some((*alg, hmac::Key::new(algorithm, secret)))
        })
        .collect();
    Arc::new(VerifyingKey {
        kid: None,
        algorithms: algorithms.to_vec(),
        verifier: Verifier::Hmac(keys),
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
