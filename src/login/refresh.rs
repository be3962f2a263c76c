//! SPEC §7 "Refresh": a session whose last refresh is older than
//! `refresh_interval` is re-validated with the IdP by one request on one
//! instance: a per-session lock (`SET NX PX`) picks it, and the session is
//! read again under the lock, so a refresh another request just finished is
//! not repeated (rotating refresh tokens must be used once). Others go on
//! with the session as it is, which stays valid meanwhile.
//!
//! `invalid_grant` ends the session; an IdP that cannot be asked leaves it
//! as it is (logged, counted). A refresh never extends the session.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::idp::TokenAnswer;
use super::{Login, sha256_hex, unix_now};
use crate::auth::session::refresh::{Refreshed, Refresher};
use crate::auth::session::{ACCESS_TOKEN_FIELD, ID_TOKEN_FIELD};
use crate::auth::session::{REFRESH_TOKEN_FIELD, REFRESHED_FIELD};
use crate::telemetry::logging::chain;

/// Bound on one refresh: the lock outlives an IdP exchange that times out.
const LOCK_TTL: Duration = Duration::from_secs(15);
/// The pause before a session whose refresh failed is tried again.
const FAILED_BACKOFF: Duration = Duration::from_secs(2);

/// What the refresh did, for the log and the counters.
enum Outcome {
    NotDue,
    Refreshed,
    Ended(&'static str),
    Failed(String),
}

impl Refresher for Login {
    fn due(&self, refreshed: u64) -> bool {
        unix_now() >= refreshed.saturating_add(self.config.refresh_interval.as_secs())
    }

    fn refresh<'a>(
        &'a self,
        id: &'a str,
        sub: &'a str,
    ) -> Pin<Box<dyn Future<Output = Refreshed> + Send + 'a>> {
        Box::pin(async move {
            let lock = format!("login:refresh:{}", sha256_hex(id));
            match self.store.lock(&lock, LOCK_TTL).await {
                Ok(true) => {}
                // Someone refreshes it now, or the store is down: either
                // way this request goes on with the session it has.
                Ok(false) | Err(_) => return Refreshed::Kept,
            }
            let outcome = self.refresh_locked(id, sub).await;
            // After a failure the lock stays for FAILED_BACKOFF: an IdP
            // that is down is asked (and waited for) once per session per
            // back-off, not on every request.
            let released = if matches!(outcome, Outcome::Failed(_)) {
                self.store.put(&lock, "1", FAILED_BACKOFF).await
            } else {
                self.store.remove(&lock).await
            };
            if let Err(error) = released {
                tracing::debug!(%error, "login: refresh lock left to expire");
            }
            match outcome {
                Outcome::NotDue => Refreshed::Kept,
                Outcome::Refreshed => {
                    self.counters.refreshed.inc();
                    Refreshed::Kept
                }
                Outcome::Ended(why) => {
                    self.counters.refresh_failed.inc();
                    tracing::info!(reason = why, "login: session ended by refresh");
                    Refreshed::Ended
                }
                Outcome::Failed(why) => {
                    self.counters.refresh_failed.inc();
                    tracing::warn!(reason = %why, "login: refresh failed; the session stays as it is");
                    Refreshed::Kept
                }
            }
        })
    }
}

impl Login {
    async fn refresh_locked(&self, id: &str, sub: &str) -> Outcome {
        let fields = match self.store.fields(id).await {
            Ok(Some(fields)) => fields,
            Ok(None) => return Outcome::Ended("the session is gone"),
            Err(error) => return Outcome::Failed(error.to_string()),
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let refreshed = field(REFRESHED_FIELD)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if !self.due(refreshed) {
            return Outcome::NotDue;
        }
        let Some(sealed) = field(REFRESH_TOKEN_FIELD) else {
            return Outcome::NotDue;
        };
        // A token no configured key opens cannot be refreshed, ever: the
        // session ends rather than live on unchecked.
        let Ok(token) = self
            .sealer
            .open(REFRESH_TOKEN_FIELD, sealed)
            .map(String::from_utf8)
        else {
            return self.end(id, sub, "the refresh token does not open").await;
        };
        let Ok(token) = token else {
            return self.end(id, sub, "the refresh token is not text").await;
        };
        let discovered = match self.idp.discovered().await {
            Ok(d) => d,
            Err(error) => return Outcome::Failed(chain(&error)),
        };
        let grant = [
            ("grant_type", "refresh_token"),
            ("refresh_token", token.as_str()),
        ];
        let tokens = match self.idp.token(&discovered, &grant).await {
            Ok(TokenAnswer::Tokens(tokens)) => tokens,
            Ok(TokenAnswer::Refused(code)) if code == "invalid_grant" => {
                return self
                    .end(id, sub, "the IdP refused the refresh token (invalid_grant)")
                    .await;
            }
            Ok(TokenAnswer::Refused(code)) => {
                return Outcome::Failed(format!("the IdP answered {}", super::printable(&code)));
            }
            Err(error) => return Outcome::Failed(chain(&error)),
        };
        let mut update = vec![(REFRESHED_FIELD.to_owned(), unix_now().to_string())];
        let sealed = [
            (REFRESH_TOKEN_FIELD, tokens.refresh_token.as_deref()),
            (ACCESS_TOKEN_FIELD, tokens.access_token.as_deref()),
            (ID_TOKEN_FIELD, tokens.id_token.as_deref()),
        ];
        for (name, token) in sealed {
            if let Some(token) = token {
                match self.sealer.seal(name, token.as_bytes()) {
                    Ok(value) => update.push((name.to_owned(), value)),
                    Err(_) => return Outcome::Failed("sealing a token failed".into()),
                }
            }
        }
        match self.store.update(id, update).await {
            Ok(true) => Outcome::Refreshed,
            Ok(false) => Outcome::Ended("the session ended during the refresh"),
            // The IdP rotated the refresh token and the new one is lost:
            // the next refresh will end the session (invalid_grant).
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }

    async fn end(&self, id: &str, sub: &str, why: &'static str) -> Outcome {
        // This request is refused either way: fail closed.
        if let Err(error) = self.store.end(id, sub).await {
            tracing::warn!(%error, reason = why, "login: ending the session failed");
        }
        Outcome::Ended(why)
    }
}
