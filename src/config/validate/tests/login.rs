//! `[login]` (SPEC §7): defaults, every key's checks, and what it needs
//! from the rest of the file.

use std::time::Duration;

use crate::config::test_support::{errors, ok, one_error};
use crate::config::{HostPattern, LoginConfig, OnUnauthenticated};

const HTTPS_CALLBACK: &str = "https://app.example.com/_wristband/callback";
const LOOPBACK_CALLBACK: &str = "http://127.0.0.1:8080/_wristband/callback";
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A valid `[login]` with `[sessions]`, plus `extra` keys in `[login]`.
fn login(extra: &str) -> String {
    login_with("[sessions]\n", extra)
}

fn login_with(sessions: &str, extra: &str) -> String {
    format!(
        "{sessions}\n[login]\nissuer = \"https://idp.example.com\"\nclient_id = \"wb\"\n\
         redirect_uri = \"https://app.example.com/_wristband/callback\"\n\
         encryption_keys = [\"{KEY}\"]\n{extra}\n"
    )
}

#[test]
fn defaults_of_spec_section_7() {
    let c = ok(&login(""));
    let l = c.login.expect("login");
    assert_eq!(l.issuer, "https://idp.example.com");
    assert_eq!(l.client_secret, None, "a public client");
    assert_eq!(l.callback_path, "/_wristband/callback");
    assert_eq!(l.scopes, ["openid", "email", "profile"]);
    assert_eq!(l.login_path, "/_wristband/login");
    assert_eq!(l.logout_path, "/_wristband/logout");
    assert_eq!(l.claims, ["sub", "email", "name", "groups"]);
    assert_eq!(l.session_ttl, Duration::from_secs(12 * 3600));
    assert!(!l.persistent);
    assert_eq!(l.refresh_interval, Duration::ZERO);
    assert!(l.allowed_redirect_hosts.is_empty());
    assert_eq!(l.post_logout_redirect, "/");
    assert!(l.cookie_secure);
    assert_eq!(l.binding_cookie(), "__Host-wristband-login");
    assert!(l.ca_file.is_none());
    assert!(ok("").login.is_none());
}

#[test]
fn keys_as_given() {
    let c = ok(&login(
        "client_secret = \"s\"\nscopes = [\"openid\", \"offline_access\"]\n\
         allowed_redirect_hosts = [\"*.example.com\", \"wiki.corp\"]\nrefresh_interval = \"5m\"\n\
         persistent = true\ncookie_secure = false\npost_logout_redirect = \"https://www.example.com/bye\"",
    )
    .replace(HTTPS_CALLBACK, LOOPBACK_CALLBACK));
    let l = c.login.expect("login");
    assert_eq!(l.client_secret.as_ref().map(|s| s.expose()), Some("s"));
    assert_eq!(l.scopes, ["openid", "offline_access"]);
    assert_eq!(
        l.allowed_redirect_hosts,
        [
            HostPattern::Wildcard(".example.com".into()),
            HostPattern::Exact("wiki.corp".into())
        ]
    );
    assert_eq!(l.refresh_interval, Duration::from_secs(300));
    assert!(l.persistent && !l.cookie_secure);
    assert_eq!(l.binding_cookie(), "wristband-login");
}

#[test]
fn every_key_is_checked() {
    let base = "[sessions]\n\n[login]\nclient_id = \"wb\"\nencryption_keys = [\"{KEY}\"]\n";
    let no_issuer = format!(
        "{}redirect_uri = \"https://a.example/cb\"\n",
        base.replace("{KEY}", KEY)
    );
    one_error(&no_issuer, "login.issuer", "required");
    for (key, value, fragment) in [
        ("issuer", "\"http://idp.example.com\"", "https://"),
        ("redirect_uri", "\"http://app.example.com/cb\"", "https://"),
        ("redirect_uri", "\"/cb\"", "absolute"),
        (
            "redirect_uri",
            "\"https://app.example.com/cb#x\"",
            "fragment",
        ),
        ("scopes", "[\"email\"]", "\"openid\""),
        ("login_path", "\"login\"", "absolute path"),
        ("logout_path", "\"/a/../b\"", "dot segments"),
        ("logout_path", "\"/_wristband/login\"", "must differ"),
        ("login_path", "\"/_wristband/callback\"", "must differ"),
        ("claims", "[\"_wb_rt\"]", "_wb_"),
        ("session_ttl", "\"0s\"", "greater than 0s"),
        ("allowed_redirect_hosts", "[\"*\"]", "\"*\" only"),
        ("post_logout_redirect", "\"//evil.example\"", "path"),
        (
            "post_logout_redirect",
            "\"http://evil.example/\"",
            "https://",
        ),
        ("client_secret", "\"\"", "public client"),
        ("refresh_interval", "\"500ms\"", "at least 1s"),
        ("cookie_secure", "false", "loopback host"),
    ] {
        let path = if matches!(key, "claims" | "allowed_redirect_hosts" | "scopes")
            && fragment != "\"openid\""
        {
            format!("login.{key}[0]")
        } else {
            format!("login.{key}")
        };
        let text = if key == "issuer" || key == "redirect_uri" {
            let mut text = login("");
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{key} =")))
                .expect("key line")
                .to_owned();
            text = text.replace(&line, &format!("{key} = {value}"));
            text
        } else {
            login(&format!("{key} = {value}"))
        };
        one_error(&text, &path, fragment);
    }
}

