//! One provider's keys: loaded once (file, HMAC secret) or fetched and kept
//! fresh (JWKS URL, OIDC discovery).
//!
//! Guarantee 6: an unknown `kid` triggers at most one fetch per
//! `min_refresh_interval` (the start-up fetch counts); concurrent misses wait
//! for the same fetch, each for at most `fetch_timeout`. Fetches run in their
//! own task, so a request that stops waiting never cancels one.
//! SPEC §3 `max_stale`: after the last successful fetch, keys are served for
//! that long while fetches fail; then the provider is unavailable (503).
//! A reload keeps all of that — keys, their age, the cooldown — whenever the
//! issuer and key source are unchanged (`ProviderKeys::reload`): rebuilt, a
//! provider whose identity provider is down would have no keys at all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
// The runtime's clock, not the OS's: tests jump it past a cooldown or
// `max_stale` instead of sleeping through it.
use tokio::time::Instant;

use super::fetch::{FetchError, Fetcher};
use super::keys::{self, VerifyingKey};
use crate::boxed::boxed;
use crate::config::{JwtAlgorithm, JwtProvider, KeySource};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{ProviderLabel, ProviderResult};

/// Why no key could be offered for a token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Keys are known, none matches: the token is invalid (401).
    #[error("no key for this kid and alg")]
    Unknown,
    /// No trustworthy key set right now (503).
    #[error(transparent)]
    Unavailable(#[from] KeysUnavailable),
}

/// A provider without a key set it may use (503, never a pass).
#[derive(Debug, thiserror::Error)]
#[error("provider {provider:?}: {why}")]
pub struct KeysUnavailable {
    pub provider: String,
    pub why: Unusable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// Guarantee 6: no successful fetch within `max_stale`.
    #[error("no fresh keys")]
    Stale,
    #[error("key refetch failed")]
    RefetchFailed,
    #[error("key fetch still running after {0:?}")]
    StillFetching(Duration),
}

/// Why a fetch gave no key set; logged, and counted as a refresh error.
#[derive(Debug, thiserror::Error)]
enum KeyFetchError {
    #[error("static keys are not fetched")]
    Static,
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{url}")]
    KeySet {
        url: String,
        #[source]
        error: keys::JwksError,
    },
}

#[derive(Clone)]
struct KeyState {
    keys: Vec<Arc<VerifyingKey>>,
    last_success: Option<Instant>,
    last_fetch_failed: bool,
    /// Bumped whenever a refresh drops a key, so cached verdicts made with
    /// it stop counting.
    epoch: u64,
}

pub struct ProviderKeys {
    /// What these keys were loaded or fetched with. Only the issuer, the
    /// key source, the algorithms, the CA and the fetch settings are read
    /// here; a provider's claim rules live with it (`jwt::Provider`), so
    /// that one key set can outlive a reload that changes them.
    pub settings: JwtProvider,
    /// `None` for keys that never change (jwks_file, hmac_secret).
    fetcher: Option<Fetcher>,
    state: ArcSwap<KeyState>,
    fetching: AtomicBool,
    fetched: watch::Sender<u64>,
    last_attempt: Mutex<Option<Instant>>,
    /// Learnt by OIDC discovery; forgotten when a fetch from it fails.
    discovered: Mutex<Option<String>>,
    /// The key server's `Cache-Control: max-age` at the last success.
    max_age: Mutex<Option<Duration>>,
    metrics: Arc<Metrics>,
}

/// How a provider's keys came through a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// The previous key set itself: same settings.
    Shared,
    /// A new set holding the previous one's keys, their age, its epoch and
    /// its fetch schedule: only when or how to fetch changed (or, for
    /// static keys, the file still holds the same keys).
    Copied,
    /// Keys loaded, or to be fetched, anew.
    Fresh,
}

/// What decides which keys a provider trusts, and how each key is bound to
/// algorithms (keys are parsed per algorithm list). Only key sets whose
/// identities are equal ever pass keys (and verdicts made with them) on.
fn same_key_identity(a: &JwtProvider, b: &JwtProvider) -> bool {
    a.issuer == b.issuer
        && a.key_source == b.key_source
        && a.algorithms == b.algorithms
        && a.ca_file == b.ca_file
}

