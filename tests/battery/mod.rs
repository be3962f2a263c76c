//! The reliability battery's shared parts (issue 17): the backend that
//! reports the identity it received, the load generator that checks it,
//! and the figures a run reports. Used by `tests/faults.rs` and
//! `tests/soak.rs`, whose tests are `#[ignore]`d: `bench/faults.sh` and
//! `bench/soak.sh` run them.

#![allow(dead_code)]

pub mod backend;
pub mod load;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::common::tokens::{RsaKey, Token, b64url, now, random_bytes};
use load::{Kind, Outcome, Record};

/// Sessions and tokens per rig.
pub const SESSIONS: usize = 40;
pub const TOKENS: usize = 40;

/// The wristband binary to load: `WRISTBAND_BIN` (bench/faults.sh passes a
/// release build), else the one cargo built with the tests.
pub fn wristband_bin() -> PathBuf {
    match std::env::var_os("WRISTBAND_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_wristband")),
    }
}

/// A duration from the environment in seconds (`NAME=20`), else `default`.
pub fn secs_from_env(name: &str, default: u64) -> Duration {
    match std::env::var(name) {
        Ok(text) => Duration::from_secs(
            text.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{name}={text:?} is not a number of seconds: {e}")),
        ),
        Err(_) => Duration::from_secs(default),
    }
}

/// A number from the environment, else `default`.
pub fn number_from_env(name: &str, default: u32) -> u32 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={text:?} is not a number: {e}")),
        Err(_) => default,
    }
}

/// Lines of a log that say a thread panicked (Rust's default panic hook
/// prints `thread '...' panicked at FILE:LINE:COL:`).
pub fn panics_in(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("panicked at"))
        .map(str::to_owned)
        .collect()
}

/// Open file descriptors of `pid`, from `/proc/PID/fd`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .count()
}

/// What each descriptor of `pid` points at (`socket:[N]`, a path, ...),
/// counted: for a report when the counts differ.
pub fn fd_kinds(pid: u32) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.display().to_string())
                .unwrap_or_else(|e| format!("unreadable ({e})"));
            // socket:[12345] -> socket
            let kind = target.split(":[").next().unwrap_or(&target).to_owned();
            *kinds.entry(kind).or_insert(0) += 1;
        }
    }
    kinds
}

/// `VmRSS` of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS line in /proc/{pid}/status"))
}

/// Least-squares slope of `(seconds, value)` points, per minute.
pub fn slope_per_minute(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    Some(sxy / sxx * 60.0)
}

/// How one fault was timed, and what is expected of it.
#[derive(Debug, Clone)]
pub struct FaultTiming {
    pub name: String,
    /// When the fault was injected, on the load's clock.
    pub injected: Duration,
    /// When it was taken back (the server resumed, the target restarted);
    /// `None` for a fault that is never undone.
    pub lifted: Option<Duration>,
    /// 502 and 504 are expected answers (the backend fault).
    pub gateway_errors_expected: bool,
    /// An instance stopped on purpose, and when: its connection errors from
    /// then on are expected and counted apart.
    pub stopped: Option<(usize, Duration)>,
    /// The load's duration.
    pub duration: Duration,
}

/// The figures of one fault under load.
#[derive(Debug, Default)]
pub struct Summary {
    pub sent: usize,
    pub by_status: BTreeMap<u16, usize>,
    /// Forwarded without the identity of the credential sent (or at all,
    /// for an invalid one), as the generator saw it.
    pub unauthenticated_forwards: usize,
    pub violation_examples: Vec<String>,
    /// Answers other than 200/401/503 (and 502/504 where expected):
    /// statuses, connection and transport errors, timeouts, skipped ticks.
    pub unexpected: BTreeMap<String, usize>,
    pub gateway_errors: usize,
    /// Connection errors to the instance stopped on purpose, from the stop on.
    pub stopped_instance_errors: usize,
    /// Requests to the stopped instance started before the stop that did
    /// not get an answer: in flight, and cut.
    pub cut_in_flight: usize,
    /// Requests to the stopped instance started before the stop and
    /// answered after it: in flight, and drained.
    pub drained_in_flight: usize,
    /// Valid credentials answered 401.
    pub valid_refused: usize,
    /// First and last 503, seconds after the fault.
    pub window_503: Option<(f64, f64)>,
    /// Non-200 answers to valid requests that ended before the fault.
    pub baseline_failures: usize,
    /// Seconds from the fault to the last non-200 answer to a valid
    /// request (0: none); `None`: still failing at the end.
    pub back_to_200: Option<f64>,
}

