//! `GET <redirect_uri path>?code=..&state=..` (SPEC §7 "Callback"): the
//! state must come back to the browser that started it and be found in
//! the store (then it is gone); the code is exchanged with the PKCE
//! verifier; the id_token is verified by the JWT code every bearer token
//! goes through, and must carry the nonce sent. Only then is a session
//! written, under a new id (never one the request carried: session
//! fixation), and the browser sent where it was going.
//!
//! Every refusal is 403 `login_failed` with nothing written; a store or IdP
//! that cannot be asked is 503.

use std::sync::Arc;

use http::header::{LOCATION, SET_COOKIE};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};

use super::error::{Failure, LoginError, Unavailable};
use super::idp::{Discovered, TokenAnswer, Tokens};
use super::state::{self, Started};
use super::{Answer, Login, cookies, printable, random_token, sha256_hex, unix_now};
use crate::auth::credentials;
use crate::auth::jwt::JwtError;
use crate::auth::session::{
    ACCESS_TOKEN_FIELD, CREATED_FIELD, ID_TOKEN_FIELD, REFRESH_TOKEN_FIELD, REFRESHED_FIELD,
    SID_FIELD,
};
use crate::encoding::percent_decode;
use crate::identity::{Identity, claim_text};

impl Login {
    pub(super) async fn callback(&self, parts: &Parts) -> Result<Answer, LoginError> {
        let query = parts.uri.query();
        let state = parameter(query, "state").ok_or(Failure::NoState)?;
        // The browser must hold the binding cookie before anything else.
        let binding = credentials::cookie(&parts.headers, self.config.binding_cookie())
            .ok()
            .flatten()
            .ok_or(Failure::NoBindingCookie)?;
        // Single use: taken, whatever follows.
        let record = self
            .store
            .take(&state::key(&state))
            .await?
            .ok_or(Failure::UnknownState)?;
        let started: Started = serde_json::from_str(&record).map_err(|_| Failure::BadState)?;
        if !constant_time_eq(sha256_hex(binding).as_bytes(), started.binding.as_bytes()) {
            return Err(Failure::OtherBrowser.into());
        }
        if let Some(error) = parameter(query, "error") {
            return Err(Failure::IdpError(printable(&error)).into());
        }
        let code = parameter(query, "code").ok_or(Failure::NoCode)?;

        let discovered = self.idp.discovered().await?;
        let grant = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", self.config.redirect_uri.as_str()),
            ("code_verifier", started.verifier.as_str()),
        ];
        let tokens = match self.idp.token(&discovered, &grant).await? {
            TokenAnswer::Tokens(tokens) => tokens,
            TokenAnswer::Refused(code) => {
                return Err(Failure::TokenRefused(printable(&code)).into());
            }
        };
        let id_token = tokens.id_token.as_deref().ok_or(Failure::NoIdToken)?;
        let identity = self.verify_id_token(id_token, &started.nonce).await?;
        let claims = self.claims(&discovered, &identity, &tokens).await?;

        let id = random_token(32)?;
        let fields = self.session_fields(&identity, claims, &tokens)?;
        self.store
            .create(&id, identity.sub(), fields, self.config.session_ttl)
            .await?;

