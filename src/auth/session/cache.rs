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
    /// A login session's last refresh (see `record::Session`).
    pub refreshed: Option<u64>,
    /// The generation of identity rules it was resolved under (a reload
    /// may change them while the cache lives on).
    pub rules: u64,
}

/// Entries are keyed by session id, not by Redis key: a hit then costs no
/// key to build. Invalidations name Redis keys, `key_prefix` + id.
pub struct TrackedCache {
    key_prefix: String,
    entries: moka::sync::Cache<String, Arc<Resolved>>,
    /// Bumped on every invalidation: a lookup that raced one is not cached.
    epoch: AtomicU64,
    /// Tracking is enabled on the current connection(s).
    active: AtomicBool,
}

impl TrackedCache {
    pub fn new(ttl: Duration, key_prefix: &str) -> Arc<Self> {
        Arc::new(TrackedCache {
            key_prefix: key_prefix.to_owned(),
            entries: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            epoch: AtomicU64::new(0),
            active: AtomicBool::new(false),
        })
    }

    pub fn get(&self, id: &str) -> Option<Arc<Resolved>> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        self.entries.get(id)
    }

    /// Tracking is known to be on everywhere the store reads.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Taken before asking the store; see [`TrackedCache::insert`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches a lookup made at `epoch`, unless an invalidation or a
    /// reconnect happened since (the key may have changed in between).
    pub fn insert(&self, id: String, value: Arc<Resolved>, epoch: u64) {
        if self.active.load(Ordering::Acquire) && self.epoch() == epoch {
            self.entries.insert(id, value);
            // An invalidation that landed during the insert wins.
            if self.epoch() != epoch {
                self.entries.invalidate_all();
            }
        }
    }

    /// `key` is a Redis key. Any key bumps the epoch; only ours can be
    /// cached.
    pub fn invalidate(&self, key: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(id) = key.strip_prefix(self.key_prefix.as_str()) {
            self.entries.invalidate(id);
        }
    }

    /// Every entry goes, and tracking stays as it is: the server flushed
    /// (FLUSHALL, or it dropped its tracking state), or a reload changed how
    /// a session becomes an identity. The epoch moves too, so a lookup still
    /// in flight is not cached after this.
    pub fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use std::collections::BTreeMap;

    fn resolved(sub: &str) -> Arc<Resolved> {
        Arc::new(Resolved {
            identity: Arc::new(Identity::new(sub, BTreeMap::new())),
            expires: None,
            refreshed: None,
            rules: 0,
        })
    }

    #[test]
    fn an_invalidated_redis_key_evicts_the_session_id_it_names() {
        let cache = TrackedCache::new(Duration::from_secs(60), "sessions:");
        cache.clear(true);
        for id in ["a1", "b2"] {
            cache.insert(id.into(), resolved(id), cache.epoch());
        }
        assert!(cache.get("a1").is_some() && cache.get("b2").is_some());

        // Keys outside the prefix name no session of ours.
        cache.invalidate("other:a1");
        cache.invalidate("a1");
        assert!(cache.get("a1").is_some());

        cache.invalidate("sessions:a1");
        assert!(cache.get("a1").is_none(), "evicted at once");
        assert!(cache.get("b2").is_some(), "only that session");
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_cached() {
        let cache = TrackedCache::new(Duration::from_secs(60), "sessions:");
        cache.clear(true);
        let epoch = cache.epoch();
        cache.invalidate("sessions:a1");
        cache.insert("a1".into(), resolved("a1"), epoch);
        assert!(cache.get("a1").is_none());
    }

    #[test]
    fn forgetting_everything_never_switches_tracking_on() {
        let cache = TrackedCache::new(Duration::from_secs(60), "");
        cache.clear(true);
        cache.insert("a1".into(), resolved("a1"), cache.epoch());
        let before = cache.epoch();
        cache.forget_all();
        assert!(cache.get("a1").is_none(), "emptied");
        assert!(cache.is_active(), "tracking still on");
        cache.insert("a2".into(), resolved("a2"), before);
        assert!(
            cache.get("a2").is_none(),
            "a lookup from before is not cached"
        );

        // A flush while tracking is off (a connection just changed) must
        // not turn caching back on before tracking is.
        cache.clear(false);
        cache.forget_all();
        assert!(!cache.is_active());
        cache.insert("a3".into(), resolved("a3"), cache.epoch());
        assert!(cache.get("a3").is_none());
    }

    #[test]
    fn nothing_is_served_while_tracking_is_off() {
        let cache = TrackedCache::new(Duration::from_secs(60), "");
        cache.clear(true);
        cache.insert("a1".into(), resolved("a1"), cache.epoch());
        cache.clear(false);
        assert!(cache.get("a1").is_none());
        cache.insert("a1".into(), resolved("a1"), cache.epoch());
        cache.clear(true);
        assert!(cache.get("a1").is_none(), "emptied on every reconnect");
    }
}
