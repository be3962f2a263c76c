//! `on_unauthenticated = "redirect"` (SPEC §4, guarantee 9): which 401s
//! become a 302 to the login page, and where it points.
//!
//! Only a navigational request is redirected — GET or HEAD, `Accept`
//! containing `text/html`, no `X-Requested-With: XMLHttpRequest`, and
//! `Sec-Fetch-Mode` (Fetch Metadata, W3C) absent or `navigate` — so an API
//! call keeps its 401 and no request body is ever lost to a redirect. The
//! `{url}` in `login_url` becomes the original absolute URL, percent-encoded
//! down to RFC 3986 §2.3 unreserved characters: the result is safe inside a
//! query string and can never carry CR or LF into `Location`.

use http::header::{ACCEPT, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{HeaderName, Method};

use crate::config::{OnUnauthenticated, RouteConfig};

static X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
static SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

/// What the client addressed: enough to rebuild the absolute URL it asked
/// for, and to compare an `Origin` against (CSRF).
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// The client's scheme is `https` (its connection is TLS, or a trusted
    /// proxy says so in `X-Forwarded-Proto`), else `http`.
    pub tls: bool,
    /// The authority of an absolute-form target, else the Host header.
    pub host: Option<&'a HeaderValue>,
}

impl Site<'_> {
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// The `Location` for a 401 on this route, or `None` to keep the 401.
/// `login_path` is `[login] login_path` when login is on.
pub fn location(
    route: &RouteConfig,
    parts: &Parts,
    site: &Site<'_>,
    login_path: Option<&str>,
) -> Option<String> {
    if !is_navigational(&parts.method, &parts.headers) {
        return None;
    }
    // The target as the client sent it, before normalization: the page the
    // user wanted, not what routing made of it.
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    match &route.on_unauthenticated {
        OnUnauthenticated::Deny => None,
        OnUnauthenticated::Redirect(login_url) => {
            let host = site.host?.to_str().ok()?;
            let url = format!("{}://{host}{target}", site.scheme());
            Some(login_url.replace("{url}", &percent_encode(&url)))
        }
        OnUnauthenticated::Login => Some(login_start(login_path?, target)),
    }
}

/// `login_path?rd=<target>`: the same-origin target, its `/` left as they
/// are (the login start only takes an `rd` that starts with a literal `/`)
/// and everything else that is not unreserved escaped, so that its own `?`
/// and `&` stay inside the one parameter.
pub fn login_start(login_path: &str, target: &str) -> String {
    let target = if target.starts_with('/') { target } else { "/" };
    let mut out = String::with_capacity(login_path.len() + 4 + target.len() * 3);
    out.push_str(login_path);
    out.push_str("?rd=");
    for segment in target.split('/').enumerate() {
        if segment.0 > 0 {
            out.push('/');
        }
        out.push_str(&percent_encode(segment.1));
    }
    out
}

/// SPEC §4: GET or HEAD, `Accept` containing `text/html`, not an
/// `XMLHttpRequest`, and `Sec-Fetch-Mode` absent or `navigate`.
pub fn is_navigational(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let accepts_html = headers.get_all(ACCEPT).iter().any(|v| {
        v.as_bytes()
            .windows(b"text/html".len())
            .any(|w| w.eq_ignore_ascii_case(b"text/html"))
    });
    let xhr = headers
        .get_all(&X_REQUESTED_WITH)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    let navigate = headers
        .get_all(&SEC_FETCH_MODE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"navigate"));
    accepts_html && !xhr && navigate
}

