//! The client listeners: accept, TLS, HTTP/1.1 (upgrades enabled) and
//! HTTP/2 (over TLS, chosen by ALPN), and the `[server]` limits.
//!
//! `max_connections` is a semaphore taken *before* `accept`, so at the limit
//! the listener simply stops accepting (the kernel backlog holds the rest)
//! instead of accepting and dropping. The same semaphore tells the drain when
//! every connection has closed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::idle;
use super::woken::OnlyWhenWoken;
use crate::boxed::boxed;
use crate::client_body::ClientBody;
use crate::config::ServerConfig;
use crate::proxy::{ConnInfo, Proxy};

/// Accepts until `drain` flips, then drops the listener.
pub async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    permits: Arc<Semaphore>,
    mut drain: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = drain.changed() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = drain.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let proxy = proxy.clone();
                let drain = drain.clone();
                tokio::spawn(serve(stream, peer, proxy, drain, permit));
            }
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The `[server]` settings a connection is served with, copied out of the
/// config at accept: holding the config would keep a reloaded-away gateway
/// (its caches, its store connections) alive as long as the connection.
#[derive(Clone, Copy)]
struct Limits {
    header_read_timeout: Duration,
    max_header_bytes: usize,
    idle_timeout: Duration,
}

impl Limits {
    fn new(config: &ServerConfig) -> Self {
        Limits {
            header_read_timeout: config.header_read_timeout,
            max_header_bytes: config.max_header_bytes,
            idle_timeout: config.idle_timeout,
        }
    }

    // The builders are built per connection and dropped once it is made
    // (the connection copies what it needs): never kept for its life.
    fn http1(&self) -> http1::Builder {
        let mut http1 = http1::Builder::new();
        // No hyper header timer: `idle::expired` bounds the head (hyper's
        // ran from the end of the previous response, so it closed idle
        // keep-alive connections after `header_read_timeout`).
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            // hyper answers 431 itself when the head outgrows its buffer;
            // the exact `max_header_bytes` check happens on the parsed
            // headers.
            .max_buf_size((self.max_header_bytes + 8192).max(8192));
        http1
    }

    fn http2(&self) -> http2::Builder<TokioExecutor> {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(self.idle_timeout / 2))
            .keep_alive_timeout(Duration::from_secs(20));
        http2
    }
}

/// Which protocol a connection speaks: HTTP/2 only when TLS's ALPN says so
/// (SPEC §1), so nothing is read ahead to sniff the version.
///
/// hyper-util's auto builder sniffs: it reads the first bytes itself and
/// hands them back to hyper, whose read buffer then starts with a partial
/// head and doubles to 16 KiB on every connection for its whole life.
#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

