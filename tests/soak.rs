//! The soak (issue 17): one `wristband` process under mixed traffic for
//! `SOAK_SECS` (600 by default; CI: 60): valid, invalid and garbage
//! credentials at a steady rate, WebSockets, 1 MiB uploads and downloads,
//! slow writers, slow readers, slowloris connections and garbage bytes.
//! RSS and open descriptors are sampled every 10 s from /proc; the test
//! fails on any request forwarded without its credential's identity, a
//! panic in the proxy's log, or more descriptors at the end than at the
//! start (both taken with no client connected and the backend's
//! connections closed).
//!
//! `#[ignore]`d: `bench/soak.sh` runs it with a release build as
//! `WRISTBAND_BIN`.

mod battery;
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use battery::backend::{Backend, EXPECT_HEADER, identity_matches};
use battery::load::{self, Credentials, Load};
use common::process::ProxyProcess;
use common::redis::RedisServer;
use common::tokens::RsaKey;

const ISSUER: &str = "https://soak.wristband.invalid";

/// The canary's held connections (one request each, then quiet) stay open
/// for `idle_timeout` (60 s, the default), longer than it looks; the
/// `header_read_timeout` argument bounds only heads (and silent
/// connections).
fn config(redis: &str, backend: SocketAddr, header_read_timeout: &str) -> String {
    format!(
        r#"
[server]
header_read_timeout = "{header_read_timeout}"
shutdown_grace = "5s"

[log]
format = "json"
level = "info"
access_log = false

[store]
kind = "redis"
url = "{redis}"

[sessions]
cookie = "sid"

[[jwt.providers]]
name = "soak"
issuer = "{ISSUER}"
jwks_url = "http://{backend}/jwks.json"
audiences = ["app"]
algorithms = ["RS256"]
min_refresh_interval = "1s"
fetch_timeout = "500ms"

[[upstreams]]
name = "app"
targets = ["http://{backend}"]

[[routes]]
name = "session"
path = "/s"
upstream = "app"
accept = ["session"]

[[routes]]
name = "jwt"
path = "/j"
upstream = "app"
accept = ["jwt"]

[[routes]]
name = "public"
path = "/p"
upstream = "app"
auth = "public"
"#
    )
}

/// What one traffic worker saw.
#[derive(Default, Debug)]
struct Tally {
    done: usize,
    violations: Vec<String>,
    /// Anything else that went wrong (reported, not fatal).
    anomalies: BTreeMap<String, usize>,
}

impl Tally {
    fn anomaly(&mut self, what: impl Into<String>) {
        *self.anomalies.entry(what.into()).or_insert(0) += 1;
    }
    fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(what.clone());
        }
        self.anomaly("VIOLATION");
    }
}

const IO_LIMIT: Duration = Duration::from_secs(15);

/// Reads a response head (through the blank line) from `stream`.
async fn read_head(stream: &mut TcpStream) -> Result<(u16, Vec<(String, String)>), String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(IO_LIMIT, stream.read(&mut byte)).await {
            Err(_) => return Err("no response head within 15 s".into()),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Ok(Ok(0)) => return Err("closed before a response head".into()),
            Ok(Ok(_)) => head.push(byte[0]),
        }
        if head.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
    }
    let reply = common::client::parse(&head).ok_or("unparseable response head")?;
    Ok((reply.status, reply.headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Checks a forwarded answer's `x-echo-users` against `expect`.
fn check_users(tally: &mut Tally, what: &str, users: Option<&str>, expect: &str) {
    let Some(users) = users else { return };
    let parsed: Vec<String> = serde_json::from_str(users).unwrap_or_default();
    if !identity_matches(expect, &parsed) {
        tally.violation(format!("{what}: forwarded as {users}, expected {expect}"));
    }
}

/// One WebSocket exchange through the proxy: upgrade, three echoes, close.
async fn websocket(addr: SocketAddr, token: &str, expect: &str, tally: &mut Tally) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return tally.anomaly("ws: connect");
    };
    let request = format!(
        "GET /j/ws HTTP/1.1\r\nHost: soak\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {token}\r\n{EXPECT_HEADER}: {expect}\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return tally.anomaly("ws: write");
    }
    let (status, headers) = match read_head(&mut stream).await {
        Ok(head) => head,
        Err(e) => return tally.anomaly(format!("ws: {e}")),
    };
    check_users(tally, "ws", header(&headers, "x-echo-users"), expect);
    match (status, expect == "refused") {
        (101, false) => {}
        (401, true) => return tally.done += 1,
        (other, _) => return tally.anomaly(format!("ws: {other} for {expect}")),
    }
    for i in 0..3 {
        let message = format!("message {i} through the tunnel");
        if stream.write_all(message.as_bytes()).await.is_err() {
            return tally.anomaly("ws: tunnel write");
        }
        let mut echoed = vec![0u8; message.len()];
        match tokio::time::timeout(IO_LIMIT, stream.read_exact(&mut echoed)).await {
            Ok(Ok(_)) if echoed == message.as_bytes() => {}
            _ => return tally.anomaly("ws: tunnel echo"),
        }
    }
    tally.done += 1;
}

