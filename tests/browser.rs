//! The browser fixture (`common::browser`) against a small site that the
//! test serves on 127.0.0.1: it follows a redirect that sets cookies,
//! submits a form, keeps each cookie's attributes (RFC 6265bis §4.1.2),
//! keeps a `__Host-` cookie over plain HTTP on loopback, and applies
//! `SameSite` to a redirect back from another site the way the return from
//! an identity provider needs (RFC 6265bis §5.2, SPEC §7).
//!
//! Needs `chromium` and `chromium-driver` (`.ci/install-browser.sh`).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use common::browser::{Browser, BrowserCookie};

/// One request the site received.
#[derive(Debug, Clone)]
struct Hit {
    method: Method,
    path: String,
    cookie: Option<String>,
    body: String,
}

/// The site: `/start` redirects to `/form` and sets two cookies, `/form`
/// posts to `/submit`; `/host-cookie` sets a `__Host-` cookie; `/idp` and
/// `/idp/login` play an identity provider that sends the browser back to
/// `/callback` on 127.0.0.1 (the test opens them as `localhost`, another
/// site).
struct Site {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What `/start` sets: a session cookie with the attributes SPEC §7 gives
/// wristband's (less `Secure`), and a second one with other attributes so
/// that each attribute is seen to be read rather than defaulted.
const SESSION_COOKIE: &str = "sid=s3cr3t; HttpOnly; SameSite=Lax; Path=/";
const STRICT_COOKIE: &str = "pref=dark; SameSite=Strict; Path=/; Max-Age=3600";
/// What `/host-cookie` sets: wristband's login binding cookie as SPEC §7
/// writes it.
const BINDING_COOKIE: &str =
    "__Host-wristband-login=st4te; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=600";

impl Site {
    async fn start() -> Site {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let recorded = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let recorded = recorded.clone();
                        async move { Ok::<_, Infallible>(answer(req, addr, &recorded).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Site { addr, hits, task }
    }

    /// `path` on this site, under the host name `host`.
    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.addr.port())
    }

    /// The requests for `path`, in order.
    fn hits(&self, path: &str) -> Vec<Hit> {
        let hits = self.hits.lock().expect("hits lock");
        hits.iter().filter(|h| h.path == path).cloned().collect()
    }
}

async fn answer(
    req: Request<Incoming>,
    addr: SocketAddr,
    hits: &Mutex<Vec<Hit>>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let cookie = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(_) => return page(StatusCode::BAD_REQUEST, "unreadable body"),
    };
    hits.lock().expect("hits lock").push(Hit {
        method: method.clone(),
        path: path.clone(),
        cookie,
        body: body.clone(),
    });
    match (method, path.as_str()) {
        (Method::GET, "/start") => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, "/form")
            .header(header::SET_COOKIE, SESSION_COOKIE)
            .header(header::SET_COOKIE, STRICT_COOKIE)
            .body(Full::new(Bytes::new()))
            .expect("redirect response"),
        (Method::GET, "/form") => page(
            StatusCode::OK,
            "<form method=post action=/submit>\
             <input id=user name=user><button id=send type=submit>Send</button></form>",
        ),
        (Method::POST, "/submit") => {
            let user = body.strip_prefix("user=").unwrap_or("nobody");
            page(StatusCode::OK, &format!("<p>signed in as {user}</p>"))
        }
        (Method::GET, "/idp") => page(
            StatusCode::OK,
            "<form method=post action=/idp/login>\
             <input id=user name=user><button id=send type=submit>Log in</button></form>",
        ),
        (Method::POST, "/idp/login") => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(
                header::LOCATION,
                format!("http://127.0.0.1:{}/callback", addr.port()),
            )
            .body(Full::new(Bytes::new()))
            .expect("redirect response"),
        (Method::GET, "/host-cookie") => Response::builder()
            .header(header::SET_COOKIE, BINDING_COOKIE)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(b"<!doctype html><p>set</p>")))
            .expect("page response"),
        (Method::GET, "/callback") => page(StatusCode::OK, "<p>back</p>"),
        _ => page(StatusCode::NOT_FOUND, "not found"),
    }
}

fn page(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Full::new(Bytes::from(format!(
            "<!doctype html><title>site</title>{body}"
        ))))
        .expect("page response")
}

fn named<'a>(cookies: &'a [BrowserCookie], name: &str) -> &'a BrowserCookie {
    cookies
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cookie {name} in {cookies:?}"))
}

