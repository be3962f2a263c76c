//! The real process (SPEC §2, §5.7): SIGHUP reloads, SIGTERM drains,
//! bodies stream through in bounded memory, and secrets stay out of logs,
//! metrics and error bodies. Each test spawns the `wristband` binary in
//! front of an echo upstream running inside the test.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::client::{self, Reply};
use common::process::{ProxyProcess, accepts, admin_get, eventually};
use common::upstream;

/// JSON logs at `info`, one upstream `app` at `target`, then `routes`.
fn config(target: SocketAddr, routes: &str) -> String {
    format!(
        r#"
[log]
format = "json"
level = "info"

[[upstreams]]
name = "app"
targets = ["http://{target}"]

{routes}
"#
    )
}

fn public_route(path: &str) -> String {
    format!("[[routes]]\npath = \"{path}\"\nupstream = \"app\"\nauth = \"public\"\n")
}

/// Polls `GET path` until it answers `want` (at most `limit`); returns the
/// last status seen.
async fn status_becomes(addr: SocketAddr, path: &str, want: u16, limit: Duration) -> u16 {
    let deadline = Instant::now() + limit;
    loop {
        let status = client::get(addr, path, &[]).await.status;
        if status == want || Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sighup_with_a_valid_config_swaps_it_in_without_a_restart() {
    let up = upstream::echo().await;
    let mut px = ProxyProcess::start(&config(up.addr, &public_route("/old"))).await;
    let pid = px.pid();
    assert_eq!(client::get(px.addr, "/old/x", &[]).await.status, 200);
    assert_eq!(client::get(px.addr, "/new/x", &[]).await.status, 404);

    px.rewrite_config(&config(
        up.addr,
        &format!("{}{}", public_route("/old"), public_route("/new")),
    ));
    px.signal("HUP");

    let status = status_becomes(px.addr, "/new/x", 200, Duration::from_secs(10)).await;
    assert_eq!(
        status,
        200,
        "new route after reload; stderr:\n{}",
        px.stderr()
    );
    assert_eq!(client::get(px.addr, "/old/x", &[]).await.status, 200);
    assert_eq!(px.pid(), pid);
    assert!(px.exited().is_none(), "the process restarted or died");
    assert!(
        px.stderr().contains("config reloaded"),
        "stderr:\n{}",
        px.stderr()
    );
}

#[tokio::test]
async fn sighup_with_an_invalid_config_keeps_the_old_one_serving_and_logs_why() {
    let up = upstream::echo().await;
    let mut px = ProxyProcess::start(&config(up.addr, &public_route("/old"))).await;

    // A new route naming an upstream that does not exist.
    px.rewrite_config(&config(
        up.addr,
        &format!(
            "{}[[routes]]\npath = \"/new\"\nupstream = \"ghost\"\nauth = \"public\"\n",
            public_route("/old")
        ),
    ));
    px.signal("HUP");

    let (line, event) = logged_line(&px, "routes[1].upstream").await;
    assert_eq!(event["level"], "ERROR", "{line}");

    assert!(px.exited().is_none(), "the process died on a bad reload");
    assert_eq!(client::get(px.addr, "/old/x", &[]).await.status, 200);
    assert_eq!(client::get(px.addr, "/new/x", &[]).await.status, 404);

    // Fixed, the next SIGHUP applies it.
    px.rewrite_config(&config(
        up.addr,
        &format!("{}{}", public_route("/old"), public_route("/new")),
    ));
    px.signal("HUP");
    let status = status_becomes(px.addr, "/new/x", 200, Duration::from_secs(10)).await;
    assert_eq!(status, 200, "stderr:\n{}", px.stderr());
}

/// Sends `GET /slow/800`, waits until the upstream has it, sends SIGTERM,
/// and checks that the request still completes and the process exits 0
/// with both ports closed.
async fn sigterm_drains_an_in_flight_request(px: &mut ProxyProcess, up: &upstream::TestUpstream) {
    let addr = px.addr;
    let before = up.requests.load(std::sync::atomic::Ordering::SeqCst);
    let in_flight = tokio::spawn(async move { client::get(addr, "/slow/800", &[]).await });
    let arrived = eventually(Duration::from_secs(10), || {
        up.requests.load(std::sync::atomic::Ordering::SeqCst) > before
    })
    .await;
    assert!(arrived, "the slow request reached the upstream");
    px.signal("TERM");

    let reply = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request ends within 10 s")
        .expect("client task");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "slow");

    let status = px.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", px.stderr());
    assert!(!accepts(px.addr), "the client port still accepts");
    assert!(!accepts(px.admin), "the admin port still accepts");
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    let up = upstream::echo().await;
    let mut px = ProxyProcess::start(&config(up.addr, &public_route("/"))).await;
    sigterm_drains_an_in_flight_request(&mut px, &up).await;
}

#[tokio::test]
async fn with_one_worker_thread_the_single_threaded_runtime_serves_reloads_and_drains() {
    let up = upstream::echo().await;
    let routes = format!("{}{}", public_route("/old"), public_route("/slow"));
    let mut px =
        ProxyProcess::start_with_env(&config(up.addr, &routes), &[("TOKIO_WORKER_THREADS", "1")])
            .await;
    assert_eq!(client::get(px.addr, "/old/x", &[]).await.status, 200);

    px.rewrite_config(&config(
        up.addr,
        &format!("{routes}{}", public_route("/new")),
    ));
    px.signal("HUP");
    let status = status_becomes(px.addr, "/new/x", 200, Duration::from_secs(10)).await;
    assert_eq!(status, 200, "reload; stderr:\n{}", px.stderr());

    sigterm_drains_an_in_flight_request(&mut px, &up).await;
}

/// Threads named as a worker's (`wristband::Workers::PerThread`).
fn worker_threads(px: &ProxyProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", px.pid()))
        .expect("the process's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("wristband-work"))
        .count()
}

/// With more than one thread, by default, a runtime per worker thread,
/// each with its own listening socket. Every connection of a burst is
/// served, a reload reaches the workers, and SIGTERM drains what a worker
/// holds.
#[tokio::test]
async fn with_a_runtime_per_thread_every_worker_serves_reloads_and_drains() {
    let up = upstream::echo().await;
    let routes = format!("{}{}", public_route("/old"), public_route("/slow"));
    let mut px =
        ProxyProcess::start_with_env(&config(up.addr, &routes), &[("TOKIO_WORKER_THREADS", "2")])
            .await;
    assert_eq!(worker_threads(&px), 2, "stderr:\n{}", px.stderr());
    assert!(
        px.stderr().contains("one runtime per thread"),
        "{}",
        px.stderr()
    );

    // New connections, all at once: the kernel spreads them over both
    // sockets, and each is answered.
    let addr = px.addr;
    let burst: Vec<_> = (0..64)
        .map(|i| tokio::spawn(async move { client::get(addr, &format!("/old/{i}"), &[]).await }))
        .collect();
    for reply in burst {
        assert_eq!(reply.await.expect("client task").status, 200);
    }

    px.rewrite_config(&config(
        up.addr,
        &format!("{routes}{}", public_route("/new")),
    ));
    px.signal("HUP");
    for _ in 0..16 {
        let status = status_becomes(px.addr, "/new/x", 200, Duration::from_secs(10)).await;
        assert_eq!(status, 200, "reload; stderr:\n{}", px.stderr());
    }

    sigterm_drains_an_in_flight_request(&mut px, &up).await;
}

/// Every worker accepts from the one listening socket: a worker holding
/// the last `max_connections` permit gets the next connection wherever
/// it is. (With a socket per worker, `SO_REUSEPORT`, the kernel picked the
/// socket by hash, and a connection could wait on a worker without a
/// permit while the one with it waited on an empty socket.)
#[tokio::test]
async fn with_a_runtime_per_thread_the_last_connection_slot_serves_every_client() {
    let up = upstream::echo().await;
    let toml = format!(
        "[server]\nmax_connections = 1\n{}",
        config(up.addr, &public_route("/"))
    );
    let px = ProxyProcess::start_with_env(&toml, &[("TOKIO_WORKER_THREADS", "2")]).await;
    assert_eq!(worker_threads(&px), 2);
    for i in 0..24 {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            client::get(px.addr, &format!("/{i}"), &["Connection: close"]),
        )
        .await
        .unwrap_or_else(|_| panic!("connection {i} not served within 5 s"));
        assert_eq!(reply.status, 200, "connection {i}");
    }
}

/// `WRISTBAND_RUNTIME=shared`: tokio's work-stealing pool, no worker
/// threads of wristband's own; it serves and drains as well.
#[tokio::test]
async fn with_wristband_runtime_shared_the_work_stealing_pool_serves_and_drains() {
    let up = upstream::echo().await;
    let routes = format!("{}{}", public_route("/old"), public_route("/slow"));
    let mut px = ProxyProcess::start_with_env(
        &config(up.addr, &routes),
        &[
            ("TOKIO_WORKER_THREADS", "2"),
            ("WRISTBAND_RUNTIME", "shared"),
        ],
    )
    .await;
    assert_eq!(worker_threads(&px), 0, "stderr:\n{}", px.stderr());
    assert_eq!(client::get(px.addr, "/old/x", &[]).await.status, 200);
    sigterm_drains_an_in_flight_request(&mut px, &up).await;
}

const HUNDRED_MB: usize = 100 * 1024 * 1024;

/// `POST /upload` with a `HUNDRED_MB` body produced 64 KiB at a time.
async fn upload(addr: SocketAddr) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {HUNDRED_MB}\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let chunk = vec![b'u'; 64 * 1024];
    let mut left = HUNDRED_MB;
    while left > 0 {
        let n = left.min(chunk.len());
        stream
            .write_all(&chunk[..n])
            .await
            .expect("the proxy takes the whole body");
        left -= n;
    }
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut bytes))
        .await
        .expect("response within 60 s")
        .expect("read response");
    client::parse(&bytes).unwrap_or_else(|| {
        panic!(
            "unparseable response: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// `GET /bytes/N` read frame by frame; returns the status and the number of
/// body bytes, never holding more than one frame.
async fn download(addr: SocketAddr, n: usize) -> (u16, usize) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1 handshake");
    let driver = tokio::spawn(connection);
    let request = http::Request::get(format!("/bytes/{n}"))
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response head");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body frame");
        total += frame.data_ref().map_or(0, Bytes::len);
    }
    drop(sender);
    let _ = driver.await;
    (status, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_stream_both_ways_in_bounded_memory() {
    let up = upstream::echo().await;
    let px = ProxyProcess::start(&config(up.addr, &public_route("/"))).await;

    let reply = upload(px.addr).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), HUNDRED_MB.to_string());

    let (status, received) =
        tokio::time::timeout(Duration::from_secs(60), download(px.addr, HUNDRED_MB))
            .await
            .expect("download within 60 s");
    assert_eq!(status, 200);
    assert_eq!(received, HUNDRED_MB);

    let peak = px.proc_status_bytes("VmHWM");
    assert!(
        peak < 100 * 1024 * 1024,
        "the proxy's peak RSS was {} MiB",
        peak / (1024 * 1024)
    );
}

