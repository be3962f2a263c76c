//! Forward-auth (SPEC §8) through real sockets, the proxy in-process: the
//! edge's question in both header sets, the answers of §4, who may ask,
//! and that the decision is the proxied request's own (same normalization,
//! routing and policy). tests/edge.rs asks through real nginx and Caddy.

mod common;

use std::sync::atomic::Ordering;

use common::client::{Reply, get, raw};
use common::upstream::{self, TestUpstream};
use common::{TestProxy, idp, start_proxy, upstream_toml};
use serde_json::json;

const AUTH: &str = "/_wristband/auth";
const BROWSER: &str = "Accept: text/html,application/xhtml+xml,*/*;q=0.8";

fn config(trusted: &str) -> String {
    let routes = format!(
        r#"
[server]
trusted_proxies = [{trusted}]

[forward_auth]

{provider}

[identity]
headers = {{ "X-Auth-User" = "sub", "X-Auth-Roles" = "roles" }}

[[routes]]
name = "api"
path = "/api"
upstream = "app"
methods = ["GET", "POST"]

[[routes]]
name = "admin"
path = "/admin"
upstream = "app"
require = {{ roles = ["admin"] }}

[[routes]]
name = "public"
path = "/public"
upstream = "app"
auth = "public"

[[routes]]
name = "edge-only"
path = "/edge"

[[routes]]
name = "app"
path = "/app"
upstream = "app"
on_unauthenticated = "redirect"
login_url = "https://login.example.com/?rd={{url}}"
"#,
        provider = idp::provider_toml()
    );
    routes
}

struct Fixture {
    up: TestUpstream,
    px: TestProxy,
}

impl Fixture {
    async fn start(trusted: &str) -> Fixture {
        let up = upstream::echo().await;
        let px = start_proxy(&upstream_toml(&[up.addr], "", &config(trusted))).await;
        Fixture { up, px }
    }

    async fn trusted() -> Fixture {
        Fixture::start("\"127.0.0.1/32\"").await
    }

