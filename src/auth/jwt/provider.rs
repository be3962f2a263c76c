//! One provider's keys: loaded once (file, HMAC secret) or fetched and kept
//! fresh (JWKS URL, OIDC discovery).
//!
//! Guarantee 6: an unknown `kid` triggers at most one fetch per
//! `min_refresh_interval` (the start-up fetch counts); concurrent misses wait
//! for the same fetch, each for at most `fetch_timeout`. Fetches run in their
//! own task, so a request that stops waiting never cancels one.
//! SPEC §3 `max_stale`: after the last successful fetch, keys are served for
//! that long while fetches fail; then the provider is unavailable (503).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::fetch::{FetchError, Fetcher};
use super::keys::{self, VerifyingKey};
use crate::boxed::boxed;
use crate::config::{JwtAlgorithm, JwtProvider, KeySource};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{ProviderLabel, ProviderResult};

/// Why no key could be offered for a token.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Keys are known, none matches: the token is invalid (401).
    Unknown,
    /// No trustworthy key set right now (503).
    Unavailable(String),
}

struct KeyState {
    keys: Vec<Arc<VerifyingKey>>,
    last_success: Option<Instant>,
    last_fetch_failed: bool,
    /// Bumped whenever a refresh drops a key, so cached verdicts made with
    /// it stop counting.
    epoch: u64,
}

pub struct ProviderKeys {
    pub config: JwtProvider,
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
        let provider = Arc::new(ProviderKeys {
            config: config.clone(),
            state: ArcSwap::from_pointee(KeyState {
                keys,
                last_success: None,
                last_fetch_failed: false,
                epoch: 0,
            }),
            fetcher,
            fetching: AtomicBool::new(false),
            fetched: watch::channel(0).0,
            last_attempt: Mutex::new(None),
            discovered: Mutex::new(None),
            max_age: Mutex::new(None),
            metrics: metrics.clone(),
        });
        if provider.fetcher.is_some() {
            spawn_refresher(Arc::downgrade(&provider));
        }
        Ok(provider)
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
            .is_some_and(|t| t.elapsed() <= self.config.max_stale)
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
        KeyError::Unavailable(format!("provider {:?} has no fresh keys", self.config.name))
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
            Err(KeyError::Unavailable(format!(
                "provider {:?}: key refetch failed",
                self.config.name
            )))
        } else {
            Err(KeyError::Unknown)
        }
    }

    fn cooldown_over(&self) -> bool {
        let last = *self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
        last.is_none_or(|t| t.elapsed() >= self.config.min_refresh_interval)
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
        match tokio::time::timeout(self.config.fetch_timeout, done.changed()).await {
            Ok(_) => Ok(true),
            Err(_) => Err(KeyError::Unavailable(format!(
                "provider {:?}: key fetch still running after {:?}",
                self.config.name, self.config.fetch_timeout
            ))),
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
        *self.last_attempt.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
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
            provider: self.config.name.clone(),
            result,
        };
        match result {
            Ok((keys, max_age)) => {
                let dropped = old
                    .keys
                    .iter()
                    .any(|k| !keys.iter().any(|n| n.fingerprint == k.fingerprint));
                tracing::debug!(provider = %self.config.name, keys = keys.len(), "keys fetched");
                self.state.store(Arc::new(KeyState {
                    keys,
                    last_success: Some(Instant::now()),
                    last_fetch_failed: false,
                    epoch: old.epoch + u64::from(dropped),
                }));
                *self.max_age.lock().unwrap_or_else(|p| p.into_inner()) = max_age;
                self.metrics.jwks_refresh.get_or_create(&labels("ok")).inc();
            }
            Err(reason) => {
                tracing::warn!(provider = %self.config.name, %reason, "key fetch failed");
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

    async fn fetch_keys(&self) -> Result<(Vec<Arc<VerifyingKey>>, Option<Duration>), String> {
        let Some(fetcher) = &self.fetcher else {
            return Err("static keys are not fetched".into());
        };
        let url = match &self.config.key_source {
            KeySource::JwksUrl(url) => url.clone(),
            _ => {
                let known = self
                    .discovered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                match known {
                    Some(url) => url,
                    None => {
                        let url = fetcher
                            .discover_jwks_uri(&self.config.issuer)
                            .await
                            .map_err(|e| e.to_string())?;
                        *self.discovered.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(url.clone());
                        url
                    }
                }
            }
        };
        let fetched = fetcher.get(&url).await.map_err(|e: FetchError| {
            // A stale discovered URL is looked up again next time.
            *self.discovered.lock().unwrap_or_else(|p| p.into_inner()) = None;
            e.to_string()
        })?;
        let keys = keys::parse_jwks(&fetched.body, &self.config.algorithms)
            .map_err(|e| format!("{url}: {e}"))?;
        Ok((keys, fetched.max_age))
    }

    /// Updates `wristband_jwks_age_seconds` (called when metrics are read).
    pub fn export_age(&self) {
        let age = self.age().map_or(f64::NAN, |a| a.as_secs_f64());
        self.metrics
            .jwks_age
            .get_or_create(&ProviderLabel {
                provider: self.config.name.clone(),
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
/// `min_refresh_interval`; after a failure, retries at that minimum.
fn spawn_refresher(provider: Weak<ProviderKeys>) {
    tokio::spawn(async move {
        loop {
            let next = {
                let Some(provider) = provider.upgrade() else {
                    return;
                };
                let mut done = provider.fetched.subscribe();
                let started = !provider.fetching.load(Ordering::Acquire) && provider.start_fetch();
                if started || provider.fetching.load(Ordering::Acquire) {
                    let _ = done.changed().await;
                }
                let config = &provider.config;
                if provider.state.load().last_fetch_failed {
                    config.min_refresh_interval
                } else {
                    config
                        .refresh_interval
                        .min(
                            provider
                                .max_age
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .unwrap_or(config.refresh_interval),
                        )
                        .max(config.min_refresh_interval)
                }
            };
            tokio::time::sleep(next).await;
        }
    });
}
