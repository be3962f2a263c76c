//! Forward-auth (SPEC §8): an edge proxy (nginx `auth_request`, Traefik
//! ForwardAuth, Caddy `forward_auth`, Envoy `ext_authz`) asks whether the
//! request it holds may pass, and takes back the identity headers.
//!
//! This file only reads the question and shapes the answer; the decision is
//! the pipeline's own ([`super::Proxy::pipeline`]): the same normalization,
//! routing, authentication, policy and identity code as a proxied request.
//!
//! The edge describes the original request in one of two header sets:
//! `X-Forwarded-Method` / `X-Forwarded-Uri` (Traefik, Caddy) or
//! `X-Original-Method` / `X-Original-URI` (nginx), with `X-Forwarded-Host`
//! and `X-Forwarded-Proto`. An edge passes the client's own headers along
//! and overwrites only those of its set, so a client can add the *other*
//! set: a question carrying both, or any of them twice, is refused (400)
//! rather than answered about a path the client chose.
//!
//! Envoy's HTTP `ext_authz` can set neither: it sends the original method
//! and Host, to `path_prefix` + the original path. So a request *below*
//! the forward-auth path is a question too (beyond SPEC §8, which names the
//! header sets only): the rest of its path is the original path, and
//! either header set next to it is the same ambiguity, refused.

use http::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Uri, Version};

use crate::error::{BadRequest, Rejection};
use crate::headers::{X_FORWARDED_HOST, X_FORWARDED_PROTO};

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");

/// The request the edge asks about: its head as the client sent it to the
/// edge (method, target, Host, and the call's own headers, credentials
/// included), and whether the client used TLS.
pub struct Original {
    pub parts: Parts,
    /// The original Host (also the `Host` of `parts`).
    pub host: HeaderValue,
    pub tls: bool,
}

/// How the edge asks: at the forward-auth path itself (the header sets),
/// or below it (Envoy: the rest of the normalized path is the original).
pub fn question<'p>(forward_auth_path: &str, path: &'p str) -> Option<Asked<'p>> {
    let rest = path.strip_prefix(forward_auth_path)?;
    if rest.is_empty() {
        Some(Asked::Headers)
    } else if rest.starts_with('/') {
        Some(Asked::PathPrefix(rest))
    } else {
        None
    }
}

