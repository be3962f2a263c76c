//! Forwarding, routing and the responses the proxy makes itself (SPEC §1,
//! §4), through real sockets.

mod common;

use common::client::{get, raw};
use common::{closed_port, one_upstream, start_proxy, upstream, upstream_toml, with_server};
use std::sync::atomic::Ordering;

const CATCH_ALL: &str = "[[routes]]\npath = \"/\"\nupstream = \"app\"\nauth = \"public\"";

const ROUTES: &str = r#"
[[routes]]
name = "public"
path = "/public"
upstream = "app"
auth = "public"

[[routes]]
name = "admin"
path = "/admin"
upstream = "app"
auth = "required"

[[routes]]
name = "readonly"
path = "/readonly"
upstream = "app"
auth = "public"
methods = ["GET", "HEAD"]

[[routes]]
name = "vhost"
host = "only.example.com"
path = "/"
upstream = "app"
auth = "public"
"#;

#[tokio::test]
async fn public_route_forwards_method_path_query_and_sets_forwarded_headers() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, ROUTES)).await;
    let reply = get(
        px.addr,
        "/public/a?x=1&y=%2F",
        &["X-Request-Id: client-id-1", "Accept: text/plain"],
    )
    .await;
    let seen = reply.seen();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/public/a?x=1&y=%2F");
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(px.addr.to_string().as_str())
    );
    assert_eq!(seen.header("host"), Some(px.addr.to_string().as_str()));
    assert_eq!(seen.header("accept"), Some("text/plain"));
    assert_eq!(seen.header("x-request-id"), Some("client-id-1"));
    assert_eq!(reply.header("x-request-id"), Some("client-id-1"));
}

#[tokio::test]
async fn a_malformed_request_id_is_replaced_on_both_sides() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, ROUTES)).await;
    let reply = get(px.addr, "/public", &["X-Request-Id: bad id;drop"]).await;
    let to_client = reply.header("x-request-id").expect("id").to_owned();
    assert_eq!(to_client.len(), 32);
    assert_eq!(
        reply.seen().header("x-request-id"),
        Some(to_client.as_str())
    );
    // Rejections carry it too.
    let reply = get(px.addr, "/nowhere", &[]).await;
    assert!(reply.header("x-request-id").is_some());
}

#[tokio::test]
async fn the_body_is_forwarded_to_the_upstream() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, CATCH_ALL)).await;
    let body = vec![b'z'; 300_000];
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}",
        body.len()
    );
    let reply = raw(px.addr, &head, &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "300000");
}

#[tokio::test]
async fn no_route_is_404_and_host_routes_do_not_leak_to_other_hosts() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, ROUTES)).await;
    let reply = get(px.addr, "/elsewhere", &[]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "no_route");
    let reply = raw(
        px.addr,
        "GET /elsewhere HTTP/1.1\r\nHost: ONLY.example.com:8443",
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "host match ignores case and port");
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_method_outside_the_route_is_405_with_allow_and_never_another_route() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, ROUTES)).await;
    let reply = raw(px.addr, "DELETE /readonly/x HTTP/1.1\r\nHost: a", b"").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    assert_eq!(reply.json()["error"], "method_not_allowed");
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_required_route_without_credentials_is_401_and_never_forwarded() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, ROUTES)).await;
    let reply = get(
        px.addr,
        "/admin/users",
        &["Authorization: Bearer abc.def.ghi"],
    )
    .await;
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .header("www-authenticate")
            .expect("challenge")
            .starts_with("Bearer realm=\"wristband\"")
    );
    assert!(!reply.text().contains("abc.def.ghi"));
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn normalization_bypasses_reach_the_policy_of_the_route_they_name() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, ROUTES)).await;
    // Each of these names /admin (required): the policy must see /admin.
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2e/admin/",
        "/public//../admin",
        "/public/./../admin",
        "/%61dmin",
        "/public/x/../../admin",
    ] {
        let reply = get(px.addr, path, &[]).await;
        assert_eq!(reply.status, 401, "{path} must hit the /admin policy");
    }
    // These are refused outright.
    for path in [
        "/public/..;/admin",
        "/public/%2e%2e;x/admin",
        "/public%2f..%2fadmin",
        "/public%5c..%5cadmin",
        "/public/%00",
        "/../admin",
        "/public/../../admin",
        "/public/%zz",
    ] {
        let reply = get(px.addr, path, &[]).await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(reply.json()["error"], "bad_request", "{path}");
    }
    let reply = raw(px.addr, "GET /public\\..\\admin HTTP/1.1\r\nHost: a", b"").await;
    assert_eq!(reply.status, 400, "raw backslash");
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_upstream_receives_the_normalized_path_the_policy_checked() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, ROUTES)).await;
    for (sent, forwarded) in [
        ("/public/./a//b/../c", "/public/a/c"),
        ("/public/%7euser/%41", "/public/~user/A"),
        ("/public/a%3ab?q=%2e%2e", "/public/a%3Ab?q=%2e%2e"),
        ("/x/../public/", "/public/"),
    ] {
        let seen = get(px.addr, sent, &[]).await.seen();
        assert_eq!(seen.uri, forwarded, "sent {sent}");
    }
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, ROUTES)).await;
    let reply = get(
        px.addr,
        "/public",
        &[
            "X-Auth-User: admin",
            "x-auth-user: admin2",
            "X_Auth_User: admin3",
            "X.Auth.User: admin4",
            "X-Auth-Roles: root",
            "X-Forwarded-User: admin",
            "X-Amzn-Oidc-Identity: admin",
            "X-Forwarded-For: 6.6.6.6",
            "X-Forwarded-Host: evil.example",
            "X-Forwarded-Proto: https",
            "Connection: X-Keep-Me-Not",
            "X-Keep-Me-Not: 1",
            "Other_Header: 1",
        ],
    )
    .await;
    let seen = reply.seen();
    for (name, values) in &seen.headers {
        let canonical = name.replace(['_', '.'], "-");
        assert!(
            !canonical.starts_with("x-auth-")
                && canonical != "x-forwarded-user"
                && !canonical.starts_with("x-amzn-oidc-")
                && canonical != "x-keep-me-not"
                && !name.contains('_'),
            "{name}: {values:?} reached the upstream"
        );
    }
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_ne!(seen.header("x-forwarded-host"), Some("evil.example"));
}

