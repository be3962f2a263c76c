//! Session authentication against a real Redis (SPEC §3 `[store]`,
//! `[sessions]`, §4, §5 guarantees 1, 5 and 7, §6 `/readyz`): standalone,
//! Sentinel and Cluster servers started by the tests on free ports
//! (`common::redis`), sessions written with `redis-cli` as an application
//! would write them, and the proxy started in-process.
//!
//! Every rejection also checks that the upstream was never called
//! (guarantee 1). "Redis was never asked" is read from the server's own
//! `INFO commandstats`, so it holds whatever client the proxy uses.
//!
//! The runtime is multi-threaded: the harness blocks while it runs
//! `redis-cli`, and the proxy must keep serving (and receiving
//! invalidations) meanwhile.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use common::client::{Reply, get};
use common::redis::{Cluster, RedisServer, SentinelSet};
use common::upstream::{self, TestUpstream};
use common::{TestProxy, start_proxy, upstream_toml};

/// The `[sessions]` keys every test starts from; a test overrides or adds
/// keys by name.
const SESSIONS: &[(&str, &str)] = &[
    ("cookie", "\"sid\""),
    ("key_prefix", "\"sessions:\""),
    ("format", "\"hash\""),
    ("user_field", "\"user_id\""),
    ("list_fields", "[\"roles\"]"),
];

const IDENTITY: &str = r#"
[identity]
headers = { "X-Auth-User" = "sub", "X-Auth-Roles" = "roles", "X-Auth-Email" = "email" }
"#;

/// What a test varies.
struct Setup<'a> {
    /// The `[store]` table's body.
    store: String,
    /// `[sessions]` overrides, applied in order.
    sessions: Vec<&'a [(&'a str, &'a str)]>,
    auth: &'a str,
    upstream_keys: &'a str,
}

impl<'a> Setup<'a> {
    fn redis(url: &str) -> Setup<'a> {
        Setup {
            store: format!("kind = \"redis\"\nurl = \"{url}\"\ncommand_timeout = \"250ms\""),
            sessions: Vec::new(),
            auth: "required",
            upstream_keys: "",
        }
    }

    fn sessions(mut self, overrides: &'a [(&'a str, &'a str)]) -> Setup<'a> {
        self.sessions.push(overrides);
        self
    }

    fn auth(mut self, auth: &'a str) -> Setup<'a> {
        self.auth = auth;
        self
    }

    fn toml(&self, targets: &[SocketAddr]) -> String {
        let mut keys: Vec<(&str, &str)> = SESSIONS.to_vec();
        for (k, v) in self.sessions.iter().copied().flatten() {
            match keys.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v,
                None => keys.push((k, v)),
            }
        }
        let sessions: Vec<String> = keys.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let route = format!(
            "[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\nauth = \"{}\"\naccept = [\"session\"]\n",
            self.auth
        );
        format!(
            "[store]\n{}\n\n[sessions]\n{}\n{IDENTITY}\n{}",
            self.store,
            sessions.join("\n"),
            upstream_toml(targets, self.upstream_keys, &route)
        )
    }

    /// Starts the proxy in front of `targets` and waits until it is ready
    /// (the store answers a ping).
    async fn start(&self, targets: &[SocketAddr]) -> TestProxy {
        let px = start_proxy(&self.toml(targets)).await;
        common::wait_ready(&px).await;
        px
    }
}

/// A standalone Redis, an echo upstream and the proxy.
struct Fixture {
    redis: RedisServer,
    up: TestUpstream,
    px: TestProxy,
}

async fn fixture(setup: impl FnOnce(&str) -> Setup<'static>) -> Fixture {
    let redis = RedisServer::start();
    let up = upstream::echo().await;
    let px = setup(&redis.url()).start(&[up.addr]).await;
    Fixture { redis, up, px }
}

async fn default_fixture() -> Fixture {
    fixture(Setup::redis).await
}

impl Fixture {
    fn forwarded(&self) -> usize {
        self.up.requests.load(Ordering::SeqCst)
    }

    async fn with_cookie(&self, cookie: &str) -> Reply {
        session_get(self.px.addr, cookie).await
    }
}

async fn session_get(addr: SocketAddr, cookie: &str) -> Reply {
    get(addr, "/", &[&format!("Cookie: {cookie}")]).await
}

/// fred learns a primary's replicas from its `ROLE` reply when it connects,
/// and a replica can already hold the data before that reply names it.
/// Waits, within 10 s, until `ROLE` names `replica`.
fn primary_lists(primary: &RedisServer, replica: &RedisServer) -> bool {
    let port = replica.port().to_string();
    common::redis::wait_until(Duration::from_secs(10), || {
        primary.cli(&["ROLE"]).lines().any(|line| line == port)
    })
}

/// fred opens replica connections after the primary's, so the proxy can be
/// ready before a read can be routed to a replica (seen on a loaded CI
/// machine). Looks `cookie` up until `replica` answers one, within 10 s.
async fn until_the_replica_is_read(px: SocketAddr, cookie: &str, replica: &RedisServer) -> bool {
    let before = replica.command_calls("hgetall");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        assert_eq!(session_get(px, cookie).await.status, 200, "{cookie}");
        if replica.command_calls("hgetall") > before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Sends the request every `step` until it answers `status`, for at most
/// `limit`; how long that took, or `None`.
async fn answers_within(
    addr: SocketAddr,
    cookie: &str,
    status: u16,
    step: Duration,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if session_get(addr, cookie).await.status == status {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(step).await;
    }
}

/// Guarantee 5's bound: `cookie` is refused (401) within 100 ms, asked
/// every 5 ms.
async fn assert_refused_within_100ms(addr: SocketAddr, cookie: &str, why: &str) {
    let refused = answers_within(
        addr,
        cookie,
        401,
        Duration::from_millis(5),
        Duration::from_millis(100),
    )
    .await;
    assert!(refused.is_some(), "{why}");
}

/// A 401 of SPEC §4 with its challenge and code.
fn assert_401(reply: &Reply, code: &str, why: &str) {
    assert_eq!(reply.status, 401, "{why}: {}", reply.text());
    assert_eq!(reply.json()["error"], code, "{why}: {}", reply.text());
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"wristband\""),
        "{why}: WWW-Authenticate {challenge:?}"
    );
    assert!(
        !challenge.contains("invalid_token"),
        "{why}: no JWT was presented: {challenge:?}"
    );
}

/// The 503 of SPEC §4 for an unavailable store.
fn assert_unavailable(reply: &Reply, why: &str) {
    assert_eq!(reply.status, 503, "{why}: {}", reply.text());
    assert_eq!(
        reply.json()["error"],
        "unavailable",
        "{why}: {}",
        reply.text()
    );
    assert_eq!(reply.header("retry-after"), Some("1"), "{why}: Retry-After");
}

/// 400 or 401 (a bad credential), never a 5xx and never forwarded.
fn assert_refused(reply: &Reply, why: &str) {
    assert!(
        reply.status == 400 || reply.status == 401,
        "{why}: expected 400/401, got {} {}",
        reply.status,
        reply.text()
    );
}