/// Whether a request is a question, and for Envoy's form the original
/// path below the forward-auth path (`Some(Some(rest))`). The form is read
/// on the path as sent: a question is never found by normalizing, since
/// `/_wristband/auth/../../public` must not turn into a request for
/// `/public` that is proxied and answered 200, which the edge reads as
/// "allowed". A path that only normalizes to below the forward-auth path
/// (an encoded or dotted spelling) is refused.
pub fn asked(
    forward_auth_path: &str,
    raw: &str,
    normalized: &str,
) -> Result<Option<Option<String>>, Rejection> {
    match (
        question(forward_auth_path, raw),
        question(forward_auth_path, normalized),
    ) {
        (Some(Asked::PathPrefix(rest)), _) => Ok(Some(Some(rest.to_owned()))),
        (Some(Asked::Headers), _) | (None, Some(Asked::Headers)) => Ok(Some(None)),
        (None, Some(Asked::PathPrefix(_))) => Err(refused(
            "the forward-auth path is spelled other than as configured",
        )),
        (None, None) => Ok(None),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked<'p> {
    Headers,
    PathPrefix(&'p str),
}

/// Rebuilds the original request from the edge's headers (or, for Envoy,
/// from the call's method and the path below the forward-auth path).
/// `tls`: the call itself came over TLS (the scheme when
/// `X-Forwarded-Proto` is absent).
pub fn original(mut call: Parts, tls: bool, asked: Asked<'_>) -> Result<Original, Rejection> {
    let said = Described::read(&call.headers);
    let traefik = (
        said.forwarded_method.single()?,
        said.forwarded_uri.single()?,
    );
    let nginx = (said.original_method.single()?, said.original_uri.single()?);
    let given = |(method, uri): (Option<_>, Option<_>)| method.is_some() || uri.is_some();
    let (method, target) = match (asked, given(traefik), given(nginx)) {
        (Asked::Headers, true, true)
        | (Asked::PathPrefix(_), true, _)
        | (Asked::PathPrefix(_), _, true) => {
            return Err(refused("both header sets at once"));
        }
        (Asked::Headers, false, false) => {
            return Err(refused(
                "no X-Forwarded-Method/-Uri nor X-Original-Method/-URI",
            ));
        }
        (Asked::Headers, true, false) => from_headers(traefik)?,
        (Asked::Headers, false, true) => from_headers(nginx)?,
        (Asked::PathPrefix(rest), false, false) => {
            let target = match call.uri.query() {
                Some(query) => PathAndQuery::try_from(format!("{rest}?{query}")),
                None => PathAndQuery::try_from(rest),
            };
            let target = target.map_err(|_| refused("the original URI is not an absolute path"))?;
            (call.method.clone(), target)
        }
    };
    // From X-Forwarded-Host, the Host header is replaced; without it, the
    // call's one Host is the original's already.
    let (host, replace_host) = match said.forwarded_host.single()? {
        Some(host) => (host.clone(), true),
        None => (
            said.host
                .single()?
                .cloned()
                .ok_or(refused("no X-Forwarded-Host and no Host"))?,
            false,
        ),
    };
    let tls = match crate::headers::forwarded_https_of(said.forwarded_proto.values()) {
        Ok(said) => said.unwrap_or(tls),
        Err(crate::headers::OddProto) => {
            return Err(refused("X-Forwarded-Proto is not one http or https"));
        }
    };

    // The question's own description goes: it is not part of the original
    // request, and nothing downstream must read it as if it were. Only the
    // names present are removed (a removal is a hashed lookup).
    let present = said.present();
    for (name, present) in DESCRIBING.iter().zip(present) {
        if present {
            call.headers.remove(*name);
        }
    }
    if replace_host {
        call.headers.insert(HOST, host.clone());
    }
    call.method = method;
    call.uri = Uri::from(target);
    call.version = Version::HTTP_11;
    Ok(Original {
        parts: call,
        host,
        tls,
    })
}

/// The headers that describe the question, in the order of
/// [`Described::present`].
static DESCRIBING: [&HeaderName; 6] = [
    &X_FORWARDED_METHOD,
    &X_FORWARDED_URI,
    &X_ORIGINAL_METHOD,
    &X_ORIGINAL_URI,
    &X_FORWARDED_HOST,
    &X_FORWARDED_PROTO,
];

/// The call's headers that describe the question, and its Host, found in
/// one pass over the map: seven hashed lookups cost more than the pass
/// (callgrind), however many headers the call carries.
#[derive(Default)]
struct Described<'h> {
    forwarded_method: Seen<'h>,
    forwarded_uri: Seen<'h>,
    original_method: Seen<'h>,
    original_uri: Seen<'h>,
    forwarded_host: Seen<'h>,
    forwarded_proto: Seen<'h>,
    host: Seen<'h>,
}

/// The first two values of one header name.
#[derive(Default, Clone, Copy)]
struct Seen<'h> {
    first: Option<&'h HeaderValue>,
    second: Option<&'h HeaderValue>,
}

impl<'h> Described<'h> {
    fn read(headers: &'h HeaderMap) -> Self {
        let mut said = Described::default();
        for (name, value) in headers {
            // `HeaderName`s are lowercase: compared as the statics spell them.
            let seen = match name.as_str() {
                "host" => &mut said.host,
                "x-forwarded-method" => &mut said.forwarded_method,
                "x-forwarded-uri" => &mut said.forwarded_uri,
                "x-original-method" => &mut said.original_method,
                "x-original-uri" => &mut said.original_uri,
                "x-forwarded-host" => &mut said.forwarded_host,
                "x-forwarded-proto" => &mut said.forwarded_proto,
                _ => continue,
            };
            match seen.first {
                None => seen.first = Some(value),
                Some(_) => {
                    seen.second.get_or_insert(value);
                }
            }
        }
        said
    }

