//! Revocation (SPEC §9, guarantee 11) with real parts: two proxies on one
//! real Redis (started by the test on a free port), revocations written by
//! the real `wristband revoke` binary, by `redis-cli` and by the admin
//! `POST /revoke`; and one proxy on the memory store. Login sessions are
//! written as the login flow writes them (a hash with `_wb_created`, and
//! the per-user index set).

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::client::{Reply, get, raw};
use common::process::{TempDir, binary};
use common::redis::{Cluster, RedisServer, key_slot};
use common::tokens::now;
use common::upstream::{self, TestUpstream};
use common::{TestProxy, idp, metric_sample, start_proxy, upstream_toml, wait_ready};
use serde_json::json;

const PROPAGATION: Duration = Duration::from_secs(1);
const ADMIN_TOKEN: &str = "an-admin-token-for-the-tests";

/// `store`: the `[store]` table. The provider's leeway is 0 s, so that a
/// revocation of a token with a near `exp` ends soon.
fn config(store: &str, up: &TestUpstream) -> String {
    let routes = format!(
        r#"
{store}

[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

[revocation]
propagation = "1s"

[sessions]
cookie = "sid"
key_prefix = "sessions:"

{provider}leeway = "0s"

[[routes]]
name = "api"
path = "/api"
upstream = "app"
"#,
        provider = idp::provider_toml()
    );
    upstream_toml(&[up.addr], "", &routes)
}

fn redis_store(redis: &RedisServer) -> String {
    format!("[store]\nkind = \"redis\"\nurl = \"{}\"\n", redis.url())
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

async fn status(px: &TestProxy, token: &str) -> u16 {
    get(px.addr, "/api/x", &[&bearer(token)]).await.status
}

/// Polls until every proxy answers `want` for `token`; how long it took.
async fn until_all(proxies: &[&TestProxy], token: &str, want: u16, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for px in proxies {
            if status(px, token).await != want {
                all = false;
            }
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not every proxy answered {want} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `wristband ARGS --config FILE` with the test's config.
fn wristband(config: &str, args: &[&str]) -> Output {
    let dir = TempDir::new();
    let file = dir.write("wristband.toml", config);
    Command::new(binary())
        .arg(args[0])
        .arg("--config")
        .arg(&file)
        .args(&args[1..])
        .output()
        .expect("run wristband")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn metrics(px: &TestProxy) -> String {
    get(px.admin, "/metrics", &[]).await.text()
}

/// The `wristband_revocations{kind}` gauge.
async fn held(px: &TestProxy, kind: &str) -> Option<f64> {
    metric_sample(
        &metrics(px).await,
        "wristband_revocations",
        &[("kind", kind)],
    )
}

async fn two_proxies(redis: &RedisServer, up: &TestUpstream) -> (TestProxy, TestProxy, String) {
    two_proxies_on(&redis_store(redis), up).await
}

/// Two ready instances on the `[store]` table `store`.
async fn two_proxies_on(store: &str, up: &TestUpstream) -> (TestProxy, TestProxy, String) {
    let toml = config(store, up);
    let a = start_proxy(&toml).await;
    let b = start_proxy(&toml).await;
    wait_ready(&a).await;
    wait_ready(&b).await;
    (a, b, toml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jti_revoked_by_the_cli_is_refused_by_every_instance_within_propagation() {
    let redis = RedisServer::start();
    let up = upstream::echo().await;
    let (a, b, toml) = two_proxies(&redis, &up).await;
    let exp = now() + 300;
    let token = idp::token("alice", &[("jti", json!("j-1")), ("exp", json!(exp))]);
    let other = idp::token("alice", &[("jti", json!("j-2"))]);
    // Verified, and so cached, before the revocation: the cache hit must
    // be refused too.
    for px in [&a, &b] {
        assert_eq!(status(px, &token).await, 200);
        assert_eq!(status(px, &token).await, 200);
    }

    let exp_arg = exp.to_string();
    let out = wristband(&toml, &["revoke", "--jti", "j-1", "--exp", &exp_arg]);
    assert!(out.status.success(), "{}", text(&out));
    let took = until_all(&[&a, &b], &token, 401, Duration::from_secs(5)).await;
    assert!(took <= PROPAGATION, "took {took:?}");

    let reply = get(a.addr, "/api/x", &[&bearer(&token)]).await;
    assert_eq!(reply.json()["error"], "invalid_token");
    for px in [&a, &b] {
        assert_eq!(
            status(px, &other).await,
            200,
            "another jti of the same user"
        );
        let text = metrics(px).await;
        let revoked = metric_sample(
            &text,
            "wristband_auth_total",
            &[("route", "api"), ("kind", "jwt"), ("outcome", "revoked")],
        );
        assert!(revoked >= Some(1.0), "{text}");
        assert_eq!(held(px, "jti").await, Some(1.0));
    }
    // What the CLI wrote, as SPEC §9 names it.
    assert_eq!(redis.cli(&["GET", "revoked:jti:j-1"]), exp_arg);
    let ttl: i64 = redis.cli(&["TTL", "revoked:jti:j-1"]).parse().unwrap_or(0);
    assert!((290..=300).contains(&ttl), "TTL {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_revocation_refuses_older_tokens_and_ends_the_login_sessions() {
    let redis = RedisServer::start();
    let up = upstream::echo().await;
    let (a, b, toml) = two_proxies(&redis, &up).await;
    let index = common_index_key("alice");
    let created = now() - 60;
    for id in ["s-one-aaaaaaaaaaaa", "s-two-bbbbbbbbbbbb"] {
        let key = format!("sessions:{id}");
        redis.cli(&[
            "HSET",
            &key,
            "user_id",
            "alice",
            "_wb_created",
            &created.to_string(),
        ]);
        redis.cli(&["EXPIRE", &key, "3600"]);
        redis.cli(&["SADD", &index, id]);
    }
    redis.cli(&["HSET", "sessions:s-bob", "user_id", "bob"]);
    let listed = wristband(&toml, &["sessions", "--sub", "alice"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.starts_with("2 login session(s)"), "{listed}");
    assert!(!listed.contains("s-one-aaaa"), "a whole id: {listed}");
    assert!(
        listed.contains("s-on…") && listed.contains("expires"),
        "{listed}"
    );

    let old = idp::token("alice", &[("iat", json!(now() - 10))]);
    let no_iat = common::tokens::Token::new()
        .claim("iss", json!(idp::ISSUER))
        .claim("sub", json!("alice"))
        .claim("aud", json!(idp::AUDIENCE))
        .claim("exp", json!(now() + 300))
        .sign_hs256(b"a-long-shared-secret-for-the-idp-helper");
    let bob = idp::token("bob", &[("iat", json!(now() - 10))]);
    for px in [&a, &b] {
        assert_eq!(status(px, &old).await, 200);
        let cookie = get(px.addr, "/api/x", &["Cookie: sid=s-one-aaaaaaaaaaaa"]).await;
        assert_eq!(cookie.status, 200, "{}", cookie.text());
    }

    let out = wristband(&toml, &["revoke", "--sub", "alice"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 login session(s) ended"),
        "{}",
        text(&out)
    );
    let took = until_all(&[&a, &b], &old, 401, Duration::from_secs(5)).await;
    assert!(took <= PROPAGATION, "took {took:?}");
    // Issued after the revocation: good.
    let new = idp::token("alice", &[("iat", json!(now() + 1))]);
    for px in [&a, &b] {
        assert_eq!(status(px, &no_iat).await, 401, "a token without iat");
        assert_eq!(status(px, &new).await, 200, "a token issued after");
        assert_eq!(status(px, &bob).await, 200, "another user");
        let cookie = get(px.addr, "/api/x", &["Cookie: sid=s-one-aaaaaaaaaaaa"]).await;
        assert_eq!(cookie.status, 401, "an ended session");
        assert_eq!(held(px, "sub").await, Some(1.0));
    }
    assert_eq!(redis.cli(&["EXISTS", "sessions:s-one-aaaaaaaaaaaa"]), "0");
    assert_eq!(redis.cli(&["EXISTS", "sessions:s-two-bbbbbbbbbbbb"]), "0");
    assert_eq!(redis.cli(&["EXISTS", &index]), "0");
    assert_eq!(redis.cli(&["EXISTS", "sessions:s-bob"]), "1");
    let listed = wristband(&toml, &["sessions", "--sub", "alice"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).starts_with("0 login session(s)"),
        "{}",
        text(&listed)
    );
}

/// The index key the login flow writes, computed here independently
/// (`sha256sum` of the sub).
fn common_index_key(sub: &str) -> String {
    let output = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(sub.as_bytes())?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    let hex = String::from_utf8_lossy(&output.stdout);
    format!(
        "sessions:user:{}",
        hex.split_whitespace().next().unwrap_or("")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_redis_cli_reaches_every_instance_also_across_a_redis_restart() {
    let mut redis = RedisServer::start();
    let up = upstream::echo().await;
    let (a, b, _) = two_proxies(&redis, &up).await;
    let exp = now() + 300;
    let first = idp::token("alice", &[("jti", json!("cli-1"))]);
    let second = idp::token("alice", &[("jti", json!("cli-2"))]);

    // Anyone's write is pushed (no instance read the key before), not
    // polled for: once loaded, the set costs the store nothing.
    let scans = redis.command_calls("scan");
    tokio::time::sleep(2 * PROPAGATION).await;
    assert_eq!(redis.command_calls("scan"), scans, "the set is polled");
    redis.cli(&["SET", "revoked:jti:cli-1", &exp.to_string(), "EX", "300"]);
    let took = until_all(&[&a, &b], &first, 401, Duration::from_secs(5)).await;
    assert!(took <= PROPAGATION, "took {took:?}");

    // While Redis is gone the last known set is kept.
    redis.stop();
    for px in [&a, &b] {
        assert_eq!(status(px, &first).await, 401);
    }
    // Back (empty: no persistence), and written to before the proxies
    // reconnect: only the reload after the reconnect can find it.
    redis.restart();
    redis.cli(&["SET", "revoked:jti:cli-2", &exp.to_string(), "EX", "300"]);
    until_all(&[&a, &b], &second, 401, Duration::from_secs(10)).await;
    // The store is the truth: what it lost is no longer revoked.
    until_all(&[&a, &b], &first, 200, Duration::from_secs(5)).await;
    // And pushes work again on the new connections.
    let third = idp::token("alice", &[("jti", json!("cli-3"))]);
    assert_eq!(status(&a, &third).await, 200);
    redis.cli(&["SET", "revoked:jti:cli-3", &exp.to_string(), "EX", "300"]);
    let took = until_all(&[&a, &b], &third, 401, Duration::from_secs(5)).await;
    assert!(took <= PROPAGATION, "took {took:?}");
}

/// A store that refuses client tracking (`CLIENT` renamed away, as some
/// managed Redis services restrict it) still meets the bound: the set is
/// reloaded every half `propagation`, and a write or a delete by anyone
/// reaches every instance within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_client_tracking_the_set_is_polled_within_propagation() {
    let redis = RedisServer::start_with(&["--rename-command", "CLIENT", ""]);
    let up = upstream::echo().await;
    let (a, b, _) = two_proxies(&redis, &up).await;
    let exp = now() + 300;
    let token = idp::token("alice", &[("jti", json!("poll-1"))]);
    for px in [&a, &b] {
        assert_eq!(status(px, &token).await, 200);
    }

    // Polled, not pushed: the two instances scan the set over and over.
    let scans = redis.command_calls("scan");
    tokio::time::sleep(2 * PROPAGATION).await;
    let polled = redis.command_calls("scan") - scans;
    assert!(polled >= 4, "{polled} scans in two propagations");

    redis.cli(&["SET", "revoked:jti:poll-1", &exp.to_string(), "EX", "300"]);
    let took = until_all(&[&a, &b], &token, 401, Duration::from_secs(5)).await;
    assert!(took <= PROPAGATION, "took {took:?}");
    // The store is the truth: a revocation it no longer holds ends too.
    redis.cli(&["DEL", "revoked:jti:poll-1"]);
    let took = until_all(&[&a, &b], &token, 200, Duration::from_secs(5)).await;
    assert!(took <= PROPAGATION, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_revocations_leave_the_deny_list() {
    let redis = RedisServer::start();
    let up = upstream::echo().await;
    let (a, _b, _) = two_proxies(&redis, &up).await;
    // Tokens that expire in seconds: their revocations are useless after.
    let exp = (now() + 3).to_string();
    let long = (now() + 300).to_string();
    let keys: Vec<String> = (0..200).map(|i| format!("revoked:jti:short-{i}")).collect();
    let mut mset = vec!["MSET", "revoked:jti:long", long.as_str()];
    for key in &keys {
        mset.push(key);
        mset.push(&exp);
    }
    redis.cli(&mset);
    let deadline = Instant::now() + Duration::from_secs(5);
    while held(&a, "jti").await != Some(201.0) {
        assert!(Instant::now() < deadline, "not all 201 held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // No TTL in the store (written by hand): the proxy drops them itself.
    let deadline = Instant::now() + Duration::from_secs(8);
    while held(&a, "jti").await != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "expired entries kept: {:?}",
            held(&a, "jti").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_the_memory_store_post_revoke_takes_effect_in_process() {
    let up = upstream::echo().await;
    let px = start_proxy(&config("", &up)).await;
    let token = idp::token("alice", &[("jti", json!("m-1"))]);
    assert_eq!(status(&px, &token).await, 200);

    let exp = now() + 300;
    let body = format!(r#"{{"jti":"m-1","exp":{exp}}}"#);
    let admin = bearer(ADMIN_TOKEN);
    let wrong = post_revoke(&px, &bearer("not-the-admin-token-at-all"), &body).await;
    assert_eq!(wrong.status, 401);
    let none = post_revoke(&px, "X-None: 1", &body).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        status(&px, &token).await,
        200,
        "a refused revocation did nothing"
    );
    let bad = post_revoke(&px, &admin, r#"{"jti":"m-1"}"#).await;
    assert_eq!(bad.status, 400);

    let done = post_revoke(&px, &admin, &body).await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(status(&px, &token).await, 401);

    let old = idp::token("bob", &[("iat", json!(now() - 10))]);
    assert_eq!(status(&px, &old).await, 200);
    let done = post_revoke(&px, &admin, r#"{"sub":"bob"}"#).await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(status(&px, &old).await, 401);
    assert_eq!(held(&px, "jti").await, Some(1.0));
    assert_eq!(held(&px, "sub").await, Some(1.0));

    // The CLI cannot reach a memory store: exit 2, saying why.
    let out = wristband(&config("", &up), &["revoke", "--sub", "bob"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory"));
}

#[tokio::test]
async fn without_an_admin_token_there_is_no_revoke_endpoint() {
    let up = upstream::echo().await;
    let toml = config("", &up).replace(&format!("token = \"{ADMIN_TOKEN}\""), "");
    let px = start_proxy(&toml).await;
    let reply = post_revoke(&px, &bearer(ADMIN_TOKEN), r#"{"sub":"a"}"#).await;
    assert_eq!(reply.status, 404);
}

async fn post_revoke(px: &TestProxy, header: &str, body: &str) -> Reply {
    raw(
        px.admin,
        &format!(
            "POST /revoke HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{header}",
            body.len()
        ),
        body.as_bytes(),
    )
    .await
}

#[tokio::test]
async fn a_reload_keeps_what_the_memory_store_revoked() {
    let up = upstream::echo().await;
    let toml = config("", &up);
    let px = start_proxy(&toml).await;
    let token = idp::token("alice", &[("jti", json!("r-1"))]);
    let body = format!(r#"{{"jti":"r-1","exp":{}}}"#, now() + 300);
    let done = post_revoke(&px, &bearer(ADMIN_TOKEN), &body).await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(status(&px, &token).await, 401);
    // The admin listener is fixed at start; the test's config keeps it.
    px.reload(&toml.replace("propagation = \"1s\"", "propagation = \"2s\""));
    assert_eq!(status(&px, &token).await, 401, "forgotten on reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_every_primary_pushes_its_revocations() {
    let cluster = Cluster::start(3);
    let up = upstream::echo().await;
    let store = format!("[store]\nkind = \"redis\"\nurl = \"{}\"\n", cluster.url());
    let (a, b, _) = two_proxies_on(&store, &up).await;
    // One jti whose key lives on each primary.
    let mut jtis: Vec<String> = Vec::new();
    let mut owners = std::collections::BTreeSet::new();
    for i in 0.. {
        let jti = format!("c-{i}");
        if owners.insert(cluster.owner(key_slot(&format!("revoked:jti:{jti}")))) {
            jtis.push(jti);
        }
        if owners.len() == 3 {
            break;
        }
    }
    let exp = (now() + 300).to_string();
    for jti in &jtis {
        let token = idp::token("alice", &[("jti", json!(jti))]);
        assert_eq!(status(&a, &token).await, 200);
        cluster.cli_cluster(&["SET", &format!("revoked:jti:{jti}"), &exp, "EX", "300"]);
        let took = until_all(&[&a, &b], &token, 401, Duration::from_secs(5)).await;
        assert!(took <= PROPAGATION, "{jti}: took {took:?}");
    }
}

/// A new `propagation` rebuilds the Redis watcher, but the set it watches
/// is the same store's: the reload neither forgets a revocation nor
/// refuses every JWT with 503 until the new watcher's first load, and the
/// new watcher keeps it current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_new_propagation_keeps_the_redis_set_and_its_watch() {
    let redis = RedisServer::start();
    let up = upstream::echo().await;
    let toml = config(&redis_store(&redis), &up);
    let px = start_proxy(&toml).await;
    wait_ready(&px).await;
    let exp = now() + 300;
    let revoked = idp::token("alice", &[("jti", json!("p-1")), ("exp", json!(exp))]);
    let later = idp::token("alice", &[("jti", json!("p-2")), ("exp", json!(exp))]);
    let valid = idp::token("bob", &[("jti", json!("p-3"))]);
    redis.cli(&["SET", "revoked:jti:p-1", &exp.to_string(), "EX", "300"]);
    until_all(&[&px], &revoked, 401, Duration::from_secs(5)).await;
    assert_eq!(status(&px, &valid).await, 200);

    // Redis stopped: the new watcher cannot load, so a set that started
    // empty would answer 503 to both.
    redis.pause();
    px.reload(&toml.replace("propagation = \"1s\"", "propagation = \"2s\""));
    let during = (status(&px, &revoked).await, status(&px, &valid).await);
    redis.resume();
    assert_eq!(during, (401, 200), "(revoked, valid) just after the reload");

    // The new watcher is tracking: a write after the reload arrives.
    redis.cli(&["SET", "revoked:jti:p-2", &exp.to_string(), "EX", "300"]);
    let took = until_all(&[&px], &later, 401, Duration::from_secs(5)).await;
    assert!(took <= Duration::from_secs(2), "took {took:?}");
    assert_eq!(held(&px, "jti").await, Some(2.0));
}

/// A replica promoted by `CLUSTER FAILOVER` is a primary the watcher never
/// asked to track. Its writes must still arrive within `propagation`, also
/// once the old primary (which, as a replica, may go on pushing what it
/// replicates) is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_promoted_replica_pushes_its_revocations() {
    let mut cluster = Cluster::start_with_replicas(3);
    let up = upstream::echo().await;
    let store = format!("[store]\nkind = \"redis\"\nurl = \"{}\"\n", cluster.url());
    let (a, b, _) = two_proxies_on(&store, &up).await;
    let replica = cluster.replica_of(0).expect("master 0 has a replica");
    // jtis whose keys master 0 serves, so its replica serves them after.
    let on_master_0: Vec<String> = (0..)
        .map(|i| format!("f-{i}"))
        .filter(|jti| cluster.owner(key_slot(&format!("revoked:jti:{jti}"))) == 0)
        .take(2)
        .collect();
    cluster.manual_failover(replica);
    assert!(cluster.wait_ok(Duration::from_secs(30)), "cluster settled");

    let exp = (now() + 300).to_string();
    let revoke = |cluster: &Cluster, jti: &str| {
        cluster.cli_cluster(&["SET", &format!("revoked:jti:{jti}"), &exp, "EX", "300"]);
    };
    let token = idp::token("alice", &[("jti", json!(on_master_0[0]))]);
    assert_eq!(status(&a, &token).await, 200);
    revoke(&cluster, &on_master_0[0]);
    let took = until_all(&[&a, &b], &token, 401, Duration::from_secs(10)).await;
    assert!(took <= PROPAGATION, "after the failover: took {took:?}");

    // The old primary, now the replica, gone for good.
    cluster.stop_node(0);
    assert!(cluster.wait_ok(Duration::from_secs(30)), "cluster settled");
    let token = idp::token("alice", &[("jti", json!(on_master_0[1]))]);
    assert_eq!(status(&a, &token).await, 200);
    revoke(&cluster, &on_master_0[1]);
    let took = until_all(&[&a, &b], &token, 401, Duration::from_secs(10)).await;
    assert!(
        took <= PROPAGATION,
        "with the old primary gone: took {took:?}"
    );
}

/// Until the revoked set is first loaded nothing is known to be not
/// revoked: a JWT is 503, not a pass (fail closed), and 200 once Redis
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_set_first_loads_a_jwt_is_503_never_a_pass() {
    let redis = RedisServer::start();
    let up = upstream::echo().await;
    redis.pause();
    let px = start_proxy(&config(&redis_store(&redis), &up)).await;
    let token = idp::token("alice", &[("jti", json!("l-1"))]);
    let refused = get(px.addr, "/api/x", &[&bearer(&token)]).await;
    redis.resume();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"], "unavailable");
    until_all(&[&px], &token, 200, Duration::from_secs(10)).await;
}