async fn session_cache_hits(px: &TestProxy) -> Option<f64> {
    let metrics = get(px.admin, "/metrics", &[]).await.text();
    common::metric_sample(
        &metrics,
        "wristband_cache_hits_total",
        &[("cache", "sessions")],
    )
}

/// Standard base64 with `=` padding.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// cookie-signature's `sign(value, secret)`:
/// `value + "." + base64(HMAC-SHA256(secret, value))` without `=`.
fn cookie_sign(value: &str, secret: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, value.as_bytes());
    format!("{value}.{}", base64(tag.as_ref()).trim_end_matches('='))
}

/// JavaScript's `encodeURIComponent`, as the `cookie` package applies it.
fn encode_uri_component(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The cookie express-session sets for `id`: `s%3A<id>.<sig>` URL-encoded.
fn express_cookie(id: &str, secret: &str) -> String {
    encode_uri_component(&format!("s:{}", cookie_sign(id, secret)))
}

// ---------------------------------------------------------------------------
// The hash format, identity headers, rejections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_hash_becomes_identity_headers_and_spoofed_ones_are_replaced() {
    let f = default_fixture().await;
    f.redis.cli(&[
        "HSET",
        "sessions:abc",
        "user_id",
        "42",
        "roles",
        "admin,dev",
        "email",
        "a@b",
    ]);
    let reply = get(
        f.px.addr,
        "/",
        &["Cookie: sid=abc", "X-Auth-User: root", "X-Auth-Roles: god"],
    )
    .await;
    let seen = reply.seen();
    assert_eq!(seen.headers["x-auth-user"], vec!["42".to_owned()]);
    assert_eq!(seen.headers["x-auth-roles"], vec!["admin,dev".to_owned()]);
    assert_eq!(seen.header("x-auth-email"), Some("a@b"));
    // forward_cookie defaults to true.
    assert!(
        seen.header("cookie")
            .unwrap_or_default()
            .contains("sid=abc"),
        "the cookie is forwarded by default: {:?}",
        seen.header("cookie")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_session_id_is_401_invalid_session_and_never_echoed() {
    let f = default_fixture().await;
    let id = "nosuchsession4f1c2a9b";
    let reply = f.with_cookie(&format!("sid={id}")).await;
    assert_401(&reply, "invalid_session", "unknown id");
    assert!(!reply.text().contains(id), "the id in the body");
    let metrics = get(f.px.admin, "/metrics", &[]).await.text();
    assert!(!metrics.contains(id), "the id in the metrics");
    assert_eq!(f.forwarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cookie_is_401_unauthenticated() {
    let f = default_fixture().await;
    let reply = get(f.px.addr, "/", &[]).await;
    assert_401(&reply, "unauthenticated", "no cookie");
    let reply = get(f.px.addr, "/", &["Cookie: other=1; theme=dark"]).await;
    assert_401(&reply, "unauthenticated", "other cookies only");
    assert_eq!(f.forwarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_session_is_refused_within_100ms() {
    let f = default_fixture().await;
    f.redis.cli(&["HSET", "sessions:gone", "user_id", "9"]);
    assert_eq!(f.with_cookie("sid=gone").await.status, 200);
    assert_eq!(f.redis.cli(&["DEL", "sessions:gone"]), "1");
    assert_refused_within_100ms(f.px.addr, "sid=gone", "still served 100 ms after the DEL").await;
    assert_401(
        &f.with_cookie("sid=gone").await,
        "invalid_session",
        "deleted",
    );
    assert_eq!(f.forwarded(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_without_the_user_field_or_with_an_empty_one_is_401() {
    let f = default_fixture().await;
    f.redis
        .cli(&["HSET", "sessions:nouser", "roles", "admin", "email", "x@y"]);
    f.redis.cli(&[
        "HSET",
        "sessions:emptyuser",
        "user_id",
        "",
        "roles",
        "admin",
    ]);
    for id in ["nouser", "emptyuser"] {
        let reply = f.with_cookie(&format!("sid={id}")).await;
        assert_401(&reply, "invalid_session", id);
    }
    // A key of another type under the prefix is not a session either: the
    // store answered, so 401 like a missing key (guarantee 5), never 503.
    f.redis.cli(&["SET", "sessions:astring", "user_id"]);
    let reply = f.with_cookie("sid=astring").await;
    assert_401(
        &reply,
        "invalid_session",
        "a string where a hash is expected",
    );
    assert_eq!(f.forwarded(), 0);
}

/// `wristband_store_errors_total` (0 when absent).
async fn store_errors(px: &TestProxy) -> f64 {
    let metrics = get(px.admin, "/metrics", &[]).await.text();
    metrics
        .lines()
        .find(|l| l.starts_with("wristband_store_errors_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Regression (issue 13.4): Redis's WRONGTYPE reply was taken for a store
/// failure (503, counted). The store answered: a key of another type is not
/// a session, 401 like a missing key (guarantee 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_is_401_and_not_a_store_error_in_the_hash_format() {
    let hash = default_fixture().await;
    hash.redis.cli(&["SET", "sessions:astring", "user_id"]);
    hash.redis
        .cli(&["RPUSH", "sessions:alist", "user_id", "u1"]);
    let errors = store_errors(&hash.px).await;
    for (id, why) in [
        ("astring", "hash format, a string key"),
        ("alist", "hash format, a list key"),
    ] {
        let reply = hash.with_cookie(&format!("sid={id}")).await;
        assert_401(&reply, "invalid_session", why);
    }
    assert_eq!(store_errors(&hash.px).await, errors, "not a store error");
    assert_eq!(hash.forwarded(), 0);
}

/// Bytes that are not UTF-8 in a session key: the store answered, and
/// what it holds is not a session: 401, not a store error (guarantee 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_holding_bytes_that_are_not_text_is_401_and_not_a_store_error() {
    let f = default_fixture().await;
    // redis-cli takes text arguments: the byte 0xFF is written by a script.
    f.redis.cli(&[
        "EVAL",
        "redis.call('HSET', KEYS[1], 'user_id', string.char(255)) return 1",
        "1",
        "sessions:binary",
    ]);
    let errors = store_errors(&f.px).await;
    let reply = f.with_cookie("sid=binary").await;
    assert_401(&reply, "invalid_session", "a field value that is not UTF-8");
    assert_eq!(store_errors(&f.px).await, errors, "not a store error");
    assert_eq!(f.forwarded(), 0);
}

/// Regression (issue 13.4), `format = "json"`: a hash where a string is
/// expected is 401, not 503; a store that does not answer is still 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_is_401_and_not_a_store_error_in_the_json_format() {
    let mut json = fixture(|url| Setup::redis(url).sessions(EXPRESS)).await;
    let id = "HashNotJs0nSess10n_-0123456789ab";
    json.redis
        .cli(&["HSET", &format!("sess:{id}"), "passport", "u-1"]);
    let errors = store_errors(&json.px).await;
    let reply = json
        .with_cookie(&format!("sid={}", express_cookie(id, "tobiiscool")))
        .await;
    assert_401(&reply, "invalid_session", "json format, a hash key");
    assert_eq!(store_errors(&json.px).await, errors, "not a store error");
    assert_eq!(json.forwarded(), 0);
    // A store that does not answer is still 503.
    json.redis.stop();
    assert_unavailable(
        &json
            .with_cookie(&format!("sid={}", express_cookie(id, "tobiiscool")))
            .await,
        "Redis down",
    );
    assert!(
        store_errors(&json.px).await > errors,
        "a store that did not answer is a store error"
    );
}

// ---------------------------------------------------------------------------
// Guarantee 5: the local cache and invalidation

/// FLUSHALL reaches a tracking client as an invalidation without keys:
/// everything cached goes at once, and the cache keeps caching (tracking
/// stayed on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_empties_the_cache_at_once_and_caching_goes_on() {
    let f = fixture(|url| Setup::redis(url).sessions(&[("cache_ttl", "\"30s\"")])).await;
    f.redis.cli(&["HSET", "sessions:fl1", "user_id", "f-1"]);
    for _ in 0..2 {
        assert_eq!(f.with_cookie("sid=fl1").await.status, 200);
    }
    let hits = session_cache_hits(&f.px).await.unwrap_or(0.0);
    assert!(hits >= 1.0, "served from the cache before the flush");

    assert_eq!(f.redis.cli(&["FLUSHALL"]), "OK");
    assert_refused_within_100ms(
        f.px.addr,
        "sid=fl1",
        "a flushed session outlived FLUSHALL by 100 ms",
    )
    .await;

    f.redis.cli(&["HSET", "sessions:fl2", "user_id", "f-2"]);
    let lookups = f.redis.command_calls("hgetall");
    for _ in 0..2 {
        assert_eq!(f.with_cookie("sid=fl2").await.status, 200);
    }
    assert_eq!(
        f.redis.command_calls("hgetall") - lookups,
        1,
        "after the flush the second lookup is a cache hit again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_session_is_refused_within_100ms_on_two_instances_with_a_cache() {
    let redis = RedisServer::start();
    let up = upstream::echo().await;
    let setup = Setup::redis(&redis.url()).sessions(&[("cache_ttl", "\"30s\"")]);
    let one = setup.start(&[up.addr]).await;
    let two = setup.start(&[up.addr]).await;
    redis.cli(&["HSET", "sessions:shared", "user_id", "77"]);

    for px in [&one, &two] {
        let seen = session_get(px.addr, "sid=shared").await.seen();
        assert_eq!(seen.header("x-auth-user"), Some("77"));
    }
    let lookups = redis.command_calls("hgetall");
    for px in [&one, &two] {
        let seen = session_get(px.addr, "sid=shared").await.seen();
        assert_eq!(seen.header("x-auth-user"), Some("77"));
    }
    assert_eq!(
        redis.command_calls("hgetall"),
        lookups,
        "the second request on each instance is served from its cache"
    );
    for px in [&one, &two] {
        let hits = session_cache_hits(px).await;
        assert!(
            hits.is_some_and(|h| h >= 1.0),
            "wristband_cache_hits_total{{cache=\"sessions\"}} = {hits:?}"
        );
    }

    assert_eq!(redis.cli(&["DEL", "sessions:shared"]), "1");
    let deleted = Instant::now();
    let mut refused = [None, None];
    while deleted.elapsed() <= Duration::from_millis(100) && refused.iter().any(Option::is_none) {
        for (i, px) in [&one, &two].into_iter().enumerate() {
            if refused[i].is_none() && session_get(px.addr, "sid=shared").await.status == 401 {
                refused[i] = Some(deleted.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        refused.iter().all(Option::is_some),
        "refused after the DEL by instance one at {:?}, two at {:?} (bound: 100 ms)",
        refused[0],
        refused[1]
    );
    for px in [&one, &two] {
        assert_401(
            &session_get(px.addr, "sid=shared").await,
            "invalid_session",
            "after DEL",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_session_is_seen_by_a_caching_instance() {
    let f = fixture(|url| Setup::redis(url).sessions(&[("cache_ttl", "\"30s\"")])).await;
    f.redis
        .cli(&["HSET", "sessions:promo", "user_id", "5", "roles", "user"]);
    let seen = f.with_cookie("sid=promo").await.seen();
    assert_eq!(seen.header("x-auth-roles"), Some("user"));
    f.redis
        .cli(&["HSET", "sessions:promo", "roles", "user,admin"]);
    let deadline = Instant::now() + Duration::from_millis(100);
    loop {
        let seen = f.with_cookie("sid=promo").await.seen();
        if seen.header("x-auth-roles") == Some("user,admin") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a changed session still served from the cache after 100 ms"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// Guarantee 1: fail closed when the store is down

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_killed_a_required_route_is_503_and_nothing_is_forwarded_until_it_returns() {
    let mut f = default_fixture().await;
    f.redis.cli(&["HSET", "sessions:k1", "user_id", "1"]);
    assert_eq!(f.with_cookie("sid=k1").await.status, 200);
    let before = f.forwarded();

    f.redis.stop();
    for i in 0..20 {
        let sent = Instant::now();
        let reply = f.with_cookie("sid=k1").await;
        assert_unavailable(&reply, &format!("request {i} with Redis down"));
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "request {i} took {:?}",
            sent.elapsed()
        );
    }
    assert_eq!(f.forwarded(), before, "0 of 20 forwarded with Redis down");

    f.redis.restart();
    // Nothing persisted: the application writes the session again.
    f.redis.cli(&["HSET", "sessions:k1", "user_id", "1"]);
    let took = answers_within(
        f.px.addr,
        "sid=k1",
        200,
        Duration::from_millis(50),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        took.is_some(),
        "not serving again 10 s after Redis came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_paused_requests_answer_503_within_the_command_timeout() {
    let f = default_fixture().await;
    f.redis.cli(&["HSET", "sessions:p1", "user_id", "1"]);
    assert_eq!(f.with_cookie("sid=p1").await.status, 200);
    let before = f.forwarded();

    f.redis.pause();
    for i in 0..5 {
        let sent = Instant::now();
        let reply = f.with_cookie("sid=p1").await;
        let took = sent.elapsed();
        assert_unavailable(&reply, &format!("request {i} with Redis paused"));
        // command_timeout is 250ms; 2 s is a bound, not a performance claim.
        assert!(took < Duration::from_secs(2), "request {i} took {took:?}");
    }
    assert_eq!(f.forwarded(), before, "nothing forwarded while paused");

    f.redis.resume();
    let took = answers_within(
        f.px.addr,
        "sid=p1",
        200,
        Duration::from_millis(50),
        Duration::from_secs(10),
    )
    .await;
    assert!(took.is_some(), "not serving again 10 s after SIGCONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_route_forwards_without_identity_when_redis_is_down() {
    let mut f = fixture(|url| Setup::redis(url).auth("optional")).await;
    f.redis.cli(&["HSET", "sessions:o1", "user_id", "11"]);
    let seen = f.with_cookie("sid=o1").await.seen();
    assert_eq!(
        seen.header("x-auth-user"),
        Some("11"),
        "identity when valid"
    );

    f.redis.stop();
    let reply = get(f.px.addr, "/", &["Cookie: sid=o1", "X-Auth-User: spoofed"]).await;
    assert_eq!(
        reply.status,
        200,
        "optional never rejects: {}",
        reply.text()
    );
    let seen = reply.seen();
    assert_eq!(seen.header("x-auth-user"), None, "no identity, not a spoof");
    assert_eq!(seen.header("x-auth-roles"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_store_while_redis_is_down_and_recovers() {
    let mut f = default_fixture().await;
    f.redis.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    let down = loop {
        let reply = get(f.px.admin, "/readyz", &[]).await;
        if reply.status == 503 {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "readyz still {} 5 s after Redis died",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        down.text().to_ascii_lowercase().contains("store"),
        "readyz names the store: {}",
        down.text()
    );
    let _: serde_json::Value = down.json();

    f.redis.restart();
    common::wait_ready(&f.px).await;
}

/// A proxy started while Redis is down serves 503 (never a pass) and
/// recovers by itself once Redis comes up: fred ends its connection task
/// when the first connection fails, and the store starts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_while_redis_is_down_recovers_when_it_comes_up() {
    let mut redis = RedisServer::start();
    redis.stop();
    let up = upstream::echo().await;
    let px = start_proxy(&Setup::redis(&redis.url()).toml(&[up.addr])).await;
    assert_unavailable(&session_get(px.addr, "sid=late1").await, "Redis not up yet");
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);

    redis.restart();
    redis.cli(&["HSET", "sessions:late1", "user_id", "l-1"]);
    let took = answers_within(
        px.addr,
        "sid=late1",
        200,
        Duration::from_millis(50),
        Duration::from_secs(10),
    )
    .await;
    assert!(took.is_some(), "not serving 10 s after Redis came up");
    common::wait_ready(&px).await;
}

// ---------------------------------------------------------------------------
// express-session / connect-redis

const EXPRESS: &[(&str, &str)] = &[
    ("format", "\"json\""),
    ("key_prefix", "\"sess:\""),
    ("user_field", "\"/passport/user\""),
    ("codec", "\"express\""),
    ("secrets", "[\"tobiiscool\", \"old\"]"),
    ("list_fields", "[]"),
];

/// What connect-redis writes for a passport login.
fn connect_redis_session(expires: &str, user: &str) -> String {
    format!(
        r#"{{"cookie":{{"originalMaxAge":null,"expires":"{expires}","httpOnly":true,"path":"/"}},"passport":{{"user":"{user}"}}}}"#
    )
}

#[test]
fn the_test_signer_reproduces_cookie_signatures_own_vector() {
    assert_eq!(
        cookie_sign("hello", "tobiiscool"),
        "hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"
    );
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(encode_uri_component("s:a+b/c"), "s%3Aa%2Bb%2Fc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_redis_session_with_an_express_signed_cookie_is_accepted_under_every_secret() {
    let f = fixture(|url| Setup::redis(url).sessions(EXPRESS)).await;
    let id = "wF3hZ9kLq2Yv8TbXcN1mR4sP0dE6uJ7a";
    f.redis.cli(&[
        "SET",
        &format!("sess:{id}"),
        &connect_redis_session("2099-01-01T00:00:00.000Z", "u-7"),
    ]);
    let cookie = express_cookie(id, "tobiiscool");
    assert!(cookie.starts_with("s%3A"), "{cookie}");
    let seen = f.with_cookie(&format!("sid={cookie}")).await.seen();
    assert_eq!(seen.header("x-auth-user"), Some("u-7"));

    // Rotation: the old secret still verifies.
    let seen = f
        .with_cookie(&format!("sid={}", express_cookie(id, "old")))
        .await
        .seen();
    assert_eq!(seen.header("x-auth-user"), Some("u-7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_express_signature_is_401_and_never_reaches_redis() {
    let f = fixture(|url| Setup::redis(url).sessions(EXPRESS)).await;
    let id = "Qm9vb1Zh2k3nLx8RtYp4cW7eS5dA0fG1";
    f.redis.cli(&[
        "SET",
        &format!("sess:{id}"),
        &connect_redis_session("2099-01-01T00:00:00.000Z", "u-8"),
    ]);
    let good = format!("s:{}", cookie_sign(id, "tobiiscool"));
    let (value, sig) = good.rsplit_once('.').expect("signed");
    let flipped = format!(
        "{value}.{}{}",
        if sig.starts_with('A') { 'B' } else { 'A' },
        &sig[1..]
    );
    let gets = f.redis.command_calls("get");
    for (why, cookie) in [
        (
            "unknown secret",
            express_cookie(id, "not-a-configured-secret"),
        ),
        ("flipped signature", encode_uri_component(&flipped)),
        (
            "signature removed",
            encode_uri_component(&format!("s:{id}")),
        ),
        ("unsigned id", id.to_owned()),
        (
            "signature of another id",
            encode_uri_component(&format!(
                "s:{id}.{}",
                cookie_sign("other", "tobiiscool")
                    .rsplit_once('.')
                    .expect("sig")
                    .1
            )),
        ),
    ] {
        let reply = f.with_cookie(&format!("sid={cookie}")).await;
        assert_eq!(reply.status, 401, "{why}: {}", reply.text());
        assert_eq!(reply.json()["error"], "invalid_session", "{why}");
    }
    assert_eq!(
        f.redis.command_calls("get"),
        gets,
        "a bad signature must not cost a Redis lookup"
    );
    assert_eq!(f.forwarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_redis_session_whose_cookie_expired_is_401() {
    let f = fixture(|url| Setup::redis(url).sessions(EXPRESS)).await;
    let id = "ExpiredSess10nXyZ_-0123456789abc";
    f.redis.cli(&[
        "SET",
        &format!("sess:{id}"),
        &connect_redis_session("2000-01-01T00:00:00.000Z", "u-9"),
    ]);
    let reply = f
        .with_cookie(&format!("sid={}", express_cookie(id, "tobiiscool")))
        .await;
    assert_401(&reply, "invalid_session", "cookie.expires in the past");
    assert_eq!(f.forwarded(), 0);
    // SPEC §6: an expired session is counted as `expired`, once, and not
    // also as `invalid`.
    let metrics = get(f.px.admin, "/metrics", &[]).await.text();
    let count = |outcome: &str| {
        common::metric_sample(
            &metrics,
            "wristband_auth_total",
            &[("route", "app"), ("kind", "session"), ("outcome", outcome)],
        )
    };
    assert_eq!(count("expired"), Some(1.0), "{metrics}");
    assert_eq!(count("invalid"), None, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_connect_redis_session_is_refused_once_its_cookie_expires() {
    let f = fixture(|url| {
        Setup::redis(url)
            .sessions(EXPRESS)
            .sessions(&[("cache_ttl", "\"30s\"")])
    })
    .await;
    let id = "CachedSess10nXyZ_-0123456789abcd";
    let expires = SystemTime::now() + Duration::from_secs(2);
    f.redis.cli(&[
        "SET",
        &format!("sess:{id}"),
        &connect_redis_session(
            &humantime::format_rfc3339_millis(expires).to_string(),
            "u-8",
        ),
    ]);
    let cookie = format!("sid={}", express_cookie(id, "tobiiscool"));
    let hits_before = session_cache_hits(&f.px).await.unwrap_or(0.0);
    for _ in 0..2 {
        let seen = f.with_cookie(&cookie).await.seen();
        assert_eq!(seen.header("x-auth-user"), Some("u-8"));
    }
    let hits = session_cache_hits(&f.px).await.unwrap_or(0.0);
    assert!(
        hits > hits_before,
        "the second request was not served from the cache"
    );

    // The key is still in Redis and still cached: only `cookie.expires` has
    // passed, and the cached copy must honour it.
    let wait = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(300)).await;
    let reply = f.with_cookie(&cookie).await;
    assert_401(
        &reply,
        "invalid_session",
        "a cached session past cookie.expires",
    );
    assert!(
        session_cache_hits(&f.px).await.unwrap_or(0.0) > hits,
        "the refusal did not come from the cache"
    );
    assert_eq!(f.forwarded(), 2);
}

/// Regression (issue 13.7): a `cookie.expires` that is not a date string
/// was read two ways. One rule now, with the cache on and off: null or
/// absent never expires; anything else that is not a date is an invalid
/// session (fail closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_expires_that_is_not_a_date_is_401_with_the_cache_on_and_off() {
    const UNCACHED: &[(&str, &str)] = &[("cache_ttl", "\"0s\"")];
    const CACHED: &[(&str, &str)] = &[("cache_ttl", "\"30s\"")];
    for cache in [UNCACHED, CACHED] {
        let cache_ttl = cache[0].1;
        let f = fixture(|url| Setup::redis(url).sessions(EXPRESS).sessions(cache)).await;
        let user = |expires: &str| {
            format!(
                r#"{{"cookie":{{"expires":{expires},"path":"/"}},"passport":{{"user":"u-5"}}}}"#
            )
        };
        for (n, expires, valid) in [
            (0, "null", true),
            (1, "\"2099-01-01T00:00:00.000Z\"", true),
            (2, "\"not a date\"", false),
            (3, "\"\"", false),
            (4, "4102444800000", false),
            (5, "true", false),
            (6, "{}", false),
            (7, "[\"2099-01-01T00:00:00.000Z\"]", false),
        ] {
            let id = format!("ExpiresCase{n}_-0123456789abcdefgh");
            f.redis.cli(&["SET", &format!("sess:{id}"), &user(expires)]);
            let cookie = format!("sid={}", express_cookie(&id, "tobiiscool"));
            // Twice: the second answer may come from the cache.
            for attempt in 0..2 {
                let why =
                    format!("cache_ttl = {cache_ttl}, expires = {expires}, attempt {attempt}");
                let reply = f.with_cookie(&cookie).await;
                if valid {
                    assert_eq!(reply.seen().header("x-auth-user"), Some("u-5"), "{why}");
                } else {
                    assert_401(&reply, "invalid_session", &why);
                }
            }
        }
        assert_eq!(f.forwarded(), 4, "cache_ttl = {cache_ttl}");
    }
}

/// Regression (issue 13.7): `%+5` was decoded as the byte 5 (a sign read as
/// a hex digit). An escape needs two hex digits; the cookie is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_express_cookie_with_a_signed_escape_is_401() {
    let f = fixture(|url| Setup::redis(url).sessions(EXPRESS)).await;
    let id = "SignedEscapeSess10n_-0123456789a";
    f.redis.cli(&[
        "SET",
        &format!("sess:{id}"),
        &connect_redis_session("2099-01-01T00:00:00.000Z", "u-6"),
    ]);
    let good = express_cookie(id, "tobiiscool");
    assert_eq!(
        f.with_cookie(&format!("sid={good}"))
            .await
            .seen()
            .header("x-auth-user"),
        Some("u-6")
    );
    let gets = f.redis.command_calls("get");
    for (why, cookie) in [
        ("%+5 in the prefix", good.replacen("%3A", "%+5%3A", 1)),
        ("%+5 in the id", good.replacen("Escape", "Esc%+5ape", 1)),
        ("%-5", good.replacen("Escape", "Esc%-5ape", 1)),
        ("%+3A for the colon", good.replacen("%3A", "%+3A", 1)),
    ] {
        let reply = f.with_cookie(&format!("sid={cookie}")).await;
        assert_401(&reply, "invalid_session", why);
    }
    assert_eq!(
        f.redis.command_calls("get"),
        gets,
        "a malformed escape costs no Redis lookup"
    );
    assert_eq!(f.forwarded(), 1);
}

// ---------------------------------------------------------------------------
// Weird cookies: 400/401, never 500, never forwarded

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weird_cookie_values_are_400_or_401_never_500() {
    let f = default_fixture().await;
    let huge = format!("sid={}", "a".repeat(8192));
    let many: Vec<String> = (0..50).map(|i| format!("c{i}=v{i}")).collect();
    let many = many.join("; ");
    let cases: Vec<(&str, String)> = vec![
        ("8 KB value", huge),
        ("non-ASCII", "sid=s\u{e9}ssion\u{2603}".to_owned()),
        ("quoted", "sid=\"nosuchquoted\"".to_owned()),
        ("inner quote", "sid=ab\"cd".to_owned()),
        ("50 cookies, no sid", many.clone()),
        ("semicolons only", ";;;".to_owned()),
        ("no equals", "sid".to_owned()),
        ("spaces", "sid = abc def".to_owned()),
        ("comma", "sid=a,sid=b".to_owned()),
        ("percent", "sid=%00%0d%0a".to_owned()),
    ];
    for (why, cookie) in &cases {
        let reply = get(f.px.addr, "/", &[&format!("Cookie: {cookie}")]).await;
        assert_refused(&reply, why);
    }
    // Bytes that are not UTF-8 at all.
    let head = format!("GET / HTTP/1.1\r\nHost: {}\r\nCookie: sid=", f.px.addr);
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(b"\xff\xfe\x80abc");
    let reply = common::client::raw_bytes(f.px.addr, &bytes, b"").await;
    assert_refused(&reply, "invalid UTF-8");
    assert_eq!(f.forwarded(), 0, "no weird cookie reached the upstream");

    // Among 49 other cookies a valid one still works.
    f.redis.cli(&["HSET", "sessions:crowd", "user_id", "3"]);
    let reply = f.with_cookie(&format!("{many}; sid=crowd")).await;
    assert_eq!(reply.seen().header("x-auth-user"), Some("3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_session_cookie_counts_as_no_credential() {
    let f = default_fixture().await;
    let reply = f.with_cookie("sid=").await;
    assert_401(&reply, "unauthenticated", "sid=");
    assert_eq!(f.forwarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_session_cookies_with_different_values_are_400_ambiguous_credentials() {
    let f = default_fixture().await;
    f.redis.cli(&["HSET", "sessions:mine", "user_id", "1"]);
    f.redis.cli(&["HSET", "sessions:theirs", "user_id", "2"]);
    for cookie in ["sid=mine; sid=theirs", "sid=theirs; a=1; sid=mine"] {
        let reply = f.with_cookie(cookie).await;
        assert_eq!(reply.status, 400, "{cookie}: {}", reply.text());
        assert_eq!(reply.json()["error"], "ambiguous_credentials", "{cookie}");
        assert!(!reply.text().contains("mine") && !reply.text().contains("theirs"));
    }
    // The same value twice is not ambiguous.
    let reply = f.with_cookie("sid=mine; sid=mine").await;
    assert_eq!(reply.seen().header("x-auth-user"), Some("1"));
    assert_eq!(f.forwarded(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookies_split_over_two_cookie_headers_are_still_ambiguous() {
    let f = default_fixture().await;
    f.redis.cli(&["HSET", "sessions:mine", "user_id", "1"]);
    f.redis.cli(&["HSET", "sessions:theirs", "user_id", "2"]);
    let reply = get(f.px.addr, "/", &["Cookie: sid=mine", "Cookie: sid=theirs"]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["error"], "ambiguous_credentials");
    assert_eq!(f.forwarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_overlong_id_is_401_without_touching_redis() {
    let f = default_fixture().await;
    let long = "a".repeat(300);
    // Each key exists with a valid user: only the id check stands between
    // these cookies and a 200.
    let ids = ["a:b", "a.b", "*", "a{b}", "..", "a/b", "a~b", long.as_str()];
    for id in ids {
        f.redis
            .cli(&["HSET", &format!("sessions:{id}"), "user_id", "evil"]);
    }
    let lookups = f.redis.command_calls("hgetall");
    for id in ids {
        let reply = f.with_cookie(&format!("sid={id}")).await;
        assert_eq!(
            reply.status,
            401,
            "{}: {}",
            &id[..id.len().min(20)],
            reply.text()
        );
    }
    assert_eq!(
        f.redis.command_calls("hgetall"),
        lookups,
        "a malformed id reached Redis"
    );
    assert_eq!(f.forwarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_cookie_false_removes_only_the_session_cookie() {
    let f = fixture(|url| Setup::redis(url).sessions(&[("forward_cookie", "false")])).await;
    f.redis.cli(&["HSET", "sessions:fc", "user_id", "4"]);
    let seen = f.with_cookie("theme=dark; sid=fc; lang=en").await.seen();
    assert_eq!(seen.header("x-auth-user"), Some("4"));
    let cookies = seen
        .headers
        .get("cookie")
        .map(|v| v.join("; "))
        .unwrap_or_default();
    assert!(
        !cookies.contains("sid"),
        "session cookie forwarded: {cookies}"
    );
    assert!(cookies.contains("theme=dark"), "{cookies}");
    assert!(cookies.contains("lang=en"), "{cookies}");

    // Only the session cookie: no empty Cookie header is left behind.
    let seen = f.with_cookie("sid=fc").await.seen();
    let cookies = seen.headers.get("cookie").cloned().unwrap_or_default();
    assert!(
        cookies.iter().all(|c| !c.contains("sid")),
        "session cookie forwarded: {cookies:?}"
    );
}

// ---------------------------------------------------------------------------
// sliding_ttl

fn ttl(redis: &RedisServer, key: &str) -> i64 {
    redis.cli(&["TTL", key]).parse().expect("TTL is a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_ttl_extends_a_short_ttl_and_leaves_keys_without_ttl_alone() {
    let f = fixture(|url| Setup::redis(url).sessions(&[("sliding_ttl", "\"3600s\"")])).await;
    f.redis.cli(&["HSET", "sessions:forever", "user_id", "1"]);
    f.redis.cli(&["HSET", "sessions:slide", "user_id", "2"]);
    f.redis.cli(&["EXPIRE", "sessions:slide", "100"]);

    assert_eq!(f.with_cookie("sid=forever").await.status, 200);
    assert_eq!(f.with_cookie("sid=slide").await.status, 200);
    let raised = common::redis::wait_until(Duration::from_secs(2), || {
        ttl(&f.redis, "sessions:slide") > 3500
    });
    assert!(
        raised,
        "TTL still {} after a request",
        ttl(&f.redis, "sessions:slide")
    );
    // The refresh for "slide" came after the request on "forever".
    assert_eq!(ttl(&f.redis, "sessions:forever"), -1, "a TTL was added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_ttl_refreshes_a_session_at_most_once_a_minute_per_instance() {
    let f = fixture(|url| Setup::redis(url).sessions(&[("sliding_ttl", "\"3600s\"")])).await;
    f.redis.cli(&["HSET", "sessions:once", "user_id", "1"]);
    f.redis.cli(&["EXPIRE", "sessions:once", "100"]);
    assert_eq!(f.with_cookie("sid=once").await.status, 200);
    let raised = common::redis::wait_until(Duration::from_secs(2), || {
        ttl(&f.redis, "sessions:once") > 3500
    });
    assert!(raised, "first refresh");

    // Shortened again behind the proxy's back: within the minute, no
    // second EXPIRE from this instance.
    f.redis.cli(&["EXPIRE", "sessions:once", "100"]);
    assert_eq!(f.with_cookie("sid=once").await.status, 200);
    // A fresh session's refresh, requested after, marks "later than".
    f.redis.cli(&["HSET", "sessions:marker", "user_id", "2"]);
    f.redis.cli(&["EXPIRE", "sessions:marker", "100"]);
    assert_eq!(f.with_cookie("sid=marker").await.status, 200);
    let marked = common::redis::wait_until(Duration::from_secs(2), || {
        ttl(&f.redis, "sessions:marker") > 3500
    });
    assert!(marked, "marker refresh");
    let once = ttl(&f.redis, "sessions:once");
    assert!(once <= 100, "refreshed twice within a minute: TTL {once}");
}

// ---------------------------------------------------------------------------
// Sentinel and Cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sentinel_failover_sessions_are_served_without_restart() {
    let mut set = SentinelSet::start("mymaster");
    set.primary
        .cli(&["HSET", "sessions:sent1", "user_id", "s-1"]);
    let replicated = common::redis::wait_until(Duration::from_secs(5), || {
        set.replica.cli(&["HGET", "sessions:sent1", "user_id"]) == "s-1"
    });
    assert!(replicated, "replica has the session");
    assert!(
        primary_lists(&set.primary, &set.replica),
        "the primary's ROLE never listed the replica"
    );
    let up = upstream::echo().await;
    let px = Setup::redis(&set.url()).start(&[up.addr]).await;
    let seen = session_get(px.addr, "sid=sent1").await.seen();
    assert_eq!(seen.header("x-auth-user"), Some("s-1"));

    set.kill_primary_and_wait_for_failover();
    let took = answers_within(
        px.addr,
        "sid=sent1",
        200,
        Duration::from_millis(100),
        Duration::from_secs(30),
    )
    .await;
    assert!(took.is_some(), "not serving 30 s after the failover");
    let seen = session_get(px.addr, "sid=sent1").await.seen();
    assert_eq!(seen.header("x-auth-user"), Some("s-1"));
    // And the new primary is the one asked: a DEL there ends the session.
    set.replica.cli(&["DEL", "sessions:sent1"]);
    assert_401(
        &session_get(px.addr, "sid=sent1").await,
        "invalid_session",
        "deleted on the new primary",
    );
}

/// Guarantee 5 through a Sentinel failover with the cache on: the cache
/// caches again once tracking is on on the new primary, and a DEL there
/// still evicts within 100 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_on_a_sentinel_failover_keeps_deletes_exact_on_the_new_primary() {
    let mut set = SentinelSet::start("cachemaster");
    set.primary
        .cli(&["HSET", "sessions:sc1", "user_id", "sc-1"]);
    let replicated = common::redis::wait_until(Duration::from_secs(5), || {
        set.replica.cli(&["HGET", "sessions:sc1", "user_id"]) == "sc-1"
    });
    assert!(replicated, "replica has the session");
    let up = upstream::echo().await;
    let px = Setup::redis(&set.url())
        .sessions(&[("cache_ttl", "\"30s\"")])
        .start(&[up.addr])
        .await;
    assert_eq!(session_get(px.addr, "sid=sc1").await.status, 200);

    set.kill_primary_and_wait_for_failover();
    let took = answers_within(
        px.addr,
        "sid=sc1",
        200,
        Duration::from_millis(100),
        Duration::from_secs(30),
    )
    .await;
    assert!(took.is_some(), "not serving 30 s after the failover");
    // Caching resumes on the new primary: a lookup there, then hits.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lookups = set.replica.command_calls("hgetall");
        assert_eq!(session_get(px.addr, "sid=sc1").await.status, 200);
        if set.replica.command_calls("hgetall") == lookups {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never served again after the failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    set.replica.cli(&["DEL", "sessions:sc1"]);
    assert_refused_within_100ms(
        px.addr,
        "sid=sc1",
        "a session cached after the failover outlived its DEL on the new primary by 100 ms",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_on_read_from_replicas_reads_the_primary_so_a_delete_still_evicts() {
    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    primary.cli(&["HSET", "sessions:rc1", "user_id", "rc-1"]);
    let replicated = common::redis::wait_until(Duration::from_secs(10), || {
        replica.cli(&["HGET", "sessions:rc1", "user_id"]) == "rc-1"
    });
    assert!(replicated, "replica in sync");
    let up = upstream::echo().await;
    let mut setup = Setup::redis(&primary.url()).sessions(&[("cache_ttl", "\"30s\"")]);
    setup.store.push_str("\nread_from_replicas = true");
    let px = setup.start(&[up.addr]).await;

    let seen = session_get(px.addr, "sid=rc1").await.seen();
    assert_eq!(seen.header("x-auth-user"), Some("rc-1"));
    assert_eq!(
        replica.command_calls("hgetall"),
        0,
        "a cached session must come from the tracked primary connection"
    );
    primary.cli(&["DEL", "sessions:rc1"]);
    assert_refused_within_100ms(
        px.addr,
        "sid=rc1",
        "the cached session outlived its DEL by 100 ms",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_replicas_through_sentinel_reads_the_replica_sentinel_names() {
    let set = SentinelSet::start("replmaster");
    set.primary
        .cli(&["HSET", "sessions:sr1", "user_id", "sr-1"]);
    let replicated = common::redis::wait_until(Duration::from_secs(5), || {
        set.replica.cli(&["HGET", "sessions:sr1", "user_id"]) == "sr-1"
    });
    assert!(replicated, "replica has the session");
    assert!(
        primary_lists(&set.primary, &set.replica),
        "the primary's ROLE never listed the replica"
    );
    let up = upstream::echo().await;
    let mut setup = Setup::redis(&set.url());
    setup.store.push_str("\nread_from_replicas = true");
    let px = setup.start(&[up.addr]).await;
    assert!(
        until_the_replica_is_read(px.addr, "sid=sr1", &set.replica).await,
        "no lookup reached the replica within 10 s"
    );

    let on_replica = set.replica.command_calls("hgetall");
    let on_primary = set.primary.command_calls("hgetall");
    for _ in 0..5 {
        let seen = session_get(px.addr, "sid=sr1").await.seen();
        assert_eq!(seen.header("x-auth-user"), Some("sr-1"));
    }
    assert_eq!(
        set.replica.command_calls("hgetall") - on_replica,
        5,
        "every lookup is asked of the replica"
    );
    assert_eq!(
        set.primary.command_calls("hgetall") - on_primary,
        0,
        "a replica hit does not ask the primary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_cluster_slots_are_all_served() {
    let cluster = Cluster::start(3);
    let ids: Vec<String> = (0..20).map(|i| format!("cl{i}x{}", i * 7919)).collect();
    for (i, id) in ids.iter().enumerate() {
        let user = format!("c-{i}");
        cluster.cli_cluster(&["HSET", &format!("sessions:{id}"), "user_id", &user]);
    }
    for node in &cluster.nodes {
        let keys: u64 = node.cli(&["DBSIZE"]).parse().expect("DBSIZE");
        assert!(keys > 0, "the 20 sessions do not reach every master");
    }
    let up = upstream::echo().await;
    let px = Setup::redis(&cluster.url()).start(&[up.addr]).await;
    for (i, id) in ids.iter().enumerate() {
        let seen = session_get(px.addr, &format!("sid={id}")).await.seen();
        assert_eq!(seen.header("x-auth-user"), Some(format!("c-{i}").as_str()));
    }
    cluster.cli_cluster(&["DEL", &format!("sessions:{}", ids[7])]);
    assert_401(
        &session_get(px.addr, &format!("sid={}", ids[7])).await,
        "invalid_session",
        "deleted in the cluster",
    );
    assert_eq!(
        session_get(px.addr, &format!("sid={}", ids[8]))
            .await
            .status,
        200
    );
}

// ---------------------------------------------------------------------------
// Balancing on the session's user

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_hash_balancing_keeps_each_user_on_one_target() {
    let redis = RedisServer::start();
    let a = upstream::echo().await;
    let b = upstream::echo().await;
    let mut setup = Setup::redis(&redis.url());
    setup.upstream_keys = "balance = \"user_hash\"";
    let px = setup.start(&[a.addr, b.addr]).await;
    for i in 0..20 {
        redis.cli(&[
            "HSET",
            &format!("sessions:bal{i}"),
            "user_id",
            &format!("user-{i}"),
        ]);
    }
    let counts = || {
        (
            a.requests.load(Ordering::SeqCst),
            b.requests.load(Ordering::SeqCst),
        )
    };

    let before = counts();
    for _ in 0..10 {
        assert_eq!(session_get(px.addr, "sid=bal0").await.status, 200);
    }
    let after = counts();
    let delta = (after.0 - before.0, after.1 - before.1);
    assert!(
        delta == (10, 0) || delta == (0, 10),
        "one user spread over targets: {delta:?}"
    );

    let mut used = [false, false];
    for i in 0..20 {
        let cookie = format!("sid=bal{i}");
        let mut target = None;
        for _ in 0..2 {
            let before = counts();
            assert_eq!(session_get(px.addr, &cookie).await.status, 200);
            let after = counts();
            let this = usize::from(after.1 > before.1);
            assert!(target.is_none() || target == Some(this), "user-{i} moved");
            target = Some(this);
        }
        used[target.expect("served")] = true;
    }
    assert_eq!(used, [true, true], "20 users all hashed to one target");
}

// ---------------------------------------------------------------------------
// The in-memory store

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_serves_and_forgets_seeded_sessions() {
    use wristband::auth::session::{MemoryStore, Stored};
    let store = MemoryStore::shared();
    store.insert(
        "sessions:memtest7c1",
        Stored::Hash(vec![
            ("user_id".to_owned(), "m-1".to_owned()),
            ("roles".to_owned(), "a,b".to_owned()),
        ]),
        None,
    );
    let up = upstream::echo().await;
    let mut setup = Setup::redis("unused");
    setup.store = "kind = \"memory\"".to_owned();
    let px = setup.start(&[up.addr]).await;
    let seen = session_get(px.addr, "sid=memtest7c1").await.seen();
    assert_eq!(seen.header("x-auth-user"), Some("m-1"));
    assert_eq!(seen.header("x-auth-roles"), Some("a,b"));
    store.remove("sessions:memtest7c1");
    assert_401(
        &session_get(px.addr, "sid=memtest7c1").await,
        "invalid_session",
        "removed from memory",
    );
}

// ---------------------------------------------------------------------------
// JSON documents as claims (SPEC §3: "A session becomes the same identity as
// a JWT")

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_session_maps_its_user_pointer_to_sub_and_top_level_keys_to_claims() {
    let f = fixture(|url| {
        Setup::redis(url).sessions(&[
            ("format", "\"json\""),
            ("user_field", "\"/passport/user\""),
            ("list_fields", "[]"),
        ])
    })
    .await;
    f.redis.cli(&[
        "SET",
        "sessions:j1",
        r#"{"passport":{"user":"u-1"},"email":"j@x","roles":["a","b"]}"#,
    ]);
    let seen = f.with_cookie("sid=j1").await.seen();
    assert_eq!(seen.header("x-auth-user"), Some("u-1"));
    assert_eq!(seen.header("x-auth-email"), Some("j@x"));
    assert_eq!(seen.header("x-auth-roles"), Some("a,b"), "arrays joined");

    f.redis
        .cli(&["SET", "sessions:j2", r#"{"passport":{"user":1234}}"#]);
    let seen = f.with_cookie("sid=j2").await.seen();
    assert_eq!(
        seen.header("x-auth-user"),
        Some("1234"),
        "numbers as strings"
    );

    for (id, doc) in [
        ("j3", r#"{"passport":{"user":{"id":1}}}"#),
        ("j4", r#"{"passport":{"user":["x"]}}"#),
        ("j5", r#"{"passport":{"user":""}}"#),
        ("j6", r#"{"passport":{}}"#),
        ("j7", r#"{"cookie":{"expires":null}}"#),
        ("j8", "not json at all"),
    ] {
        f.redis.cli(&["SET", &format!("sessions:{id}"), doc]);
        let reply = f.with_cookie(&format!("sid={id}")).await;
        assert_401(&reply, "invalid_session", doc);
    }
    assert_eq!(f.forwarded(), 2);
}

// ---------------------------------------------------------------------------
// read_from_replicas

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_replicas_asks_the_replica_and_the_primary_on_a_replica_miss() {
    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    primary.cli(&["HSET", "sessions:r1", "user_id", "r-1"]);
    let replicated = common::redis::wait_until(Duration::from_secs(10), || {
        replica.cli(&["HGET", "sessions:r1", "user_id"]) == "r-1"
    });
    assert!(replicated, "replica in sync");
    assert!(
        primary_lists(&primary, &replica),
        "the primary's ROLE never listed the replica"
    );
    let up = upstream::echo().await;
    let mut setup = Setup::redis(&primary.url());
    setup.store.push_str("\nread_from_replicas = true");
    let px = setup.start(&[up.addr]).await;
    assert!(
        until_the_replica_is_read(px.addr, "sid=r1", &replica).await,
        "no lookup reached the replica within 10 s"
    );

    let on_replica = replica.command_calls("hgetall");
    let on_primary = primary.command_calls("hgetall");
    for _ in 0..5 {
        let seen = session_get(px.addr, "sid=r1").await.seen();
        assert_eq!(seen.header("x-auth-user"), Some("r-1"));
    }
    assert!(
        replica.command_calls("hgetall") > on_replica,
        "the replica was not asked (5 lookups: {} on the replica, {} on the primary; \
         ROLE asked of the primary {} times; replica clients: {:?})",
        replica.command_calls("hgetall") - on_replica,
        primary.command_calls("hgetall") - on_primary,
        primary.command_calls("role"),
        common::redis::info_field(&replica.info("clients"), "connected_clients"),
    );

    // A lagging replica: the key is gone there but not on the primary.
    replica.cli(&["CONFIG", "SET", "replica-read-only", "no"]);
    replica.cli(&["DEL", "sessions:r1"]);
    let seen = session_get(px.addr, "sid=r1").await.seen();
    assert_eq!(
        seen.header("x-auth-user"),
        Some("r-1"),
        "a replica miss is asked of the primary"
    );

    primary.cli(&["DEL", "sessions:r1"]);
    assert_401(
        &session_get(px.addr, "sid=r1").await,
        "invalid_session",
        "gone everywhere",
    );
}

// ---------------------------------------------------------------------------
// Metrics (SPEC §6) and guarantee 7

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_outcomes_and_store_errors_are_counted_without_session_ids() {
    let mut f = default_fixture().await;
    f.redis.cli(&["HSET", "sessions:m1okid", "user_id", "1"]);
    assert_eq!(f.with_cookie("sid=m1okid").await.status, 200);
    assert_eq!(f.with_cookie("sid=m2badid").await.status, 401);
    f.redis.stop();
    assert_unavailable(&f.with_cookie("sid=m1okid").await, "Redis down");

    let metrics = get(f.px.admin, "/metrics", &[]).await.text();
    for (outcome, at_least) in [("ok", 1.0), ("invalid", 1.0), ("unavailable", 1.0)] {
        let value = common::metric_sample(
            &metrics,
            "wristband_auth_total",
            &[("route", "app"), ("kind", "session"), ("outcome", outcome)],
        );
        assert!(
            value.is_some_and(|v| v >= at_least),
            "wristband_auth_total session {outcome} = {value:?}:\n{metrics}"
        );
    }
    let errors = metrics
        .lines()
        .find(|l| l.starts_with("wristband_store_errors_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(
        errors.is_some_and(|e| e >= 1.0),
        "wristband_store_errors_total = {errors:?}"
    );
    for id in ["m1okid", "m2badid"] {
        assert!(!metrics.contains(id), "a session id in the metrics");
    }
}
