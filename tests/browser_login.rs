//! The whole story of SPEC §7 in a real browser (Debian's Chromium over
//! WebDriver): a protected page on a route with `on_unauthenticated =
//! "login"` sends the browser to the real OpenID Provider, it signs in
//! there, lands back on the page it asked for with the app seeing
//! `X-Auth-User`, then logs out (wristband and the OP) and is refused.
//!
//! wristband is opened as `localhost`, the OP as `127.0.0.1`: two sites, so
//! the return from the OP is a cross-site redirect, and only `SameSite=Lax`
//! on the binding cookie lets the login finish. The cookies are the
//! production ones: `__Host-` names with `Secure` (Chromium keeps them on
//! plain HTTP to localhost).
//!
//! Needs `chromium`, `chromium-driver` (`.ci/install-browser.sh`) and
//! Node.js (`.ci/install-node.sh`).

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::browser::Browser;
use common::client;
use common::oidc::{OidcProvider, OpClient, OpSettings};
use common::process::free_addr;
use common::upstream;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Polls until the browser's URL satisfies `done` (redirect chains that a
/// page's own script starts finish on their own time).
async fn wait_for_url(browser: &Browser, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = browser.current_url().await;
        if done(&url) {
            return url;
        }
        if Instant::now() > deadline {
            panic!(
                "never reached {what}; at {url}:\n{}",
                browser.page_text().await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_browser_logs_in_at_the_idp_reaches_the_app_and_logs_out() {
    // wristband's port first: the OP registers its redirect URI at start.
    let addr = free_addr();
    let site = format!("http://localhost:{}", addr.port());
    let callback = format!("{site}/_wristband/callback");
    let op = OidcProvider::start(
        OpSettings::new()
            .client(
                OpClient::basic("wb", "s3cret", &callback)
                    .post_logout_redirect_uri(&format!("{site}/bye")),
            )
            .account("alice", json!({"email": "alice@example.com"})),
    )
    .await;
    let app = upstream::echo().await;
    let toml = format!(
        r#"
[server]
listen = ["{addr}"]
[admin]
listen = "127.0.0.1:0"
[sessions]
cookie = "__Host-sid"
[login]
issuer = "{issuer}"
client_id = "wb"
client_secret = "s3cret"
redirect_uri = "{callback}"
encryption_keys = ["{KEY}"]
post_logout_redirect = "/bye"
[[upstreams]]
name = "app"
targets = ["http://{app}"]
[[routes]]
path = "/"
upstream = "app"
on_unauthenticated = "login"
[identity]
headers = {{ "X-Auth-User" = "sub", "X-Auth-Email" = "email" }}
"#,
        issuer = op.issuer(),
        app = app.addr,
    );
    wristband::install_crypto_provider();
    let running = wristband::start(common::parse(&toml))
        .await
        .expect("wristband starts");

    let browser = Browser::start().await;
    browser.goto(&format!("{site}/reports?year=2026")).await;
    let at_op = wait_for_url(&browser, "the OP's login form", |u| {
        u.starts_with(op.issuer()) && u.contains("/interaction/")
    })
    .await;
    assert!(
        browser.cookie("__Host-wristband-login").await.is_none(),
        "the binding cookie belongs to wristband's site, not the OP's ({at_op})"
    );
    browser.fill("input[name=login]", "alice").await;
    browser.fill("input[name=password]", "pw").await;
    browser.click("form[action$='/login'] button").await;

    let back = wait_for_url(&browser, "the page asked for", |u| u.starts_with(&site)).await;
    assert_eq!(back, format!("{site}/reports?year=2026"));
    let page = browser.page_text().await;
    assert!(page.contains("\"x-auth-user\":[\"alice\"]"), "{page}");
    assert!(page.contains("alice@example.com"), "{page}");
    let session = browser.cookie("__Host-sid").await.expect("session cookie");
    assert!(session.http_only, "{session:?}");
    assert!(session.secure, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Lax"), "{session:?}");
    assert_eq!(session.path.as_deref(), Some("/"));
    assert!(
        session.expiry.is_none(),
        "a browser-session cookie: {session:?}"
    );
    assert!(
        browser.cookie("__Host-wristband-login").await.is_none(),
        "the binding cookie is cleared once the login is done"
    );

    // Log out: the confirmation page's button POSTs, wristband ends the
    // session and sends the browser to the OP, whose page signs out and
    // returns to /bye, a protected page: the browser is sent to log in
    // again, and the OP, its own session ended too, asks for a password.
    browser.goto(&format!("{site}/_wristband/logout")).await;
    browser.click("form button").await;
    wait_for_url(&browser, "the OP's login form again", |u| {
        u.starts_with(op.issuer()) && u.contains("/interaction/")
    })
    .await;
    assert_eq!(op.stats().await.end_session, 1);
    assert!(browser.cookie("__Host-sid").await.is_none());
    // The old cookie, replayed, is refused.
    let replay = client::get(
        addr,
        "/reports",
        &[
            &format!("Cookie: __Host-sid={}", session.value),
            "Accept: application/json",
        ],
    )
    .await;
    assert_eq!(replay.status, 401, "{}", replay.text());

    running.shutdown().await;
}
