//! [store] and [sessions].

use std::time::Duration;

use crate::config::diag::{self, join};
use crate::config::raw::{RawSessions, RawStore};
use crate::config::{CookieCodec, Secret, SessionFormat, SessionsConfig, StoreConfig, StoreKind};

use super::{V, is_token};

impl V<'_, '_> {
    pub(super) fn store(&mut self, raw: RawStore) -> StoreConfig {
        let t = "store";
        let kind = self.choice(
            &join(t, "kind"),
            raw.kind.as_deref(),
            StoreKind::Memory,
            &[("memory", StoreKind::Memory), ("redis", StoreKind::Redis)],
        );
        let url = self.secret(t, "url", raw.url, raw.url_file.as_deref());
        let reported = url.is_err();
        let url = url.ok().flatten().filter(|(url, _)| !url.is_empty());
        match (&url, kind) {
            (None, StoreKind::Redis) if !reported => {
                self.err(&join(t, "url"), "kind = \"redis\" needs url (or url_file)");
            }
            (Some((url, path)), _) => {
                if let Err(problem) = check_redis_url(url) {
                    // Never the value: it may carry a password.
                    self.err(path, problem);
                }
            }
            (None, _) => {}
        }
        let command_timeout = self.positive_duration(
            &join(t, "command_timeout"),
            raw.command_timeout.as_deref(),
            StoreConfig::DEFAULT_COMMAND_TIMEOUT,
        );
        let ca_file = self.optional_file(&join(t, "ca_file"), raw.ca_file.as_deref());
        StoreConfig {
            kind,
            url: url.map(|(u, _)| Secret::new(u)),
            command_timeout,
            read_from_replicas: raw.read_from_replicas.unwrap_or(false),
            ca_file,
        }
    }

    pub(super) fn sessions(&mut self, raw: RawSessions) -> SessionsConfig {
        let t = "sessions";
        let cookie = self.non_empty(
            &join(t, "cookie"),
            raw.cookie,
            SessionsConfig::DEFAULT_COOKIE,
        );
        if !is_token(&cookie) {
            self.err(
                &join(t, "cookie"),
                format!("\"{cookie}\" is not a valid cookie name (RFC 6265 token)"),
            );
        }
        let codec = self.choice(
            &join(t, "codec"),
            raw.codec.as_deref(),
            CookieCodec::Plain,
            &[
                ("plain", CookieCodec::Plain),
                ("express", CookieCodec::Express),
            ],
        );

        let secrets_path = join(t, "secrets");
        let secrets_file_path = join(t, "secrets_file");
        let mut reported = false;
        let secrets: Vec<Secret> = match (raw.secrets, raw.secrets_file.as_deref()) {
            (Some(_), Some(_)) => {
                self.err(
                    &secrets_file_path,
                    "give either secrets or secrets_file, not both",
                );
                reported = true;
                Vec::new()
            }
            (Some(list), None) => {
                for (i, s) in list.iter().enumerate() {
                    if s.is_empty() {
                        self.err(&diag::index(&secrets_path, i), "a secret must not be empty");
                    }
                }
                list.into_iter().map(Secret::new).collect()
            }
            (None, Some(file)) => self
                .read_secret_file(&secrets_file_path, file)
                .or_else(|| {
                    reported = true;
                    None
                })
                .map(|text| {
                    text.lines()
                        .map(|l| l.strip_suffix('\r').unwrap_or(l))
                        .filter(|l| !l.trim().is_empty())
                        .map(Secret::new)
                        .collect()
                })
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        };
        if codec == CookieCodec::Express && secrets.is_empty() && !reported {
            let path = if raw.secrets_file.is_some() {
                secrets_file_path
            } else {
                secrets_path
            };
            self.err(&path, "codec = \"express\" needs at least one secret");
        }

        let key_prefix = raw
            .key_prefix
            .unwrap_or_else(|| SessionsConfig::DEFAULT_KEY_PREFIX.to_owned());
        let format = self.choice(
            &join(t, "format"),
            raw.format.as_deref(),
            SessionFormat::Hash,
            &[("hash", SessionFormat::Hash), ("json", SessionFormat::Json)],
        );
        let user_field_path = join(t, "user_field");
        let user_field = self.non_empty(
            &user_field_path,
            raw.user_field,
            SessionsConfig::DEFAULT_USER_FIELD,
        );
        if format == SessionFormat::Json
            && user_field.starts_with('/')
            && !is_json_pointer(&user_field)
        {
            self.err(
                &user_field_path,
                format!("\"{user_field}\" is not a valid JSON pointer (\"~\" must be followed by 0 or 1)"),
            );
        }
        let list_fields = raw.list_fields.unwrap_or_default();
        for (i, f) in list_fields.iter().enumerate() {
            if f.is_empty() {
                self.err(
                    &diag::index(&join(t, "list_fields"), i),
                    "must not be empty",
                );
            }
        }
        let cache_ttl = self.duration(
            &join(t, "cache_ttl"),
            raw.cache_ttl.as_deref(),
            Duration::ZERO,
        );
        let sliding_path = join(t, "sliding_ttl");
        let mut sliding_ttl =
            self.duration(&sliding_path, raw.sliding_ttl.as_deref(), Duration::ZERO);
        let margin = SessionsConfig::SLIDING_TTL_MARGIN;
        if !sliding_ttl.is_zero() && sliding_ttl <= margin {
            self.err(
                &sliding_path,
                format!("must be 0s (off) or more than {}s", margin.as_secs()),
            );
            sliding_ttl = Duration::ZERO;
        }

        SessionsConfig {
            cookie,
            codec,
            secrets,
            key_prefix,
            format,
            user_field,
            list_fields,
            forward_cookie: raw.forward_cookie.unwrap_or(true),
            cache_ttl,
            sliding_ttl,
        }
    }
}

/// RFC 6901: `~` only as `~0` or `~1`.
fn is_json_pointer(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first() == Some(&b'/')
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| *b != b'~' || matches!(bytes.get(i + 1), Some(b'0' | b'1')))
}

/// The scheme and shape of a Redis URL; the errors never quote it.
fn check_redis_url(url: &str) -> Result<(), String> {
    const SCHEMES: [&str; 4] = ["redis", "rediss", "redis-sentinel", "redis-cluster"];
    let expected = "must be a URL starting with redis://, rediss://, redis-sentinel:// or redis-cluster:// (value not shown: it may hold a password)";
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(expected.to_owned());
    };
    if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(expected.to_owned());
    }
    let authority = rest.split('/').next().unwrap_or("");
    let hosts = authority.rsplit('@').next().unwrap_or("");
    if hosts.is_empty() {
        return Err("has no host (value not shown: it may hold a password)".to_owned());
    }
    Ok(())
}
