//! The `session` credential kind: a session cookie whose id is looked up in
//! the shared store (SPEC §3 `[store]`, `[sessions]`). Any proxy instance
//! can serve any request; deleting the key logs the user out everywhere.
//!
//! Order: cookie (ambiguity refused), codec and id checks (no store round
//! trip for a forged or malformed cookie), the local cache when tracking
//! keeps it exact, the store (an error is 503, never a pass), the record
//! turned into an identity, and the sliding TTL.

mod cache;
mod cookie;
pub mod memory;
mod record;
mod redis;
mod tracking;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

pub use memory::MemoryStore;
pub use record::Stored;

use super::credentials;
use crate::boxed::boxed;
use crate::config::{SessionsConfig, StoreConfig, StoreKind};
use crate::error::Rejection;
use crate::identity::Identity;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::CacheLabel;
use cache::{Resolved, TrackedCache};
use prometheus_client::metrics::counter::Counter;
use redis::{FetchError, RedisStore};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// 401: forged, malformed, unknown, deleted or expired.
    #[error("{0}")]
    Invalid(String),
    /// 503: the store could not be asked.
    #[error("{0}")]
    Unavailable(String),
}

enum Store {
    Memory(Arc<MemoryStore>),
    Redis(Arc<RedisStore>),
}

pub struct SessionAuth {
    config: SessionsConfig,
    codec: cookie::Codec,
    store: Store,
    /// `cache_ttl > 0` with Redis: kept exact by client tracking.
    cache: Option<Arc<TrackedCache>>,
    /// Keys whose TTL was looked at in the last minute (sliding TTL).
    slid: Option<moka::sync::Cache<String, ()>>,
    cache_hits: Counter,
    cache_misses: Counter,
}

const SESSION_CACHE: CacheLabel = CacheLabel { cache: "sessions" };

impl SessionAuth {
    /// `None` without a `[sessions]` table.
    pub fn new(
        sessions: Option<&SessionsConfig>,
        store: &StoreConfig,
        metrics: &Metrics,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(config) = sessions else {
            return Ok(None);
        };
        let cache = (store.kind == StoreKind::Redis && !config.cache_ttl.is_zero())
            .then(|| TrackedCache::new(config.cache_ttl, &config.key_prefix));
        let backend = match store.kind {
            StoreKind::Memory => Store::Memory(MemoryStore::shared()),
            StoreKind::Redis => Store::Redis(RedisStore::start(
                store,
                cache.clone(),
                metrics.store_errors.clone(),
            )?),
        };
        let slid = (!config.sliding_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(Duration::from_secs(60))
                .build()
        });
        Ok(Some(Arc::new(SessionAuth {
            codec: cookie::Codec::new(config.codec, &config.secrets),
            config: config.clone(),
            store: backend,
            cache,
            slid,
            cache_hits: metrics.cache_hits.get_or_create(&SESSION_CACHE).clone(),
            cache_misses: metrics.cache_misses.get_or_create(&SESSION_CACHE).clone(),
        })))
    }

    /// The session cookie's value, if one was sent.
    pub fn cookie<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, Rejection> {
        credentials::cookie(headers, &self.config.cookie)
    }

    /// `forward_cookie = false`: upstream never sees the session cookie.
    pub fn remove_cookie(&self, headers: &mut HeaderMap) {
        if !self.config.forward_cookie {
            credentials::remove_cookie(headers, &self.config.cookie);
        }
    }

    /// `/readyz`: the store answers.
    pub fn is_ready(&self) -> bool {
        match &self.store {
            Store::Memory(_) => true,
            Store::Redis(redis) => redis.is_ready(),
        }
    }

    pub async fn verify(&self, cookie_value: &str) -> Result<Arc<Identity>, SessionError> {
        let id = self
            .codec
            .session_id(cookie_value)
            .map_err(|e| SessionError::Invalid(e.to_string()))?;
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache.get(&id) {
                self.cache_hits.inc();
                return still_valid(&hit);
            }
            self.cache_misses.inc();
        }
        let key = [self.config.key_prefix.as_str(), &id].concat();
        let epoch = self.cache.as_ref().map(|c| c.epoch());
        let check_ttl = self
            .slid
            .as_ref()
            .is_some_and(|slid| !slid.contains_key(&key));
        let (stored, ttl) = self
            .fetch(&key, check_ttl)
            .await?
            .ok_or_else(|| SessionError::Invalid("unknown session".into()))?;
        // `cookie.expires` is read and checked once, in `record`; the cache
        // keeps what was read there and re-checks it on every hit.
        let session = record::session(&self.config, stored)
            .map_err(|e| SessionError::Invalid(e.to_string()))?;
        let identity = Arc::new(session.identity);
        if let (Some(cache), Some(epoch)) = (&self.cache, epoch) {
            let resolved = Resolved {
                identity: identity.clone(),
                expires: session.expires,
            };
            cache.insert(id.into_owned(), Arc::new(resolved), epoch);
        }
        if let Some(ttl) = ttl {
            self.slide(key, ttl).await;
        }
        Ok(identity)
    }

    async fn fetch(
        &self,
        key: &str,
        with_ttl: bool,
    ) -> Result<Option<(Stored, Option<i64>)>, SessionError> {
        match &self.store {
            Store::Memory(memory) => Ok(memory.get(key).map(|stored| {
                let ttl = with_ttl.then(|| memory.ttl(key)).flatten();
                (stored, ttl)
            })),
            // Boxed, like every Redis call here: fred's command futures are
            // ~7 KB, and inline they would size every request's future, which
            // hyper keeps allocated for each idle keep-alive connection. One
            // allocation per Redis round trip buys ~6 KB per idle connection
            // (bench: SWEEP=idle).
            Store::Redis(redis) => boxed(|| redis.fetch(key, self.config.format, with_ttl))
                .await
                .map_err(|e| match e {
                    FetchError::Unavailable(reason) => SessionError::Unavailable(reason),
                    FetchError::NotASession(reason) => SessionError::Invalid(reason.into()),
                }),
        }
    }

    /// SPEC §3 `sliding_ttl`: a key whose TTL fell below `sliding_ttl - 60s`
    /// is reset to `sliding_ttl`; keys without a TTL are left alone. Looked
    /// at most once a minute per key on this instance.
    async fn slide(&self, key: String, ttl: i64) {
        let sliding = self.config.sliding_ttl;
        let threshold = sliding.as_secs().saturating_sub(60);
        if let Some(slid) = &self.slid {
            slid.insert(key.clone(), ());
        }
        if ttl < 0 || u64::try_from(ttl).unwrap_or(u64::MAX) >= threshold {
            return;
        }
        let result = match &self.store {
            Store::Memory(memory) => {
                memory.expire(&key, sliding);
                Ok(())
            }
            // Boxed: see `fetch`.
            Store::Redis(redis) => boxed(|| redis.expire(&key, sliding)).await,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "could not extend a session's TTL");
        }
    }
}

/// A cached session, checked against `cookie.expires` as a fresh one is.
fn still_valid(hit: &Resolved) -> Result<Arc<Identity>, SessionError> {
    record::check_expiry(hit.expires).map_err(|e| SessionError::Invalid(e.to_string()))?;
    Ok(hit.identity.clone())
}
