//! Shared helpers for the integration tests: real sockets on 127.0.0.1:0,
//! an upstream that reports what it received, and the proxy started
//! in-process from TOML text.

#![allow(dead_code)]

pub mod browser;
pub mod client;
pub mod edge;
pub mod idp;
pub mod jwks;
pub mod oidc;
pub mod process;
pub mod redis;
pub mod tokens;
pub mod upstream;

use std::net::SocketAddr;
use std::path::Path;

use wristband::Config;

/// A proxy started in-process on ephemeral ports.
pub struct TestProxy {
    pub running: Option<wristband::Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl TestProxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn shutdown(mut self) -> wristband::server::DrainReport {
        let running = self.running.take().expect("running");
        running.shutdown().await
    }

    pub fn reload(&self, toml: &str) {
        let config = parse(&with_ephemeral_listeners(toml));
        self.running
            .as_ref()
            .expect("running")
            .reload(config)
            .expect("reload");
    }
}

/// Parses TOML as the proxy would, panicking with every error.
pub fn parse(toml: &str) -> Config {
    match Config::from_toml(Path::new("test.toml"), toml) {
        Ok(config) => config,
        Err(errors) => panic!("test config invalid:\n{errors}\n---\n{toml}"),
    }
}

/// Puts `[server] listen` and `[admin] listen` on port 0 unless the test
/// set them; keeps every other `[server]` key the test gave.
fn with_ephemeral_listeners(toml: &str) -> String {
    let mut text = String::new();
    if toml.contains("[server]") {
        text.push_str(&toml.replacen("[server]", "[server]\nlisten = [\"127.0.0.1:0\"]", 1));
    } else {
        text.push_str("[server]\nlisten = [\"127.0.0.1:0\"]\n");
        text.push_str(toml);
    }
    if !toml.contains("[admin]") {
        text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    }
    text
}

/// Starts the proxy with `toml` (listeners forced onto ephemeral ports).
pub async fn start_proxy(toml: &str) -> TestProxy {
    wristband::install_crypto_provider();
    let config = parse(&with_ephemeral_listeners(toml));
    let running = wristband::start(config).await.expect("proxy starts");
    TestProxy {
        addr: running.addrs[0],
        admin: running.admin_addr,
        running: Some(running),
    }
}

/// A config with one upstream `app` over `targets` (plus `upstream_keys`
/// in its table) and the given routes appended.
pub fn upstream_toml(targets: &[SocketAddr], upstream_keys: &str, routes: &str) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"http://{t}\"")).collect();
    format!(
        r#"
[log]
access_log = false

[[upstreams]]
name = "app"
targets = [{targets}]
{upstream_keys}

{routes}
"#,
        targets = targets.join(", ")
    )
}

/// One route of each kind on upstream `app`: `/api` required, `/opt`
/// optional, `/pub` public.
pub const REQUIRED_OPTIONAL_PUBLIC: &str = r#"
[[routes]]
name = "api"
path = "/api"
upstream = "app"
auth = "required"

[[routes]]
name = "opt"
path = "/opt"
upstream = "app"
auth = "optional"

[[routes]]
name = "pub"
path = "/pub"
upstream = "app"
auth = "public"
"#;

/// A config with one upstream `app` and the given routes appended.
pub fn one_upstream(target: SocketAddr, routes: &str) -> String {
    upstream_toml(&[target], "", routes)
}

/// Prepends a `[server]` table with `keys` to a config.
pub fn with_server(keys: &str, rest: &str) -> String {
    format!("[server]\n{keys}\n{rest}")
}

/// Moves this runtime's clock (what `tokio::time::Instant` and every timer
/// read) `by` forward at once, as if that much time had passed: the
/// proxy's cooldowns, `max_stale` and TTLs see it, and timers due by then
/// fire. The proxy must run in-process on the test's `current_thread`
/// runtime (`start_proxy`; a child process keeps its own clock).
///
/// A jump, not a paused clock: while paused, tokio advances the clock to
/// the next timer whenever the runtime idles, which it does while waiting
/// on a real socket, so a fetch or read timeout would fire at once.
/// Between `pause` and `resume` the runtime never idles: `advance` only
/// yields, and a yield polls the driver without waiting (nor advancing).
pub async fn jump_clock(by: std::time::Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

/// A loopback address where nothing listens, for as long as the test
/// process runs: a socket bound there without `listen` refuses every
/// connection, and keeps the port from being handed to another test (a
/// port bound and released could be, and then answer).
pub fn closed_port() -> SocketAddr {
    static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().expect("addr");
    HELD.lock().unwrap_or_else(|p| p.into_inner()).push(socket);
    addr
}

/// The value of the sample `name{labels...}` in Prometheus/OpenMetrics text,
/// whatever the label order.
pub fn metric_sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (label_text, value) = rest.split_once('}')?;
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|l| l == format!("{k}=\"{v}\"")));
        if !all {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Polls the admin `/readyz` until 200 (listeners bound, every JWT provider
/// has keys, the session store answers), for up to 10 s.
pub async fn wait_ready(px: &TestProxy) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = client::get(px.admin, "/readyz", &[]).await;
        if reply.status == 200 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "proxy not ready within 10 s: {} {}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