    /// nginx's question about `method uri` on host `app.example.com`.
    async fn ask(&self, method: &str, uri: &str, extra: &[&str]) -> Reply {
        let method = format!("X-Original-Method: {method}");
        let uri = format!("X-Original-URI: {uri}");
        let mut headers = vec![
            method.as_str(),
            uri.as_str(),
            "X-Forwarded-Host: app.example.com",
        ];
        headers.extend_from_slice(extra);
        get(self.px.addr, AUTH, &headers).await
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

#[tokio::test]
async fn a_valid_token_gets_200_with_the_identity_headers_and_no_body() {
    let f = Fixture::trusted().await;
    let token = idp::token("alice", &[("roles", json!(["dev", "ops"]))]);
    let reply = f.ask("GET", "/api/x?y=1", &[&bearer(&token)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-auth-user"), Some("alice"));
    assert_eq!(reply.header("x-auth-roles"), Some("dev,ops"));
    assert!(reply.body.is_empty());
    assert!(reply.header("x-request-id").is_some());
    // Asked, never forwarded.
    assert_eq!(f.up.requests.load(Ordering::SeqCst), 0);

    // Traefik's and Caddy's header set says the same.
    let reply = get(
        f.px.addr,
        AUTH,
        &[
            "X-Forwarded-Method: GET",
            "X-Forwarded-Uri: /api/x",
            "X-Forwarded-Host: app.example.com",
            "X-Forwarded-Proto: https",
            &bearer(&token),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-auth-user"), Some("alice"));
}

#[tokio::test]
async fn refusals_are_the_answers_of_section_4() {
    let f = Fixture::trusted().await;
    let missing = f.ask("GET", "/api/x", &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["error"], "unauthenticated");
    assert!(missing.header("www-authenticate").is_some());

    let forged = f
        .ask("GET", "/api/x", &[&bearer(&idp::forged_token("alice"))])
        .await;
    assert_eq!(forged.status, 401);
    assert_eq!(forged.json()["error"], "invalid_token");
    assert!(forged.header("x-auth-user").is_none());

    let dev = idp::token("alice", &[("roles", json!(["dev"]))]);
    let forbidden = f.ask("GET", "/admin", &[&bearer(&dev)]).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.json()["error"], "forbidden");
    assert!(forbidden.header("x-auth-user").is_none());

    let method = f.ask("DELETE", "/api/x", &[&bearer(&dev)]).await;
    assert_eq!(method.status, 405);
    assert_eq!(method.header("allow"), Some("GET, POST"));

    let nowhere = f.ask("GET", "/elsewhere", &[&bearer(&dev)]).await;
    assert_eq!(nowhere.status, 404);
    assert_eq!(nowhere.json()["error"], "no_route");
    assert_eq!(f.up.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_path_is_judged_normalized_as_a_proxied_one_is() {
    let f = Fixture::trusted().await;
    let dev = idp::token("alice", &[("roles", json!(["dev"]))]);
    for sneaky in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "//admin",
        "/public/./../admin/",
    ] {
        let reply = f.ask("GET", sneaky, &[&bearer(&dev)]).await;
        assert_eq!(reply.status, 403, "{sneaky}: {}", reply.text());
        let anonymous = f.ask("GET", sneaky, &[]).await;
        assert_eq!(anonymous.status, 401, "{sneaky}");
    }
    // What the proxy itself refuses, it refuses to judge.
    let reply = f.ask("GET", "/public/..%2Fadmin", &[]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    // And the public route is public.
    let reply = f.ask("GET", "/public/x", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("x-auth-user").is_none());
}

#[tokio::test]
async fn only_trusted_proxies_may_ask() {
    let f = Fixture::start("\"10.0.0.0/8\"").await;
    let token = idp::token("alice", &[]);
    let reply = f.ask("GET", "/api/x", &[&bearer(&token)]).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.json()["error"], "forbidden");
    assert!(reply.header("x-auth-user").is_none());
}

#[tokio::test]
async fn a_question_a_client_could_have_bent_is_refused() {
    let f = Fixture::trusted().await;
    let token = idp::token("alice", &[("roles", json!(["dev"]))]);
    // nginx forwards the client's X-Forwarded-Uri next to its own
    // X-Original-URI: whichever were read, the client would choose.
    let reply = f
        .ask(
            "GET",
            "/admin",
            &[
                "X-Forwarded-Method: GET",
                "X-Forwarded-Uri: /public",
                &bearer(&token),
            ],
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let reply = get(
        f.px.addr,
        AUTH,
        &["X-Original-URI: /api/x", &bearer(&token)],
    )
    .await;
    assert_eq!(reply.status, 400, "no method: {}", reply.text());
}

#[tokio::test]
async fn a_route_without_upstream_is_for_the_edge_only() {
    let f = Fixture::trusted().await;
    let token = idp::token("alice", &[]);
    let reply = f.ask("GET", "/edge/x", &[&bearer(&token)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-auth-user"), Some("alice"));
    for credentials in [vec![bearer(&token)], vec![]] {
        let headers: Vec<&str> = credentials.iter().map(String::as_str).collect();
        let proxied = get(f.px.addr, "/edge/x", &headers).await;
        assert_eq!(proxied.status, 404);
        assert_eq!(proxied.json()["error"], "no_route");
    }
    assert_eq!(f.up.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_login_redirect_reaches_the_edge_as_a_401_with_x_auth_login() {
    let f = Fixture::trusted().await;
    let reply = f.ask("GET", "/app/page?x=1", &[BROWSER]).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert!(reply.header("location").is_none());
    assert_eq!(
        reply.header("x-auth-login"),
        Some("https://login.example.com/?rd=http%3A%2F%2Fapp.example.com%2Fapp%2Fpage%3Fx%3D1")
    );
    // An API call gets no hint (guarantee 9).
    let reply = f
        .ask("GET", "/app/page", &["Accept: application/json"])
        .await;
    assert_eq!(reply.status, 401);
    assert!(reply.header("x-auth-login").is_none());
}

#[tokio::test]
async fn questions_are_counted_under_the_route_they_are_about() {
    let f = Fixture::trusted().await;
    let token = idp::token("alice", &[]);
    let reply = f.ask("GET", "/api/x", &[&bearer(&token)]).await;
    assert_eq!(reply.status, 200);
    let _ = f.ask("GET", "/api/x", &[]).await;
    let metrics = get(f.px.admin, "/metrics", &[]).await.text();
    let sample = |outcome| {
        common::metric_sample(
            &metrics,
            "wristband_auth_total",
            &[("route", "api"), ("kind", "jwt"), ("outcome", outcome)],
        )
    };
    assert_eq!(sample("ok"), Some(1.0), "{metrics}");
    assert_eq!(sample("missing"), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn envoy_asks_below_the_path_with_the_original_method_and_host() {
    let f = Fixture::trusted().await;
    let token = idp::token("alice", &[("roles", json!(["dev"]))]);
    let reply = get(
        f.px.addr,
        "/_wristband/auth/api/x?y=1",
        &[&bearer(&token), "X-Forwarded-Proto: https"],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-auth-user"), Some("alice"));
    let delete = raw(
        f.px.addr,
        &format!(
            "DELETE /_wristband/auth/api/x HTTP/1.1\r\nHost: app.example.com\r\n{}",
            bearer(&token)
        ),
        b"",
    )
    .await;
    assert_eq!(delete.status, 405);
    let sneaky = get(
        f.px.addr,
        "/_wristband/auth/public/../admin",
        &[&bearer(&token)],
    )
    .await;
    assert_eq!(sneaky.status, 403, "{}", sneaky.text());
    let bent = get(
        f.px.addr,
        "/_wristband/auth/admin",
        &[
            &bearer(&token),
            "X-Forwarded-Uri: /public",
            "X-Forwarded-Method: GET",
        ],
    )
    .await;
    assert_eq!(bent.status, 400);
    // Dot segments after the forward-auth path never climb out of it into
    // a proxied route (`/public`, answered 200, would read as "allowed").
    for climb in [
        "/_wristband/auth/../../public",
        "/_wristband/auth/x/../../../public",
        "/_wristband/%61uth/public",
    ] {
        let reply = get(f.px.addr, climb, &[]).await;
        assert_eq!(reply.status, 400, "{climb}: {}", reply.text());
    }
    assert_eq!(f.up.requests.load(Ordering::SeqCst), 0);
}
