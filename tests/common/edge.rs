//! Real edge proxies in front of wristband's forward-auth (SPEC §8): nginx
//! (`auth_request`) and Caddy (`forward_auth`), the Debian packages, each a
//! child process with its config in a private temp directory, listening on
//! a port picked free just before the start, and killed by PID on drop.
//!
//! A start counts only once the edge on the port answers `/__edge` with
//! this start's own random marker: a port taken between the probe and the
//! bind (neither server can bind port 0 and say which port it got) makes
//! the child exit, and another port is tried.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::TempDir;
use super::redis::free_port;
use super::tokens::random_id;

/// What the edge sends to wristband and copies back: the identity header
/// of `[identity] headers` and the login hint.
pub struct Edge {
    child: Child,
    pub addr: SocketAddr,
    pub name: &'static str,
    dir: TempDir,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Edge {
    /// nginx with `auth_request` to `wristband`'s forward-auth path, in
    /// front of `backend`.
    pub fn nginx(wristband: SocketAddr, backend: SocketAddr) -> Edge {
        Edge::start("nginx", |dir, port, marker| {
            let d = dir.path().display();
            let config = nginx_config(port, wristband, backend, marker, &d.to_string());
            let file = dir.write("nginx.conf", &config);
            let mut command = Command::new(nginx_binary());
            command.arg("-c").arg(file).arg("-p").arg(dir.path());
            command
        })
    }

    /// Caddy with `forward_auth` to `wristband`, in front of `backend`.
    pub fn caddy(wristband: SocketAddr, backend: SocketAddr) -> Edge {
        Edge::start("caddy", |dir, port, marker| {
            let file = dir.write("Caddyfile", &caddy_config(port, wristband, backend, marker));
            let mut command = Command::new(caddy_binary());
            command
                .args(["run", "--adapter", "caddyfile", "--config"])
                .arg(file)
                .env("HOME", dir.path())
                .env("XDG_DATA_HOME", dir.path().join("data"))
                .env("XDG_CONFIG_HOME", dir.path().join("config"));
            command
        })
    }

    fn start(name: &'static str, command: impl Fn(&TempDir, u16, &str) -> Command) -> Edge {
        for _ in 0..5 {
            let dir = TempDir::new();
            let port = free_port();
            let marker = random_id();
            let mut child = command(&dir, port, &marker)
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(dir.path().join("stderr.log"))
                        .map(Stdio::from)
                        .unwrap_or_else(|_| Stdio::null()),
                )
                .spawn()
                .unwrap_or_else(|e| panic!("start {name}: {e}"));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    // Most likely the port was taken: another one.
                    break;
                }
                if answers_with(addr, &marker) {
                    return Edge {
                        child,
                        addr,
                        name,
                        dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            eprintln!("{name} did not start on port {port}; retrying. Its stderr:\n{log}");
        }
        panic!("{name} did not start in five attempts");
    }

    /// The edge's own log, for a failing assertion's message.
    pub fn log(&self) -> String {
        let mut text = String::new();
        for file in ["stderr.log", "error.log"] {
            text.push_str(&std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default());
        }
        text
    }
}

fn nginx_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

fn caddy_binary() -> &'static str {
    if std::path::Path::new("/usr/bin/caddy").exists() {
        "/usr/bin/caddy"
    } else {
        "caddy"
    }
}

/// A blocking `GET /__edge` that must answer `marker`.
fn answers_with(addr: SocketAddr, marker: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = b"GET /__edge HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") && response.ends_with(marker)
}

/// The shape of docs/forward-auth.md's nginx example, on loopback ports
/// and with every path under `dir`: `auth_request` to the forward-auth
/// path, the nginx header set (and the other set cleared), the identity
/// header copied with `auth_request_set` (empty: not sent, so a client's
/// own never passes), and a 401 with `X-Auth-Login` redirected.
fn nginx_config(
    port: u16,
    wristband: SocketAddr,
    backend: SocketAddr,
    marker: &str,
    dir: &str,
) -> String {
    format!(
        r#"
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream wristband {{ server {wristband}; }}
    upstream app {{ server {backend}; }}

    server {{
        listen 127.0.0.1:{port};

        location = /__edge {{ return 200 "{marker}"; }}

        location / {{
            auth_request /_wristband/auth;
            auth_request_set $auth_user $upstream_http_x_auth_user;
            auth_request_set $auth_login $upstream_http_x_auth_login;
            proxy_set_header X-Auth-User $auth_user;
            error_page 401 = @login;
            proxy_pass http://app;
        }}

        location @login {{
            if ($auth_login = "") {{ return 401; }}
            return 302 $auth_login;
        }}

        location ^~ /_wristband/auth {{
            internal;
            proxy_pass http://wristband;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Forwarded-Uri "";
        }}
    }}
}}
"#
    )
}

/// The shape of docs/forward-auth.md's Caddy example: the identity header
/// removed from the client's request first, then `forward_auth` with
/// `copy_headers` and a 401 with `X-Auth-Login` turned into a redirect, in
/// a `route` so the order is the one written.
fn caddy_config(port: u16, wristband: SocketAddr, backend: SocketAddr, marker: &str) -> String {
    format!(
        r#"
{{
    admin off
    auto_https off
}}

http://:{port} {{
    route {{
        respond /__edge "{marker}" 200
        request_header -X-Auth-User
        forward_auth {wristband} {{
            uri /_wristband/auth
            copy_headers X-Auth-User
            @login {{
                status 401
                header X-Auth-Login *
            }}
            handle_response @login {{
                redir {{rp.header.X-Auth-Login}} 302
            }}
        }}
        reverse_proxy {backend}
    }}
}}
"#
    )
}
