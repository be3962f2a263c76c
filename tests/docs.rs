//! The configurations in `docs/migration.md`, `docs/login.md`,
//! `docs/forward-auth.md` and the README stay valid: every ```toml block whose first line
//! is `# check` is a complete config, and the real binary's `wristband
//! check` must accept it (exit 0).

mod common;

use std::process::Command;

use common::process::{TempDir, binary};
use common::tokens::p256_pkcs8_pem;

/// Environment variables the guides' configs use.
const ENV: &[(&str, &str)] = &[
    ("SESSION_SECRET", "a-session-secret-for-the-docs-test"),
    // docs/login.md: 32 bytes in base64, as `openssl rand -base64 32` makes.
    (
        "WB_LOGIN_KEY",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    ),
    ("OIDC_SECRET", "an-oidc-client-secret-for-the-docs-test"),
    ("REDIS_URL", "redis://127.0.0.1:6379/0"),
    ("WRISTBAND_ADMIN_TOKEN", "an-admin-token-for-the-docs-test"),
];

/// The `# check` blocks of a Markdown text, in order.
fn checked_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match current.as_mut() {
            None if line.trim_end() == "```toml" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => {
                let block = current.take().unwrap_or_default();
                if block.lines().next().map(str::trim_end) == Some("# check") {
                    blocks.push(block);
                }
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "an unterminated ```toml block");
    blocks
}

#[test]
fn every_checked_config_in_the_migration_guide_passes_check() {
    // ALB, oauth2-proxy, Envoy jwt_authn, express-session: one at least each.
    check_guide("docs/migration.md", 4);
}

#[test]
fn every_checked_config_in_the_forward_auth_guide_passes_check() {
    // Forward-auth alone, and with revocation.
    check_guide("docs/forward-auth.md", 2);
}

#[test]
fn every_checked_config_in_the_login_guide_passes_check() {
    // Cognito, Keycloak, Google, Entra ID, Okta, oauth2-proxy, ALB.
    for (i, summary) in check_guide("docs/login.md", 7).iter().enumerate() {
        // Every block is a login config: `check` must say so.
        assert!(
            summary.contains("login on"),
            "block {i} of docs/login.md has no [login]: {summary}"
        );
    }
}

#[test]
fn the_readme_login_config_passes_check() {
    let summaries = check_guide("README.md", 1);
    assert!(
        summaries.iter().any(|s| s.contains("login on")),
        "{summaries:?}"
    );
}

/// Runs the real binary's `check` on every `# check` block of `name` (a
/// path under the repository), beside the files the blocks name: the
/// assertion key, and a listener certificate and key. Returns what `check`
/// printed for each.
fn check_guide(name: &str, at_least: usize) -> Vec<String> {
    let path = format!("{}/{name}", env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(&path).expect("the guide");
    let blocks = checked_blocks(&guide);
    assert!(
        blocks.len() >= at_least,
        "only {} `# check` blocks in {name}",
        blocks.len()
    );
    let certified = rcgen::generate_simple_self_signed(vec!["app.example.com".to_owned()])
        .expect("self-signed cert");
    let mut summaries = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let dir = TempDir::new();
        dir.write("assertion.pem", &p256_pkcs8_pem());
        dir.write("tls.crt", &certified.cert.pem());
        dir.write("tls.key", &certified.signing_key.serialize_pem());
        let file = dir.write(&format!("guide-{i}.toml"), block);
        let output = Command::new(binary())
            .args(["check", "--config"])
            .arg(&file)
            .envs(ENV.iter().copied())
            .output()
            .expect("run wristband check");
        assert!(
            output.status.success(),
            "block {i} of {name} fails `wristband check`:\n{}\n---\n{block}",
            String::from_utf8_lossy(&output.stderr)
        );
        summaries.push(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    summaries
}

#[test]
fn the_extractor_finds_only_marked_blocks() {
    let text = "```toml\n# check\na = 1\n```\n\n```toml\nb = 2\n```\n```rust\n# check\n```\n";
    assert_eq!(checked_blocks(text), vec!["# check\na = 1\n".to_owned()]);
}

#[test]
fn a_broken_block_would_fail_check() {
    // The test above is only worth something if `check` can say no.
    let dir = TempDir::new();
    let file = dir.write("bad.toml", "# check\n[[routes]]\nupstream = \"missing\"\n");
    let output = Command::new(binary())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .expect("run wristband check");
    assert_eq!(output.status.code(), Some(2));
}