#[test]
fn encryption_keys_are_32_bytes_of_base64_and_never_quoted() {
    let short = "c2hvcnQ="; // "short"
    let text = login("").replace(KEY, short);
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("login.encryption_keys[0]: must be 32 bytes once decoded, not 5"),
        "{errs:?}"
    );
    assert!(!errs[0].contains(short), "a key is never quoted: {errs:?}");
    one_error(
        &login("").replace(KEY, "not base64!"),
        "login.encryption_keys[0]",
        "not base64",
    );
    one_error(
        &login("").replace(&format!("[\"{KEY}\"]"), &format!("[\"{KEY}\", \"{KEY}\"]")),
        "login.encryption_keys[1]",
        "repeats",
    );
    one_error(
        &login("").replace(&format!("encryption_keys = [\"{KEY}\"]\n"), ""),
        "login.encryption_keys",
        "required",
    );
}

#[test]
fn login_needs_plain_hash_sessions_and_secure_host_cookies() {
    one_error(&login_with("", ""), "login", "needs a [sessions] section");
    one_error(
        &login_with("[sessions]\ncodec = \"express\"\nsecrets = [\"x\"]\n", ""),
        "sessions.codec",
        "\"plain\"",
    );
    one_error(
        &login_with("[sessions]\nformat = \"json\"\n", ""),
        "sessions.format",
        "\"hash\"",
    );
    one_error(
        &login_with(
            "[sessions]\ncookie = \"__Host-sid\"\n",
            "cookie_secure = false",
        )
        .replace(HTTPS_CALLBACK, LOOPBACK_CALLBACK),
        "sessions.cookie",
        "cookie_secure = true",
    );
    assert!(
        ok(&login_with("[sessions]\ncookie = \"__Host-sid\"\n", ""))
            .login
            .is_some()
    );
}

#[test]
fn on_unauthenticated_login_needs_login() {
    let route = "[[upstreams]]\nname = \"app\"\ntargets = [\"http://127.0.0.1:3000\"]\n\
                 [[routes]]\nupstream = \"app\"\non_unauthenticated = \"login\"\n";
    let c = ok(&format!("{}{route}", login("")));
    assert_eq!(c.routes[0].on_unauthenticated, OnUnauthenticated::Login);
    one_error(
        &format!("[sessions]\n{route}"),
        "routes[0].on_unauthenticated",
        "needs a [login] section",
    );
    assert_eq!(LoginConfig::STATE_TTL, Duration::from_secs(600));
}

/// Forward-auth questions are looked for before the login endpoints: one
/// at or below `forward_auth.path` would never be reached.
#[test]
fn login_endpoints_must_lie_outside_the_forward_auth_path() {
    let with = |path: &str| format!("{}[forward_auth]\npath = \"{path}\"\n", login(""));
    assert!(ok(&with("/_wristband/auth")).forward_auth.is_some());
    // A shared prefix that is not a path segment covers nothing.
    assert!(ok(&with("/_wristband/log")).forward_auth.is_some());
    one_error(
        &with("/_wristband/login"),
        "forward_auth.path",
        "covers login.login_path's \"/_wristband/login\"",
    );
    let errs = errors(&with("/_wristband"));
    assert_eq!(errs.len(), 3, "{errs:?}");
    for key in [
        "login.login_path",
        "login.logout_path",
        "login.redirect_uri",
    ] {
        assert!(
            errs.iter()
                .any(|e| e.contains("forward_auth.path") && e.contains(key)),
            "{key}: {errs:?}"
        );
    }
}
