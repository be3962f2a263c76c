use std::time::Duration;

use crate::config::StoreKind;
use crate::config::test_support::{ok, one_error};

#[test]
fn store_rules() {
    one_error(
        "[store]\nkind = \"postgres\"\n",
        "store.kind",
        "\"memory\" or \"redis\"",
    );
    one_error("[store]\nkind = \"redis\"\n", "store.url", "needs url");
    one_error(
        "[store]\nkind = \"redis\"\nurl = \"\"\n",
        "store.url",
        "needs url",
    );
    one_error(
        "[store]\nkind = \"redis\"\nurl = \"http://h:6379\"\n",
        "store.url",
        "redis://",
    );
    one_error(
        "[store]\nkind = \"redis\"\nurl = \"redis://\"\n",
        "store.url",
        "no host",
    );
    one_error(
        "[store]\ncommand_timeout = \"0s\"\n",
        "store.command_timeout",
        "greater than 0s",
    );
    one_error(
        "[store]\nca_file = \"nope.pem\"\n",
        "store.ca_file",
        "cannot read",
    );
    for scheme in ["redis", "rediss", "redis-sentinel", "redis-cluster"] {
        let c = ok(&format!(
            "[store]\nkind = \"redis\"\nurl = \"{scheme}://h1:7000,h2:7001/x\"\n"
        ));
        assert_eq!(c.store.kind, StoreKind::Redis);
        assert!(c.store.url.is_some());
    }
}

#[test]
fn sessions_rules() {
    one_error(
        "[sessions]\ncodec = \"express\"\n",
        "sessions.secrets",
        "at least one secret",
    );
    one_error(
        "[sessions]\ncodec = \"express\"\nsecrets = []\n",
        "sessions.secrets",
        "at least one secret",
    );
    one_error(
        "[sessions]\ncodec = \"express\"\nsecrets = [\"\"]\n",
        "sessions.secrets[0]",
        "must not be empty",
    );
    one_error(
        "[sessions]\ncodec = \"jwt\"\n",
        "sessions.codec",
        "\"plain\" or \"express\"",
    );
    one_error(
        "[sessions]\ncookie = \"my sid\"\n",
        "sessions.cookie",
        "cookie name",
    );
    one_error(
        "[sessions]\ncookie = \"a;b\"\n",
        "sessions.cookie",
        "cookie name",
    );
    one_error(
        "[sessions]\nformat = \"xml\"\n",
        "sessions.format",
        "\"hash\" or \"json\"",
    );
    one_error(
        "[sessions]\nuser_field = \"\"\n",
        "sessions.user_field",
        "must not be empty",
    );
    one_error(
        "[sessions]\nformat = \"json\"\nuser_field = \"/a~2\"\n",
        "sessions.user_field",
        "JSON pointer",
    );
    one_error(
        "[sessions]\nsliding_ttl = \"60s\"\n",
        "sessions.sliding_ttl",
        "more than 60s",
    );
    one_error(
        "[sessions]\ncache_ttl = \"forever\"\n",
        "sessions.cache_ttl",
        "invalid duration",
    );
    let c = ok(
        "[sessions]\ncodec = \"express\"\nsecrets = [\"s1\", \"s2\"]\nformat = \"json\"\n\
                user_field = \"/passport/user\"\nsliding_ttl = \"61s\"\ncache_ttl = \"5s\"\n\
                cookie = \"connect.sid\"\nlist_fields = [\"roles\"]\nforward_cookie = false\n",
    );
    let s = c.sessions.expect("sessions");
    assert_eq!(s.secrets.len(), 2);
    assert_eq!(s.sliding_ttl, Duration::from_secs(61));
    assert_eq!(s.cookie, "connect.sid");
    assert!(!s.forward_cookie);
}
