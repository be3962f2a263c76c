//! Authentication: who is calling (SPEC §1, §3 "Authentication order").
//!
//! The route's `accept` kinds are tried in order; every kind whose credential
//! is present is checked, and the first valid one gives the identity. When
//! none is valid: 503 if a kind could not be checked because its keys or
//! store were unavailable, else 401 — `invalid_token` if a JWT was among the
//! invalid credentials, `invalid_session` for a session, `unauthenticated`
//! when nothing was presented. `optional` routes never reject; `public`
//! routes never look.

pub mod counters;
pub mod credentials;
pub mod csrf;
pub mod jwt;
pub mod policy;
pub mod redirect;
pub mod session;

use std::sync::Arc;

use http::HeaderMap;
use http::request::Parts;

use crate::config::{AuthMode, Config, CredentialKind, RouteConfig};
use crate::error::Rejection;
use crate::identity::Identity;
use crate::reuse::Reuse;
use crate::telemetry::Metrics;
use counters::{AuthCounters, Outcome};
use jwt::{Invalid, JwtAuth, JwtError};
use redirect::Site;
use session::{SessionAuth, SessionError};

/// What authentication concluded, before policy.
#[derive(Debug)]
pub enum Authenticated {
    /// `public` route: credentials were not looked at.
    NotChecked,
    /// `optional` route without a valid credential: forwarded anonymously.
    Anonymous,
    /// The identity is shared with the verified-token cache: a cache hit
    /// costs no copy.
    Caller {
        identity: Arc<Identity>,
        kind: CredentialKind,
    },
}

impl Authenticated {
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Authenticated::Caller { identity, .. } => Some(identity),
            Authenticated::NotChecked | Authenticated::Anonymous => None,
        }
    }
}

/// The credential kinds of one config.
pub struct Authenticator {
    pub jwt: Option<Arc<JwtAuth>>,
    pub session: Option<Arc<SessionAuth>>,
}

/// What the kinds that did not vouch for the caller said.
#[derive(Default)]
struct Failures {
    jwt_invalid: bool,
    session_invalid: bool,
    /// The first refusal's reason, for the log line of the rejection.
    reason: Option<String>,
    unavailable: Option<String>,
}

/// What checking one credential kind found.
enum Checked {
    Absent,
    Ambiguous(Rejection),
    Valid(Arc<Identity>),
    Invalid(Refusal),
    Unavailable(String),
}

struct Refusal {
    reason: String,
    expired: bool,
}

impl From<JwtError> for Checked {
    fn from(error: JwtError) -> Self {
        match error {
            JwtError::Invalid(reason) => Checked::Invalid(Refusal {
                expired: reason == Invalid::Expired,
                reason: reason.to_string(),
            }),
            JwtError::Unavailable(reason) => Checked::Unavailable(reason),
        }
    }
}

impl From<SessionError> for Checked {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Invalid(reason) => Checked::Invalid(Refusal {
                reason,
                expired: false,
            }),
            SessionError::Unavailable(reason) => Checked::Unavailable(reason),
        }
    }
}

/// The one shape of every kind: find the credential, then verify it.
async fn check<'h, Fut, E>(
    found: Result<Option<&'h str>, Rejection>,
    verify: impl FnOnce(&'h str) -> Fut,
) -> Checked
where
    Fut: std::future::Future<Output = Result<Arc<Identity>, E>>,
    E: Into<Checked>,
{
    match found {
        Err(ambiguous) => Checked::Ambiguous(ambiguous),
        Ok(None) => Checked::Absent,
        Ok(Some(credential)) => match verify(credential).await {
            Ok(identity) => Checked::Valid(identity),
            Err(error) => error.into(),
        },
    }
}

impl Authenticator {
    /// The kinds `config` configures; on a reload, `previous` gives the
    /// keys, caches and store connection that still hold.
    pub fn new(
        config: &Config,
        metrics: &Arc<Metrics>,
        previous: Option<&Authenticator>,
        reuse: &mut Reuse,
    ) -> anyhow::Result<Self> {
        Ok(Authenticator {
            jwt: JwtAuth::new(
                &config.jwt,
                metrics,
                previous.and_then(|p| p.jwt.as_deref()),
                reuse,
            )?,
            session: SessionAuth::new(
                config.sessions.as_ref(),
                &config.store,
                metrics,
                previous.and_then(|p| p.session.as_deref()),
                reuse,
            )?,
        })
    }

    /// No credential kind at all (tests of the stages around this one).
    pub fn disabled() -> Self {
        Authenticator {
            jwt: None,
            session: None,
        }
    }

    /// The names of providers without usable keys, for `/readyz`.
    pub fn not_ready(&self) -> Vec<String> {
        let mut missing: Vec<String> = self
            .jwt
            .iter()
            .flat_map(|jwt| jwt.providers.iter())
            .filter(|p| !p.keys.has_keys())
            .map(|p| format!("jwt provider {}", p.config.name))
            .collect();
        if self.session.as_ref().is_some_and(|s| !s.is_ready()) {
            missing.push("session store".into());
        }
        missing
    }

