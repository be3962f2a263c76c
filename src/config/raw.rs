//! The serde mirror of the file (SPEC §3): what was written, not what it means.
//!
//! Every key is an `Option`, so "absent" stays distinguishable from "given"
//! (defaults, required keys and "both `x` and `x_file`" are decided in
//! `validate`, in one place). Durations, enums and addresses stay strings for
//! the same reason: a bad value becomes a validation error that names its key
//! and position instead of a serde message.
//!
//! No `deny_unknown_fields`, `flatten` or untagged enums here, unlike the
//! usual advice (STYLE.md): `load` wraps each section in `serde_ignored` so
//! that *every* unknown key is reported, not just the first one, and those
//! serde features would hide keys from it or lose the spans.
//!
//! Secrets are plain `String`s here, so no type in this file derives `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// The file, deserialized piece by piece (by `load`, for `validate`).
#[derive(Default)]
pub(super) struct RawDoc {
    pub server: Section<RawServer>,
    pub admin: Section<RawAdmin>,
    pub log: Section<RawLog>,
    pub store: Section<RawStore>,
    pub sessions: Section<RawSessions>,
    pub jwt: Section<RawJwt>,
    /// `None`: that element failed to deserialize.
    pub providers: Vec<Option<RawProvider>>,
    pub upstreams: Vec<Option<RawUpstream>>,
    /// The `name` of each upstream, read before deserializing, so routes
    /// naming a broken upstream are not also reported as dangling.
    pub upstream_names: Vec<Option<String>>,
    pub routes: Vec<Option<RawRoute>>,
    pub identity: Section<RawIdentity>,
    pub login: Section<RawLogin>,
    pub forward_auth: Section<RawForwardAuth>,
    pub revocation: Section<RawRevocation>,
}

/// A top-level table: absent, deserialized, or broken (errors already reported).
#[derive(Default)]
pub(super) enum Section<T> {
    #[default]
    Absent,
    Present(T),
    Invalid,
}

impl<T: Default> Section<T> {
    /// The raw table to validate: absent and broken ones validate as empty,
    /// i.e. as the defaults (which are valid, so this adds no errors).
    pub(super) fn or_default(self) -> T {
        match self {
            Section::Present(t) => t,
            Section::Absent | Section::Invalid => T::default(),
        }
    }
}

