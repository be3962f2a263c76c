//! The login flow of SPEC §7 at the HTTP level, against a real OpenID
//! Provider (tests/oidc-provider, the certified `oidc-provider` package)
//! and two wristband instances sharing one real Redis: a login started on
//! one finishes on the other, refused callbacks write nothing, `rd` never
//! leaves the site, 20 concurrent requests make one refresh, and logout
//! ends the session everywhere.
//!
//! The test plays the browser: it keeps the cookies each side sets and
//! follows redirects itself, choosing which wristband instance gets each
//! request. So `redirect_uri` is a fixed loopback URL registered at the OP,
//! whose path and query the test sends to the instance it picks.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use common::client::{self, Reply};
use common::oidc::{OidcProvider, OpClient, OpSettings, TokenFailure};
use common::redis::RedisServer;
use common::upstream::{self, TestUpstream};
use common::{TestProxy, metric_sample, start_proxy};

const REDIRECT_URI: &str = "http://127.0.0.1:9/_wristband/callback";
const LOGGED_OUT: &str = "http://127.0.0.1:9/bye";
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
const BINDING: &str = "wristband-login";
const BROWSER: &str = "Accept: text/html,application/xhtml+xml";

fn alice() -> Value {
    json!({"email": "alice@example.com", "name": "Alice", "groups": ["admins", "dev"]})
}

/// The OP with client `wb` (client_secret_basic unless `client` says
/// otherwise) and account `alice`.
async fn op_with(client: OpClient, settings: OpSettings) -> OidcProvider {
    OidcProvider::start(
        settings
            .client(client.post_logout_redirect_uri(LOGGED_OUT))
            .account("alice", alice()),
    )
    .await
}

async fn op() -> OidcProvider {
    op_with(
        OpClient::basic("wb", "s3cret", REDIRECT_URI),
        OpSettings::new(),
    )
    .await
}

fn config(op: &OidcProvider, store: &str, upstream: SocketAddr, login_extra: &str) -> String {
    let logout = if login_extra.contains("post_logout_redirect") {
        ""
    } else {
        "post_logout_redirect = \"/bye\""
    };
    format!(
        r#"
{store}
[sessions]
cookie = "sid"

[login]
issuer = "{issuer}"
client_id = "wb"
client_secret = "s3cret"
redirect_uri = "{REDIRECT_URI}"
scopes = ["openid", "email", "profile", "groups", "offline_access"]
encryption_keys = ["{KEY}"]
cookie_secure = false
{logout}
{login_extra}

[[upstreams]]
name = "app"
targets = ["http://{upstream}"]

[[routes]]
path = "/"
upstream = "app"
on_unauthenticated = "login"

[identity]
headers = {{ "X-Auth-User" = "sub", "X-Auth-Email" = "email", "X-Auth-Groups" = "groups" }}
"#,
        issuer = op.issuer()
    )
}

fn redis_store(redis: &RedisServer) -> String {
    format!("[store]\nkind = \"redis\"\nurl = \"{}\"\n", redis.url())
}

/// Two instances on one Redis, an echo upstream behind both.
struct Site {
    op: OidcProvider,
    redis: RedisServer,
    _app: TestUpstream,
    one: TestProxy,
    two: TestProxy,
}

async fn site_with(op: OidcProvider, login_extra: &str) -> Site {
    let redis = RedisServer::start();
    let app = upstream::echo().await;
    let toml = config(&op, &redis_store(&redis), app.addr, login_extra);
    let one = start_proxy(&toml).await;
    let two = start_proxy(&toml).await;
    Site {
        op,
        redis,
        _app: app,
        one,
        two,
    }
}

async fn site(login_extra: &str) -> Site {
    site_with(op().await, login_extra).await
}

/// A browser's cookies for wristband (by name) and its session at the OP.
struct Browser<'op> {
    cookies: BTreeMap<String, String>,
    op: common::oidc::OpBrowser<'op>,
}

impl<'op> Browser<'op> {
    fn new(op: &'op OidcProvider) -> Browser<'op> {
        Browser {
            cookies: BTreeMap::new(),
            op: op.browser(),
        }
    }

    fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            let pairs: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("Cookie: {}", pairs.join("; "))
        })
    }

    /// A request to `proxy` with this browser's cookies, keeping the ones
    /// it sets (an empty value or `Max-Age=0` removes one).
    async fn request(
        &mut self,
        proxy: SocketAddr,
        method: &str,
        target: &str,
        extra: &[&str],
    ) -> Reply {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {proxy}");
        if let Some(cookies) = self.cookie_header() {
            head.push_str(&format!("\r\n{cookies}"));
        }
        for line in extra {
            head.push_str(&format!("\r\n{line}"));
        }
        if method == "POST" {
            head.push_str("\r\nContent-Length: 0");
        }
        let reply = client::raw(proxy, &head, b"").await;
        for (name, value) in &reply.headers {
            if name != "set-cookie" {
                continue;
            }
            let pair = value.split(';').next().unwrap_or_default();
            let (k, v) = pair.split_once('=').expect("name=value");
            if v.is_empty() || value.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        reply
    }

    /// GET `login_path?rd=..` on `start`: the authorization URL.
    async fn start(&mut self, start: SocketAddr, rd: &str) -> String {
        let reply = self
            .request(start, "GET", &format!("/_wristband/login?rd={rd}"), &[])
            .await;
        assert_eq!(reply.status, 302, "{}", reply.text());
        assert!(self.cookies.contains_key(BINDING), "{:?}", reply.headers);
        // SPEC §7: the binding cookie lives as long as the state.
        let binding = set_cookie(&reply, BINDING).expect("binding cookie");
        for attribute in ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=600"] {
            assert!(binding.contains(attribute), "{binding}");
        }
        reply.header("location").expect("Location").to_owned()
    }

    /// Signs in at the OP: the callback's path and query.
    async fn at_op(&mut self, authorization: &str) -> String {
        let back = self.op.sign_in(authorization, "alice").await;
        callback_target(&back)
    }

    /// The callback on `finish`.
    async fn callback(&mut self, finish: SocketAddr, target: &str) -> Reply {
        self.request(finish, "GET", target, &[BROWSER]).await
    }

    /// A whole login, started on `start` and finished on `finish`.
    async fn login(&mut self, start: SocketAddr, finish: SocketAddr, rd: &str) -> Reply {
        let authorization = self.start(start, rd).await;
        let target = self.at_op(&authorization).await;
        self.callback(finish, &target).await
    }

    /// A whole login to `/` that must succeed.
    async fn logs_in(&mut self, start: SocketAddr, finish: SocketAddr) {
        let done = self.login(start, finish, "/").await;
        assert_eq!(done.status, 302, "{}", done.text());
    }

    async fn page(&mut self, proxy: SocketAddr, path: &str) -> Reply {
        self.request(proxy, "GET", path, &["Accept: application/json"])
            .await
    }
}

