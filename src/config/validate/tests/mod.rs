use std::time::Duration;

use crate::config::test_support::{errors, ok, one_error};
use crate::config::{
    AuthMode, Balance, CookieCodec, CredentialKind, Csrf, HeaderPattern, JwtAlgorithm, KeySource,
    LogFormat, OnUnauthenticated, SessionFormat, StoreKind, UnderscoreHeaders,
};

mod identity;
mod jwt;
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
    assert_eq!(s.listen, vec!["127.0.0.1:8080".parse().expect("addr")]);
    assert_eq!(s.header_read_timeout, Duration::from_secs(10));
    assert_eq!(s.idle_timeout, Duration::from_secs(60));
    assert_eq!(s.max_header_bytes, 16384);
    assert_eq!(s.max_connections, 10000);
    assert_eq!(s.shutdown_grace, Duration::from_secs(30));
    assert!(s.trusted_proxies.is_empty());
    assert_eq!(s.headers_with_underscores, UnderscoreHeaders::Drop);
    assert!(s.tls.is_none());
    assert_eq!(c.admin.listen, "127.0.0.1:9090".parse().expect("addr"));
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "info");
    assert!(c.log.access_log);
    assert_eq!(c.store.kind, StoreKind::Memory);
    assert!(c.store.url.is_none());
    assert_eq!(c.store.command_timeout, Duration::from_millis(250));
    assert!(!c.store.read_from_replicas);
    assert!(c.store.ca_file.is_none());
    assert!(c.sessions.is_none());
    assert!(c.jwt.header);
    assert!(c.jwt.cookie.is_none());
    assert!(c.jwt.forward_token);
    assert_eq!(c.jwt.max_token_bytes, 16384);
    assert_eq!(c.jwt.verified_cache_size, 100_000);
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
    assert_eq!(s.cookie, "sid");
    assert_eq!(s.codec, CookieCodec::Plain);
    assert!(s.secrets.is_empty());
    assert_eq!(s.key_prefix, "sessions:");
    assert_eq!(s.format, SessionFormat::Hash);
    assert_eq!(s.user_field, "user_id");
    assert!(s.list_fields.is_empty());
    assert!(s.forward_cookie);
    assert_eq!(s.cache_ttl, Duration::ZERO);
    assert_eq!(s.sliding_ttl, Duration::ZERO);

    let p = &c.jwt.providers[0];
    assert!(matches!(p.key_source, KeySource::Discovery));
    assert_eq!(p.audience_claim, "aud");
    assert_eq!(p.algorithms, vec![JwtAlgorithm::RS256]);
    assert_eq!(p.leeway, Duration::from_secs(30));
    assert_eq!(p.max_token_lifetime, None);
    assert!(p.claims.is_empty());
    assert_eq!(p.refresh_interval, Duration::from_secs(300));
    assert_eq!(p.min_refresh_interval, Duration::from_secs(30));
    assert_eq!(p.fetch_timeout, Duration::from_secs(5));
    assert_eq!(p.max_stale, Duration::from_secs(24 * 3600));
    assert!(p.ca_file.is_none());

    let u = &c.upstreams[0];
    assert_eq!(u.balance, Balance::RoundRobin);
    assert!(u.preserve_host);
    assert_eq!(u.connect_timeout, Duration::from_secs(2));
    assert_eq!(u.response_timeout, Duration::from_secs(30));
    assert_eq!(u.retries, 1);
    assert!(u.health_check.is_none());

    let r = &c.routes[0];
    assert_eq!(r.name, "/");
    assert_eq!(r.host, None);
    assert_eq!(r.path, "/");
    assert!(r.methods.is_empty());
    assert_eq!(r.upstream, 0);
    assert_eq!(r.auth, AuthMode::Required);
    assert_eq!(r.accept, vec![CredentialKind::Jwt, CredentialKind::Session]);
    assert!(r.require.is_empty());
    assert_eq!(r.on_unauthenticated, OnUnauthenticated::Deny);
    assert_eq!(r.csrf, Csrf::Off);

    let hc = ok(&format!("{UPSTREAM}[upstreams.health_check]\n")).upstreams[0]
        .health_check
        .clone()
        .expect("health check");
    assert_eq!(hc.path, "/healthz");
    assert_eq!(hc.interval, Duration::from_secs(5));
    assert_eq!(hc.unhealthy_after, 3);
    assert_eq!(hc.healthy_after, 2);
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
