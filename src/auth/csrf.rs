//! `csrf = "origin"` (SPEC §3 `[[routes]]`, §4): a session cookie is an
//! ambient credential — the browser attaches it to a request another site
//! made it send — so a session-authenticated POST, PUT, PATCH or DELETE must
//! show it came from this site: its `Origin` (RFC 6454 §7), or when that is
//! absent its `Referer` (RFC 9110 §10.1.3), must name the scheme the client
//! connected with and the host and port it addressed. A JWT is exempt: a
//! bearer token is attached by the calling code, never by the browser.

use http::Method;
use http::header::{HeaderMap, ORIGIN, REFERER};
use http::request::Parts;
use http::uri::{Authority, Uri};

use super::Authenticated;
use super::error::{AuthError, Forbidden};
use super::redirect::Site;
use crate::config::{CredentialKind, Csrf, RouteConfig};

/// 403 when the route checks origins, the caller came with a session, the
/// method is unsafe and the request does not come from this site.
pub fn check(
    route: &RouteConfig,
    authenticated: &Authenticated,
    parts: &Parts,
    site: &Site<'_>,
) -> Result<(), AuthError> {
    if route.csrf == Csrf::Off || !needs_origin(authenticated, &parts.method) {
        return Ok(());
    }
    if same_origin(&parts.headers, site) {
        Ok(())
    } else {
        Err(AuthError::Forbidden {
            kind: CredentialKind::Session,
            reason: Forbidden::CrossSite,
        })
    }
}

/// Session-authenticated and an unsafe method.
fn needs_origin(authenticated: &Authenticated, method: &Method) -> bool {
    let by_session = matches!(
        authenticated,
        Authenticated::Caller {
            kind: CredentialKind::Session,
            ..
        }
    );
    let unsafe_method = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method);
    by_session && unsafe_method
}

/// Does `Origin` (or, without one, `Referer`) name this site? Neither, more
/// than one, `Origin: null`, or anything unparseable: no.
pub fn same_origin(headers: &HeaderMap, site: &Site<'_>) -> bool {
    let name = if headers.contains_key(ORIGIN) {
        ORIGIN
    } else {
        REFERER
    };
    let mut values = headers.get_all(&name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(source) = Uri::try_from(value.as_bytes()) else {
        return false;
    };
    let (Some(scheme), Some(authority)) = (source.scheme_str(), source.authority()) else {
        return false;
    };
    let Some(host) = site
        .host
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
    else {
        return false;
    };
    let default_port = if site.tls { 443 } else { 80 };
    scheme.eq_ignore_ascii_case(site.scheme())
        && authority.host().eq_ignore_ascii_case(host.host())
        && authority.port_u16().unwrap_or(default_port) == host.port_u16().unwrap_or(default_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use http::HeaderValue;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn route(csrf: Csrf) -> RouteConfig {
        RouteConfig {
            accept: vec![CredentialKind::Session, CredentialKind::Jwt],
            csrf,
            ..RouteConfig::for_tests()
        }
    }

    fn caller(kind: CredentialKind) -> Authenticated {
        Authenticated::Caller {
            identity: Arc::new(Identity::new("alice", BTreeMap::new())),
            kind,
        }
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().method(method).uri("/form");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).expect("request").into_parts().0
    }

    fn site(tls: bool, host: &'static str) -> (bool, HeaderValue) {
        (tls, HeaderValue::from_static(host))
    }

    fn allowed(tls: bool, host: &'static str, headers: &[(&str, &str)]) -> bool {
        let (tls, host) = site(tls, host);
        let site = Site {
            tls,
            host: Some(&host),
        };
        same_origin(&request("POST", headers).headers, &site)
    }

    #[test]
    fn origin_must_be_this_scheme_host_and_port() {
        let host = "app.example.com";
        assert!(allowed(
            true,
            host,
            &[("origin", "https://app.example.com")]
        ));
        assert!(allowed(
            true,
            host,
            &[("origin", "https://APP.example.com:443")]
        ));
        assert!(allowed(
            false,
            host,
            &[("origin", "http://app.example.com")]
        ));
        assert!(allowed(
            false,
            "app.example.com:8080",
            &[("origin", "http://app.example.com:8080")]
        ));

        assert!(!allowed(
            true,
            host,
            &[("origin", "http://app.example.com")]
        ));
        assert!(!allowed(
            false,
            host,
            &[("origin", "https://app.example.com")]
        ));
        assert!(!allowed(true, host, &[("origin", "https://evil.example")]));
        assert!(!allowed(
            true,
            host,
            &[("origin", "https://app.example.com.evil.example")]
        ));
        assert!(!allowed(
            true,
            host,
            &[("origin", "https://app.example.com:8443")]
        ));
        assert!(!allowed(
            false,
            "app.example.com:8080",
            &[("origin", "http://app.example.com")]
        ));
        assert!(!allowed(true, host, &[("origin", "null")]));
        assert!(!allowed(true, host, &[("origin", "app.example.com")]));
        assert!(!allowed(true, host, &[]), "neither Origin nor Referer");
        assert!(!allowed(
            true,
            host,
            &[
                ("origin", "https://app.example.com"),
                ("origin", "https://evil.example")
            ]
        ));
    }

    #[test]
    fn referer_counts_only_without_origin() {
        let host = "app.example.com";
        assert!(allowed(
            true,
            host,
            &[("referer", "https://app.example.com/page?q=1")]
        ));
        assert!(!allowed(
            true,
            host,
            &[("referer", "https://evil.example/app.example.com")]
        ));
        // Origin wins: a same-site Referer does not excuse a foreign Origin.
        assert!(!allowed(
            true,
            host,
            &[
                ("origin", "https://evil.example"),
                ("referer", "https://app.example.com/")
            ]
        ));
    }

    #[test]
    fn only_session_callers_with_unsafe_methods_on_origin_routes_are_checked() {
        let host = HeaderValue::from_static("app.example.com");
        let site = Site {
            tls: true,
            host: Some(&host),
        };
        let foreign = [("origin", "https://evil.example")];
        let on = route(Csrf::Origin);
        let session = caller(CredentialKind::Session);
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let result = check(&on, &session, &request(method, &foreign), &site);
            assert!(
                matches!(result, Err(AuthError::Forbidden { .. })),
                "{method}: {result:?}"
            );
        }
        for method in ["GET", "HEAD", "OPTIONS"] {
            assert!(check(&on, &session, &request(method, &foreign), &site).is_ok());
        }
        let post = request("POST", &foreign);
        assert!(check(&on, &caller(CredentialKind::Jwt), &post, &site).is_ok());
        assert!(
            check(
                &on,
                &Authenticated::Anonymous { refused: None },
                &post,
                &site
            )
            .is_ok()
        );
        assert!(check(&on, &Authenticated::NotChecked, &post, &site).is_ok());
        assert!(check(&route(Csrf::Off), &session, &post, &site).is_ok());
        let same = request("POST", &[("origin", "https://app.example.com")]);
        assert!(check(&on, &session, &same, &site).is_ok());
    }
}