/// `redirect_uri?..` as the OP sent it: its path and query.
fn callback_target(url: &str) -> String {
    url.strip_prefix("http://127.0.0.1:9")
        .unwrap_or_else(|| panic!("the OP sent the browser to {url}, not to redirect_uri"))
        .to_owned()
}

fn param<'u>(url: &'u str, name: &str) -> Option<&'u str> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
}

fn set_cookie<'r>(reply: &'r Reply, name: &str) -> Option<&'r str> {
    reply
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .find(|v| v.starts_with(&format!("{name}=")))
}

fn session_keys(redis: &RedisServer) -> Vec<String> {
    let keys = redis.cli(&["--scan", "--pattern", "sessions:*"]);
    let mut keys: Vec<String> = keys
        .lines()
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
        .collect();
    keys.sort();
    keys
}

async fn metrics(proxy: &TestProxy) -> String {
    let (status, text) = common::process::admin_get(proxy.admin, "/metrics")
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    text
}

fn login_total(metrics: &str, result: &str) -> f64 {
    metric_sample(metrics, "wristband_login_total", &[("result", result)]).unwrap_or(0.0)
}

#[tokio::test]
async fn a_login_started_on_one_instance_finishes_on_the_other() {
    let site = site("").await;
    let mut browser = Browser::new(&site.op);

    // A navigational request without a session starts a login, keeping
    // the page and its query.
    let first = browser
        .request(
            site.one.addr,
            "GET",
            "/reports/q?year=2026&x=%2F",
            &[BROWSER],
        )
        .await;
    assert_eq!(first.status, 302, "{}", first.text());
    let rd_location = first.header("location").expect("Location").to_owned();
    assert_eq!(
        rd_location,
        "/_wristband/login?rd=/reports/q%3Fyear%3D2026%26x%3D%252F"
    );
    // An API call gets 401, never a redirect (guarantee 9).
    let api = browser.page(site.one.addr, "/reports/q").await;
    assert_eq!(api.status, 401);
    assert!(api.header("location").is_none());

    let authorization = browser
        .start(site.one.addr, rd_location.split_once("rd=").expect("rd").1)
        .await;
    assert!(
        authorization.starts_with(site.op.issuer()),
        "{authorization}"
    );
    for (name, value) in [
        ("response_type", "code"),
        ("client_id", "wb"),
        ("code_challenge_method", "S256"),
    ] {
        assert_eq!(param(&authorization, name), Some(value), "{authorization}");
    }
    let state = param(&authorization, "state").expect("state");
    assert!(state.len() >= 22, "state of at least 128 bits: {state}");
    // The state itself never reaches the store, only its hash.
    let pending = site.redis.cli(&["--scan", "--pattern", "login:*"]);
    assert_eq!(pending.lines().count(), 1, "{pending}");
    assert!(!pending.contains(state));

    let target = browser.at_op(&authorization).await;
    let done = browser.callback(site.two.addr, &target).await;
    assert_eq!(done.status, 302, "{}", done.text());
    assert_eq!(done.header("location"), Some("/reports/q?year=2026&x=%2F"));
    let cookie = set_cookie(&done, "sid").expect("session cookie");
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Max-Age"),
        "a browser-session cookie: {cookie}"
    );
    let cleared = set_cookie(&done, BINDING).expect("binding cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(
        site.redis
            .cli(&["--scan", "--pattern", "login:*"])
            .trim()
            .is_empty()
    );

    // Either instance serves the session; the app reads the identity.
    for proxy in [site.one.addr, site.two.addr] {
        let seen = browser.page(proxy, "/reports/q").await.seen();
        assert_eq!(seen.header("x-auth-user"), Some("alice"));
        assert_eq!(seen.header("x-auth-email"), Some("alice@example.com"));
        assert_eq!(seen.header("x-auth-groups"), Some("admins,dev"));
    }

    // The session in Redis: a hash with the session's TTL, its tokens
    // sealed, indexed under its user.
    let id = browser.cookies["sid"].clone();
    assert!(id.len() >= 22, "session id of at least 128 bits");
    let key = format!("sessions:{id}");
    let ttl: i64 = site.redis.cli(&["TTL", &key]).trim().parse().expect("ttl");
    assert!((43_000..=43_200).contains(&ttl), "TTL {ttl}");
    let fields = site.redis.cli(&["HGETALL", &key]);
    assert!(fields.contains("user_id\nalice"), "{fields}");
    let rt = site.redis.cli(&["HGET", &key, "_wb_rt"]);
    assert!(rt.trim().starts_with("wb1."), "sealed refresh token: {rt}");
    assert!(!fields.contains("eyJ"), "no token in clear: {fields}");
    let index = format!("sessions:user:{}", sha256_hex("alice"));
    assert_eq!(site.redis.cli(&["SMEMBERS", &index]).trim(), id);
    let index_ttl: i64 = site
        .redis
        .cli(&["TTL", &index])
        .trim()
        .parse()
        .expect("ttl");
    assert!(index_ttl > 43_000, "{index_ttl}");

    let one = metrics(&site.one).await;
    let two = metrics(&site.two).await;
    assert_eq!(login_total(&one, "started"), 1.0);
    assert_eq!(login_total(&two, "ok"), 1.0);
    assert_eq!(login_total(&two, "failed"), 0.0);
    assert_eq!(site.op.stats().await.code_ok, 1);
}

