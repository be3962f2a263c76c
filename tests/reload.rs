//! A reload keeps what still holds (SPEC §2 SIGHUP, §5 guarantees 5 and 6,
//! §6 `/readyz`; issue 13, item 6). Each test first breaks something for
//! real — the JWKS server stopped, a session cached from a real Redis, a
//! target that died — then reloads through `Running::reload` (what SIGHUP
//! calls; `tests/lifecycle.rs` covers the signal itself) and checks that the
//! proxy still knows what it knew: keys and their age, the verified-token
//! cache, the Redis connection and its session cache, a target's health.
//!
//! The runtime is multi-threaded where Redis is involved: the harness
//! blocks while it runs `redis-cli`, and the proxy must keep serving (and
//! receiving invalidations) meanwhile.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::client::{Reply, get, raw};
use common::jwks::JwksServer;
use common::process::eventually;
use common::redis::RedisServer;
use common::tokens::{RsaKey, Token, now, random_id};
use common::upstream::{self, TestUpstream};
use common::{TestProxy, closed_port, metric_sample, start_proxy, upstream_toml};
use serde_json::json;

/// Reads `/metrics` and returns one sample (`None` when absent).
async fn metric(px: &TestProxy, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let metrics = get(px.admin, "/metrics", &[]).await.text();
    metric_sample(&metrics, name, labels)
}

// ---------------------------------------------------------------------------
// JWT: keys, their age and the verified-token cache (guarantee 6).

/// `/readyz` as it answers right now (no waiting: a reload must not make
/// the proxy unready, even for a moment).
async fn assert_ready_now(px: &TestProxy, why: &str) {
    let reply = get(px.admin, "/readyz", &[]).await;
    assert_eq!(reply.status, 200, "{why}: /readyz {}", reply.text());
}

/// The identity provider: a real JWKS endpoint serving one RSA key.
struct Idp {
    key: RsaKey,
    server: JwksServer,
}

/// A provider `idp` (`jwks_url`, audience `app`) in front of an echo
/// upstream, on a required route `/api`.
struct JwtFixture {
    idp: Idp,
    up: TestUpstream,
    px: TestProxy,
}

/// The provider table with `overrides` (same key: replaced): one RS256
/// key set refreshed every second, so a test sees a fetch fail soon after
/// the JWKS server stops.
fn provider_toml(server: &JwksServer, overrides: &[(&str, &str)]) -> String {
    const RELOAD: &[(&str, &str)] = &[
        ("algorithms", "[\"RS256\"]"),
        ("refresh_interval", "\"1s\""),
    ];
    common::jwks::provider_toml(server, &[RELOAD, overrides].concat())
}

impl JwtFixture {
    async fn start(overrides: &[(&str, &str)]) -> JwtFixture {
        let key = RsaKey::generate("k1");
        let server = JwksServer::start(vec![key.jwk()]).await;
        let up = upstream::echo().await;
        let idp = Idp { key, server };
        let px = start_proxy(&jwt_config(&idp.server, &up, overrides)).await;
        common::wait_ready(&px).await;
        JwtFixture { idp, up, px }
    }

    fn reload(&self, overrides: &[(&str, &str)]) {
        self.px
            .reload(&jwt_config(&self.idp.server, &self.up, overrides));
    }

    /// A valid token of `alice` for `aud`, signed with the published key.
    fn token(&self, aud: &str) -> String {
        self.token_with_kid(aud, "k1")
    }

    fn token_with_kid(&self, aud: &str, kid: &str) -> String {
        let now = now();
        Token::new()
            .kid(kid)
            .claim("iss", json!(self.idp.server.base_url()))
            .claim("sub", json!("alice"))
            .claim("aud", json!(aud))
            .claim("iat", json!(now))
            .claim("exp", json!(now + 300))
            .sign_rs256(&self.idp.key)
    }

    async fn bearer(&self, token: &str) -> Reply {
        let auth = format!("Authorization: Bearer {token}");
        get(self.px.addr, "/api/x", &[&auth]).await
    }

    async fn assert_accepted(&self, token: &str, why: &str) {
        let reply = self.bearer(token).await;
        assert_eq!(reply.status, 200, "{why}: {}", reply.text());
        assert_eq!(reply.seen().header("x-auth-user"), Some("alice"), "{why}");
    }

    /// Accepted, and the verdict came from the verified-token cache.
    async fn assert_accepted_from_the_cache(&self, token: &str, why: &str) {
        let hits = self.jwt_cache_hits().await;
        self.assert_accepted(token, why).await;
        assert_eq!(self.jwt_cache_hits().await, hits + 1.0, "{why}");
    }

