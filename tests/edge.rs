//! Forward-auth (SPEC §8) behind real edges: nginx `auth_request` and
//! Caddy `forward_auth` in front of a real backend (the echo upstream),
//! asking an in-process wristband. What reaches the backend is what the
//! edge made of wristband's answers: the identity header from wristband
//! alone, refusals never forwarded, and the path judged as normalized.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::client::{Reply, get, parse, raw};
use common::edge::Edge;
use common::upstream::{self, TestUpstream};
use common::{TestProxy, idp, start_proxy};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// wristband as the edges' decision point only: no upstream anywhere.
fn config() -> String {
    format!(
        r#"
[server]
trusted_proxies = ["127.0.0.1/32"]

[log]
access_log = false

[forward_auth]

{provider}

[[routes]]
name = "admin"
path = "/admin"
require = {{ roles = ["admin"] }}

[[routes]]
name = "public"
path = "/public"
auth = "public"

[[routes]]
name = "app"
path = "/"
"#,
        provider = idp::provider_toml()
    )
}

struct Fixture {
    backend: TestUpstream,
    px: TestProxy,
    edges: Vec<Edge>,
}

impl Fixture {
    async fn start() -> Fixture {
        let backend = upstream::echo().await;
        let px = start_proxy(&config()).await;
        let (wristband, app) = (px.addr, backend.addr);
        let edges = tokio::task::spawn_blocking(move || {
            vec![Edge::nginx(wristband, app), Edge::caddy(wristband, app)]
        })
        .await
        .expect("edges start");
        Fixture { backend, px, edges }
    }