fn sha256_hex(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_planted_session_cookie_is_never_the_one_issued() {
    let site = site("").await;
    let planted = "attacker-chose-this-id-0123456789";
    let mut browser = Browser::new(&site.op);
    browser.cookies.insert("sid".into(), planted.into());
    let done = browser.login(site.one.addr, site.one.addr, "/").await;
    assert_eq!(done.status, 302, "{}", done.text());
    let issued = browser.cookies["sid"].clone();
    assert_ne!(issued, planted);
    assert_eq!(
        session_keys(&site.redis).len(),
        2,
        "the session and its index"
    );
    assert!(
        !site
            .redis
            .cli(&["EXISTS", &format!("sessions:{planted}")])
            .contains('1')
    );
    let mut attacker = Browser::new(&site.op);
    attacker.cookies.insert("sid".into(), planted.into());
    assert_eq!(attacker.page(site.two.addr, "/").await.status, 401);
}

/// A callback that is refused: 403 `login_failed`, a page for a browser,
/// nothing written.
fn assert_refused(site: &Site, reply: &Reply) {
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("login_failed"), "{}", reply.text());
    // The browser gets the page, not the JSON (its requests say text/html).
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{}",
        reply.text()
    );
    assert!(set_cookie(reply, "sid").is_none(), "{:?}", reply.headers);
    assert!(
        session_keys(&site.redis).is_empty(),
        "{:?}",
        session_keys(&site.redis)
    );
}

#[tokio::test]
async fn refused_callbacks_are_403_login_failed_and_write_nothing() {
    let site = site("").await;

    // A state used twice.
    let mut browser = Browser::new(&site.op);
    let authorization = browser.start(site.one.addr, "/").await;
    let target = browser.at_op(&authorization).await;
    let mut copy = Browser::new(&site.op);
    copy.cookies = browser.cookies.clone();
    let first = browser.callback(site.one.addr, &target).await;
    assert_eq!(first.status, 302);
    // The first use logged in; its session (and index) go, for the checks
    // below, and the spent state's absence is what refuses the replay.
    for key in session_keys(&site.redis) {
        site.redis.cli(&["DEL", &key]);
    }
    let mut again = Browser::new(&site.op);
    again.cookies = copy.cookies.clone();
    let replay = again.callback(site.two.addr, &target).await;
    assert_refused(&site, &replay);
    // JSON for an API client.
    let api = client::get(
        site.one.addr,
        &target,
        &[&format!("Cookie: {BINDING}=x"), "Accept: application/json"],
    )
    .await;
    assert_eq!(api.status, 403);
    assert_eq!(api.json()["error"], "login_failed");

    // A state from another browser: binding cookie missing, or another's.
    let mut victim = Browser::new(&site.op);
    let authorization = victim.start(site.one.addr, "/").await;
    let target = victim.at_op(&authorization).await;
    let mut attacker = Browser::new(&site.op);
    let missing = attacker.callback(site.two.addr, &target).await;
    assert_refused(&site, &missing);
    let _ = attacker.start(site.one.addr, "/").await;
    let other = attacker.callback(site.two.addr, &target).await;
    assert_refused(&site, &other);
    // ... and the victim's state is spent by then: refused too.
    let late = victim.callback(site.one.addr, &target).await;
    assert_refused(&site, &late);

    // The IdP answers error=access_denied.
    let mut canceller = Browser::new(&site.op);
    let authorization = canceller.start(site.one.addr, "/").await;
    let back = canceller.op.cancel(&authorization).await;
    assert!(back.contains("error=access_denied"), "{back}");
    let denied = canceller
        .callback(site.one.addr, &callback_target(&back))
        .await;
    assert_refused(&site, &denied);

    // A nonce other than the one sent: the OP signs what it was given.
    let mut browser = Browser::new(&site.op);
    let authorization = browser.start(site.one.addr, "/").await;
    let nonce = param(&authorization, "nonce").expect("nonce").to_owned();
    let swapped = authorization.replace(&format!("nonce={nonce}"), "nonce=another-nonce-value");
    let target = browser.at_op(&swapped).await;
    let wrong_nonce = browser.callback(site.one.addr, &target).await;
    assert_refused(&site, &wrong_nonce);

    // A tampered id_token (another sub, the signature as it was).
    site.op.tamper_id_tokens(true).await;
    let mut browser = Browser::new(&site.op);
    let tampered = browser.login(site.one.addr, site.two.addr, "/").await;
    assert_refused(&site, &tampered);
    assert!(site.op.stats().await.tampered_id_tokens >= 1);
    site.op.tamper_id_tokens(false).await;

    // A code the token endpoint refuses.
    site.op
        .set_token_failure(Some(TokenFailure::InvalidGrant))
        .await;
    let mut browser = Browser::new(&site.op);
    let refused = browser.login(site.one.addr, site.one.addr, "/").await;
    assert_refused(&site, &refused);
    // The IdP failing is 503, not a refusal.
    site.op
        .set_token_failure(Some(TokenFailure::ServerError))
        .await;
    let mut browser = Browser::new(&site.op);
    let down = browser.login(site.one.addr, site.one.addr, "/").await;
    assert_eq!(down.status, 503, "{}", down.text());
    assert!(session_keys(&site.redis).is_empty());
    site.op.set_token_failure(None).await;

    let failed = login_total(&metrics(&site.one).await, "failed")
        + login_total(&metrics(&site.two).await, "failed");
    assert!(failed >= 8.0, "{failed}");
}