    async fn jwt_cache_hits(&self) -> f64 {
        metric(&self.px, "wristband_cache_hits_total", &[("cache", "jwt")])
            .await
            .unwrap_or(0.0)
    }

    /// Stops the JWKS server and waits until the proxy has seen a refresh
    /// fail, so that what it serves from now on are stale keys. (Whether
    /// the port still accepts says nothing: a parallel test may bind it.)
    async fn stop_the_idp(&mut self) {
        self.idp.server.stop().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let failed = metric(
                &self.px,
                "wristband_jwks_refresh_total",
                &[("provider", "idp"), ("result", "error")],
            )
            .await;
            if failed.is_some_and(|n| n >= 1.0) {
                return;
            }
            assert!(Instant::now() < deadline, "no failed JWKS refresh in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn jwt_config(server: &JwksServer, up: &TestUpstream, overrides: &[(&str, &str)]) -> String {
    let routes = format!(
        "{}\n[identity]\nheaders = {{ \"X-Auth-User\" = \"sub\" }}\n\n[[routes]]\nname = \"api\"\npath = \"/api\"\nupstream = \"app\"\n",
        provider_toml(server, overrides)
    );
    upstream_toml(&[up.addr], "", &routes)
}

/// The bug of issue 13 (item 6): keys fetched, the JWKS server gone, stale
/// keys serving as designed — then a reload to `changes` must leave JWT
/// routes up and `/readyz` ready, with the same keys (no new key set that
/// would need a fetch the dead server cannot give). Returns the fixture
/// and the token it used.
async fn stale_keys_survive_a_reload_to(changes: &[(&str, &str)]) -> (JwtFixture, String) {
    let mut f = JwtFixture::start(&[]).await;
    let token = f.token("app");
    f.assert_accepted(&token, "fresh keys").await;
    f.stop_the_idp().await;
    f.assert_accepted(&token, "stale keys, JWKS server stopped")
        .await;

    f.reload(changes);
    assert_ready_now(&f.px, "after the reload").await;
    f.assert_accepted(&token, "after the reload, JWKS server stopped")
        .await;
    (f, token)
}

#[tokio::test]
async fn sighup_while_the_idp_is_down_keeps_the_keys_and_the_verified_cache() {
    let (f, token) = stale_keys_survive_a_reload_to(&[]).await;
    f.assert_accepted_from_the_cache(&token, "the verified-token cache was kept over the reload")
        .await;
}

#[tokio::test]
async fn sighup_while_the_idp_is_down_with_an_audience_added_keeps_the_keys() {
    let (f, _) = stale_keys_survive_a_reload_to(&[("audiences", "[\"app\", \"other\"]")]).await;
    f.assert_accepted(&f.token("other"), "the new audience, old keys")
        .await;
}

#[tokio::test]
async fn sighup_while_the_idp_is_down_with_new_fetch_settings_keeps_the_keys() {
    // Only when and how to fetch changed: the keys and their age carry over.
    let (f, token) = stale_keys_survive_a_reload_to(&[
        ("refresh_interval", "\"2s\""),
        ("fetch_timeout", "\"400ms\""),
        ("max_stale", "\"12h\""),
    ])
    .await;
    f.assert_accepted_from_the_cache(
        &token,
        "the verified-token cache was kept: the keys are the same",
    )
    .await;
}

/// Claims are checked against the current config on every cache hit: a
/// token cached under the old rules is refused once they no longer hold.
#[tokio::test]
async fn sighup_dropping_an_audience_refuses_a_token_cached_for_it() {
    let mut f = JwtFixture::start(&[]).await;
    let token = f.token("app");
    f.assert_accepted(&token, "cached").await;
    f.stop_the_idp().await;

    f.reload(&[("audiences", "[\"other\"]")]);
    let calls = f.up.requests.load(Ordering::SeqCst);
    let reply = f.bearer(&token).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json()["error"], "invalid_token");
    assert_eq!(f.up.requests.load(Ordering::SeqCst), calls, "fail closed");
}

/// Guarantee 6 holds across reloads: the start-up fetch counts once, not
/// once per reload, and the `min_refresh_interval` cooldown carries over.
#[tokio::test]
async fn sighup_with_an_unchanged_key_source_fetches_no_keys() {
    let slow = [
        ("refresh_interval", "\"1h\""),
        ("min_refresh_interval", "\"10m\""),
    ];
    let f = JwtFixture::start(&slow).await;
    assert_eq!(f.idp.server.fetches(), 1, "the start-up fetch");
    let variants: [&[(&str, &str)]; 3] = [
        &slow,
        &[slow[0], slow[1], ("audiences", "[\"app\", \"other\"]")],
        &[("refresh_interval", "\"2h\""), slow[1]],
    ];
    for changes in variants {
        f.reload(changes);
        common::wait_ready(&f.px).await;
        f.assert_accepted(&f.token("app"), "after the reload").await;
        assert_eq!(
            f.idp.server.fetches(),
            1,
            "a reload to {changes:?} fetched the keys again"
        );
    }
    // Within the cooldown an unknown kid is 401 at once (SPEC §6a).
    let unknown = f.token_with_kid("app", &random_id());
    let reply = f.bearer(&unknown).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(f.idp.server.fetches(), 1, "no fetch during the cooldown");
}

// ---------------------------------------------------------------------------
// Sessions: the Redis client, its connection and its cache (guarantee 5).

struct SessionFixture {
    redis: RedisServer,
    up: TestUpstream,
    px: TestProxy,
}

/// Redis with the session cache on. `store` and `sessions` are more lines
/// for those tables, never a key the base already sets (TOML refuses a key
/// given twice).
fn session_config(redis: &RedisServer, up: &TestUpstream, store: &str, sessions: &str) -> String {
    let tables = format!(
        "[store]\nkind = \"redis\"\nurl = \"{url}\"\n{store}\n\n\
         [sessions]\ncookie = \"sid\"\nkey_prefix = \"sessions:\"\ncache_ttl = \"30s\"\n{sessions}\n\n\
         [identity]\nheaders = {{ \"X-Auth-User\" = \"sub\" }}\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\naccept = [\"session\"]\n",
        url = redis.url()
    );
    upstream_toml(&[up.addr], "", &tables)
}

const USER_ID: &str = "user_field = \"user_id\"";
const TIMEOUT: &str = "command_timeout = \"250ms\"";

impl SessionFixture {
    async fn start() -> SessionFixture {
        let redis = RedisServer::start();
        let up = upstream::echo().await;
        let px = start_proxy(&session_config(&redis, &up, TIMEOUT, USER_ID)).await;
        common::wait_ready(&px).await;
        SessionFixture { redis, up, px }
    }

