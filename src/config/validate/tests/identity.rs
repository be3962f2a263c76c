use std::time::Duration;

use crate::config::HeaderPattern;
use crate::config::test_support::{TempDir, load_in, ok, one_error, one_error_in};

#[test]
fn identity_rules() {
    let c = ok("[identity]\nstrip = [\"X-Internal-*\", \"x_user.name\"]\nheaders = {}\n");
    assert_eq!(
        c.identity.strip,
        vec![
            HeaderPattern::Prefix("x-internal-".into()),
            HeaderPattern::Exact("x-user-name".into())
        ]
    );
    assert!(c.identity.headers.is_empty());
    one_error(
        "[identity]\nstrip = [\"*\"]\n",
        "identity.strip[0]",
        "every header",
    );
    one_error(
        "[identity]\nstrip = [\"X-*-A\"]\n",
        "identity.strip[0]",
        "only at the end",
    );
    one_error(
        "[identity]\nstrip = [\"X A\"]\n",
        "identity.strip[0]",
        "header name",
    );
    one_error(
        "[identity]\nstrip = [\"\"]\n",
        "identity.strip[0]",
        "must not be empty",
    );

    // File order, not alphabetical.
    let c = ok(
        "[identity]\nheaders = { \"X-User\" = \"sub\", \"X-Email\" = \"email\", \"A-Roles\" = \"roles\" }\n",
    );
    let h: Vec<(&str, &str)> = c
        .identity
        .headers
        .iter()
        .map(|(h, c)| (h.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        h,
        vec![
            ("x-user", "sub"),
            ("x-email", "email"),
            ("a-roles", "roles")
        ]
    );
    one_error(
        "[identity]\nheaders = { \"X User\" = \"sub\" }\n",
        "identity.headers.\"X User\"",
        "header name",
    );
    one_error(
        "[identity]\nheaders = { \"X-User\" = \"\" }\n",
        "identity.headers.X-User",
        "must not be empty",
    );
    one_error(
        "[identity]\nheaders = { \"X-User\" = \"sub\", \"x_user\" = \"email\" }\n",
        "identity.headers.x_user",
        "same header",
    );
}

#[test]
fn assertion_rules() {
    let dir = TempDir::new();
    dir.write("assertion.pem", &crate::assertion_key::generated_p256_pem());
    dir.write(
        "rsa.pem",
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    );
    one_error_in(
        &dir,
        "[identity.assertion]\nkey_file = \"rsa.pem\"\n",
        "identity.assertion.key_file",
        "BEGIN PRIVATE KEY",
    );
    one_error_in(
        &dir,
        "[identity.assertion]\n",
        "identity.assertion.key_file",
        "required",
    );
    one_error_in(
        &dir,
        "[identity.assertion]\nkey_file = \"nope.pem\"\n",
        "identity.assertion.key_file",
        "cannot read",
    );
    let base = "[identity.assertion]\nkey_file = \"assertion.pem\"\n";
    one_error_in(
        &dir,
        &format!("{base}ttl = \"2h\"\n"),
        "identity.assertion.ttl",
        "at most 1h",
    );
    one_error_in(
        &dir,
        &format!("{base}ttl = \"0s\"\n"),
        "identity.assertion.ttl",
        "greater than 0s",
    );
    one_error_in(
        &dir,
        &format!("{base}header = \"X Assert\"\n"),
        "identity.assertion.header",
        "header name",
    );
    one_error_in(
        &dir,
        &format!("{base}issuer = \"\"\n"),
        "identity.assertion.issuer",
        "must not be empty",
    );
    let a = load_in(&dir, base)
        .expect("valid")
        .identity
        .assertion
        .expect("assertion");
    assert_eq!(a.header.as_str(), "x-auth-assertion");
    assert_eq!(a.key_file, dir.path().join("assertion.pem"));
    assert_eq!(a.issuer, "wristband");
    assert_eq!(a.ttl, Duration::from_secs(60));
    let a = load_in(&dir, &format!("{base}ttl = \"1h\"\n"))
        .expect("valid")
        .identity
        .assertion
        .expect("a");
    assert_eq!(a.ttl, Duration::from_secs(3600));
}