    fn backend_calls(&self) -> usize {
        self.backend.requests.load(Ordering::SeqCst)
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

fn admin_token() -> String {
    idp::token("alice", &[("roles", json!(["admin"]))])
}

fn dev_token() -> String {
    idp::token("bob", &[("roles", json!(["dev"]))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_reaches_the_backend_with_the_identity_from_wristband_only() {
    let f = Fixture::start().await;
    for edge in &f.edges {
        let reply = get(edge.addr, "/app/x?y=1", &[&bearer(&admin_token())]).await;
        assert_eq!(
            reply.status,
            200,
            "{}: {}\n{}",
            edge.name,
            reply.text(),
            edge.log()
        );
        assert_eq!(
            reply.seen().header("x-auth-user"),
            Some("alice"),
            "{}",
            edge.name
        );

        // A client's own X-Auth-User is replaced...
        let spoofed = get(
            edge.addr,
            "/app/x",
            &[&bearer(&dev_token()), "X-Auth-User: alice"],
        )
        .await;
        assert_eq!(
            spoofed.seen().header("x-auth-user"),
            Some("bob"),
            "{}",
            edge.name
        );

        // ...and removed where wristband names nobody. Caddy before 2.9
        // sets a copied header wristband did not send to its own
        // unreplaced placeholder (caddyserver/caddy#6610): junk, never the
        // client's value.
        let public = get(edge.addr, "/public/x", &["X-Auth-User: alice"]).await;
        assert_eq!(public.status, 200, "{}: {}", edge.name, public.text());
        let seen = public.seen();
        match seen.header("x-auth-user") {
            None => {}
            Some("{http.reverse_proxy.header.X-Auth-User}") if edge.name == "caddy" => {}
            Some(other) => panic!("{}: the backend saw X-Auth-User: {other}", edge.name),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_back_through_the_edge_and_nothing_reaches_the_backend() {
    let f = Fixture::start().await;
    for edge in &f.edges {
        let before = f.backend_calls();
        let missing = get(edge.addr, "/app/x", &["X-Auth-User: alice"]).await;
        assert_eq!(missing.status, 401, "{}: missing", edge.name);
        let forged = get(
            edge.addr,
            "/app/x",
            &[&bearer(&idp::forged_token("alice")), "X-Auth-User: alice"],
        )
        .await;
        assert_eq!(forged.status, 401, "{}: forged", edge.name);
        let expired = common::tokens::Token::new()
            .claim("iss", json!(idp::ISSUER))
            .claim("sub", json!("alice"))
            .claim("aud", json!(idp::AUDIENCE))
            .claim("exp", json!(common::tokens::now() - 3600))
            .sign_hs256(b"a-long-shared-secret-for-the-idp-helper");
        let expired = get(edge.addr, "/app/x", &[&bearer(&expired)]).await;
        assert_eq!(expired.status, 401, "{}: expired", edge.name);
        let forbidden = get(edge.addr, "/admin/x", &[&bearer(&dev_token())]).await;
        assert_eq!(forbidden.status, 403, "{}: require", edge.name);
        assert_eq!(
            f.backend_calls(),
            before,
            "{} forwarded a refusal",
            edge.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_dot_path_through_the_edge_is_judged_as_where_it_leads() {
    let f = Fixture::start().await;
    for edge in &f.edges {
        let before = f.backend_calls();
        for (headers, status) in [(vec![bearer(&dev_token())], 403), (vec![], 401)] {
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let reply = raw(
                edge.addr,
                &format!(
                    "GET /public/../admin HTTP/1.1\r\nHost: app.example.com\r\n{}",
                    headers.join("\r\n")
                ),
                b"",
            )
            .await;
            assert_eq!(reply.status, status, "{}: {}", edge.name, reply.text());
        }
        assert_eq!(f.backend_calls(), before, "{}", edge.name);
        // The admin gets through, to the page the path leads to.
        let reply = raw(
            edge.addr,
            &format!(
                "GET /public/../admin HTTP/1.1\r\nHost: app.example.com\r\n{}",
                bearer(&admin_token())
            ),
            b"",
        )
        .await;
        assert_eq!(reply.status, 200, "{}: {}", edge.name, reply.text());
        assert_eq!(reply.seen().header("x-auth-user"), Some("alice"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asking_wristband_directly_is_refused() {
    let f = Fixture::start().await;
    // Loopback, but not 127.0.0.1: outside trusted_proxies.
    let reply = from_127_0_0_2(
        f.px.addr,
        &format!(
            "GET /_wristband/auth HTTP/1.1\r\nHost: app.example.com\r\nX-Original-Method: GET\r\nX-Original-URI: /app\r\n{}",
            bearer(&admin_token())
        ),
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.json()["error"], "forbidden");
    assert!(reply.header("x-auth-user").is_none());
    // Through an edge the same question is the edge's own: the client's
    // X-Original-URI is overwritten (nginx) or makes the question
    // ambiguous (Caddy), never obeyed.
    for edge in &f.edges {
        let reply = get(
            edge.addr,
            "/admin/x",
            &[
                &bearer(&dev_token()),
                "X-Original-URI: /public",
                "X-Original-Method: GET",
            ],
        )
        .await;
        assert!(
            reply.status == 403 || reply.status == 400,
            "{}: {} {}",
            edge.name,
            reply.status,
            reply.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_sends_a_browser_to_the_login_hint() {
    // The hint comes from a redirect route; nginx's error_page and
    // Caddy's handle_response turn it into the redirect.
    let backend = upstream::echo().await;
    let toml = config().replace(
        "[[routes]]\nname = \"app\"\npath = \"/\"\n",
        "[[routes]]\nname = \"app\"\npath = \"/\"\non_unauthenticated = \"redirect\"\nlogin_url = \"https://login.example.com/?rd={url}\"\n",
    );
    let px = start_proxy(&toml).await;
    let (wristband, app) = (px.addr, backend.addr);
    let edges = tokio::task::spawn_blocking(move || {
        vec![Edge::nginx(wristband, app), Edge::caddy(wristband, app)]
    })
    .await
    .expect("edges start");
    for edge in &edges {
        let reply = get(edge.addr, "/page", &["Accept: text/html"]).await;
        assert_eq!(
            reply.status,
            302,
            "{}: {}\n{}",
            edge.name,
            reply.text(),
            edge.log()
        );
        let location = reply.header("location").unwrap_or_default();
        assert!(
            location.starts_with("https://login.example.com/?rd=http%3A%2F%2F127.0.0.1"),
            "{}: {location}",
            edge.name
        );
        let api = get(edge.addr, "/page", &["Accept: application/json"]).await;
        assert_eq!(api.status, 401, "{}", edge.name);
    }
    assert_eq!(backend.requests.load(Ordering::SeqCst), 0);
    drop(px);
}

/// One request from 127.0.0.2 (all of 127/8 is loopback on Linux).
async fn from_127_0_0_2(to: SocketAddr, head: &str) -> Reply {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 2], 0)))
        .expect("bind 127.0.0.2");
    let mut stream = socket.connect(to).await.expect("connect");
    let request = format!("{head}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("answer within 10 s")
        .expect("read");
    parse(&bytes).expect("an HTTP response")
}
