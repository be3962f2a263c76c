//! `GET login_path?rd=<path>` (SPEC §7 "Start"): a new state, nonce and
//! PKCE verifier go to the store, the binding cookie to the browser, and
//! the browser to the IdP's authorization endpoint.

use http::header::{LOCATION, SET_COOKIE};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};

use super::error::{LoginError, Unavailable};
use super::return_url::{rd_parameter, return_url, same_site_location};
use super::state::{self, Started};
use super::{Answer, Login, cookies, random_token, sha256_hex};
use crate::config::LoginConfig;

impl Login {
    pub(super) async fn start(&self, parts: &Parts) -> Result<Answer, LoginError> {
        let discovered = self.idp.discovered().await?;
        // 256 bits each: states, nonces and verifiers are never guessed.
        let state = random_token(32)?;
        let nonce = random_token(32)?;
        let verifier = random_token(32)?;
        let binding = random_token(32)?;
        let rd = rd_parameter(parts.uri.query());
        let started = Started {
            verifier: verifier.clone(),
            nonce: nonce.clone(),
            return_to: same_site_location(return_url(rd, &self.allowed)),
            binding: sha256_hex(&binding),
        };
        let record = serde_json::to_string(&started).map_err(|_| Unavailable::Header)?;
        self.store
            .put(&state::key(&state), &record, LoginConfig::STATE_TTL)
            .await?;

        let scope = self.config.scopes.join(" ");
        let challenge = state::challenge(&verifier);
        let query = super::idp::form_body(&[
            ("response_type", "code"),
            ("client_id", &self.config.client_id),
            ("redirect_uri", &self.config.redirect_uri),
            ("scope", &scope),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let endpoint = &discovered.authorization_endpoint;
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        let location = format!("{endpoint}{separator}{query}");
        self.counters.started.inc();
        let mut response = Response::new(Default::default());
        *response.status_mut() = StatusCode::FOUND;
        let headers = response.headers_mut();
        headers.insert(
            LOCATION,
            HeaderValue::from_str(&location).map_err(|_| Unavailable::Header)?,
        );
        headers.insert(SET_COOKIE, cookies::binding(&self.config, &binding)?);
        super::pages::no_store(headers);
        Ok(response)
    }
}