#[tokio::test]
async fn the_return_url_never_leaves_the_site() {
    let site = site("allowed_redirect_hosts = [\"*.corp.example\"]").await;
    // rd as a browser would send it in the query (already encoded where it
    // must be), and where the login may end.
    let corpus: &[(&str, &str)] = &[
        ("/ok", "/ok"),
        ("/a/b%3Fc%3Dd%26e%3Df", "/a/b?c=d&e=f"),
        ("https://wiki.corp.example/x", "https://wiki.corp.example/x"),
        ("//evil.example", "/"),
        ("///evil.example", "/"),
        ("/%2F/evil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("%2f%2fevil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("/%5C%5Cevil.example", "/"),
        ("%5C%5Cevil.example", "/"),
        ("/%09/evil.example", "/"),
        ("/%0D%0ALocation:%20https://evil.example", "/"),
        ("/%0A/evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("JaVaScRiPt:alert(1)", "/"),
        ("java%0Ascript:alert(1)", "/"),
        ("data:text/html,x", "/"),
        ("https://evil.example/", "/"),
        ("http://wiki.corp.example/", "/"),
        ("https://wiki.corp.example@evil.example/", "/"),
        ("https://wiki.corp.example%40evil.example/", "/"),
        ("https://evil.example%2F@wiki.corp.example/", "/"),
        ("https://corp.example/", "/"),
        ("https://evilcorp.example/", "/"),
        ("https://wiki.corp.example.evil.example/", "/"),
        ("https:wiki.corp.example", "/"),
        ("evil.example", "/"),
        ("%2Fwiki", "/"),
        ("/x%zz", "/"),
        ("", "/"),
    ];
    assert!(corpus.len() >= 25);
    let mut browser = Browser::new(&site.op);
    for (rd, expected) in corpus {
        let done = browser.login(site.one.addr, site.two.addr, rd).await;
        assert_eq!(done.status, 302, "{rd}: {}", done.text());
        assert_eq!(done.header("location"), Some(*expected), "rd={rd}");
    }
}

#[tokio::test]
async fn twenty_concurrent_requests_on_a_due_session_make_one_refresh() {
    let site = site("refresh_interval = \"1s\"").await;
    let mut browser = Browser::new(&site.op);
    browser.logs_in(site.one.addr, site.two.addr).await;
    let cookie = browser.cookie_header().expect("cookie");
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let mut tasks = Vec::new();
    for i in 0..20 {
        let proxy = if i % 2 == 0 {
            site.one.addr
        } else {
            site.two.addr
        };
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            client::get(proxy, "/", &[&cookie, "Accept: application/json"]).await
        }));
    }
    for task in tasks {
        let reply = task.await.expect("task");
        assert_eq!(reply.seen().header("x-auth-user"), Some("alice"));
    }
    let stats = site.op.stats().await;
    assert_eq!((stats.refresh_ok, stats.refresh_error), (1, 0), "{stats:?}");

    // The rotated refresh token was kept: the next refresh works too (the
    // OP revokes the whole grant if an old one is used again).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = client::get(site.two.addr, "/", &[&cookie, "Accept: application/json"]).await;
    assert_eq!(reply.seen().header("x-auth-user"), Some("alice"));
    let stats = site.op.stats().await;
    assert_eq!((stats.refresh_ok, stats.refresh_error), (2, 0), "{stats:?}");
    let refreshed = login_total(&metrics(&site.one).await, "refreshed")
        + login_total(&metrics(&site.two).await, "refreshed");
    assert_eq!(refreshed, 2.0);
    // A refresh never extends the session.
    let id = &browser.cookies["sid"];
    let ttl: i64 = site
        .redis
        .cli(&["TTL", &format!("sessions:{id}")])
        .trim()
        .parse()
        .expect("ttl");
    assert!(ttl <= 43_200 - 4, "{ttl}");
}