        let mut response = Response::new(Default::default());
        *response.status_mut() = StatusCode::FOUND;
        let headers = response.headers_mut();
        headers.insert(
            LOCATION,
            HeaderValue::from_str(&started.return_to).map_err(|_| Unavailable::Header)?,
        );
        headers.append(
            SET_COOKIE,
            cookies::session(&self.config, &self.cookie, &id)?,
        );
        headers.append(
            SET_COOKIE,
            cookies::clear(&self.config, self.config.binding_cookie())?,
        );
        super::pages::no_store(headers);
        tracing::info!(sub_hash = %&sha256_hex(identity.sub())[..16], "login: session created");
        Ok(response)
    }

    /// Guarantee 4 through the one JWT verifier, then what OIDC Core
    /// §3.1.3.7 adds for id_tokens: the nonce sent, and `azp` when there
    /// are several audiences (or whenever it is present).
    async fn verify_id_token(&self, token: &str, nonce: &str) -> Result<Arc<Identity>, LoginError> {
        let identity = self.id_tokens.verify(token).await.map_err(|e| match e {
            JwtError::Invalid(reason) => LoginError::Failed(Failure::IdToken(reason)),
            JwtError::Unavailable(keys) => LoginError::Unavailable(keys.into()),
            JwtError::RevocationsUnknown => LoginError::Unavailable(Unavailable::Revocations),
        })?;
        let sent = identity.claim("nonce").and_then(Value::as_str);
        if !sent.is_some_and(|n| constant_time_eq(n.as_bytes(), nonce.as_bytes())) {
            return Err(Failure::Nonce.into());
        }
        let several = identity
            .claim("aud")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1);
        let azp = identity.claim("azp").and_then(Value::as_str);
        let azp_ok = match azp {
            Some(azp) => azp == self.config.client_id,
            None => !several,
        };
        if !azp_ok {
            return Err(Failure::Azp.into());
        }
        Ok(identity)
    }

    /// The configured `claims`: from the id_token, and from userinfo for
    /// those it lacks (when discovery names userinfo and there is an access
    /// token). Userinfo must be about the same `sub` (OIDC Core §5.3.2).
    async fn claims(
        &self,
        discovered: &Discovered,
        identity: &Identity,
        tokens: &Tokens,
    ) -> Result<Map<String, Value>, LoginError> {
        let mut claims = Map::new();
        for name in &self.config.claims {
            if let Some(value) = identity.claim(name) {
                claims.insert(name.clone(), value.clone());
            }
        }
        let lacking = self.config.claims.iter().any(|c| !claims.contains_key(c));
        if let (true, Some(url), Some(access)) =
            (lacking, &discovered.userinfo_endpoint, &tokens.access_token)
        {
            let info = self.idp.userinfo(url, access).await?;
            if info.get("sub").and_then(Value::as_str) != Some(identity.sub()) {
                return Err(Failure::UserinfoSub.into());
            }
            for name in &self.config.claims {
                if !claims.contains_key(name)
                    && let Some(value) = info.get(name)
                {
                    claims.insert(name.clone(), value.clone());
                }
            }
        }
        Ok(claims)
    }

    /// The hash written for the session: `user_field` = `sub`, the claims
    /// as `list_fields` reads them, and wristband's own `_wb_` fields, its
    /// tokens sealed.
    fn session_fields(
        &self,
        identity: &Identity,
        claims: Map<String, Value>,
        tokens: &Tokens,
    ) -> Result<Vec<(String, String)>, LoginError> {
        let now = unix_now().to_string();
        let mut fields: Vec<(String, String)> = claims
            .into_iter()
            .filter(|(name, _)| *name != self.user_field)
            .filter_map(|(name, value)| claim_text(&value).map(|text| (name, text.into_owned())))
            .collect();
        fields.push((self.user_field.clone(), identity.sub().to_owned()));
        fields.push((CREATED_FIELD.into(), now.clone()));
        fields.push((REFRESHED_FIELD.into(), now));
        if let Some(sid) = identity.claim("sid").and_then(Value::as_str) {
            fields.push((SID_FIELD.into(), sid.to_owned()));
        }
        let sealed = [
            (REFRESH_TOKEN_FIELD, tokens.refresh_token.as_deref()),
            (ACCESS_TOKEN_FIELD, tokens.access_token.as_deref()),
            (ID_TOKEN_FIELD, tokens.id_token.as_deref()),
        ];
        for (field, token) in sealed {
            if let Some(token) = token {
                let value = self
                    .sealer
                    .seal(field, token.as_bytes())
                    .map_err(|_| Unavailable::Seal)?;
                fields.push((field.into(), value));
            }
        }
        Ok(fields)
    }
}

/// A query parameter, form-decoded, when it appears exactly once.
fn parameter(query: Option<&str>, name: &str) -> Option<String> {
    let mut found = query?.split('&').filter_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    });
    let value = found.next()?;
    if found.next().is_some() {
        return None;
    }
    percent_decode(&value.replace('+', " ")).filter(|v| !v.is_empty())
}

/// Compares secrets without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_are_form_decoded_and_never_ambiguous() {
        assert_eq!(
            parameter(Some("code=a%2Bb+c&state=s"), "code").as_deref(),
            Some("a+b c")
        );
        assert_eq!(parameter(Some("state=1&state=2"), "state"), None);
        assert_eq!(parameter(Some("state="), "state"), None);
        assert_eq!(parameter(Some("xstate=1"), "state"), None);
        assert_eq!(parameter(None, "state"), None);
    }

    #[test]
    fn claims_become_fields_as_list_fields_reads_them() {
        assert_eq!(claim_text(&json!(["a", "b"])).as_deref(), Some("a,b"));
        assert_eq!(claim_text(&json!("x")).as_deref(), Some("x"));
        assert_eq!(claim_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(claim_text(&json!({"a": 1})).as_deref(), Some("{\"a\":1}"));
        assert_eq!(claim_text(&json!(null)), None);
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
