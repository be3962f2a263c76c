//! Faults under load (issue 17): two `wristband` processes share a Redis
//! (behind Sentinel for the failover), a JWKS endpoint and two backend
//! targets, and take a steady load on a required session route, a
//! required JWT route and a public route, while one fault strikes. Every
//! forwarded request's identity is checked against the credential sent,
//! by the generator and by the backend (`tests/battery`).
//!
//! The fault tests are `#[ignore]`d (each runs for `FAULT_SECS`, 60 s by
//! default): `bench/faults.sh` runs them, with a release build as
//! `WRISTBAND_BIN`. The unit tests at the bottom, which show the checks
//! can fail, run with `cargo test`.
//!
//! The backend targets are child processes (this test binary, re-run as
//! `backend_process`), so that killing one is a real SIGKILL: its
//! listener and every connection the proxies pooled to it go at once.

mod battery;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use battery::backend::Backend;
use battery::load::{self, Credentials, Load};
use battery::{FaultTiming, Summary};
use common::jwks::{JwksServer, provider_toml};
use common::process::{ProxyProcess, TempDir};
use common::redis::{RedisServer, SentinelSet};
use common::tokens::RsaKey;

// ---------------------------------------------------------------------------
// The backend as a child process

/// Not a test: the body of a backend child process. Without
/// `BATTERY_BACKEND_ADDR` (a plain `--ignored` run) it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the backend child process of the fault tests"]
async fn backend_process() {
    let Ok(addr) = std::env::var("BATTERY_BACKEND_ADDR") else {
        return;
    };
    let addr: SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("BATTERY_BACKEND_ADDR={addr:?}: {e}"));
    let backend = Backend::start(addr)
        .await
        .unwrap_or_else(|e| panic!("battery backend: bind {addr}: {e}"));
    println!("battery-backend listening {}", backend.addr);
    std::future::pending::<()>().await;
}

/// A backend target running as a child process.
struct BackendProcess {
    child: Option<Child>,
    addr: SocketAddr,
    dir: TempDir,
}

impl BackendProcess {
    fn start() -> BackendProcess {
        let mut backend = BackendProcess {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: TempDir::new(),
        };
        backend.spawn();
        backend
    }

    fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("stdout.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// Starts the child on `self.addr` (port 0 the first time) and waits
    /// (at most 10 s) until it says where it listens.
    fn spawn(&mut self) {
        let open = |path: PathBuf| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        };
        // A fresh stdout per start: the address line to wait for is this
        // start's. stderr (the VIOLATION lines) is kept across restarts.
        let _ = std::fs::remove_file(self.stdout_path());
        let exe = std::env::current_exe().expect("the test binary's path");
        let child = Command::new(exe)
            .args(["backend_process", "--exact", "--ignored", "--nocapture"])
            .env("BATTERY_BACKEND_ADDR", self.addr.to_string())
            .stdin(Stdio::null())
            .stdout(open(self.stdout_path()))
            .stderr(open(self.stderr_path()))
            .spawn()
            .expect("spawn the backend child");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let out = std::fs::read_to_string(self.stdout_path()).unwrap_or_default();
            if let Some(addr) = out
                .lines()
                .find_map(|l| l.strip_prefix("battery-backend listening "))
            {
                self.addr = addr.trim().parse().expect("the backend's address");
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait backend"));
            assert!(
                exited.is_none() && std::time::Instant::now() < deadline,
                "backend child on {} did not start ({exited:?}); stdout:\n{out}\nstderr:\n{}",
                self.addr,
                std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same address.
    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Requests that reached it with an identity other than the one the
    /// generator named (every start so far).
    fn violations(&self) -> usize {
        std::fs::read_to_string(self.stderr_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("VIOLATION"))
            .count()
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// The rig

#[derive(Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Standalone,
    Sentinel,
}

/// What the proxies are configured with. Only `Normal` is a correct
/// configuration; the others are broken on purpose, to show that the
/// checks see what they must (`the_checks_*`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Normal,
    /// The session and JWT routes are `optional`: invalid credentials are
    /// forwarded, anonymously.
    OptionalAuth,
    /// `X-Auth-User` is filled from a claim the sessions do not have.
    WrongIdentityClaim,
    /// The upstream's targets are a closed port: every forward is a 502.
    DeadUpstream,
}

struct Rig {
    redis: Option<RedisServer>,
    sentinel: Option<SentinelSet>,
    jwks: JwksServer,
    backends: Vec<BackendProcess>,
    proxies: Vec<ProxyProcess>,
    credentials: Arc<Credentials>,
    toml: String,
}

fn config(store_url: &str, jwks: &JwksServer, targets: &[SocketAddr], variant: Variant) -> String {
    let auth = if variant == Variant::OptionalAuth {
        "optional"
    } else {
        "required"
    };
    let identity = if variant == Variant::WrongIdentityClaim {
        "[identity]\nheaders = { \"X-Auth-User\" = \"email\" }\n"
    } else {
        ""
    };
    let targets: Vec<String> = if variant == Variant::DeadUpstream {
        vec![format!("\"http://{}\"", common::closed_port())]
    } else {
        targets.iter().map(|t| format!("\"http://{t}\"")).collect()
    };
    // JWKS refreshed every 2 s, so a JWKS fault is met by the refresh
    // too, not only by unknown kids.
    let provider = provider_toml(jwks, &[("refresh_interval", "\"2s\"")]);
    format!(
        r#"
[server]
shutdown_grace = "30s"

[log]
format = "json"
level = "info"
access_log = false

[store]
kind = "redis"
url = "{store_url}"

[sessions]
cookie = "sid"

{provider}
{identity}
[[upstreams]]
name = "app"
targets = [{targets}]

[[routes]]
name = "session"
path = "/s"
upstream = "app"
auth = "{auth}"
accept = ["session"]

[[routes]]
name = "jwt"
path = "/j"
upstream = "app"
auth = "{auth}"
accept = ["jwt"]

[[routes]]
name = "public"
path = "/p"
upstream = "app"
auth = "public"
"#,
        targets = targets.join(", ")
    )
}

impl Rig {
    async fn start(store: StoreKind, variant: Variant) -> Rig {
        let (redis, sentinel, store_url, sessions) = match store {
            StoreKind::Standalone => {
                let redis = RedisServer::start();
                let sessions = battery::seed_sessions(|args| redis.cli(args));
                let url = redis.url();
                (Some(redis), None, url, sessions)
            }
            StoreKind::Sentinel => {
                let set = SentinelSet::start("faults");
                let sessions = battery::seed_sessions(|args| set.primary.cli(args));
                // The replica has them before any failover can happen.
                assert_eq!(
                    set.primary.cli(&["WAIT", "1", "5000"]),
                    "1",
                    "replica in sync"
                );
                let url = set.url();
                (None, Some(set), url, sessions)
            }
        };
        let key = RsaKey::generate("k1");
        let jwks = JwksServer::start(vec![key.jwk()]).await;
        let credentials = Arc::new(battery::credentials(&jwks.base_url(), &key, sessions));
        let backends = vec![BackendProcess::start(), BackendProcess::start()];
        let targets: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        let toml = config(&store_url, &jwks, &targets, variant);
        let bin = battery::wristband_bin();
        let mut proxies = Vec::new();
        for _ in 0..2 {
            proxies.push(ProxyProcess::start_program(&bin, &toml, &[]).await);
        }
        Rig {
            redis,
            sentinel,
            jwks,
            backends,
            proxies,
            credentials,
            toml,
        }
    }

    fn load(&self, duration: Duration) -> Load {
        let mut load = Load::new(
            self.proxies.iter().map(|p| p.addr).collect(),
            self.credentials.clone(),
        );
        load.rate = battery::number_from_env("FAULT_RATE", 200);
        load.duration = duration;
        load
    }

    fn backend_violations(&self) -> usize {
        self.backends.iter().map(BackendProcess::violations).sum()
    }

    fn panics(&self) -> Vec<String> {
        self.proxies
            .iter()
            .flat_map(|p| battery::panics_in(&p.stderr()))
            .collect()
    }
}

/// The fault's duration: `FAULT_SECS` (60 by default; CI: 20).
fn fault_duration() -> Duration {
    battery::secs_from_env("FAULT_SECS", 60).max(Duration::from_secs(12))
}

/// Sleeps until `at` on the load's clock.
async fn until(started: Instant, at: Duration) {
    tokio::time::sleep_until(started + at).await;
}

/// Runs `load` while `fault` does its work (it gets the load's start
/// instant and returns the timing it produced), then reports and checks
/// the figures: no unauthenticated forward (generator and backend), no
/// answer outside 200/401/503 (502/504 for the backend fault; the stopped
/// instance's connection errors apart), no panic, and recovery before the
/// end.
async fn under_load(
    rig: &mut Rig,
    name: &str,
    load: Load,
    fault: impl AsyncFnOnce(&mut Rig, Instant) -> FaultTiming,
) -> Summary {
    let started = Instant::now() + Duration::from_millis(200);
    let duration = load.duration;
    let load_task = tokio::spawn(load::run(load, started));
    let mut timing = fault(rig, started).await;
    timing.name = name.to_owned();
    timing.duration = duration;
    let records = load_task.await.expect("the load generator panicked");
    let summary = battery::summarize(&records, &timing);
    let backend_violations = rig.backend_violations();
    let row = summary.row(name, backend_violations);
    println!("{}\n{row}", battery::TABLE_HEADER);
    println!(
        "fault injected at {:.1} s, lifted at {}; answers by kind:\n{}",
        timing.injected.as_secs_f64(),
        timing
            .lifted
            .map_or("never".to_owned(), |l| format!("{:.1} s", l.as_secs_f64())),
        battery::describe(&records)
    );
    battery::append_result(&row);
    let panics = rig.panics();
    assert!(
        panics.is_empty(),
        "{name}: the proxy panicked:\n{}",
        panics.join("\n")
    );
    assert_eq!(
        summary.unauthenticated_forwards, 0,
        "{name}: forwarded without the credential's identity, e.g. {:?}",
        summary.violation_examples
    );
    assert_eq!(
        backend_violations, 0,
        "{name}: the backend saw wrong identities"
    );
    assert!(
        summary.unexpected.is_empty(),
        "{name}: answers other than 200/401/503: {:?}",
        summary.unexpected
    );
    assert_eq!(
        summary.baseline_failures, 0,
        "{name}: valid requests failed before the fault (the rig was not healthy)"
    );
    assert!(
        summary.back_to_200.is_some(),
        "{name}: valid requests still failed in the last {:?}",
        battery::CLEAN_TAIL
    );
    summary
}

fn fault_at(duration: Duration) -> Duration {
    duration / 4
}

fn timing(injected: Duration, lifted: Option<Duration>) -> FaultTiming {
    FaultTiming {
        name: String::new(),
        injected,
        lifted,
        gateway_errors_expected: false,
        stopped: None,
        duration: Duration::ZERO,
    }
}

// ---------------------------------------------------------------------------
// The faults

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "faults under load: bench/faults.sh"]
async fn fault_redis_primary_killed_under_sentinel() {
    let mut rig = Rig::start(StoreKind::Sentinel, Variant::Normal).await;
    let duration = fault_duration();
    let load = rig.load(duration);
    under_load(
        &mut rig,
        "Redis primary killed (Sentinel failover)",
        load,
        async |rig: &mut Rig, started: Instant| {
            let set = rig.sentinel.take().expect("a Sentinel set");
            let at = fault_at(duration);
            until(started, at).await;
            let injected = started.elapsed();
            let set = tokio::task::spawn_blocking(move || {
                let mut set = set;
                set.kill_primary_and_wait_for_failover();
                set
            })
            .await
            .expect("the failover");
            let lifted = started.elapsed();
            rig.sentinel = Some(set);
            timing(injected, Some(lifted))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "faults under load: bench/faults.sh"]
async fn fault_redis_sigstopped_for_5_s() {
    let mut rig = Rig::start(StoreKind::Standalone, Variant::Normal).await;
    let duration = fault_duration();
    let load = rig.load(duration);
    under_load(
        &mut rig,
        "Redis SIGSTOPped for 5 s",
        load,
        async |rig: &mut Rig, started: Instant| {
            let redis = rig.redis.as_ref().expect("a Redis server");
            until(started, fault_at(duration)).await;
            let injected = started.elapsed();
            redis.pause();
            tokio::time::sleep(Duration::from_secs(5)).await;
            redis.resume();
            timing(injected, Some(started.elapsed()))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "faults under load: bench/faults.sh"]
async fn fault_jwks_answering_500_then_hanging() {
    let mut rig = Rig::start(StoreKind::Standalone, Variant::Normal).await;
    let duration = fault_duration();
    let load = rig.load(duration);
    let fetches_before = rig.jwks.fetches();
    let name = "JWKS answering 500, then hanging";
    under_load(
        &mut rig,
        name,
        load,
        async |rig: &mut Rig, started: Instant| {
            let jwks = &rig.jwks;
            // 500 for a quarter, hanging for a quarter, then serving.
            until(started, fault_at(duration)).await;
            let injected = started.elapsed();
            jwks.fail_with(500);
            until(started, duration / 2).await;
            jwks.hang();
            until(started, duration * 3 / 4).await;
            jwks.serve();
            timing(injected, Some(started.elapsed()))
        },
    )
    .await;
    // The fault was met: the proxies kept asking while it lasted.
    let fetches = rig.jwks.fetches() - fetches_before;
    println!("{name}: {fetches} JWKS requests during the run");
    assert!(
        fetches >= 4,
        "{name}: only {fetches} JWKS fetches during the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "faults under load: bench/faults.sh"]
async fn fault_backend_target_killed_and_restarted() {
    let mut rig = Rig::start(StoreKind::Standalone, Variant::Normal).await;
    let duration = fault_duration();
    let load = rig.load(duration);
    let name = "backend target killed (SIGKILL), restarted 5 s later";
    under_load(
        &mut rig,
        name,
        load,
        async |rig: &mut Rig, started: Instant| {
            let backend = &mut rig.backends[0];
            until(started, fault_at(duration)).await;
            let injected = started.elapsed();
            backend.kill();
            tokio::time::sleep(Duration::from_secs(5)).await;
            backend.restart();
            let mut timing = timing(injected, Some(started.elapsed()));
            timing.gateway_errors_expected = true;
            timing
        },
    )
    .await;
}

/// Waits (at most 10 s) until `px`'s log holds `needle` at least `count` times.
async fn log_count_reaches(px: &ProxyProcess, needle: &str, count: usize) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if px.stderr().matches(needle).count() >= count {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "faults under load: bench/faults.sh"]
async fn fault_sighup_with_a_valid_then_an_invalid_config() {
    let mut rig = Rig::start(StoreKind::Standalone, Variant::Normal).await;
    let duration = fault_duration();
    let load = rig.load(duration);
    let name = "SIGHUP: valid config, then invalid config";
    under_load(&mut rig, name, load, async |rig: &mut Rig, started: Instant| {
        let px = &rig.proxies[0];
        // Valid: the same routes plus one more. Invalid: a route whose path
        // is a number.
        let valid = format!(
            "{}\n[[routes]]\nname = \"added\"\npath = \"/added\"\nupstream = \"app\"\nauth = \"public\"\n",
            rig.toml
        );
        let invalid = format!("{}\n[[routes]]\npath = 42\nupstream = \"app\"\n", rig.toml);
        let original = rig.toml.clone();
        until(started, fault_at(duration)).await;
        let injected = started.elapsed();
        px.rewrite_config(&valid);
        px.signal("HUP");
        assert!(
            log_count_reaches(px, "\"config reloaded\"", 1).await,
            "no reload logged:\n{}",
            px.stderr()
        );
        until(started, duration / 2).await;
        px.rewrite_config(&invalid);
        px.signal("HUP");
        assert!(
            log_count_reaches(px, "the previous config keeps serving", 1).await,
            "the refused reload was not logged:\n{}",
            px.stderr()
        );
        until(started, duration * 3 / 4).await;
        px.rewrite_config(&original);
        px.signal("HUP");
        assert!(
            log_count_reaches(px, "\"config reloaded\"", 2).await,
            "the second reload was not logged:\n{}",
            px.stderr()
        );
        timing(injected, Some(started.elapsed()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "faults under load: bench/faults.sh"]
async fn fault_sigterm_with_requests_in_flight() {
    let mut rig = Rig::start(StoreKind::Standalone, Variant::Normal).await;
    let duration = fault_duration();
    let mut load = rig.load(duration);
    // Every forwarded request is held 500 ms by the backend: at 200 req/s,
    // ~50 are in flight on the stopped instance when SIGTERM comes.
    load.backend_delay = Duration::from_millis(500);
    let name = "SIGTERM to one instance, requests in flight";
    let summary = under_load(
        &mut rig,
        name,
        load,
        async |rig: &mut Rig, started: Instant| {
            let px = &mut rig.proxies[1];
            until(started, fault_at(duration)).await;
            let injected = started.elapsed();
            px.signal("TERM");
            let status = px.wait_exit(Duration::from_secs(40)).await;
            let log = px.stderr();
            assert!(
                status.success(),
                "exit status {status} after SIGTERM:\n{log}"
            );
            assert!(
                !log.contains("cut_requests"),
                "the drain cut requests (grace 30 s, requests take 0.5 s):\n{log}"
            );
            let mut timing = timing(injected, None);
            timing.stopped = Some((1, injected));
            timing
        },
    )
    .await;
    // Not a check that cannot fail: requests were in flight on the
    // stopped instance when SIGTERM came, and each got its answer.
    assert!(
        summary.drained_in_flight > 0,
        "{name}: no request was in flight on the stopped instance at SIGTERM"
    );
    assert_eq!(summary.cut_in_flight, 0, "{name}: requests cut in flight");
}

// ---------------------------------------------------------------------------
// The checks can fail: the same rig, broken on purpose.

/// A short load against a rig built with `variant`: its summary and the
/// backend's count.
async fn broken_rig_load(variant: Variant) -> (Summary, usize) {
    let rig = Rig::start(StoreKind::Standalone, variant).await;
    let mut load = rig.load(Duration::from_secs(4));
    load.rate = 100;
    let started = Instant::now() + Duration::from_millis(100);
    let records = load::run(load, started).await;
    let summary = battery::summarize(
        &records,
        &FaultTiming {
            duration: Duration::from_secs(4),
            ..timing(Duration::from_secs(1), None)
        },
    );
    (summary, rig.backend_violations())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "faults under load: bench/faults.sh"]
async fn the_checks_count_invalid_credentials_forwarded_by_optional_routes() {
    let (summary, backend) = broken_rig_load(Variant::OptionalAuth).await;
    println!("optional routes: {summary:?}");
    assert!(
        summary.unauthenticated_forwards > 0 && backend > 0,
        "invalid credentials were forwarded anonymously, and nobody counted: {summary:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "faults under load: bench/faults.sh"]
async fn the_checks_count_valid_credentials_forwarded_without_their_identity() {
    let (summary, backend) = broken_rig_load(Variant::WrongIdentityClaim).await;
    println!("wrong identity claim: {summary:?}");
    assert!(
        summary.unauthenticated_forwards > 0 && backend > 0,
        "sessions were forwarded without X-Auth-User, and nobody counted: {summary:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "faults under load: bench/faults.sh"]
async fn the_checks_count_answers_other_than_200_401_503() {
    let (summary, _) = broken_rig_load(Variant::DeadUpstream).await;
    println!("dead upstream: {summary:?}");
    assert!(
        summary.unexpected.get("502").copied().unwrap_or(0) > 0,
        "every forward was a 502, and nobody counted: {summary:?}"
    );
    assert!(
        summary.back_to_200.is_none(),
        "never 200, yet recovered: {summary:?}"
    );
}

// ---------------------------------------------------------------------------
// The figures, on records made up here (run with `cargo test`).

fn record(at_ms: u64, kind: load::Kind, outcome: load::Outcome) -> load::Record {
    load::Record {
        at: Duration::from_millis(at_ms),
        done: Duration::from_millis(at_ms + 20),
        instance: 0,
        kind,
        outcome,
        violation: None,
    }
}

#[test]
fn the_503_window_and_the_recovery_are_timed_from_the_fault() {
    use load::{Kind::*, Outcome::*};
    let records = vec![
        record(500, Session, Status(200)),
        record(2_000, Session, Status(503)),
        record(3_500, Jwt, Status(503)),
        record(4_000, Session, Status(401)),
        record(5_000, Session, Status(200)),
        record(9_000, Public, Status(200)),
    ];
    let s = battery::summarize(
        &records,
        &FaultTiming {
            duration: Duration::from_secs(10),
            ..timing(Duration::from_secs(1), None)
        },
    );
    assert_eq!(s.window_503, Some((1.0, 2.5)));
    assert_eq!(s.back_to_200, Some(3.0));
    assert_eq!(s.valid_refused, 1);
    assert!(s.unexpected.is_empty());
}

#[test]
fn a_failure_in_the_last_seconds_is_not_a_recovery() {
    use load::{Kind::*, Outcome::*};
    let records = vec![
        record(500, Session, Status(200)),
        record(9_000, Jwt, Status(503)),
    ];
    let s = battery::summarize(
        &records,
        &FaultTiming {
            duration: Duration::from_secs(10),
            ..timing(Duration::from_secs(1), None)
        },
    );
    assert_eq!(s.back_to_200, None);
}

#[test]
fn violations_errors_and_the_stopped_instance_are_counted_apart() {
    use load::{Kind::*, Outcome::*};
    let mut forwarded = record(2_000, BadSession, Status(200));
    forwarded.violation = Some("forwarded".into());
    let mut stopped = record(3_000, Public, Connect);
    stopped.instance = 1;
    let mut cut = record(1_500, Public, Transport("closed".into()));
    cut.instance = 1;
    // Started before the stop and answered after it; and one over before.
    let mut drained = record(1_900, Public, Status(200));
    drained.instance = 1;
    drained.done = Duration::from_millis(2_400);
    let mut earlier = record(1_000, Public, Status(200));
    earlier.instance = 1;
    let records = vec![
        forwarded,
        stopped,
        cut,
        drained,
        earlier,
        record(2_500, Jwt, Status(502)),
        record(2_600, Jwt, Timeout),
    ];
    let s = battery::summarize(
        &records,
        &FaultTiming {
            stopped: Some((1, Duration::from_secs(2))),
            duration: Duration::from_secs(10),
            ..timing(Duration::from_secs(2), None)
        },
    );
    assert_eq!(s.unauthenticated_forwards, 1);
    assert_eq!(s.stopped_instance_errors, 1);
    assert_eq!(s.cut_in_flight, 1);
    assert_eq!(s.drained_in_flight, 1);
    assert_eq!(s.unexpected.get("502"), Some(&1));
    assert_eq!(s.unexpected.get("timeout"), Some(&1));
}

#[test]
fn the_generator_check_refuses_wrong_missing_and_extra_identities() {
    use load::Kind::*;
    let check = load::check;
    assert_eq!(
        check(Session, 7, Some("[\"u\"]"), Some("b7"), "user:u"),
        None
    );
    assert!(check(Session, 7, Some("[]"), Some("b7"), "user:u").is_some());
    assert!(check(Session, 7, Some("[\"u\",\"u\"]"), Some("b7"), "user:u").is_some());
    assert!(check(Session, 7, Some("[\"v\"]"), Some("b7"), "user:u").is_some());
    assert!(check(Session, 7, Some("[\"u\"]"), Some("b8"), "user:u").is_some());
    assert!(
        check(
            Public,
            7,
            Some("[\"spoofed-admin\"]"),
            Some("b7"),
            "anonymous"
        )
        .is_some()
    );
    assert_eq!(check(Public, 7, Some("[]"), Some("b7"), "anonymous"), None);
    assert!(check(BadSession, 7, Some("[]"), Some("b7"), "refused").is_some());
    // Not forwarded: nothing to check.
    assert_eq!(check(BadSession, 7, None, None, "refused"), None);
}

#[test]
fn a_panic_in_a_log_is_found() {
    let log = "{\"message\":\"listening\"}\nthread 'tokio-runtime-worker' panicked at src/x.rs:1:2:\nboom\n";
    assert_eq!(battery::panics_in(log).len(), 1);
    assert!(battery::panics_in("{\"message\":\"listening\"}\n").is_empty());
}

#[test]
fn a_request_in_flight_when_the_fault_strikes_is_the_fault_s() {
    use load::{Kind::*, Outcome::*};
    let mut in_flight = record(990, Session, Status(502));
    in_flight.done = Duration::from_millis(1_010);
    let before = record(500, Session, Status(503));
    let s = battery::summarize(
        &[before, in_flight],
        &FaultTiming {
            gateway_errors_expected: true,
            duration: Duration::from_secs(10),
            ..timing(Duration::from_secs(1), None)
        },
    );
    assert_eq!(s.baseline_failures, 1, "only the one that ended before");
    assert_eq!(s.gateway_errors, 1);
}