#[tokio::test]
async fn tokens_cookies_and_secrets_stay_out_of_logs_metrics_and_bodies() {
    const TOKEN: &str = "SECRET-TOKEN-123";
    const SESSION: &str = "SECRET-SESSION-456";
    const HMAC: &str = "SECRET-HMAC-KEY-789";
    let up = upstream::echo().await;
    let routes = format!(
        "{}[[routes]]\npath = \"/private\"\nupstream = \"app\"\nauth = \"required\"\n",
        public_route("/public")
    );
    // Both credential kinds configured, so both are looked at.
    let toml = format!(
        "{}\n[sessions]\ncookie = \"sid\"\n\n\
         [[jwt.providers]]\nname = \"p\"\nissuer = \"https://idp.example.com\"\n\
         audiences = [\"a\"]\nalgorithms = [\"HS256\"]\nhmac_secret = \"{HMAC}\"\n",
        config(up.addr, &routes)
    );
    let px = ProxyProcess::start(&toml).await;
    let credentials = [
        format!("Authorization: Bearer {TOKEN}"),
        format!("Cookie: sid={SESSION}"),
    ];
    let credentials: Vec<&str> = credentials.iter().map(String::as_str).collect();

    let denied = client::get(px.addr, "/private/x", &credentials).await;
    assert_eq!(denied.status, 401, "{}", denied.text());
    let mut shown = denied.text();
    for (name, value) in &denied.headers {
        shown.push_str(&format!("\n{name}: {value}"));
    }
    for secret in [TOKEN, SESSION, HMAC] {
        assert!(!shown.contains(secret), "the 401 shows a secret:\n{shown}");
    }

    // Forwarded too (the echo's body shows them, which is the upstream's
    // business); the proxy's own log line for it must not.
    let forwarded = client::get(px.addr, "/public/x", &credentials).await;
    assert_eq!(forwarded.status, 200, "{}", forwarded.text());

    let both_logged = eventually(Duration::from_secs(10), || {
        px.stderr().matches("wristband::access").count() >= 2
    })
    .await;
    assert!(
        both_logged,
        "two access-log lines; stderr:\n{}",
        px.stderr()
    );

    let (status, metrics) = admin_get(px.admin, "/metrics")
        .await
        .expect("admin /metrics answers");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("wristband_requests_total"),
        "metrics:\n{metrics}"
    );

    let stderr = px.stderr();
    let stdout = px.stdout();
    for secret in [TOKEN, SESSION, HMAC] {
        assert!(!stderr.contains(secret), "stderr shows {secret}:\n{stderr}");
        assert!(!stdout.contains(secret), "stdout shows {secret}:\n{stdout}");
        assert!(
            !metrics.contains(secret),
            "metrics show {secret}:\n{metrics}"
        );
    }
}

