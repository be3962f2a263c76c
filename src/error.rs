//! Every response the proxy makes itself (SPEC §4), from one enum.
//!
//! Each pipeline stage returns `Result<_, Rejection>`; exactly one function,
//! [`Rejection::into_response`], turns a rejection into HTTP, with an
//! exhaustive match (linkerd's `HttpRescue`, sozu's `DefaultAnswer`). The
//! detailed reason goes to logs and metrics, never into the body: a body
//! carries only the fixed code and a short fixed message, so it can never
//! echo a credential (guarantee 7).

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::auth::counters::AuthOutcome;
use crate::auth::error::AuthError;
use crate::auth::revocation::RevokeError;
use crate::identity::AssertionUnsigned;
use crate::login::LoginError;
use crate::upstream::ForwardError;

/// Which side caused a rejection: picks the log level and tells operators
/// where to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    /// The proxy's own dependencies (store, JWKS) or the proxy itself.
    Internal,
}

/// Why a request was answered by the proxy instead of the upstream. Each
/// stage's own error is a variant's source; text is made from the chain
/// only for the log line ([`crate::telemetry::logging::chain`]).
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// RFC 9110 §15.5.5: no route matches host and path.
    #[error("no route matches")]
    NoRoute,
    /// RFC 9110 §15.5.6: the route exists but not for this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed { allow: HeaderValue },
    /// RFC 9110 §15.5.1: the request target or a header is unacceptable.
    #[error("bad request")]
    BadRequest(#[source] BadRequest),
    /// RFC 6585 §5: the header section exceeds `server.max_header_bytes`.
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// Authentication or authorization refused (400, 401, 403 or 503).
    #[error("refused")]
    Auth(#[from] AuthError),
    /// The identity assertion could not be signed: the identity never goes
    /// upstream without it, as a backend may rely on it alone (503).
    #[error("identity not forwarded")]
    AssertionUnsigned(#[from] AssertionUnsigned),
    /// RFC 9110 §15.6.3 and §15.6.5: the upstream refused, reset, broke
    /// the exchange, or did not answer in time.
    #[error("upstream failed")]
    Upstream(#[from] ForwardError),
    /// A login endpoint refused (SPEC §7): 403 `login_failed` (a page for
    /// a browser, which `retry` then links to), 403 `forbidden`, 405, 503.
    #[error("login")]
    Login {
        #[source]
        error: LoginError,
        retry: Option<String>,
    },
    /// RFC 9110 §15.5.4, SPEC §8: forward-auth asked by a peer outside
    /// `server.trusted_proxies`, whose `X-Forwarded-*` mean nothing.
    #[error("forward-auth asked by a peer outside server.trusted_proxies")]
    UntrustedPeer,
    /// SPEC §8: a refusal answered to the edge as a 401 (never a 302:
    /// nginx `auth_request` takes anything but 2xx, 401 and 403 for an
    /// error), with `X-Auth-Login` saying where to send the browser.
    #[error("refused; the edge may send the browser to log in")]
    EdgeLogin {
        #[source]
        error: AuthError,
        location: HeaderValue,
    },
    /// RFC 6750 §3.1, SPEC §9: `POST /revoke` without the admin token.
    #[error("admin token missing or wrong")]
    AdminToken,
    /// SPEC §9: the revocation could not be written (503); nothing is
    /// known to be revoked.
    #[error("revocation not written")]
    NotRevoked(#[source] RevokeError),
}

/// The reasons for a 400 that are not about credentials.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("path")]
    Path(#[from] crate::routing::PathError),
    #[error("request target is not origin-form or absolute-form")]
    Target,
    #[error("header name contains '_'")]
    UnderscoreHeader,
    #[error("missing or invalid Host")]
    Host,
    /// SPEC §8: the original request cannot be read from the edge's
    /// headers (missing, repeated, or from both header sets at once).
    #[error("forward-auth: {0}")]
    OriginalRequest(&'static str),
    /// SPEC §9: a `POST /revoke` body that says neither what nor how long.
    #[error("revoke: {0}")]
    Revoke(&'static str),
}

impl From<BadRequest> for Rejection {
    fn from(reason: BadRequest) -> Self {
        Rejection::BadRequest(reason)
    }
}

/// What the client gets for a rejection: the JSON body plus headers.
pub type ProxyBody = Full<Bytes>;

impl Rejection {
    /// The side that caused it, for the log level and for operators.
    pub fn side(&self) -> Side {
        match self {
            Rejection::Auth(AuthError::Unavailable(_))
            | Rejection::AssertionUnsigned(_)
            | Rejection::Login {
                error: LoginError::Unavailable(_),
                ..
            }
            | Rejection::NotRevoked(_) => Side::Internal,
            Rejection::NoRoute
            | Rejection::MethodNotAllowed { .. }
            | Rejection::BadRequest(_)
            | Rejection::HeadersTooLarge
            | Rejection::Auth(_)
            | Rejection::Login { .. }
            | Rejection::UntrustedPeer
            | Rejection::EdgeLogin { .. }
            | Rejection::AdminToken => Side::Client,
            Rejection::Upstream(_) => Side::Upstream,
        }
    }

    /// What authentication concluded, when it was authentication that
    /// refused (SPEC §6 `wristband_auth_total`).
    pub fn auth_outcome(&self) -> Option<AuthOutcome> {
        match self {
            Rejection::Auth(error) | Rejection::EdgeLogin { error, .. } => Some(error.outcome()),
            _ => None,
        }
    }

    /// The one mapping from rejection to response (SPEC §4).
    pub fn into_response(self) -> Response<ProxyBody> {
        const BEARER: &str = "Bearer realm=\"wristband\"";
        const BEARER_INVALID: &str = "Bearer realm=\"wristband\", error=\"invalid_token\"";
        match self {
            Rejection::NoRoute => json(StatusCode::NOT_FOUND, "no_route", "no route matches"),
            Rejection::MethodNotAllowed { allow } => {
                let mut resp = json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "method not allowed on this route",
                );
                resp.headers_mut().insert(ALLOW, allow);
                resp
            }
            Rejection::BadRequest(_) => {
                json(StatusCode::BAD_REQUEST, "bad_request", "malformed request")
            }
            Rejection::HeadersTooLarge => json(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "request header fields too large",
            ),
            Rejection::Auth(AuthError::Ambiguous(..)) => json(
                StatusCode::BAD_REQUEST,
                "ambiguous_credentials",
                "more than one credential of the same kind",
            ),
            Rejection::Auth(AuthError::Missing { redirect, .. }) => unauthorized(
                redirect,
                "unauthenticated",
                "authentication required",
                BEARER,
            ),
            Rejection::Auth(AuthError::InvalidToken { redirect, .. }) => unauthorized(
                redirect,
                "invalid_token",
                "the token is not valid",
                BEARER_INVALID,
            ),
            Rejection::Auth(AuthError::InvalidSession { redirect, .. }) => unauthorized(
                redirect,
                "invalid_session",
                "the session is not valid",
                BEARER,
            ),
            Rejection::Auth(AuthError::Forbidden { .. }) => {
                json(StatusCode::FORBIDDEN, "forbidden", "access denied")
            }
            Rejection::Auth(AuthError::Unavailable(_)) | Rejection::AssertionUnsigned(_) => {
                let mut resp = json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "authentication is temporarily unavailable",
                );
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                resp
            }
            Rejection::Upstream(error) if error.timed_out() => json(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "the upstream did not answer in time",
            ),
            Rejection::Upstream(_) => json(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream could not be reached",
            ),
            Rejection::Login { error, retry } => match error {
                LoginError::Failed(_) => match retry {
                    Some(login_path) => crate::login::pages::login_failed(&login_path),
                    None => json(
                        StatusCode::FORBIDDEN,
                        "login_failed",
                        "the login could not be completed",
                    ),
                },
                LoginError::CrossSiteLogout => {
                    json(StatusCode::FORBIDDEN, "forbidden", "access denied")
                }
                LoginError::Method(allow) => {
                    let mut resp = json(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method_not_allowed",
                        "method not allowed on this route",
                    );
                    resp.headers_mut()
                        .insert(ALLOW, HeaderValue::from_static(allow));
                    resp
                }
                LoginError::Unavailable(_) => {
                    let mut resp = json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "login is temporarily unavailable",
                    );
                    resp.headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                    resp
                }
            },
            Rejection::UntrustedPeer => json(StatusCode::FORBIDDEN, "forbidden", "access denied"),
            Rejection::EdgeLogin { error, location } => {
                let mut resp = Rejection::Auth(error).into_response();
                resp.headers_mut().insert(&X_AUTH_LOGIN, location);
                resp
            }
            Rejection::AdminToken => {
                unauthorized(None, "unauthenticated", "authentication required", BEARER)
            }
            Rejection::NotRevoked(error) => {
                // Retrying is safe either way: the write is idempotent.
                let message = match error {
                    RevokeError::Store(_) => "the revocation could not be stored",
                    RevokeError::Sessions { .. } => {
                        "the revocation was stored; the login sessions could not all be ended, retry"
                    }
                };
                let mut resp = json(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                resp
            }
        }
    }
}

/// SPEC §8: where the edge should send a browser that must log in.
pub static X_AUTH_LOGIN: http::HeaderName = http::HeaderName::from_static("x-auth-login");

/// 401, or 302 to the login page when the route redirects this request.
fn unauthorized(
    redirect: Option<String>,
    code: &'static str,
    message: &'static str,
    challenge: &'static str,
) -> Response<ProxyBody> {
    if let Some(location) = redirect.and_then(|l| HeaderValue::try_from(l).ok()) {
        let mut resp = json(StatusCode::FOUND, code, message);
        resp.headers_mut().insert(LOCATION, location);
        return resp;
    }
    let mut resp = json(StatusCode::UNAUTHORIZED, code, message);
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

/// A response with the SPEC §4 body. Codes and messages are fixed strings:
/// nothing from the request reaches the body.
pub fn json(status: StatusCode, code: &'static str, message: &'static str) -> Response<ProxyBody> {
    let body = format!(r#"{{"error":"{code}","message":"{message}"}}"#);
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(resp: Response<ProxyBody>) -> serde_json::Value {
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("full body")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("json body")
    }

    #[tokio::test]
    async fn every_rejection_maps_to_the_spec_table() {
        use crate::auth::credentials::Ambiguous;
        use crate::auth::error::{Forbidden, Unavailable};
        use crate::auth::jwt::{Invalid, KeysUnavailable, Unusable};
        use crate::auth::session::SessionInvalid;
        use crate::config::CredentialKind;
        use std::time::Duration;
        let secret = "eyJhbGciOiJSUzI1NiJ9.secret-token-text".to_string();
        let auth = |error: AuthError| Rejection::Auth(error);
        let cases: Vec<(Rejection, u16, &str)> = vec![
            (Rejection::NoRoute, 404, "no_route"),
            (
                Rejection::MethodNotAllowed {
                    allow: HeaderValue::from_static("GET, HEAD"),
                },
                405,
                "method_not_allowed",
            ),
            (
                Rejection::BadRequest(BadRequest::UnderscoreHeader),
                400,
                "bad_request",
            ),
            (
                auth(AuthError::Ambiguous(
                    Ambiguous("two Authorization headers"),
                    CredentialKind::Jwt,
                )),
                400,
                "ambiguous_credentials",
            ),
            (Rejection::HeadersTooLarge, 431, "headers_too_large"),
            (
                auth(AuthError::Missing {
                    kind: None,
                    redirect: None,
                }),
                401,
                "unauthenticated",
            ),
            (
                auth(AuthError::InvalidToken {
                    reason: Invalid::Signature,
                    redirect: None,
                }),
                401,
                "invalid_token",
            ),
            (
                auth(AuthError::InvalidSession {
                    reason: SessionInvalid::Unknown,
                    redirect: None,
                }),
                401,
                "invalid_session",
            ),
            (
                auth(AuthError::Forbidden {
                    kind: CredentialKind::Jwt,
                    reason: Forbidden::Claim(secret.clone()),
                }),
                403,
                "forbidden",
            ),
            (
                auth(AuthError::Unavailable(Unavailable::Keys(KeysUnavailable {
                    provider: secret.clone(),
                    why: Unusable::Stale,
                }))),
                503,
                "unavailable",
            ),
            (
                Rejection::AssertionUnsigned(AssertionUnsigned),
                503,
                "unavailable",
            ),
            (
                Rejection::Upstream(ForwardError::NoTarget),
                502,
                "bad_gateway",
            ),
            (
                Rejection::Upstream(ForwardError::ConnectTimeout {
                    target: secret.clone(),
                    timeout: Duration::from_secs(1),
                }),
                504,
                "gateway_timeout",
            ),
            (
                Rejection::Upstream(ForwardError::ResponseTimeout {
                    target: secret.clone(),
                    timeout: Duration::from_secs(1),
                }),
                504,
                "gateway_timeout",
            ),
            (Rejection::UntrustedPeer, 403, "forbidden"),
            (
                Rejection::BadRequest(BadRequest::OriginalRequest("both header sets at once")),
                400,
                "bad_request",
            ),
            (
                Rejection::EdgeLogin {
                    error: AuthError::InvalidToken {
                        reason: Invalid::Revoked(crate::auth::revocation::Refusal::Jti),
                        redirect: None,
                    },
                    location: HeaderValue::from_static("/_wristband/login?rd=x"),
                },
                401,
                "invalid_token",
            ),
            (Rejection::AdminToken, 401, "unauthenticated"),
            (
                Rejection::BadRequest(BadRequest::Revoke("jti needs exp")),
                400,
                "bad_request",
            ),
            (
                Rejection::NotRevoked(RevokeError::Store(
                    crate::auth::session::StoreError::BadReply("x"),
                )),
                503,
                "unavailable",
            ),
        ];
        for (rejection, status, code) in cases {
            let resp = rejection.into_response();
            assert_eq!(resp.status().as_u16(), status, "{code}");
            assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
            match status {
                401 => {
                    let challenge = resp.headers()[WWW_AUTHENTICATE].to_str().unwrap_or("");
                    assert!(challenge.starts_with("Bearer realm=\"wristband\""));
                    assert_eq!(
                        challenge.contains("error=\"invalid_token\""),
                        code == "invalid_token"
                    );
                }
                405 => assert_eq!(resp.headers()[ALLOW], "GET, HEAD"),
                503 => assert_eq!(resp.headers()[RETRY_AFTER], "1"),
                _ => {}
            }
            let body = body_of(resp).await;
            assert_eq!(body["error"], code);
            assert!(body["message"].is_string());
            assert!(!body.to_string().contains("secret-token-text"));
        }
    }

    #[test]
    fn the_edge_gets_a_401_with_where_to_log_in_never_a_302() {
        let resp = Rejection::EdgeLogin {
            error: AuthError::Missing {
                kind: None,
                redirect: None,
            },
            location: HeaderValue::from_static("https://login.example.com/?rd=x"),
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.headers()[&X_AUTH_LOGIN],
            "https://login.example.com/?rd=x"
        );
        assert!(resp.headers().get(LOCATION).is_none());
    }

    /// A `sub` written whose sessions were not all ended must not read as
    /// "not stored": the operator would think the user still gets in.
    #[tokio::test]
    async fn a_partly_done_revocation_says_what_was_stored() {
        let store = || crate::auth::session::StoreError::BadReply("x");
        let message = |rejection: Rejection| async {
            body_of(rejection.into_response()).await["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let none = message(Rejection::NotRevoked(RevokeError::Store(store()))).await;
        assert_eq!(none, "the revocation could not be stored");
        let partly = message(Rejection::NotRevoked(RevokeError::Sessions {
            entry: crate::auth::revocation::Entry::Sub {
                sub: "alice".into(),
                before: 1,
            },
            error: store(),
        }))
        .await;
        assert!(partly.starts_with("the revocation was stored;"), "{partly}");
    }

    #[tokio::test]
    async fn redirect_replaces_the_401_with_a_302_to_the_login_page() {
        let resp = Rejection::Auth(AuthError::InvalidSession {
            reason: crate::auth::session::SessionInvalid::Unknown,
            redirect: Some("https://login.example.com/?rd=x".into()),
        })
        .into_response();
        assert_eq!(resp.status(), StatusCode::FOUND);
        assert_eq!(resp.headers()[LOCATION], "https://login.example.com/?rd=x");
        assert!(resp.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
