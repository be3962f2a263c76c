//! The demo's signing key: a fresh P-256 key per run, published as a JWKS
//! file and used to sign the token the demo prints.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

use super::{AUDIENCE, ISSUER};
use crate::encoding::base64url;

pub struct DemoKey {
    pair: EcdsaKeyPair,
}

impl DemoKey {
    pub fn generate() -> anyhow::Result<DemoKey> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| anyhow::anyhow!("cannot generate the demo key"))?;
        Ok(DemoKey { pair })
    }

    /// The public key as a JWKS document (RFC 7517 §5, RFC 7518 §6.2.1).
    pub fn jwks(&self) -> String {
        // An uncompressed SEC1 point: 0x04 || x || y.
        let point = self.pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        serde_json::json!({
            "keys": [{
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "demo",
                "x": base64url(x), "y": base64url(y),
            }]
        })
        .to_string()
    }

    /// A token for `sub` with `roles`, valid for an hour.
    pub fn sign(&self, sub: &str, roles: &[&str]) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "demo"});
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "roles": roles,
            "iat": now, "exp": now + 3600,
        });
        let message = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), message.as_bytes())
            .map_err(|_| anyhow::anyhow!("cannot sign the demo token"))?;
        Ok(format!("{message}.{}", base64url(signature.as_ref())))
    }
}
