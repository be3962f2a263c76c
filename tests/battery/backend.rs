//! The backend behind the proxies under load: it answers every request with
//! the identity the proxy injected, so the load generator can compare it
//! with the credential it sent, and it checks that itself too.
//!
//! Every response carries `x-echo-users` (a JSON array of every
//! `X-Auth-User` value received, in order) and `x-echo-rid` (the
//! `X-Request-Id` received). A response without them did not come from
//! here.
//!
//! The generator names what the backend must see in `x-battery-expect`:
//! `user:NAME` (exactly one `X-Auth-User: NAME`), `anonymous` (none: a
//! public route) or `refused` (the request carried an invalid credential
//! and must never arrive). Anything else arriving is a violation: counted,
//! and written to stderr as a `VIOLATION` line, so that a backend running
//! as a child process reports it in its log even if it is killed later.
//!
//! Paths (after any route prefix):
//! - `.../ws` with `Upgrade`: 101, then echoes bytes
//! - `.../upload`: reads the whole body, answers `{"bytes":N}`
//! - `.../jwks.json`: the key set given at the start (the soak's JWKS)
//! - `?bytes=N`: a body of N bytes
//! - `?delay=MS`: waits MS ms before answering (requests in flight)
//! - anything else: `{"rid":..,"users":[..],"path":..}`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// What the generator says the backend must see (`x-battery-expect`).
pub const EXPECT_HEADER: &str = "x-battery-expect";

#[derive(Default)]
pub struct State {
    pub requests: AtomicUsize,
    pub violations: AtomicUsize,
    jwks: Mutex<Option<String>>,
}

/// A backend serving in this process.
pub struct Backend {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    connections: Arc<Mutex<JoinSet<()>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}

impl Backend {
    /// Starts on `addr` (port 0: any free port).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let task = tokio::spawn(accept_loop(listener, state.clone(), connections.clone()));
        Ok(Backend {
            addr,
            state,
            connections,
            task,
        })
    }

    /// Serves `/.../jwks.json` with this key set document from now on.
    pub fn serve_jwks(&self, document: String) {
        *self.state.jwks.lock().unwrap_or_else(|p| p.into_inner()) = Some(document);
    }

    /// Closes every connection it holds (the listener stays): the proxy's
    /// pooled connections to it end, as when a backend restarts.
    pub fn close_connections(&self) {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }

    pub fn violations(&self) -> usize {
        self.state.violations.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    connections: Arc<Mutex<JoinSet<()>>>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: say so, back off, keep serving.
                eprintln!("battery backend: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        let mut set = connections.lock().unwrap_or_else(|p| p.into_inner());
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(req, state).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn lossy(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// Whether `users` (every `X-Auth-User` received) is what `expect` allows.
pub fn identity_matches(expect: &str, users: &[String]) -> bool {
    match expect.strip_prefix("user:") {
        Some(name) => users.len() == 1 && users[0] == name,
        None if expect == "anonymous" => users.is_empty(),
        // "refused", or anything unknown: nothing may arrive.
        None => false,
    }
}

fn query_number(query: &str, name: &str) -> Option<u64> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        if k == name { v.parse().ok() } else { None }
    })
}

fn respond(status: u16, body: Bytes, users: &str, rid: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    // JSON escapes every control character, so the value is always valid.
    if let Ok(v) = HeaderValue::from_str(users) {
        headers.insert("x-echo-users", v);
    }
    if let Ok(v) = HeaderValue::from_str(rid) {
        headers.insert("x-echo-rid", v);
    }
    resp
}

async fn answer(mut req: Request<Incoming>, state: Arc<State>) -> Response<Full<Bytes>> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let users: Vec<String> = req
        .headers()
        .get_all("x-auth-user")
        .iter()
        .map(lossy)
        .collect();
    let users_json = serde_json::to_string(&users).unwrap_or_else(|_| "[]".to_owned());
    let rid = req
        .headers()
        .get("x-request-id")
        .map(lossy)
        .unwrap_or_default();
    let path = req.uri().path().to_owned();
    if let Some(expect) = req.headers().get(EXPECT_HEADER).map(lossy)
        && !identity_matches(&expect, &users)
    {
        state.violations.fetch_add(1, Ordering::SeqCst);
        eprintln!("VIOLATION path={path} rid={rid} expected={expect} received={users_json}");
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    if let Some(ms) = query_number(&query, "delay") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path.ends_with("/jwks.json") {
        let doc = state.jwks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        return match doc {
            Some(doc) => respond(200, Bytes::from(doc), &users_json, &rid),
            None => respond(404, Bytes::new(), &users_json, &rid),
        };
    }
    if path.ends_with("/ws") && req.headers().contains_key("upgrade") {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 4096];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut resp = respond(101, Bytes::new(), &users_json, &rid);
        resp.headers_mut()
            .insert("connection", HeaderValue::from_static("upgrade"));
        resp.headers_mut()
            .insert("upgrade", HeaderValue::from_static("websocket"));
        return resp;
    }
    if path.ends_with("/upload") {
        let mut total = 0usize;
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => total += frame.data_ref().map_or(0, Bytes::len),
                Err(_) => return respond(500, Bytes::from_static(b"body"), &users_json, &rid),
            }
        }
        let body = serde_json::json!({ "bytes": total }).to_string();
        return respond(200, Bytes::from(body), &users_json, &rid);
    }
    if let Some(n) = query_number(&query, "bytes") {
        let n = usize::try_from(n).unwrap_or(0).min(64 << 20);
        return respond(200, Bytes::from(vec![b'x'; n]), &users_json, &rid);
    }
    let body = serde_json::json!({ "rid": rid, "users": users, "path": path }).to_string();
    respond(200, Bytes::from(body), &users_json, &rid)
}