/// A JSON object that refuses a key given twice (serde_json's `Value` keeps
/// the last one silently).
struct UniqueKeys(serde_json::Map<String, serde_json::Value>);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut object = serde_json::Map::new();
                while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
                    if object.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    object.insert(key, value);
                }
                Ok(UniqueKeys(object))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[tokio::test]
async fn access_log_lines_are_json_objects_with_unique_keys_and_the_request_id() {
    let up = upstream::echo().await;
    let px = ProxyProcess::start(&config(up.addr, &public_route("/"))).await;
    let reply = client::get(px.addr, "/x", &["X-Request-Id: lifecycle-req-1"]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-request-id"), Some("lifecycle-req-1"));

    let logged = eventually(Duration::from_secs(10), || {
        px.stderr().contains("wristband::access")
    })
    .await;
    assert!(logged, "an access-log line; stderr:\n{}", px.stderr());
    for line in px.stderr().lines() {
        let event: UniqueKeys = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object with unique keys ({e}): {line}"));
        if event.0.get("target").and_then(|t| t.as_str()) == Some("wristband::access") {
            assert_eq!(event.0["request_id"], "lifecycle-req-1", "{line}");
            assert_eq!(event.0["status"], 200, "{line}");
        }
    }
}

/// Regression (issue 13.5): an access-log line had no `path`, so an
/// operator could not tell which request it was. SPEC §3 `[log]`: the path
/// as routed and forwarded (normalized), never the query, which may carry
/// a token.
#[tokio::test]
async fn access_log_lines_carry_the_normalized_path_and_never_the_query() {
    let up = upstream::echo().await;
    let px = ProxyProcess::start(&config(up.addr, &public_route("/"))).await;
    let reply = client::get(
        px.addr,
        "/a//b/../c?token=s3cr3t-query-value",
        &["X-Request-Id: lifecycle-path-1"],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.seen().uri,
        "/a/c?token=s3cr3t-query-value",
        "the upstream gets the normalized path and the query"
    );

    let (line, event) = logged_line(&px, "lifecycle-path-1").await;
    assert_eq!(event["target"], "wristband::access", "{line}");
    assert_eq!(event["path"], "/a/c", "{line}");
    // SPEC §3 `[log]`: every field an access-log line promises.
    for field in [
        "timestamp",
        "request_id",
        "peer",
        "method",
        "path",
        "route",
        "status",
        "duration_ms",
        "auth",
        "upstream_target",
    ] {
        assert!(!event[field].is_null(), "no {field}: {line}");
    }
    assert_eq!(event["request_id"], "lifecycle-path-1", "{line}");
    assert_eq!(event["method"], "GET", "{line}");
    assert_eq!(event["status"], 200, "{line}");
    assert!(!line.contains("s3cr3t"), "the query is logged: {line}");
    assert!(!line.contains("token="), "the query is logged: {line}");
    let stderr = px.stderr();
    assert!(!stderr.contains("s3cr3t"), "the query is logged:\n{stderr}");

    // A servlet session id in a path parameter is an id: never logged.
    let reply = client::get(
        px.addr,
        "/cart;jsessionid=S3SS10N-ID/items",
        &["X-Request-Id: lifecycle-path-2"],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (line, event) = logged_line(&px, "lifecycle-path-2").await;
    let stderr = px.stderr();
    assert!(
        !stderr.contains("S3SS10N"),
        "a session id is logged:\n{stderr}"
    );
    assert_eq!(event["path"], "/cart;…/items", "{line}");
}

/// The first stderr line holding `needle`, within 10 s, and its JSON.
async fn logged_line(px: &ProxyProcess, needle: &str) -> (String, serde_json::Value) {
    let logged = eventually(Duration::from_secs(10), || px.stderr().contains(needle)).await;
    assert!(logged, "no line with {needle:?}; stderr:\n{}", px.stderr());
    let stderr = px.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains(needle))
        .expect("the line found above")
        .to_owned();
    let event =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    (line, event)
}
