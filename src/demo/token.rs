//! The demo's signing key: a fresh P-256 key per run, published as a JWKS
//! file and used to sign the token the demo prints.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

use super::{AUDIENCE, ISSUER};

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

/// Unpadded base64url (RFC 7515 §2).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut buf = [0u8; 3];
        buf[..chunk.len()].copy_from_slice(chunk);
        let v = (u32::from(buf[0]) << 16) | (u32::from(buf[1]) << 8) | u32::from(buf[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(plain.as_bytes()), encoded);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
