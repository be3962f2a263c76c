//! What authentication concluded for one request, counted once in
//! `wristband_auth_total{route,kind,outcome}` (without a label lookup per
//! request: each route keeps the counters it has used) and written once to
//! the access log's `auth` field, both from the same [`AuthRecord`].

use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::config::CredentialKind;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::AuthLabels;

/// SPEC §6 outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Missing,
    Invalid,
    Expired,
    /// A valid token that was revoked (SPEC §9).
    Revoked,
    Forbidden,
    Unavailable,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::Missing,
        Outcome::Invalid,
        Outcome::Expired,
        Outcome::Revoked,
        Outcome::Forbidden,
        Outcome::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Missing => "missing",
            Outcome::Invalid => "invalid",
            Outcome::Expired => "expired",
            Outcome::Revoked => "revoked",
            Outcome::Forbidden => "forbidden",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// One request's outcome and the credential kind it is about (none: the
/// route accepts no kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthOutcome {
    pub kind: Option<CredentialKind>,
    pub outcome: Outcome,
}

/// What the access log and the metric learn about a request's
/// authentication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthRecord {
    /// Refused before authentication (routing, a bad request).
    #[default]
    NotReached,
    /// A `public` route: credentials are not looked at, nothing counted.
    Public,
    /// Forwarded without an identity on an `optional` route; counted when
    /// a credential was presented and refused.
    Anonymous(Option<AuthOutcome>),
    /// Authenticated, or refused with this outcome.
    Decided(AuthOutcome),
}

impl AuthRecord {
    /// The access log's `auth` field.
    pub fn label(self) -> &'static str {
        match self {
            AuthRecord::NotReached => "none",
            AuthRecord::Public => "public",
            AuthRecord::Anonymous(_) => "anonymous",
            AuthRecord::Decided(outcome) => outcome.outcome.as_str(),
        }
    }

    /// What `wristband_auth_total` counts, if anything.
    pub fn counted(self) -> Option<AuthOutcome> {
        match self {
            AuthRecord::NotReached | AuthRecord::Public => None,
            AuthRecord::Anonymous(refused) => refused,
            AuthRecord::Decided(outcome) => Some(outcome),
        }
    }
}

/// Kinds: jwt, session, and "none" for a route that accepts no kind.
const KINDS: usize = 3;

pub struct AuthCounters {
    route: Arc<str>,
    family: Family<AuthLabels, Counter>,
    slots: [OnceLock<Counter>; KINDS * Outcome::ALL.len()],
}

impl AuthCounters {
    pub fn new(route: Arc<str>, metrics: &Metrics) -> Self {
        AuthCounters {
            route,
            family: metrics.auth.clone(),
            slots: Default::default(),
        }
    }

    pub fn inc(&self, AuthOutcome { kind, outcome }: AuthOutcome) {
        let (kind_index, kind_name) = match kind {
            Some(CredentialKind::Jwt) => (0, "jwt"),
            Some(CredentialKind::Session) => (1, "session"),
            None => (2, "none"),
        };
        let outcome_index = Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or_default();
        self.slots[kind_index * Outcome::ALL.len() + outcome_index]
            .get_or_init(|| {
                self.family
                    .get_or_create(&AuthLabels {
                        route: self.route.clone(),
                        kind: kind_name,
                        outcome: outcome.as_str(),
                    })
                    .clone()
            })
            .inc();
    }
}