    /// Refreshes gauges that are computed, not counted.
    pub fn export_gauges(&self) {
        for provider in self.jwt.iter().flat_map(|jwt| jwt.providers.iter()) {
            provider.keys.export_age();
        }
    }

    /// Runs the route's credential kinds in order. `site` is what the
    /// client addressed, for the login redirect of a navigational request.
    pub async fn authenticate(
        &self,
        route: &RouteConfig,
        counters: &AuthCounters,
        parts: &Parts,
        site: &Site<'_>,
    ) -> Result<Authenticated, Rejection> {
        if route.auth == AuthMode::Public {
            return Ok(Authenticated::NotChecked);
        }
        let mut failures = Failures::default();
        let mut presented = false;
        for kind in &route.accept {
            let checked = match kind {
                CredentialKind::Jwt => match &self.jwt {
                    Some(jwt) => check(jwt.token(&parts.headers), |t| jwt.verify(t)).await,
                    None => Checked::Absent,
                },
                CredentialKind::Session => match &self.session {
                    Some(sessions) => {
                        check(sessions.cookie(&parts.headers), |c| sessions.verify(c)).await
                    }
                    None => Checked::Absent,
                },
            };
            match checked {
                Checked::Absent => {}
                Checked::Ambiguous(rejection) => {
                    // Never guess which of two credentials counts.
                    counters.inc(Some(*kind), Outcome::Invalid);
                    if route.auth == AuthMode::Required {
                        return Err(rejection);
                    }
                }
                Checked::Valid(identity) => {
                    counters.inc(Some(*kind), Outcome::Ok);
                    return Ok(Authenticated::Caller {
                        identity,
                        kind: *kind,
                    });
                }
                Checked::Invalid(failure) => {
                    presented = true;
                    let outcome = if failure.expired {
                        Outcome::Expired
                    } else {
                        Outcome::Invalid
                    };
                    counters.inc(Some(*kind), outcome);
                    tracing::debug!(route = %route.name, kind = kind.as_str(), reason = %failure.reason, "credential refused");
                    match kind {
                        CredentialKind::Jwt => failures.jwt_invalid = true,
                        CredentialKind::Session => failures.session_invalid = true,
                    }
                    failures.reason.get_or_insert(failure.reason);
                }
                Checked::Unavailable(reason) => {
                    presented = true;
                    counters.inc(Some(*kind), Outcome::Unavailable);
                    failures.unavailable.get_or_insert(reason);
                }
            }
        }
        if route.auth == AuthMode::Optional {
            return Ok(Authenticated::Anonymous);
        }
        if !presented {
            counters.inc(route.accept.first().copied(), Outcome::Missing);
        }
        Err(failures.into_rejection(|| redirect::location(route, parts, site)))
    }

    /// `forward_token = false` / `forward_cookie = false`.
    pub fn remove_unforwarded_credentials(&self, headers: &mut HeaderMap) {
        if let Some(jwt) = &self.jwt {
            jwt.remove_token(headers);
        }
        if let Some(sessions) = &self.session {
            sessions.remove_cookie(headers);
        }
    }
}

impl Failures {
    /// The rejection; `redirect` gives the login `Location` for the 401s
    /// (never for a 503: the caller did nothing wrong, and a login would
    /// not help).
    fn into_rejection(self, redirect: impl FnOnce() -> Option<String>) -> Rejection {
        if let Some(reason) = self.unavailable {
            return Rejection::Unavailable(reason);
        }
        let redirect = redirect();
        let reason = self.reason.unwrap_or_default();
        // SPEC §6a: invalid_token when a JWT was among the invalid ones.
        if self.jwt_invalid {
            return Rejection::InvalidToken { reason, redirect };
        }
        if self.session_invalid {
            return Rejection::InvalidSession { reason, redirect };
        }
        Rejection::Unauthenticated { redirect }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> Option<String> {
        Some("https://login.example.com/?rd=x".into())
    }

    #[test]
    fn every_401_carries_the_redirect_and_a_503_never_does() {
        let missing = Failures::default().into_rejection(location);
        assert!(matches!(
            missing,
            Rejection::Unauthenticated { redirect: Some(_) }
        ));
        let jwt = Failures {
            jwt_invalid: true,
            ..Failures::default()
        };
        assert!(matches!(
            jwt.into_rejection(location),
            Rejection::InvalidToken {
                redirect: Some(_),
                ..
            }
        ));
        let session = Failures {
            session_invalid: true,
            ..Failures::default()
        };
        assert!(matches!(
            session.into_rejection(location),
            Rejection::InvalidSession {
                redirect: Some(_),
                ..
            }
        ));
        let down = Failures {
            jwt_invalid: true,
            unavailable: Some("JWKS down".into()),
            ..Failures::default()
        };
        let rejection = down.into_rejection(location);
        assert!(matches!(rejection, Rejection::Unavailable(_)));
        assert_eq!(rejection.into_response().status(), 503);
    }
}
