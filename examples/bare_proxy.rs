//! The floor of wristband's stack, for bench/run.sh: a reverse proxy that is
//! nothing but hyper's HTTP/1 server and a pooled hyper client, on the same
//! tokio runtime wristband uses. No routing, no auth, no header rewriting.
//! What wristband costs above this is wristband's; what this costs above
//! nginx is the stack's.
//!
//! `bare_proxy LISTEN BACKEND [conn|legacy] [REDIS_URL KEY]`: `conn` (the
//! default) forwards through a minimal pool of `hyper::client::conn::http1`
//! senders, as wristband does; `legacy` through hyper-util's pooled client.
//! Like wristband, `TOKIO_WORKER_THREADS=1` gives a single-threaded runtime.
//!
//! With `REDIS_URL KEY`, every request first reads the hash at `KEY` through
//! fred (`HGETALL`, with the 250 ms command timeout of wristband's default;
//! `COMMAND_TIMEOUT_MS` sets another, for valgrind) and is forwarded only if
//! it exists: the floor of a session route without a session cache, the
//! store round trip and nothing of wristband's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use fred::prelude::{ClientLike, HashesInterface, Value};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

type Body = Either<Incoming, http_body_util::Empty<bytes::Bytes>>;

enum Upstream {
    Legacy(Box<Client<HttpConnector, Incoming>>),
    Conn(Arc<ConnPool>),
}

/// Idle senders to one backend; a request takes one (or dials) and gives
/// it back once hyper says it can take the next request.
struct ConnPool {
    backend: SocketAddr,
    idle: Mutex<Vec<SendRequest<Incoming>>>,
}

impl ConnPool {
    async fn send(
        self: &Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
        let idle = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
        // A pooled connection the backend has closed meanwhile is dropped
        // for a fresh one, as any pool must (wristband's retries the same way).
        let pooled = match idle {
            Some(mut sender) => sender.ready().await.ok().map(|()| sender),
            None => None,
        };
        let mut sender = match pooled {
            Some(sender) => sender,
            None => {
                let stream = TcpStream::connect(self.backend).await?;
                stream.set_nodelay(true)?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        sender.ready().await?;
        let response = sender.send_request(req).await?;
        let pool = self.clone();
        // Back to the pool when the connection can take the next request
        // (after the response body is read), without a task per request:
        // the next checkout's `ready()` waits for that.
        if let Ok(mut idle) = pool.idle.lock() {
            idle.push(sender);
        }
        Ok(response)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let one_worker = std::env::var("TOKIO_WORKER_THREADS").is_ok_and(|v| v.trim() == "1");
    let runtime = if one_worker {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()?;
    runtime.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_proxy LISTEN BACKEND [conn|legacy] [REDIS_URL KEY]";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let backend: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let upstream = match args.next().as_deref() {
        Some("legacy") => {
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            Upstream::Legacy(Box::new(Client::builder(TokioExecutor::new()).build(http)))
        }
        None | Some("conn") => Upstream::Conn(Arc::new(ConnPool {
            backend,
            idle: Mutex::new(Vec::new()),
        })),
        Some(_) => return Err(usage.into()),
    };
    let session = match (args.next(), args.next()) {
        (Some(url), Some(key)) => Some(Arc::new((store(&url).await?, key))),
        (None, None) => None,
        _ => return Err(usage.into()),
    };
    let upstream = Arc::new(upstream);
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let upstream = upstream.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req: Request<Incoming>| {
                let upstream = upstream.clone();
                let session = session.clone();
                async move {
                    if let Some(session) = session {
                        let (client, key) = &*session;
                        // Boxed, as wristband boxes its store calls (wristband builds
                        // the box in place, `src/boxed.rs`: ~700 instructions less).
                        let found = Box::pin(client.hgetall::<Value, _>(key.as_str())).await;
                        let refused = match found {
                            Ok(Value::Map(map)) if !map.is_empty() => None,
                            Ok(_) => Some(StatusCode::UNAUTHORIZED),
                            Err(_) => Some(StatusCode::SERVICE_UNAVAILABLE),
                        };
                        if let Some(status) = refused {
                            let mut r = Response::new(Either::Right(http_body_util::Empty::new()));
                            *r.status_mut() = status;
                            return Ok::<_, Infallible>(r);
                        }
                    }
                    let result = match &*upstream {
                        Upstream::Legacy(client) => {
                            // The legacy client wants an absolute URI.
                            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                            let uri = format!("http://{backend}{path}");
                            *req.uri_mut() = uri.parse().unwrap_or_default();
                            client.request(req).await.map_err(Into::into)
                        }
                        // Origin form and the client's Host, as they came.
                        Upstream::Conn(pool) => pool.send(req).await,
                    };
                    let response: Response<Body> = match result {
                        Ok(response) => response.map(Either::Left),
                        Err(error) => {
                            eprintln!("bare_proxy: 502: {error}");
                            let mut r = Response::new(Either::Right(http_body_util::Empty::new()));
                            *r.status_mut() = StatusCode::BAD_GATEWAY;
                            r
                        }
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A fred client set up as wristband's store is on the request path: one
/// attempt, a command timeout, connected before the first request.
async fn store(url: &str) -> Result<fred::prelude::Client, Box<dyn std::error::Error>> {
    let config = fred::prelude::Config::from_url(url)?;
    let timeout_ms = match std::env::var("COMMAND_TIMEOUT_MS") {
        Ok(ms) => ms.parse()?,
        Err(_) => 250,
    };
    let client = fred::prelude::Builder::from_config(config)
        .with_performance_config(|perf| {
            perf.default_command_timeout = std::time::Duration::from_millis(timeout_ms);
        })
        .with_connection_config(|conn| conn.max_command_attempts = 1)
        .build()?;
    client.init().await?;
    Ok(client)
}
