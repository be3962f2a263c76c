use std::time::Duration;

use crate::config::test_support::{errors, ok, one_error};
use crate::config::{
    AdminConfig, AuthMode, Balance, CookieCodec, CredentialKind, Csrf, HeaderPattern, HealthCheck,
    JwtConfig, JwtProvider, KeySource, LogConfig, LogFormat, OnUnauthenticated, ServerConfig,
    SessionFormat, SessionsConfig, StoreConfig, StoreKind, UnderscoreHeaders, UpstreamConfig,
};

mod defaults;
mod forward_auth;
mod identity;
mod jwt;
mod login;
mod routes;
mod server;
mod store;
mod upstreams;

const UPSTREAM: &str = "[[upstreams]]\nname = \"app\"\ntargets = [\"http://127.0.0.1:3000\"]\n";
const PROVIDER: &str =
    "[[jwt.providers]]\nname = \"p\"\nissuer = \"https://idp.example.com\"\naudiences = [\"a\"]\n";

fn route(extra: &str) -> String {
    format!("{UPSTREAM}[[routes]]\nupstream = \"app\"\n{extra}\n")
}

fn provider(extra: &str) -> String {
    format!("{PROVIDER}{extra}\n")
}
#[test]
fn an_empty_file_gives_the_defaults_of_spec_section_3() {
    let c = ok("");
    let s = &c.server;
    assert_eq!(s.listen, vec![ServerConfig::DEFAULT_LISTEN]);
    assert_eq!(
        s.header_read_timeout,
        ServerConfig::DEFAULT_HEADER_READ_TIMEOUT
    );
    assert_eq!(s.idle_timeout, ServerConfig::DEFAULT_IDLE_TIMEOUT);
    assert_eq!(s.max_header_bytes, ServerConfig::DEFAULT_MAX_HEADER_BYTES);
    assert_eq!(s.max_connections, ServerConfig::DEFAULT_MAX_CONNECTIONS);
    assert_eq!(s.shutdown_grace, ServerConfig::DEFAULT_SHUTDOWN_GRACE);
    assert!(s.trusted_proxies.is_empty());
    assert_eq!(s.headers_with_underscores, UnderscoreHeaders::Drop);
    assert!(s.tls.is_none());
    assert_eq!(c.admin.listen, AdminConfig::DEFAULT_LISTEN);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, LogConfig::DEFAULT_LEVEL);
    assert!(c.log.access_log);
    assert_eq!(c.store.kind, StoreKind::Memory);
    assert!(c.store.url.is_none());
    assert_eq!(
        c.store.command_timeout,
        StoreConfig::DEFAULT_COMMAND_TIMEOUT
    );
    assert!(!c.store.read_from_replicas);
    assert!(c.store.ca_file.is_none());
    assert!(c.sessions.is_none());
    assert!(c.jwt.header);
    assert!(c.jwt.cookie.is_none());
    assert!(c.jwt.forward_token);
    assert_eq!(c.jwt.max_token_bytes, JwtConfig::DEFAULT_MAX_TOKEN_BYTES);
    assert_eq!(
        c.jwt.verified_cache_size,
        JwtConfig::DEFAULT_VERIFIED_CACHE_SIZE
    );
    assert!(c.jwt.providers.is_empty());
    assert!(c.upstreams.is_empty());
    assert!(c.routes.is_empty());
    let strip: Vec<HeaderPattern> = vec![
        HeaderPattern::Prefix("x-auth-".into()),
        HeaderPattern::Exact("x-forwarded-user".into()),
        HeaderPattern::Exact("x-forwarded-email".into()),
        HeaderPattern::Exact("x-forwarded-groups".into()),
        HeaderPattern::Exact("x-forwarded-preferred-username".into()),
        HeaderPattern::Exact("x-forwarded-access-token".into()),
        HeaderPattern::Prefix("x-amzn-oidc-".into()),
    ];
    assert_eq!(c.identity.strip, strip);
    assert_eq!(c.identity.headers.len(), 1);
    assert_eq!(c.identity.headers[0].0.as_str(), "x-auth-user");
    assert_eq!(c.identity.headers[0].1, "sub");
    assert!(c.identity.assertion.is_none());
    assert!(c.summary().contains("0 route(s)"));
}

