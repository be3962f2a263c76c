//! `wristband demo`: the proxy, a built-in echo backend and a generated
//! signing key on loopback, with curl commands that show what the proxy does.

mod echo;
mod token;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::Config;
pub use echo::serve_echo;

/// The demo's issuer and audience (the key is generated per run).
pub const ISSUER: &str = "https://demo.wristband.invalid";
pub const AUDIENCE: &str = "demo-app";

/// The demo's config: a public route, a JWT route and an admin-only route in
/// front of the echo backend.
pub fn config(listen: SocketAddr, admin: SocketAddr, echo: SocketAddr, jwks: &Path) -> String {
    format!(
        r#"
[server]
listen = ["{listen}"]

[admin]
listen = "{admin}"

[log]
format = "pretty"

[[jwt.providers]]
name = "demo"
issuer = "{ISSUER}"
jwks_file = "{jwks}"
audiences = ["{AUDIENCE}"]
algorithms = ["ES256"]

[sessions]
cookie = "sid"
list_fields = ["roles"]

[identity]
headers = {{ "X-Auth-User" = "sub", "X-Auth-Roles" = "roles" }}

[[upstreams]]
name = "echo"
targets = ["http://{echo}"]

[[routes]]
name = "public"
path = "/public"
upstream = "echo"
auth = "public"

[[routes]]
name = "api"
path = "/api"
upstream = "echo"

[[routes]]
name = "admin"
path = "/admin"
upstream = "echo"
require = {{ roles = ["admin"] }}

[[routes]]
name = "app"
path = "/app"
upstream = "echo"
accept = ["session"]
"#,
        jwks = jwks.display()
    )
}

/// A running demo: where it listens and a token for it.
pub struct Demo {
    pub running: crate::Running,
    pub echo: SocketAddr,
    /// `sub = "alice"`, `roles = ["dev"]`, valid for an hour.
    pub token: String,
    /// A session id seeded in the in-memory store: `user_id = "bob"`,
    /// `roles = "admin,ops"`.
    pub session: String,
    _dir: TempDir,
}

/// The demo's key set on disk, removed when the demo ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Demo {
    /// Starts the echo backend and the proxy.
    pub async fn start(listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<Demo> {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let echo_addr = echo.local_addr()?;
        tokio::spawn(serve_echo(echo));
        let dir = std::env::temp_dir().join(format!("wristband-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let key = token::DemoKey::generate()?;
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, key.jwks())?;
        let text = config(listen, admin, echo_addr, &jwks);
        let config = Config::from_toml(Path::new("<demo>"), &text)
            .map_err(|errors| anyhow::anyhow!("demo config is invalid:\n{errors}"))?;
        crate::telemetry::logging::init(&config.log);
        let running = crate::server::start(config).await?;
        Ok(Demo {
            running,
            echo: echo_addr,
            token: key.sign("alice", &["dev"])?,
            session: seed_session(),
            _dir: TempDir(dir),
        })
    }

    /// The curl commands, each with the outcome it shows.
    pub fn instructions(&self) -> String {
        let base = format!("http://{}", self.running.addrs[0]);
        let admin = self.running.admin_addr;
        let token = &self.token;
        format!(
            r#"
wristband demo is running: proxy {base}, admin http://{admin}, echo backend http://{echo}

  # a public route: the echo backend shows the headers it received (200)
  curl -s {base}/public/hello

  # a spoofed identity header is dropped before the request reaches the backend (200, no X-Auth-User)
  curl -s -H 'X-Auth-User: admin' -H 'X_Auth_User: admin' {base}/public/hello

  # a protected route without credentials (401)
  curl -si {base}/api/orders

  # the same with a valid token: the backend gets X-Auth-User: alice and X-Auth-Roles: dev (200)
  curl -s -H 'Authorization: Bearer {token}' {base}/api/orders

  # a forged identity next to a valid token is replaced by the token's (200, X-Auth-User: alice)
  curl -s -H 'Authorization: Bearer {token}' -H 'X-Auth-User: root' {base}/api/orders

  # a session route with the session seeded in the in-memory store: X-Auth-User: bob (200)
  curl -s -H 'Cookie: sid={session}' {base}/app/cart

  # an unknown session id (401)
  curl -si -H 'Cookie: sid=not-a-session' {base}/app/cart

  # bob has the admin role, so the admin route lets him in (200)
  curl -s -H 'Cookie: sid={session}' {base}/admin

  # an admin-only route: alice's roles do not include admin (403)
  curl -si -H 'Authorization: Bearer {token}' {base}/admin

  # path normalization: /public/../admin is /admin, so it is protected too (401)
  curl -si --path-as-is {base}/public/../admin

  # operations
  curl -s http://{admin}/readyz
  curl -s http://{admin}/metrics | grep wristband_requests

Ctrl-C to stop.
"#,
            echo = self.echo,
            session = self.session,
        )
    }
}

/// A fresh random session for bob in the shared in-memory store.
fn seed_session() -> String {
    let mut bytes = [0u8; 18];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    let id = crate::encoding::base64url(&bytes);
    crate::auth::session::MemoryStore::shared().insert(
        format!("sessions:{id}"),
        crate::auth::session::Stored::Hash(vec![
            ("user_id".into(), "bob".into()),
            ("roles".into(), "admin,ops".into()),
        ]),
        Some(std::time::Duration::from_secs(8 * 3600)),
    );
    id
}

pub async fn run(listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let demo = Demo::start(listen, admin).await?;
    println!("{}", demo.instructions());
    tokio::signal::ctrl_c().await?;
    demo.running.shutdown().await;
    Ok(())
}
