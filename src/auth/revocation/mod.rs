//! Revocation (SPEC §9, guarantee 11): a JWT cannot be taken back, so the
//! proxy remembers which ones no longer count — a deny-list of `jti`s and,
//! per `sub`, a "revoked before" time — and refuses them on every request,
//! verified-token cache hits included.
//!
//! Every instance holds the set in memory ([`list`]), so the check costs
//! no store round trip; the store is where revocations are written and
//! from where every instance learns them ([`redis`]: client tracking), or,
//! with the `memory` store, the process itself. Until the set is first
//! loaded nothing is known to be not revoked, and JWTs get 503 (fail
//! closed). Ending a user's login sessions ([`sessions`]) rides along with
//! a `sub` revocation. [`command`] is what `wristband revoke`,
//! `wristband sessions` and the admin `POST /revoke` do.

pub mod command;
mod list;
mod redis;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

pub use list::{Entry, Lifetimes, Refusal};

use crate::auth::unix_now;
use crate::config::{Config, RevocationConfig, StoreConfig, StoreKind};
use crate::reuse::Reuse;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::KindLabel;
use list::RevokedList;
use redis::RedisRevocations;

pub use command::{Revoke, RevokeError, Revoked};

/// What the JWT check learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Check {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The set has not been loaded from the store yet (503).
    #[error("revocations not loaded from the store yet")]
    Unknown,
}

enum Backend {
    /// The set lives here, and only here.
    Memory,
    Redis(Arc<RedisRevocations>),
}

pub struct Revocations {
    list: Arc<RevokedList>,
    backend: Backend,
    /// What the backend was built from, for the next reload to compare.
    store: StoreConfig,
    propagation: Duration,
    /// `[sessions].key_prefix`: where a user's login sessions are indexed.
    sessions_prefix: Option<String>,
    jti_gauge: Gauge,
    sub_gauge: Gauge,
}

impl Revocations {
    /// `None` without `[revocation]`. On a reload, `previous` passes on
    /// its set and store connection when `[store]` (and, for Redis,
    /// `propagation`) is unchanged; the set learns the new lifetimes.
    pub fn new(
        config: &Config,
        metrics: &Metrics,
        previous: Option<&Revocations>,
        reuse: &mut Reuse,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(revocation) = &config.revocation else {
            return Ok(None);
        };
        let lifetimes = lifetimes(config);
        // Another store may hold other revocations: only its own load
        // says what is revoked, so a new set (503 until loaded). The same
        // store keeps what is known: the memory set is the only copy, and
        // a Redis watcher rebuilt for a new `propagation` starts from a
        // copy of the old set (not the set itself: the old watcher may
        // still write until it ends, and one set has one writer), which
        // its first load replaces, instead of refusing every JWT until
        // that load.
        let same_store = previous.filter(|p| p.store == config.store);
        reuse.record(
            same_store.is_some_and(|p| {
                matches!(p.backend, Backend::Memory) || p.propagation == revocation.propagation
            }),
            "revocations",
        );
        let (list, backend) = match same_store {
            Some(previous) => match &previous.backend {
                Backend::Memory => {
                    previous.list.set_lifetimes(lifetimes);
                    (previous.list.clone(), Backend::Memory)
                }
                Backend::Redis(redis) if previous.propagation == revocation.propagation => {
                    previous.list.set_lifetimes(lifetimes);
                    (previous.list.clone(), Backend::Redis(redis.clone()))
                }
                Backend::Redis(_) => {
                    let list = Arc::new(previous.list.copy_with(lifetimes));
                    let backend = redis_backend(config, revocation, &list, metrics)?;
                    (list, backend)
                }
            },
            None => start(config, revocation, lifetimes, metrics)?,
        };
        let gauge = |kind| {
            metrics
                .revocations
                .get_or_create(&KindLabel { kind })
                .clone()
        };
        Ok(Some(Arc::new(Revocations {
            list,
            backend,
            store: config.store.clone(),
            propagation: revocation.propagation,
            sessions_prefix: config.sessions.as_ref().map(|s| s.key_prefix.clone()),
            jti_gauge: gauge("jti"),
            sub_gauge: gauge("sub"),
        })))
    }

    /// The hot path: a few atomic loads when nothing is revoked, one read
    /// lock and two hash lookups otherwise.
    pub fn check(&self, jti: Option<&str>, sub: &str, iat: Option<u64>) -> Result<(), Check> {
        if !self.list.is_loaded() {
            return Err(Check::Unknown);
        }
        self.list.check(jti, sub, iat, unix_now())?;
        Ok(())
    }

    /// `/readyz`: the set is loaded.
    pub fn is_ready(&self) -> bool {
        self.list.is_loaded()
    }

    /// Drops what expired, then sets `wristband_revocations{kind}`.
    pub fn export_gauges(&self) {
        self.list.prune(unix_now());
        let (jti, sub) = self.list.counts();
        self.jti_gauge.set(i64::try_from(jti).unwrap_or(i64::MAX));
        self.sub_gauge.set(i64::try_from(sub).unwrap_or(i64::MAX));
    }

