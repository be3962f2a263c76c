//! Revocations in Redis, kept current on every instance (SPEC §9,
//! guarantee 11).
//!
//! Client tracking in BCAST mode on the `revoked:` prefix (RESP3): the
//! server pushes the name of every `revoked:` key that anyone changes —
//! another instance, the CLI, `redis-cli` — to every connection that asked,
//! without the connection having read the key first (the default mode only
//! reports keys the connection read, so a key written by `redis-cli` and
//! never read would go unseen). Each pushed key is read again and the local
//! list updated; keys that expire are pushed too. In a cluster, every
//! primary is asked, since each reports only its own keys.
//!
//! A new connection is untracked and may have missed writes, so after any
//! connection event tracking is turned on again and the whole set reloaded
//! (SCAN), in that order: a write after the switch-on is pushed, one before
//! it is in the reload. Until both succeed the last known set is kept and
//! reloads are tried every half `propagation`, so a store where tracking
//! cannot be turned on still meets the bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fred::prelude::*;
use fred::types::client::Toggle;
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use super::list::{self, Entry, PREFIX, RevokedList};
use super::unix_now;
use crate::auth::session::{close_replaced, keep_connected, redis_client};
use crate::config::StoreConfig;

/// Keys read per round trip while loading the whole set.
const LOAD_BATCH: usize = 256;

pub struct RedisRevocations {
    client: Client,
    list: Arc<RevokedList>,
    errors: Counter,
    /// Bumped on every connection event: tracking and the set must be
    /// set up again.
    generation: AtomicU64,
    wake: Notify,
}

impl RedisRevocations {
    /// Builds the client and starts connecting, watching and loading in
    /// the background: the proxy starts while Redis is down, and refuses
    /// JWTs (503) until the set is first loaded.
    pub fn start(
        store: &StoreConfig,
        list: Arc<RevokedList>,
        propagation: Duration,
        errors: Counter,
    ) -> anyhow::Result<Arc<RedisRevocations>> {
        let (client, _) = redis_client(store, true, false)?;
        let this = Arc::new(RedisRevocations {
            client,
            list,
            errors,
            generation: AtomicU64::new(0),
            wake: Notify::new(),
        });
        for_each_connection_event(&this);
        let weak = Arc::downgrade(&this);
        keep_connected(move || weak.upgrade().map(|s| s.client.clone()));
        spawn_watcher(&this, propagation);
        Ok(this)
    }

    /// For writing: what is written is pushed back to this instance too.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn connection_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Tracking on, then the whole set read.
    async fn resync(&self) -> Result<(), Error> {
        enable_tracking(&self.client).await?;
        self.reload().await
    }

    async fn reload(&self) -> Result<(), Error> {
        let pattern = format!("{PREFIX}*");
        let keys: Vec<Key> = if self.client.is_clustered() {
            collect(self.client.scan_cluster_buffered(pattern, Some(1000), None)).await?
        } else {
            collect(self.client.scan_buffered(pattern, Some(1000), None)).await?
        };
        let now = unix_now();
        let mut entries = Vec::with_capacity(keys.len());
        for batch in keys.chunks(LOAD_BATCH) {
            let reads = batch.iter().map(|key| self.read(key.clone(), now));
            for read in futures_util::future::join_all(reads).await {
                entries.extend(read?);
            }
        }
        self.list.replace(entries, now);
        Ok(())
    }

    /// The entry at `key`; `None` when the key is gone or not a revocation.
    async fn read(&self, key: Key, now: u64) -> Result<Option<Entry>, Error> {
        let Some(name) = key.as_str().map(str::to_owned) else {
            return Ok(None);
        };
        let value: Option<String> = match self.client.get(key).await {
            Ok(value) => value,
            // Another type under a `revoked:` name: not a revocation.
            Err(error) if *error.kind() == ErrorKind::InvalidArgument => None,
            Err(error) => return Err(error),
        };
        Ok(value.and_then(|v| list::parse(&name, &v, now)))
    }

    /// A pushed key: read it again and mirror what the store holds.
    async fn refresh(&self, key: Key) -> Result<(), Error> {
        let Some(name) = key.as_str().map(str::to_owned) else {
            return Ok(());
        };
        let now = unix_now();
        match self.read(key, now).await? {
            Some(entry) => self.list.insert(entry, now),
            None => self.list.remove_key(&name),
        }
        Ok(())
    }
}

