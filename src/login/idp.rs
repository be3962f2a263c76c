//! Talking to the OpenID provider: discovery (OpenID Connect Discovery 1.0
//! §4), the token endpoint (RFC 6749 §3.2) and userinfo (OIDC Core §5.3).
//! Every exchange is bounded in time and size, and goes only to `https://`
//! endpoints (http only on loopback hosts), as JWKS fetches do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::config::LoginConfig;
use crate::encoding::base64_padded;
use crate::tls::client;

/// Larger answers are refused: a token response or a discovery document
/// is a few KB.
const MAX_BODY: usize = 256 * 1024;
/// A discovery document is used this long before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// After a failed discovery fetch, how long before the next one.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

/// The IdP could not be asked, or answered nonsense: 503, never a pass.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("{url}: not an https URL (http only for loopback hosts)")]
    Insecure { url: String },
    #[error("{url}: timed out")]
    Timeout { url: String },
    #[error("{url}")]
    Http {
        url: String,
        #[source]
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{url}: answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: the answer is not the JSON object expected")]
    NotJson { url: String },
    #[error("discovery names issuer {published:?}, not the configured {configured:?}")]
    OtherIssuer {
        published: Option<String>,
        configured: String,
    },
    #[error("discovery document has no {0}")]
    Missing(&'static str),
    #[error("discovery failed moments ago; not asked again yet")]
    Backoff,
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
    /// A public client: `client_id` in the body, PKCE alone.
    None,
}

/// The endpoints discovery names.
#[derive(Debug)]
pub struct Discovered {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
    pub client_auth: ClientAuth,
}

/// What a token endpoint answered.
pub enum TokenAnswer {
    Tokens(Tokens),
    /// RFC 6749 §5.2: a 400/401 with an `error` code.
    Refused(String),
}

#[derive(Deserialize)]
pub struct Tokens {
    pub id_token: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
}

pub struct Idp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    issuer: String,
    client_id: String,
    /// `client_id:client_secret`, both form-urlencoded, in base64 (RFC 6749
    /// §2.3.1); `None` for a public client.
    basic: Option<HeaderValue>,
    secret: Option<String>,
    discovered: Mutex<Discovery>,
}

/// The last good discovery document and when to fetch again; without a
/// document, when the last fetch failed.
#[derive(Default)]
struct Discovery {
    document: Option<(Arc<Discovered>, Instant)>,
    failed: Option<Instant>,
}

impl Idp {
    pub fn new(config: &LoginConfig) -> anyhow::Result<Idp> {
        let tls = client::client_config(config.ca_file.as_deref())?;
        let connector = crate::upstream::pool::connector(LoginConfig::IDP_TIMEOUT, tls);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let secret = config.client_secret.as_ref().map(|s| s.expose().to_owned());
        let basic = match &secret {
            Some(secret) => {
                let pair = format!("{}:{}", form_encode(&config.client_id), form_encode(secret));
                let value = format!("Basic {}", base64_padded(pair.as_bytes()));
                Some(sensitive(HeaderValue::from_str(&value)?))
            }
            None => None,
        };
        Ok(Idp {
            client,
            issuer: config.issuer.clone(),
            client_id: config.client_id.clone(),
            basic,
            secret,
            discovered: Mutex::new(Discovery::default()),
        })
    }

    /// The endpoints, fetched at first use and again after an hour; while
    /// a new fetch fails, the last good document serves.
    ///
    /// Fetches are one at a time, and back off: a document that could not
    /// be refreshed is tried again after [`DISCOVERY_RETRY`]; with none at
    /// all, callers within [`DISCOVERY_RETRY`] of a failure are answered
    /// at once (503), not queued behind another 5 s fetch each.
    pub async fn discovered(&self) -> Result<Arc<Discovered>, IdpError> {
        let mut slot = self.discovered.lock().await;
        if let Some((doc, next)) = &slot.document
            && Instant::now() < *next
        {
            return Ok(doc.clone());
        }
        if slot.document.is_none() && slot.failed.is_some_and(|at| at.elapsed() < DISCOVERY_RETRY) {
            return Err(IdpError::Backoff);
        }
        match self.discover().await {
            Ok(doc) => {
                let doc = Arc::new(doc);
                slot.document = Some((doc.clone(), Instant::now() + DISCOVERY_TTL));
                slot.failed = None;
                Ok(doc)
            }
            Err(error) => {
                tracing::warn!(error = %crate::telemetry::logging::chain(&error), "login: discovery failed");
                slot.failed = Some(Instant::now());
                match &mut slot.document {
                    Some((doc, next)) => {
                        // The last good document serves meanwhile.
                        *next = Instant::now() + DISCOVERY_RETRY;
                        Ok(doc.clone())
                    }
                    None => Err(error),
                }
            }
        }
    }

