//! The floor of wristband's stack, for bench/run.sh: a reverse proxy that is
//! nothing but hyper's HTTP/1 server and a pooled hyper client, on the same
//! tokio runtime wristband uses. No routing, no auth, no header rewriting.
//! What wristband costs above this is wristband's; what this costs above
//! nginx is the stack's.
//!
//! `bare_proxy LISTEN BACKEND [conn|legacy|spec] [REDIS_URL KEY]`: `conn`
//! (the default) forwards through a minimal pool of
//! `hyper::client::conn::http1` senders, as wristband does; `legacy` through
//! hyper-util's pooled client; `spec` through the `conn` pool, doing on the
//! way what SPEC requires of every request on a public route, each rule in
//! the fewest operations on hyper's types this file's author could write
//! (see [`spec`]): the floor of the SPEC's own rules on this stack.
//! Like wristband, `TOKIO_WORKER_THREADS=1` gives a single-threaded runtime.
//!
//! With `REDIS_URL KEY`, every request first reads the hash at `KEY` through
//! fred (`HGETALL`, with the 250 ms command timeout of wristband's default;
//! `COMMAND_TIMEOUT_MS` sets another, for valgrind) and is forwarded only if
//! it exists: the floor of a session route without a session cache, the
//! store round trip and nothing of wristband's. With `spec` too, `KEY` is
//! the key prefix and the rest is what SPEC asks of a session route (see
//! [`session_user`]): the floor of the SPEC's rules for a session route.

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
use wristband::auth::credentials;
use wristband::auth::session::well_formed_session_id;

type Body = Either<Incoming, http_body_util::Empty<bytes::Bytes>>;

enum Upstream {
    Legacy(Box<Client<HttpConnector, Incoming>>),
    Conn(Arc<ConnPool>),
    Spec(Arc<ConnPool>, spec::Rules),
}

/// Idle senders to one backend; a request takes one (or dials) and gives
/// it back once hyper says it can take the next request.
struct ConnPool {
    backend: SocketAddr,
    idle: Mutex<Vec<SendRequest<Incoming>>>,
}

