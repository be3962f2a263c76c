//! A started login, kept in the store so that any instance can finish it
//! (SPEC §7 "Start"): under `login:` + hex SHA-256(state) for 10 minutes,
//! taken (read and deleted at once) by the callback, so a state is good
//! for one callback only.

use serde::{Deserialize, Serialize};

use super::sha256_hex;

/// No `Debug`: it holds the PKCE verifier and the nonce.
#[derive(Serialize, Deserialize)]
pub struct Started {
    /// PKCE `code_verifier` (RFC 7636 §4.1).
    pub verifier: String,
    pub nonce: String,
    /// Where the login ends, already checked (`return_url`).
    pub return_to: String,
    /// SHA-256 of the binding cookie's value: the browser that started it.
    pub binding: String,
}

/// The store key of a state; the state itself never reaches the store.
pub fn key(state: &str) -> String {
    format!("login:{}", sha256_hex(state))
}

/// PKCE S256 (RFC 7636 §4.2): base64url(SHA-256(verifier)).
pub fn challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    crate::encoding::base64url(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_key_does_not_hold_the_state() {
        let key = key("abc");
        assert!(key.starts_with("login:") && !key.contains("abc"));
        assert_eq!(key.len(), "login:".len() + 64);
    }
}