    async fn discover(&self) -> Result<Discovered, IdpError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let (status, doc) = self.exchange(Method::GET, &url, None, None).await?;
        if status != StatusCode::OK {
            return Err(IdpError::Status { url, status });
        }
        let text = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_owned);
        let published = text("issuer");
        if published.as_deref() != Some(self.issuer.as_str()) {
            return Err(IdpError::OtherIssuer {
                published,
                configured: self.issuer.clone(),
            });
        }
        let endpoint = |name: &'static str| -> Result<Option<String>, IdpError> {
            match text(name) {
                None => Ok(None),
                Some(url) => {
                    let acceptable = url
                        .parse::<Uri>()
                        .is_ok_and(|uri| client::is_acceptable_url(&uri));
                    if acceptable {
                        Ok(Some(url))
                    } else {
                        Err(IdpError::Insecure { url })
                    }
                }
            }
        };
        let authorization_endpoint = endpoint("authorization_endpoint")?
            .ok_or(IdpError::Missing("authorization_endpoint"))?;
        let token_endpoint =
            endpoint("token_endpoint")?.ok_or(IdpError::Missing("token_endpoint"))?;
        let methods: Vec<&str> = doc
            .get("token_endpoint_auth_methods_supported")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            // OIDC Discovery §3: the default is client_secret_basic.
            .unwrap_or_else(|| vec!["client_secret_basic"]);
        let client_auth = if self.secret.is_none() {
            ClientAuth::None
        } else if !methods.contains(&"client_secret_basic")
            && methods.contains(&"client_secret_post")
        {
            ClientAuth::Post
        } else {
            ClientAuth::Basic
        };
        Ok(Discovered {
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint: endpoint("userinfo_endpoint")?,
            end_session_endpoint: endpoint("end_session_endpoint")?,
            client_auth,
        })
    }

    /// POSTs a grant to the token endpoint, authenticated as discovery
    /// allows.
    pub async fn token(
        &self,
        discovered: &Discovered,
        grant: &[(&str, &str)],
    ) -> Result<TokenAnswer, IdpError> {
        let mut form: Vec<(&str, &str)> = grant.to_vec();
        match discovered.client_auth {
            ClientAuth::Basic => {}
            ClientAuth::Post => {
                form.push(("client_id", &self.client_id));
                if let Some(secret) = &self.secret {
                    form.push(("client_secret", secret));
                }
            }
            ClientAuth::None => form.push(("client_id", &self.client_id)),
        }
        let body = form_body(&form);
        let basic = match discovered.client_auth {
            ClientAuth::Basic => self.basic.clone(),
            _ => None,
        };
        let url = &discovered.token_endpoint;
        let (status, doc) = self.exchange(Method::POST, url, Some(body), basic).await?;
        if status == StatusCode::OK {
            return serde_json::from_value(Value::Object(doc))
                .map(TokenAnswer::Tokens)
                .map_err(|_| IdpError::NotJson { url: url.clone() });
        }
        // RFC 6749 §5.2: a refusal is a 400 (or 401) with an error code;
        // anything else is the IdP failing.
        match doc.get("error").and_then(Value::as_str) {
            Some(code) if status.is_client_error() => Ok(TokenAnswer::Refused(code.to_owned())),
            _ => Err(IdpError::Status {
                url: url.clone(),
                status,
            }),
        }
    }

    /// Userinfo with the access token: the claims as a JSON object.
    pub async fn userinfo(
        &self,
        url: &str,
        access_token: &str,
    ) -> Result<Map<String, Value>, IdpError> {
        let bearer = HeaderValue::from_str(&format!("Bearer {access_token}"))
            .map(sensitive)
            .map_err(|e| IdpError::Http {
                url: url.to_owned(),
                error: e.into(),
            })?;
        let (status, doc) = self.exchange(Method::GET, url, None, Some(bearer)).await?;
        if status != StatusCode::OK {
            return Err(IdpError::Status {
                url: url.to_owned(),
                status,
            });
        }
        Ok(doc)
    }

    /// One request, bounded by `IDP_TIMEOUT` and `MAX_BODY`; the answer
    /// as a JSON object (an error answer's too, when it is one).
    async fn exchange(
        &self,
        method: Method,
        url: &str,
        form: Option<String>,
        authorization: Option<HeaderValue>,
    ) -> Result<(StatusCode, Map<String, Value>), IdpError> {
        let http_error = |error: Box<dyn std::error::Error + Send + Sync>| IdpError::Http {
            url: url.to_owned(),
            error,
        };
        let uri: Uri = url.parse().map_err(|_| IdpError::Insecure {
            url: url.to_owned(),
        })?;
        if !client::is_acceptable_url(&uri) {
            return Err(IdpError::Insecure {
                url: url.to_owned(),
            });
        }
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "wristband");
        if form.is_some() {
            request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        let request = request
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .map_err(|e| http_error(e.into()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| http_error(e.into()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(http_error)?
                .to_bytes();
            let doc = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(doc)) => doc,
                _ if !status.is_success() => Map::new(),
                _ => {
                    return Err(IdpError::NotJson {
                        url: url.to_owned(),
                    });
                }
            };
            Ok((status, doc))
        };
        tokio::time::timeout(LoginConfig::IDP_TIMEOUT, exchange)
            .await
            .map_err(|_| IdpError::Timeout {
                url: url.to_owned(),
            })?
    }
}

/// Credentials: never printed by `Debug`, and kept out of HPACK's
/// dynamic table should the exchange ever speak HTTP/2.
fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// `application/x-www-form-urlencoded` (WHATWG URL §5.2): unreserved bytes
/// as they are, everything else `%XX` (a space too, which `+` would also
/// mean).
pub fn form_encode(text: &str) -> String {
    crate::auth::redirect::percent_encode(text)
}

pub fn form_body(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_client_secret_header_never_prints() {
        crate::install_crypto_provider();
        let text = "[sessions]\n[login]\nissuer = \"https://idp.example.com\"\n\
                    client_id = \"wb\"\nclient_secret = \"s3cret-value\"\n\
                    redirect_uri = \"https://app.example.com/_wristband/callback\"\n\
                    encryption_keys = [\"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"]\n";
        let config = Config::from_toml(std::path::Path::new("t.toml"), text).expect("valid");
        let idp = Idp::new(config.login.as_ref().expect("login")).expect("idp");
        let basic = idp.basic.expect("a Basic header for a confidential client");
        assert!(basic.is_sensitive());
        let printed = format!("{basic:?}");
        let encoded = base64_padded(b"wb:s3cret-value");
        assert!(!printed.contains(&encoded), "{printed}");
    }
}
