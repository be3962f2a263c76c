//! Login and logout at the company's OpenID provider (SPEC §7): wristband
//! writes the sessions it enforces, so an app that kept its sessions in
//! memory sits behind it unmodified.
//!
//! The three endpoints answer before routing, on every host: `login_path`
//! ([`start`]), the path of `redirect_uri` ([`callback`]) and
//! `logout_path` ([`logout`]). Sessions are written through the session
//! store of `[sessions]` and read back by the one session path of `auth`,
//! which also asks [`refresh`] to re-validate a session that is due.

mod callback;
mod cookies;
pub mod error;
mod idp;
mod logout;
pub mod pages;
mod refresh;
pub mod return_url;
pub mod seal;
mod start;
mod state;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response};
use http_body_util::Full;
use prometheus_client::metrics::counter::Counter;

use crate::auth::jwt::JwtAuth;
use crate::auth::redirect::Site;
use crate::auth::session::SessionStore;
use crate::auth::{Authenticator, unix_now};
use crate::config::{Config, JwtAlgorithm, JwtConfig, JwtProvider, KeySource, LoginConfig};
use crate::encoding::sha256_hex;
use crate::reuse::Reuse;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::ResultLabel;
pub use error::LoginError;
use idp::Idp;
use return_url::AllowedHosts;
use seal::Sealer;

/// A login endpoint's answer: a redirect or a small page.
pub type Answer = Response<Full<Bytes>>;

/// Which of the login paths a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Start,
    Callback,
    Logout,
}

/// `wristband_login_total{result}`, resolved once.
struct Counters {
    started: Counter,
    ok: Counter,
    failed: Counter,
    refreshed: Counter,
    refresh_failed: Counter,
    logout: Counter,
}

impl Counters {
    fn new(metrics: &Metrics) -> Counters {
        let get = |result| metrics.login.get_or_create(&ResultLabel { result }).clone();
        Counters {
            started: get("started"),
            ok: get("ok"),
            failed: get("failed"),
            refreshed: get("refreshed"),
            refresh_failed: get("refresh_failed"),
            logout: get("logout"),
        }
    }
}

pub struct Login {
    config: LoginConfig,
    /// `[sessions]`: the cookie name and the field that holds `sub`.
    cookie: String,
    user_field: String,
    store: SessionStore,
    /// Carried over a reload that keeps `[login]` (its discovery too).
    idp: Arc<Idp>,
    /// The id_token's verifier: the JWT code every bearer token goes
    /// through, with one provider made from `[login]` (guarantee 4).
    id_tokens: Arc<JwtAuth>,
    sealer: Sealer,
    allowed: AllowedHosts,
    counters: Counters,
}

impl Login {
    /// `None` without `[login]`. Needs the sessions of `auth` (validation
    /// guarantees `[sessions]` with `[login]`).
    pub fn new(
        config: &Config,
        auth: &Authenticator,
        metrics: &Arc<Metrics>,
        previous: Option<&Login>,
        reuse: &mut Reuse,
    ) -> anyhow::Result<Option<Arc<Login>>> {
        let Some(login) = &config.login else {
            return Ok(None);
        };
        let (Some(sessions_config), Some(sessions)) = (&config.sessions, &auth.session) else {
            anyhow::bail!("[login] needs [sessions]");
        };
        let same = previous.filter(|p| p.config == *login);
        let idp = match same {
            Some(previous) => previous.idp.clone(),
            None => Arc::new(Idp::new(login)?),
        };
        reuse.record(same.is_some(), "login discovery");
        let id_tokens = JwtAuth::new(
            &id_token_config(login),
            metrics,
            previous.map(|p| p.id_tokens.as_ref()),
            // An id_token is no bearer credential: it proves a login now,
            // after any revocation of the user's earlier tokens.
            None,
            reuse,
        )?
        .ok_or_else(|| anyhow::anyhow!("login: no id_token verifier"))?;
        let sealer = Sealer::new(login.encryption_keys.iter().map(|k| k.expose()))
            .map_err(|e| anyhow::anyhow!("login.encryption_keys: {e}"))?;
        let this = Arc::new(Login {
            config: login.clone(),
            cookie: sessions_config.cookie.clone(),
            user_field: sessions_config.user_field.clone(),
            store: sessions.store(),
            idp,
            id_tokens,
            sealer,
            allowed: AllowedHosts::new(login.allowed_redirect_hosts.clone()),
            counters: Counters::new(metrics),
        });
        if !login.refresh_interval.is_zero() {
            sessions.set_refresher(this.clone());
        }
        Ok(Some(this))
    }

