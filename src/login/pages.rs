//! The few pages a browser sees from the login flow (SPEC §7): login
//! failed, and the logout confirmation. Plain HTML, no external assets,
//! no script, and a CSP that allows nothing else; never cached. Nothing
//! from the request is written into them.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

static CONTENT_SECURITY_POLICY: HeaderName = HeaderName::from_static("content-security-policy");
static X_CONTENT_TYPE_OPTIONS: HeaderName = HeaderName::from_static("x-content-type-options");
static REFERRER_POLICY: HeaderName = HeaderName::from_static("referrer-policy");

/// Answers of the flow carry state, cookies or both: never stored.
pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn page(status: StatusCode, csp: HeaderValue, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(&CONTENT_SECURITY_POLICY, csp);
    headers.insert(&X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: a browser then sends `Origin: null` with the
    // logout form's POST, which the Origin check must refuse.
    headers.insert(&REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    no_store(headers);
    response
}

const STRICT: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// 403 `login_failed` for a browser.
pub fn login_failed(login_path: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in failed</title></head>\n\
         <body><h1>Sign-in failed</h1>\n<p>The sign-in could not be completed (error: login_failed). \
         It may have taken too long, or been started in another browser.</p>\n\
         <p><a href=\"{}\">Sign in again</a></p></body></html>\n",
        html_attribute(login_path)
    );
    page(
        StatusCode::FORBIDDEN,
        HeaderValue::from_static(STRICT),
        body,
    )
}

/// `GET logout_path`: a button that POSTs to it. `idp_origin` is where the
/// POST's answer may redirect (CSP `form-action` covers redirects too).
pub fn logout_confirm(logout_path: &str, idp_origin: Option<&str>) -> Response<Full<Bytes>> {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign out</title></head>\n\
         <body><h1>Sign out</h1>\n<form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>\n\
         </body></html>\n",
        html_attribute(logout_path)
    );
    let form_action = match idp_origin {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"
    );
    let csp = HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static(STRICT));
    page(StatusCode::OK, csp, body)
}

/// Config paths are validated visible ASCII; escape what HTML gives
/// meaning to all the same.
fn html_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_strict_and_never_cached() {
        for response in [
            login_failed("/_wristband/login"),
            logout_confirm("/out", None),
        ] {
            let h = response.headers();
            let csp = h[&CONTENT_SECURITY_POLICY].to_str().expect("csp");
            assert!(csp.starts_with("default-src 'none'"), "{csp}");
            assert_eq!(h[CACHE_CONTROL], "no-store");
            assert_eq!(h[&X_CONTENT_TYPE_OPTIONS], "nosniff");
            // `no-referrer` would make the logout POST's Origin `null`.
            assert_eq!(h[&REFERRER_POLICY], "same-origin");
        }
        let confirm = logout_confirm("/out", Some("https://idp.example"));
        let csp = confirm.headers()[&CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("csp");
        assert!(
            csp.contains("form-action 'self' https://idp.example;"),
            "{csp}"
        );
        assert_eq!(html_attribute("/a\"b<"), "/a&quot;b&lt;");
    }
}
