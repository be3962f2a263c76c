//! A stored session turned into an identity (SPEC §3): hash fields (the
//! `list_fields` split on `,`) or the JSON document's top-level keys become
//! claims, and `user_field` becomes `sub`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::Value;

use crate::config::SessionsConfig;
use crate::identity::Identity;

/// What the store returned for a session key.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// `HGETALL`: field -> value.
    Hash(Vec<(String, String)>),
    /// `GET`: the raw document.
    Json(String),
}

/// Why a stored session does not make an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("session has no usable user field")]
    NoUser,
    #[error("session document is not a JSON object")]
    NotJson,
    #[error("session cookie.expires has passed")]
    Expired,
}

pub fn identity(config: &SessionsConfig, stored: Stored) -> Result<Identity, RecordError> {
    match stored {
        Stored::Hash(fields) => from_hash(config, fields),
        Stored::Json(text) => from_json(config, &text),
    }
}

fn from_hash(
    config: &SessionsConfig,
    fields: Vec<(String, String)>,
) -> Result<Identity, RecordError> {
    let mut claims = BTreeMap::new();
    let mut sub = None;
    for (name, value) in fields {
        if name == config.user_field && !value.is_empty() {
            sub = Some(value.clone());
        }
        let claim = if config.list_fields.contains(&name) {
            Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| Value::String(v.to_owned()))
                    .collect(),
            )
        } else {
            Value::String(value)
        };
        claims.insert(name, claim);
    }
    let sub = sub.ok_or(RecordError::NoUser)?;
    Ok(Identity::new(sub, claims))
}

fn from_json(config: &SessionsConfig, text: &str) -> Result<Identity, RecordError> {
    let doc: serde_json::Map<String, Value> =
        serde_json::from_str(text).map_err(|_| RecordError::NotJson)?;
    // connect-redis stores express-session's cookie with the session: an
    // `expires` in the past means the app considers the session over.
    if let Some(expires) = doc
        .get("cookie")
        .and_then(|c| c.get("expires"))
        .and_then(Value::as_str)
    {
        match humantime::parse_rfc3339_weak(expires) {
            Ok(at) if at > SystemTime::now() => {}
            _ => return Err(RecordError::Expired),
        }
    }
    let root = Value::Object(doc);
    let user = if config.user_field.starts_with('/') {
        root.pointer(&config.user_field)
    } else {
        root.get(&config.user_field)
    };
    let sub = match user {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(RecordError::NoUser),
    };
    let Value::Object(doc) = root else {
        return Err(RecordError::NotJson);
    };
    Ok(Identity::new(sub, doc.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CookieCodec, SessionFormat};
    use serde_json::json;
    use std::time::Duration;

    fn config(format: SessionFormat, user_field: &str) -> SessionsConfig {
        SessionsConfig {
            cookie: "sid".into(),
            codec: CookieCodec::Plain,
            secrets: vec![],
            key_prefix: "sessions:".into(),
            format,
            user_field: user_field.into(),
            list_fields: vec!["roles".into()],
            forward_cookie: true,
            cache_ttl: Duration::ZERO,
            sliding_ttl: Duration::ZERO,
        }
    }

    fn hash(pairs: &[(&str, &str)]) -> Stored {
        Stored::Hash(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn hash_fields_become_claims_and_lists_are_split() {
        let c = config(SessionFormat::Hash, "user_id");
        let id = identity(
            &c,
            hash(&[
                ("user_id", "42"),
                ("roles", "admin, dev,"),
                ("email", "a@b"),
            ]),
        )
        .expect("identity");
        assert_eq!(id.sub(), "42");
        assert_eq!(id.claim("roles"), Some(&json!(["admin", "dev"])));
        assert_eq!(id.claim("email"), Some(&json!("a@b")));
        assert_eq!(id.claim("sub"), Some(&json!("42")));
    }

    #[test]
    fn a_missing_or_empty_user_field_is_invalid() {
        let c = config(SessionFormat::Hash, "user_id");
        assert_eq!(
            identity(&c, hash(&[("email", "a@b")])).err(),
            Some(RecordError::NoUser)
        );
        assert_eq!(
            identity(&c, hash(&[("user_id", "")])).err(),
            Some(RecordError::NoUser)
        );
    }

    #[test]
    fn json_documents_use_a_pointer_and_honour_cookie_expires() {
        let c = config(SessionFormat::Json, "/passport/user");
        let doc =
            json!({"cookie": {"expires": "2099-01-01T00:00:00.000Z"}, "passport": {"user": "u-7"}});
        let id = identity(&c, Stored::Json(doc.to_string())).expect("identity");
        assert_eq!(id.sub(), "u-7");
        assert!(id.claim("passport").is_some());

        let past =
            json!({"cookie": {"expires": "2001-01-01T00:00:00.000Z"}, "passport": {"user": "u-7"}});
        assert_eq!(
            identity(&c, Stored::Json(past.to_string())).err(),
            Some(RecordError::Expired)
        );
        let no_expiry = json!({"cookie": {"expires": null}, "passport": {"user": 7}});
        assert_eq!(
            identity(&c, Stored::Json(no_expiry.to_string()))
                .map(|i| i.sub().to_owned())
                .ok(),
            Some("7".into())
        );
    }

    #[test]
    fn objects_arrays_and_garbage_are_not_users() {
        let c = config(SessionFormat::Json, "user");
        for doc in [
            json!({"user": {"id": 1}}),
            json!({"user": [1]}),
            json!({"user": true}),
            json!({}),
        ] {
            assert_eq!(
                identity(&c, Stored::Json(doc.to_string())).err(),
                Some(RecordError::NoUser),
                "{doc}"
            );
        }
        assert_eq!(
            identity(&c, Stored::Json("[1]".into())).err(),
            Some(RecordError::NotJson)
        );
        assert_eq!(
            identity(&c, Stored::Json("{".into())).err(),
            Some(RecordError::NotJson)
        );
    }
}