    pub fn login_path(&self) -> &str {
        &self.config.login_path
    }

    /// The endpoint `path` (normalized) names, if any.
    pub fn endpoint(&self, path: &str) -> Option<Endpoint> {
        if path == self.config.login_path {
            Some(Endpoint::Start)
        } else if path == self.config.callback_path {
            Some(Endpoint::Callback)
        } else if path == self.config.logout_path {
            Some(Endpoint::Logout)
        } else {
            None
        }
    }

    pub async fn answer(
        &self,
        endpoint: Endpoint,
        parts: &Parts,
        site: &Site<'_>,
    ) -> Result<Answer, LoginError> {
        match (endpoint, &parts.method) {
            (Endpoint::Start, &Method::GET) => self.start(parts).await,
            (Endpoint::Callback, &Method::GET) => {
                let result = self.callback(parts).await;
                match &result {
                    Ok(_) => {
                        self.counters.ok.inc();
                    }
                    Err(LoginError::Failed(_)) => {
                        self.counters.failed.inc();
                    }
                    Err(_) => {}
                }
                result
            }
            (Endpoint::Logout, &Method::GET) => Ok(self.logout_page().await),
            (Endpoint::Logout, &Method::POST) => self.logout(parts, site).await,
            (Endpoint::Logout, _) => Err(LoginError::Method("GET, POST")),
            (Endpoint::Start | Endpoint::Callback, _) => Err(LoginError::Method("GET")),
        }
    }
}

/// The id_token's provider: the IdP's keys from discovery, `aud` must hold
/// `client_id`, any asymmetric algorithm (each key stays bound to its own),
/// never HMAC (a client secret is no signing key here).
fn id_token_config(login: &LoginConfig) -> JwtConfig {
    JwtConfig {
        header: false,
        cookie: None,
        forward_token: true,
        max_token_bytes: JwtConfig::DEFAULT_MAX_TOKEN_BYTES,
        verified_cache_size: 0,
        providers: vec![JwtProvider {
            name: "[login]".into(),
            issuer: login.issuer.clone(),
            key_source: KeySource::Discovery,
            audiences: vec![login.client_id.clone()],
            audience_claim: JwtProvider::DEFAULT_AUDIENCE_CLAIM.into(),
            algorithms: JwtAlgorithm::ALL
                .into_iter()
                .filter(|alg| !alg.is_hmac())
                .collect(),
            leeway: JwtProvider::DEFAULT_LEEWAY,
            max_token_lifetime: None,
            claims: BTreeMap::new(),
            refresh_interval: JwtProvider::DEFAULT_REFRESH_INTERVAL,
            min_refresh_interval: JwtProvider::DEFAULT_MIN_REFRESH_INTERVAL,
            fetch_timeout: LoginConfig::IDP_TIMEOUT,
            max_stale: JwtProvider::DEFAULT_MAX_STALE,
            ca_file: login.ca_file.clone(),
        }],
    }
}

/// What the IdP said (an error code), for the log: visible ASCII only, at
/// most 64 characters, whatever it sent.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

/// `n` bytes from the OS CSPRNG, base64url: states, nonces, verifiers,
/// binding values and session ids.
fn random_token(n: usize) -> Result<String, error::Unavailable> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| error::Unavailable::Random)?;
    Ok(crate::encoding::base64url(&bytes))
}
