//! Guarantee 2, differentially: whatever identity headers a client sends —
//! in any case, with `_` or `.` for `-`, or named in its `Connection`
//! header — the upstream sees exactly what it sees when the client sends
//! none of them, on public, optional and required routes alike. The only
//! difference allowed is `X-Request-Id`, fresh per request.

mod common;

use std::collections::BTreeMap;

use common::client::get;
use common::upstream::{self, Seen};
use common::{idp, one_upstream, start_proxy, with_server};

const IDENTITY: &str = r#"
[identity]
headers = { "X-Auth-User" = "sub", "Remote-User" = "sub", "X-Team" = "team" }
"#;

/// Every spelling of an identity header a client could try.
const SPOOFED: &[&str] = &[
    "X-Auth-User: mallory",
    "x-auth-user: mallory-lower",
    "X_Auth_User: mallory-underscore",
    "X.Auth.User: mallory-dot",
    "Remote_User: mallory-remote",
    "remote.user: mallory-remote-dot",
    "X-Team: red",
    "x_team: red-underscore",
    "X-Auth-Assertion: eyJhbGciOiJub25lIn0.e30.",
    "X-Forwarded-User: root",
    "X-Amzn-Oidc-Identity: root",
    "Connection: X-Auth-User, Remote-User",
];

/// What the upstream saw, minus the per-request id.
fn view(seen: &Seen) -> (String, String, BTreeMap<String, Vec<String>>) {
    let mut headers = seen.headers.clone();
    headers.remove("x-request-id");
    (seen.method.clone(), seen.uri.clone(), headers)
}

async fn check_underscores(mode: &str) {
    let up = upstream::echo().await;
    let config = with_server(
        &format!("headers_with_underscores = \"{mode}\""),
        &one_upstream(
            up.addr,
            &format!(
                "{}\n{IDENTITY}{}",
                idp::provider_toml(),
                common::REQUIRED_OPTIONAL_PUBLIC
            ),
        ),
    );
    let px = start_proxy(&config).await;
    let token = idp::token("alice", &[("team", serde_json::json!("blue"))]);
    let bearer = format!("Authorization: Bearer {token}");
    let forged = format!("Authorization: Bearer {}", idp::forged_token("alice"));

    // (path, credential headers, the x-auth-user the upstream must see)
    let cases: Vec<(&str, Vec<&str>, Option<&str>)> = vec![
        ("/api/x", vec![bearer.as_str()], Some("alice")),
        ("/opt/x", vec![bearer.as_str()], Some("alice")),
        ("/opt/x", vec![], None),
        ("/opt/x", vec![forged.as_str()], None),
        ("/pub/x", vec![], None),
        ("/pub/x", vec![bearer.as_str()], None),
    ];
    for (path, credentials, user) in cases {
        let what = format!("{mode}: {path} with {} credential(s)", credentials.len());
        let clean = get(px.addr, path, &credentials).await.seen();
        let mut spoofing = credentials.clone();
        spoofing.extend_from_slice(SPOOFED);
        let spoofed = get(px.addr, path, &spoofing).await.seen();
        assert_eq!(
            view(&spoofed),
            view(&clean),
            "{what}: spoofed headers changed the upstream's view"
        );
        assert_eq!(clean.header("x-auth-user"), user, "{what}");
        assert_eq!(clean.header("remote-user"), user, "{what}");
        let team = user.map(|_| "blue");
        assert_eq!(clean.header("x-team"), team, "{what}");
        for (name, values) in &spoofed.headers {
            assert!(
                !values
                    .iter()
                    .any(|v| v.contains("mallory") || v == "root" || v.starts_with("red")),
                "{what}: {name}: {values:?} reached the upstream"
            );
        }
    }
    px.shutdown().await;
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream_when_underscores_are_dropped() {
    check_underscores("drop").await;
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream_when_underscores_are_allowed() {
    // With "allow", only identity stripping stands between `X_Auth_User`
    // and the upstream.
    check_underscores("allow").await;
}