#[tokio::test]
async fn a_refused_refresh_ends_the_session_and_an_unreachable_idp_keeps_it() {
    let site = site("refresh_interval = \"1s\"").await;
    let mut browser = Browser::new(&site.op);
    browser.logs_in(site.one.addr, site.one.addr).await;

    // The IdP failing: the session stays as it is.
    site.op
        .set_token_failure(Some(TokenFailure::ServerError))
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        browser
            .page(site.one.addr, "/")
            .await
            .seen()
            .header("x-auth-user"),
        Some("alice")
    );
    assert!(login_total(&metrics(&site.one).await, "refresh_failed") >= 1.0);
    site.op.set_token_failure(None).await;

    // The grant revoked at the IdP: invalid_grant ends the session, once
    // the failed refresh's back-off (2 s) is over; within it the IdP is not
    // asked again.
    assert_eq!(site.op.revoke_grants(Some("alice")).await, 1);
    let refreshes = site.op.stats().await;
    assert_eq!(
        browser.page(site.one.addr, "/").await.status,
        200,
        "within the back-off"
    );
    let after = site.op.stats().await;
    assert_eq!(
        after.injected_token_failures + after.refresh_error + after.refresh_ok,
        refreshes.injected_token_failures + refreshes.refresh_error + refreshes.refresh_ok,
        "the IdP was asked again within the back-off"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let id = browser.cookies["sid"].clone();
    let gone = browser.page(site.two.addr, "/").await;
    assert_eq!(gone.status, 401, "{}", gone.text());
    assert!(
        !site
            .redis
            .cli(&["EXISTS", &format!("sessions:{id}")])
            .contains('1')
    );
    // A browser is sent to log in again.
    let again = browser.request(site.one.addr, "GET", "/", &[BROWSER]).await;
    assert_eq!(again.status, 302);
    assert!(
        again
            .header("location")
            .is_some_and(|l| l.starts_with("/_wristband/login?rd=/"))
    );
}

#[tokio::test]
async fn logout_ends_the_session_everywhere_and_at_the_idp() {
    let site = site(&format!("post_logout_redirect = \"{LOGGED_OUT}\"")).await;
    let mut browser = Browser::new(&site.op);
    browser.logs_in(site.one.addr, site.two.addr).await;
    let old = browser.cookie_header().expect("cookie");
    let id = browser.cookies["sid"].clone();

    // GET shows a page with a POST button and a strict CSP.
    let page = browser
        .request(site.one.addr, "GET", "/_wristband/logout", &[BROWSER])
        .await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("method=\"post\""), "{}", page.text());
    let csp = page.header("content-security-policy").expect("CSP");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");

    // A POST from another site, or without an Origin, is refused.
    let origin = format!("Origin: http://{}", site.one.addr);
    for refused in ["Origin: https://evil.example", "Origin: null"] {
        let reply = browser
            .request(site.one.addr, "POST", "/_wristband/logout", &[refused])
            .await;
        assert_eq!(reply.status, 403, "{refused}");
        assert_eq!(reply.json()["error"], "forbidden");
    }
    assert!(
        site.redis
            .cli(&["EXISTS", &format!("sessions:{id}")])
            .contains('1')
    );

    let out = browser
        .request(site.one.addr, "POST", "/_wristband/logout", &[&origin])
        .await;
    assert_eq!(out.status, 302, "{}", out.text());
    let cleared = set_cookie(&out, "sid").expect("cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let location = out.header("location").expect("Location");
    assert!(
        location.starts_with(&format!("{}/session/end", site.op.issuer())),
        "{location}"
    );
    assert!(param(location, "id_token_hint").is_some(), "{location}");
    assert!(
        session_keys(&site.redis).is_empty(),
        "{:?}",
        session_keys(&site.redis)
    );

    // Replaying the old cookie is 401 on both instances.
    for proxy in [site.one.addr, site.two.addr] {
        let replay = client::get(proxy, "/", &[&old, "Accept: application/json"]).await;
        assert_eq!(replay.status, 401);
    }
    assert_eq!(login_total(&metrics(&site.one).await, "logout"), 1.0);

    // The OP ends its session and sends the browser to the registered URI.
    let back = browser.op.sign_out(location).await;
    assert!(back.starts_with(LOGGED_OUT), "{back}");
    assert_eq!(site.op.stats().await.end_session, 1);
}

#[tokio::test]
async fn without_end_session_logout_ends_at_post_logout_redirect() {
    let op = op_with(
        OpClient::basic("wb", "s3cret", REDIRECT_URI),
        OpSettings::new().without_end_session(),
    )
    .await;
    let site = site_with(op, "").await;
    let mut browser = Browser::new(&site.op);
    browser.logs_in(site.one.addr, site.one.addr).await;
    let origin = format!("Origin: http://{}", site.one.addr);
    let out = browser
        .request(site.one.addr, "POST", "/_wristband/logout", &[&origin])
        .await;
    assert_eq!(out.status, 302);
    assert_eq!(out.header("location"), Some("/bye"));
    assert!(session_keys(&site.redis).is_empty());
}

#[tokio::test]
async fn post_and_public_clients_and_userinfo_claims() {
    // client_secret_post, with the groups claim only at userinfo.
    let op = op_with(
        OpClient::post("wb", "s3cret", REDIRECT_URI),
        OpSettings::new().userinfo_only(&["groups"]),
    )
    .await;
    let site = site_with(op, "").await;
    let mut browser = Browser::new(&site.op);
    browser.logs_in(site.one.addr, site.two.addr).await;
    let seen = browser.page(site.one.addr, "/").await.seen();
    assert_eq!(seen.header("x-auth-groups"), Some("admins,dev"));
    assert_eq!(site.op.stats().await.userinfo, 1);

    // A public client: PKCE alone, no secret in the config.
    let op = op_with(OpClient::public("wb", REDIRECT_URI), OpSettings::new()).await;
    let redis = RedisServer::start();
    let app = upstream::echo().await;
    let toml =
        config(&op, &redis_store(&redis), app.addr, "").replace("client_secret = \"s3cret\"\n", "");
    let proxy = start_proxy(&toml).await;
    let mut browser = Browser::new(&op);
    browser.logs_in(proxy.addr, proxy.addr).await;
    assert_eq!(
        browser
            .page(proxy.addr, "/")
            .await
            .seen()
            .header("x-auth-user"),
        Some("alice")
    );
}

