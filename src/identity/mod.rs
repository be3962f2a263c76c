//! Who the caller is, and the only place identity headers are touched.
//!
//! SPEC §5.2: every header matched by `identity.strip` or named in
//! `identity.headers` (or the assertion header) is removed, compared
//! case-insensitively with `_` and `.` read as `-`, before identity headers are
//! added. [`IdentityHeaders::strip`] and [`IdentityHeaders::inject`] are the
//! two halves; the upstream request builder calls strip first and inject
//! last, so nothing the client sent can survive under an identity name.
//! Inject also adds the signed assertion ([`assertion`]) when configured.

pub mod assertion;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::config::{HeaderPattern, IdentityConfig, canonical_header_name};
use assertion::{AssertionSigner, KeyError};

/// A verified caller: the claims of a JWT, or a session's fields turned into
/// claims (SPEC §3). `sub` is always present. Immutable once built: the
/// caches share one `Identity` across many requests, and so does the
/// rendering of its headers.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `sub` among them, always a non-empty string: the constructors see
    /// to it, so `sub()` never fails. Kept once, in the map, because the
    /// cached JWT path checks the claims as a token's.
    claims: BTreeMap<String, Value>,
    /// The identity header values, rendered on first use by the
    /// `IdentityHeaders` whose id is kept beside them.
    rendered: OnceLock<(u64, Box<[Rendered]>)>,
}

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.claims == other.claims
    }
}

impl Identity {
    /// `sub` replaces any `sub` among the claims. Empty only in tests:
    /// the stores and the verifier refuse an identity without one.
    pub fn new(sub: impl Into<String>, mut claims: BTreeMap<String, Value>) -> Self {
        claims.insert("sub".into(), Value::String(sub.into()));
        Identity {
            claims,
            rendered: OnceLock::new(),
        }
    }

    /// The claims of a verified token, whose `sub` must be a non-empty
    /// string (RFC 7519 §4.1.2 allows only a string); `None` otherwise.
    pub fn from_claims(claims: BTreeMap<String, Value>) -> Option<Self> {
        match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => Some(Identity {
                claims,
                rendered: OnceLock::new(),
            }),
            _ => None,
        }
    }

    pub fn sub(&self) -> &str {
        match self.claims.get("sub") {
            Some(Value::String(sub)) => sub,
            // Not built by `new` or `from_claims`: cannot be.
            _ => "",
        }
    }

    pub fn claims(&self) -> &BTreeMap<String, Value> {
        &self.claims
    }

    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }
}

/// One identity header's value for one identity.
#[derive(Debug, Clone)]
enum Rendered {
    /// The claim is missing or null: no header.
    Absent,
    Value(HeaderValue),
    /// The claim holds a control character: never sent.
    Refused,
}

/// The strip patterns, the header -> claim mapping and the assertion
/// signer, prepared once per config.
#[derive(Debug)]
pub struct IdentityHeaders {
    /// Tells this config's renderings apart from an earlier config's, kept
    /// by identities cached across a reload.
    id: u64,
    strip: Vec<HeaderPattern>,
    /// `true` at each canonical byte some strip pattern starts with: most
    /// header names (`host`, `accept`, ...) are ruled out by their first
    /// byte instead of a comparison against every pattern.
    first_bytes: [bool; 256],
    inject: Vec<(HeaderName, String)>,
    assertion: Option<AssertionSigner>,
    /// The JWKS of the assertion key (`{"keys":[]}` without one), rendered
    /// once.
    jwks: bytes::Bytes,
}

