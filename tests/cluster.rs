//! Sessions on a real Redis Cluster while its topology changes (SPEC §5
//! guarantee 5): 3 masters + 3 replicas started by the tests, and two proxy
//! instances in front of it, one without the session cache and one with
//! `cache_ttl = "30s"` (kept exact by client tracking on every primary).
//!
//! Throughout every change, a valid session is 200 or, only while the
//! change lasts, 503; a deleted one is 401, never a pass. Once the cluster
//! is settled again, every valid session is 200 within 15 s and a DEL is
//! refused within 100 ms on both instances.
//!
//! The runtime is multi-threaded: the harness blocks while it runs
//! `redis-cli`, and the proxies must keep serving (and receiving
//! invalidations) meanwhile.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::client::{Reply, get};
use common::redis::{Cluster, key_slot};
use common::upstream::{self, TestUpstream};
use common::{TestProxy, metric_sample, start_proxy, upstream_toml};

/// How long the proxies may take to serve every valid session again once
/// the cluster reports `cluster_state:ok`.
const SETTLE: Duration = Duration::from_secs(15);
/// Settled: this many rounds in a row with every valid session 200.
const CLEAN_ROUNDS: usize = 3;
const ROUND_GAP: Duration = Duration::from_millis(200);
/// Guarantee 5: a DEL is refused within this, cache or not.
const REFUSED_WITHIN: Duration = Duration::from_millis(100);

/// The two instances, the backend, and the sessions the test wrote.
struct Site {
    up: TestUpstream,
    /// `cache_ttl = "0s"`, then `"30s"`.
    proxies: [TestProxy; 2],
    /// Session ids that exist.
    valid: Vec<String>,
    /// Session ids that were deleted.
    deleted: Vec<String>,
}

fn config(cluster: &Cluster, cache_ttl: &str, up: SocketAddr) -> String {
    let route =
        "[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\naccept = [\"session\"]\n";
    format!(
        r#"
[store]
kind = "redis"
url = "{url}"
command_timeout = "250ms"

[sessions]
cookie = "sid"
key_prefix = "sessions:"
user_field = "user_id"
cache_ttl = "{cache_ttl}"

[identity]
headers = {{ "X-Auth-User" = "sub" }}
{rest}"#,
        url = cluster.url(),
        rest = upstream_toml(&[up], "", route)
    )
}

fn key(id: &str) -> String {
    format!("sessions:{id}")
}

/// Writes session `id` for user `u-<id>` wherever the cluster keeps it.
fn write_session(cluster: &Cluster, id: &str) {
    let user = format!("u-{id}");
    cluster.cli_cluster(&["HSET", &key(id), "user_id", &user]);
}

/// Ids whose keys spread over every master: at least two on each.
fn spread_ids(cluster: &Cluster) -> Vec<String> {
    let mut ids = Vec::new();
    let mut per_master = [0usize; 3];
    let mut n = 0;
    while per_master.iter().any(|&c| c < 2) {
        let id = format!("spread{n}");
        n += 1;
        let owner = cluster.owner(key_slot(&key(&id)));
        if per_master[owner] < 2 {
            per_master[owner] += 1;
            ids.push(id);
        }
    }
    ids
}

/// Ids whose keys all hash to `slot`.
fn ids_in_slot(slot: u16, count: usize) -> Vec<String> {
    (0..)
        .map(|n| format!("mig{n}"))
        .filter(|id| key_slot(&key(id)) == slot)
        .take(count)
        .collect()
}

async fn session_get(px: SocketAddr, id: &str) -> Reply {
    get(px, "/", &[&format!("Cookie: sid={id}")]).await
}

impl Site {
    async fn start(cluster: &Cluster, valid: Vec<String>) -> Site {
        // Why a proxy answered 503 (the store error's kind) is only in its
        // log: shown with a failing test, captured otherwise.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("wristband=warn,fred=warn")
            .with_test_writer()
            .try_init();
        for id in &valid {
            write_session(cluster, id);
        }
        let up = upstream::echo().await;
        let no_cache = start_proxy(&config(cluster, "0s", up.addr)).await;
        let cached = start_proxy(&config(cluster, "30s", up.addr)).await;
        common::wait_ready(&no_cache).await;
        common::wait_ready(&cached).await;
        Site {
            up,
            proxies: [no_cache, cached],
            valid,
            deleted: Vec::new(),
        }
    }

