//! `[login]` (SPEC §7), and what it needs from the rest of the file:
//! `[sessions]` with `codec = "plain"` and `format = "hash"` (login writes
//! hash sessions), and a `__Host-` cookie only with `cookie_secure`.

use std::time::Duration;

use super::jwt::{check_fetch_url, is_loopback_host};
use super::routes::parse_host_pattern;
use super::{REQUIRED, Reported, V};
use crate::config::diag::{self, join};
use crate::config::raw::RawLogin;
use crate::config::{CookieCodec, HostPattern, LoginConfig, Secret, SessionFormat, SessionsConfig};
use crate::encoding::operator_base64_decode;

const T: &str = "login";

impl V<'_, '_> {
    pub(super) fn login(
        &mut self,
        raw: RawLogin,
        sessions: Option<&SessionsConfig>,
    ) -> Option<LoginConfig> {
        let issuer = self.login_issuer(raw.issuer.as_deref());
        let client_id = self
            .required_str(&join(T, "client_id"), raw.client_id.as_deref())
            .unwrap_or_default()
            .to_owned();
        let client_secret = match self.secret(
            T,
            "client_secret",
            raw.client_secret,
            raw.client_secret_file.as_deref(),
        ) {
            Ok(Some((secret, path))) if secret.is_empty() => {
                self.err(
                    &path,
                    "must not be empty (leave it out for a public client)",
                );
                None
            }
            Ok(found) => found.map(|(secret, _)| Secret::new(secret)),
            Err(Reported) => None,
        };
        let (redirect_uri, callback_path) = self.redirect_uri(raw.redirect_uri.as_deref());
        let scopes = self.scopes(raw.scopes);
        let login_path = self.endpoint_path(
            "login_path",
            raw.login_path,
            LoginConfig::DEFAULT_LOGIN_PATH,
        );
        let logout_path = self.endpoint_path(
            "logout_path",
            raw.logout_path,
            LoginConfig::DEFAULT_LOGOUT_PATH,
        );
        self.distinct_paths(&login_path, &logout_path, &callback_path);
        let claims = match raw.claims {
            None => owned(LoginConfig::DEFAULT_CLAIMS),
            Some(list) => {
                for (i, claim) in list.iter().enumerate() {
                    if claim.is_empty() || claim.starts_with("_wb_") {
                        self.err(
                            &diag::index(&join(T, "claims"), i),
                            "a claim name must not be empty or start with \"_wb_\" (wristband's own fields)",
                        );
                    }
                }
                list
            }
        };
        let session_ttl = self.positive_duration(
            &join(T, "session_ttl"),
            raw.session_ttl.as_deref(),
            LoginConfig::DEFAULT_SESSION_TTL,
        );
        let refresh_interval = self.refresh_interval(raw.refresh_interval.as_deref());
        let allowed_redirect_hosts = self.allowed_hosts(raw.allowed_redirect_hosts);
        let post_logout_redirect = self.post_logout_redirect(raw.post_logout_redirect);
        let encryption_keys =
            self.encryption_keys(raw.encryption_keys, raw.encryption_keys_file.as_deref());
        let cookie_secure = raw.cookie_secure.unwrap_or(true);
        if !cookie_secure && !callback_is_loopback_http(&redirect_uri) {
            self.err(
                &join(T, "cookie_secure"),
                "false only for plain-http development: login.redirect_uri must then be http:// on a loopback host",
            );
        }
        let ca_file = self.optional_file(&join(T, "ca_file"), raw.ca_file.as_deref());
        self.login_needs(sessions, cookie_secure);

        Some(LoginConfig {
            issuer: issuer?,
            client_id,
            client_secret,
            redirect_uri,
            callback_path,
            scopes,
            login_path,
            logout_path,
            claims,
            session_ttl,
            persistent: raw.persistent.unwrap_or(false),
            refresh_interval,
            allowed_redirect_hosts,
            post_logout_redirect,
            encryption_keys,
            cookie_secure,
            ca_file,
        })
    }

    /// Required; https except on a loopback host (as for JWKS). Kept as
    /// written: discovery must name exactly this issuer.
    fn login_issuer(&mut self, value: Option<&str>) -> Option<String> {
        let path = join(T, "issuer");
        let issuer = self.required_str(&path, value)?;
        if let Err(problem) = check_fetch_url(issuer) {
            self.err(&path, format!("\"{issuer}\" {problem}"));
            return None;
        }
        Some(issuer.to_owned())
    }