    /// Which of [`DESCRIBING`] the call carries.
    fn present(&self) -> [bool; 6] {
        [
            self.forwarded_method.first.is_some(),
            self.forwarded_uri.first.is_some(),
            self.original_method.first.is_some(),
            self.original_uri.first.is_some(),
            self.forwarded_host.first.is_some(),
            self.forwarded_proto.first.is_some(),
        ]
    }
}

impl<'h> Seen<'h> {
    /// The one value; two are refused (which would count?).
    fn single(self) -> Result<Option<&'h HeaderValue>, Rejection> {
        if self.second.is_some() {
            return Err(refused("a forward-auth header given twice"));
        }
        Ok(self.first)
    }

    fn values(self) -> impl Iterator<Item = &'h HeaderValue> {
        self.first.into_iter().chain(self.second)
    }
}

/// The method and target one header set gives.
fn from_headers(
    (method, uri): (Option<&HeaderValue>, Option<&HeaderValue>),
) -> Result<(Method, PathAndQuery), Rejection> {
    let (Some(method), Some(uri)) = (method, uri) else {
        return Err(refused("a method without a URI, or a URI without a method"));
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| refused("the original method is not a method"))?;
    let target = PathAndQuery::try_from(uri.as_bytes())
        .ok()
        .filter(|pq| pq.as_str().starts_with('/'))
        .ok_or(refused("the original URI is not an absolute path"))?;
    Ok((method, target))
}

fn refused(why: &'static str) -> Rejection {
    Rejection::BadRequest(BadRequest::OriginalRequest(why))
}

