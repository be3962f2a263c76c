//! Client connections on several threads, each with a runtime of its own.
//!
//! tokio's multi-threaded runtime shares one scheduler between its
//! threads: a connection's task may be stolen by another thread, and a
//! wake-up may cross threads. Issue 16 measured what that costs a proxy on
//! two cores (about a third more CPU per request than one pinned
//! single-threaded runtime). nginx, HAProxy and Envoy share nothing
//! between workers instead, and so does [`Workers::PerThread`]: each
//! thread runs a single-threaded runtime that accepts from the address's
//! one listening socket (each worker registers its own handle to it), and
//! the connections it accepts stay on it, with their upstream connections
//! (see [`crate::upstream::affinity`]). One socket, not one per worker with
//! `SO_REUSEPORT`: the kernel would then pick the worker by hash, and a
//! worker holding the last `max_connections` permit could wait on an empty
//! socket while a client waits on another worker's; and a second process
//! could bind the same port. The rest of the process — the admin listener,
//! signals, JWKS refreshes, the store clients — runs on the runtime
//! [`super::start`] was called on.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{listener, timer_anchor};
use crate::proxy::Proxy;

/// How client connections are spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// On the runtime [`super::start`] runs on: one thread, or tokio's
    /// work-stealing pool.
    Shared,
    /// This many threads, each with its own single-threaded runtime.
    PerThread(usize),
}

/// `addr`'s listening socket, and a handle to it for each of `workers`.
pub async fn bind(addr: SocketAddr, workers: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let listener = TcpListener::bind(addr).await?.into_std()?;
    let mut handles = Vec::with_capacity(workers);
    for _ in 1..workers {
        handles.push(listener.try_clone()?);
    }
    handles.push(listener);
    Ok(handles)
}

/// The worker threads of a started proxy.
pub struct Threads {
    handles: Vec<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

/// What every worker serves with.
pub struct Shared {
    pub proxy: Arc<Proxy>,
    pub permits: Arc<Semaphore>,
    pub drain: watch::Receiver<bool>,
}

/// Starts one thread per entry of `listeners` (that worker's socket for
/// each address). Each accepts until the drain, then keeps serving the
/// connections it holds until [`Threads::stop`].
pub fn spawn(
    listeners: Vec<Vec<std::net::TcpListener>>,
    shared: &Shared,
) -> anyhow::Result<Threads> {
    let (stop, stopped) = watch::channel(false);
    let mut handles = Vec::with_capacity(listeners.len());
    for (index, sockets) in listeners.into_iter().enumerate() {
        let proxy = shared.proxy.clone();
        let permits = shared.permits.clone();
        let drain = shared.drain.clone();
        let mut stopped = stopped.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a worker's runtime")?;
        let handle = std::thread::Builder::new()
            .name(format!("wristband-worker-{index}"))
            .spawn(move || {
                crate::upstream::affinity::set(index);
                runtime.block_on(async move {
                    let mut accepting = JoinSet::new();
                    for socket in sockets {
                        match TcpListener::from_std(socket) {
                            Ok(socket) => {
                                accepting.spawn(listener::accept_loop(
                                    socket,
                                    proxy.clone(),
                                    permits.clone(),
                                    drain.clone(),
                                ));
                            }
                            Err(error) => {
                                tracing::error!(worker = index, %error, "cannot listen on this worker");
                            }
                        }
                    }
                    accepting.spawn(timer_anchor::run(drain));
                    while accepting.join_next().await.is_some() {}
                    // The connections accepted here are tasks of this
                    // runtime: it runs until the drain is over.
                    let _ = stopped.wait_for(|stop| *stop).await;
                });
                // Not held up by a blocking task (a DNS lookup, say) once
                // the grace is over.
                runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            })
            .context("cannot start a worker thread")?;
        handles.push(handle);
    }
    Ok(Threads { handles, stop })
}

impl Threads {
    /// Ends every worker's runtime (what is still open is cut) and waits
    /// for the threads.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let handles = std::mem::take(&mut self.handles);
        let _ = tokio::task::spawn_blocking(move || {
            for handle in handles {
                let _ = handle.join();
            }
        })
        .await;
    }
}

impl Drop for Threads {
    /// A proxy dropped without a shutdown leaves no thread behind.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