/// How long the load must run clean at the end for a fault to count as
/// recovered from.
pub const CLEAN_TAIL: Duration = Duration::from_secs(2);

pub fn summarize(records: &[Record], timing: &FaultTiming) -> Summary {
    let mut s = Summary::default();
    let secs_after = |at: Duration| at.as_secs_f64() - timing.injected.as_secs_f64();
    let mut last_bad: Option<Duration> = None;
    for r in records {
        let stopped_from = timing
            .stopped
            .filter(|(i, _)| *i == r.instance)
            .map(|(_, at)| at);
        if let Some(v) = &r.violation {
            s.unauthenticated_forwards += 1;
            if s.violation_examples.len() < 5 {
                s.violation_examples.push(v.clone());
            }
        }
        if r.outcome != Outcome::Skipped {
            s.sent += 1;
        }
        let to_stopped = matches!(stopped_from, Some(at) if r.at >= at);
        let across_stop = matches!(stopped_from, Some(at) if r.at < at && r.done > at);
        if across_stop && matches!(r.outcome, Outcome::Status(_)) {
            s.drained_in_flight += 1;
        }
        match &r.outcome {
            Outcome::Status(code) => {
                *s.by_status.entry(*code).or_insert(0) += 1;
                match code {
                    200 | 401 | 503 => {}
                    502 | 504 if timing.gateway_errors_expected => s.gateway_errors += 1,
                    other => *s.unexpected.entry(other.to_string()).or_insert(0) += 1,
                }
                if *code == 503 {
                    let t = secs_after(r.at);
                    s.window_503 = Some(match s.window_503 {
                        None => (t, t),
                        Some((first, last)) => (first.min(t), last.max(t)),
                    });
                }
                if *code == 401 && r.kind.should_pass() {
                    s.valid_refused += 1;
                }
            }
            Outcome::Skipped => {
                *s.unexpected
                    .entry("generator saturated (tick skipped)".into())
                    .or_insert(0) += 1
            }
            // From the stop on, nothing reaches it; a connection refused
            // just before (the listener closed under a connect) neither.
            _ if to_stopped => s.stopped_instance_errors += 1,
            Outcome::Connect if stopped_from.is_some() => s.stopped_instance_errors += 1,
            // Started before the stop and answered by no status: cut.
            Outcome::Transport(_) | Outcome::Timeout if stopped_from.is_some() => {
                s.cut_in_flight += 1;
                *s.unexpected
                    .entry(format!("cut in flight: {}", r.outcome))
                    .or_insert(0) += 1;
            }
            other => *s.unexpected.entry(other.to_string()).or_insert(0) += 1,
        }
        if r.kind.should_pass() && !to_stopped && r.outcome != Outcome::Status(200) {
            // Failed and over before the fault: the rig was not healthy.
            // (A request in flight when the fault struck is the fault's.)
            if r.done < timing.injected {
                s.baseline_failures += 1;
            } else {
                last_bad = Some(last_bad.map_or(r.at, |l: Duration| l.max(r.at)));
            }
        }
    }
    s.back_to_200 = match last_bad {
        None => Some(0.0),
        Some(at) if at + CLEAN_TAIL > timing.duration => None,
        Some(at) => Some(secs_after(at).max(0.0)),
    };
    s
}

/// The Markdown header of the fault table.
pub const TABLE_HEADER: &str = "| fault | requests | unauthenticated forwards (generator / backend) | answers other than 200/401/503 | 502/504 | connection errors to the stopped instance | 503 window (s after the fault) | back to 100% 200s (s after the fault) | valid credentials answered 401 | answers (status: count) |\n|---|---|---|---|---|---|---|---|---|---|";