#[test]
fn section_defaults_of_sessions_providers_upstreams_and_routes() {
    let c = ok(&format!("[sessions]\n{PROVIDER}{}", route("")));
    let s = c.sessions.expect("sessions");
    assert_eq!(s.cookie, SessionsConfig::DEFAULT_COOKIE);
    assert_eq!(s.codec, CookieCodec::Plain);
    assert!(s.secrets.is_empty());
    assert_eq!(s.key_prefix, SessionsConfig::DEFAULT_KEY_PREFIX);
    assert_eq!(s.format, SessionFormat::Hash);
    assert_eq!(s.user_field, SessionsConfig::DEFAULT_USER_FIELD);
    assert!(s.list_fields.is_empty());
    assert!(s.forward_cookie);
    assert_eq!(s.cache_ttl, Duration::ZERO);
    assert_eq!(s.sliding_ttl, Duration::ZERO);

    let p = &c.jwt.providers[0];
    assert!(matches!(p.key_source, KeySource::Discovery));
    assert_eq!(p.audience_claim, JwtProvider::DEFAULT_AUDIENCE_CLAIM);
    assert_eq!(p.algorithms, vec![JwtProvider::DEFAULT_ALGORITHM]);
    assert_eq!(p.leeway, JwtProvider::DEFAULT_LEEWAY);
    assert_eq!(p.max_token_lifetime, None);
    assert!(p.claims.is_empty());
    assert_eq!(p.refresh_interval, JwtProvider::DEFAULT_REFRESH_INTERVAL);
    assert_eq!(
        p.min_refresh_interval,
        JwtProvider::DEFAULT_MIN_REFRESH_INTERVAL
    );
    assert_eq!(p.fetch_timeout, JwtProvider::DEFAULT_FETCH_TIMEOUT);
    assert_eq!(p.max_stale, JwtProvider::DEFAULT_MAX_STALE);
    assert!(p.ca_file.is_none());

    let u = &c.upstreams[0];
    assert_eq!(u.balance, Balance::RoundRobin);
    assert!(u.preserve_host);
    assert_eq!(u.connect_timeout, UpstreamConfig::DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(u.response_timeout, UpstreamConfig::DEFAULT_RESPONSE_TIMEOUT);
    assert_eq!(u.retries, UpstreamConfig::DEFAULT_RETRIES);
    assert!(u.health_check.is_none());

    let r = &c.routes[0];
    assert_eq!(r.name, "/");
    assert_eq!(r.host, None);
    assert_eq!(r.path, "/");
    assert!(r.methods.is_empty());
    assert_eq!(r.upstream, Some(0));
    assert_eq!(r.auth, AuthMode::Required);
    assert_eq!(r.accept, vec![CredentialKind::Jwt, CredentialKind::Session]);
    assert!(r.require.is_empty());
    assert_eq!(r.on_unauthenticated, OnUnauthenticated::Deny);
    assert_eq!(r.csrf, Csrf::Off);

    let hc = ok(&format!("{UPSTREAM}[upstreams.health_check]\n")).upstreams[0]
        .health_check
        .clone()
        .expect("health check");
    assert_eq!(hc.path, HealthCheck::DEFAULT_PATH);
    assert_eq!(hc.interval, HealthCheck::DEFAULT_INTERVAL);
    assert_eq!(hc.unhealthy_after, HealthCheck::DEFAULT_UNHEALTHY_AFTER);
    assert_eq!(hc.healthy_after, HealthCheck::DEFAULT_HEALTHY_AFTER);
}

#[test]
fn durations() {
    one_error(
        "[server]\nidle_timeout = \"-5s\"\n",
        "server.idle_timeout",
        "invalid duration",
    );
    one_error(
        "[server]\nidle_timeout = \"soon\"\n",
        "server.idle_timeout",
        "invalid duration",
    );
    one_error(
        "[server]\nheader_read_timeout = \"0s\"\n",
        "server.header_read_timeout",
        "greater than 0s",
    );
    let c = ok("[server]\nshutdown_grace = \"0s\"\nidle_timeout = \"1m 30s\"\n");
    assert_eq!(c.server.shutdown_grace, Duration::ZERO);
    assert_eq!(c.server.idle_timeout, Duration::from_secs(90));
}

#[test]
fn all_errors_are_collected_not_just_the_first() {
    let errs = errors(&format!(
        "[server]\nmax_connections = 0\nidle_timeout = \"x\"\n[log]\nformat = \"xml\"\n{UPSTREAM}retries = 9\n\
         [[routes]]\nupstream = \"nope\"\npath = \"x\"\ncsrf = \"y\"\n"
    ));
    assert_eq!(errs.len(), 7, "{errs:#?}");
}
