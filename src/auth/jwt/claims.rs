//! The claim rules of RFC 7519 §4.1 and SPEC §5.4, checked on every request
//! — also when the verified-token cache let the signature check be skipped.

use serde_json::Value;

use super::Invalid;
use super::token::Claims;
use crate::config::JwtProvider;

/// Checks `exp`, `nbf`, `iat`/`max_token_lifetime`, `iss`, the audience and
/// the provider's exact-match `claims`. `now` is seconds since the epoch.
pub fn check(provider: &JwtProvider, claims: &Claims, now: u64) -> Result<(), Invalid> {
    let leeway = provider.leeway.as_secs();
    let exp = numeric(claims, "exp")?.ok_or(Invalid::Claim("no exp"))?;
    if now > exp.saturating_add(leeway) {
        return Err(Invalid::Expired);
    }
    if let Some(nbf) = numeric(claims, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(Invalid::Claim("nbf in the future"));
    }
    let iat = numeric(claims, "iat")?;
    if let Some(max) = provider.max_token_lifetime {
        let iat = iat.ok_or(Invalid::Claim("no iat with max_token_lifetime"))?;
        if exp.saturating_sub(iat) > max.as_secs() {
            return Err(Invalid::Claim("lifetime over max_token_lifetime"));
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(provider.issuer.as_str()) {
        return Err(Invalid::Claim("wrong iss"));
    }
    let audience_ok = match claims.get(&provider.audience_claim) {
        Some(Value::String(aud)) => provider.audiences.contains(aud),
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| provider.audiences.iter().any(|a| a == aud)),
        _ => return Err(Invalid::Claim("no audience")),
    };
    if !audience_ok {
        return Err(Invalid::Claim("audience not accepted"));
    }
    for (name, expected) in &provider.claims {
        if !same_value(claims.get(name), expected) {
            return Err(Invalid::Claim("provider claims not matched"));
        }
    }
    match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => Ok(()),
        _ => Err(Invalid::Claim("no sub")),
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number, fractions allowed. Anything
/// else under that name is a malformed token, not an absent claim.
fn numeric(claims: &Claims, name: &'static str) -> Result<Option<u64>, Invalid> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && *f >= 0.0) {
                Ok(Some(f as u64))
            } else {
                Err(Invalid::Claim("negative or huge NumericDate"))
            }
        }
        Some(_) => Err(Invalid::Claim("NumericDate is not a number")),
    }
}

/// Exact match, except that `1` and `1.0` are the same number.
fn same_value(actual: Option<&Value>, expected: &Value) -> bool {
    match (actual, expected) {
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(a), b) => a == b,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn provider() -> JwtProvider {
        JwtProvider {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            key_source: crate::config::KeySource::Discovery,
            audiences: vec!["app".into(), "other".into()],
            audience_claim: "aud".into(),
            algorithms: vec![crate::config::JwtAlgorithm::RS256],
            leeway: Duration::from_secs(30),
            max_token_lifetime: None,
            claims: BTreeMap::new(),
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
            max_stale: Duration::from_secs(86400),
            ca_file: None,
        }
    }

    const NOW: u64 = 1_800_000_000;

    fn claims(v: Value) -> Claims {
        serde_json::from_value(v).expect("object")
    }

    fn good() -> Value {
        json!({"iss": "https://idp.example", "aud": "app", "sub": "alice", "exp": NOW + 60, "iat": NOW})
    }

    fn with(mut v: Value, key: &str, value: Value) -> Claims {
        if value.is_null() {
            v.as_object_mut().expect("object").remove(key);
        } else {
            v[key] = value;
        }
        claims(v)
    }

    #[test]
    fn a_good_token_passes() {
        assert_eq!(check(&provider(), &claims(good()), NOW), Ok(()));
    }

    #[test]
    fn every_rule_rejects() {
        let p = provider();
        let cases: Vec<(&str, Claims)> = vec![
            ("no exp", with(good(), "exp", Value::Null)),
            ("expired", with(good(), "exp", json!(NOW - 31))),
            ("exp not a number", with(good(), "exp", json!("soon"))),
            ("nbf future", with(good(), "nbf", json!(NOW + 31))),
            ("no iss", with(good(), "iss", Value::Null)),
            (
                "wrong iss",
                with(good(), "iss", json!("https://evil.example")),
            ),
            ("no aud", with(good(), "aud", Value::Null)),
            ("wrong aud", with(good(), "aud", json!("nope"))),
            ("aud array", with(good(), "aud", json!(["x", "y"]))),
            ("aud object", with(good(), "aud", json!({"app": true}))),
            ("no sub", with(good(), "sub", Value::Null)),
            ("empty sub", with(good(), "sub", json!(""))),
            ("numeric sub", with(good(), "sub", json!(7))),
        ];
        for (name, c) in cases {
            assert!(check(&p, &c, NOW).is_err(), "{name} passed");
        }
        assert_eq!(
            check(&p, &with(good(), "exp", json!(NOW - 31)), NOW),
            Err(Invalid::Expired)
        );
    }

    #[test]
    fn leeway_applies_both_ways() {
        let p = provider();
        assert!(check(&p, &with(good(), "exp", json!(NOW - 10)), NOW).is_ok());
        assert!(check(&p, &with(good(), "nbf", json!(NOW + 10)), NOW).is_ok());
        assert!(check(&p, &with(good(), "aud", json!(["x", "app"])), NOW).is_ok());
    }

    #[test]
    fn max_token_lifetime_needs_iat() {
        let mut p = provider();
        p.max_token_lifetime = Some(Duration::from_secs(3600));
        assert!(check(&p, &claims(good()), NOW).is_ok());
        assert!(check(&p, &with(good(), "iat", Value::Null), NOW).is_err());
        assert!(check(&p, &with(good(), "exp", json!(NOW + 7200)), NOW).is_err());
    }

    #[test]
    fn provider_claims_and_cognito_client_id() {
        let mut p = provider();
        p.claims.insert("token_use".into(), json!("access"));
        assert!(check(&p, &with(good(), "token_use", json!("id")), NOW).is_err());
        assert!(check(&p, &with(good(), "token_use", json!("access")), NOW).is_ok());
        assert!(check(&p, &claims(good()), NOW).is_err(), "missing claim");

        let mut p = provider();
        p.audience_claim = "client_id".into();
        let mut access = good();
        access["client_id"] = json!("app");
        let access = with(access, "aud", Value::Null);
        assert!(check(&p, &access, NOW).is_ok());
        assert!(
            check(&p, &claims(good()), NOW).is_err(),
            "aud is not consulted"
        );
    }
}
