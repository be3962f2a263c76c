//! The configurations in `docs/migration.md`, `docs/login.md` and
//! `docs/forward-auth.md` stay valid: every ```toml block whose first line
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
    check_guide("migration.md", 4);
}

#[test]
fn every_checked_config_in_the_forward_auth_guide_passes_check() {
    // Forward-auth alone, and with revocation.
    check_guide("forward-auth.md", 2);
}

fn check_guide(name: &str, at_least: usize) {
    let path = format!("{}/docs/{name}", env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(&path).expect("the guide");
    let blocks = checked_blocks(&guide);
    assert!(
        blocks.len() >= at_least,
        "only {} `# check` blocks in {name}",
        blocks.len()
    );
    for (i, block) in blocks.iter().enumerate() {
        let dir = TempDir::new();
        dir.write("assertion.pem", &p256_pkcs8_pem());
        let file = dir.write(&format!("guide-{i}.toml"), block);
        let output = Command::new(binary())
            .args(["check", "--config"])
            .arg(&file)
            .envs(ENV.iter().copied())
            .output()
            .expect("run wristband check");
        assert!(
            output.status.success(),
            "block {i} of docs/{name} fails `wristband check`:\n{}\n---\n{block}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_checked_config_in_the_login_guide_passes_check() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/login.md"))
        .expect("docs/login.md");
    let blocks = checked_blocks(&guide);
    // Cognito, Keycloak, Google, Entra ID, Okta, oauth2-proxy, ALB.
    assert!(blocks.len() >= 7, "only {} `# check` blocks", blocks.len());
    // The files the guide's configs name: the listener's certificate and
    // key (wristband terminates TLS itself) and the assertion key.
    let certified = rcgen::generate_simple_self_signed(vec!["app.example.com".to_owned()])
        .expect("self-signed cert");
    for (i, block) in blocks.iter().enumerate() {
        let dir = TempDir::new();
        dir.write("assertion.pem", &p256_pkcs8_pem());
        dir.write("tls.crt", &certified.cert.pem());
        dir.write("tls.key", &certified.signing_key.serialize_pem());
        let file = dir.write(&format!("login-{i}.toml"), block);
        let output = Command::new(binary())
            .args(["check", "--config"])
            .arg(&file)
            .envs(ENV.iter().copied())
            .output()
            .expect("run wristband check");
        assert!(
            output.status.success(),
            "block {i} of docs/login.md fails `wristband check`:\n{}\n---\n{block}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Every block is a login config: `check` must say so.
        let summary = String::from_utf8_lossy(&output.stdout);
        assert!(
            summary.contains("login on"),
            "block {i} of docs/login.md has no [login]: {summary}"
        );
    }
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
