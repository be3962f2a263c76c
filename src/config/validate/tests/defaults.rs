//! The defaults and bounds the docs state are the constants the validator
//! applies, so changing one without the other fails here.
//!
//! `config.example.toml` shows every key with its default (its header says
//! so, except where a comment says "example"); its comments state some
//! bounds; `README.md` and `docs/migration.md` state defaults in prose
//! (the demo listens where the proxy does by default).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::{
    AdminConfig, HealthCheck, JwtConfig, JwtProvider, LogConfig, ServerConfig, SessionsConfig,
    StoreConfig, UpstreamConfig,
};

/// A default as `config.example.toml` writes it.
enum Stated {
    Int(String),
    Duration(Duration),
    Text(&'static str),
    Addr(SocketAddr),
    /// A one-element list, as `server.listen` and `algorithms` are.
    OneOf(String),
}

fn int(n: impl ToString) -> Stated {
    Stated::Int(n.to_string())
}

/// Key path in `config.example.toml` (`[0]` for the first array element)
/// and the default it must show.
fn example_defaults() -> Vec<(&'static str, Stated)> {
    use Stated::{Addr, Duration as D, OneOf, Text};
    vec![
        (
            "server.listen",
            OneOf(ServerConfig::DEFAULT_LISTEN.to_string()),
        ),
        (
            "server.header_read_timeout",
            D(ServerConfig::DEFAULT_HEADER_READ_TIMEOUT),
        ),
        ("server.idle_timeout", D(ServerConfig::DEFAULT_IDLE_TIMEOUT)),
        (
            "server.max_header_bytes",
            int(ServerConfig::DEFAULT_MAX_HEADER_BYTES),
        ),
        (
            "server.max_connections",
            int(ServerConfig::DEFAULT_MAX_CONNECTIONS),
        ),
        (
            "server.shutdown_grace",
            D(ServerConfig::DEFAULT_SHUTDOWN_GRACE),
        ),
        ("admin.listen", Addr(AdminConfig::DEFAULT_LISTEN)),
        ("log.level", Text(LogConfig::DEFAULT_LEVEL)),
        (
            "store.command_timeout",
            D(StoreConfig::DEFAULT_COMMAND_TIMEOUT),
        ),
        ("sessions.cookie", Text(SessionsConfig::DEFAULT_COOKIE)),
        (
            "sessions.key_prefix",
            Text(SessionsConfig::DEFAULT_KEY_PREFIX),
        ),
        (
            "sessions.user_field",
            Text(SessionsConfig::DEFAULT_USER_FIELD),
        ),
        (
            "jwt.max_token_bytes",
            int(JwtConfig::DEFAULT_MAX_TOKEN_BYTES),
        ),
        (
            "jwt.verified_cache_size",
            int(JwtConfig::DEFAULT_VERIFIED_CACHE_SIZE),
        ),
        (
            "jwt.providers[0].audience_claim",
            Text(JwtProvider::DEFAULT_AUDIENCE_CLAIM),
        ),
        (
            "jwt.providers[0].algorithms",
            OneOf(JwtProvider::DEFAULT_ALGORITHM.as_str().to_owned()),
        ),
        ("jwt.providers[0].leeway", D(JwtProvider::DEFAULT_LEEWAY)),
        (
            "jwt.providers[0].refresh_interval",
            D(JwtProvider::DEFAULT_REFRESH_INTERVAL),
        ),
        (
            "jwt.providers[0].min_refresh_interval",
            D(JwtProvider::DEFAULT_MIN_REFRESH_INTERVAL),
        ),
        (
            "jwt.providers[0].fetch_timeout",
            D(JwtProvider::DEFAULT_FETCH_TIMEOUT),
        ),
        (
            "jwt.providers[0].max_stale",
            D(JwtProvider::DEFAULT_MAX_STALE),
        ),
        (
            "upstreams[0].connect_timeout",
            D(UpstreamConfig::DEFAULT_CONNECT_TIMEOUT),
        ),
        (
            "upstreams[0].response_timeout",
            D(UpstreamConfig::DEFAULT_RESPONSE_TIMEOUT),
        ),
        ("upstreams[0].retries", int(UpstreamConfig::DEFAULT_RETRIES)),
        (
            "upstreams[0].health_check.path",
            Text(HealthCheck::DEFAULT_PATH),
        ),
        (
            "upstreams[0].health_check.interval",
            D(HealthCheck::DEFAULT_INTERVAL),
        ),
        (
            "upstreams[0].health_check.unhealthy_after",
            int(HealthCheck::DEFAULT_UNHEALTHY_AFTER),
        ),
        (
            "upstreams[0].health_check.healthy_after",
            int(HealthCheck::DEFAULT_HEALTHY_AFTER),
        ),
    ]
}

/// A file of the crate, and text it must hold on one line, made from the
/// constants: the bounds in the example's comments, defaults in prose.
fn stated_in_text() -> Vec<(&'static str, String)> {
    vec![
        (
            "config.example.toml",
            format!(
                "# larger -> 431 ({} .. {})",
                ServerConfig::MIN_MAX_HEADER_BYTES,
                ServerConfig::MAX_MAX_HEADER_BYTES
            ),
        ),
        (
            "config.example.toml",
            format!("# at least {}", JwtConfig::MIN_MAX_TOKEN_BYTES),
        ),
        (
            "config.example.toml",
            format!(
                "# > 0 (then more than {}s)",
                SessionsConfig::SLIDING_TTL_MARGIN.as_secs()
            ),
        ),
        (
            "config.example.toml",
            format!("(0 .. {})", UpstreamConfig::MAX_RETRIES),
        ),
        (
            "README.md",
            format!(
                "`wristband demo` listens on `{}` (admin on `{}`",
                ServerConfig::DEFAULT_LISTEN,
                AdminConfig::DEFAULT_LISTEN
            ),
        ),
        (
            "docs/migration.md",
            format!(
                "`leeway` (default `\"{}\"`)",
                humantime::format_duration(JwtProvider::DEFAULT_LEEWAY)
            ),
        ),
    ]
}

fn read(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `a.b[0].c` in a TOML document.
fn lookup<'v>(table: &'v toml::Table, path: &str) -> Option<&'v toml::Value> {
    let mut segments = path.split('.');
    let first = segments.next()?;
    let mut value = element(table.get(key_of(first))?, first)?;
    for segment in segments {
        value = element(value.get(key_of(segment))?, segment)?;
    }
    Some(value)
}

