//! The `jwt` credential kind: a bearer token (or JWT cookie) verified
//! against its issuer's keys, with the rules of RFC 8725 and SPEC §5.4.
//!
//! Order of checks: size, structure and header tricks (`token`), the issuer
//! picks the provider, the provider's allow-list and the key's bound
//! algorithms pick the key (`provider`, `keys`), aws-lc-rs verifies the
//! signature with the key parsed once at load, and `claims` checks every
//! claim rule.
//! A verified-token cache may skip only the signature: the claims are
//! checked on every request.

mod claims;
mod fetch;
mod keys;
mod provider;
mod token;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

pub use provider::{Carried, KeyError, KeysUnavailable, ProviderKeys, Unusable};
use token::Claims;

use super::revocation::{self, Refusal, Revocations};
use super::{credentials, unix_now};
use crate::config::{JwtConfig, JwtProvider};
use crate::identity::Identity;
use crate::reuse::Reuse;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::CacheLabel;
use prometheus_client::metrics::counter::Counter;

/// Why a presented token is not valid (always 401; the reason is logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("token larger than jwt.max_token_bytes")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm refused: {0}")]
    Algorithm(&'static str),
    #[error("header parameter {0:?} is never honoured")]
    ForbiddenHeader(&'static str),
    #[error("no provider for this issuer")]
    UnknownIssuer,
    #[error("no key for this kid and alg")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("claim check failed: {0}")]
    Claim(&'static str),
    /// SPEC §9: valid, and taken back.
    #[error("revoked")]
    Revoked(#[source] Refusal),
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// The keys could not be had: 503, never a pass.
    #[error(transparent)]
    Unavailable(#[from] KeysUnavailable),
    /// The revoked set is not loaded yet: 503, never a pass.
    #[error("revocations not loaded yet")]
    RevocationsUnknown,
}

impl From<KeyError> for JwtError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Unknown => JwtError::Invalid(Invalid::UnknownKey),
            KeyError::Unavailable(reason) => JwtError::Unavailable(reason),
        }
    }
}

/// A token that verified once, by the hash of its text.
struct Verified {
    provider: usize,
    identity: Arc<Identity>,
    /// The provider's key epoch when it verified (see `ProviderKeys::epoch`).
    epoch: u64,
}

/// Upper bound on how long a verdict is remembered; `exp` is re-checked on
/// every use anyway.
const CACHE_TTL: Duration = Duration::from_secs(300);
const JWT_CACHE: CacheLabel = CacheLabel { cache: "jwt" };

/// One configured provider: its claim rules, and the key set it verifies
/// signatures with, which a reload may carry over (`ProviderKeys::reload`).
pub struct Provider {
    pub config: JwtProvider,
    pub keys: Arc<ProviderKeys>,
}

pub struct JwtAuth {
    header: bool,
    cookie: Option<String>,
    max_token_bytes: usize,
    pub providers: Vec<Provider>,
    by_issuer: HashMap<String, usize>,
    /// `None` with `verified_cache_size = 0`.
    verified: Option<VerifiedCache>,
    /// `[revocation]`: checked after the claims, cached verdicts included.
    revocations: Option<Arc<Revocations>>,
    cache_hits: Counter,
    cache_misses: Counter,
}

type VerifiedCache = moka::sync::Cache<[u8; 32], Arc<Verified>>;

impl JwtAuth {
    /// `None` when no provider is configured: the kind is off. On a reload,
    /// `previous` passes on the keys of every provider whose key settings
    /// are unchanged, and its verified-token cache when it still holds.
    pub fn new(
        config: &JwtConfig,
        metrics: &Arc<Metrics>,
        previous: Option<&JwtAuth>,
        revocations: Option<Arc<Revocations>>,
        reuse: &mut Reuse,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        if config.providers.is_empty() {
            return Ok(None);
        }
        let mut carried = Vec::with_capacity(config.providers.len());
        let mut providers = Vec::with_capacity(config.providers.len());
        for wanted in &config.providers {
            let old = previous.and_then(|p| p.provider(&wanted.issuer));
            let (keys, how) = ProviderKeys::reload(wanted, old.map(|o| &o.keys), metrics)?;
            reuse.record(
                how != Carried::Fresh,
                format!("jwt keys of {}", wanted.name),
            );
            carried.push(how);
            providers.push(Provider {
                config: wanted.clone(),
                keys,
            });
        }
        let keep_verdicts = previous.is_some_and(|p| p.verdicts_hold(config, &carried));
        let verified = match previous {
            Some(previous) if keep_verdicts => previous.verified.clone(),
            _ => verified_cache(config.verified_cache_size),
        };
        if verified.is_some() {
            reuse.record(keep_verdicts, "jwt verified-token cache");
        }
        let by_issuer = config
            .providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.issuer.clone(), i))
            .collect();
        Ok(Some(Arc::new(JwtAuth {
            header: config.header,
            cookie: config.cookie.clone(),
            max_token_bytes: config.max_token_bytes,
            providers,
            by_issuer,
            verified,
            revocations,
            cache_hits: metrics.cache_hits.get_or_create(&JWT_CACHE).clone(),
            cache_misses: metrics.cache_misses.get_or_create(&JWT_CACHE).clone(),
        })))
    }

    fn provider(&self, issuer: &str) -> Option<&Provider> {
        self.by_issuer.get(issuer).map(|&i| &self.providers[i])
    }

    /// Whether this config's verified-token cache can serve `config`: a
    /// verdict names its provider by index and vouches only for the
    /// signature, made with that provider's keys. So: same size, the same
    /// providers in the same order, each still holding the keys it had
    /// (`carried`, by new index). Claims are checked on every hit anyway,
    /// against the config of the moment.
    fn verdicts_hold(&self, config: &JwtConfig, carried: &[Carried]) -> bool {
        let size = self
            .verified
            .as_ref()
            .and_then(|c| c.policy().max_capacity());
        size == Some(config.verified_cache_size)
            && self.providers.len() == config.providers.len()
            && self
                .providers
                .iter()
                .zip(&config.providers)
                .all(|(old, new)| old.config.issuer == new.issuer)
            && carried.iter().all(|how| *how != Carried::Fresh)
    }

    /// The presented token: the `Authorization` header first, then the JWT
    /// cookie (SPEC §6a).
    pub fn token<'h>(
        &self,
        headers: &'h HeaderMap,
    ) -> Result<Option<&'h str>, credentials::Ambiguous> {
        if self.header
            && let Some(token) = credentials::bearer_token(headers)?
        {
            return Ok(Some(token));
        }
        match &self.cookie {
            Some(name) => credentials::cookie(headers, name),
            None => Ok(None),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, JwtError> {
        if token.len() > self.max_token_bytes {
            return Err(Invalid::TooLarge.into());
        }
        let now = unix_now();
        let digest = self.verified.as_ref().map(|_| sha256(token));
        if let (Some(cache), Some(digest)) = (&self.verified, &digest) {
            if let Some(hit) = cache.get(digest) {
                let provider = &self.providers[hit.provider];
                // Stale keys (past `max_stale`) refuse cached verdicts too;
                // the entry is kept, to count again once a fetch succeeds.
                if hit.epoch == provider.keys.usable_epoch()? {
                    self.cache_hits.inc();
                    claims::check(&provider.config, hit.identity.claims(), now)?;
                    self.not_revoked(&hit.identity)?;
                    return Ok(hit.identity.clone());
                }
                cache.invalidate(digest);
            }
            self.cache_misses.inc();
        }

        let unverified = token::parse(token)?;
        let index = *unverified
            .issuer()
            .and_then(|iss| self.by_issuer.get(iss))
            .ok_or(Invalid::UnknownIssuer)?;
        let provider = &self.providers[index];
        if !provider.config.algorithms.contains(&unverified.alg) {
            return Err(Invalid::Algorithm("not in the provider's algorithms").into());
        }
        let epoch = provider.keys.epoch();
        let candidates = provider
            .keys
            .keys_for(unverified.kid.as_deref(), unverified.alg)
            .await?;
        // Without a kid, a few keys may fit; never try an unbounded number.
        let verified = candidates.iter().take(3).any(|key| {
            key.verify(
                unverified.alg,
                unverified.signing_input.as_bytes(),
                &unverified.signature,
            )
        });
        if !verified {
            return Err(Invalid::Signature.into());
        }
        // One rule set for cached and uncached tokens alike.
        claims::check(&provider.config, &unverified.claims, now)?;
        let identity = identity(unverified.claims)?;
        self.not_revoked(&identity)?;
        if let (Some(cache), Some(digest)) = (&self.verified, digest) {
            cache.insert(
                digest,
                Arc::new(Verified {
                    provider: index,
                    identity: identity.clone(),
                    epoch,
                }),
            );
        }
        Ok(identity)
    }
}

