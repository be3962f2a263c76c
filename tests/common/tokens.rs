//! JWTs built by hand for the tests (RFC 7515 compact serialization, RFC
//! 7519 claims): base64url segments from the `base64` crate's stock engines
//! (held to RFC 4648's vectors in tests/jwt.rs), JSON from serde_json,
//! signatures from aws-lc-rs directly. Nothing here goes through the proxy's
//! JWT code, so a quirk of that code cannot make a broken token look
//! well-formed to both sides.
//!
//! Keys export their public half as JWKs (RFC 7517/7518: RSA `n`/`e`, EC
//! `x`/`y` with `crv`, OKP `x`) and, for RSA, as DER and PEM, which is what
//! an attacker would try as an HMAC secret (RFC 8725 §2.1).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaEncoding};
use aws_lc_rs::{hmac, rand::SecureRandom};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

/// Base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Standard base64 with padding (RFC 4648 §4), as in PEM.
pub fn b64std(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit i64")
}

/// Random bytes, e.g. for kids and HMAC secrets.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("system randomness");
    bytes
}

/// A random identifier, e.g. an unknown `kid`.
pub fn random_id() -> String {
    b64url(&random_bytes(12))
}

/// Reads one DER TLV with `tag`; returns (content, rest).
fn der_tlv(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(input.first(), Some(&tag), "DER: expected tag {tag:#x}");
    let first = *input.get(1).expect("DER: length byte");
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let bytes = input.get(2..2 + n).expect("DER: long length");
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let content = input
        .get(header..header + len)
        .expect("DER: content within input");
    (content, &input[header + len..])
}

fn strip_leading_zeros(mut int: &[u8]) -> &[u8] {
    while int.len() > 1 && int[0] == 0 {
        int = &int[1..];
    }
    int
}

/// An RSA-2048 key pair with the `kid` its JWK carries.
#[derive(Clone)]
pub struct RsaKey {
    pair: Arc<RsaKeyPair>,
    pub kid: String,
}

impl RsaKey {
    pub fn generate(kid: &str) -> RsaKey {
        RsaKey {
            pair: Arc::new(
                RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA-2048 key generation"),
            ),
            kid: kid.to_owned(),
        }
    }

    /// The same key pair published under another `kid`.
    pub fn with_kid(&self, kid: &str) -> RsaKey {
        RsaKey {
            pair: self.pair.clone(),
            kid: kid.to_owned(),
        }
    }

    /// The public key as a PKCS#1 `RSAPublicKey` (RFC 8017 A.1.1).
    pub fn public_der_pkcs1(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// The public key as an X.509 `SubjectPublicKeyInfo` (RFC 5280).
    pub fn public_der_spki(&self) -> Vec<u8> {
        self.pair
            .public_key()
            .as_der()
            .expect("SPKI encoding of the RSA public key")
            .as_ref()
            .to_vec()
    }

    /// The SPKI as PEM (`-----BEGIN PUBLIC KEY-----`, 64-column lines).
    pub fn public_pem(&self) -> String {
        let b64 = b64std(&self.public_der_spki());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// (n, e) as big-endian bytes without leading zeros.
    fn components(&self) -> (Vec<u8>, Vec<u8>) {
        let der = self.public_der_pkcs1();
        let (seq, _) = der_tlv(&der, 0x30);
        let (n, rest) = der_tlv(seq, 0x02);
        let (e, _) = der_tlv(rest, 0x02);
        (
            strip_leading_zeros(n).to_vec(),
            strip_leading_zeros(e).to_vec(),
        )
    }

    /// The public JWK without `alg`: usable with any RSA algorithm the
    /// provider allows.
    pub fn jwk(&self) -> Value {
        let (n, e) = self.components();
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "n": b64url(&n),
            "e": b64url(&e),
        })
    }

    /// The public JWK bound to one algorithm.
    pub fn jwk_with_alg(&self, alg: &str) -> Value {
        let mut jwk = self.jwk();
        jwk["alg"] = json!(alg);
        jwk
    }

    pub fn sign(&self, encoding: &'static dyn RsaEncoding, message: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(encoding, &SystemRandom::new(), message, &mut sig)
            .expect("RSA signing");
        sig
    }
}

/// A P-256 key pair for ES256.
#[derive(Clone)]
pub struct EcKey {
    pair: Arc<EcdsaKeyPair>,
    pub kid: String,
}

impl EcKey {
    pub fn generate(kid: &str) -> EcKey {
        EcKey {
            pair: Arc::new(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("P-256 key generation"),
            ),
            kid: kid.to_owned(),
        }
    }

    pub fn jwk(&self) -> Value {
        // Uncompressed point: 0x04 || x || y (SEC 1 §2.3.3).
        let point = self.pair.public_key().as_ref();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        json!({
            "kty": "EC",
            "kid": self.kid,
            "use": "sig",
            "crv": "P-256",
            "x": b64url(&point[1..33]),
            "y": b64url(&point[33..65]),
        })
    }

    /// The fixed-width r || s signature JWS uses (RFC 7518 §3.4).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .expect("ECDSA signing")
            .as_ref()
            .to_vec()
    }
}

/// An Ed25519 key pair for EdDSA (RFC 8037).
#[derive(Clone)]
pub struct EdKey {
    pair: Arc<Ed25519KeyPair>,
    pub kid: String,
}