fn key_of(segment: &str) -> &str {
    segment.split('[').next().unwrap_or(segment)
}

/// `value[i]` when the segment carries an index, else `value`.
fn element<'v>(value: &'v toml::Value, segment: &str) -> Option<&'v toml::Value> {
    match segment.split_once('[') {
        None => Some(value),
        Some((_, index)) => value.get(index.strip_suffix(']')?.parse::<usize>().ok()?),
    }
}

fn matches(value: &toml::Value, stated: &Stated) -> bool {
    match (stated, value) {
        (Stated::Int(n), toml::Value::Integer(v)) => v.to_string() == *n,
        (Stated::Duration(d), toml::Value::String(s)) => {
            humantime::parse_duration(s).ok() == Some(*d)
        }
        (Stated::Text(t), toml::Value::String(s)) => s == t,
        (Stated::Addr(a), toml::Value::String(s)) => s.parse::<SocketAddr>().ok() == Some(*a),
        (Stated::OneOf(one), toml::Value::Array(items)) => {
            items.len() == 1 && items[0].as_str() == Some(one.as_str())
        }
        _ => false,
    }
}

#[test]
fn the_defaults_and_bounds_the_docs_state_are_the_constants() {
    let example: toml::Table = match read("config.example.toml").parse() {
        Ok(table) => table,
        Err(e) => panic!("config.example.toml: {e}"),
    };
    let mut wrong = Vec::new();
    for (path, stated) in example_defaults() {
        match lookup(&example, path) {
            Some(value) if matches(value, &stated) => {}
            Some(value) => wrong.push(format!("config.example.toml {path} = {value}")),
            None => wrong.push(format!("config.example.toml has no {path}")),
        }
    }
    for (file, text) in stated_in_text() {
        if !read(file).lines().any(|line| line.contains(&text)) {
            wrong.push(format!("{file} does not say {text:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs and constants disagree:\n{}",
        wrong.join("\n")
    );
}