impl IdentityHeaders {
    /// Fails only when `[identity.assertion]` names a key that cannot be
    /// used.
    pub fn new(config: &IdentityConfig) -> Result<Arc<Self>, KeyError> {
        let mut strip = config.strip.clone();
        // The names we set are stripped too, whatever `strip` says.
        for (name, _) in &config.headers {
            strip.push(HeaderPattern::Exact(canonical_header_name(name.as_str())));
        }
        if let Some(assertion) = &config.assertion {
            strip.push(HeaderPattern::Exact(canonical_header_name(
                assertion.header.as_str(),
            )));
        }
        let assertion = match &config.assertion {
            Some(assertion) => Some(AssertionSigner::load(
                assertion,
                config.headers.iter().map(|(_, claim)| claim.as_str()),
            )?),
            None => None,
        };
        let mut first_bytes = [false; 256];
        for pattern in &strip {
            let (HeaderPattern::Exact(p) | HeaderPattern::Prefix(p)) = pattern;
            match p.bytes().next() {
                Some(b) => first_bytes[usize::from(b)] = true,
                // An empty prefix matches every name.
                None => first_bytes = [true; 256],
            }
        }
        let keys: Vec<&Value> = assertion.iter().map(AssertionSigner::jwk).collect();
        let jwks = serde_json::json!({ "keys": keys }).to_string().into();
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(Arc::new(IdentityHeaders {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            strip,
            first_bytes,
            inject: config.headers.clone(),
            assertion,
            jwks,
        }))
    }

    /// The public keys backends verify assertions with (RFC 7517 §5), as
    /// served at `/.well-known/wristband/jwks.json`.
    pub fn jwks(&self) -> bytes::Bytes {
        self.jwks.clone()
    }

    /// Does this client header name alias an identity header?
    pub fn is_identity_alias(&self, name: &str) -> bool {
        // Compared byte by byte in canonical form, without allocating: this
        // runs for every header of every request.
        let first = name.bytes().next().map_or(0, canonical_byte);
        if !self.first_bytes[usize::from(first)] {
            return false;
        }
        let canonical_starts_with = |pattern: &str| {
            name.len() >= pattern.len()
                && name
                    .bytes()
                    .zip(pattern.bytes())
                    .all(|(n, p)| canonical_byte(n) == p)
        };
        self.strip.iter().any(|p| match p {
            HeaderPattern::Exact(exact) => {
                name.len() == exact.len() && canonical_starts_with(exact)
            }
            HeaderPattern::Prefix(prefix) => canonical_starts_with(prefix),
        })
    }

    /// Removes every alias of an identity header.
    pub fn strip(&self, headers: &mut HeaderMap) {
        crate::headers::remove_matching(headers, |name| self.is_identity_alias(name.as_str()));
    }

    /// Sets the identity headers from the claims, then the assertion for the
    /// upstream named `audience`. Always the last step of building the
    /// upstream request.
    /// Fails only when the assertion cannot be signed: the request must then
    /// not go upstream, since a backend may rely on the assertion alone.
    pub fn inject(
        &self,
        identity: &Arc<Identity>,
        audience: &str,
        headers: &mut HeaderMap,
    ) -> Result<(), AssertionUnsigned> {
        if identity.rendered.get().is_none() && Arc::strong_count(identity) == 1 {
            // No cache holds this identity, so no other request will use
            // it: its values go straight into this request. Memoized, they
            // would cost the memo's allocation, and one more per value
            // for the clone that shares it.
            for (name, claim) in &self.inject {
                set(headers, name, claim, render_claim(identity, claim));
            }
        } else {
            let fresh;
            let rendered = match identity
                .rendered
                .get_or_init(|| (self.id, self.render(identity)))
            {
                (id, rendered) if *id == self.id => rendered,
                // Rendered for the config before a reload.
                _ => {
                    fresh = self.render(identity);
                    &fresh
                }
            };
            for ((name, claim), value) in self.inject.iter().zip(rendered.iter()) {
                set(headers, name, claim, value.clone());
            }
        }
        if let Some(signer) = &self.assertion {
            let token = signer.sign(identity, audience).ok_or(AssertionUnsigned)?;
            headers.insert(signer.header().clone(), token);
        }
        Ok(())
    }

    /// Each injected header's value for `identity`, in `inject` order.
    fn render(&self, identity: &Identity) -> Box<[Rendered]> {
        self.inject
            .iter()
            .map(|(_, claim)| render_claim(identity, claim))
            .collect()
    }
}