impl<T> From<Option<T>> for Section<T> {
    fn from(value: Option<T>) -> Self {
        match value {
            Some(t) => Section::Present(t),
            None => Section::Invalid,
        }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct RawServer {
    pub listen: Option<Vec<String>>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_header_bytes: Option<i64>,
    pub max_connections: Option<i64>,
    pub shutdown_grace: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub headers_with_underscores: Option<String>,
    pub tls: Option<RawTls>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
    pub access_log: Option<bool>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawStore {
    pub kind: Option<String>,
    pub url: Option<String>,
    pub url_file: Option<String>,
    pub command_timeout: Option<String>,
    pub read_from_replicas: Option<bool>,
    pub ca_file: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawSessions {
    pub cookie: Option<String>,
    pub codec: Option<String>,
    pub secrets: Option<Vec<String>>,
    pub secrets_file: Option<String>,
    pub key_prefix: Option<String>,
    pub format: Option<String>,
    pub user_field: Option<String>,
    pub list_fields: Option<Vec<String>>,
    pub forward_cookie: Option<bool>,
    pub cache_ttl: Option<String>,
    pub sliding_ttl: Option<String>,
}

/// `[jwt]` without `providers`: each provider is deserialized on its own so
/// that an error in one does not hide the others.
#[derive(Deserialize, Default)]
pub(super) struct RawJwt {
    pub header: Option<bool>,
    pub cookie: Option<String>,
    pub forward_token: Option<bool>,
    pub max_token_bytes: Option<i64>,
    pub verified_cache_size: Option<i64>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawProvider {
    pub name: Option<String>,
    pub issuer: Option<String>,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    pub hmac_secret: Option<String>,
    pub hmac_secret_file: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub audience_claim: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub leeway: Option<String>,
    pub max_token_lifetime: Option<String>,
    /// Any TOML value; `validate` accepts scalars only.
    pub claims: Option<BTreeMap<String, serde_json::Value>>,
    pub refresh_interval: Option<String>,
    pub min_refresh_interval: Option<String>,
    pub fetch_timeout: Option<String>,
    pub max_stale: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawUpstream {
    pub name: Option<String>,
    pub targets: Option<Vec<String>>,
    pub balance: Option<String>,
    pub preserve_host: Option<bool>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub retries: Option<i64>,
    pub health_check: Option<RawHealthCheck>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawHealthCheck {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub unhealthy_after: Option<i64>,
    pub healthy_after: Option<i64>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub methods: Option<Vec<String>>,
    pub upstream: Option<String>,
    pub auth: Option<String>,
    pub accept: Option<Vec<String>>,
    pub require: Option<BTreeMap<String, OneOrMany>>,
    pub on_unauthenticated: Option<String>,
    pub login_url: Option<String>,
    pub csrf: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawIdentity {
    pub strip: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub assertion: Option<RawAssertion>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawAssertion {
    pub header: Option<String>,
    pub key_file: Option<String>,
    pub issuer: Option<String>,
    pub ttl: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawLogin {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub redirect_uri: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub login_path: Option<String>,
    pub logout_path: Option<String>,
    pub claims: Option<Vec<String>>,
    pub session_ttl: Option<String>,
    pub persistent: Option<bool>,
    pub refresh_interval: Option<String>,
    pub allowed_redirect_hosts: Option<Vec<String>>,
    pub post_logout_redirect: Option<String>,
    pub encryption_keys: Option<Vec<String>>,
    pub encryption_keys_file: Option<String>,
    pub cookie_secure: Option<bool>,
    pub ca_file: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawForwardAuth {
    pub path: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawRevocation {
    pub propagation: Option<String>,
}

/// `"admin"` or `["admin", "ops"]`: a hand-written visitor rather than an
/// untagged enum, which would lose the position of a type error.
pub(super) struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The top-level tables of SPEC §3.
pub(super) const TOP_LEVEL_KEYS: &[&str] = &[
    "server",
    "admin",
    "log",
    "store",
    "sessions",
    "jwt",
    "upstreams",
    "routes",
    "identity",
    "login",
    "forward_auth",
    "revocation",
];

/// The keys a table accepts, for "unknown key" messages. `table` is a key
/// path with array indices written as `[]` (`routes[]`, `jwt.providers[]`).
/// The lists come from the serde derives themselves, so they cannot drift.
pub(super) fn valid_keys(table: &str) -> Option<Vec<&'static str>> {
    let keys = match table {
        "" => TOP_LEVEL_KEYS.to_vec(),
        "server" => fields_of::<RawServer>(),
        "server.tls" => fields_of::<RawTls>(),
        "admin" => fields_of::<RawAdmin>(),
        "log" => fields_of::<RawLog>(),
        "store" => fields_of::<RawStore>(),
        "sessions" => fields_of::<RawSessions>(),
        "jwt" => {
            let mut keys = fields_of::<RawJwt>();
            keys.push("providers");
            keys
        }
        "jwt.providers[]" => fields_of::<RawProvider>(),
        "upstreams[]" => fields_of::<RawUpstream>(),
        "upstreams[].health_check" => fields_of::<RawHealthCheck>(),
        "routes[]" => fields_of::<RawRoute>(),
        "identity" => fields_of::<RawIdentity>(),
        "identity.assertion" => fields_of::<RawAssertion>(),
        "login" => fields_of::<RawLogin>(),
        "forward_auth" => fields_of::<RawForwardAuth>(),
        "revocation" => fields_of::<RawRevocation>(),
        _ => return None,
    };
    Some(keys)
}

/// The field names a derived `Deserialize` struct asks for: a deserializer
/// that only records the `fields` argument of `deserialize_struct`.
fn fields_of<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
    struct Probe<'a>(&'a mut Vec<&'static str>);

    #[derive(Debug)]
    struct Stop;
    impl fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.extend_from_slice(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields = Vec::new();
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_keys_come_from_the_structs() {
        let route = valid_keys("routes[]").expect("routes");
        assert!(route.contains(&"upstream") && route.contains(&"csrf"));
        let jwt = valid_keys("jwt").expect("jwt");
        assert_eq!(
            jwt,
            vec![
                "header",
                "cookie",
                "forward_token",
                "max_token_bytes",
                "verified_cache_size",
                "providers"
            ]
        );
        assert!(valid_keys("identity.headers").is_none());
    }
}