    /// Writes a revocation where every instance learns it, and takes it
    /// here at once; with a `sub`, ends the user's login sessions too.
    pub async fn revoke(&self, what: Revoke) -> Result<Revoked, RevokeError> {
        let now = unix_now();
        match &self.backend {
            Backend::Memory => {
                let sub = match &what {
                    Revoke::Sub { sub } => Some(sub.clone()),
                    Revoke::Jti { .. } => None,
                };
                let mut done = command::plan(what, self.list.lifetimes(), now);
                if done.ttl.is_some() {
                    self.list.insert(done.entry.clone(), now);
                }
                // The login sessions live in this process too.
                if let (Some(sub), Some(prefix)) = (sub, self.sessions_prefix.as_deref()) {
                    let index = sessions::index_key(prefix, &sub);
                    done.sessions_ended =
                        Some(crate::auth::session::MemoryStore::shared().end_all(&index, prefix));
                }
                Ok(done)
            }
            Backend::Redis(redis) => {
                let done = command::revoke(
                    redis.client(),
                    what,
                    self.list.lifetimes(),
                    self.sessions_prefix.as_deref(),
                    now,
                )
                .await;
                // Written, even if the sessions could not all be ended.
                let written = match &done {
                    Ok(done) => done.ttl.is_some().then_some(&done.entry),
                    Err(RevokeError::Sessions { entry, .. }) => Some(entry),
                    Err(_) => None,
                };
                if let Some(entry) = written {
                    self.list.insert(entry.clone(), now);
                }
                done
            }
        }
    }
}

/// A new set, and the backend that fills it.
fn start(
    config: &Config,
    revocation: &RevocationConfig,
    lifetimes: Lifetimes,
    metrics: &Metrics,
) -> anyhow::Result<(Arc<RevokedList>, Backend)> {
    let list = Arc::new(RevokedList::new(lifetimes));
    let backend = match config.store.kind {
        StoreKind::Memory => {
            list.mark_loaded();
            Backend::Memory
        }
        StoreKind::Redis => redis_backend(config, revocation, &list, metrics)?,
    };
    Ok((list, backend))
}

/// A watcher that keeps `list` current from the Redis store.
fn redis_backend(
    config: &Config,
    revocation: &RevocationConfig,
    list: &Arc<RevokedList>,
    metrics: &Metrics,
) -> anyhow::Result<Backend> {
    Ok(Backend::Redis(RedisRevocations::start(
        &config.store,
        list.clone(),
        revocation.propagation,
        metrics.store_errors.clone(),
    )?))
}

/// SPEC §9 TTLs: a `jti` until its `exp` plus the longest provider
/// `leeway` (the token's provider is not known to the CLI); a `sub` for
/// the longest `max_token_lifetime` — and at least the default day when a
/// provider sets no limit, since its tokens may live that long — plus that
/// leeway too: a token issued just before the cut-off is accepted until
/// `exp` + leeway, so the entry must outlive that.
pub fn lifetimes(config: &Config) -> Lifetimes {
    let providers = &config.jwt.providers;
    let leeway = providers
        .iter()
        .map(|p| p.leeway)
        .max()
        .unwrap_or(crate::config::JwtProvider::DEFAULT_LEEWAY);
    let longest = providers.iter().filter_map(|p| p.max_token_lifetime).max();
    let unbounded =
        providers.is_empty() || providers.iter().any(|p| p.max_token_lifetime.is_none());
    let sub_ttl = match longest {
        Some(longest) if !unbounded => longest,
        Some(longest) => longest.max(RevocationConfig::DEFAULT_SUB_TTL),
        None => RevocationConfig::DEFAULT_SUB_TTL,
    };
    Lifetimes {
        leeway: leeway.as_secs(),
        sub_ttl: (sub_ttl + leeway).as_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwtProvider;
    use std::path::Path;

    fn config(providers: &[(&str, &str)]) -> Config {
        let mut text = String::from("[revocation]\n");
        for (i, (leeway, lifetime)) in providers.iter().enumerate() {
            text.push_str(&format!(
                "[[jwt.providers]]\nname = \"p{i}\"\nissuer = \"https://p{i}.example\"\n\
                 audiences = [\"a\"]\nleeway = \"{leeway}\"\nmax_token_lifetime = \"{lifetime}\"\n"
            ));
        }
        Config::from_toml(Path::new("t.toml"), &text).expect("valid config")
    }

    #[test]
    fn lifetimes_take_the_longest_leeway_and_lifetime_and_the_day_when_unbounded() {
        let day = RevocationConfig::DEFAULT_SUB_TTL.as_secs();
        let bounded = lifetimes(&config(&[("10s", "1h"), ("20s", "2h")]));
        assert_eq!((bounded.leeway, bounded.sub_ttl), (20, 7200 + 20));
        // "0s": no limit on one provider, so its tokens may live a day.
        let mixed = lifetimes(&config(&[("10s", "1h"), ("5s", "0s")]));
        assert_eq!((mixed.leeway, mixed.sub_ttl), (10, day + 10));
        let none = lifetimes(&config(&[]));
        let leeway = JwtProvider::DEFAULT_LEEWAY.as_secs();
        assert_eq!((none.leeway, none.sub_ttl), (leeway, day + leeway));
    }
}
