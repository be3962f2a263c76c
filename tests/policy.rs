//! Route policy through real sockets: the login redirect (SPEC §4,
//! guarantee 9) and the CSRF origin check's exemption of bearer tokens
//! (SPEC §3 `csrf`).

mod common;

use std::sync::atomic::Ordering;

use common::client::{Reply, get, raw};
use common::upstream::{self, TestUpstream};
use common::{TestProxy, idp, one_upstream, start_proxy};
use serde_json::json;

const LOGIN: &str = "https://login.example.com/start?rd=";

fn routes() -> String {
    format!(
        r#"
{provider}

[[routes]]
name = "app"
path = "/app"
upstream = "app"
on_unauthenticated = "redirect"
login_url = "{LOGIN}{{url}}"

[[routes]]
name = "admin"
path = "/admin"
upstream = "app"
require = {{ roles = ["admin"] }}
on_unauthenticated = "redirect"
login_url = "{LOGIN}{{url}}"

[[routes]]
name = "api"
path = "/api"
upstream = "app"

[[routes]]
name = "form"
path = "/form"
upstream = "app"
csrf = "origin"
"#,
        provider = idp::provider_toml()
    )
}

struct Fixture {
    up: TestUpstream,
    px: TestProxy,
}

impl Fixture {
    async fn start() -> Fixture {
        let up = upstream::echo().await;
        let px = start_proxy(&one_upstream(up.addr, &routes())).await;
        Fixture { up, px }
    }

    fn upstream_calls(&self) -> usize {
        self.up.requests.load(Ordering::SeqCst)
    }

    /// The Location a redirect of `target` must carry.
    fn location(&self, target: &str) -> String {
        format!(
            "{LOGIN}{}",
            encode(&format!("http://{}{target}", self.px.addr))
        )
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters,
/// written independently of the proxy's.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const BROWSER: &str = "Accept: text/html,application/xhtml+xml,*/*;q=0.8";

fn assert_redirected(reply: &Reply, location: &str, code: &str) {
    assert_eq!(reply.status, 302, "{}", reply.text());
    assert_eq!(reply.header("location"), Some(location));
    assert!(reply.header("www-authenticate").is_none());
    assert_eq!(reply.json()["error"], code);
}

fn assert_401(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text());
    assert!(reply.header("location").is_none(), "{what}");
    assert!(reply.header("www-authenticate").is_some(), "{what}");
}

#[tokio::test]
async fn a_browser_navigation_without_credentials_is_sent_to_the_login_page() {
    let f = Fixture::start().await;
    let target = "/app/page?x=1&next=%2Fhome";
    let reply = get(f.px.addr, target, &[BROWSER]).await;
    assert_redirected(&reply, &f.location(target), "unauthenticated");

    let head = raw(
        f.px.addr,
        &format!("HEAD {target} HTTP/1.1\r\nHost: {}\r\n{BROWSER}", f.px.addr),
        b"",
    )
    .await;
    assert_eq!(head.status, 302);
    assert_eq!(head.header("location"), Some(f.location(target).as_str()));

    let reply = get(
        f.px.addr,
        "/app/x",
        &[
            BROWSER,
            "Sec-Fetch-Mode: navigate",
            "Sec-Fetch-Dest: document",
        ],
    )
    .await;
    assert_redirected(&reply, &f.location("/app/x"), "unauthenticated");
    assert_eq!(f.upstream_calls(), 0);
}

#[tokio::test]
async fn the_redirect_carries_the_target_as_the_client_sent_it() {
    let f = Fixture::start().await;
    // Normalized to /app/app/bA for routing; the user wanted this page.
    let target = "/app/a/../app/b%41?q=a%20b";
    let reply = get(f.px.addr, target, &[BROWSER]).await;
    assert_redirected(&reply, &f.location(target), "unauthenticated");
    let location = reply.header("location").expect("location");
    assert!(location.ends_with("%2Fapp%2Fa%2F..%2Fapp%2Fb%2541%3Fq%3Da%2520b"));
}

#[tokio::test]
async fn an_invalid_token_in_a_navigation_is_redirected_too() {
    let f = Fixture::start().await;
    let forged = format!("Authorization: Bearer {}", idp::forged_token("alice"));
    let reply = get(f.px.addr, "/app/x", &[BROWSER, &forged]).await;
    assert_redirected(&reply, &f.location("/app/x"), "invalid_token");
    assert_eq!(f.upstream_calls(), 0);
}

#[tokio::test]
async fn api_calls_keep_their_401() {
    let f = Fixture::start().await;
    let cases: &[(&str, &[&str])] = &[
        ("no Accept", &[]),
        ("JSON", &["Accept: application/json"]),
        ("any", &["Accept: */*"]),
        ("XHR", &[BROWSER, "X-Requested-With: XMLHttpRequest"]),
        ("fetch()", &[BROWSER, "Sec-Fetch-Mode: cors"]),
        (
            "same-origin fetch()",
            &[BROWSER, "Sec-Fetch-Mode: same-origin"],
        ),
    ];
    for (what, headers) in cases {
        assert_401(&get(f.px.addr, "/app/x", headers).await, what);
    }
    for method in ["POST", "PUT", "DELETE"] {
        let reply = raw(
            f.px.addr,
            &format!(
                "{method} /app/form HTTP/1.1\r\nHost: {}\r\n{BROWSER}\r\nContent-Length: 3",
                f.px.addr
            ),
            b"a=1",
        )
        .await;
        assert_401(&reply, method);
    }
    // A route that denies never redirects.
    assert_401(&get(f.px.addr, "/api/x", &[BROWSER]).await, "deny route");
    assert_eq!(f.upstream_calls(), 0);
}

#[tokio::test]
async fn a_forbidden_caller_gets_403_not_a_login_page() {
    let f = Fixture::start().await;
    let token = idp::token("alice", &[("roles", json!(["dev"]))]);
    let reply = get(
        f.px.addr,
        "/admin/x",
        &[BROWSER, &format!("Authorization: Bearer {token}")],
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.header("location").is_none());
    assert_eq!(reply.json()["error"], "forbidden");
    assert_eq!(f.upstream_calls(), 0);
}

#[tokio::test]
async fn jwt_callers_are_exempt_from_the_csrf_origin_check() {
    let f = Fixture::start().await;
    let bearer = format!("Authorization: Bearer {}", idp::token("alice", &[]));
    for origin in ["", "\r\nOrigin: https://evil.example"] {
        let reply = raw(
            f.px.addr,
            &format!(
                "POST /form/x HTTP/1.1\r\nHost: {}\r\n{bearer}\r\nContent-Length: 0{origin}",
                f.px.addr
            ),
            b"",
        )
        .await;
        let seen = reply.seen();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.header("x-auth-user"), Some("alice"));
    }
}
