use crate::config::test_support::{TempDir, load_in, ok, one_error, one_error_in};
use crate::config::{LogFormat, UnderscoreHeaders};

#[test]
fn server_rules() {
    one_error("[server]\nlisten = []\n", "server.listen", "at least one");
    one_error(
        "[server]\nlisten = [\"localhost:80\"]\n",
        "server.listen[0]",
        "invalid socket address",
    );
    one_error(
        "[server]\nlisten = [\"127.0.0.1:80\", \"127.0.0.1:80\"]\n",
        "server.listen[1]",
        "duplicate",
    );
    let c = ok("[server]\nlisten = [\"127.0.0.1:80\", \"[::1]:8080\"]\n");
    assert_eq!(c.server.listen.len(), 2);
    one_error(
        "[server]\nmax_header_bytes = 1023\n",
        "server.max_header_bytes",
        "between 1024 and 1048576",
    );
    one_error(
        "[server]\nmax_header_bytes = 1048577\n",
        "server.max_header_bytes",
        "between",
    );
    assert_eq!(
        ok("[server]\nmax_header_bytes = 1048576\n")
            .server
            .max_header_bytes,
        1 << 20
    );
    one_error(
        "[server]\nmax_connections = 0\n",
        "server.max_connections",
        "at least 1",
    );
    one_error(
        "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
        "server.trusted_proxies[0]",
        "invalid CIDR",
    );
    let c = ok("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"::1\"]\n");
    let nets: Vec<String> = c
        .server
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, vec!["10.0.0.0/8", "192.0.2.7/32", "::1/128"]);
    one_error(
        "[server]\nheaders_with_underscores = \"keep\"\n",
        "server.headers_with_underscores",
        "\"drop\" or \"reject\" or \"allow\"",
    );
    assert_eq!(
        ok("[server]\nheaders_with_underscores = \"reject\"\n")
            .server
            .headers_with_underscores,
        UnderscoreHeaders::Reject
    );
}

#[test]
fn tls_needs_both_readable_files() {
    let dir = TempDir::new();
    dir.write("tls.crt", "cert");
    dir.write("tls.key", "key");
    one_error_in(
        &dir,
        "[server.tls]\ncert = \"tls.crt\"\n",
        "server.tls.key",
        "required",
    );
    one_error_in(
        &dir,
        "[server.tls]\ncert = \"tls.crt\"\nkey = \"nope.key\"\n",
        "server.tls.key",
        "cannot read",
    );
    one_error_in(
        &dir,
        "[server.tls]\ncert = \".\"\nkey = \"tls.key\"\n",
        "server.tls.cert",
        "directory",
    );
    let c = load_in(
        &dir,
        "[server.tls]\ncert = \"tls.crt\"\nkey = \"tls.key\"\n",
    )
    .expect("valid");
    let tls = c.server.tls.expect("tls");
    assert_eq!(tls.cert, dir.path().join("tls.crt"));
    assert_eq!(tls.key, dir.path().join("tls.key"));
}

#[test]
fn admin_rules() {
    one_error(
        "[admin]\nlisten = \"nowhere\"\n",
        "admin.listen",
        "invalid socket address",
    );
    one_error(
        "[server]\nlisten = [\"127.0.0.1:9000\"]\n[admin]\nlisten = \"127.0.0.1:9000\"\n",
        "admin.listen",
        "same address as server.listen[0]",
    );
    // Port 0 (tests) is never a clash.
    ok("[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n");
}

#[test]
fn log_rules() {
    one_error(
        "[log]\nformat = \"xml\"\n",
        "log.format",
        "invalid value \"xml\"",
    );
    one_error(
        "[log]\nlevel = \"wristband=loud\"\n",
        "log.level",
        "invalid log filter",
    );
    one_error("[log]\nlevel = \"\"\n", "log.level", "must not be empty");
    let c = ok(
        "[log]\nformat = \"pretty\"\nlevel = \"wristband=debug,hyper=warn\"\naccess_log = false\n",
    );
    assert_eq!(c.log.format, LogFormat::Pretty);
    assert!(!c.log.access_log);
}
