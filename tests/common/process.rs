//! The real `wristband` binary as a child process: its config in a private
//! temp directory, its stdout and stderr captured to files, and the child
//! killed on drop. Its listeners bind port 0 and the addresses are read
//! from its own log, so no other process can take a port between a probe
//! and the bind and pass for the proxy.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_wristband")
}

/// A loopback address that was free a moment ago: bound on port 0, read,
/// released. Only for a test that checks nothing binds there: anything may
/// take it afterwards, so it is never where a child is expected to listen.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

/// Whether something accepts connections on `addr`.
pub fn accepts(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "wristband-it-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `DIR/name` and returns the path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends `signal` (a name such as `"HUP"` or `"TERM"`) to `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running `wristband run --config FILE`.
pub struct ProxyProcess {
    child: Child,
    dir: TempDir,
    pub config: PathBuf,
    /// The client listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
}

impl ProxyProcess {
    /// Starts the binary with `toml`, to which `[server] listen` and
    /// `[admin] listen` on `127.0.0.1:0` are added (other `[server]` keys
    /// the text sets are kept; it must not set `[admin]`, nor turn the
    /// JSON log or `info` for `wristband::server` off: the addresses are
    /// read from it), and waits until `/readyz` answers 200 (at most 10 s).
    pub async fn start(toml: &str) -> ProxyProcess {
        ProxyProcess::start_with_env(toml, &[]).await
    }

    /// As [`ProxyProcess::start`], with extra environment variables.
    pub async fn start_with_env(toml: &str, env: &[(&str, &str)]) -> ProxyProcess {
        ProxyProcess::start_program(Path::new(binary()), toml, env).await
    }

    /// As [`ProxyProcess::start_with_env`], running `program` instead of the
    /// test build's binary (the reliability battery loads a release build).
    pub async fn start_program(program: &Path, toml: &str, env: &[(&str, &str)]) -> ProxyProcess {
        let dir = TempDir::new();
        let config = dir.write("wristband.toml", &with_listeners(toml));
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).expect("stdout file");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr file");
        let child = Command::new(program)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn wristband");
        // Held by the struct from here on, so that a panic below still
        // kills the child; the addresses come from its log.
        let unknown = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut process = ProxyProcess {
            child,
            dir,
            config,
            addr: unknown,
            admin: unknown,
        };
        process.wait_ready().await;
        process
    }

    /// Reads the bound addresses from the log, then polls `/readyz`.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut bound = None;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "wristband exited before it was ready ({status}); stderr:\n{}",
                    self.stderr()
                );
            }
            if bound.is_none() {
                bound = bound_addrs(&self.stderr());
                if let Some((addr, admin)) = bound {
                    self.addr = addr;
                    self.admin = admin;
                }
            }
            if bound.is_some() && admin_status(self.admin, "/readyz").await == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "wristband not ready within 10 s (addresses logged: {bound:?}); stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Overwrites the config file with `toml` plus the same listeners (send
    /// SIGHUP to apply it). They are still `127.0.0.1:0`, as at the start, so
    /// a reload sees them unchanged and the process keeps the ports it has.
    pub fn rewrite_config(&self, toml: &str) {
        std::fs::write(&self.config, with_listeners(toml)).expect("rewrite config");
    }

    /// Overwrites the config file with exactly `text`.
    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("rewrite config");
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// `None` while the process runs, else how it ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits (polling, at most `limit`) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wristband still running after {limit:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A line of `/proc/PID/status` such as `VmHWM`, in bytes.
    pub fn proc_status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"));
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unparseable line: {line}"));
        kib * 1024
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Adds listeners on port 0 to `toml` (into its `[server]` table if it has
/// one).
fn with_listeners(toml: &str) -> String {
    let listen = "listen = [\"127.0.0.1:0\"]";
    let mut text = if toml.contains("[server]") {
        toml.replacen("[server]", &format!("[server]\n{listen}"), 1)
    } else {
        format!("[server]\n{listen}\n\n{toml}")
    };
    text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    text
}

/// The client and admin addresses the process logged (JSON lines
/// `{"message":"listening","addr":...}` and `"admin listening"`), once both
/// are there. The admin line comes after every client listener's.
fn bound_addrs(stderr: &str) -> Option<(SocketAddr, SocketAddr)> {
    let logged = |message: &str| {
        stderr.lines().find_map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            if event["message"] != message {
                return None;
            }
            let addr = event["addr"].as_str()?;
            Some(
                addr.parse()
                    .unwrap_or_else(|e| panic!("a logged address ({e}): {line}")),
            )
        })
    };
    let admin = logged("admin listening")?;
    Some((logged("listening")?, admin))
}

/// The status of `GET path` on the admin listener, or `None` if it did not
/// answer (not listening yet, or not HTTP).
pub async fn admin_status(admin: SocketAddr, path: &str) -> Option<u16> {
    admin_get(admin, path).await.map(|(status, _)| status)
}

/// `GET path` on the admin listener: status and body, or `None` if it did
/// not answer within 5 s.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(admin).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.ok()?;
        let reply = super::client::parse(&bytes)?;
        Some((reply.status, reply.text()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}