/// Closes the connections of a set a reload replaced (fred's connection
/// task would keep them open for good).
impl Drop for RedisRevocations {
    fn drop(&mut self) {
        close_replaced(&self.client);
    }
}

async fn collect(
    mut keys: impl futures_util::Stream<Item = Result<Key, Error>> + Unpin,
) -> Result<Vec<Key>, Error> {
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        out.push(key?);
    }
    Ok(out)
}

/// `CLIENT TRACKING ON BCAST PREFIX revoked:` on the primary, or on every
/// primary of the cluster's slot map.
async fn enable_tracking(client: &Client) -> Result<(), Error> {
    if !client.is_clustered() {
        return bcast(client).await;
    }
    let primaries = client
        .cached_cluster_state()
        .map(|state| state.unique_primary_nodes())
        .unwrap_or_default();
    if primaries.is_empty() {
        return Err(Error::new(ErrorKind::Cluster, "no cluster slot map yet"));
    }
    for primary in primaries {
        bcast(&client.with_cluster_node(primary)).await?;
    }
    Ok(())
}

/// Off, then on: a connection that still tracks (the event that asked for
/// this was another connection's) refuses a second `PREFIX revoked:` as
/// overlapping its own, and the reload that follows covers the gap.
async fn bcast<C: ClientInterface + Sync>(client: &C) -> Result<(), Error> {
    client
        .client_tracking::<(), _, _>(Toggle::Off, None, (), false, false, false, false)
        .await?;
    client
        .client_tracking::<(), _, _>(Toggle::On, None, PREFIX, true, false, false, false)
        .await
}

/// Any connection dropped, replaced or added: its tracking is off.
fn for_each_connection_event(this: &Arc<RedisRevocations>) {
    fn listener<T>(
        this: &Arc<RedisRevocations>,
    ) -> impl Fn(T) -> std::future::Ready<Result<(), Error>> + Send + 'static {
        let weak = Arc::downgrade(this);
        move |_| {
            if let Some(this) = weak.upgrade() {
                this.connection_changed();
            }
            std::future::ready(Ok(()))
        }
    }
    this.client.on_error(listener(this));
    this.client.on_unresponsive(listener(this));
    this.client.on_reconnect(listener(this));
    this.client.on_cluster_change(listener(this));
}

/// One task owns the list's updates, so a pushed key read during a reload
/// is applied after it, never overwritten by it. Ends once the store is
/// dropped.
fn spawn_watcher(this: &Arc<RedisRevocations>, propagation: Duration) {
    let weak = Arc::downgrade(this);
    let mut pushes = this.client.invalidation_rx();
    let retry = (propagation / 2).max(Duration::from_millis(50));
    let prune_every = Duration::from_secs(30).max(propagation);
    tokio::spawn(async move {
        // The generation whose connections are tracked and whose set is
        // loaded; `None` until both succeed.
        let mut synced: Option<u64> = None;
        let mut warned = false;
        loop {
            let Some(this) = weak.upgrade() else { return };
            let generation = this.generation.load(Ordering::Acquire);
            if synced != Some(generation) {
                match this.resync().await {
                    Ok(()) if this.generation.load(Ordering::Acquire) == generation => {
                        if warned {
                            tracing::info!("revocations reloaded from the store");
                        }
                        synced = Some(generation);
                        warned = false;
                    }
                    Ok(()) => continue,
                    Err(error) => {
                        // Before the first connection there is nothing to warn about.
                        if !warned && this.client.is_connected() {
                            tracing::warn!(
                                error = ?error.kind(),
                                "cannot watch revocations; the last known set is kept and reloaded every propagation/2"
                            );
                            warned = true;
                        }
                        // Not tracked, but maybe readable: poll.
                        if this.reload().await.is_err() {
                            this.errors.inc();
                        }
                    }
                }
            }
            let pause = if synced.is_some() { prune_every } else { retry };
            tokio::select! {
                pushed = pushes.recv() => match pushed {
                    Ok(invalidation) => {
                        // No keys: FLUSHALL/FLUSHDB or the server dropped
                        // its tracking state; either way, reload.
                        if invalidation.keys.is_empty() {
                            synced = None;
                        }
                        for key in invalidation.keys {
                            if this.refresh(key).await.is_err() {
                                this.errors.inc();
                                synced = None;
                            }
                        }
                    }
                    // Pushes were lost: only a reload knows what they said.
                    Err(RecvError::Lagged(_)) => synced = None,
                    Err(RecvError::Closed) => return,
                },
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(pause) => this.list.prune(unix_now()),
            }
        }
    });
}
