//! Build the upstream request (SPEC §1, the stage after authorization): the
//! client's request and the identity in, the request the upstream receives
//! out, in one function, [`build`], in this order:
//!
//! 1. hop-by-hop headers and those the client's `Connection` names go
//!    ([`Inbound::new`], before authentication reads the request, so a
//!    `Connection`-named header can never carry a credential);
//! 2. every identity-header alias goes, then the credentials that are not
//!    forwarded, then `_` headers when `headers_with_underscores = "drop"`;
//! 3. `X-Forwarded-*`, `X-Request-Id`, `Host`, the `Upgrade` the client
//!    asked for, and the normalized target are set;
//! 4. last, the identity headers are injected, so nothing the client sent
//!    can survive under an identity name.
//!
//! With `preserve_host = false` the request leaves here without a Host; the
//! target's own is set by its connection pool, since the target is picked
//! after this, once per attempt.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, CONNECTION, HeaderMap, HeaderValue, UPGRADE};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Uri, Version};
use hyper::upgrade::OnUpgrade;

use crate::auth::credentials::Unforwarded;
use crate::config::UnderscoreHeaders;
use crate::error::{BadRequest, Rejection};
use crate::headers::{
    X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID, remove_hop_by_hop,
    remove_matching,
};
use crate::identity::{Identity, IdentityHeaders};
use crate::upstream::pool::UpstreamBody;

/// The client's request head without its hop-by-hop headers: what
/// authentication reads, and the only thing [`build`] starts from.
pub struct Inbound {
    parts: Parts,
    /// The `Upgrade` the client asked for (`Connection: upgrade`), put back
    /// by [`build`] once the request is authenticated.
    upgrade: Option<HeaderValue>,
}

impl Inbound {
    pub fn new(mut parts: Parts) -> Inbound {
        let upgrade = remove_hop_by_hop(&mut parts.headers);
        Inbound { parts, upgrade }
    }

    pub fn parts(&self) -> &Parts {
        &self.parts
    }
}

/// What the builder needs to know about the client connection.
pub struct Client<'a> {
    pub ip: IpAddr,
    /// `ip`, formatted once per connection.
    pub ip_header: &'a HeaderValue,
    pub tls: bool,
    /// The peer is in `server.trusted_proxies`: its `X-Forwarded-*` count.
    pub trusted: bool,
    /// The Host the client asked for (Host header or `:authority`).
    pub host: Option<&'a HeaderValue>,
    pub request_id: &'a HeaderValue,
}

/// What the config says the upstream request must (not) carry.
pub struct Rules<'a> {
    pub identity: &'a IdentityHeaders,
    pub unforwarded: &'a Unforwarded,
    pub underscores: UnderscoreHeaders,
    pub preserve_host: bool,
    /// The upstream's name: the `aud` of the identity assertion.
    pub audience: &'a str,
}

/// The upstream request, and the client's side of the protocol upgrade it
/// asked for (HTTP/1.1 only), for the tunnel should the upstream agree.
pub struct Outbound {
    pub request: Request<UpstreamBody>,
    pub upgrade: Option<OnUpgrade>,
}

/// The upstream request for `inbound`, addressed to the normalized `path`
/// (guarantee 3) with the client's query. Fails on a target that cannot be
/// rebuilt (400) or an assertion that cannot be signed (503: a backend may
/// rely on it alone, so the identity never goes without it).
pub fn build(
    inbound: Inbound,
    path: &str,
    body: UpstreamBody,
    client: &Client<'_>,
    rules: &Rules<'_>,
    identity: Option<&Arc<Identity>>,
) -> Result<Outbound, Rejection> {
    let Inbound { mut parts, upgrade } = inbound;
    let target = upstream_target(&parts, path)?;
    let headers = &mut parts.headers;

    // Strip.
    rules.identity.strip(headers);
    rules.unforwarded.remove_from(headers);
    if rules.underscores == UnderscoreHeaders::Drop {
        remove_matching(headers, |name| name.as_str().contains('_'));
    }

    // Set what the proxy vouches for.
    set_forwarded(headers, client);
    headers.insert(&X_REQUEST_ID, client.request_id.clone());
    set_host(headers, rules.preserve_host, client.host);
    let upgrade = put_back_upgrade(&mut parts, upgrade);

    // Inject, last.
    if let Some(identity) = identity {
        rules
            .identity
            .inject(identity, rules.audience, &mut parts.headers)?;
    }

    let mut request = Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = Uri::from(target);
    *request.headers_mut() = parts.headers;
    Ok(Outbound { request, upgrade })
}

