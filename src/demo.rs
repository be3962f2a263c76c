//! `wristband demo`: the proxy, a built-in echo backend and the in-memory
//! store on loopback, with curl commands that show what the proxy does.
//! Later credential kinds add a token and a session to it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::config::Config;

/// Starts an echo backend on `listener`: every request is answered with a
/// JSON document of its method, target and headers.
pub async fn serve_echo(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service =
                service_fn(|req: Request<Incoming>| async move { Ok::<_, Infallible>(echo(&req)) });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn echo(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
    });
    let mut response = Response::new(Full::new(Bytes::from(format!("{body:#}\n"))));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The demo's config: a public route and a protected one in front of the
/// echo backend.
pub fn config(listen: SocketAddr, admin: SocketAddr, echo: SocketAddr) -> String {
    format!(
        r#"
[server]
listen = ["{listen}"]

[admin]
listen = "{admin}"

[log]
format = "pretty"

[[upstreams]]
name = "echo"
targets = ["http://{echo}"]

[[routes]]
name = "public"
path = "/public"
upstream = "echo"
auth = "public"

[[routes]]
name = "app"
path = "/"
upstream = "echo"
auth = "required"
"#
    )
}

pub async fn run(listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    tokio::spawn(serve_echo(echo));
    let text = config(listen, admin, echo_addr);
    let config = Config::from_toml(Path::new("<demo>"), &text)
        .map_err(|errors| anyhow::anyhow!("demo config is invalid:\n{errors}"))?;
    crate::telemetry::logging::init(&config.log);
    let running = crate::server::start(config).await?;
    let base = format!("http://{}", running.addrs[0]);
    println!(
        r#"
wristband demo is running: proxy {base}, admin http://{admin}, echo backend http://{echo_addr}

  # a public route: the echo backend shows the headers it received
  curl -s {base}/public/hello

  # a spoofed identity header is dropped before the request reaches the backend
  curl -s -H 'X-Auth-User: admin' -H 'X_Auth_User: admin' {base}/public/hello

  # a protected route without credentials: 401
  curl -si {base}/app

  # path normalization: /public/../app is /app, so it is protected too
  curl -si --path-as-is {base}/public/../app

  # operations
  curl -s http://{admin}/readyz
  curl -s http://{admin}/metrics | grep wristband_requests

Ctrl-C to stop.
"#,
        admin = running.admin_addr,
    );
    tokio::signal::ctrl_c().await?;
    running.shutdown().await;
    Ok(())
}