async fn serve(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    proxy: Arc<Proxy>,
    drain: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    proxy.metrics.connections.inc();
    let (limits, tls) = {
        let gateway = proxy.gateway.load();
        (Limits::new(&gateway.config.server), gateway.tls.clone())
    };
    let serving = Serving {
        limits,
        proxy: proxy.clone(),
        drain,
    };
    match tls {
        None => run(stream, ConnInfo::new(peer, false), Protocol::Http1, serving).await,
        // Boxed: the handshake and the TLS stream hold rustls' connection
        // state inline (~7 KB), and a future is as big as its biggest
        // branch: unboxed, every plaintext connection would carry it too.
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
            let serve_tls = async move {
                match handshake.await {
                    Ok(Ok(tls)) => {
                        let protocol = match tls.get_ref().1.alpn_protocol() {
                            Some(b"h2") => Protocol::Http2,
                            _ => Protocol::Http1,
                        };
                        run(tls, ConnInfo::new(peer, true), protocol, serving).await
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            };
            Box::pin(serve_tls).await
        }
    }
    proxy.metrics.connections.dec();
}

/// What a connection is served with, besides its stream.
struct Serving {
    limits: Limits,
    proxy: Arc<Proxy>,
    drain: watch::Receiver<bool>,
}

async fn run<S>(stream: S, conn: ConnInfo, protocol: Protocol, serving: Serving)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Serving {
        limits,
        proxy,
        drain,
    } = serving;
    let clocks = idle::Clocks::new();
    let stream = idle::Tracked::new(stream, clocks.clone());
    let peer = conn.peer;
    let conn = Arc::new(conn);
    let service_clocks = clocks.clone();
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let conn = conn.clone();
        let clocks = service_clocks.clone();
        // Boxed, once per request: hyper keeps each connection's service
        // future allocated for the connection's whole life, so what sits
        // inline here (the whole request pipeline) would be paid per idle
        // keep-alive connection. The box lives only while the request does.
        boxed(|| async move {
            let with_body = !http_body::Body::is_end_stream(hyper::Request::body(&req));
            clocks.request_started(with_body);
            let watcher = with_body.then(|| clocks.clone() as Arc<dyn crate::client_body::Ended>);
            let linger = req.version() < hyper::Version::HTTP_2
                && !req.headers().contains_key(http::header::EXPECT);
            let req = req.map(|body| ClientBody::new(body, watcher, linger));
            let response = proxy.handle(&conn, req).await;
            Ok::<_, Infallible>(response.map(|body| idle::Finished::new(body, clocks)))
        })
    });
    let io = TokioIo::new(stream);
    // A drain that started before this connection was accepted: no watcher.
    let draining = *drain.borrow();
    let head_bound = match protocol {
        Protocol::Http1 => Some(limits.header_read_timeout),
        // HTTP/2 streams interleave: no head bound.
        Protocol::Http2 => None,
    };
    let watcher = pin!(OnlyWhenWoken::new(expiry(
        drain,
        clocks,
        limits.idle_timeout,
        head_bound
    )));
    let watcher = (!draining).then_some(watcher);
    let result = match protocol {
        Protocol::Http1 => {
            let connection = pin!(limits.http1().serve_connection(io, service).with_upgrades());
            until_drained(connection, watcher).await
        }
        // Boxed: HTTP/2 comes only over TLS, and its connection state would
        // otherwise size every HTTP/1 connection's task.
        Protocol::Http2 => {
            let mut connection = Box::pin(limits.http2().serve_connection(io, service));
            until_drained(connection.as_mut(), watcher).await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Resolves when a connection should end from outside hyper: the drain
/// began, or its clocks ran out (see [`idle::expired`]).
async fn expiry(
    mut drain: watch::Receiver<bool>,
    clocks: Arc<idle::Clocks>,
    idle_timeout: Duration,
    head_bound: Option<Duration>,
) -> idle::Expired {
    tokio::select! {
        _ = drain.changed() => idle::Expired::Idle,
        expired = idle::expired(&clocks, idle_timeout, head_bound) => expired,
    }
}

/// A served connection that can be asked to finish its in-flight requests
/// and close.
trait Served: Future<Output = Result<(), hyper::Error>> {
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, S, B> Served for http1::UpgradeableConnection<I, S>
where
    Self: Future<Output = Result<(), hyper::Error>>,
    S: HttpService<Incoming, ResBody = B>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B, E> Served for http2::Connection<I, S, E>
where
    Self: Future<Output = Result<(), hyper::Error>>,
    S: HttpService<Incoming, ResBody = B>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Drives `connection` to its end. When `watcher` fires, a drain or the
/// connection idling out asks it to shut down gracefully; a head read for
/// too long ends it at once. No `watcher`: the drain began before the
/// connection was accepted, so it shuts down from the start.
///
/// Both are pinned where the caller keeps them: passed by value, each
/// would be stored twice in the connection's task (once as this future's
/// argument, once where it is polled).
fn until_drained<'a, C: Served, W: Future<Output = idle::Expired>>(
    mut connection: Pin<&'a mut C>,
    mut watcher: Option<Pin<&'a mut OnlyWhenWoken<W>>>,
) -> impl Future<Output = Result<(), hyper::Error>> + 'a {
    if watcher.is_none() {
        connection.as_mut().shut_down();
    }
    std::future::poll_fn(move |cx| {
        loop {
            // The connection first: the watcher is polled only when its own
            // waker fired, not on each of the several wake-ups of a request.
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            let Some(fired) = watcher.as_mut() else {
                return Poll::Pending;
            };
            let Poll::Ready(expired) = fired.as_mut().poll(cx) else {
                return Poll::Pending;
            };
            watcher = None;
            match expired {
                // Polled again at once, to act on the shutdown.
                idle::Expired::Idle => connection.as_mut().shut_down(),
                idle::Expired::HeadTimeout => {
                    tracing::debug!("request head not complete within server.header_read_timeout");
                    return Poll::Ready(Ok(()));
                }
            }
        }
    })
}
