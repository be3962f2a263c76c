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
pub mod error;
pub mod jwt;
pub mod policy;
pub mod redirect;
pub mod revocation;
pub mod session;

use std::sync::Arc;

use http::request::Parts;

use crate::config::{AuthMode, Config, CredentialKind, RouteConfig};
use crate::identity::Identity;
use crate::reuse::Reuse;
use crate::telemetry::Metrics;
use crate::telemetry::logging::chain;
use counters::{AuthOutcome, AuthRecord, Outcome};
use credentials::{Ambiguous, Unforwarded};
use error::{AuthError, Unavailable};
use jwt::{Invalid, JwtAuth, JwtError};
use redirect::Site;
use revocation::Revocations;
use session::{SessionAuth, SessionError, SessionInvalid};

/// Seconds since the epoch: the clock of token and session times (`exp`,
/// `iat`, revocations, login refreshes). 0 if the clock is before 1970.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What authentication concluded, before policy.
#[derive(Debug)]
pub enum Authenticated {
    /// `public` route: credentials were not looked at.
    NotChecked,
    /// `optional` route without a valid credential: forwarded anonymously.
    /// `refused` says what was wrong with the one presented, if any.
    Anonymous { refused: Option<AuthOutcome> },
    /// The identity is shared with the verified-token cache: a cache hit
    /// costs no copy.
    Caller {
        identity: Arc<Identity>,
        kind: CredentialKind,
    },
}

impl Authenticated {
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        match self {
            Authenticated::Caller { identity, .. } => Some(identity),
            Authenticated::NotChecked | Authenticated::Anonymous { .. } => None,
        }
    }

    /// What the access log and `wristband_auth_total` record.
    pub fn record(&self) -> AuthRecord {
        match self {
            Authenticated::NotChecked => AuthRecord::Public,
            Authenticated::Anonymous { refused } => AuthRecord::Anonymous(*refused),
            Authenticated::Caller { kind, .. } => AuthRecord::Decided(AuthOutcome {
                kind: Some(*kind),
                outcome: Outcome::Ok,
            }),
        }
    }
}

/// The credential kinds of one config.
pub struct Authenticator {
    pub jwt: Option<Arc<JwtAuth>>,
    pub session: Option<Arc<SessionAuth>>,
    /// `[revocation]`: what the JWT check consults and `POST /revoke` writes.
    pub revocations: Option<Arc<Revocations>>,
    /// What `forward_token = false` / `forward_cookie = false` keep from
    /// the upstream.
    pub unforwarded: Unforwarded,
    /// `[login] login_path`, where `on_unauthenticated = "login"` sends
    /// a browser.
    login_path: Option<String>,
}

/// What the kinds that did not vouch for the caller said.
#[derive(Default)]
struct Failures {
    ambiguous: Option<(Ambiguous, CredentialKind)>,
    jwt: Option<Invalid>,
    session: Option<SessionInvalid>,
    unavailable: Option<Unavailable>,
}

/// What checking one credential kind found.
enum Checked {
    Absent,
    Ambiguous(Ambiguous),
    Valid(Arc<Identity>),
    Invalid(Refused),
    Unavailable(Unavailable),
}

enum Refused {
    Token(Invalid),
    Session(SessionInvalid),
}

impl From<JwtError> for Checked {
    fn from(error: JwtError) -> Self {
        match error {
            JwtError::Invalid(reason) => Checked::Invalid(Refused::Token(reason)),
            JwtError::Unavailable(keys) => Checked::Unavailable(keys.into()),
            JwtError::RevocationsUnknown => Checked::Unavailable(Unavailable::Revocations),
        }
    }
}

impl From<SessionError> for Checked {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Invalid(reason) => Checked::Invalid(Refused::Session(reason)),
            SessionError::Unavailable(store) => Checked::Unavailable(store.into()),
        }
    }
}

