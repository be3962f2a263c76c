//! Starting, reloading and draining the proxy.
//!
//! [`start`] binds every listener first (so a bad address fails before any
//! traffic is taken) and returns a [`Running`] handle with the bound
//! addresses — what the binary and the integration tests both use. [`run`]
//! adds the signals of SPEC §2: SIGHUP reloads, SIGTERM/SIGINT drain.

pub mod admin;
pub mod idle;
pub mod listener;
mod revoke;
mod timer_anchor;
mod woken;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::gateway::Gateway;
use crate::proxy::Proxy;
use crate::telemetry::Metrics;
pub use workers::Workers;

/// A started proxy.
pub struct Running {
    /// The client listeners' bound addresses, in `server.listen` order.
    pub addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    drain: watch::Sender<bool>,
    permits: Arc<Semaphore>,
    max_connections: usize,
    tasks: JoinSet<()>,
    /// With [`Workers::PerThread`].
    threads: Option<workers::Threads>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Requests still in flight when `shutdown_grace` ran out.
    pub cut_requests: i64,
    pub open_connections: usize,
}

/// Binds the listeners and starts serving `config` on this runtime.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_with(config, Workers::Shared).await
}

/// Binds the listeners and starts serving `config`, client connections
/// spread as `workers` says.
pub async fn start_with(config: Config, workers: Workers) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::new());
    let max_connections = config.server.max_connections;
    let mut listeners = Vec::new();
    // Per worker, its socket for each address.
    let mut per_worker: Vec<Vec<std::net::TcpListener>> = Vec::new();
    let mut addrs = Vec::new();
    for addr in &config.server.listen {
        match workers {
            Workers::Shared => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("server.listen: cannot bind {addr}"))?;
                addrs.push(listener.local_addr()?);
                listeners.push(listener);
            }
            Workers::PerThread(n) => {
                let sockets = workers::bind(*addr, n)
                    .await
                    .with_context(|| format!("server.listen: cannot bind {addr}"))?;
                per_worker.resize_with(sockets.len(), Vec::new);
                for (worker, socket) in sockets.into_iter().enumerate() {
                    if worker == 0 {
                        addrs.push(socket.local_addr()?);
                    }
                    per_worker[worker].push(socket);
                }
            }
        }
    }
    let admin = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("admin.listen: cannot bind {}", config.admin.listen))?;
    let gateway = Gateway::new(config, &metrics)?;
    let proxy = Proxy::new(gateway, metrics);

    let (drain, drain_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(max_connections));
    let readiness = Arc::new(admin::Readiness::default());
    let mut tasks = JoinSet::new();
    for addr in &addrs {
        tracing::info!(%addr, "listening");
    }
    let threads = match workers {
        Workers::Shared => None,
        Workers::PerThread(n) => {
            tracing::info!(threads = n, "client connections on one runtime per thread");
            let shared = workers::Shared {
                proxy: proxy.clone(),
                permits: permits.clone(),
                drain: drain_rx.clone(),
            };
            Some(workers::spawn(per_worker, &shared)?)
        }
    };
    for listener in listeners {
        tasks.spawn(listener::accept_loop(
            listener,
            proxy.clone(),
            permits.clone(),
            drain_rx.clone(),
        ));
    }
    let admin_addr = admin.local_addr()?;
    tracing::info!(addr = %admin_addr, "admin listening");
    tasks.spawn(timer_anchor::run(drain_rx.clone()));
    tasks.spawn(admin::serve(
        admin,
        proxy.clone(),
        readiness.clone(),
        drain_rx,
    ));
    readiness.listeners_bound.store(true, Ordering::Relaxed);
    Ok(Running {
        addrs,
        admin_addr,
        proxy,
        drain,
        permits,
        max_connections,
        tasks,
        threads,
    })
}

impl Running {
    /// Swaps in a new config for new requests, keeping the state of every
    /// part it leaves unchanged (see [`crate::reuse`]). Listener addresses
    /// and `max_connections` are fixed at start; a change to them is logged.
    pub fn reload(&self, config: Config) -> anyhow::Result<()> {
        let old = self.proxy.gateway.load_full();
        if old.config.server.listen != config.server.listen
            || old.config.admin.listen != config.admin.listen
            || old.config.server.max_connections != config.server.max_connections
        {
            tracing::warn!(
                "server.listen, admin.listen and server.max_connections apply only at start; restart to change them"
            );
        }
        let source = config.source.clone();
        let (gateway, reuse) = Gateway::reload(&old, config, &self.proxy.metrics)?;
        self.proxy.gateway.store(gateway);
        tracing::info!(
            config = %source.display(),
            kept = %reuse.kept_list(),
            rebuilt = %reuse.rebuilt_list(),
            "config reloaded"
        );
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish for up to
    /// `server.shutdown_grace`, then returns what had to be cut.
    pub async fn shutdown(mut self) -> DrainReport {
        let grace = self.proxy.gateway.load().config.server.shutdown_grace;
        let started = Instant::now();
        let _ = self.drain.send(true);
        // Listener tasks end as soon as they see the drain.
        while self.tasks.join_next().await.is_some() {}
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(grace, self.permits.acquire_many(all)).await;
        let report = DrainReport {
            cut_requests: if drained.is_ok() {
                0
            } else {
                self.proxy.metrics.in_flight.get()
            },
            open_connections: if drained.is_ok() {
                0
            } else {
                self.max_connections - self.permits.available_permits()
            },
        };
        // What is still open on a worker's runtime is cut here.
        if let Some(threads) = self.threads.take() {
            threads.stop().await;
        }
        if report.cut_requests > 0 || report.open_connections > 0 {
            tracing::warn!(
                cut_requests = report.cut_requests,
                open_connections = report.open_connections,
                "shutdown grace ran out"
            );
        } else {
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "drained");
        }
        report
    }
}

/// Runs until SIGTERM/SIGINT, reloading on SIGHUP.
pub async fn run(config: Config) -> anyhow::Result<()> {
    run_with(config, Workers::Shared).await
}

/// [`run`], client connections spread as `workers` says.
pub async fn run_with(config: Config, workers: Workers) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let source = config.source.clone();
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let running = start_with(config, workers).await?;
    loop {
        tokio::select! {
            _ = hangup.recv() => match Config::load(&source) {
                Ok(config) => {
                    if let Err(error) = running.reload(config) {
                        tracing::error!(error = %format!("{error:#}"), "reload failed; the previous config keeps serving");
                    }
                }
                Err(errors) => {
                    for error in &errors.0 {
                        tracing::error!(%error, "invalid config");
                    }
                    tracing::error!("reload refused; the previous config keeps serving");
                }
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("draining");
    running.shutdown().await;
    Ok(())
}