    /// Required: an absolute `https` URL (http only on a loopback host),
    /// without a fragment. Its path is the callback's.
    fn redirect_uri(&mut self, value: Option<&str>) -> (String, String) {
        let path = join(T, "redirect_uri");
        let Some(url) = self.required_str(&path, value) else {
            return (String::new(), String::new());
        };
        let parsed: Result<http::Uri, _> = url.parse();
        let problem = match &parsed {
            Err(_) => Some("is not a valid URL"),
            Ok(_) if url.contains('#') => Some("must not have a fragment"),
            Ok(uri) => match (uri.scheme_str(), uri.host()) {
                (Some("https"), Some(h)) if !h.is_empty() => None,
                (Some("http"), Some(h)) if is_loopback_host(h) => None,
                (Some("http"), Some(_)) => {
                    Some("must use https:// (http:// only for loopback hosts)")
                }
                _ => Some("must be an absolute https:// URL"),
            },
        };
        if let Some(problem) = problem {
            self.err(&path, format!("\"{url}\" {problem}"));
            return (url.to_owned(), String::new());
        }
        let callback = parsed.map_or_else(|_| String::new(), |uri| uri.path().to_owned());
        (url.to_owned(), callback)
    }

    /// `0s` (off), or at least a second: sessions keep their last refresh
    /// in whole seconds, so less would refresh on every request.
    fn refresh_interval(&mut self, value: Option<&str>) -> Duration {
        let path = join(T, "refresh_interval");
        let interval = self.duration(&path, value, Duration::ZERO);
        if !interval.is_zero() && interval < Duration::from_secs(1) {
            self.err(&path, "must be \"0s\" (off) or at least 1s");
            return Duration::ZERO;
        }
        interval
    }

    fn scopes(&mut self, value: Option<Vec<String>>) -> Vec<String> {
        let path = join(T, "scopes");
        let Some(scopes) = value else {
            return owned(LoginConfig::DEFAULT_SCOPES);
        };
        if !scopes.iter().any(|s| s == "openid") {
            self.err(&path, "must include \"openid\"");
        }
        for (i, scope) in scopes.iter().enumerate() {
            // RFC 6749 §3.3 scope-token: visible ASCII but `"` and `\`.
            let valid = !scope.is_empty()
                && scope
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            if !valid {
                self.err(
                    &diag::index(&path, i),
                    format!("\"{scope}\" is not a valid scope (RFC 6749 §3.3)"),
                );
            }
        }
        scopes
    }

    /// An absolute path that requests can reach as written: normalized
    /// already, so the path a request is matched in is this one.
    fn endpoint_path(&mut self, key: &str, value: Option<String>, default: &str) -> String {
        let path = join(T, key);
        let Some(p) = value else {
            return default.to_owned();
        };
        let normal = p.starts_with('/')
            && !p.contains("//")
            && !p.contains(['?', '#', '%', '\\'])
            && !p.split('/').any(|seg| seg == "." || seg == "..")
            && p.bytes().all(|b| b.is_ascii_graphic());
        if !normal {
            self.err(
                &path,
                format!("\"{p}\" must be an absolute path without \"//\", dot segments, '?', '#', '%' or '\\\\'"),
            );
            return default.to_owned();
        }
        p
    }

    fn distinct_paths(&mut self, login: &str, logout: &str, callback: &str) {
        if login == logout {
            self.err(&join(T, "logout_path"), "must differ from login.login_path");
        }
        for (key, path) in [("login_path", login), ("logout_path", logout)] {
            if path == callback {
                self.err(
                    &join(T, key),
                    "must differ from the path of login.redirect_uri (the callback)",
                );
            }
        }
    }

    fn allowed_hosts(&mut self, value: Option<Vec<String>>) -> Vec<HostPattern> {
        let path = join(T, "allowed_redirect_hosts");
        let mut out = Vec::new();
        for (i, host) in value.unwrap_or_default().iter().enumerate() {
            match parse_host_pattern(host) {
                Ok(pattern) => out.push(pattern),
                Err(problem) => self.err(&diag::index(&path, i), format!("\"{host}\" {problem}")),
            }
        }
        out
    }