#[tokio::test]
async fn the_memory_store_serves_a_single_instance() {
    let op = op().await;
    let app = upstream::echo().await;
    let proxy = start_proxy(&config(&op, "", app.addr, "")).await;
    let mut browser = Browser::new(&op);
    assert_eq!(
        browser
            .login(proxy.addr, proxy.addr, "/x")
            .await
            .header("location"),
        Some("/x")
    );
    assert_eq!(
        browser
            .page(proxy.addr, "/")
            .await
            .seen()
            .header("x-auth-user"),
        Some("alice")
    );
    // A state is single-use here too.
    let authorization = browser.start(proxy.addr, "/").await;
    let target = browser.at_op(&authorization).await;
    let binding = browser.cookies[BINDING].clone();
    assert_eq!(browser.callback(proxy.addr, &target).await.status, 302);
    browser.cookies.insert(BINDING.into(), binding);
    assert_eq!(browser.callback(proxy.addr, &target).await.status, 403);
    let origin = format!("Origin: http://{}", proxy.addr);
    assert_eq!(
        browser
            .request(proxy.addr, "POST", "/_wristband/logout", &[&origin])
            .await
            .status,
        302
    );
    assert_eq!(browser.page(proxy.addr, "/").await.status, 401);
}

#[tokio::test]
async fn a_store_that_cannot_be_asked_is_503_never_a_login() {
    let mut site = site("").await;
    let mut browser = Browser::new(&site.op);
    let authorization = browser.start(site.one.addr, "/").await;
    let target = browser.at_op(&authorization).await;
    site.redis.stop();
    let done = browser.callback(site.two.addr, &target).await;
    assert_eq!(done.status, 503, "{}", done.text());
    assert_eq!(done.header("retry-after"), Some("1"));
    assert!(set_cookie(&done, "sid").is_none());
    let start = client::get(site.one.addr, "/_wristband/login?rd=/", &[]).await;
    assert_eq!(start.status, 503, "{}", start.text());
    assert_eq!(start.json()["error"], "unavailable");
}

#[tokio::test]
async fn behind_a_trusted_tls_proxy_the_site_is_https() {
    let op = op().await;
    let app = upstream::echo().await;
    let toml = config(&op, "", app.addr, "");
    let trusting = start_proxy(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{toml}"
    ))
    .await;
    let untrusting = start_proxy(&toml).await;
    for (proxy, expected) in [(&trusting, 302), (&untrusting, 403)] {
        let mut browser = Browser::new(&op);
        browser.logs_in(proxy.addr, proxy.addr).await;
        let origin = format!("Origin: https://{}", proxy.addr);
        let out = browser
            .request(
                proxy.addr,
                "POST",
                "/_wristband/logout",
                &[&origin, "X-Forwarded-Proto: https"],
            )
            .await;
        assert_eq!(out.status, expected, "{}", out.text());
    }
}

/// SPEC §8 with §7: behind an edge, a browser without a session is told
/// where to log in (`X-Auth-Login`), and the session login writes is then
/// what the edge's question carries.
#[tokio::test]
async fn forward_auth_points_the_edge_to_the_login_and_accepts_its_session() {
    let op = op().await;
    let app = upstream::echo().await;
    let toml = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[forward_auth]\n{}",
        config(&op, "", app.addr, "")
    );
    let proxy = start_proxy(&toml).await;
    let question = [
        "X-Forwarded-Method: GET",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: app.example.com",
        "X-Forwarded-Uri: /page?x=1",
    ];
    let mut browser = Browser::new(&op);
    let mut headers: Vec<&str> = question.to_vec();
    headers.push(BROWSER);
    let ask = browser
        .request(proxy.addr, "GET", "/_wristband/auth", &headers)
        .await;
    assert_eq!(ask.status, 401, "{}", ask.text());
    assert_eq!(
        ask.header("x-auth-login"),
        Some("/_wristband/login?rd=/page%3Fx%3D1")
    );
    // An API call gets no hint (guarantee 9).
    let mut api: Vec<&str> = question.to_vec();
    api.push("Accept: application/json");
    let ask = browser
        .request(proxy.addr, "GET", "/_wristband/auth", &api)
        .await;
    assert_eq!(ask.status, 401);
    assert!(ask.header("x-auth-login").is_none());

    assert_eq!(
        browser
            .login(proxy.addr, proxy.addr, "/page%3Fx%3D1")
            .await
            .status,
        302
    );
    let ask = browser
        .request(proxy.addr, "GET", "/_wristband/auth", &headers)
        .await;
    assert_eq!(ask.status, 200, "{}", ask.text());
    assert_eq!(ask.header("x-auth-user"), Some("alice"));
}

/// SPEC §9 with §7 on the memory store: ending a user's sessions through
/// the admin `POST /revoke` ends the sessions the login wrote.
#[tokio::test]
async fn revoking_a_sub_ends_its_login_sessions_on_the_memory_store() {
    let op = op().await;
    let app = upstream::echo().await;
    let token = "an-admin-token-for-the-login-test";
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n[revocation]\n{}",
        config(&op, "", app.addr, "")
    );
    let proxy = start_proxy(&toml).await;
    let mut browser = Browser::new(&op);
    browser.logs_in(proxy.addr, proxy.addr).await;
    assert_eq!(
        browser
            .page(proxy.addr, "/")
            .await
            .seen()
            .header("x-auth-user"),
        Some("alice")
    );
    let body = r#"{"sub":"alice"}"#;
    let revoked = client::raw(
        proxy.admin,
        &format!(
            "POST /revoke HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nAuthorization: Bearer {token}",
            body.len()
        ),
        body.as_bytes(),
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_eq!(browser.page(proxy.addr, "/").await.status, 401);
}