#[tokio::test]
async fn underscore_headers_can_be_rejected() {
    let up = upstream::echo().await;
    let toml = with_server(
        "headers_with_underscores = \"reject\"",
        &one_upstream(up.addr, ROUTES),
    );
    let px = start_proxy(&toml).await;
    let reply = get(px.addr, "/public", &["X_Auth_User: admin"]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "bad_request");
    assert_eq!(get(px.addr, "/public", &[]).await.status, 200);
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, ROUTES)).await;
    let seen = get(
        px.addr,
        "/public",
        &[
            "Keep-Alive: timeout=5",
            "TE: trailers",
            "Proxy-Authorization: Basic YTpi",
            "Proxy-Connection: keep-alive",
            "Upgrade: h2c",
        ],
    )
    .await
    .seen();
    for name in [
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(seen.header(name).is_none(), "{name} was forwarded");
    }
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let up = upstream::echo().await;
    let toml = with_server("max_header_bytes = 2048", &one_upstream(up.addr, ROUTES));
    let px = start_proxy(&toml).await;
    let big = format!("X-Big: {}", "a".repeat(4000));
    let reply = get(px.addr, "/public", &[&big]).await;
    assert_eq!(reply.status, 431);
    // Under the limit is fine.
    let small = format!("X-Big: {}", "a".repeat(1000));
    assert_eq!(get(px.addr, "/public", &[&small]).await.status, 200);
    // Far over hyper's buffer: still 431 (or the connection refused), never 200/500.
    let huge = format!("X-Big: {}", "a".repeat(64 * 1024));
    let reply = get(px.addr, "/public", &[&huge]).await;
    assert_eq!(reply.status, 431);
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_upstream_is_502() {
    let px = start_proxy(&one_upstream(closed_port(), ROUTES)).await;
    let reply = get(px.addr, "/public", &[]).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["error"], "bad_gateway");
}

#[tokio::test]
async fn a_slow_upstream_is_504() {
    let up = upstream::echo().await;
    let px = start_proxy(&upstream_toml(
        &[up.addr],
        "response_timeout = \"200ms\"",
        CATCH_ALL,
    ))
    .await;
    let reply = get(px.addr, "/slow/3000", &[]).await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["error"], "gateway_timeout");
    assert_eq!(get(px.addr, "/slow/10", &[]).await.status, 200);
}

#[tokio::test]
async fn a_refused_target_is_retried_on_another_and_ejected() {
    let up = upstream::echo().await;
    let dead = closed_port();
    let px = start_proxy(&upstream_toml(&[dead, up.addr], "retries = 1", CATCH_ALL)).await;
    for _ in 0..6 {
        assert_eq!(get(px.addr, "/x", &[]).await.status, 200);
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 6);
    let metrics = get(px.admin, "/metrics", &[]).await.text();
    let line = format!("wristband_upstream_healthy{{upstream=\"app\",target=\"http://{dead}\"}} 0");
    assert!(metrics.contains(&line), "{metrics}");
}

#[tokio::test]
async fn a_post_with_a_body_is_not_retried() {
    let up = upstream::echo().await;
    let px = start_proxy(&upstream_toml(
        &[closed_port(), up.addr],
        "retries = 1",
        CATCH_ALL,
    ))
    .await;
    // Round robin starts at the dead target.
    let reply = raw(
        px.addr,
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3",
        b"abc",
    )
    .await;
    assert_eq!(reply.status, 502);
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_missing_or_doubled_host_is_400() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, CATCH_ALL)).await;
    let reply = raw(px.addr, "GET / HTTP/1.1", b"").await;
    assert_eq!(reply.status, 400, "HTTP/1.1 without Host");
    let reply = raw(px.addr, "GET / HTTP/1.1\r\nHost: a\r\nHost: b", b"").await;
    assert_eq!(reply.status, 400, "two Hosts");
    let reply = raw(px.addr, "GET / HTTP/1.0", b"").await;
    assert_eq!(reply.status, 200, "HTTP/1.0 may omit Host");
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn with_preserve_host_off_the_upstream_sees_its_own_authority_as_host() {
    let up = upstream::echo().await;
    let px = start_proxy(&upstream_toml(
        &[up.addr],
        "preserve_host = false",
        CATCH_ALL,
    ))
    .await;
    let seen = get(px.addr, "/x?y=1", &[]).await.seen();
    assert_eq!(seen.header("host"), Some(up.addr.to_string().as_str()));
    assert_eq!(
        seen.uri, "/x?y=1",
        "origin form, not the target's absolute URI"
    );
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(px.addr.to_string().as_str()),
        "the client's Host travels in X-Forwarded-Host"
    );
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused_across_requests() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, CATCH_ALL)).await;
    for i in 0..20 {
        let reply = get(px.addr, &format!("/n/{i}"), &[]).await;
        assert_eq!(reply.seen().uri, format!("/n/{i}"));
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 20);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "20 sequential requests should share one pooled upstream connection"
    );
}
