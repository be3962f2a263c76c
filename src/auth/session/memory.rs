//! The in-memory store: the embedded default for a single instance (and
//! the demo). Nothing is shared between processes, so it cannot replace
//! Redis behind a load balancer.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
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
    /// What login keeps besides sessions (states, locks, per-user indexes),
    /// under one lock: a take or a lock must be atomic, as in Redis.
    others: Mutex<HashMap<String, (Other, Option<Instant>)>>,
}

/// A value of [`MemoryStore::others`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Other {
    Text(String),
    Set(BTreeSet<String>),
}

/// Past this many entries, an insert first drops the expired ones.
const SWEEP_ABOVE: usize = 10_000;

impl MemoryStore {
    /// The process's one memory store: it outlives config reloads, as a
    /// Redis server would.
    pub fn shared() -> Arc<MemoryStore> {
        static STORE: OnceLock<Arc<MemoryStore>> = OnceLock::new();
        STORE
            .get_or_init(|| {
                Arc::new(MemoryStore {
                    entries: moka::sync::Cache::builder().max_capacity(1_000_000).build(),
                    others: Mutex::new(HashMap::new()),
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

    /// Replaces some fields of a hash session, keeping its expiry; `false`
    /// when the session is gone.
    pub fn update_hash(&self, key: &str, fields: &[(String, String)]) -> bool {
        let Some(entry) = self.entries.get(key) else {
            return false;
        };
        if entry.expires.is_some_and(|at| at <= Instant::now()) {
            return false;
        }
        let Stored::Hash(old) = &entry.stored else {
            return false;
        };
        let mut merged: Vec<(String, String)> = old
            .iter()
            .filter(|(name, _)| !fields.iter().any(|(n, _)| n == name))
            .cloned()
            .collect();
        merged.extend(fields.iter().cloned());
        self.entries.insert(
            key.to_owned(),
            Arc::new(Entry {
                stored: Stored::Hash(merged),
                expires: entry.expires,
            }),
        );
        true
    }

    fn others(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Other, Option<Instant>)>> {
        // A panic while holding it leaves a map that is still consistent.
        self.others.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `SET key value PX ttl` (`nx`: only when absent); whether it was set.
    pub fn put(&self, key: &str, value: Other, ttl: Duration, nx: bool) -> bool {
        let now = Instant::now();
        let mut others = self.others();
        if others.len() > SWEEP_ABOVE {
            others.retain(|_, (_, expires)| expires.is_none_or(|at| at > now));
        }
        let live = others
            .get(key)
            .is_some_and(|(_, expires)| expires.is_none_or(|at| at > now));
        if nx && live {
            return false;
        }
        others.insert(key.to_owned(), (value, Some(now + ttl)));
        true
    }

    /// `GETDEL`: the value, removed, if it had not expired.
    pub fn take(&self, key: &str) -> Option<Other> {
        let (value, expires) = self.others().remove(key)?;
        expires
            .is_none_or(|at| at > Instant::now())
            .then_some(value)
    }

    pub fn get_other(&self, key: &str) -> Option<Other> {
        let others = self.others();
        let (value, expires) = others.get(key)?;
        expires
            .is_none_or(|at| at > Instant::now())
            .then(|| value.clone())
    }

    pub fn remove_other(&self, key: &str) {
        self.others().remove(key);
    }

    /// `SADD` then `PEXPIRE` on a set.
    pub fn add_to_set(&self, key: &str, member: &str, ttl: Duration) {
        let now = Instant::now();
        let mut others = self.others();
        let entry = others
            .entry(key.to_owned())
            .or_insert_with(|| (Other::Set(BTreeSet::new()), None));
        if entry.1.is_some_and(|at| at <= now) || !matches!(entry.0, Other::Set(_)) {
            entry.0 = Other::Set(BTreeSet::new());
        }
        if let Other::Set(members) = &mut entry.0 {
            members.insert(member.to_owned());
        }
        entry.1 = Some(now + ttl);
    }

    /// `SREM`; the set goes when it is empty.
    pub fn remove_from_set(&self, key: &str, member: &str) {
        let mut others = self.others();
        if let Some((Other::Set(members), _)) = others.get_mut(key) {
            members.remove(member);
            if members.is_empty() {
                others.remove(key);
            }
        }
    }

    /// Ends every session in a user's index (SPEC §9): each
    /// `key_prefix` + id, then the index. How many there were.
    pub fn end_all(&self, index: &str, key_prefix: &str) -> usize {
        let Some(Other::Set(ids)) = self.take(index) else {
            return 0;
        };
        for id in &ids {
            self.remove(&[key_prefix, id.as_str()].concat());
        }
        ids.len()
    }
}