/// An HTTP exchange with the pooled client: status, `x-echo-users`, body.
async fn exchange(
    client: &load::HttpClient,
    req: Request<Full<Bytes>>,
) -> Result<(u16, Option<String>, Bytes), String> {
    let run = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| load::error_chain(&e))?;
        let status = resp.status().as_u16();
        let users = resp
            .headers()
            .get("x-echo-users")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, users, body))
    };
    tokio::time::timeout(IO_LIMIT, run)
        .await
        .unwrap_or_else(|_| Err("no answer within 15 s".into()))
}

const BIG: usize = 1 << 20;

/// A 1 MiB upload with a token (valid or forged), and a 1 MiB download
/// with a session.
async fn bodies(
    client: &load::HttpClient,
    addr: SocketAddr,
    c: &Credentials,
    n: usize,
    tally: &mut Tally,
) {
    let (token, expect) = if n % 4 == 3 {
        (c.forged_tokens[0].clone(), "refused".to_owned())
    } else {
        let (token, sub) = &c.tokens[n % c.tokens.len()];
        (token.clone(), format!("user:{sub}"))
    };
    let req = Request::post(format!("http://{addr}/j/upload"))
        .header("authorization", format!("Bearer {token}"))
        .header(EXPECT_HEADER, &expect)
        .body(Full::new(Bytes::from(vec![b'u'; BIG])))
        .expect("upload request");
    match exchange(client, req).await {
        Ok((status, users, body)) => {
            check_users(tally, "upload", users.as_deref(), &expect);
            let want = if expect == "refused" { 401 } else { 200 };
            if status != want {
                tally.anomaly(format!("upload: {status} for {expect}"));
            } else if status == 200
                && body.as_ref() != json!({ "bytes": BIG }).to_string().as_bytes()
            {
                tally.anomaly("upload: the backend got another length");
            } else {
                tally.done += 1;
            }
        }
        Err(e) => tally.anomaly(format!("upload: {e}")),
    }
    let (id, user) = &c.sessions[n % c.sessions.len()];
    let expect = format!("user:{user}");
    let req = Request::get(format!("http://{addr}/s/download?bytes={BIG}"))
        .header("cookie", format!("sid={id}"))
        .header(EXPECT_HEADER, &expect)
        .body(Full::new(Bytes::new()))
        .expect("download request");
    match exchange(client, req).await {
        Ok((status, users, body)) => {
            check_users(tally, "download", users.as_deref(), &expect);
            if status != 200 || body.len() != BIG {
                tally.anomaly(format!("download: {status}, {} bytes", body.len()));
            } else {
                tally.done += 1;
            }
        }
        Err(e) => tally.anomaly(format!("download: {e}")),
    }
}

