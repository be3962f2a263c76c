//! Key sets and tokens for `bench/run.sh`: an RS256 and an ES256 provider,
//! a 100-key RS256 key set, and a long-lived token for each.
//!
//! `cargo run --release --example bench_tokens -- OUT_DIR` writes
//! `jwks.json` (the RS256 and the ES256 key), `jwks-100.json` (the same plus
//! 98 other RSA keys), `token-rs256.txt` and `token-es256.txt`. The tokens are signed with the
//! same hand-rolled signer the tests use.

#[path = "../tests/common/tokens.rs"]
#[allow(dead_code)]
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;
use tokens::{EcKey, RsaKey, Token};

const ISSUER: &str = "https://bench.wristband.invalid";
const AUDIENCE: &str = "bench";

fn token(kid: &str) -> Token {
    let now = tokens::now();
    Token::new()
        .kid(kid)
        .claim("iss", json!(ISSUER))
        .claim("aud", json!(AUDIENCE))
        .claim("sub", json!("bench-user"))
        .claim("iat", json!(now))
        .claim("exp", json!(now + 86_400))
}

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: bench_tokens OUT_DIR");
        return ExitCode::from(2);
    };
    let rsa = RsaKey::generate("bench-rs");
    let ec = EcKey::generate("bench-es");
    // Other keys before the ones in use: the lookup cost of a large set.
    let mut many: Vec<serde_json::Value> = (0..98)
        .map(|i| RsaKey::generate(&format!("other-{i}")).jwk())
        .collect();
    many.push(rsa.jwk());
    many.push(ec.jwk());
    let files = [
        (
            "jwks.json",
            json!({ "keys": [rsa.jwk(), ec.jwk()] }).to_string(),
        ),
        ("jwks-100.json", json!({ "keys": many }).to_string()),
        ("token-rs256.txt", token(&rsa.kid).sign_rs256(&rsa)),
        ("token-es256.txt", token(&ec.kid).sign_es256(&ec)),
    ];
    for (name, content) in files {
        if let Err(error) = std::fs::write(out.join(name), content) {
            eprintln!("bench_tokens: {}: {error}", out.join(name).display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
