//! A JWT provider the proxy trusts without a JWKS endpoint: HS256 with a
//! shared secret, tokens from [`super::tokens`]. For tests about what
//! happens after authentication (identity headers, assertions, redirects),
//! where key fetching is beside the point.

use serde_json::{Value, json};

use super::tokens::{Token, now};

pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "app";
const SECRET: &str = "a-long-shared-secret-for-the-idp-helper";

/// The `[[jwt.providers]]` table.
pub fn provider_toml() -> String {
    format!(
        r#"
[[jwt.providers]]
name = "idp"
issuer = "{ISSUER}"
hmac_secret = "{SECRET}"
audiences = ["{AUDIENCE}"]
algorithms = ["HS256"]
"#
    )
}

/// A valid token for `sub` (five minutes) with the extra `claims`.
pub fn token(sub: &str, claims: &[(&str, Value)]) -> String {
    let now = now();
    let mut token = Token::new()
        .claim("iss", json!(ISSUER))
        .claim("sub", json!(sub))
        .claim("aud", json!(AUDIENCE))
        .claim("iat", json!(now))
        .claim("exp", json!(now + 300));
    for (name, value) in claims {
        token = token.claim(name, value.clone());
    }
    token.sign_hs256(SECRET.as_bytes())
}

/// An HS256 token signed with a secret the proxy does not know.
pub fn forged_token(sub: &str) -> String {
    let now = now();
    Token::new()
        .claim("iss", json!(ISSUER))
        .claim("sub", json!(sub))
        .claim("aud", json!(AUDIENCE))
        .claim("iat", json!(now))
        .claim("exp", json!(now + 300))
        .sign_hs256(b"not-the-secret-the-proxy-knows-at-all")
}