/// Every byte outside RFC 3986 §2.3 unreserved (`A-Z a-z 0-9 - . _ ~`) as
/// `%XX`, upper-case hex (RFC 3986 §2.1).
pub fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() * 3);
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(on: OnUnauthenticated) -> RouteConfig {
        RouteConfig {
            on_unauthenticated: on,
            ..RouteConfig::for_tests()
        }
    }

    fn redirecting() -> RouteConfig {
        route(OnUnauthenticated::Redirect(
            "https://login.example.com/?rd={url}".into(),
        ))
    }

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().method(method).uri(target);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).expect("request").into_parts().0
    }

    const BROWSER: &[(&str, &str)] = &[(
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    )];

    #[test]
    fn only_navigational_requests_are_redirected() {
        let h = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.append(
                    HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    HeaderValue::from_str(v).expect("value"),
                );
            }
            map
        };
        let html = ("accept", "text/html");
        assert!(is_navigational(&Method::GET, &h(BROWSER)));
        assert!(is_navigational(&Method::HEAD, &h(&[html])));
        assert!(is_navigational(
            &Method::GET,
            &h(&[("accept", "TEXT/HTML")])
        ));
        assert!(is_navigational(
            &Method::GET,
            &h(&[html, ("sec-fetch-mode", "navigate")])
        ));
        assert!(is_navigational(
            &Method::GET,
            &h(&[html, ("x-requested-with", "com.example.app")])
        ));

        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert!(!is_navigational(&method, &h(&[html])), "{method}");
        }
        assert!(!is_navigational(&Method::GET, &h(&[])), "no Accept");
        assert!(!is_navigational(
            &Method::GET,
            &h(&[("accept", "application/json")])
        ));
        assert!(!is_navigational(&Method::GET, &h(&[("accept", "*/*")])));
        assert!(!is_navigational(
            &Method::GET,
            &h(&[html, ("x-requested-with", "XMLHttpRequest")])
        ));
        assert!(!is_navigational(
            &Method::GET,
            &h(&[html, ("x-requested-with", "xmlhttprequest")])
        ));
        for mode in ["cors", "no-cors", "same-origin", "websocket"] {
            assert!(
                !is_navigational(&Method::GET, &h(&[html, ("sec-fetch-mode", mode)])),
                "{mode}"
            );
        }
    }

    #[test]
    fn location_carries_the_original_url_percent_encoded() {
        let host = HeaderValue::from_static("app.example.com:8443");
        let site = Site {
            tls: true,
            host: Some(&host),
        };
        let parts = request("GET", "/a/../b%2Fc?x=1&y=a%20b", BROWSER);
        let location = location(&redirecting(), &parts, &site, None).expect("redirect");
        assert_eq!(
            location,
            "https://login.example.com/?rd=https%3A%2F%2Fapp.example.com%3A8443%2Fa%2F..%2Fb%252Fc%3Fx%3D1%26y%3Da%2520b"
        );

        let plain = Site {
            tls: false,
            host: Some(&host),
        };
        let parts = request("GET", "/", BROWSER);
        assert_eq!(
            super::location(&redirecting(), &parts, &plain, None).expect("redirect"),
            "https://login.example.com/?rd=http%3A%2F%2Fapp.example.com%3A8443%2F"
        );
    }

    #[test]
    fn no_location_for_deny_routes_api_calls_or_without_a_host() {
        let host = HeaderValue::from_static("app.example.com");
        let site = Site {
            tls: false,
            host: Some(&host),
        };
        let get = request("GET", "/x", BROWSER);
        assert!(location(&route(OnUnauthenticated::Deny), &get, &site, None).is_none());
        let api = request("GET", "/x", &[("accept", "application/json")]);
        assert!(location(&redirecting(), &api, &site, None).is_none());
        let post = request("POST", "/x", BROWSER);
        assert!(location(&redirecting(), &post, &site, None).is_none());
        let no_host = Site {
            tls: false,
            host: None,
        };
        assert!(location(&redirecting(), &get, &no_host, None).is_none());
    }

    #[test]
    fn login_routes_start_a_login_with_the_target_as_rd() {
        let host = HeaderValue::from_static("app.example.com");
        let site = Site {
            tls: true,
            host: Some(&host),
        };
        let login = route(OnUnauthenticated::Login);
        let get = request("GET", "/a%20b/c?x=1&y=%2F", BROWSER);
        assert_eq!(
            location(&login, &get, &site, Some("/_wristband/login")).expect("login"),
            "/_wristband/login?rd=/a%2520b/c%3Fx%3D1%26y%3D%252F"
        );
        // An API call keeps its 401 (guarantee 9); so does a missing [login].
        let api = request("GET", "/x", &[("accept", "application/json")]);
        assert!(location(&login, &api, &site, Some("/_wristband/login")).is_none());
        assert!(location(&login, &get, &site, None).is_none());
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(percent_encode("a b/?#&=+%"), "a%20b%2F%3F%23%26%3D%2B%25");
        assert_eq!(percent_encode("\r\n\0"), "%0D%0A%00");
        assert_eq!(percent_encode("é"), "%C3%A9");
        // A Host header holding anything at all cannot break the Location.
        let host = HeaderValue::from_static("evil.example\"><script>");
        let site = Site {
            tls: false,
            host: Some(&host),
        };
        let parts = request("GET", "/", BROWSER);
        let location = location(&redirecting(), &parts, &site, None).expect("redirect");
        assert!(HeaderValue::from_str(&location).is_ok());
        assert!(
            location
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\"<> ".contains(&b)),
            "{location}"
        );
    }
}
