//! Why authentication or authorization refused a request, typed: the
//! response (SPEC §4, in `crate::error`), the metric outcome (§6) and the
//! log line each read what they need from it, and text is made only for
//! the log.

use super::counters::{AuthOutcome, Outcome};
use super::credentials::Ambiguous;
use super::jwt::{Invalid, KeysUnavailable};
use super::session::{SessionInvalid, StoreError};
use crate::config::CredentialKind;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Two different credentials of one kind (400).
    #[error("{0}")]
    Ambiguous(Ambiguous, CredentialKind),
    /// No credential on a `required` route (RFC 6750 §3: no error code).
    /// `kind` is the route's first accepted kind, for the metric.
    #[error("no credential presented")]
    Missing {
        kind: Option<CredentialKind>,
        redirect: Option<String>,
    },
    /// A JWT was presented and is not valid (RFC 6750 §3.1).
    #[error("invalid token")]
    InvalidToken {
        #[source]
        reason: Invalid,
        redirect: Option<String>,
    },
    /// A session cookie was presented and is not valid.
    #[error("invalid session")]
    InvalidSession {
        #[source]
        reason: SessionInvalid,
        redirect: Option<String>,
    },
    /// The keys or the store could not be consulted (503, never a pass).
    #[error("credential check unavailable")]
    Unavailable(#[source] Unavailable),
    /// Authenticated, and the route's rules do not hold (403).
    #[error("forbidden")]
    Forbidden {
        kind: CredentialKind,
        #[source]
        reason: Forbidden,
    },
}

impl AuthError {
    /// The login `Location` a 401 carries, taken out: the 401 stays a
    /// 401, and the caller says where to log in some other way (SPEC §8
    /// `X-Auth-Login`).
    pub fn take_redirect(&mut self) -> Option<String> {
        match self {
            AuthError::Missing { redirect, .. }
            | AuthError::InvalidToken { redirect, .. }
            | AuthError::InvalidSession { redirect, .. } => redirect.take(),
            AuthError::Ambiguous(..) | AuthError::Unavailable(_) | AuthError::Forbidden { .. } => {
                None
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(transparent)]
    Keys(#[from] KeysUnavailable),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The revoked set is not loaded yet: no token is known to be good.
    #[error("revocations not loaded from the store yet")]
    Revocations,
}

impl Unavailable {
    fn kind(&self) -> CredentialKind {
        match self {
            Unavailable::Keys(_) | Unavailable::Revocations => CredentialKind::Jwt,
            Unavailable::Store(_) => CredentialKind::Session,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Forbidden {
    /// The first `require` key the identity does not satisfy.
    #[error("claim {0:?} not satisfied")]
    Claim(String),
    /// `csrf = "origin"`.
    #[error("CSRF: Origin/Referer is not this site")]
    CrossSite,
}

impl AuthError {
    /// What `wristband_auth_total` counts, and the access log's `auth`.
    pub fn outcome(&self) -> AuthOutcome {
        let (kind, outcome) = match self {
            AuthError::Ambiguous(_, kind) => (Some(*kind), Outcome::Invalid),
            AuthError::Missing { kind, .. } => (*kind, Outcome::Missing),
            AuthError::InvalidToken { reason, .. } => {
                let outcome = match reason {
                    Invalid::Expired => Outcome::Expired,
                    Invalid::Revoked(_) => Outcome::Revoked,
                    _ => Outcome::Invalid,
                };
                (Some(CredentialKind::Jwt), outcome)
            }
            AuthError::InvalidSession { reason, .. } => {
                let outcome = if reason.is_expired() {
                    Outcome::Expired
                } else {
                    Outcome::Invalid
                };
                (Some(CredentialKind::Session), outcome)
            }
            AuthError::Unavailable(why) => (Some(why.kind()), Outcome::Unavailable),
            AuthError::Forbidden { kind, .. } => (Some(*kind), Outcome::Forbidden),
        };
        AuthOutcome { kind, outcome }
    }
}
