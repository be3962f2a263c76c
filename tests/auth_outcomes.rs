//! One request, one authentication outcome (SPEC §6 `wristband_auth_total`,
//! §3 `[log]` "auth outcome"): the metric and the access log's `auth` field
//! say the same thing, once per request, whatever number of credential
//! kinds the route tried. Drives the real binary in front of an echo
//! upstream and a JWKS server.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use common::client;
use common::jwks::{JwksServer, provider_toml};
use common::process::{ProxyProcess, admin_get, eventually};
use common::tokens::{RsaKey, Token, now};
use common::upstream;

fn config(upstream: SocketAddr, idp: &JwksServer) -> String {
    format!(
        r#"
[log]
format = "json"
level = "info"

{provider}

[sessions]
cookie = "sid"

[[upstreams]]
name = "app"
targets = ["http://{upstream}"]

[[routes]]
name = "both"
path = "/both"
upstream = "app"
auth = "required"
accept = ["jwt", "session"]

[[routes]]
name = "admin"
path = "/admin"
upstream = "app"
auth = "required"
accept = ["jwt"]
require = {{ roles = ["admin"] }}

[[routes]]
name = "opt"
path = "/opt"
upstream = "app"
auth = "optional"
accept = ["jwt"]

[[routes]]
name = "pub"
path = "/pub"
upstream = "app"
auth = "public"
"#,
        provider = provider_toml(idp, &[]),
    )
}

/// The access-log line of request `id`, as JSON.
async fn access_line(px: &ProxyProcess, id: &str) -> serde_json::Value {
    let needle = format!("\"request_id\":\"{id}\"");
    let logged = eventually(Duration::from_secs(10), || px.stderr().contains(&needle)).await;
    assert!(logged, "no access line for {id}; stderr:\n{}", px.stderr());
    let stderr = px.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains(&needle) && l.contains("wristband::access"))
        .unwrap_or_else(|| panic!("no access line for {id}:\n{stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test]
async fn each_request_is_counted_once_and_logged_with_the_same_outcome() {
    let key = RsaKey::generate("k1");
    let idp = JwksServer::start(vec![key.jwk()]).await;
    let up = upstream::echo().await;
    let px = ProxyProcess::start(&config(up.addr, &idp)).await;
    let token = |roles: &[&str], exp: i64| {
        Token::new()
            .kid("k1")
            .claim("iss", json!(idp.base_url()))
            .claim("sub", json!("alice"))
            .claim("aud", json!("app"))
            .claim("roles", json!(roles))
            .claim("exp", json!(exp))
            .sign_rs256(&key)
    };
    let valid = format!("Authorization: Bearer {}", token(&[], now() + 300));
    let expired = format!("Authorization: Bearer {}", token(&[], now() - 3600));
    let garbage = "Authorization: Bearer not.a.token";

    // (request id, path, headers, status, the access log's `auth`)
    let cases: &[(&str, &str, &[&str], u16, &str)] = &[
        ("o-missing", "/both", &[], 401, "missing"),
        (
            "o-two-bad",
            "/both",
            &[garbage, "Cookie: sid=no-such-session"],
            401,
            "invalid",
        ),
        ("o-expired", "/both", &[&expired], 401, "expired"),
        ("o-ok", "/both", &[&valid], 200, "ok"),
        ("o-forbidden", "/admin", &[&valid], 403, "forbidden"),
        ("o-anonymous", "/opt", &[garbage], 200, "anonymous"),
        // Not counted: a public route never looks, and an unrouted request
        // never reaches authentication.
        ("o-public", "/pub", &[garbage], 200, "public"),
        ("o-unrouted", "/nowhere", &[&valid], 404, "none"),
    ];
    for (id, path, headers, status, auth) in cases {
        let request_id = format!("X-Request-Id: {id}");
        let mut all = vec![request_id.as_str()];
        all.extend_from_slice(headers);
        let reply = client::get(px.addr, path, &all).await;
        assert_eq!(reply.status, *status, "{id}: {}", reply.text());
        let line = access_line(&px, id).await;
        assert_eq!(line["auth"], *auth, "{id}: {line}");
    }

    let (_, metrics) = admin_get(px.admin, "/metrics")
        .await
        .expect("the admin listener answers");
    let count = |route: &str, kind: &str, outcome: &str| {
        common::metric_sample(
            &metrics,
            "wristband_auth_total",
            &[("route", route), ("kind", kind), ("outcome", outcome)],
        )
    };
    // The route's first accepted kind carries "missing"; a request with a
    // bad token and a bad cookie is one invalid_token, counted once.
    for (route, kind, outcome) in [
        ("both", "jwt", "missing"),
        ("both", "jwt", "invalid"),
        ("both", "jwt", "expired"),
        ("both", "jwt", "ok"),
        ("admin", "jwt", "forbidden"),
        ("opt", "jwt", "invalid"),
    ] {
        assert_eq!(
            count(route, kind, outcome),
            Some(1.0),
            "{route} {kind} {outcome}:\n{metrics}"
        );
    }
    assert_eq!(
        count("both", "session", "invalid"),
        None,
        "the refused cookie of the invalid_token request counted a second time:\n{metrics}"
    );
    assert_eq!(
        count("admin", "jwt", "ok"),
        None,
        "a 403 counted as ok too:\n{metrics}"
    );
    let total: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("wristband_auth_total{"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    let counted = cases
        .iter()
        .filter(|(.., auth)| !matches!(*auth, "public" | "none"))
        .count();
    assert_eq!(total, counted as f64, "one count per request:\n{metrics}");
}