/// What the upstream is asked for: the normalized path and the query as
/// sent. Unchanged by normalization (the common case), the request's own
/// target is reused.
fn upstream_target(parts: &Parts, path: &str) -> Result<PathAndQuery, Rejection> {
    let target = match (parts.uri.path_and_query(), parts.uri.query()) {
        (Some(pq), _) if pq.path() == path => return Ok(pq.clone()),
        (_, Some(query)) => PathAndQuery::try_from(format!("{path}?{query}")),
        (_, None) => PathAndQuery::try_from(path),
    };
    target.map_err(|_| Rejection::BadRequest(BadRequest::Target))
}

/// Sets `X-Forwarded-For/Proto/Host`. From a trusted proxy the chain is
/// extended and its Proto/Host kept; from anyone else every `X-Forwarded-*`
/// header is replaced (guarantee 2).
fn set_forwarded(headers: &mut HeaderMap, client: &Client<'_>) {
    if client.trusted {
        let ip = client.ip.to_string();
        let chain: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let xff = if chain.is_empty() {
            ip
        } else {
            format!("{}, {ip}", chain.join(", "))
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert(&X_FORWARDED_FOR, v);
        }
    } else {
        remove_matching(headers, |name| name.as_str().starts_with("x-forwarded-"));
        headers.insert(&X_FORWARDED_FOR, client.ip_header.clone());
    }
    if !(client.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if client.tls { "https" } else { "http" };
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(client.trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match client.host {
            Some(host) => {
                headers.insert(&X_FORWARDED_HOST, host.clone());
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// `preserve_host`: the client's Host (also for HTTP/2, which has none);
/// otherwise none, so the pool sets the target's.
fn set_host(headers: &mut HeaderMap, preserve: bool, client_host: Option<&HeaderValue>) {
    match client_host.filter(|_| preserve) {
        Some(host) => {
            headers.insert(header::HOST, host.clone());
        }
        None => {
            headers.remove(header::HOST);
        }
    }
}

/// Guarantee 8: the client's `Upgrade`, removed with the other hop-by-hop
/// headers, goes back only now that the request is authenticated, and the
/// client's side of the upgrade is taken. HTTP/1.1 only.
fn put_back_upgrade(parts: &mut Parts, protocol: Option<HeaderValue>) -> Option<OnUpgrade> {
    let protocol = protocol.filter(|_| parts.version == Version::HTTP_11)?;
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(UPGRADE, protocol);
    parts.extensions.remove::<OnUpgrade>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeaderPattern, IdentityConfig};
    use http::HeaderName;
    use http_body_util::{Either, Empty};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn identity_headers() -> Arc<IdentityHeaders> {
        IdentityHeaders::new(&IdentityConfig {
            strip: vec![HeaderPattern::Prefix("x-auth-".into())],
            headers: vec![(HeaderName::from_static("x-auth-user"), "sub".into())],
            assertion: None,
        })
        .expect("no assertion key to load")
    }

    /// `pairs` as the client sent them, through the whole builder.
    fn built(
        pairs: &[(&str, &str)],
        client: &Client<'_>,
        underscores: UnderscoreHeaders,
        identity: Option<&Arc<Identity>>,
    ) -> HeaderMap {
        let mut request = Request::get("/x");
        for (k, v) in pairs {
            request = request.header(*k, *v);
        }
        let (parts, ()) = request.body(()).expect("request").into_parts();
        let identity_headers = identity_headers();
        let rules = Rules {
            identity: &identity_headers,
            unforwarded: &Unforwarded::default(),
            underscores,
            preserve_host: false,
            audience: "app",
        };
        let body: UpstreamBody = Either::Right(Empty::new());
        build(Inbound::new(parts), "/x", body, client, &rules, identity)
            .map(|outbound| outbound.request.into_parts().0.headers)
            .expect("no assertion configured")
    }

    #[test]
    fn untrusted_forwarded_headers_are_replaced_and_identity_injected_last() {
        let rid = HeaderValue::from_static("req-1");
        let host = HeaderValue::from_static("app.example.com");
        let ip_header = HeaderValue::from_static("192.0.2.7");
        let client = Client {
            ip: "192.0.2.7".parse().expect("ip"),
            ip_header: &ip_header,
            tls: false,
            trusted: false,
            host: Some(&host),
            request_id: &rid,
        };
        let identity = Arc::new(Identity::new("alice", BTreeMap::new()));
        let headers = built(
            &[
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-user", "root"),
                ("x_auth_user", "root"),
                ("x-auth-user", "root"),
                ("some_header", "1"),
                ("connection", "x-auth-user"),
            ],
            &client,
            UnderscoreHeaders::Drop,
            Some(&identity),
        );
        assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "app.example.com");
        assert!(headers.get("x-forwarded-user").is_none());
        assert!(headers.get("some_header").is_none());
        assert!(headers.get("connection").is_none());
        assert_eq!(headers["x-auth-user"], "alice");
        assert_eq!(headers.get_all("x-auth-user").iter().count(), 1);
        assert_eq!(headers["x-request-id"], "req-1");
        assert!(headers.get("host").is_none(), "the pool sets the target's");
    }

    proptest! {
        // PROPTEST_CASES raises the count for a deep run.
        #![proptest_config(ProptestConfig {
            cases: ProptestConfig::default().cases.max(4096),
            ..ProptestConfig::default()
        })]

        /// Guarantee 3: what routing and policy saw (the normalized path) is
        /// exactly what the upstream is asked for, with the query as sent.
        #[test]
        fn the_upstream_is_asked_for_the_normalized_path(
            path in crate::routing::any_path(),
            query in proptest::option::of("[a-zA-Z0-9=&%./?-]{0,12}"),
        ) {
            let target = match &query {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            let Ok(request) = Request::get(target.as_str()).body(()) else {
                return Ok(());
            };
            let (parts, ()) = request.into_parts();
            let Ok(normalized) = crate::routing::normalize_path(parts.uri.path()) else {
                return Ok(());
            };
            let forwarded = upstream_target(&parts, &normalized);
            let forwarded = forwarded.map_err(|_| {
                proptest::test_runner::TestCaseError::fail(format!("{target:?} refused"))
            })?;
            prop_assert_eq!(forwarded.path(), normalized.as_str(), "{:?}", target);
            prop_assert_eq!(forwarded.query(), parts.uri.query(), "{:?}", target);
        }
    }

    #[test]
    fn trusted_proxies_extend_the_chain() {
        let rid = HeaderValue::from_static("r");
        let ip_header = HeaderValue::from_static("10.1.2.3");
        let client = Client {
            ip: "10.1.2.3".parse().expect("ip"),
            ip_header: &ip_header,
            tls: true,
            trusted: true,
            host: None,
            request_id: &rid,
        };
        let headers = built(
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "public.example"),
                ("x-auth-user", "root"),
            ],
            &client,
            UnderscoreHeaders::Allow,
            None,
        );
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 10.1.2.3");
        assert_eq!(headers["x-forwarded-host"], "public.example");
        assert!(headers.get("x-auth-user").is_none());
    }
}
