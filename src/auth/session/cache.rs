//! The local session cache (`cache_ttl > 0`) and what keeps it honest:
//! Redis client tracking (RESP3) invalidates an entry the moment its key
//! changes or is deleted, on every instance (guarantee 5). An entry is only
//! ever served while tracking is known to be on and the connection up;
//! whenever the connection drops, the cache is emptied.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::identity::Identity;

/// A session as the proxy uses it: the identity, and when the app said
/// the session ends (connect-redis `cookie.expires`), re-checked on use.
#[derive(Debug)]
pub struct Resolved {
    pub identity: Arc<Identity>,
    pub expires: Option<SystemTime>,
}

pub struct TrackedCache {
    entries: moka::sync::Cache<String, Arc<Resolved>>,
    /// Bumped on every invalidation: a lookup that raced one is not cached.
    epoch: AtomicU64,
    /// Tracking is enabled on the current connection(s).
    active: AtomicBool,
}

impl TrackedCache {
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(TrackedCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            epoch: AtomicU64::new(0),
            active: AtomicBool::new(false),
        })
    }

    pub fn get(&self, key: &str) -> Option<Arc<Resolved>> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        self.entries.get(key)
    }

    /// Taken before asking the store; see [`TrackedCache::insert`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches a lookup made at `epoch`, unless an invalidation or a
    /// reconnect happened since (the key may have changed in between).
    pub fn insert(&self, key: String, value: Arc<Resolved>, epoch: u64) {
        if self.active.load(Ordering::Acquire) && self.epoch() == epoch {
            self.entries.insert(key, value);
            // An invalidation that landed during the insert wins.
            if self.epoch() != epoch {
                self.entries.invalidate_all();
            }
        }
    }

    pub fn invalidate(&self, key: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(key);
    }

    /// The connection dropped or tracking is being re-enabled: nothing
    /// cached can be trusted any more.
    pub fn clear(&self, tracking_active: bool) {
        self.active.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
        self.active.store(tracking_active, Ordering::Release);
    }
}