/// Slow clients: a request head written over ~1 s (under the 2 s
/// `header_read_timeout`), a 2 MiB download read slowly, and a head that is
/// never finished (the proxy must close it).
async fn slow(addr: SocketAddr, c: &Credentials, n: usize, tally: &mut Tally) {
    let (id, user) = &c.sessions[n % c.sessions.len()];
    let expect = format!("user:{user}");
    // The slow writer.
    let head = format!(
        "GET /s/slow-writer HTTP/1.1\r\nHost: soak\r\nCookie: sid={id}\r\n{EXPECT_HEADER}: {expect}\r\nConnection: close\r\n\r\n"
    );
    match TcpStream::connect(addr).await {
        Err(_) => tally.anomaly("slow writer: connect"),
        Ok(mut stream) => {
            let chunks: Vec<&[u8]> = head.as_bytes().chunks(head.len() / 10 + 1).collect();
            let mut written = true;
            for chunk in chunks {
                if stream.write_all(chunk).await.is_err() {
                    written = false;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut bytes = Vec::new();
            let read = tokio::time::timeout(IO_LIMIT, stream.read_to_end(&mut bytes)).await;
            match (written, read, common::client::parse(&bytes)) {
                (true, Ok(Ok(_)), Some(reply)) if reply.status == 200 => {
                    check_users(tally, "slow writer", reply.header("x-echo-users"), &expect);
                    tally.done += 1;
                }
                (_, _, reply) => {
                    tally.anomaly(format!("slow writer: {:?}", reply.map(|r| r.status)))
                }
            }
        }
    }
    // The slow reader: 2 MiB at ~16 KiB per 10 ms.
    match TcpStream::connect(addr).await {
        Err(_) => tally.anomaly("slow reader: connect"),
        Ok(mut stream) => {
            let request = format!(
                "GET /s/slow-reader?bytes={} HTTP/1.1\r\nHost: soak\r\nCookie: sid={id}\r\n{EXPECT_HEADER}: {expect}\r\nConnection: close\r\n\r\n",
                2 * BIG
            );
            if stream.write_all(request.as_bytes()).await.is_err() {
                tally.anomaly("slow reader: write");
            } else {
                match read_head(&mut stream).await {
                    Err(e) => tally.anomaly(format!("slow reader: {e}")),
                    Ok((status, headers)) => {
                        check_users(
                            tally,
                            "slow reader",
                            header(&headers, "x-echo-users"),
                            &expect,
                        );
                        let mut total = 0usize;
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            match tokio::time::timeout(IO_LIMIT, stream.read(&mut buf)).await {
                                Ok(Ok(0)) => break,
                                Ok(Ok(k)) => total += k,
                                _ => {
                                    tally.anomaly("slow reader: stalled");
                                    break;
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if status == 200 && total == 2 * BIG {
                            tally.done += 1;
                        } else {
                            tally.anomaly(format!("slow reader: {status}, {total} bytes"));
                        }
                    }
                }
            }
        }
    }
    // Slowloris: a head never finished must be closed by the proxy.
    match TcpStream::connect(addr).await {
        Err(_) => tally.anomaly("slowloris: connect"),
        Ok(mut stream) => {
            let _ = stream
                .write_all(b"GET /p/loris HTTP/1.1\r\nHost: soak\r\nX-Wait: ")
                .await;
            let mut bytes = Vec::new();
            match tokio::time::timeout(Duration::from_secs(6), stream.read_to_end(&mut bytes)).await
            {
                Ok(_) => tally.done += 1,
                Err(_) => {
                    tally.anomaly("slowloris: still open 6 s after a 2 s header_read_timeout")
                }
            }
        }
    }
}

/// Garbage: random bytes for a request, an oversized head, and a cookie
/// of random characters.
async fn garbage(addr: SocketAddr, n: usize, tally: &mut Tally) {
    let junk = common::tokens::random_bytes(512);
    let oversized = format!(
        "GET /p/big HTTP/1.1\r\nHost: soak\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let cookie = format!(
        "GET /s/junk HTTP/1.1\r\nHost: soak\r\nCookie: sid={}\r\n{EXPECT_HEADER}: refused\r\nConnection: close\r\n\r\n",
        common::tokens::b64url(&common::tokens::random_bytes(40 + n % 40))
    );
    let sends: [(&str, Vec<u8>); 3] = [
        ("random bytes", [junk.as_slice(), b"\r\n\r\n"].concat()),
        ("oversized head", oversized.into_bytes()),
        ("junk cookie", cookie.into_bytes()),
    ];
    for (what, bytes) in sends {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tally.anomaly(format!("{what}: connect"));
            continue;
        };
        let _ = stream.write_all(&bytes).await;
        let mut reply = Vec::new();
        match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await {
            Err(_) => tally.anomaly(format!("{what}: no answer or close within 10 s")),
            Ok(_) => match common::client::parse(&reply) {
                // Closed without an answer, or a 4xx: both fine.
                None => tally.done += 1,
                Some(r) if (400..500).contains(&r.status) => {
                    check_users(tally, what, r.header("x-echo-users"), "refused");
                    tally.done += 1;
                }
                Some(r) => {
                    check_users(tally, what, r.header("x-echo-users"), "refused");
                    tally.anomaly(format!("{what}: {}", r.status));
                }
            },
        }
    }
}

/// Runs `work` repeatedly (with `pause` between) until `end`.
async fn worker<F>(end: Instant, pause: Duration, mut work: F) -> Tally
where
    F: AsyncFnMut(usize, &mut Tally),
{
    let mut tally = Tally::default();
    let mut n = 0;
    while Instant::now() < end {
        work(n, &mut tally).await;
        n += 1;
        tokio::time::sleep(pause).await;
    }
    tally
}

/// The descriptor count once it has held still for 1 s (at most `limit`):
/// the backend's connections are closed first, so the proxy's pooled
/// upstream (and JWKS) connections are gone too.
async fn settled_fds(
    pid: u32,
    backend: &Backend,
    limit: Duration,
    at_most: Option<usize>,
) -> usize {
    backend.close_connections();
    let deadline = Instant::now() + limit;
    let mut last = battery::fd_count(pid);
    let mut still_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = battery::fd_count(pid);
        if now != last {
            last = now;
            still_since = Instant::now();
        }
        let low_enough = at_most.is_none_or(|max| now <= max);
        if (still_since.elapsed() >= Duration::from_secs(1) && low_enough)
            || Instant::now() >= deadline
        {
            return now;
        }
    }
}

struct SoakReport {
    fds_start: usize,
    fds_end: usize,
    fd_kinds_start: BTreeMap<String, usize>,
    fd_kinds_end: BTreeMap<String, usize>,
    violations: Vec<String>,
    backend_violations: usize,
    panics: Vec<String>,
}

/// The soak: `duration` of mixed traffic; `hold` idle client connections
/// are left open at the end (0 for the real thing; more to show the
/// descriptor check sees them, with a `header_read_timeout` long enough to
/// keep them open while it looks).
async fn soak(duration: Duration, hold: usize, header_read_timeout: &str) -> SoakReport {
    let redis = RedisServer::start();
    let sessions = battery::seed_sessions(|args| redis.cli(args));
    let key = RsaKey::generate("soak-1");
    let credentials = Arc::new(battery::credentials(ISSUER, &key, sessions));
    let backend = Backend::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("start the backend");
    backend.serve_jwks(json!({ "keys": [key.jwk()] }).to_string());
    let px = ProxyProcess::start_program(
        &battery::wristband_bin(),
        &config(&redis.url(), backend.addr, header_read_timeout),
        &[],
    )
    .await;
    let pid = px.pid();
    let fds_start = settled_fds(pid, &backend, Duration::from_secs(10), None).await;
    let fd_kinds_start = battery::fd_kinds(pid);
    let started = Instant::now();
    let end = started + duration;
    println!(
        "soak: {} s against pid {pid}; {fds_start} descriptors at the start: {fd_kinds_start:?}",
        duration.as_secs()
    );

    let mut load = Load::new(vec![px.addr], credentials.clone());
    load.rate = battery::number_from_env("SOAK_RATE", 100);
    load.duration = duration;
    let http = tokio::spawn(load::run(load, started));
    let addr = px.addr;
    let c = credentials.clone();
    let ws = tokio::spawn(worker(
        end,
        Duration::from_millis(50),
        async move |n, tally| {
            let (token, expect) = if n % 5 == 4 {
                (c.forged_tokens[0].clone(), "refused".to_owned())
            } else {
                let (token, sub) = &c.tokens[n % c.tokens.len()];
                (token.clone(), format!("user:{sub}"))
            };
            websocket(addr, &token, &expect, tally).await;
        },
    ));
    let c = credentials.clone();
    let client = load::client();
    let big = tokio::spawn(worker(
        end,
        Duration::from_millis(100),
        async move |n, tally| {
            bodies(&client, addr, &c, n, tally).await;
        },
    ));
    let c = credentials.clone();
    let slow_clients = tokio::spawn(worker(
        end,
        Duration::from_millis(10),
        async move |n, tally| {
            slow(addr, &c, n, tally).await;
        },
    ));
    let junk = tokio::spawn(worker(
        end,
        Duration::from_millis(100),
        async move |n, tally| {
            garbage(addr, n, tally).await;
        },
    ));

    // RSS and descriptors every 10 s.
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let mut tick = tokio::time::interval_at(started, Duration::from_secs(10));
    loop {
        let at = tick.tick().await;
        if at > end {
            break;
        }
        let t = at.duration_since(started).as_secs_f64();
        let sample = (t, battery::rss_kib(pid), battery::fd_count(pid));
        println!(
            "soak: t={:>4.0} s  RSS {} KiB  fds {}",
            sample.0, sample.1, sample.2
        );
        samples.push(sample);
    }
    let records = http.await.expect("the HTTP load");
    let mut tallies = BTreeMap::new();
    for (name, task) in [
        ("websocket", ws),
        ("1 MiB bodies", big),
        ("slow clients", slow_clients),
        ("garbage", junk),
    ] {
        tallies.insert(name, task.await.expect("a soak worker panicked"));
    }
    let t = started.elapsed().as_secs_f64();
    samples.push((t, battery::rss_kib(pid), battery::fd_count(pid)));

    // Idle connections left open on purpose (`hold`).
    let mut held = Vec::new();
    for _ in 0..hold {
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("connect a held connection");
        stream
            .write_all(b"GET /p/held HTTP/1.1\r\nHost: soak\r\n\r\n")
            .await
            .expect("write on a held connection");
        read_head(&mut stream)
            .await
            .expect("an answer on a held connection");
        held.push(stream);
    }
    let fds_end = settled_fds(pid, &backend, Duration::from_secs(20), Some(fds_start)).await;
    let fd_kinds_end = battery::fd_kinds(pid);

    // The report.
    let warmup = (duration / 5).max(Duration::from_secs(10)).as_secs_f64();
    let after: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.0 >= warmup)
        .map(|s| (s.0, s.1 as f64))
        .collect();
    let slope = battery::slope_per_minute(&after);
    let rss: Vec<String> = samples
        .iter()
        .map(|s| format!("{:.0}s:{}", s.0, s.1))
        .collect();
    let summary = battery::summarize(
        &records,
        &battery::FaultTiming {
            name: "soak".into(),
            injected: duration,
            lifted: None,
            gateway_errors_expected: false,
            stopped: None,
            duration,
        },
    );
    let mut violations: Vec<String> = summary.violation_examples.clone();
    let mut lines = vec![
        format!(
            "soak: {} s, wristband {}",
            duration.as_secs(),
            battery::wristband_bin().display()
        ),
        format!(
            "HTTP mix at {} req/s: {} requests, answers {:?}, unexpected {:?}, unauthenticated forwards {}",
            battery::number_from_env("SOAK_RATE", 100),
            summary.sent,
            summary.by_status,
            summary.unexpected,
            summary.unauthenticated_forwards
        ),
    ];
    for _ in 0..summary
        .unauthenticated_forwards
        .saturating_sub(violations.len())
    {
        violations.push("(another HTTP mix violation)".into());
    }
    for (name, tally) in &tallies {
        lines.push(format!(
            "{name}: {} done, anomalies {:?}",
            tally.done, tally.anomalies
        ));
        violations.extend(tally.violations.iter().cloned());
    }
    lines.push(format!("RSS KiB every 10 s: {}", rss.join(" ")));
    lines.push(format!(
        "RSS slope after {warmup:.0} s of warm-up: {} KiB/min over {} samples (start {} KiB, end {} KiB)",
        slope.map_or("n/a".to_owned(), |s| format!("{s:+.1}")),
        after.len(),
        samples.first().map_or(0, |s| s.1),
        samples.last().map_or(0, |s| s.1),
    ));
    lines.push(format!(
        "descriptors: {fds_start} at the start, {fds_end} at the end (held open on purpose: {hold}); start {fd_kinds_start:?}, end {fd_kinds_end:?}"
    ));
    let report = lines.join("\n");
    println!("{report}");
    battery::append_result(&report);
    drop(held);
    SoakReport {
        fds_start,
        fds_end,
        fd_kinds_start,
        fd_kinds_end,
        violations,
        backend_violations: backend.violations(),
        panics: battery::panics_in(&px.stderr()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the soak: bench/soak.sh"]
async fn soak_mixed_traffic() {
    let duration = battery::secs_from_env("SOAK_SECS", 600);
    let r = soak(duration, 0, "2s").await;
    assert!(
        r.panics.is_empty(),
        "the proxy panicked:\n{}",
        r.panics.join("\n")
    );
    assert!(
        r.violations.is_empty(),
        "forwarded without the credential's identity:\n{}",
        r.violations.join("\n")
    );
    assert_eq!(r.backend_violations, 0, "the backend saw wrong identities");
    assert!(
        r.fds_end <= r.fds_start,
        "descriptor leak: {} at the start, {} at the end\nstart {:?}\nend {:?}",
        r.fds_start,
        r.fds_end,
        r.fd_kinds_start,
        r.fd_kinds_end
    );
}

/// The descriptor check can fail: connections left open at the end are
/// counted as what they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the soak: bench/soak.sh"]
async fn the_descriptor_check_sees_connections_left_open() {
    let r = soak(Duration::from_secs(10), 5, "60s").await;
    assert!(
        r.fds_end >= r.fds_start + 5,
        "5 connections held open, yet {} descriptors at the start and {} at the end",
        r.fds_start,
        r.fds_end
    );
}