/// Two session cookies of the same name are ambiguous on every route; a
/// logout ends both rather than neither.
#[tokio::test]
async fn logout_ends_every_session_the_browser_sends() {
    let site = site("").await;
    let mut first = Browser::new(&site.op);
    assert_eq!(
        first.login(site.one.addr, site.one.addr, "/").await.status,
        302
    );
    let mut second = Browser::new(&site.op);
    assert_eq!(
        second.login(site.one.addr, site.one.addr, "/").await.status,
        302
    );
    let (a, b) = (first.cookies["sid"].clone(), second.cookies["sid"].clone());
    assert_ne!(a, b);
    let origin = format!("Origin: http://{}", site.one.addr);
    let out = client::raw(
        site.one.addr,
        &format!(
            "POST /_wristband/logout HTTP/1.1\r\nHost: {}\r\n{origin}\r\nCookie: sid={a}; sid={b}\r\nContent-Length: 0",
            site.one.addr
        ),
        b"",
    )
    .await;
    assert_eq!(out.status, 302, "{}", out.text());
    for id in [&a, &b] {
        let replay = client::get(
            site.two.addr,
            "/",
            &[&format!("Cookie: sid={id}"), "Accept: application/json"],
        )
        .await;
        assert_eq!(replay.status, 401, "session {} still valid", &id[..4]);
    }
    assert!(
        session_keys(&site.redis).is_empty(),
        "{:?}",
        session_keys(&site.redis)
    );
}

/// `persistent = true`: the cookie lasts `session_ttl`; and with the
/// default `refresh_interval = "0s"` the IdP is never asked again, though
/// it issued a refresh token.
#[tokio::test]
async fn a_persistent_cookie_lasts_session_ttl_and_no_refresh_without_an_interval() {
    let site = site("persistent = true\nsession_ttl = \"2h\"").await;
    let mut browser = Browser::new(&site.op);
    let done = browser.login(site.one.addr, site.one.addr, "/").await;
    let cookie = set_cookie(&done, "sid").expect("session cookie");
    assert!(cookie.contains("Max-Age=7200"), "{cookie}");
    let id = browser.cookies["sid"].clone();
    let rt = site
        .redis
        .cli(&["HGET", &format!("sessions:{id}"), "_wb_rt"]);
    assert!(
        rt.trim().starts_with("wb1."),
        "a refresh token was kept: {rt}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        browser
            .page(site.two.addr, "/")
            .await
            .seen()
            .header("x-auth-user"),
        Some("alice")
    );
    let stats = site.op.stats().await;
    assert_eq!((stats.refresh_ok, stats.refresh_error), (0, 0), "{stats:?}");
}

/// The login paths take only their methods: 405 with `Allow`.
#[tokio::test]
async fn login_paths_refuse_other_methods() {
    let site = site("").await;
    let mut browser = Browser::new(&site.op);
    for (method, path, allow) in [
        ("POST", "/_wristband/login", "GET"),
        ("POST", "/_wristband/callback", "GET"),
        ("PUT", "/_wristband/logout", "GET, POST"),
    ] {
        let reply = browser.request(site.one.addr, method, path, &[]).await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text());
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(reply.json()["error"], "method_not_allowed");
    }
}

/// The id_token rules of SPEC §7 on tokens the OP really signed (its own
/// key, signed again after the claims were changed): a valid signature
/// does not make a wrong audience, `azp`, issuer or `exp` acceptable.
/// The first case, accepted, shows the re-signed tokens verify at all.
#[tokio::test]
async fn a_signed_id_token_with_wrong_claims_is_refused() {
    let site = site("").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let signed = |claims: Value| json!({ "id_token": { "claims": claims, "resign": true } });

    site.op
        .tamper(signed(json!({ "aud": ["wb", "reports"], "azp": "wb" })))
        .await;
    let mut browser = Browser::new(&site.op);
    let accepted = browser.login(site.one.addr, site.two.addr, "/").await;
    assert_eq!(accepted.status, 302, "{}", accepted.text());
    assert_eq!(
        browser
            .page(site.one.addr, "/")
            .await
            .seen()
            .header("x-auth-user"),
        Some("alice")
    );
    let redis = &site.redis;
    redis.cli(&["FLUSHALL"]);

    let refused = [
        (
            "several audiences, no azp",
            json!({ "aud": ["wb", "reports"], "azp": null }),
        ),
        (
            "several audiences, another azp",
            json!({ "aud": ["wb", "reports"], "azp": "reports" }),
        ),
        (
            "one audience, another azp",
            json!({ "aud": "wb", "azp": "reports" }),
        ),
        ("not for this client", json!({ "aud": "reports" })),
        ("another issuer", json!({ "iss": "http://127.0.0.1:9" })),
        ("expired", json!({ "iat": now - 7200, "exp": now - 3600 })),
    ];
    for (case, claims) in refused {
        site.op.tamper(signed(claims)).await;
        let mut browser = Browser::new(&site.op);
        let reply = browser.login(site.one.addr, site.two.addr, "/").await;
        assert_eq!(reply.status, 403, "{case}: {}", reply.text());
        assert_refused(&site, &reply);
    }
    assert!(site.op.stats().await.tampered_id_tokens >= 7);
    assert_eq!(login_total(&metrics(&site.two).await, "failed"), 6.0);
}

