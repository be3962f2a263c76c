//! Refresh and access tokens at rest (SPEC §7): only AES-256-GCM sealed,
//! through aws-lc-rs, never in clear in the store. `encryption_keys`: the
//! first seals, every one opens, so a key is rotated by putting the new one
//! first and dropping the old one once the sessions it sealed have ended.
//!
//! A sealed value is `wb1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`:
//! the key id (the first 4 bytes of the key's SHA-256, in hex) picks the
//! key without trying each; the nonce is 96 random bits per write; the
//! field's name is the associated data, so a sealed refresh token cannot be
//! passed off as another field's value.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest;

use crate::encoding::{base64url, base64url_decode, operator_base64_decode};

const VERSION: &str = "wb1";

/// Why `encryption_keys` cannot be used (`check` names the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("login.encryption_keys is empty")]
    None,
    #[error("login.encryption_keys[{0}] is not base64")]
    NotBase64(usize),
    #[error("login.encryption_keys[{index}] is {len} bytes, not 32")]
    Length { index: usize, len: usize },
    #[error("login.encryption_keys[{0}] repeats an earlier key")]
    Repeated(usize),
}

/// Why a sealed value does not open. Which key or byte failed is not said:
/// the store is the only writer, so any of these is corruption or forgery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a sealed value")]
    Malformed,
    #[error("sealed with a key no longer configured")]
    UnknownKey,
    #[error("does not authenticate")]
    Forged,
}

/// Why a value could not be sealed: the system's random generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no random nonce: the system random generator failed")]
pub struct SealError;

struct Key {
    id: String,
    aead: LessSafeKey,
}

pub struct Sealer {
    /// The first seals; all open.
    keys: Vec<Key>,
}

impl Sealer {
    /// From `encryption_keys`, each 32 bytes in base64.
    pub fn new<'a>(encoded: impl IntoIterator<Item = &'a str>) -> Result<Sealer, KeyError> {
        let mut keys: Vec<Key> = Vec::new();
        for (index, text) in encoded.into_iter().enumerate() {
            let bytes = operator_base64_decode(text).ok_or(KeyError::NotBase64(index))?;
            let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| KeyError::Length {
                index,
                len: bytes.len(),
            })?;
            let hash = digest::digest(&digest::SHA256, &bytes);
            let id = crate::encoding::hex(&hash.as_ref()[..4]);
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyError::Repeated(index));
            }
            keys.push(Key {
                id,
                aead: LessSafeKey::new(unbound),
            });
        }
        if keys.is_empty() {
            return Err(KeyError::None);
        }
        Ok(Sealer { keys })
    }

    /// `plaintext`, sealed under the first key, bound to `field`.
    pub fn seal(&self, field: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError)?;
        let mut sealed = plaintext.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(field.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SealError)?;
        let mut body = Vec::with_capacity(NONCE_LEN + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        Ok(format!("{VERSION}.{}.{}", key.id, base64url(&body)))
    }

    /// The plaintext of a value [`Sealer::seal`] made for `field`, under
    /// any configured key.
    pub fn open(&self, field: &str, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(OpenError::Malformed);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(OpenError::UnknownKey)?;
        let mut body = base64url_decode(body).map_err(|_| OpenError::Malformed)?;
        if body.len() < NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let mut ciphertext = body.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&body).map_err(|_| OpenError::Malformed)?;
        let plaintext = key
            .aead
            .open_in_place(nonce, Aad::from(field.as_bytes()), &mut ciphertext)
            .map_err(|_| OpenError::Forged)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::base64_unpadded;

    fn key(byte: u8) -> String {
        base64_unpadded(&[byte; 32])
    }

    #[test]
    fn a_sealed_value_opens_to_its_plaintext_and_hides_it() {
        let sealer = Sealer::new([key(1).as_str()]).expect("one good key");
        let sealed = sealer.seal("refresh", b"rt-secret-value").expect("seal");
        assert!(sealed.starts_with("wb1."), "{sealed}");
        assert!(!sealed.contains("rt-secret-value"));
        assert_eq!(
            sealer.open("refresh", &sealed).expect("open"),
            b"rt-secret-value"
        );
        let again = sealer.seal("refresh", b"rt-secret-value").expect("seal");
        assert_ne!(sealed, again, "a fresh nonce per write");
    }

    #[test]
    fn rotation_opens_old_values_and_seals_with_the_first_key() {
        let old = Sealer::new([key(1).as_str()]).expect("old");
        let sealed_before = old.seal("access", b"at").expect("seal");
        let rotated = Sealer::new([key(2).as_str(), key(1).as_str()]).expect("rotated");
        assert_eq!(rotated.open("access", &sealed_before).expect("open"), b"at");
        let sealed_after = rotated.seal("access", b"at").expect("seal");
        assert_eq!(
            old.open("access", &sealed_after),
            Err(OpenError::UnknownKey),
            "the new first key seals"
        );
        let dropped = Sealer::new([key(2).as_str()]).expect("old key dropped");
        assert_eq!(
            dropped.open("access", &sealed_before),
            Err(OpenError::UnknownKey)
        );
    }

    #[test]
    fn tampering_another_field_or_garbage_never_opens() {
        let sealer = Sealer::new([key(7).as_str()]).expect("key");
        let sealed = sealer.seal("refresh", b"token").expect("seal");
        assert_eq!(sealer.open("access", &sealed), Err(OpenError::Forged));
        let (head, body) = sealed.rsplit_once('.').expect("three parts");
        let mut bytes = base64url_decode(body).expect("body");
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            let forged = format!("{head}.{}", base64url(&bytes));
            assert_eq!(
                sealer.open("refresh", &forged),
                Err(OpenError::Forged),
                "{i}"
            );
            bytes[i] ^= 1;
        }
        for garbage in ["", "wb1", "wb1.x.y", "wb2.00000000.AAAA", "token", "wb1..."] {
            assert!(sealer.open("refresh", garbage).is_err(), "{garbage:?}");
        }
        let id = head.trim_start_matches("wb1.");
        assert_eq!(
            sealer.open("refresh", &format!("wb1.{id}.AAAA")),
            Err(OpenError::Malformed)
        );
    }

    #[test]
    fn keys_must_be_32_distinct_base64_bytes() {
        assert_eq!(Sealer::new([]).err(), Some(KeyError::None));
        assert_eq!(
            Sealer::new(["not base64!"]).err(),
            Some(KeyError::NotBase64(0))
        );
        let short = base64_unpadded(&[1; 16]);
        assert_eq!(
            Sealer::new([key(1).as_str(), short.as_str()]).err(),
            Some(KeyError::Length { index: 1, len: 16 })
        );
        assert_eq!(
            Sealer::new([key(1).as_str(), key(1).as_str()]).err(),
            Some(KeyError::Repeated(1))
        );
        // `openssl rand -base64 32` pads.
        let padded = format!("{}=", key(3));
        assert!(Sealer::new([padded.as_str()]).is_ok());
    }
}
