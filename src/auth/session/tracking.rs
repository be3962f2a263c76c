//! Redis client tracking (RESP3) for the session cache: what keeps a cached
//! session exact (guarantee 5) in every topology.
//!
//! The server remembers which keys a *connection* read and pushes an
//! invalidation on that connection when one changes. So a cached session is
//! only exact if the connection it was read on had tracking on, and every
//! connection the store reads through is a new, untracked one after a
//! reconnect, a failover or a cluster topology change. The rule here: any
//! connection event empties the cache and stops it caching; a supervisor
//! then turns tracking on, one connection at a time, on the primary (or on
//! every primary of a cluster), and only when all of them said yes, with no
//! connection event in between, does the cache start caching again.
//! A tracking connection that is not there means "do not cache", never 503:
//! lookups go to the store meanwhile.
//!
//! Tracking is enabled per node rather than with fred's `start_tracking`,
//! which in cluster mode sends one command to all nodes: several of those
//! in flight at once (one per node that reconnected) were seen to leave a
//! connection waiting for a reply, reset as unresponsive, which fired
//! another reconnect and so on, every session lookup 503 meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fred::prelude::*;
use fred::types::client::Toggle;
use tokio::sync::Notify;

use super::cache::TrackedCache;

/// A failed attempt to turn tracking on is retried after this, doubling up
/// to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(1);

pub struct Tracking {
    cache: Arc<TrackedCache>,
    /// Bumped on every connection event: an attempt that raced one does not
    /// switch the cache on.
    generation: AtomicU64,
    wake: Notify,
}

impl Tracking {
    /// Installs the invalidation and connection-event listeners. They hold
    /// no client, so dropping the store's client ends them.
    pub fn wire(client: &Client, cache: Arc<TrackedCache>) -> Arc<Tracking> {
        let tracking = Arc::new(Tracking {
            cache,
            generation: AtomicU64::new(0),
            wake: Notify::new(),
        });
        let on_invalidation = tracking.cache.clone();
        client.on_invalidation(move |invalidation| {
            // No keys: FLUSHALL/FLUSHDB, or the server dropped its tracking
            // state. Either empties the cache; neither says anything about
            // whether tracking is on, which only the supervisor decides.
            if invalidation.keys.is_empty() {
                on_invalidation.forget_all();
            }
            for key in &invalidation.keys {
                match key.as_str() {
                    Some(key) => on_invalidation.invalidate(key),
                    None => on_invalidation.forget_all(),
                }
            }
            Ok(())
        });
        client.on_error(tracking.on_connection_event());
        client.on_unresponsive(tracking.on_connection_event());
        client.on_reconnect(tracking.on_connection_event());
        // A cluster learns of a new primary (failover, a node added) by
        // re-reading the slots; that new connection is untracked.
        client.on_cluster_change(tracking.on_connection_event());
        tracking
    }

    /// A listener for any of fred's connection events, whatever it carries.
    fn on_connection_event<T>(
        self: &Arc<Self>,
    ) -> impl Fn(T) -> std::future::Ready<Result<(), Error>> + Send + 'static {
        let tracking = self.clone();
        move |_| {
            tracking.connection_changed();
            std::future::ready(Ok(()))
        }
    }

    /// Some connection dropped, was replaced or was added: nothing cached
    /// can be trusted, and nothing is cached until tracking is back on
    /// everywhere.
    fn connection_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.clear(false);
        self.wake.notify_one();
    }

    /// Keeps tracking on while `client()` returns the store's client; ends
    /// within [`MAX_RETRY`] once the store is gone.
    pub fn spawn_supervisor(
        self: &Arc<Self>,
        client: impl Fn() -> Option<Client> + Send + 'static,
    ) {
        let tracking = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut warned = false;
            let mut retry = FIRST_RETRY;
            loop {
                let Some(this) = tracking.upgrade() else {
                    return;
                };
                let Some(client) = client() else { return };
                if !this.cache.is_active() {
                    let generation = this.generation.load(Ordering::Acquire);
                    match enable(&client).await {
                        // A connection event during the attempt may have
                        // left a connection untracked: try again first.
                        Ok(()) if this.generation.load(Ordering::Acquire) == generation => {
                            this.cache.clear(true);
                            // An event between the check above and this
                            // switch-on bumped the generation and switched
                            // the cache off before we switched it back on:
                            // off again, and the loop re-enables tracking.
                            if this.generation.load(Ordering::Acquire) != generation {
                                this.cache.clear(false);
                                continue;
                            }
                            warned = false;
                            retry = FIRST_RETRY;
                            tracing::debug!("Redis client tracking on; session cache active");
                        }
                        Ok(()) => {}
                        // Before the first connection there is nothing to
                        // warn about.
                        Err(error) if !warned && client.is_connected() => {
                            warned = true;
                            tracing::warn!(
                                error = ?error.kind(),
                                "cannot enable Redis client tracking; sessions are not cached until it is on"
                            );
                        }
                        Err(_) => {}
                    }
                }
                drop(client);
                // The next connection event; while tracking is off, a retry
                // after a growing pause too; and now and then, to notice a
                // store that is gone.
                let pause = if this.cache.is_active() {
                    MAX_RETRY
                } else {
                    let pause = retry;
                    retry = (retry * 2).min(MAX_RETRY);
                    pause
                };
                let _ = tokio::time::timeout(pause, this.wake.notified()).await;
            }
        });
    }
}

/// `CLIENT TRACKING ON` on the connection to every primary the client reads
/// from: the one primary, or each primary of the cluster's slot map.
async fn enable(client: &Client) -> Result<(), Error> {
    if !client.is_clustered() {
        return client
            .client_tracking::<(), _, _>(Toggle::On, None, (), false, false, false, false)
            .await;
    }
    let primaries = client
        .cached_cluster_state()
        .map(|state| state.unique_primary_nodes())
        .unwrap_or_default();
    if primaries.is_empty() {
        return Err(Error::new(
            fred::error::ErrorKind::Cluster,
            "no cluster slot map yet",
        ));
    }
    for primary in primaries {
        client
            .with_cluster_node(primary)
            .client_tracking::<(), _, _>(Toggle::On, None, (), false, false, false, false)
            .await?;
    }
    Ok(())
}
