//! The key that signs identity assertions (SPEC §3 `[identity.assertion]`):
//! a P-256 private key in PKCS#8 PEM (RFC 5208, RFC 7468 §10).
//!
//! Its own module, beside neither `config` nor `identity`: `wristband check`
//! loads the key to validate the file, and the signer loads it to sign, and
//! neither should have to import the other to do so.

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

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

/// A fresh P-256 key as PKCS#8 PEM, for tests that need a key file.
#[cfg(test)]
pub(crate) fn generated_p256_pem() -> String {
    generated_pem(&rcgen::PKCS_ECDSA_P256_SHA256)
}

/// A fresh key of `alg` as PKCS#8 PEM. rcgen writes the PEM, so no test
/// carries a base64 encoder of its own.
#[cfg(test)]
fn generated_pem(alg: &'static rcgen::SignatureAlgorithm) -> String {
    rcgen::KeyPair::generate_for(alg)
        .expect("key generation")
        .serialize_pem()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_key_files_are_named_and_explained() {
        let dir =
            std::env::temp_dir().join(format!("wristband-assertion-key-{}", std::process::id()));
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
        let path = dir.join("p384.pem");
        std::fs::write(&path, generated_pem(&rcgen::PKCS_ECDSA_P384_SHA384)).expect("write");
        assert!(matches!(load_key(&path), Err(KeyError::NotP256 { .. })));
        // A P-256 key loads.
        let path = dir.join("p256.pem");
        std::fs::write(&path, generated_p256_pem()).expect("write");
        assert!(load_key(&path).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
