use std::time::Duration;

use super::{UPSTREAM, route};
use crate::config::test_support::{TempDir, errors, load_in, ok, one_error};
use crate::config::{ForwardAuthConfig, RevocationConfig};

const TOKEN: &str = "[admin]\ntoken = \"0123456789abcdef0123\"\n";

#[test]
fn forward_auth_and_revocation_are_off_unless_written() {
    let c = ok("");
    assert!(c.forward_auth.is_none());
    assert!(c.revocation.is_none());
    assert!(c.admin.token.is_none());
    let c = ok("[forward_auth]\n[revocation]\n");
    assert_eq!(
        c.forward_auth,
        Some(ForwardAuthConfig {
            path: ForwardAuthConfig::DEFAULT_PATH.into()
        })
    );
    assert_eq!(
        c.revocation.map(|r| r.propagation),
        Some(RevocationConfig::DEFAULT_PROPAGATION)
    );
    let c = ok("[forward_auth]\npath = \"/auth/\"\n[revocation]\npropagation = \"250ms\"\n");
    assert_eq!(c.forward_auth.map(|f| f.path).as_deref(), Some("/auth"));
    assert_eq!(
        c.revocation.map(|r| r.propagation),
        Some(Duration::from_millis(250))
    );
}

#[test]
fn forward_auth_paths_are_written_the_one_way_requests_reach_them() {
    one_error(
        "[forward_auth]\npath = \"/\"\n",
        "forward_auth.path",
        "every request",
    );
    one_error(
        "[forward_auth]\npath = \"auth\"\n",
        "forward_auth.path",
        "start with",
    );
    one_error(
        "[forward_auth]\npath = \"/a/../b\"\n",
        "forward_auth.path",
        "\"..\"",
    );
    one_error(
        "[forward_auth]\npath = \"/a%2Fb\"\n",
        "forward_auth.path",
        "%",
    );
    one_error(
        "[forward_auth]\nurl = \"/x\"\n",
        "forward_auth.url",
        "unknown key",
    );
    one_error(
        "[revocation]\npropagation = \"0s\"\n",
        "revocation.propagation",
        "greater than 0s",
    );
}

#[test]
fn a_route_without_upstream_needs_forward_auth() {
    let text = "[[routes]]\npath = \"/a\"\n";
    assert_eq!(
        errors(text),
        [
            ":1:1: routes[0].upstream: required key is missing (only with [forward_auth] may a route have no upstream)"
        ]
    );
    let c = ok(&format!("[forward_auth]\n{text}"));
    assert_eq!(c.routes[0].upstream, None);
    // Named, it must still exist.
    one_error(
        &format!(
            "[forward_auth]\n{}",
            route("path = \"/b\"").replace("\"app\"\npath", "\"nope\"\npath")
        ),
        "routes[0].upstream",
        "no upstream named \"nope\"",
    );
    let c = ok(&format!(
        "[forward_auth]\n{UPSTREAM}[[routes]]\nupstream = \"app\"\n"
    ));
    assert_eq!(c.routes[0].upstream, Some(0));
}

#[test]
fn the_admin_token_is_a_long_secret_that_needs_revocation() {
    let c = ok(&format!("{TOKEN}[revocation]\n"));
    assert_eq!(
        c.admin.token.as_ref().map(|t| t.expose()),
        Some("0123456789abcdef0123")
    );
    let errs = errors(TOKEN);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(":2:9: admin.token: enables POST /revoke"),
        "{errs:?}"
    );
    // Short, and never quoted.
    let errs = errors("[admin]\ntoken = \"hunter2\"\n[revocation]\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("admin.token: must be at least 16"),
        "{errs:?}"
    );
    assert!(!errs[0].contains("hunter2"));
    // Empty: off.
    assert!(ok("[admin]\ntoken = \"\"\n").admin.token.is_none());
    // From a file, one trailing newline trimmed.
    let dir = TempDir::new();
    dir.write("admin.token", "0123456789abcdef0123\n");
    let c = load_in(
        &dir,
        "[admin]\ntoken_file = \"admin.token\"\n[revocation]\n",
    )
    .expect("valid");
    assert_eq!(
        c.admin.token.as_ref().map(|t| t.expose()),
        Some("0123456789abcdef0123")
    );
    one_error(
        "[admin]\ntoken = \"0123456789abcdef0123\"\ntoken_file = \"x\"\n[revocation]\n",
        "admin.token_file",
        "not both",
    );
}