/// A refusal as the edge gets it: a 302 the route would make (to
/// `login_url`, or into the login flow for `on_unauthenticated = "login"`:
/// `login_path?rd=<original target>`, navigational requests only) becomes
/// a 401 with `X-Auth-Login` naming that `Location` (nginx `auth_request`
/// turns anything but 2xx, 401 and 403 into a 500), so the edge redirects
/// the browser itself (`error_page 401`, Traefik `errors`).
pub fn for_the_edge(rejection: Rejection) -> Rejection {
    let Rejection::Auth(mut error) = rejection else {
        return rejection;
    };
    let location = error
        .take_redirect()
        .and_then(|l| HeaderValue::try_from(l).ok());
    match location {
        Some(location) => Rejection::EdgeLogin { error, location },
        None => Rejection::Auth(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder()
            .method("GET")
            .uri("/_wristband/auth");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request").into_parts().0
    }

    fn original(call: Parts, tls: bool) -> Result<Original, Rejection> {
        super::original(call, tls, Asked::Headers)
    }

    fn reason(result: Result<Original, Rejection>) -> &'static str {
        match result {
            Err(Rejection::BadRequest(BadRequest::OriginalRequest(why))) => why,
            Err(other) => panic!("not an original-request refusal: {other:?}"),
            Ok(original) => panic!("accepted: {:?}", original.parts.uri),
        }
    }

    #[test]
    fn traefik_and_nginx_header_sets_give_the_original_request() {
        let traefik = original(
            call(&[
                ("host", "wristband:8080"),
                ("x-forwarded-method", "POST"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "app.example.com"),
                ("x-forwarded-uri", "/api/x?y=1"),
                ("authorization", "Bearer t"),
            ]),
            false,
        )
        .expect("traefik");
        assert_eq!(traefik.parts.method, Method::POST);
        assert_eq!(traefik.parts.uri, "/api/x?y=1");
        assert_eq!(traefik.parts.headers[HOST], "app.example.com");
        assert_eq!(traefik.parts.headers["authorization"], "Bearer t");
        assert!(traefik.tls);
        assert_eq!(traefik.host, "app.example.com");
        for name in DESCRIBING {
            assert!(!traefik.parts.headers.contains_key(name), "{name} kept");
        }
        assert_eq!(traefik.parts.headers.get_all(HOST).iter().count(), 1);

        let nginx = original(
            call(&[
                ("host", "app.example.com"),
                ("x-original-method", "GET"),
                ("x-original-uri", "/public/../admin"),
            ]),
            false,
        )
        .expect("nginx");
        assert_eq!(nginx.parts.uri, "/public/../admin");
        assert_eq!(nginx.parts.headers[HOST], "app.example.com");
        assert_eq!(nginx.host, "app.example.com");
        assert!(!nginx.tls);
        for name in DESCRIBING {
            assert!(!nginx.parts.headers.contains_key(name), "{name} kept");
        }
    }

    #[test]
    fn a_question_a_client_could_have_bent_is_refused() {
        // The client's own X-Forwarded-Uri next to nginx's X-Original-URI.
        let both = call(&[
            ("host", "h"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/admin"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public"),
        ]);
        assert_eq!(reason(original(both, false)), "both header sets at once");
        let twice = call(&[
            ("host", "h"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/admin"),
            ("x-forwarded-uri", "/public"),
        ]);
        assert_eq!(
            reason(original(twice, false)),
            "a forward-auth header given twice"
        );
        let half = call(&[
            ("host", "h"),
            ("x-original-uri", "/admin"),
            ("x-forwarded-method", "GET"),
        ]);
        assert_eq!(reason(original(half, false)), "both header sets at once");
        let no_method = call(&[("host", "h"), ("x-original-uri", "/admin")]);
        assert!(original(no_method, false).is_err());
        let none = call(&[("host", "h")]);
        assert!(original(none, false).is_err());
        let absolute = call(&[
            ("host", "h"),
            ("x-original-method", "GET"),
            ("x-original-uri", "http://evil/admin"),
        ]);
        assert!(original(absolute, false).is_err());
        let proto = call(&[
            ("host", "h"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/"),
            ("x-forwarded-proto", "gopher"),
        ]);
        assert!(original(proto, false).is_err());
        let proto_twice = call(&[
            ("host", "h"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            reason(original(proto_twice, false)),
            "X-Forwarded-Proto is not one http or https"
        );
        let host_twice = call(&[
            ("host", "h"),
            ("host", "i"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/"),
        ]);
        assert_eq!(
            reason(original(host_twice, false)),
            "a forward-auth header given twice"
        );
        let forwarded_host_twice = call(&[
            ("host", "h"),
            ("x-forwarded-host", "a"),
            ("x-forwarded-host", "b"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/"),
        ]);
        assert_eq!(
            reason(original(forwarded_host_twice, false)),
            "a forward-auth header given twice"
        );
    }

    #[test]
    fn envoy_asks_below_the_path_with_the_original_method() {
        assert_eq!(
            question("/_wristband/auth", "/_wristband/auth"),
            Some(Asked::Headers)
        );
        assert_eq!(
            question("/_wristband/auth", "/_wristband/auth/api/x"),
            Some(Asked::PathPrefix("/api/x"))
        );
        assert_eq!(question("/_wristband/auth", "/_wristband/authx"), None);
        assert_eq!(question("/_wristband/auth", "/api"), None);

        let mut call = call(&[("host", "app.example.com"), ("x-forwarded-proto", "https")]);
        call.method = Method::DELETE;
        call.uri = Uri::from_static("/_wristband/auth/api/x?y=1");
        let envoy =
            super::original(call.clone(), false, Asked::PathPrefix("/api/x")).expect("envoy");
        assert_eq!(envoy.parts.method, Method::DELETE);
        assert_eq!(envoy.parts.uri, "/api/x?y=1");
        assert_eq!(envoy.parts.headers[HOST], "app.example.com");
        assert!(envoy.tls);

        call.headers
            .insert(&X_ORIGINAL_URI, HeaderValue::from_static("/public"));
        assert_eq!(
            reason(super::original(call, false, Asked::PathPrefix("/api/x"))),
            "both header sets at once"
        );
    }
}