/// Everything a key set reads: equal, the set itself can serve the new
/// config. `name` labels its metrics and logs. A CA file cannot be
/// compared by its path (it may have been renewed in place), so a set that
/// reads one is copied instead, and its fetcher reads the file again.
fn same_key_settings(a: &JwtProvider, b: &JwtProvider) -> bool {
    same_key_identity(a, b)
        && a.ca_file.is_none()
        && a.name == b.name
        && a.refresh_interval == b.refresh_interval
        && a.min_refresh_interval == b.min_refresh_interval
        && a.fetch_timeout == b.fetch_timeout
        && a.max_stale == b.max_stale
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProviderKeys {
    /// Loads static keys now; for fetched ones, starts the background
    /// refresher, whose first fetch is the start-up fetch.
    pub fn new(config: &JwtProvider, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<Self>> {
        let (fetcher, keys) = match &config.key_source {
            KeySource::HmacSecret(secret) => (
                None,
                vec![keys::hmac_key(
                    secret.expose().as_bytes(),
                    &config.algorithms,
                )],
            ),
            KeySource::JwksFile(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!(
                        "jwt.providers {:?}: cannot read {}: {e}",
                        config.name,
                        path.display()
                    )
                })?;
                let keys = keys::parse_jwks(&bytes, &config.algorithms).map_err(|e| {
                    anyhow::anyhow!("jwt.providers {:?}: {}: {e}", config.name, path.display())
                })?;
                (None, keys)
            }
            KeySource::JwksUrl(_) | KeySource::Discovery => {
                (Some(Fetcher::new(config)?), Vec::new())
            }
        };
        let state = KeyState {
            keys,
            last_success: None,
            last_fetch_failed: false,
            epoch: 0,
        };
        Ok(ProviderKeys::start(config, fetcher, state, metrics))
    }

    /// The keys for `config` on a reload, given the previous set for the
    /// same issuer: that set itself when everything it reads is unchanged;
    /// a copy of its state when only when-and-how-to-fetch changed, so
    /// that an identity provider down at reload time costs nothing (stale
    /// keys keep serving up to `max_stale` after the last success, and
    /// guarantee 6's cooldown carries over); else new keys. Static keys
    /// are read again (a file may change behind the same path) and count
    /// as carried only if they are the same keys.
    pub fn reload(
        config: &JwtProvider,
        previous: Option<&Arc<ProviderKeys>>,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<(Arc<Self>, Carried)> {
        let Some(old) = previous.filter(|old| same_key_identity(&old.settings, config)) else {
            return Ok((ProviderKeys::new(config, metrics)?, Carried::Fresh));
        };
        if old.is_static() {
            let new = ProviderKeys::new(config, metrics)?;
            let carried = if new.fingerprints() == old.fingerprints() {
                Carried::Copied
            } else {
                Carried::Fresh
            };
            return Ok((new, carried));
        }
        if same_key_settings(&old.settings, config) {
            return Ok((old.clone(), Carried::Shared));
        }
        Ok((ProviderKeys::copied(config, old, metrics)?, Carried::Copied))
    }

    /// A fetched key set that starts where `old` is: its keys, their age,
    /// its epoch, its last attempt (the cooldown) and what it learnt of the
    /// key server; a fetch `old` has in flight counts as this set's own.
    fn copied(
        config: &JwtProvider,
        old: &Arc<ProviderKeys>,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        // In this order: a fetch that starts after the attempt was read
        // may at worst be made again; one that ends after the state was
        // copied is never lost (see `adopt_fetch`).
        let last_attempt = *lock(&old.last_attempt);
        let mut in_flight = old.fetched.subscribe();
        let adopt = old.fetching.load(Ordering::Acquire);
        let state = KeyState::clone(&old.state.load());
        let provider = ProviderKeys::assemble(config, Some(Fetcher::new(config)?), state, metrics);
        *lock(&provider.last_attempt) = last_attempt;
        *lock(&provider.discovered) = lock(&old.discovered).clone();
        *lock(&provider.max_age) = *lock(&old.max_age);
        let provider = Arc::new(provider);
        if adopt {
            provider.fetching.store(true, Ordering::Release);
            let (new, old) = (Arc::downgrade(&provider), old.clone());
            tokio::spawn(async move {
                let _ = in_flight.changed().await;
                if let Some(new) = new.upgrade() {
                    new.adopt_fetch(&old);
                }
            });
        }
        spawn_refresher(Arc::downgrade(&provider));
        Ok(provider)
    }

    /// Takes the outcome of `old`'s fetch, which this set was waiting for
    /// in place of its own, and wakes whoever waits on this set.
    fn adopt_fetch(&self, old: &ProviderKeys) {
        self.state.store(old.state.load_full());
        *lock(&self.discovered) = lock(&old.discovered).clone();
        *lock(&self.max_age) = *lock(&old.max_age);
        self.fetching.store(false, Ordering::Release);
        self.fetched.send_modify(|n| *n += 1);
    }

    /// The set, with its refresher running if its keys are fetched.
    fn start(
        config: &JwtProvider,
        fetcher: Option<Fetcher>,
        state: KeyState,
        metrics: &Arc<Metrics>,
    ) -> Arc<Self> {
        let provider = Arc::new(ProviderKeys::assemble(config, fetcher, state, metrics));
        if provider.fetcher.is_some() {
            spawn_refresher(Arc::downgrade(&provider));
        }
        provider
    }

    fn assemble(
        config: &JwtProvider,
        fetcher: Option<Fetcher>,
        state: KeyState,
        metrics: &Arc<Metrics>,
    ) -> ProviderKeys {
        ProviderKeys {
            settings: config.clone(),
            state: ArcSwap::from_pointee(state),
            fetcher,
            fetching: AtomicBool::new(false),
            fetched: watch::channel(0).0,
            last_attempt: Mutex::new(None),
            discovered: Mutex::new(None),
            max_age: Mutex::new(None),
            metrics: metrics.clone(),
        }
    }

    /// What identifies the keys held now.
    fn fingerprints(&self) -> Vec<String> {
        let mut prints: Vec<String> = self
            .state
            .load()
            .keys
            .iter()
            .map(|k| k.fingerprint.clone())
            .collect();
        prints.sort();
        prints
    }

    fn is_static(&self) -> bool {
        self.fetcher.is_none()
    }

    fn usable(&self, state: &KeyState) -> bool {
        if self.is_static() {
            return true;
        }
        state
            .last_success
            .is_some_and(|t| t.elapsed() <= self.settings.max_stale)
    }

    /// Readiness: this provider can verify tokens now.
    pub fn has_keys(&self) -> bool {
        let state = self.state.load();
        self.usable(&state) && !state.keys.is_empty()
    }

    /// See [`KeyState::epoch`].
    pub fn epoch(&self) -> u64 {
        self.state.load().epoch
    }

    /// The key epoch, if the keys may be used now: what a cached verdict
    /// needs, in one load. Guarantee 6: past `max_stale` a verdict made
    /// with these keys counts no more than the keys themselves.
    pub fn usable_epoch(&self) -> Result<u64, KeyError> {
        let state = self.state.load();
        if self.usable(&state) {
            Ok(state.epoch)
        } else {
            Err(self.no_fresh_keys())
        }
    }

    fn no_fresh_keys(&self) -> KeyError {
        self.unavailable(Unusable::Stale)
    }

    fn unavailable(&self, why: Unusable) -> KeyError {
        KeyError::Unavailable(KeysUnavailable {
            provider: self.settings.name.clone(),
            why,
        })
    }

    /// Seconds since the last successful fetch (0 for static keys).
    pub fn age(&self) -> Option<Duration> {
        if self.is_static() {
            return Some(Duration::ZERO);
        }
        self.state.load().last_success.map(|t| t.elapsed())
    }

    /// The keys that may verify a token with this `kid` and `alg`.
    pub async fn keys_for(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: JwtAlgorithm,
    ) -> Result<Vec<Arc<VerifyingKey>>, KeyError> {
        {
            let state = self.state.load();
            if self.usable(&state) {
                let found = matching(&state.keys, kid, alg);
                if !found.is_empty() || self.is_static() {
                    return if found.is_empty() {
                        Err(KeyError::Unknown)
                    } else {
                        Ok(found)
                    };
                }
            }
        }
        // Boxed: the cold path should not size every request's future.
        let fetched = boxed(|| self.refetch()).await?;
        let state = self.state.load();
        if !self.usable(&state) {
            return Err(self.no_fresh_keys());
        }
        let found = matching(&state.keys, kid, alg);
        if !found.is_empty() {
            Ok(found)
        } else if fetched && state.last_fetch_failed {
            Err(self.unavailable(Unusable::RefetchFailed))
        } else {
            Err(KeyError::Unknown)
        }
    }

    fn cooldown_over(&self) -> bool {
        let last = *lock(&self.last_attempt);
        last.is_none_or(|t| t.elapsed() >= self.settings.min_refresh_interval)
    }

    /// Joins the fetch in flight, or starts one if the cooldown allows, and
    /// says whether a fetch ran for this request. When neither, it returns
    /// at once: SPEC §6a answers an unknown kid 401 during the cooldown.
    /// Waits at most `fetch_timeout`.
    async fn refetch(self: &Arc<Self>) -> Result<bool, KeyError> {
        let mut done = self.fetched.subscribe();
        if !self.fetching.load(Ordering::Acquire) && !self.start_fetch() {
            return Ok(false);
        }
        match tokio::time::timeout(self.settings.fetch_timeout, done.changed()).await {
            Ok(_) => Ok(true),
            Err(_) => Err(self.unavailable(Unusable::StillFetching(self.settings.fetch_timeout))),
        }
    }

    /// Starts a fetch unless one runs or the cooldown forbids it.
    fn start_fetch(self: &Arc<Self>) -> bool {
        if !self.cooldown_over() {
            return false;
        }
        if self
            .fetching
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another request started it a moment ago: wait for that one.
            return true;
        }
        *lock(&self.last_attempt) = Some(Instant::now());
        let this = self.clone();
        tokio::spawn(async move {
            this.fetch_now().await;
            this.fetching.store(false, Ordering::Release);
            this.fetched.send_modify(|n| *n += 1);
        });
        true
    }

    async fn fetch_now(&self) {
        let result = self.fetch_keys().await;
        let old = self.state.load_full();
        let labels = |result: &'static str| ProviderResult {
            provider: self.settings.name.clone(),
            result,
        };
        match result {
            Ok((keys, max_age)) => {
                let dropped = old
                    .keys
                    .iter()
                    .any(|k| !keys.iter().any(|n| n.fingerprint == k.fingerprint));
                tracing::debug!(provider = %self.settings.name, keys = keys.len(), "keys fetched");
                self.state.store(Arc::new(KeyState {
                    keys,
                    last_success: Some(Instant::now()),
                    last_fetch_failed: false,
                    epoch: old.epoch + u64::from(dropped),
                }));
                *lock(&self.max_age) = max_age;
                self.metrics.jwks_refresh.get_or_create(&labels("ok")).inc();
            }
            Err(error) => {
                let reason = crate::telemetry::logging::chain(&error);
                tracing::warn!(provider = %self.settings.name, %reason, "key fetch failed");
                self.state.store(Arc::new(KeyState {
                    keys: old.keys.clone(),
                    last_success: old.last_success,
                    last_fetch_failed: true,
                    epoch: old.epoch,
                }));
                self.metrics
                    .jwks_refresh
                    .get_or_create(&labels("error"))
                    .inc();
            }
        }
    }

    async fn fetch_keys(
        &self,
    ) -> Result<(Vec<Arc<VerifyingKey>>, Option<Duration>), KeyFetchError> {
        let Some(fetcher) = &self.fetcher else {
            return Err(KeyFetchError::Static);
        };
        let url = match &self.settings.key_source {
            KeySource::JwksUrl(url) => url.clone(),
            _ => {
                let known = lock(&self.discovered).clone();
                match known {
                    Some(url) => url,
                    None => {
                        let url = fetcher.discover_jwks_uri(&self.settings.issuer).await?;
                        *lock(&self.discovered) = Some(url.clone());
                        url
                    }
                }
            }
        };
        let fetched = fetcher.get(&url).await.inspect_err(|_| {
            // A stale discovered URL is looked up again next time.
            *lock(&self.discovered) = None;
        })?;
        let keys = keys::parse_jwks(&fetched.body, &self.settings.algorithms)
            .map_err(|error| KeyFetchError::KeySet { url, error })?;
        Ok((keys, fetched.max_age))
    }

    /// Time left before the refresher's next fetch: none before the first.
    fn until_next_refresh(&self) -> Duration {
        match *lock(&self.last_attempt) {
            Some(last) => self.refresh_period().saturating_sub(last.elapsed()),
            None => Duration::ZERO,
        }
    }

    fn refresh_period(&self) -> Duration {
        let settings = &self.settings;
        if self.state.load().last_fetch_failed {
            return settings.min_refresh_interval;
        }
        let max_age = lock(&self.max_age).unwrap_or(settings.refresh_interval);
        settings
            .refresh_interval
            .min(max_age)
            .max(settings.min_refresh_interval)
    }

    /// Starts a fetch, or joins the one running, and waits for its end.
    async fn refresh(self: &Arc<Self>) {
        let mut done = self.fetched.subscribe();
        let started = !self.fetching.load(Ordering::Acquire) && self.start_fetch();
        if started || self.fetching.load(Ordering::Acquire) {
            let _ = done.changed().await;
        }
    }

    /// Updates `wristband_jwks_age_seconds` (called when metrics are read).
    pub fn export_age(&self) {
        let age = self.age().map_or(f64::NAN, |a| a.as_secs_f64());
        self.metrics
            .jwks_age
            .get_or_create(&ProviderLabel {
                provider: self.settings.name.clone(),
            })
            .set(age);
    }
}