#[tokio::test]
async fn browser_follows_redirect_submits_form_and_keeps_cookie_attributes() {
    let site = Site::start().await;
    let browser = Browser::start().await;

    browser.goto(&site.url("127.0.0.1", "/start")).await;
    assert_eq!(
        browser.current_url().await,
        site.url("127.0.0.1", "/form"),
        "the 303 from /start was followed"
    );

    browser.fill("#user", "alice").await;
    browser.click("#send").await;
    assert_eq!(
        browser.current_url().await,
        site.url("127.0.0.1", "/submit")
    );
    assert!(
        browser.page_text().await.contains("signed in as alice"),
        "the page after the form: {}",
        browser.page_text().await
    );
    let submits = site.hits("/submit");
    assert_eq!(submits.len(), 1, "one form submission: {submits:?}");
    assert_eq!(submits[0].method, Method::POST);
    assert_eq!(submits[0].body, "user=alice");
    let sent = submits[0].cookie.as_deref().unwrap_or("");
    assert!(
        sent.contains("sid=s3cr3t") && sent.contains("pref=dark"),
        "both cookies went back to the site: {sent:?}"
    );

    let cookies = browser.cookies().await;
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let sid = named(&cookies, "sid");
    assert_eq!(sid.value, "s3cr3t");
    assert!(sid.http_only, "{sid:?}");
    assert!(!sid.secure, "{sid:?}");
    assert_eq!(sid.same_site.as_deref(), Some("Lax"));
    assert_eq!(sid.path.as_deref(), Some("/"));
    assert_eq!(sid.expiry, None, "no Max-Age: a session cookie");

    let pref = named(&cookies, "pref");
    assert!(!pref.http_only, "{pref:?}");
    assert_eq!(pref.same_site.as_deref(), Some("Strict"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let expiry = pref.expiry.expect("Max-Age=3600 gives an expiry");
    assert!(
        (now + 3600 - 60..=now + 3600 + 60).contains(&expiry),
        "expiry {expiry} is about an hour after {now}"
    );
}

/// The return from an identity provider is a redirect from another site
/// after a form POST there: `Lax` cookies, the login binding cookie among
/// them, must go along (it is a top-level GET navigation), a `Strict` one
/// must not. `localhost` and `127.0.0.1` are different sites, so one server
/// on loopback plays both.
#[tokio::test]
async fn lax_cookies_survive_cross_site_redirect_back_and_strict_does_not() {
    let site = Site::start().await;
    let browser = Browser::start().await;
    browser.goto(&site.url("127.0.0.1", "/start")).await;
    browser.goto(&site.url("127.0.0.1", "/host-cookie")).await;

    browser.goto(&site.url("localhost", "/idp")).await;
    browser.fill("#user", "alice").await;
    browser.click("#send").await;
    assert_eq!(
        browser.current_url().await,
        site.url("127.0.0.1", "/callback"),
        "the 303 from the other site was followed"
    );

    let idp = site.hits("/idp/login");
    assert_eq!(idp.len(), 1, "{idp:?}");
    assert_eq!(idp[0].cookie, None, "host-only cookies stay on their host");
    let callbacks = site.hits("/callback");
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    let mut sent: Vec<&str> = callbacks[0]
        .cookie
        .as_deref()
        .unwrap_or("")
        .split("; ")
        .collect();
    sent.sort_unstable();
    assert_eq!(
        sent,
        ["__Host-wristband-login=st4te", "sid=s3cr3t"],
        "Lax cookies go along on the cross-site redirect back, Strict does not"
    );
    assert!(
        browser.cookie("pref").await.is_some(),
        "the Strict cookie is still held, only withheld"
    );
}

/// wristband's login binding cookie is `__Host-` prefixed, which needs
/// `Secure`; the end-to-end test runs over plain HTTP on loopback, which
/// Chromium counts as a secure context, so such cookies are kept and sent
/// (`cookie_secure = true` works there).
#[tokio::test]
async fn host_prefixed_secure_cookie_is_kept_and_sent_over_loopback_http() {
    let site = Site::start().await;
    let browser = Browser::start().await;
    for host in ["127.0.0.1", "localhost"] {
        browser.goto(&site.url(host, "/host-cookie")).await;
        let binding = browser
            .cookie("__Host-wristband-login")
            .await
            .unwrap_or_else(|| panic!("no binding cookie on {host}"));
        assert!(binding.secure && binding.http_only, "{binding:?}");
        assert_eq!(binding.same_site.as_deref(), Some("Lax"));
        assert_eq!(binding.domain.as_deref(), Some(host), "host-only");

        browser.goto(&site.url(host, "/callback")).await;
        let callbacks = site.hits("/callback");
        let sent = callbacks.last().and_then(|h| h.cookie.as_deref());
        assert_eq!(
            sent,
            Some("__Host-wristband-login=st4te"),
            "sent back to {host}"
        );
    }
}
