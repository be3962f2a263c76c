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
    jwt_invalid: Option<Invalid>,
    session_invalid: bool,
    unavailable: Option<String>,
}

impl Authenticator {
    pub fn new(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Self> {
        Ok(Authenticator {
            jwt: JwtAuth::new(&config.jwt, metrics)?,
            session: SessionAuth::new(config.sessions.as_ref(), &config.store, metrics)?,
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
            .filter(|p| !p.has_keys())
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
            provider.export_age();
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
            match kind {
                CredentialKind::Jwt => {
                    let Some(jwt) = &self.jwt else { continue };
                    let token = match jwt.token(&parts.headers) {
                        Ok(Some(token)) => token,
                        Ok(None) => continue,
                        Err(ambiguous) => {
                            // Never guess which of two credentials counts.
                            counters.inc(Some(*kind), Outcome::Invalid);
                            if route.auth == AuthMode::Required {
                                return Err(ambiguous);
                            }
                            continue;
                        }
                    };
                    presented = true;
                    match jwt.verify(token).await {
                        Ok(identity) => {
                            counters.inc(Some(*kind), Outcome::Ok);
                            return Ok(Authenticated::Caller {
                                identity,
                                kind: *kind,
                            });
                        }
                        Err(JwtError::Invalid(reason)) => {
                            let outcome = if reason == Invalid::Expired {
                                Outcome::Expired
                            } else {
                                Outcome::Invalid
                            };
                            counters.inc(Some(*kind), outcome);
                            tracing::debug!(route = %route.name, %reason, "JWT refused");
                            failures.jwt_invalid.get_or_insert(reason);
                        }
                        Err(JwtError::Unavailable(reason)) => {
                            counters.inc(Some(*kind), Outcome::Unavailable);
                            failures.unavailable.get_or_insert(reason);
                        }
                    }
                }
                CredentialKind::Session => {
                    let Some(sessions) = &self.session else {
                        continue;
                    };
                    let cookie = match sessions.cookie(&parts.headers) {
                        Ok(Some(cookie)) => cookie,
                        Ok(None) => continue,
                        Err(ambiguous) => {
                            counters.inc(Some(*kind), Outcome::Invalid);
                            if route.auth == AuthMode::Required {
                                return Err(ambiguous);
                            }
                            continue;
                        }
                    };
                    presented = true;
                    match sessions.verify(cookie).await {
                        Ok(identity) => {
                            counters.inc(Some(*kind), Outcome::Ok);
                            return Ok(Authenticated::Caller {
                                identity,
                                kind: *kind,
                            });
                        }
                        Err(SessionError::Invalid(reason)) => {
                            counters.inc(Some(*kind), Outcome::Invalid);
                            tracing::debug!(route = %route.name, %reason, "session refused");
                            failures.session_invalid = true;
                        }
                        Err(SessionError::Unavailable(reason)) => {
                            counters.inc(Some(*kind), Outcome::Unavailable);
                            failures.unavailable.get_or_insert(reason);
                        }
                    }
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
        if let Some(reason) = self.jwt_invalid {
            return Rejection::InvalidToken {
                reason: reason.to_string(),
                redirect,
            };
        }
        if self.session_invalid {
            return Rejection::InvalidSession {
                reason: "session not valid".into(),
                redirect,
            };
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
            jwt_invalid: Some(Invalid::Expired),
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
            jwt_invalid: Some(Invalid::Expired),
            unavailable: Some("JWKS down".into()),
            ..Failures::default()
        };
        let rejection = down.into_rejection(location);
        assert!(matches!(rejection, Rejection::Unavailable(_)));
        assert_eq!(rejection.into_response().status(), 503);
    }
}