    fn reload(&self, store: &str, sessions: &str) {
        self.px
            .reload(&session_config(&self.redis, &self.up, store, sessions));
    }

    /// The `X-Auth-User` the upstream saw for `sid=id`.
    async fn user(&self, id: &str) -> Option<String> {
        let reply = get(self.px.addr, "/", &[&format!("Cookie: sid={id}")]).await;
        reply.seen().header("x-auth-user").map(str::to_owned)
    }

    async fn cache_hits(&self) -> f64 {
        metric(
            &self.px,
            "wristband_cache_hits_total",
            &[("cache", "sessions")],
        )
        .await
        .unwrap_or(0.0)
    }

    /// Caches session `id`: looked up once, then served from the cache.
    async fn cache(&self, id: &str) {
        assert!(self.user(id).await.is_some(), "the first lookup");
        let lookups = self.redis.command_calls("hgetall");
        let hits = self.cache_hits().await;
        assert!(self.user(id).await.is_some(), "the second lookup");
        assert_eq!(
            self.redis.command_calls("hgetall"),
            lookups,
            "the second lookup is a cache hit"
        );
        assert_eq!(self.cache_hits().await, hits + 1.0);
    }

    /// The ids of the connections the proxy holds to Redis: `CLIENT LIST`
    /// without the `redis-cli` asking (Redis 7 names its command
    /// `client|list`; the proxy's may be `client|tracking`).
    fn proxy_connections(&self) -> Vec<String> {
        self.redis
            .cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|line| !line.contains("cmd=client|list"))
            .filter_map(|line| line.split(' ').find(|f| f.starts_with("id=")))
            .map(str::to_owned)
            .collect()
    }