fn matching(
    keys: &[Arc<VerifyingKey>],
    kid: Option<&str>,
    alg: JwtAlgorithm,
) -> Vec<Arc<VerifyingKey>> {
    keys.iter()
        .filter(|k| k.algorithms.contains(&alg))
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .cloned()
        .collect()
}

/// Refreshes every `refresh_interval`, or sooner when the server's
/// `Cache-Control: max-age` says so, never more often than
/// `min_refresh_interval`; after a failure, retries at that minimum. The
/// schedule counts from the last attempt, so a set copied over a reload
/// keeps the one it had, and a refetch for an unknown kid moves it too.
fn spawn_refresher(provider: Weak<ProviderKeys>) {
    tokio::spawn(async move {
        loop {
            let wait = match provider.upgrade() {
                Some(provider) => provider.until_next_refresh(),
                None => return,
            };
            tokio::time::sleep(wait).await;
            let Some(provider) = provider.upgrade() else {
                return;
            };
            provider.refresh().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::collections::BTreeMap;

    fn provider(key_source: KeySource, algorithms: Vec<JwtAlgorithm>) -> JwtProvider {
        JwtProvider {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            key_source,
            audiences: vec!["app".into()],
            audience_claim: "aud".into(),
            algorithms,
            leeway: Duration::from_secs(30),
            max_token_lifetime: None,
            claims: BTreeMap::new(),
            refresh_interval: Duration::from_secs(3600),
            min_refresh_interval: Duration::from_secs(600),
            fetch_timeout: Duration::from_millis(300),
            max_stale: Duration::from_secs(86400),
            ca_file: None,
        }
    }

    fn hmac(secret: &str) -> JwtProvider {
        provider(
            KeySource::HmacSecret(Secret::new(secret)),
            vec![JwtAlgorithm::HS256],
        )
    }

    fn carried(config: &JwtProvider, previous: &Arc<ProviderKeys>) -> Carried {
        let metrics = Arc::new(Metrics::new());
        ProviderKeys::reload(config, Some(previous), &metrics)
            .expect("keys")
            .1
    }

    #[test]
    fn static_keys_carry_over_only_while_they_are_the_same_keys() {
        let metrics = Arc::new(Metrics::new());
        let first = ProviderKeys::new(&hmac("s1"), &metrics).expect("keys");
        let rules_changed = JwtProvider {
            audiences: vec!["other".into()],
            ..hmac("s1")
        };
        assert_eq!(carried(&rules_changed, &first), Carried::Copied);
        assert_eq!(carried(&hmac("s2"), &first), Carried::Fresh);
        let algorithms_changed = JwtProvider {
            algorithms: vec![JwtAlgorithm::HS384],
            ..hmac("s1")
        };
        assert_eq!(carried(&algorithms_changed, &first), Carried::Fresh);
        let issuer_changed = JwtProvider {
            issuer: "https://other.example".into(),
            ..hmac("s1")
        };
        assert_eq!(carried(&issuer_changed, &first), Carried::Fresh);
    }

    /// A JWKS URL on a loopback port that accepts and never answers: every
    /// fetch runs until `fetch_timeout`.
    async fn silent_jwks() -> (tokio::net::TcpListener, JwtProvider) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}/jwks.json");
        (
            listener,
            provider(KeySource::JwksUrl(url), vec![JwtAlgorithm::RS256]),
        )
    }

    async fn fetch_started(keys: &ProviderKeys) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !keys.fetching.load(Ordering::Acquire) {
            assert!(
                Instant::now() < deadline,
                "the start-up fetch never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn fetched_keys_are_shared_while_only_claim_rules_change() {
        let (_jwks, config) = silent_jwks().await;
        let metrics = Arc::new(Metrics::new());
        let first = ProviderKeys::new(&config, &metrics).expect("keys");
        let rules_changed = JwtProvider {
            audiences: vec!["other".into()],
            leeway: Duration::ZERO,
            ..config.clone()
        };
        let (kept, how) =
            ProviderKeys::reload(&rules_changed, Some(&first), &metrics).expect("keys");
        assert_eq!(how, Carried::Shared);
        assert!(Arc::ptr_eq(&kept, &first));
        let moved = JwtProvider {
            key_source: KeySource::JwksUrl("http://127.0.0.1:1/other.json".into()),
            ..config
        };
        assert_eq!(carried(&moved, &first), Carried::Fresh);
    }

    /// New fetch settings: a copy that keeps the cooldown, and that takes
    /// the outcome of the fetch the previous set had in flight rather than
    /// starting its own (guarantee 6: one fetch per `min_refresh_interval`).
    #[tokio::test]
    async fn a_copied_key_set_keeps_the_cooldown_and_adopts_the_fetch_in_flight() {
        let (_jwks, config) = silent_jwks().await;
        let metrics = Arc::new(Metrics::new());
        let first = ProviderKeys::new(&config, &metrics).expect("keys");
        fetch_started(&first).await;
        let slower = JwtProvider {
            refresh_interval: Duration::from_secs(7200),
            ..config
        };
        let (copy, how) = ProviderKeys::reload(&slower, Some(&first), &metrics).expect("keys");
        assert_eq!(how, Carried::Copied);
        assert!(!Arc::ptr_eq(&copy, &first));
        assert_eq!(*lock(&copy.last_attempt), *lock(&first.last_attempt));
        assert!(!copy.cooldown_over(), "the cooldown carried over");
        assert!(copy.fetching.load(Ordering::Acquire), "joins the fetch");

        let mut done = copy.fetched.subscribe();
        tokio::time::timeout(Duration::from_secs(5), done.changed())
            .await
            .expect("the adopted fetch ends within 5 s")
            .expect("fetched channel");
        assert!(!copy.fetching.load(Ordering::Acquire));
        assert!(copy.state.load().last_fetch_failed, "its outcome adopted");
        assert_eq!(*lock(&copy.last_attempt), *lock(&first.last_attempt));
    }
}