/// OIDC Core §5.3.2: userinfo must be about the user the id_token names,
/// or its claims would be another user's.
#[tokio::test]
async fn userinfo_about_another_user_is_refused() {
    let op = op_with(
        OpClient::basic("wb", "s3cret", REDIRECT_URI),
        OpSettings::new().userinfo_only(&["groups"]),
    )
    .await;
    let site = site_with(op, "").await;
    site.op
        .tamper(json!({ "userinfo": { "claims": { "sub": "mallory", "groups": ["admins"] } } }))
        .await;
    let mut browser = Browser::new(&site.op);
    let reply = browser.login(site.one.addr, site.two.addr, "/").await;
    assert_refused(&site, &reply);
    assert_eq!(site.op.stats().await.userinfo, 1, "userinfo was asked");

    // The same userinfo about the right user is taken.
    site.op
        .tamper(json!({ "userinfo": { "claims": { "groups": ["auditors"] } } }))
        .await;
    let mut browser = Browser::new(&site.op);
    browser.logs_in(site.one.addr, site.two.addr).await;
    let seen = browser.page(site.one.addr, "/").await.seen();
    assert_eq!(seen.header("x-auth-groups"), Some("auditors"));
}

/// SPEC §7: discovery must name the configured issuer, and every endpoint
/// it names must be https (http only on loopback). Either way no login
/// starts: 503, nothing sent to the IdP's authorization endpoint.
#[tokio::test]
async fn a_discovery_document_for_another_issuer_or_with_plain_http_endpoints_is_refused() {
    let op = op().await;
    let app = upstream::echo().await;
    let toml = config(&op, "", app.addr, "");
    let cases = [
        ("another issuer", json!({ "issuer": "http://127.0.0.1:9" })),
        (
            "http authorization endpoint",
            json!({ "authorization_endpoint": "http://idp.example.com/auth" }),
        ),
        (
            "http token endpoint",
            json!({ "token_endpoint": "http://idp.example.com/token" }),
        ),
        (
            "http userinfo endpoint",
            json!({ "userinfo_endpoint": "http://idp.example.com/me" }),
        ),
        (
            "http end_session endpoint",
            json!({ "end_session_endpoint": "http://idp.example.com/logout" }),
        ),
    ];
    for (case, fields) in cases {
        op.tamper(json!({ "discovery": { "fields": fields } }))
            .await;
        // Discovery is cached per instance: a new one for each document.
        let proxy = start_proxy(&toml).await;
        let mut browser = Browser::new(&op);
        let start = browser
            .request(
                proxy.addr,
                "GET",
                "/_wristband/login?rd=/",
                &["Accept: application/json"],
            )
            .await;
        assert_eq!(start.status, 503, "{case}: {}", start.text());
        assert_eq!(start.json()["error"], "unavailable", "{case}");
        assert!(start.header("location").is_none(), "{case}");
        assert!(!browser.cookies.contains_key(BINDING), "{case}");
    }
    // The same OP, its document untouched: the login starts.
    op.tamper(json!({})).await;
    let proxy = start_proxy(&toml).await;
    let mut browser = Browser::new(&op);
    let authorization = browser.start(proxy.addr, "/").await;
    assert!(authorization.starts_with(op.issuer()), "{authorization}");
}

/// SPEC §7 `encryption_keys`: the first seals, all open. Adding a key in
/// front re-seals a session's tokens at its next refresh; once the old key
/// is dropped, a session that was never refreshed meanwhile cannot be
/// (its refresh token opens with no key) and ends, while the re-sealed one
/// lives on.
#[tokio::test]
async fn encryption_keys_rotate_without_logging_anyone_out_who_was_refreshed() {
    const NEW_KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="; // 32 bytes
    let op = op().await;
    let redis = RedisServer::start();
    let app = upstream::echo().await;
    let toml = config(
        &op,
        &redis_store(&redis),
        app.addr,
        "refresh_interval = \"1s\"",
    );
    let proxy = start_proxy(&toml).await;
    let keys = |list: &str| toml.replace(&format!("[\"{KEY}\"]"), list);
    let sealed_rt = |browser: &Browser| {
        let id = &browser.cookies["sid"];
        redis.cli(&["HGET", &format!("sessions:{id}"), "_wb_rt"])
    };
    let key_id = |sealed: &str| sealed.split('.').nth(1).unwrap_or_default().to_owned();

    let mut kept = Browser::new(&op);
    let mut idle = Browser::new(&op);
    for browser in [&mut kept, &mut idle] {
        browser.logs_in(proxy.addr, proxy.addr).await;
    }
    let old_id = key_id(&sealed_rt(&kept));
    assert_eq!(old_id, key_id(&sealed_rt(&idle)));

    // The new key first, the old one still opening.
    proxy.reload(&keys(&format!("[\"{NEW_KEY}\", \"{KEY}\"]")));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let seen = kept.page(proxy.addr, "/").await.seen();
    assert_eq!(seen.header("x-auth-user"), Some("alice"));
    assert_eq!(op.stats().await.refresh_ok, 1);
    let new_id = key_id(&sealed_rt(&kept));
    assert_ne!(new_id, old_id, "re-sealed with the new key");

    // The old key gone.
    proxy.reload(&keys(&format!("[\"{NEW_KEY}\"]")));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let seen = kept.page(proxy.addr, "/").await.seen();
    assert_eq!(seen.header("x-auth-user"), Some("alice"));
    assert_eq!(op.stats().await.refresh_ok, 2);
    assert_eq!(key_id(&sealed_rt(&kept)), new_id);
    let ended = idle.page(proxy.addr, "/").await;
    assert_eq!(ended.status, 401, "{}", ended.text());
    let id = &idle.cookies["sid"];
    assert!(
        !redis
            .cli(&["EXISTS", &format!("sessions:{id}")])
            .contains('1')
    );
    assert_eq!(
        op.stats().await.refresh_ok,
        2,
        "the IdP was not asked for it"
    );
}
