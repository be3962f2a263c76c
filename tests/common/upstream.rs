//! A real HTTP upstream on 127.0.0.1:0 that answers with what it received.
//!
//! Paths with a meaning:
//! - `/status/N`        answers status N
//! - `/slow/MS`         waits MS milliseconds before the response head
//! - `/bytes/N`         streams N bytes of body
//! - `/upload`          reads the whole body and answers its length
//! - `/ws`              answers 101 when asked to upgrade, then echoes bytes
//! - `/ws-refuse`       answers 404 to an upgrade request
//! - anything else      a JSON echo: method, uri, headers

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the upstream saw of one request.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    /// Lower-case name -> every value, in order.
    pub headers: BTreeMap<String, Vec<String>>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

pub struct TestUpstream {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    /// TCP connections accepted (keep-alive reuse shows as fewer than requests).
    pub connections: Arc<AtomicUsize>,
    /// When false, `/healthz` answers 503.
    pub healthy: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestUpstream {
    /// Stops accepting; established connections end with the task.
    pub fn stop(&self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

pub async fn echo() -> TestUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let healthy = Arc::new(AtomicBool::new(true));
    let connections = Arc::new(AtomicUsize::new(0));
    let (r, h, c) = (requests.clone(), healthy.clone(), connections.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (r, h) = (r.clone(), h.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let (r, h) = (r.clone(), h.clone());
                    async move { Ok::<_, Infallible>(answer(req, r, h).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TestUpstream {
        addr,
        requests,
        connections,
        healthy,
        task,
    }
}

fn full(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = StatusCode::from_u16(status).expect("status");
    resp
}

async fn answer(
    mut req: Request<Incoming>,
    requests: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        let ok = healthy.load(Ordering::SeqCst);
        return full(if ok { 200 } else { 503 }, "health");
    }
    requests.fetch_add(1, Ordering::SeqCst);
    if let Some(code) = path.strip_prefix("/status/") {
        return full(code.parse().unwrap_or(500), "status");
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        return full(200, "slow");
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let total: usize = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_lite_stream(total, chunk);
        let mut resp = Response::new(StreamBody::new(stream).boxed());
        resp.headers_mut()
            .insert("content-length", total.to_string().parse().expect("len"));
        return resp;
    }
    if path == "/upload" {
        let mut total = 0usize;
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => total += frame.data_ref().map_or(0, Bytes::len),
                Err(_) => return full(500, "body error"),
            }
        }
        return full(200, total.to_string());
    }
    if path == "/ws-refuse" {
        return full(404, "no websocket here");
    }
    if path == "/ws" && req.headers().contains_key("upgrade") {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut resp = full(101, Bytes::new());
        resp.headers_mut()
            .insert("connection", "upgrade".parse().expect("v"));
        resp.headers_mut()
            .insert("upgrade", "websocket".parse().expect("v"));
        return resp;
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let seen = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
    });
    let mut resp = full(200, seen.to_string());
    resp.headers_mut()
        .insert("content-type", "application/json".parse().expect("v"));
    resp
}

/// `total` bytes in 64 KiB frames, produced lazily so the upstream never
/// holds the whole body.
fn futures_lite_stream(
    total: usize,
    chunk: Bytes,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync + 'static
{
    struct Chunks {
        left: usize,
        chunk: Bytes,
    }
    impl futures_core::Stream for Chunks {
        type Item = Result<Frame<Bytes>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            let n = self.left.min(self.chunk.len());
            self.left -= n;
            let data = self.chunk.slice(..n);
            std::task::Poll::Ready(Some(Ok(Frame::data(data))))
        }
    }
    Chunks { left: total, chunk }
}