    /// A same-origin path, or an absolute `https` URL (http on loopback).
    fn post_logout_redirect(&mut self, value: Option<String>) -> String {
        let Some(target) = value else {
            return LoginConfig::DEFAULT_POST_LOGOUT_REDIRECT.to_owned();
        };
        let is_path = target.starts_with('/')
            && !target.starts_with("//")
            && !target.contains('\\')
            && target.bytes().all(|b| b.is_ascii_graphic());
        let is_https =
            target
                .parse::<http::Uri>()
                .is_ok_and(|uri| match (uri.scheme_str(), uri.host()) {
                    (Some("https"), Some(h)) => !h.is_empty(),
                    (Some("http"), Some(h)) => is_loopback_host(h),
                    _ => false,
                });
        if !is_path && !is_https {
            self.err(
                &join(T, "post_logout_redirect"),
                format!("\"{target}\" must be a path (\"/bye\") or an absolute https:// URL (http:// only for loopback hosts)"),
            );
            return LoginConfig::DEFAULT_POST_LOGOUT_REDIRECT.to_owned();
        }
        target
    }

    /// Required; each 32 bytes in base64 (AES-256-GCM), none repeated.
    /// `encryption_keys_file` holds one key per line. A key never reaches
    /// a message.
    fn encryption_keys(&mut self, inline: Option<Vec<String>>, file: Option<&str>) -> Vec<Secret> {
        let path = join(T, "encryption_keys");
        let file_path = join(T, "encryption_keys_file");
        let (keys, at): (Vec<String>, &str) = match (inline, file) {
            (Some(_), Some(_)) => {
                self.err(
                    &file_path,
                    "give either encryption_keys or encryption_keys_file, not both",
                );
                return Vec::new();
            }
            (Some(list), None) => (list, &path),
            (None, Some(f)) => {
                let Some(text) = self.read_secret_file(&file_path, f) else {
                    return Vec::new();
                };
                let keys = text
                    .lines()
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty())
                    .collect();
                (keys, &file_path)
            }
            (None, None) => {
                self.err(&path, REQUIRED);
                return Vec::new();
            }
        };
        if keys.is_empty() {
            self.err(
                at,
                "must hold at least one key (32 random bytes, base64: `openssl rand -base64 32`)",
            );
        }
        let mut decoded: Vec<Vec<u8>> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            // A key from the file is named by its line there.
            let (key_path, which) = if file.is_some() {
                (file_path.clone(), format!("the key on line {} ", i + 1))
            } else {
                (diag::index(&path, i), String::new())
            };
            let problem = match operator_base64_decode(key) {
                None => Some("is not base64 (`openssl rand -base64 32` makes one)".to_owned()),
                Some(bytes) if bytes.len() != 32 => Some(format!(
                    "must be 32 bytes once decoded, not {}",
                    bytes.len()
                )),
                Some(bytes) if decoded.contains(&bytes) => {
                    Some("repeats an earlier key".to_owned())
                }
                Some(bytes) => {
                    decoded.push(bytes);
                    None
                }
            };
            if let Some(problem) = problem {
                self.err(&key_path, format!("{which}{problem}"));
            }
        }
        keys.into_iter().map(Secret::new).collect()
    }

    /// SPEC §7: login writes hash sessions that the plain codec names.
    fn login_needs(&mut self, sessions: Option<&SessionsConfig>, cookie_secure: bool) {
        let Some(sessions) = sessions else {
            self.err(
                T,
                "[login] needs a [sessions] section (with codec = \"plain\" and format = \"hash\"): it writes the sessions that [sessions] enforces",
            );
            return;
        };
        if sessions.codec != CookieCodec::Plain {
            self.err(
                "sessions.codec",
                "must be \"plain\" when [login] is on (login writes the session ids itself)",
            );
        }
        if sessions.format != SessionFormat::Hash {
            self.err(
                "sessions.format",
                "must be \"hash\" when [login] is on (login writes hash sessions)",
            );
        }
        if !sessions.sliding_ttl.is_zero() {
            self.err(
                "sessions.sliding_ttl",
                "must be \"0s\" when [login] is on: login.session_ttl is an absolute lifetime",
            );
        }
        if !cookie_secure && sessions.cookie.starts_with("__Host-") {
            self.err(
                "sessions.cookie",
                "a __Host- cookie needs login.cookie_secure = true (browsers refuse it without Secure)",
            );
        }
        if !cookie_secure && sessions.cookie.starts_with("__Secure-") {
            self.err(
                "sessions.cookie",
                "a __Secure- cookie needs login.cookie_secure = true (browsers refuse it without Secure)",
            );
        }
    }
}

/// `redirect_uri` is `http://` on a loopback host: plain-http development.
fn callback_is_loopback_http(redirect_uri: &str) -> bool {
    redirect_uri.parse::<http::Uri>().is_ok_and(|uri| {
        uri.scheme_str() == Some("http") && uri.host().is_some_and(is_loopback_host)
    })
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}
