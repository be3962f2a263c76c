//! `POST /revoke` on the admin listener (SPEC §9): `{"jti": ..., "exp": ...}`
//! or `{"sub": ...}`, with `Authorization: Bearer <admin.token>`. Without
//! `admin.token` the endpoint does not exist (404): an open revocation
//! endpoint would let anyone log anyone out.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::auth::credentials;
use crate::auth::revocation::command::describe;
use crate::auth::revocation::{Revoke, Revoked};
use crate::config::Secret;
use crate::error::{BadRequest, Rejection};
use crate::gateway::Gateway;
use crate::telemetry::logging::chain;

/// More than any `{"jti": ..., "exp": ...}` needs.
const MAX_BODY: usize = 4096;

/// `None`: the endpoint is off, and the caller answers as for any unknown
/// path.
pub async fn answer(req: Request<Incoming>, gateway: &Gateway) -> Option<Response<Full<Bytes>>> {
    let token = gateway.config.admin.token.as_ref()?;
    gateway.auth.revocations.as_ref()?;
    let response = match revoke(req, gateway, token).await {
        Ok(done) => {
            let line = describe(&done);
            tracing::info!(what = %line, "revocation via POST /revoke");
            let body = serde_json::json!({ "revoked": line });
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(rejection) => {
            let reason = chain(&rejection);
            if rejection.side() == crate::error::Side::Client {
                tracing::info!(%reason, "POST /revoke refused");
            } else {
                tracing::error!(%reason, "POST /revoke failed");
            }
            rejection.into_response()
        }
    };
    Some(response)
}

async fn revoke(
    req: Request<Incoming>,
    gateway: &Gateway,
    token: &Secret,
) -> Result<Revoked, Rejection> {
    if req.method() != Method::POST {
        return Err(Rejection::MethodNotAllowed {
            allow: HeaderValue::from_static("POST"),
        });
    }
    let presented = credentials::bearer_token(req.headers()).map_err(|_| Rejection::AdminToken)?;
    if !presented.is_some_and(|p| same_secret(p, token.expose())) {
        return Err(Rejection::AdminToken);
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| BadRequest::Revoke("body unreadable or over 4 KiB"))?
        .to_bytes();
    let what = Revoke::from_json(&body).map_err(BadRequest::Revoke)?;
    let revocations = gateway
        .auth
        .revocations
        .as_ref()
        .ok_or(Rejection::NoRoute)?;
    revocations
        .revoke(what)
        .await
        .map_err(Rejection::NotRevoked)
}

/// Constant time in the contents and the length: both sides are hashed
/// first, so the comparison is always of 32 bytes.
fn same_secret(presented: &str, expected: &str) -> bool {
    let digest = |s: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(
        digest(presented).as_ref(),
        digest(expected).as_ref(),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_token_matches() {
        assert!(same_secret("0123456789abcdef", "0123456789abcdef"));
        assert!(!same_secret("0123456789abcdeX", "0123456789abcdef"));
        assert!(!same_secret("0123456789abcdef0", "0123456789abcdef"));
        assert!(!same_secret("", "0123456789abcdef"));
    }
}
