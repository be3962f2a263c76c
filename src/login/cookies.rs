//! The cookies of the login flow (SPEC §7): the session cookie it issues
//! and the binding cookie that ties a started login to one browser. Both
//! `HttpOnly`, `SameSite=Lax` (the IdP's redirect back is a top-level GET,
//! which Lax lets through) and, unless `cookie_secure = false` on a
//! loopback development setup, `Secure`.

use std::time::Duration;

use http::HeaderValue;

use super::error::Unavailable;
use crate::config::LoginConfig;

fn cookie(
    name: &str,
    value: &str,
    secure: bool,
    max_age: Option<Duration>,
) -> Result<HeaderValue, Unavailable> {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        text.push_str("; Secure");
    }
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    // Names come from the validated config and values are base64url.
    HeaderValue::from_str(&text).map_err(|_| Unavailable::Header)
}

/// The new session's cookie: a browser-session cookie, or one that lasts
/// `session_ttl` with `persistent = true`.
pub fn session(config: &LoginConfig, name: &str, id: &str) -> Result<HeaderValue, Unavailable> {
    let max_age = config.persistent.then_some(config.session_ttl);
    cookie(name, id, config.cookie_secure, max_age)
}

/// Removes a cookie (`Max-Age=0`).
pub fn clear(config: &LoginConfig, name: &str) -> Result<HeaderValue, Unavailable> {
    cookie(name, "", config.cookie_secure, Some(Duration::ZERO))
}

/// The binding cookie of a started login: it lives as long as the state.
pub fn binding(config: &LoginConfig, value: &str) -> Result<HeaderValue, Unavailable> {
    cookie(
        config.binding_cookie(),
        value,
        config.cookie_secure,
        Some(LoginConfig::STATE_TTL),
    )
}