    /// Guarantee 5 still holds: a DEL ends the session within 100 ms.
    async fn assert_delete_ends_it_within_100ms(&self, id: &str) {
        let key = format!("sessions:{id}");
        assert_eq!(self.redis.cli(&["DEL", &key]), "1");
        let deleted = Instant::now();
        loop {
            let reply = get(self.px.addr, "/", &[&format!("Cookie: sid={id}")]).await;
            if reply.status == 401 {
                break;
            }
            assert!(
                deleted.elapsed() <= Duration::from_millis(100),
                "still served 100 ms after the DEL: {} {}",
                reply.status,
                reply.text()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_session_cache_and_a_delete_still_ends_the_session() {
    let f = SessionFixture::start().await;
    f.redis.cli(&["HSET", "sessions:s1", "user_id", "u1"]);
    f.cache("s1").await;
    let connections = f.proxy_connections();
    let lookups = f.redis.command_calls("hgetall");

    f.reload(TIMEOUT, USER_ID);
    assert_eq!(f.user("s1").await.as_deref(), Some("u1"));
    assert_eq!(
        f.redis.command_calls("hgetall"),
        lookups,
        "the first request after the reload is a cache hit"
    );
    assert_eq!(f.proxy_connections(), connections, "the same connection");
    f.assert_delete_ends_it_within_100ms("s1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_new_user_field_keeps_the_connection_and_forgets_cached_identities() {
    let f = SessionFixture::start().await;
    f.redis.cli(&[
        "HSET",
        "sessions:s1",
        "user_id",
        "u1",
        "email",
        "u1@example.com",
    ]);
    f.cache("s1").await;
    let connections = f.proxy_connections();

    f.reload(TIMEOUT, "user_field = \"email\"");
    assert_eq!(
        f.user("s1").await.as_deref(),
        Some("u1@example.com"),
        "an identity cached under the old rules is not served"
    );
    assert_eq!(f.proxy_connections(), connections, "the same connection");
    // The cache still works, and is still kept honest by tracking.
    let lookups = f.redis.command_calls("hgetall");
    assert_eq!(f.user("s1").await.as_deref(), Some("u1@example.com"));
    assert_eq!(f.redis.command_calls("hgetall"), lookups, "cached again");
    f.assert_delete_ends_it_within_100ms("s1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_new_store_closes_the_old_connection() {
    let f = SessionFixture::start().await;
    f.redis.cli(&["HSET", "sessions:s1", "user_id", "u1"]);
    f.cache("s1").await;
    let old = f.proxy_connections();
    assert_eq!(old.len(), 1, "one connection: {old:?}");

    f.reload("command_timeout = \"300ms\"", USER_ID);
    let closed = eventually(Duration::from_secs(10), || {
        let now = f.proxy_connections();
        now.len() == 1 && now != old
    })
    .await;
    assert!(
        closed,
        "the replaced client's connection is still open: {:?} (was {old:?})",
        f.proxy_connections()
    );
    common::wait_ready(&f.px).await;
    assert_eq!(f.user("s1").await.as_deref(), Some("u1"));
    f.assert_delete_ends_it_within_100ms("s1").await;
}

// ---------------------------------------------------------------------------
// Upstreams: pools and health state.

/// `POST /upload` with a body: never retried, so a pick of a dead target
/// shows as a 502.
async fn post(px: &TestProxy) -> Reply {
    raw(
        px.addr,
        "POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 2",
        b"hi",
    )
    .await
}

async fn target_healthy(px: &TestProxy, target: SocketAddr) -> Option<f64> {
    let target = format!("http://{target}");
    metric(
        px,
        "wristband_upstream_healthy",
        &[("upstream", "app"), ("target", &target)],
    )
    .await
}

const CATCH_ALL: &str =
    "[[routes]]\nname = \"all\"\npath = \"/\"\nupstream = \"app\"\nauth = \"public\"\n";

#[tokio::test]
async fn sighup_keeps_a_target_that_failed_its_health_checks_out_of_rotation() {
    let up = upstream::echo().await;
    let dead = closed_port();
    let health = "[upstreams.health_check]\npath = \"/healthz\"\ninterval = \"1s\"\nunhealthy_after = 2\nhealthy_after = 2";
    let config = upstream_toml(&[dead, up.addr], health, CATCH_ALL);
    let px = start_proxy(&config).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while target_healthy(&px, dead).await != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "the dead target never marked unhealthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    px.reload(&config);
    still_out_of_rotation(
        &px,
        dead,
        "the dead target counts as healthy again after the reload",
    )
    .await;
    assert_eq!(up.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn sighup_keeps_a_refused_target_passively_ejected() {
    let up = upstream::echo().await;
    let dead = closed_port();
    let config = upstream_toml(&[dead, up.addr], "retries = 1", CATCH_ALL);
    let px = start_proxy(&config).await;
    // Round robin starts at the dead target: refused, ejected, retried.
    assert_eq!(get(px.addr, "/x", &[]).await.status, 200);
    assert_eq!(target_healthy(&px, dead).await, Some(0.0), "ejected");

    px.reload(&config);
    still_out_of_rotation(&px, dead, "the ejection was forgotten by the reload").await;
}

/// `dead` is still reported unhealthy, and no request is sent to it (a
/// POST is not retried: sent there, it would fail).
async fn still_out_of_rotation(px: &TestProxy, dead: SocketAddr, why: &str) {
    assert_eq!(target_healthy(px, dead).await, Some(0.0), "{why}");
    for _ in 0..4 {
        let reply = post(px).await;
        assert_eq!(
            reply.status,
            200,
            "sent to the dead target: {}",
            reply.text()
        );
    }
}