impl EdKey {
    pub fn generate(kid: &str) -> EdKey {
        EdKey {
            pair: Arc::new(Ed25519KeyPair::generate().expect("Ed25519 key generation")),
            kid: kid.to_owned(),
        }
    }

    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "kid": self.kid,
            "use": "sig",
            "crv": "Ed25519",
            "x": b64url(self.pair.public_key().as_ref()),
        })
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// HMAC-SHA-2 over `message` with `secret`, for `alg` HS256/384/512.
pub fn hmac_sign(alg: &str, secret: &[u8], message: &[u8]) -> Vec<u8> {
    let algorithm = match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        other => panic!("not an HMAC algorithm: {other}"),
    };
    hmac::sign(&hmac::Key::new(algorithm, secret), message)
        .as_ref()
        .to_vec()
}

/// A fresh P-256 private key as PKCS#8 PEM (RFC 7468 §10), as
/// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes it.
pub fn p256_pkcs8_pem() -> String {
    let pkcs8 = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
        .expect("P-256 key generation")
        .to_pkcs8v1()
        .expect("PKCS#8 encoding");
    let b64 = b64std(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// An `oct` JWK (RFC 7518 §6.4) holding `secret`.
pub fn oct_jwk(kid: &str, secret: &[u8]) -> Value {
    json!({ "kty": "oct", "kid": kid, "alg": "HS256", "k": b64url(secret) })
}

/// A token under construction: a JOSE header and a claims set, both JSON
/// objects, in insertion order.
#[derive(Clone, Debug)]
pub struct Token {
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl Default for Token {
    fn default() -> Self {
        Token::new()
    }
}

impl Token {
    /// `{"alg":"RS256","typ":"JWT"}` and no claims.
    pub fn new() -> Token {
        let mut header = Map::new();
        header.insert("alg".into(), json!("RS256"));
        header.insert("typ".into(), json!("JWT"));
        Token {
            header,
            claims: Map::new(),
        }
    }

    pub fn alg(self, alg: &str) -> Token {
        self.header("alg", json!(alg))
    }

    pub fn kid(self, kid: &str) -> Token {
        self.header("kid", json!(kid))
    }

    pub fn header(mut self, name: &str, value: Value) -> Token {
        self.header.insert(name.to_owned(), value);
        self
    }

    pub fn without_header(mut self, name: &str) -> Token {
        self.header.remove(name);
        self
    }

    pub fn claim(mut self, name: &str, value: Value) -> Token {
        self.claims.insert(name.to_owned(), value);
        self
    }

    pub fn without(mut self, name: &str) -> Token {
        self.claims.remove(name);
        self
    }

    pub fn header_json(&self) -> String {
        Value::Object(self.header.clone()).to_string()
    }

    pub fn claims_json(&self) -> String {
        Value::Object(self.claims.clone()).to_string()
    }

    fn header_alg(&self) -> String {
        self.header
            .get("alg")
            .and_then(Value::as_str)
            .expect("a string alg in the header")
            .to_owned()
    }

    /// `base64url(header) "." base64url(claims)`: what is signed.
    pub fn signing_input(&self) -> String {
        format!(
            "{}.{}",
            b64url(self.header_json().as_bytes()),
            b64url(self.claims_json().as_bytes())
        )
    }

    /// The compact token with `signature` as its third segment.
    pub fn with_signature(&self, signature: &[u8]) -> String {
        format!("{}.{}", self.signing_input(), b64url(signature))
    }

    /// `header.claims.` — an empty signature segment.
    pub fn unsigned(&self) -> String {
        format!("{}.", self.signing_input())
    }

    /// Signs with an RSA key using the header's `alg` (RS*/PS*).
    pub fn sign_rsa(&self, key: &RsaKey) -> String {
        let encoding: &'static dyn RsaEncoding = match self.header_alg().as_str() {
            "RS256" => &signature::RSA_PKCS1_SHA256,
            "RS384" => &signature::RSA_PKCS1_SHA384,
            "RS512" => &signature::RSA_PKCS1_SHA512,
            "PS256" => &signature::RSA_PSS_SHA256,
            "PS384" => &signature::RSA_PSS_SHA384,
            "PS512" => &signature::RSA_PSS_SHA512,
            other => panic!("not an RSA algorithm: {other}"),
        };
        self.with_signature(&key.sign(encoding, self.signing_input().as_bytes()))
    }

    /// Sets `alg` to RS256 and signs.
    pub fn sign_rs256(self, key: &RsaKey) -> String {
        self.alg("RS256").sign_rsa(key)
    }

    /// Sets `alg` to ES256 and signs.
    pub fn sign_es256(self, key: &EcKey) -> String {
        let token = self.alg("ES256");
        token.with_signature(&key.sign(token.signing_input().as_bytes()))
    }

    /// Sets `alg` to EdDSA and signs.
    pub fn sign_eddsa(self, key: &EdKey) -> String {
        let token = self.alg("EdDSA");
        token.with_signature(&key.sign(token.signing_input().as_bytes()))
    }

    /// Signs with HMAC using the header's `alg` (HS256/384/512).
    pub fn sign_hmac(&self, secret: &[u8]) -> String {
        let sig = hmac_sign(&self.header_alg(), secret, self.signing_input().as_bytes());
        self.with_signature(&sig)
    }

    /// Sets `alg` to HS256 and signs with `secret`.
    pub fn sign_hs256(self, secret: &[u8]) -> String {
        self.alg("HS256").sign_hmac(secret)
    }
}

/// A compact token from raw parts: any header text, any payload text, any
/// signature bytes (empty: an empty third segment).
pub fn raw(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes()),
        b64url(signature)
    )
}
