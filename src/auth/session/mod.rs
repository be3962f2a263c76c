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
pub mod refresh;
pub mod store;
mod tracking;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::HeaderMap;

pub use cookie::well_formed_session_id;
pub use memory::MemoryStore;
pub use record::{
    ACCESS_TOKEN_FIELD, CREATED_FIELD, ID_TOKEN_FIELD, INTERNAL_PREFIX, REFRESH_TOKEN_FIELD,
    REFRESHED_FIELD, RecordError, SID_FIELD, Stored,
};
use refresh::{Refreshed, Refresher};
pub use store::SessionStore;

use super::credentials;
use crate::boxed::boxed;
use crate::config::{SessionsConfig, StoreConfig, StoreKind};
use crate::identity::Identity;
use crate::reuse::Reuse;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::CacheLabel;
use cache::{Resolved, TrackedCache};
use cookie::CookieError;
use prometheus_client::metrics::counter::Counter;
use redis::{FetchError, RedisStore};

pub use redis::StoreError;
pub(crate) use redis::{client as redis_client, close_replaced, keep_connected};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Invalid(#[from] SessionInvalid),
    /// 503: the store could not be asked.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

/// 401: forged, malformed, unknown, deleted or expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionInvalid {
    #[error("session cookie")]
    Cookie(#[source] CookieError),
    /// No such key (never written, deleted, or expired in the store).
    #[error("unknown session")]
    Unknown,
    #[error("session record")]
    Record(#[source] RecordError),
    /// The key holds another type, or bytes that are not text.
    #[error("not a session: {0}")]
    NotASession(&'static str),
}

impl SessionInvalid {
    /// The app's own `cookie.expires` has passed (`outcome="expired"`).
    pub fn is_expired(&self) -> bool {
        *self == SessionInvalid::Record(RecordError::Expired)
    }
}

#[derive(Clone)]
enum Store {
    Memory(Arc<MemoryStore>),
    Redis(Arc<RedisStore>),
}

pub struct SessionAuth {
    config: SessionsConfig,
    /// What the store was built from, for the next reload to compare.
    store_config: StoreConfig,
    codec: cookie::Codec,
    store: Store,
    /// `cache_ttl > 0` with Redis: kept exact by client tracking.
    cache: Option<Arc<TrackedCache>>,
    /// The generation of the rules that turn a session into an identity
    /// (see `same_identity_rules`): an entry made under other rules, by a
    /// config a reload replaced, is never served.
    rules: u64,
    /// Keys whose TTL was looked at in the last minute (sliding TTL).
    slid: Option<moka::sync::Cache<String, ()>>,
    cache_hits: Counter,
    cache_misses: Counter,
    /// Set by login when it refreshes sessions (`refresh_interval > 0`).
    refresher: OnceLock<Arc<dyn Refresher>>,
}

const SESSION_CACHE: CacheLabel = CacheLabel { cache: "sessions" };

impl SessionAuth {
    /// `None` without a `[sessions]` table. On a reload, `previous` passes
    /// on its store (client, connections, tracking) and its cache when
    /// nothing they depend on changed.
    pub fn new(
        sessions: Option<&SessionsConfig>,
        store: &StoreConfig,
        metrics: &Metrics,
        previous: Option<&SessionAuth>,
        reuse: &mut Reuse,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(config) = sessions else {
            return Ok(None);
        };
        let carried = previous.and_then(|p| p.carry_store(store, config, reuse));
        let backend = match carried {
            Some(carried) => carried,
            None => {
                reuse.rebuilt("session store");
                connect(config, store, metrics)?
            }
        };
        let slid = (!config.sliding_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(SessionsConfig::SLIDING_TTL_MARGIN)
                .build()
        });
        Ok(Some(Arc::new(SessionAuth {
            codec: cookie::Codec::new(config.codec, &config.secrets),
            config: config.clone(),
            store_config: store.clone(),
            store: backend.store,
            cache: backend.cache,
            rules: backend.rules,
            slid,
            cache_hits: metrics.cache_hits.get_or_create(&SESSION_CACHE).clone(),
            cache_misses: metrics.cache_misses.get_or_create(&SESSION_CACHE).clone(),
            refresher: OnceLock::new(),
        })))
    }

    /// This store and its cache, for a reload whose `[store]` and cache
    /// settings are unchanged: a new client would start disconnected, with
    /// an empty cache that serves nothing until tracking is on again. If
    /// the rules that built the cached identities changed, the entries are
    /// dropped (tracking stays on) and the new rules get a new generation,
    /// so that an entry the replaced config still inserts is never served.
    fn carry_store(
        &self,
        store: &StoreConfig,
        config: &SessionsConfig,
        reuse: &mut Reuse,
    ) -> Option<Backend> {
        if self.store_config != *store
            || cache_settings(&self.config, store) != cache_settings(config, store)
        {
            return None;
        }
        reuse.kept("session store");
        let mut rules = self.rules;
        if let Some(cache) = &self.cache {
            let rules_kept = same_identity_rules(&self.config, config);
            if !rules_kept {
                rules += 1;
                cache.forget_all();
            }
            reuse.record(rules_kept, "session cache entries");
        }
        Some(Backend {
            store: self.store.clone(),
            cache: self.cache.clone(),
            rules,
        })
    }

    /// The session cookie's value, if one was sent.
    pub fn cookie<'h>(
        &self,
        headers: &'h HeaderMap,
    ) -> Result<Option<&'h str>, credentials::Ambiguous> {
        credentials::cookie(headers, &self.config.cookie)
    }

    /// The store, for login to write the sessions this verifies.
    pub fn store(&self) -> SessionStore {
        SessionStore {
            store: self.store.clone(),
            key_prefix: self.config.key_prefix.clone(),
        }
    }

    /// Login's refresh of the sessions it wrote (once per config version).
    pub fn set_refresher(&self, refresher: Arc<dyn Refresher>) {
        let _ = self.refresher.set(refresher);
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
            .map_err(SessionInvalid::Cookie)?;
        let (identity, refreshed) = self.resolve(&id).await?;
        if let (Some(refreshed), Some(refresher)) = (refreshed, self.refresher.get())
            && refresher.due(refreshed)
            && refresher.refresh(&id, identity.sub()).await == Refreshed::Ended
        {
            return Err(SessionInvalid::Unknown.into());
        }
        Ok(identity)
    }

    /// The session's identity, from the cache or the store, and its last
    /// refresh when it is a login session that can be refreshed.
    async fn resolve(&self, id: &str) -> Result<(Arc<Identity>, Option<u64>), SessionError> {
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache.get(id).filter(|hit| hit.rules == self.rules) {
                self.cache_hits.inc();
                return still_valid(&hit).map(|identity| (identity, hit.refreshed));
            }
            self.cache_misses.inc();
        }
        let key = [self.config.key_prefix.as_str(), id].concat();
        let epoch = self.cache.as_ref().map(|c| c.epoch());
        let check_ttl = self
            .slid
            .as_ref()
            .is_some_and(|slid| !slid.contains_key(&key));
        let (stored, ttl) = self
            .fetch(&key, check_ttl)
            .await?
            .ok_or(SessionInvalid::Unknown)?;
        // `cookie.expires` is read and checked once, in `record`; the cache
        // keeps what was read there and re-checks it on every hit.
        let session = record::session(&self.config, stored).map_err(SessionInvalid::Record)?;
        let identity = Arc::new(session.identity);
        if let (Some(cache), Some(epoch)) = (&self.cache, epoch) {
            let resolved = Resolved {
                identity: identity.clone(),
                expires: session.expires,
                refreshed: session.refreshed,
                rules: self.rules,
            };
            cache.insert(id.to_owned(), Arc::new(resolved), epoch);
        }
        if let Some(ttl) = ttl {
            self.slide(key, ttl).await;
        }
        Ok((identity, session.refreshed))
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
                    FetchError::Unavailable(error) => SessionError::Unavailable(error),
                    FetchError::NotASession(what) => SessionInvalid::NotASession(what).into(),
                }),
        }
    }

    /// SPEC §3 `sliding_ttl`: a key whose TTL fell below `sliding_ttl - 60s`
    /// is reset to `sliding_ttl`; keys without a TTL are left alone. Looked
    /// at most once a minute per key on this instance.
    async fn slide(&self, key: String, ttl: i64) {
        let sliding = self.config.sliding_ttl;
        let threshold = sliding
            .as_secs()
            .saturating_sub(SessionsConfig::SLIDING_TTL_MARGIN.as_secs());
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

/// A store, its cache, and the generation of identity rules its cache
/// entries are made under.
struct Backend {
    store: Store,
    cache: Option<Arc<TrackedCache>>,
    rules: u64,
}

/// A new store for `store`, with the session cache when `cache_ttl > 0`
/// and the store is Redis (tracking keeps it exact).
fn connect(
    config: &SessionsConfig,
    store: &StoreConfig,
    metrics: &Metrics,
) -> anyhow::Result<Backend> {
    let cache = cache_settings(config, store).map(|(ttl, prefix)| TrackedCache::new(ttl, prefix));
    let backend = match store.kind {
        StoreKind::Memory => Store::Memory(MemoryStore::shared()),
        StoreKind::Redis => Store::Redis(RedisStore::start(
            store,
            cache.clone(),
            metrics.store_errors.clone(),
        )?),
    };
    Ok(Backend {
        store: backend,
        cache,
        rules: 0,
    })
}

/// What the cache is built from (`None`: no cache): its TTL, and the key
/// prefix that maps the Redis keys invalidations name to session ids. Wired
/// into the client's tracking, it cannot change without a new client.
fn cache_settings<'c>(
    config: &'c SessionsConfig,
    store: &StoreConfig,
) -> Option<(Duration, &'c str)> {
    (store.kind == StoreKind::Redis && !config.cache_ttl.is_zero())
        .then_some((config.cache_ttl, config.key_prefix.as_str()))
}

/// What turns a stored session into the identity a cache entry holds
/// (`record::session`). The cookie codec is not among them:
/// entries are keyed by session id, found before the cache is asked.
fn same_identity_rules(a: &SessionsConfig, b: &SessionsConfig) -> bool {
    a.format == b.format && a.user_field == b.user_field && a.list_fields == b.list_fields
}

/// A cached session, checked against `cookie.expires` as a fresh one is.
fn still_valid(hit: &Resolved) -> Result<Arc<Identity>, SessionError> {
    record::check_expiry(hit.expires).map_err(SessionInvalid::Record)?;
    Ok(hit.identity.clone())
}