/// The one shape of every kind: find the credential, then verify it.
async fn check<'h, Fut, E>(
    found: Result<Option<&'h str>, Ambiguous>,
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
        let revocations = Revocations::new(
            config,
            metrics,
            previous.and_then(|p| p.revocations.as_deref()),
            reuse,
        )?;
        Ok(Authenticator {
            jwt: JwtAuth::new(
                &config.jwt,
                metrics,
                previous.and_then(|p| p.jwt.as_deref()),
                revocations.clone(),
                reuse,
            )?,
            revocations,
            session: SessionAuth::new(
                config.sessions.as_ref(),
                &config.store,
                metrics,
                previous.and_then(|p| p.session.as_deref()),
                reuse,
            )?,
            unforwarded: Unforwarded::of(config),
            login_path: config.login.as_ref().map(|l| l.login_path.clone()),
        })
    }

    /// No credential kind at all (tests of the stages around this one).
    pub fn disabled() -> Self {
        Authenticator {
            jwt: None,
            session: None,
            revocations: None,
            unforwarded: Unforwarded::default(),
            login_path: None,
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
        if self.revocations.as_ref().is_some_and(|r| !r.is_ready()) {
            missing.push("revocations".into());
        }
        missing
    }

    /// Refreshes gauges that are computed, not counted.
    pub fn export_gauges(&self) {
        for provider in self.jwt.iter().flat_map(|jwt| jwt.providers.iter()) {
            provider.keys.export_age();
        }
        if let Some(revocations) = &self.revocations {
            revocations.export_gauges();
        }
    }

    /// Runs the route's credential kinds in order. `site` is what the
    /// client addressed, for the login redirect of a navigational request.
    pub async fn authenticate(
        &self,
        route: &RouteConfig,
        parts: &Parts,
        site: &Site<'_>,
    ) -> Result<Authenticated, AuthError> {
        if route.auth == AuthMode::Public {
            return Ok(Authenticated::NotChecked);
        }
        let mut failures = Failures::default();
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
                Checked::Ambiguous(ambiguous) => {
                    // Never guess which of two credentials counts.
                    if route.auth == AuthMode::Required {
                        return Err(AuthError::Ambiguous(ambiguous, *kind));
                    }
                    failures.ambiguous.get_or_insert((ambiguous, *kind));
                }
                Checked::Valid(identity) => {
                    return Ok(Authenticated::Caller {
                        identity,
                        kind: *kind,
                    });
                }
                Checked::Invalid(Refused::Token(reason)) => {
                    failures.jwt.get_or_insert(reason);
                }
                Checked::Invalid(Refused::Session(reason)) => {
                    failures.session.get_or_insert(reason);
                }
                Checked::Unavailable(why) => {
                    failures.unavailable.get_or_insert(why);
                }
            }
        }
        let first = route.accept.first().copied();
        if route.auth == AuthMode::Optional {
            let refused = failures.any().then(|| {
                let error = failures.into_error(first, || None);
                // The access log says "anonymous"; this says why.
                tracing::debug!(route = %route.name, reason = %chain(&error), "credential refused; forwarded anonymously");
                error.outcome()
            });
            return Ok(Authenticated::Anonymous { refused });
        }
        Err(failures.into_error(first, || {
            redirect::location(route, parts, site, self.login_path.as_deref())
        }))
    }
}

impl Failures {
    fn any(&self) -> bool {
        self.ambiguous.is_some()
            || self.jwt.is_some()
            || self.session.is_some()
            || self.unavailable.is_some()
    }

    /// The refusal; `redirect` gives the login `Location` for the 401s
    /// (never for a 503: the caller did nothing wrong, and a login would
    /// not help).
    fn into_error(
        self,
        first_kind: Option<CredentialKind>,
        redirect: impl FnOnce() -> Option<String>,
    ) -> AuthError {
        if let Some(why) = self.unavailable {
            return AuthError::Unavailable(why);
        }
        if let Some((ambiguous, kind)) = self.ambiguous {
            return AuthError::Ambiguous(ambiguous, kind);
        }
        let redirect = redirect();
        // SPEC §6a: invalid_token when a JWT was among the invalid ones.
        if let Some(reason) = self.jwt {
            return AuthError::InvalidToken { reason, redirect };
        }
        if let Some(reason) = self.session {
            return AuthError::InvalidSession { reason, redirect };
        }
        AuthError::Missing {
            kind: first_kind,
            redirect,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::{KeysUnavailable, Unusable};

    fn location() -> Option<String> {
        Some("https://login.example.com/?rd=x".into())
    }

    #[test]
    fn every_401_carries_the_redirect_and_a_503_never_does() {
        let missing = Failures::default().into_error(None, location);
        assert!(matches!(
            missing,
            AuthError::Missing {
                redirect: Some(_),
                ..
            }
        ));
        let jwt = Failures {
            jwt: Some(Invalid::Signature),
            session: Some(SessionInvalid::Unknown),
            ..Failures::default()
        };
        assert!(matches!(
            jwt.into_error(None, location),
            AuthError::InvalidToken {
                reason: Invalid::Signature,
                redirect: Some(_),
            }
        ));
        let session = Failures {
            session: Some(SessionInvalid::Unknown),
            ..Failures::default()
        };
        assert!(matches!(
            session.into_error(None, location),
            AuthError::InvalidSession {
                redirect: Some(_),
                ..
            }
        ));
        let down = Failures {
            jwt: Some(Invalid::Signature),
            unavailable: Some(Unavailable::Keys(KeysUnavailable {
                provider: "idp".into(),
                why: Unusable::Stale,
            })),
            ..Failures::default()
        };
        let error = down.into_error(None, location);
        assert!(matches!(error, AuthError::Unavailable(_)));
        assert_eq!(
            error.outcome(),
            AuthOutcome {
                kind: Some(CredentialKind::Jwt),
                outcome: Outcome::Unavailable
            }
        );
    }

    #[test]
    fn expired_tokens_and_sessions_count_as_expired() {
        let token = Failures {
            jwt: Some(Invalid::Expired),
            ..Failures::default()
        };
        assert_eq!(
            token.into_error(None, || None).outcome().outcome,
            Outcome::Expired
        );
        let session = Failures {
            session: Some(SessionInvalid::Record(session::RecordError::Expired)),
            ..Failures::default()
        };
        let outcome = session.into_error(None, || None).outcome();
        assert_eq!(outcome.outcome, Outcome::Expired);
        assert_eq!(outcome.kind, Some(CredentialKind::Session));
        let unknown = Failures {
            session: Some(SessionInvalid::Unknown),
            ..Failures::default()
        };
        assert_eq!(
            unknown.into_error(None, || None).outcome().outcome,
            Outcome::Invalid
        );
    }
}
