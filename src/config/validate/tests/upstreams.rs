use super::UPSTREAM;
use crate::config::Balance;
use crate::config::test_support::{ok, one_error};

#[test]
fn upstream_rules() {
    one_error(
        "[[upstreams]]\ntargets = [\"http://h:1\"]\n",
        "upstreams[0].name",
        "required",
    );
    one_error(
        &format!("{UPSTREAM}{UPSTREAM}"),
        "upstreams[1].name",
        "duplicate upstream name \"app\"",
    );
    one_error(
        "[[upstreams]]\nname = \"a\"\n",
        "upstreams[0].targets",
        "required",
    );
    one_error(
        "[[upstreams]]\nname = \"a\"\ntargets = []\n",
        "upstreams[0].targets",
        "at least one",
    );
    for (target, fragment) in [
        ("ftp://h:1", "http:// or https://"),
        ("127.0.0.1:3000", "http:// or https://"),
        ("http://h:1/base", "path"),
        ("http://h:1/?x=1", "path"),
        ("http://user@h:1", "user info"),
        ("http://", "valid URL"),
    ] {
        one_error(
            &format!("[[upstreams]]\nname = \"a\"\ntargets = [\"{target}\"]\n"),
            "upstreams[0].targets[0]",
            fragment,
        );
    }
    let c = ok(
        "[[upstreams]]\nname = \"a\"\ntargets = [\"http://h\", \"https://h\", \"http://h:8/\", \"http://[::1]:9\"]\n",
    );
    let t: Vec<String> = c.upstreams[0]
        .targets
        .iter()
        .map(|t| format!("{}://{}", t.scheme, t.authority))
        .collect();
    assert_eq!(
        t,
        vec![
            "http://h:80",
            "https://h:443",
            "http://h:8",
            "http://[::1]:9"
        ]
    );
    assert_eq!(c.upstreams[0].targets[0].configured, "http://h");
    one_error(
        &format!("{UPSTREAM}balance = \"random\"\n"),
        "upstreams[0].balance",
        "\"round_robin\" or",
    );
    assert_eq!(
        ok(&format!("{UPSTREAM}balance = \"user_hash\"\n")).upstreams[0].balance,
        Balance::UserHash
    );
    one_error(
        &format!("{UPSTREAM}retries = 6\n"),
        "upstreams[0].retries",
        "between 0 and 5",
    );
    one_error(
        &format!("{UPSTREAM}retries = -1\n"),
        "upstreams[0].retries",
        "between 0 and 5",
    );
    assert_eq!(
        ok(&format!("{UPSTREAM}retries = 5\n")).upstreams[0].retries,
        5
    );
    one_error(
        &format!("{UPSTREAM}connect_timeout = \"0s\"\n"),
        "upstreams[0].connect_timeout",
        "greater than 0s",
    );
    let hc = format!("{UPSTREAM}[upstreams.health_check]\n");
    one_error(
        &format!("{hc}path = \"healthz\"\n"),
        "upstreams[0].health_check.path",
        "start with \"/\"",
    );
    one_error(
        &format!("{hc}interval = \"0s\"\n"),
        "upstreams[0].health_check.interval",
        "greater than 0s",
    );
    one_error(
        &format!("{hc}unhealthy_after = 0\n"),
        "upstreams[0].health_check.unhealthy_after",
        "at least 1",
    );
    one_error(
        &format!("{hc}healthy_after = 0\n"),
        "upstreams[0].health_check.healthy_after",
        "at least 1",
    );
}
