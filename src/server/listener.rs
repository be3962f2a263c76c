//! The client listeners: accept, TLS, HTTP/1.1 and HTTP/2 (hyper-util's auto
//! builder, upgrades enabled), and the `[server]` limits.
//!
//! `max_connections` is a semaphore taken *before* `accept`, so at the limit
//! the listener simply stops accepting (the kernel backlog holds the rest)
//! instead of accepting and dropping. The same semaphore tells the drain when
//! every connection has closed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::idle;
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
                tokio::spawn(async move {
                    serve(stream, peer, proxy, drain, permit).await;
                });
            }
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The hyper connection settings of `[server]`.
fn builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // hyper answers 431 itself when the head outgrows its buffer; the
        // exact `max_header_bytes` check happens on the parsed headers.
        .max_buf_size((config.max_header_bytes + 8192).max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(config.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
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
    let gateway = proxy.gateway.load_full();
    let server = &gateway.config.server;
    let builder = builder(server);
    let (header_timeout, idle_timeout) = (server.header_read_timeout, server.idle_timeout);
    match gateway.tls.clone() {
        None => {
            let conn = ConnInfo::new(peer, false);
            run(stream, conn, &builder, proxy.clone(), drain, idle_timeout).await
        }
        // Boxed: the handshake and the TLS stream hold rustls' connection
        // state inline (~7 KB), and a future is as big as its biggest
        // branch: unboxed, every plaintext connection would carry it too.
        Some(acceptor) => {
            let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
            let proxy = proxy.clone();
            let serve_tls = async move {
                match handshake.await {
                    Ok(Ok(tls)) => {
                        let conn = ConnInfo::new(peer, true);
                        run(tls, conn, &builder, proxy.clone(), drain, idle_timeout).await
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

async fn run<S>(
    stream: S,
    conn: ConnInfo,
    builder: &auto::Builder<TokioExecutor>,
    proxy: Arc<Proxy>,
    mut drain: watch::Receiver<bool>,
    idle_timeout: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (stream, activity) = idle::Tracked::new(stream);
    let peer = conn.peer;
    let conn = Arc::new(conn);
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(proxy.handle(&conn, req).await) }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // The drain and idle watchers sit in a `FuturesUnordered` so that they
    // are polled only when their own wakers fire: a plain `select!` would
    // poll both (a watch notification and a timer) on each of the several
    // wake-ups of every request.
    let mut watchers = FuturesUnordered::new();
    let draining = *drain.borrow();
    if draining {
        // A drain that started before this connection was accepted.
        connection.as_mut().graceful_shutdown();
    } else {
        watchers.push(async move {
            tokio::select! {
                _ = drain.changed() => {}
                _ = idle::expired(&activity, idle_timeout) => {}
            }
        });
    }
    loop {
        tokio::select! {
            // In order, connection first: no random draw on every wake-up.
            biased;
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            // Ready(None) once the watcher has fired: the branch disables.
            Some(()) = watchers.next() => connection.as_mut().graceful_shutdown(),
        }
    }
}