impl Summary {
    /// One row of the fault table.
    pub fn row(&self, name: &str, backend_violations: usize) -> String {
        let unexpected = if self.unexpected.is_empty() {
            "0".to_owned()
        } else {
            let parts: Vec<String> = self
                .unexpected
                .iter()
                .map(|(k, v)| format!("{v} × {k}"))
                .collect();
            format!(
                "{} ({})",
                self.unexpected.values().sum::<usize>(),
                parts.join(", ")
            )
        };
        let window = match self.window_503 {
            None => "none".to_owned(),
            Some((first, last)) => format!("{:.1} ({first:.1} → {last:.1})", last - first),
        };
        let back = match self.back_to_200 {
            Some(0.0) => "never left".to_owned(),
            Some(t) => format!("{t:.1}"),
            None => "NOT RECOVERED".to_owned(),
        };
        let mut answers = String::new();
        for (code, n) in &self.by_status {
            let _ = write!(answers, "{code}: {n} ");
        }
        format!(
            "| {name} | {} | {} / {backend_violations} | {unexpected} | {} | {} | {window} | {back} | {} | {} |",
            self.sent,
            self.unauthenticated_forwards,
            self.gateway_errors,
            self.stopped_instance_errors,
            self.valid_refused,
            answers.trim_end(),
        )
    }
}

/// Appends `line` to the file named by `BATTERY_RESULTS`, if set (the
/// scripts collect the rows of every test there).
pub fn append_result(line: &str) {
    if let Some(path) = std::env::var_os("BATTERY_RESULTS") {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", PathBuf::from(&path).display()));
        writeln!(file, "{line}").expect("write the results file");
    }
}

/// Counts of requests by kind and outcome, for a failure message.
pub fn describe(records: &[Record]) -> String {
    let mut counts: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    for r in records {
        *counts.entry((r.kind, r.outcome.to_string())).or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|((k, o), n)| format!("{k:?} {o}: {n}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `SESSIONS` sessions (hash, `user_id`) in one `EVAL` and returns
/// (cookie value, user).
pub fn seed_sessions(cli: impl Fn(&[&str]) -> String) -> Vec<(String, String)> {
    let tag = b64url(&random_bytes(6)).replace(['-', '_'], "x");
    let sessions: Vec<(String, String)> = (0..SESSIONS)
        .map(|i| (format!("ok{i}x{tag}"), format!("user-{i}")))
        .collect();
    let script =
        "for i = 1, #KEYS do redis.call('HSET', KEYS[i], 'user_id', ARGV[i]) end return #KEYS";
    let count = sessions.len().to_string();
    let keys: Vec<String> = sessions
        .iter()
        .map(|(id, _)| format!("sessions:{id}"))
        .collect();
    let mut args: Vec<&str> = vec!["EVAL", script, &count];
    args.extend(keys.iter().map(String::as_str));
    args.extend(sessions.iter().map(|(_, user)| user.as_str()));
    assert_eq!(cli(&args), count, "seeding the sessions");
    sessions
}

pub fn credentials(
    issuer: &str,
    key: &RsaKey,
    sessions: Vec<(String, String)>,
) -> load::Credentials {
    let claims = |sub: &str| {
        Token::new()
            .kid(&key.kid)
            .claim("iss", json!(issuer))
            .claim("sub", json!(sub))
            .claim("aud", json!("app"))
            .claim("iat", json!(now()))
            .claim("exp", json!(now() + 3 * 3600))
    };
    let tokens = (0..TOKENS)
        .map(|i| {
            let sub = format!("sub-{i}");
            (claims(&sub).sign_rs256(key), sub)
        })
        .collect();
    let stranger = RsaKey::generate("stranger");
    // A signature by another key under the trusted kid.
    let forged_tokens = (0..4)
        .map(|i| claims(&format!("forged-{i}")).sign_rs256(&stranger.with_kid(&key.kid)))
        .collect();
    let unknown_kid_tokens = (0..4)
        .map(|i| {
            claims(&format!("unknown-{i}")).sign_rs256(&stranger.with_kid(&format!("unknown-{i}")))
        })
        .collect();
    let garbage_tokens = vec![
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        b64url(&random_bytes(300)),
        format!("{}.{}.{}", b64url(b"{\"alg\":\"none\"}"), b64url(b"{}"), ""),
        format!("e30.{}.", b64url(&random_bytes(40))),
    ];
    load::Credentials {
        sessions,
        tokens,
        bad_sessions: (0..4).map(|i| format!("nosuchsession{i}")).collect(),
        forged_tokens,
        unknown_kid_tokens,
        garbage_tokens,
        cookie: "sid".into(),
    }
}
