//! Authorization: does the authenticated caller meet the route's `require`
//! rules (SPEC §3)? Each key must hold; a key holds when the claim's value,
//! or for an array claim any of its elements, is one of the listed values.

use serde_json::Value;

use super::Authenticated;
use super::counters::{AuthOutcome, Outcome};
use super::error::{AuthError, Forbidden};
use crate::config::{AuthMode, RouteConfig};
use crate::identity::Identity;

/// Checks `require`. On an `optional` route an identity that fails the rules
/// is dropped rather than rejected: optional routes never reject.
pub fn authorize(route: &RouteConfig, auth: Authenticated) -> Result<Authenticated, AuthError> {
    let Authenticated::Caller { identity, kind } = auth else {
        return Ok(auth);
    };
    match unmet_requirement(route, &identity) {
        None => Ok(Authenticated::Caller { identity, kind }),
        Some(claim) => match route.auth {
            AuthMode::Optional => Ok(Authenticated::Anonymous {
                refused: Some(AuthOutcome {
                    kind: Some(kind),
                    outcome: Outcome::Forbidden,
                }),
            }),
            AuthMode::Required | AuthMode::Public => Err(AuthError::Forbidden {
                kind,
                reason: Forbidden::Claim(claim.to_owned()),
            }),
        },
    }
}

/// The first `require` key the identity does not satisfy.
fn unmet_requirement<'r>(route: &'r RouteConfig, identity: &Identity) -> Option<&'r str> {
    route
        .require
        .iter()
        .find(|(claim, allowed)| !claim_matches(identity.claim(claim), allowed))
        .map(|(claim, _)| claim.as_str())
}

fn claim_matches(value: Option<&Value>, allowed: &[String]) -> bool {
    let is_allowed = |v: &Value| match v {
        Value::String(s) => allowed.iter().any(|a| a == s),
        Value::Number(_) | Value::Bool(_) => {
            let text = v.to_string();
            allowed.contains(&text)
        }
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    };
    match value {
        None => false,
        Some(Value::Array(items)) => items.iter().any(is_allowed),
        Some(v) => is_allowed(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalar_claims_must_be_one_of_the_values() {
        assert!(claim_matches(Some(&json!("admin")), &["admin".into()]));
        assert!(!claim_matches(Some(&json!("user")), &["admin".into()]));
        assert!(claim_matches(Some(&json!(7)), &["7".into()]));
        assert!(!claim_matches(None, &["admin".into()]));
        assert!(!claim_matches(
            Some(&json!({"admin": true})),
            &["admin".into()]
        ));
    }

    #[test]
    fn array_claims_need_a_non_empty_intersection() {
        let allowed = ["admin".to_string(), "ops".to_string()];
        assert!(claim_matches(Some(&json!(["dev", "ops"])), &allowed));
        assert!(!claim_matches(Some(&json!(["dev"])), &allowed));
        assert!(!claim_matches(Some(&json!([])), &allowed));
    }
}