/// The value of the header that carries `claim`.
fn render_claim(identity: &Identity, claim: &str) -> Rendered {
    match identity.claim(claim) {
        // A null claim is no value: no header, and nothing to warn of.
        None | Some(Value::Null) => Rendered::Absent,
        Some(value) => header_value(value).map_or(Rendered::Refused, Rendered::Value),
    }
}

/// Sets the header `name` that carries `claim`, as rendered.
fn set(headers: &mut HeaderMap, name: &HeaderName, claim: &str, value: Rendered) {
    match value {
        Rendered::Absent => {}
        Rendered::Value(v) => {
            headers.insert(name.clone(), v);
        }
        Rendered::Refused => tracing::warn!(
            header = %name,
            claim = %claim,
            "identity claim holds a control character; header not sent"
        ),
    }
}

/// The identity assertion could not be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the identity assertion could not be signed")]
pub struct AssertionUnsigned;

/// One byte of `canonical_header_name`.
fn canonical_byte(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

/// A claim as text (SPEC §3): strings as they are; numbers and booleans in
/// JSON form; arrays joined with `,`; objects as compact JSON; null is no
/// value. Identity headers and the session fields login writes (which
/// `list_fields` splits back on `,`) both render claims this way.
pub fn claim_text(value: &Value) -> Option<Cow<'_, str>> {
    Some(match value {
        Value::String(s) => Cow::Borrowed(s),
        Value::Array(items) => Cow::Owned(
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::Null => return None,
        other => Cow::Owned(other.to_string()),
    })
}

/// [`claim_text`] as a header value; `None` when the text holds a control
/// character (CR, LF, NUL, ...), which must never reach a header.
pub fn header_value(value: &Value) -> Option<HeaderValue> {
    let text = claim_text(value)?;
    if text.chars().any(char::is_control) {
        return None;
    }
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> IdentityConfig {
        IdentityConfig {
            strip: vec![
                HeaderPattern::Prefix("x-auth-".into()),
                HeaderPattern::Exact("x-forwarded-user".into()),
            ],
            headers: vec![
                (HeaderName::from_static("x-auth-user"), "sub".into()),
                (HeaderName::from_static("remote-user"), "sub".into()),
                (HeaderName::from_static("x-roles"), "roles".into()),
            ],
            assertion: None,
        }
    }

    #[test]
    fn spoofed_identity_headers_never_survive_strip_then_inject() {
        let ids = IdentityHeaders::new(&config()).expect("no assertion key to load");
        let mut headers = HeaderMap::new();
        for name in [
            "x-auth-user",
            "X_Auth_User",
            "x.auth.user",
            "x-auth-anything",
            "x_forwarded_user",
            "remote_user",
            "remote.user",
            "x-roles",
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
                HeaderValue::from_static("admin"),
            );
        }
        headers.insert("accept", HeaderValue::from_static("*/*"));
        ids.strip(&mut headers);
        assert_eq!(headers.len(), 1, "only accept survives: {headers:?}");

        let identity = Arc::new(Identity::new("alice", BTreeMap::new()));
        ids.inject(&identity, "app", &mut headers)
            .expect("no assertion configured");
        assert_eq!(headers["x-auth-user"], "alice");
        assert_eq!(headers["remote-user"], "alice");
        assert!(headers.get("x-roles").is_none(), "missing claim: no header");
        assert_eq!(headers.get_all("x-auth-user").iter().count(), 1);
    }

    #[test]
    fn a_null_claim_is_absent_and_a_control_character_refused() {
        let ids = IdentityHeaders::new(&config()).expect("no assertion key to load");
        let with_roles =
            |roles: Value| Identity::new("alice", BTreeMap::from([("roles".to_owned(), roles)]));
        // The x-roles header is the third in `config()`.
        let rendered = ids.render(&with_roles(Value::Null));
        assert!(matches!(rendered[2], Rendered::Absent), "{rendered:?}");
        let rendered = ids.render(&with_roles(json!("admin\nroot")));
        assert!(matches!(rendered[2], Rendered::Refused), "{rendered:?}");
        let rendered = ids.render(&with_roles(json!(["admin", "ops"])));
        assert!(
            matches!(&rendered[2], Rendered::Value(v) if v == "admin,ops"),
            "{rendered:?}"
        );
    }

    #[test]
    fn a_shared_identity_is_rendered_for_the_config_that_injects_it() {
        let mut claims = BTreeMap::new();
        claims.insert("roles".into(), serde_json::json!(["admin", "dev"]));
        claims.insert("evil".into(), serde_json::json!("a\r\nX-Auth-User: root"));
        let identity = Arc::new(Identity::new("alice", claims));
        // As the verified-token cache or the session cache holds it.
        let cached = identity.clone();

        let first = IdentityHeaders::new(&config()).expect("no assertion key to load");
        for _ in 0..2 {
            let mut headers = HeaderMap::new();
            first
                .inject(&identity, "app", &mut headers)
                .expect("no assertion configured");
            assert_eq!(headers["x-auth-user"], "alice");
            assert_eq!(headers["x-roles"], "admin,dev");
            assert!(
                cached.rendered.get().is_some(),
                "a shared identity is memoized"
            );
        }

        // A reload maps other claims to the same names: what the first
        // config rendered for this (cached) identity must not leak through.
        let mut reloaded = config();
        reloaded.headers = vec![
            (HeaderName::from_static("x-auth-user"), "roles".into()),
            (HeaderName::from_static("x-evil"), "evil".into()),
        ];
        let second = IdentityHeaders::new(&reloaded).expect("no assertion key to load");
        let mut headers = HeaderMap::new();
        second
            .inject(&identity, "app", &mut headers)
            .expect("no assertion configured");
        assert_eq!(headers["x-auth-user"], "admin,dev");
        assert!(headers.get("x-roles").is_none(), "{headers:?}");
        assert!(
            headers.get("x-evil").is_none(),
            "control characters: {headers:?}"
        );
    }

    #[test]
    fn an_identity_no_cache_holds_is_rendered_without_a_memo() {
        let ids = IdentityHeaders::new(&config()).expect("no assertion key to load");
        let roles = BTreeMap::from([("roles".to_owned(), json!(["admin", "dev"]))]);
        let identity = Arc::new(Identity::new("alice", roles));
        let mut headers = HeaderMap::new();
        ids.inject(&identity, "app", &mut headers)
            .expect("no assertion configured");
        assert_eq!(headers["x-auth-user"], "alice");
        assert_eq!(headers["remote-user"], "alice");
        assert_eq!(headers["x-roles"], "admin,dev");
        assert!(identity.rendered.get().is_none(), "used once: no memo");
    }

    #[test]
    fn claim_values_are_formatted_as_the_spec_says() {
        assert_eq!(header_value(&json!("a b")).expect("string"), "a b");
        assert_eq!(header_value(&json!(42)).expect("number"), "42");
        assert_eq!(header_value(&json!(true)).expect("bool"), "true");
        assert_eq!(
            header_value(&json!(["admin", "dev", 3])).expect("array"),
            "admin,dev,3"
        );
        assert_eq!(
            header_value(&json!({"a": 1})).expect("object"),
            r#"{"a":1}"#
        );
        assert!(header_value(&json!("evil\r\nX-Auth-User: root")).is_none());
        assert!(header_value(&json!("nul\0")).is_none());
        assert!(header_value(&json!("tab\there")).is_none());
    }

    pub(super) mod props {
        //! The rendering rule of SPEC §3 and §5.2, checked over arbitrary
        //! claims: a header is sent only when the claim's whole text holds
        //! no control character (U+0000–U+001F, U+007F–U+009F: CR, LF, NUL
        //! and tab among them), and then exactly that text as UTF-8 (other
        //! non-ASCII characters go out as RFC 9110 §5.5 obs-text); a claim
        //! with a control character, or `null`, sends no header at all —
        //! never a part of it.

        use super::*;
        use proptest::prelude::*;

        /// Claim values as an IdP or a session store might hold them, with
        /// strings of any characters, control characters made common.
        pub(in crate::identity) fn claim_value() -> impl Strategy<Value = Value> {
            let text = prop_oneof![
                any::<String>(),
                "[ -~]{0,12}",
                "[a-z\r\n\0\t\u{7f}\u{85}é ]{0,8}",
            ];
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                text.prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map("[a-z\r\n\"]{0,3}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// SPEC §3's text of a claim, or `None` for `null`.
        fn spec_text(value: &Value) -> Option<String> {
            let json = |v: &Value| serde_json::to_string(v).unwrap_or_default();
            match value {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                Value::Array(items) => Some(
                    items
                        .iter()
                        .map(|item| item.as_str().map_or_else(|| json(item), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                other => Some(json(other)),
            }
        }

        fn expected_header(value: &Value) -> Option<String> {
            let control = |c: &char| matches!(c, '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}');
            spec_text(value).filter(|t| !t.chars().any(|c| control(&c)))
        }

        const CLAIMS: [&str; 4] = ["sub", "a", "b", "roles"];

        fn mapped() -> IdentityHeaders {
            let config = IdentityConfig {
                strip: vec![HeaderPattern::Prefix("x-auth-".into())],
                headers: CLAIMS
                    .iter()
                    .map(|c| {
                        let name = HeaderName::try_from(format!("x-auth-{c}"));
                        (name.expect("a valid header name"), (*c).to_owned())
                    })
                    .collect(),
                assertion: None,
            };
            match IdentityHeaders::new(&config).map(Arc::try_unwrap) {
                Ok(Ok(ids)) => ids,
                _ => unreachable!("no assertion key to load, and the Arc is ours"),
            }
        }

        proptest! {
            // PROPTEST_CASES raises the count for a deep run.
            #![proptest_config(ProptestConfig {
                cases: ProptestConfig::default().cases.max(2048),
                ..ProptestConfig::default()
            })]

            #[test]
            fn a_claim_renders_whole_or_not_at_all(value in claim_value()) {
                let rendered = header_value(&value);
                let expected = expected_header(&value);
                prop_assert_eq!(
                    rendered.as_ref().map(HeaderValue::as_bytes),
                    expected.as_ref().map(String::as_bytes),
                    "{}", value
                );
            }

            /// Through strip and inject, with every identity header
            /// spoofed by the client: each one carries the claim's whole
            /// text or is absent, and no value the upstream gets holds CR,
            /// LF or NUL.
            #[test]
            fn injected_headers_are_the_claims_or_nothing(
                sub in any::<String>(),
                claims in proptest::collection::btree_map(
                    proptest::sample::select(CLAIMS[1..].to_vec()).prop_map(str::to_owned),
                    claim_value(),
                    0..4,
                ),
            ) {
                let ids = mapped();
                let ids = &ids;
                let identity = Arc::new(Identity::new(sub, claims));
                let injected = |identity: &Arc<Identity>| {
                    let mut headers = HeaderMap::new();
                    for (name, _) in &ids.inject {
                        headers.append(name.clone(), HeaderValue::from_static("spoofed"));
                    }
                    ids.strip(&mut headers);
                    ids.inject(identity, "app", &mut headers).expect("no assertion configured");
                    headers
                };
                // Used once (rendered straight in), then held by a cache
                // (memoized, and the memo used): the same headers.
                let once = injected(&identity);
                let cached = identity.clone();
                prop_assert_eq!(&injected(&identity), &once);
                prop_assert_eq!(&injected(&cached), &once);
                let headers = once;
                for (name, claim) in &ids.inject {
                    let sent: Vec<&[u8]> =
                        headers.get_all(name).iter().map(HeaderValue::as_bytes).collect();
                    let expected = identity.claim(claim).and_then(expected_header);
                    let expected: Vec<&[u8]> = expected.iter().map(String::as_bytes).collect();
                    prop_assert_eq!(sent, expected, "{}", name);
                }
                for value in headers.values() {
                    prop_assert!(!value.as_bytes().iter().any(|b| b"\r\n\0".contains(b)));
                }
            }
        }
    }
}
