//! `logout_path` (SPEC §7 "Logout"): GET shows a button, POST (from this
//! site only) deletes the session, clears the cookie and ends the IdP's
//! session too when discovery names an `end_session_endpoint`
//! (RP-Initiated Logout 1.0), else goes to `post_logout_redirect`.

use http::header::{LOCATION, SET_COOKIE};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, Uri};

use super::error::{LoginError, Unavailable};
use super::idp::form_body;
use super::{Answer, Login, cookies, pages};
use crate::auth::credentials;
use crate::auth::csrf::same_origin;
use crate::auth::redirect::Site;
use crate::auth::session::ID_TOKEN_FIELD;

/// How many sessions one logout ends.
const MAX_SESSIONS_ENDED: usize = 2;

impl Login {
    pub(super) async fn logout_page(&self) -> Answer {
        // The IdP's origin, if the POST will redirect there.
        let origin = match self.idp.discovered().await {
            Ok(discovered) => discovered
                .end_session_endpoint
                .as_deref()
                .and_then(|url| url.parse::<Uri>().ok())
                .and_then(|uri| Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))),
            Err(_) => None,
        };
        pages::logout_confirm(&self.config.logout_path, origin.as_deref())
    }

    pub(super) async fn logout(
        &self,
        parts: &Parts,
        site: &Site<'_>,
    ) -> Result<Answer, LoginError> {
        // A cross-site form must not log the user out (login CSRF's twin).
        if !same_origin(&parts.headers, site) {
            return Err(LoginError::CrossSiteLogout);
        }
        // Every session the browser holds under the cookie's name: two
        // different ones would be refused as ambiguous everywhere else, and
        // a logout must not leave either alive.
        let mut id_token = None;
        // At most two (one is the rule, two the ambiguity the other routes
        // refuse): a header of a thousand names must not cost a thousand
        // store round trips.
        let mut ids: Vec<&str> = Vec::new();
        for id in credentials::cookie_values(&parts.headers, &self.cookie) {
            if !ids.contains(&id) {
                ids.push(id);
            }
            if ids.len() == MAX_SESSIONS_ENDED {
                break;
            }
        }
        for id in ids {
            let Some(fields) = self.store.fields(id).await? else {
                continue;
            };
            let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
            if id_token.is_none() {
                id_token = field(ID_TOKEN_FIELD)
                    .and_then(|sealed| self.sealer.open(ID_TOKEN_FIELD, sealed).ok())
                    .and_then(|bytes| String::from_utf8(bytes).ok());
            }
            let sub = field(&self.user_field).cloned().unwrap_or_default();
            self.store.end(id, &sub).await?;
        }
        self.counters.logout.inc();
        let location = self.after_logout(site, id_token.as_deref()).await;
        let mut response = Response::new(Default::default());
        *response.status_mut() = StatusCode::FOUND;
        let headers = response.headers_mut();
        headers.insert(
            LOCATION,
            HeaderValue::from_str(&location).map_err(|_| Unavailable::Header)?,
        );
        headers.insert(SET_COOKIE, cookies::clear(&self.config, &self.cookie)?);
        pages::no_store(headers);
        Ok(response)
    }

    /// The IdP's end_session_endpoint with `id_token_hint` and
    /// `post_logout_redirect_uri`, or `post_logout_redirect`.
    async fn after_logout(&self, site: &Site<'_>, id_token: Option<&str>) -> String {
        let local = &self.config.post_logout_redirect;
        let Ok(discovered) = self.idp.discovered().await else {
            return local.clone();
        };
        let Some(endpoint) = &discovered.end_session_endpoint else {
            return local.clone();
        };
        // The IdP wants an absolute URL to come back to.
        let back = if local.starts_with('/') {
            site.host
                .and_then(|h| h.to_str().ok())
                .map(|host| format!("{}://{host}{local}", site.scheme()))
        } else {
            Some(local.clone())
        };
        let mut params = vec![("client_id", self.config.client_id.as_str())];
        if let Some(hint) = id_token {
            params.push(("id_token_hint", hint));
        }
        if let Some(back) = &back {
            params.push(("post_logout_redirect_uri", back));
        }
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        format!("{endpoint}{separator}{}", form_body(&params))
    }
}
