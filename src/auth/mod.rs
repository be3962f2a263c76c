//! Authentication: who is calling (SPEC §1, §3 "Authentication order").
//!
//! The route's `accept` kinds are tried in order; the first valid credential
//! wins. The credential kinds themselves (`jwt`, `session`) are filled in by
//! their own modules; until a kind is wired in it never yields an identity, so
//! a `required` route fails closed with 401 (guarantee 1).

pub mod policy;

use http::request::Parts;

use crate::config::{AuthMode, RouteConfig};
use crate::error::Rejection;
use crate::identity::Identity;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::AuthLabels;

/// What authentication concluded, before policy.
#[derive(Debug)]
pub enum Authenticated {
    /// `public` route: credentials were not looked at.
    NotChecked,
    /// `optional` route without a valid credential: forwarded anonymously.
    Anonymous,
    Caller(Identity),
}

impl Authenticated {
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Authenticated::Caller(identity) => Some(identity),
            Authenticated::NotChecked | Authenticated::Anonymous => None,
        }
    }
}

/// Runs the route's credential kinds in order.
pub async fn authenticate(
    route: &RouteConfig,
    _parts: &Parts,
    metrics: &Metrics,
) -> Result<Authenticated, Rejection> {
    match route.auth {
        AuthMode::Public => Ok(Authenticated::NotChecked),
        AuthMode::Optional => Ok(Authenticated::Anonymous),
        AuthMode::Required => {
            // No credential kind is able to vouch for anyone yet: fail closed.
            metrics
                .auth
                .get_or_create(&AuthLabels {
                    route: route.name.clone(),
                    kind: "none",
                    outcome: "missing",
                })
                .inc();
            Err(Rejection::Unauthenticated { redirect: None })
        }
    }
}
