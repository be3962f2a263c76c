//! The in-memory store: the embedded default for a single instance (and
//! the demo). Nothing is shared between processes, so it cannot replace
//! Redis behind a load balancer.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

// The runtime's clock, so a test can jump past a TTL instead of sleeping.
use tokio::time::Instant;

use super::record::Stored;

struct Entry {
    stored: Stored,
    expires: Option<Instant>,
}

pub struct MemoryStore {
    entries: moka::sync::Cache<String, Arc<Entry>>,
}

impl MemoryStore {
    /// The process's one memory store: it outlives config reloads, as a
    /// Redis server would.
    pub fn shared() -> Arc<MemoryStore> {
        static STORE: OnceLock<Arc<MemoryStore>> = OnceLock::new();
        STORE
            .get_or_init(|| {
                Arc::new(MemoryStore {
                    entries: moka::sync::Cache::builder().max_capacity(1_000_000).build(),
                })
            })
            .clone()
    }

    /// Stores a session under `key` (prefix included), for `ttl` if given.
    pub fn insert(&self, key: impl Into<String>, stored: Stored, ttl: Option<Duration>) {
        let expires = ttl.map(|t| Instant::now() + t);
        self.entries
            .insert(key.into(), Arc::new(Entry { stored, expires }));
    }

    pub fn remove(&self, key: &str) {
        self.entries.invalidate(key);
    }

    pub fn get(&self, key: &str) -> Option<Stored> {
        let entry = self.entries.get(key)?;
        if entry.expires.is_some_and(|at| at <= Instant::now()) {
            self.entries.invalidate(key);
            return None;
        }
        Some(entry.stored.clone())
    }

    /// Seconds left, -1 without expiry (Redis `TTL` semantics).
    pub fn ttl(&self, key: &str) -> Option<i64> {
        let entry = self.entries.get(key)?;
        Some(entry.expires.map_or(-1, |at| {
            i64::try_from(at.saturating_duration_since(Instant::now()).as_secs())
                .unwrap_or(i64::MAX)
        }))
    }

    pub fn expire(&self, key: &str, ttl: Duration) {
        if let Some(entry) = self.entries.get(key) {
            self.insert(key, entry.stored.clone(), Some(ttl));
        }
    }
}