    /// Every valid session 200 with its user, every deleted one 401, on both
    /// instances: `503` allowed only while `changing`.
    async fn check(&self, changing: bool, when: &str) {
        for (which, px) in self.proxies.iter().enumerate() {
            for id in &self.valid {
                let reply = session_get(px.addr, id).await;
                match reply.status {
                    200 => assert_eq!(
                        reply.seen().header("x-auth-user"),
                        Some(format!("u-{id}").as_str()),
                        "{when}: proxy {which}, {id}"
                    ),
                    503 if changing => {}
                    other => panic!(
                        "{when}: proxy {which}: valid session {id} answered {other}: {}",
                        reply.text()
                    ),
                }
            }
            for id in &self.deleted {
                let reply = session_get(px.addr, id).await;
                match reply.status {
                    401 => assert_eq!(reply.json()["error"], "invalid_session"),
                    503 if changing => {}
                    other => panic!(
                        "{when}: proxy {which}: deleted session {id} answered {other}: {}",
                        reply.text()
                    ),
                }
            }
        }
    }

    /// After a change: within [`SETTLE`] every valid session is 200 on both
    /// instances (503 meanwhile is allowed, a pass of a deleted one is not);
    /// then one full strict round.
    ///
    /// The client learns a new topology from the first redirection, and
    /// may drop and reopen connections a little after: "served" means
    /// [`CLEAN_ROUNDS`] rounds in a row, [`ROUND_GAP`] apart.
    async fn settles(&self, when: &str) {
        let deadline = Instant::now() + SETTLE;
        let mut clean = 0;
        while clean < CLEAN_ROUNDS {
            self.check(true, when).await;
            let mut all = true;
            for px in &self.proxies {
                for id in &self.valid {
                    all &= session_get(px.addr, id).await.status == 200;
                }
            }
            clean = if all { clean + 1 } else { 0 };
            assert!(
                all || Instant::now() < deadline,
                "{when}: not every session served {SETTLE:?} after cluster_state:ok"
            );
            tokio::time::sleep(ROUND_GAP).await;
        }
        self.check(false, when).await;
    }

