//! A stored session turned into an identity (SPEC §3): hash fields (the
//! `list_fields` split on `,`) or the JSON document's top-level keys become
//! claims, and `user_field` becomes `sub`. A JSON session's
//! `cookie.expires` is read here, once, by one rule that holds whether the
//! session is then cached or not.

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
    #[error("session cookie.expires is not a date")]
    BadExpiry,
}

/// A valid session: who, and when its app says it ends (connect-redis
/// `cookie.expires`), which a cached copy re-checks on every use.
#[derive(Debug)]
pub struct Session {
    pub identity: Identity,
    pub expires: Option<SystemTime>,
    /// A login session that holds a refresh token: when it was last
    /// refreshed (or created), unix seconds (SPEC §7 "Refresh").
    pub refreshed: Option<u64>,
}

/// Fields of sessions wristband's login writes for itself: never claims,
/// never headers (SPEC §7).
pub const INTERNAL_PREFIX: &str = "_wb_";
/// The sealed refresh token.
pub const REFRESH_TOKEN_FIELD: &str = "_wb_rt";
/// Unix seconds of the last refresh, or of the login.
pub const REFRESHED_FIELD: &str = "_wb_refreshed";
/// Unix seconds of the login (`wristband sessions` lists it).
pub const CREATED_FIELD: &str = "_wb_created";
/// The sealed access token.
pub const ACCESS_TOKEN_FIELD: &str = "_wb_at";
/// The sealed id_token: the `id_token_hint` of an RP-initiated logout.
pub const ID_TOKEN_FIELD: &str = "_wb_idt";
/// The id_token's `sid`, for Back-Channel Logout later (SPEC §10).
pub const SID_FIELD: &str = "_wb_sid";

pub fn session(config: &SessionsConfig, stored: Stored) -> Result<Session, RecordError> {
    match stored {
        Stored::Hash(fields) => {
            let refreshed = refreshed(&fields);
            Ok(Session {
                identity: from_hash(config, fields)?,
                expires: None,
                refreshed,
            })
        }
        Stored::Json(text) => from_json(config, &text),
    }
}

/// Whether a session with this end is still valid now: the one check for
/// fresh and cached sessions alike.
pub fn check_expiry(expires: Option<SystemTime>) -> Result<(), RecordError> {
    match expires {
        Some(at) if at <= SystemTime::now() => Err(RecordError::Expired),
        _ => Ok(()),
    }
}

/// connect-redis stores express-session's cookie with the session, and its
/// `expires` is when the app considers the session over. Absent or `null`
/// (a browser-session cookie): no end. Anything else must be a date as
/// `Date.prototype.toJSON` writes it; a value that is not one (an
/// unparseable string, a number, an object) makes the session invalid,
/// never endless: fail closed.
fn cookie_expiry(doc: &serde_json::Map<String, Value>) -> Result<Option<SystemTime>, RecordError> {
    match doc.get("cookie").and_then(|cookie| cookie.get("expires")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => humantime::parse_rfc3339_weak(text)
            .map(Some)
            .map_err(|_| RecordError::BadExpiry),
        Some(_) => Err(RecordError::BadExpiry),
    }
}

/// `_wb_refreshed` of a session that holds a refresh token. A value that
/// is not a number counts as "long ago": refreshed at the next use.
fn refreshed(fields: &[(String, String)]) -> Option<u64> {
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    field(REFRESH_TOKEN_FIELD)?;
    Some(
        field(REFRESHED_FIELD)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

fn from_hash(
    config: &SessionsConfig,
    fields: Vec<(String, String)>,
) -> Result<Identity, RecordError> {
    let mut claims = BTreeMap::new();
    let mut sub = None;
    for (name, value) in fields {
        if name.starts_with(INTERNAL_PREFIX) {
            continue;
        }
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

fn from_json(config: &SessionsConfig, text: &str) -> Result<Session, RecordError> {
    let doc: serde_json::Map<String, Value> =
        serde_json::from_str(text).map_err(|_| RecordError::NotJson)?;
    let expires = cookie_expiry(&doc)?;
    check_expiry(expires)?;
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
    Ok(Session {
        identity: Identity::new(sub, doc.into_iter().collect()),
        expires,
        refreshed: None,
    })
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

    fn identity(config: &SessionsConfig, stored: Stored) -> Result<Identity, RecordError> {
        session(config, stored).map(|s| s.identity)
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
    fn internal_fields_are_never_claims() {
        let c = config(SessionFormat::Hash, "user_id");
        let session = session(
            &c,
            hash(&[
                ("user_id", "42"),
                ("_wb_rt", "wb1.sealed"),
                ("_wb_refreshed", "1800000000"),
                ("_wb_id_token", "eyJ"),
            ]),
        )
        .expect("session");
        assert_eq!(session.refreshed, Some(1_800_000_000));
        assert!(
            session
                .identity
                .claims()
                .keys()
                .all(|k| !k.starts_with("_wb_")),
            "{:?}",
            session.identity.claims().keys()
        );
        let without_token = super::session(&c, hash(&[("user_id", "42"), ("_wb_refreshed", "1")]))
            .expect("session");
        assert_eq!(without_token.refreshed, None, "nothing to refresh with");
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

    /// Regression (issue 13.7): a `cookie.expires` that is not a date
    /// string was "never expires" here (a number, an object) and on the
    /// cached path. One rule: absent or null never expires; anything else
    /// must be a date, else the session is invalid (fail closed).
    #[test]
    fn a_cookie_expires_that_is_not_a_date_string_is_invalid() {
        let c = config(SessionFormat::Json, "user");
        for expires in [
            json!("not a date"),
            json!(""),
            json!(4_102_444_800_000_u64),
            json!(true),
            json!({}),
            json!(["2099-01-01T00:00:00.000Z"]),
        ] {
            let doc = json!({"cookie": {"expires": expires}, "user": "u"});
            assert_eq!(
                identity(&c, Stored::Json(doc.to_string())).err(),
                Some(RecordError::BadExpiry),
                "expires = {expires}"
            );
        }
        for doc in [
            json!({"cookie": {"expires": null}, "user": "u"}),
            json!({"cookie": {}, "user": "u"}),
            json!({"user": "u"}),
        ] {
            let session = session(&c, Stored::Json(doc.to_string()))
                .unwrap_or_else(|e| panic!("{doc} was refused: {e}"));
            assert_eq!(session.expires, None, "{doc} never ends");
        }
        // The end a cached copy re-checks is the one read here.
        let doc = json!({"cookie": {"expires": "2099-01-01T00:00:00.000Z"}, "user": "u"});
        let session = session(&c, Stored::Json(doc.to_string())).expect("a valid session");
        assert_eq!(
            session.expires,
            humantime::parse_rfc3339("2099-01-01T00:00:00Z").ok()
        );
        assert_eq!(check_expiry(session.expires), Ok(()));
        assert_eq!(
            check_expiry(Some(SystemTime::now() - Duration::from_secs(1))),
            Err(RecordError::Expired)
        );
        assert_eq!(check_expiry(None), Ok(()));
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