impl JwtAuth {
    /// SPEC §9: neither its `jti` nor, before its `iat`, its `sub`.
    fn not_revoked(&self, identity: &Identity) -> Result<(), JwtError> {
        let Some(revocations) = &self.revocations else {
            return Ok(());
        };
        let claims = identity.claims();
        // A `jti` that is not a string (RFC 7519 says it is) is compared as
        // its JSON text, never skipped: `wristband revoke --jti 42` holds.
        let jti = claims.get("jti").map(|v| match v {
            serde_json::Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
            other => std::borrow::Cow::Owned(other.to_string()),
        });
        // A fractional or odd `iat` was refused by the claim checks, or is
        // absent: either way, as `claims::check` reads it.
        let iat = claims.get("iat").and_then(|v| {
            v.as_u64().or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
        });
        match revocations.check(jti.as_deref(), identity.sub(), iat) {
            Ok(()) => Ok(()),
            Err(revocation::Check::Refused(why)) => Err(Invalid::Revoked(why).into()),
            Err(revocation::Check::Unknown) => Err(JwtError::RevocationsUnknown),
        }
    }
}

/// `None` for size 0: every token is verified.
fn verified_cache(size: u64) -> Option<VerifiedCache> {
    (size > 0).then(|| {
        moka::sync::Cache::builder()
            .max_capacity(size)
            .time_to_live(CACHE_TTL)
            .build()
    })
}

fn identity(claims: Claims) -> Result<Arc<Identity>, JwtError> {
    Identity::from_claims(claims)
        .map(Arc::new)
        .ok_or_else(|| Invalid::Claim("no sub").into())
}

fn sha256(text: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
