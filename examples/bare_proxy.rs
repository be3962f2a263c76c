//! The floor of wristband's stack, for bench/run.sh: a reverse proxy that is
//! nothing but hyper's HTTP/1 server and a pooled hyper client, on the same
//! tokio runtime wristband uses. No routing, no auth, no header rewriting.
//! What wristband costs above this is wristband's; what this costs above
//! nginx is the stack's.
//!
//! `bare_proxy LISTEN BACKEND [legacy|conn]`: `legacy` forwards through
//! hyper-util's pooled client (what wristband uses), `conn` through a
//! minimal pool of `hyper::client::conn::http1` senders.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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
        let mut sender = match idle {
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_proxy LISTEN BACKEND [legacy|conn]";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let backend: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let upstream = match args.next().as_deref() {
        None | Some("legacy") => {
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            Upstream::Legacy(Box::new(Client::builder(TokioExecutor::new()).build(http)))
        }
        Some("conn") => Upstream::Conn(Arc::new(ConnPool {
            backend,
            idle: Mutex::new(Vec::new()),
        })),
        Some(_) => return Err(usage.into()),
    };
    let upstream = Arc::new(upstream);
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req: Request<Incoming>| {
                let upstream = upstream.clone();
                async move {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let uri = format!("http://{backend}{path}");
                    *req.uri_mut() = uri.parse().unwrap_or_default();
                    let result = match &*upstream {
                        Upstream::Legacy(client) => client.request(req).await.map_err(Into::into),
                        Upstream::Conn(pool) => pool.send(req).await,
                    };
                    let response: Response<Body> = match result {
                        Ok(response) => response.map(Either::Left),
                        Err(_) => {
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