impl ConnPool {
    fn new(backend: SocketAddr) -> Arc<ConnPool> {
        Arc::new(ConnPool {
            backend,
            idle: Mutex::new(Vec::new()),
        })
    }

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
    let usage = "usage: bare_proxy LISTEN BACKEND [conn|legacy|spec] [REDIS_URL KEY]";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let backend: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let upstream = match args.next().as_deref() {
        Some("legacy") => {
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            Upstream::Legacy(Box::new(Client::builder(TokioExecutor::new()).build(http)))
        }
        None | Some("conn") => Upstream::Conn(ConnPool::new(backend)),
        Some("spec") => Upstream::Spec(ConnPool::new(backend), spec::Rules::new(backend)?),
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
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        // Once per connection, as wristband does (with its own code).
        let peer_ip = wristband::proxy::ConnInfo::new(peer, false).peer_ip;
        let upstream = upstream.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req: Request<Incoming>| {
                let upstream = upstream.clone();
                let session = session.clone();
                let peer_ip = peer_ip.clone();
                async move {
                    let spec = matches!(&*upstream, Upstream::Spec(..));
                    let user = match &session {
                        Some(session) => match session_user(session, req.headers(), spec).await {
                            Ok(user) => user,
                            Err(status) => {
                                let mut r =
                                    Response::new(Either::Right(http_body_util::Empty::new()));
                                *r.status_mut() = status;
                                return Ok::<_, Infallible>(r);
                            }
                        },
                        None => None,
                    };
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
                        Upstream::Spec(pool, rules) => {
                            return Ok(rules.forward(pool, req, &peer_ip, user).await);
                        }
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

/// The session's check, for a request with `REDIS_URL KEY`: `Err` is the
/// refusal. Without `spec`, the hash at the fixed `KEY` must exist. With
/// `spec`, what SPEC §3 and §5 ask of a session route besides: `KEY` is the
/// key prefix, the session id is cookie `sid` (two different values are
/// ambiguous: 400; the id's shape is checked before the store is asked),
/// and the hash's `user_id` becomes the `X-Auth-User` value (never with a
/// control character).
async fn session_user(
    session: &(fred::prelude::Client, String),
    headers: &http::HeaderMap,
    spec: bool,
) -> Result<Option<http::HeaderValue>, StatusCode> {
    let (client, key) = session;
    let key = if spec {
        // SPEC §3's rules are wristband's (the cookie read across headers,
        // an ambiguous pair refused, the id's shape); the work is here.
        let id = match credentials::cookie(headers, "sid") {
            Ok(Some(id)) => id,
            Ok(None) => return Err(StatusCode::UNAUTHORIZED),
            Err(_) => return Err(StatusCode::BAD_REQUEST),
        };
        if !well_formed_session_id(id) {
            return Err(StatusCode::UNAUTHORIZED);
        }
        [key.as_str(), id].concat()
    } else {
        key.clone()
    };
    // Boxed, as wristband boxes its store calls (wristband builds the box in
    // place, `src/boxed.rs`: ~700 instructions less).
    let found = Box::pin(client.hgetall::<Value, _>(key)).await;
    let map = match found {
        Ok(Value::Map(map)) if !map.is_empty() => map,
        Ok(_) => return Err(StatusCode::UNAUTHORIZED),
        Err(_) => return Err(StatusCode::SERVICE_UNAVAILABLE),
    };
    if !spec {
        return Ok(None);
    }
    let user = map
        .inner()
        .into_iter()
        .find(|(name, _)| name.as_bytes() == b"user_id")
        .and_then(|(_, value)| match value {
            Value::String(text) => Some(text),
            _ => None,
        })
        .filter(|text| !text.is_empty() && !text.chars().any(char::is_control));
    match user.map(|text| http::HeaderValue::from_maybe_shared(text.into_inner())) {
        Some(Ok(user)) => Ok(Some(user)),
        _ => Err(StatusCode::UNAUTHORIZED),
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

/// The per-request work SPEC asks of a public route, written directly on
/// hyper's and http's types, for `hyper-floor-spec`. Each rule is done once,
/// in the cheapest way this file's author knew, and nothing else: no
/// config, no routing table, no authentication, no logging. wristband's
/// public route does all of this and more (its cost above this is
/// wristband's own); this file's cost above plain `conn` is what the rules
/// cost on this stack.
mod spec {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use http::header::{self, HeaderMap, HeaderName, HeaderValue};
    use http_body_util::Either;
    use hyper::body::Incoming;
    use hyper::{Request, Response, StatusCode};
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

    use super::{Body, ConnPool};

    /// `[identity] headers`' default: `X-Auth-User = "sub"`.
    const X_AUTH_USER: HeaderName = HeaderName::from_static("x-auth-user");

    // The names and the id rule are wristband's; the work is written here.
    use wristband::headers::{
        X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID, well_formed_request_id,
    };

    pub struct Rules {
        /// The backend's Host (`preserve_host = false`, the default).
        host: HeaderValue,
        /// `response_timeout`'s default.
        response_timeout: Duration,
        /// `wristband_requests_total` by status class, and
        /// `wristband_request_duration_seconds`.
        requests: [AtomicU64; 6],
        duration: Histogram,
        next_id: AtomicU64,
    }

    impl Rules {
        pub fn new(backend: SocketAddr) -> Result<Rules, http::header::InvalidHeaderValue> {
            Ok(Rules {
                host: HeaderValue::from_str(&backend.to_string())?,
                response_timeout: Duration::from_secs(30),
                requests: Default::default(),
                duration: Histogram::new(exponential_buckets(0.001, 2.0, 12)),
                next_id: AtomicU64::new(1),
            })
        }

        pub async fn forward(
            &self,
            pool: &Arc<ConnPool>,
            mut req: Request<Incoming>,
            peer_ip: &HeaderValue,
            user: Option<HeaderValue>,
        ) -> Response<Body> {
            let started = Instant::now();
            // Guarantee 3: every byte of the path looked at once; the
            // benchmark's path needs no rewriting, and one that would is
            // refused here instead.
            if !is_normal(req.uri().path()) {
                return self.done(status(StatusCode::BAD_REQUEST), None, started);
            }
            let headers = req.headers_mut();
            // SPEC §4: the client's id if well-formed, else a new one.
            let id = match headers.get(&X_REQUEST_ID) {
                Some(id) if well_formed_request_id(id.as_bytes()) => id.clone(),
                _ => self.fresh_id(),
            };
            // Guarantees 8 and 2: hop-by-hop headers, identity aliases and
            // untrusted `X-Forwarded-*` go, in one pass over the names.
            let client_host = headers.get(header::HOST).cloned();
            strip(headers);
            headers.insert(&X_FORWARDED_FOR, peer_ip.clone());
            headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
            if let Some(host) = client_host {
                headers.insert(&X_FORWARDED_HOST, host);
            }
            headers.insert(&X_REQUEST_ID, id.clone());
            headers.insert(header::HOST, self.host.clone());
            // Guarantee 2's other half: the identity, set after the strip.
            if let Some(user) = user {
                headers.insert(X_AUTH_USER, user);
            }
            let response = match tokio::time::timeout(self.response_timeout, pool.send(req)).await {
                Ok(Ok(mut response)) => {
                    strip(response.headers_mut());
                    response.map(Either::Left)
                }
                Ok(Err(_)) => status(StatusCode::BAD_GATEWAY),
                Err(_) => status(StatusCode::GATEWAY_TIMEOUT),
            };
            self.done(response, Some(id), started)
        }

        fn done(
            &self,
            mut response: Response<Body>,
            id: Option<HeaderValue>,
            started: Instant,
        ) -> Response<Body> {
            let class = usize::from(response.status().as_u16() / 100);
            self.requests[class.min(5)].fetch_add(1, Ordering::Relaxed);
            self.duration.observe(started.elapsed().as_secs_f64());
            if let Some(id) = id {
                response.headers_mut().insert(&X_REQUEST_ID, id);
            }
            response
        }

        fn fresh_id(&self) -> HeaderValue {
            let n = self.next_id.fetch_add(1, Ordering::Relaxed);
            let mut text = [b'0'; 32];
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for (i, byte) in n.to_be_bytes().iter().enumerate() {
                text[16 + 2 * i] = HEX[usize::from(byte >> 4)];
                text[16 + 2 * i + 1] = HEX[usize::from(byte & 0xf)];
            }
            HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("0"))
        }
    }

    fn status(code: StatusCode) -> Response<Body> {
        let mut response = Response::new(Either::Right(http_body_util::Empty::new()));
        *response.status_mut() = code;
        response
    }

    /// No `.` or `..` segment, no `//`, no `%` escape, no `\`.
    fn is_normal(path: &str) -> bool {
        path.starts_with('/')
            && !path.contains("//")
            && !path.contains("/.")
            && !path.bytes().any(|b| b == b'%' || b == b'\\')
    }

    /// `x-auth-*`, with `_` and `.` read as `-`.
    fn is_identity_alias(name: &[u8]) -> bool {
        let dash = |b: u8| matches!(b, b'-' | b'_' | b'.');
        name.len() > 7
            && name[0] == b'x'
            && dash(name[1])
            && &name[2..6] == b"auth"
            && dash(name[6])
    }

    /// Removes the hop-by-hop headers, every `Connection`-named one,
    /// the identity aliases (`x-auth-*`, read with `_` and `.` as `-`) and
    /// `x-forwarded-*`: one pass over the names, and removals only for
    /// what is there.
    fn strip(headers: &mut HeaderMap) {
        let doomed = |name: &HeaderName| {
            let name = name.as_str();
            matches!(
                name,
                "connection"
                    | "keep-alive"
                    | "proxy-connection"
                    | "proxy-authenticate"
                    | "proxy-authorization"
                    | "te"
                    | "trailer"
                    | "transfer-encoding"
                    | "upgrade"
            ) || name.starts_with("x-forwarded-")
                || is_identity_alias(name.as_bytes())
        };
        if !headers.keys().any(doomed) {
            return;
        }
        let mut names: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
        for value in headers.get_all(header::CONNECTION) {
            let tokens = value.to_str().unwrap_or("").split(',');
            names.extend(tokens.filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok()));
        }
        for name in names {
            headers.remove(&name);
        }
    }
}