    /// Deletes `id` through `redis-cli -c` (which follows MOVED and ASK)
    /// and asserts both instances refuse it within [`REFUSED_WITHIN`].
    async fn delete_and_expect_refusal(&mut self, cluster: &Cluster, id: &str, when: &str) {
        // Looked up just before, so the caching instance holds it.
        for px in &self.proxies {
            assert_eq!(session_get(px.addr, id).await.status, 200, "{when}: {id}");
        }
        assert_eq!(
            cluster.cli_cluster(&["DEL", &key(id)]),
            "1",
            "{when}: DEL {id}"
        );
        let deleted_at = Instant::now();
        for (which, px) in self.proxies.iter().enumerate() {
            loop {
                let status = session_get(px.addr, id).await.status;
                if status == 401 {
                    break;
                }
                assert!(
                    deleted_at.elapsed() < REFUSED_WITHIN,
                    "{when}: proxy {which} still answered {status} for {id} {:?} after its DEL",
                    deleted_at.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.valid.retain(|v| v != id);
        self.deleted.push(id.to_owned());
    }

    /// On a promoted `primary`: a session written after the promotion is
    /// served, and ending it, or one written before, is refused at once.
    async fn new_primary_serves_and_ends_sessions(
        &mut self,
        cluster: &Cluster,
        primary: usize,
        when: &str,
    ) {
        let fresh = fresh_id_on(cluster, primary, when);
        write_session(cluster, &fresh);
        self.valid.push(fresh.clone());
        self.check(false, &format!("{when}: a session written since"))
            .await;
        self.delete_and_expect_refusal(cluster, &fresh, when).await;
        let older = self
            .valid
            .iter()
            .find(|id| cluster.owner(key_slot(&key(id))) == primary)
            .cloned()
            .expect("a session written before, on the promoted replica");
        self.delete_and_expect_refusal(cluster, &older, when).await;
    }

    /// The caching instance really served from its cache (else this file
    /// would not test the cache at all).
    async fn cache_was_used(&self) {
        let metrics = get(self.proxies[1].admin, "/metrics", &[]).await.text();
        let hits = metric_sample(
            &metrics,
            "wristband_cache_hits_total",
            &[("cache", "sessions")],
        )
        .unwrap_or(0.0);
        assert!(hits > 0.0, "the cached instance never hit its cache");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_stay_exact_while_a_slot_migrates_ask_then_moved() {
    let cluster = Cluster::start_with_replicas(3);
    // A slot of the first master's, moving to the second.
    let slot = 1000;
    let (from, to) = (cluster.owner(slot), 1);
    assert_ne!(from, to);
    let moving = ids_in_slot(slot, 5);
    let mut valid = spread_ids(&cluster);
    valid.extend(moving.iter().cloned());
    let mut site = Site::start(&cluster, valid).await;

    // Before any change: twice, so the second round is served from the cache.
    site.check(false, "before any change").await;
    site.check(false, "before any change, cached").await;
    site.cache_was_used().await;
    let first = site.valid[0].clone();
    site.delete_and_expect_refusal(&cluster, &first, "before any change")
        .await;

    // Migrating, nothing moved yet: the source still answers.
    cluster.begin_migration(slot, from, to);
    site.check(false, "slot migrating, no key moved").await;

    // Two keys moved: the source answers ASK for them, the rest it serves.
    let moved: Vec<String> = moving[..2].to_vec();
    let moved_keys: Vec<String> = moved.iter().map(|id| key(id)).collect();
    let moved_refs: Vec<&str> = moved_keys.iter().map(String::as_str).collect();
    cluster.migrate_keys(from, to, &moved_refs);
    site.check(false, "two keys moved (ASK)").await;
    site.check(false, "two keys moved (ASK), again").await;
    // A DEL on the importing node (redis-cli follows the ASK) and one on
    // the source are both refused at once.
    site.delete_and_expect_refusal(&cluster, &moved[0], "deleted where it moved (ASK)")
        .await;
    site.delete_and_expect_refusal(&cluster, &moving[2], "deleted before it moved")
        .await;

    // The rest moved and the slot handed over: MOVED from now on.
    let rest_keys: Vec<String> = moving[3..].iter().map(|id| key(id)).collect();
    let rest_refs: Vec<&str> = rest_keys.iter().map(String::as_str).collect();
    cluster.migrate_keys(from, to, &rest_refs);
    cluster.finish_migration(slot, to);
    assert!(cluster.wait_ok(Duration::from_secs(30)), "cluster settled");
    assert_eq!(cluster.owner(slot), to);
    site.settles("slot handed over (MOVED)").await;
    site.check(false, "slot handed over (MOVED), again").await;
    site.delete_and_expect_refusal(&cluster, &moving[3], "deleted after the hand-over")
        .await;
    site.delete_and_expect_refusal(&cluster, &moved[1], "moved early, deleted after")
        .await;
    site.cache_was_used().await;
    assert!(site.up.requests.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_manual_failover_and_a_killed_primary() {
    let mut cluster = Cluster::start_with_replicas(3);
    let valid = spread_ids(&cluster);
    let mut site = Site::start(&cluster, valid).await;
    site.check(false, "before any change").await;
    site.check(false, "before any change, cached").await;
    site.cache_was_used().await;

    // CLUSTER FAILOVER: master 0's replica takes over, the old master follows.
    let replica = cluster.replica_of(0).expect("master 0 has a replica");
    cluster.manual_failover(replica);
    site.check(true, "during CLUSTER FAILOVER").await;
    assert!(cluster.wait_ok(Duration::from_secs(30)), "cluster settled");
    site.settles("after CLUSTER FAILOVER").await;
    site.new_primary_serves_and_ends_sessions(&cluster, replica, "after CLUSTER FAILOVER")
        .await;

    // SIGKILL master 1; its replica is promoted by the cluster itself.
    let replica = cluster.replica_of(1).expect("master 1 has a replica");
    cluster.kill_and_wait_for_promotion(1, replica);
    site.check(true, "while master 1 is dead").await;
    assert!(cluster.wait_ok(Duration::from_secs(60)), "cluster settled");
    site.settles("after master 1 was killed").await;
    site.new_primary_serves_and_ends_sessions(&cluster, replica, "after master 1 was killed")
        .await;
    site.cache_was_used().await;
}

/// A new id whose key node `owner` serves.
fn fresh_id_on(cluster: &Cluster, owner: usize, when: &str) -> String {
    let prefix: String = when.chars().filter(char::is_ascii_alphanumeric).collect();
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|id| cluster.owner(key_slot(&key(id))) == owner)
        .expect("some id hashes to every master")
}
