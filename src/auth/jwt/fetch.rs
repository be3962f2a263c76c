//! Fetching key sets: a JWKS URL, or OIDC discovery (OpenID Connect
//! Discovery 1.0 §4) from the issuer. Bounded in time (`fetch_timeout`) and
//! size (SPEC §5.4), https except to loopback hosts.

use std::time::Duration;

use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::keys::MAX_JWKS_BYTES;
use crate::config::JwtProvider;
use crate::tls::client;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: not an https URL (http only for loopback hosts)")]
    Insecure { url: String },
    #[error("{url}: timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}")]
    Http {
        url: String,
        #[source]
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{url}: answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge { url: String },
    #[error("discovery document: {0}")]
    Discovery(Discovery),
}

/// What is wrong with an OpenID discovery document.
#[derive(Debug, thiserror::Error)]
pub enum Discovery {
    #[error("not JSON")]
    NotJson,
    #[error("issuer {published:?} is not the configured {configured:?}")]
    OtherIssuer {
        published: Option<String>,
        configured: String,
    },
    #[error("no jwks_uri")]
    NoJwksUri,
}

/// A fetched document and how long its server says it stays fresh.
pub struct Fetched {
    pub body: Bytes,
    pub max_age: Option<Duration>,
}

pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl Fetcher {
    pub fn new(provider: &JwtProvider) -> anyhow::Result<Fetcher> {
        let tls = client::client_config(provider.ca_file.as_deref())?;
        let connector = crate::upstream::pool::connector(provider.fetch_timeout, tls);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Fetcher {
            client,
            timeout: provider.fetch_timeout,
        })
    }

    /// GET `url`, the whole exchange bounded by `fetch_timeout`.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let insecure = || FetchError::Insecure {
            url: url.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| insecure())?;
        if !client::is_acceptable_url(&uri) {
            return Err(insecure());
        }
        let request = Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "wristband")
            .body(Empty::new())
            .map_err(|e| FetchError::Http {
                url: url.to_owned(),
                error: e.into(),
            })?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Http {
                    url: url.to_owned(),
                    error: e.into(),
                })?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status: response.status(),
                });
            }
            let max_age = max_age(response.headers());
            let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|_| FetchError::TooLarge {
                    url: url.to_owned(),
                })?
                .to_bytes();
            Ok(Fetched { body, max_age })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.to_owned(),
                timeout: self.timeout,
            })?
    }

    /// OIDC discovery: the JWKS URL published for `issuer`, whose document
    /// must name exactly that issuer (§4.3), so a mix-up cannot hand us
    /// another issuer's keys.
    pub async fn discover_jwks_uri(&self, issuer: &str) -> Result<String, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let fetched = self.get(&url).await?;
        let doc: serde_json::Value = serde_json::from_slice(&fetched.body)
            .map_err(|_| FetchError::Discovery(Discovery::NotJson))?;
        let published = doc.get("issuer").and_then(|v| v.as_str());
        if published != Some(issuer) {
            return Err(FetchError::Discovery(Discovery::OtherIssuer {
                published: published.map(str::to_owned),
                configured: issuer.to_owned(),
            }));
        }
        doc.get("jwks_uri")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or(FetchError::Discovery(Discovery::NoJwksUri))
    }
}

/// `Cache-Control: max-age=N` (RFC 9111 §5.2.2.1).
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            name.eq_ignore_ascii_case("max-age")
                .then(|| value.trim().trim_matches('"').parse().ok())
                .flatten()
                .map(Duration::from_secs)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, "public, max-age=600".parse().expect("v"));
        assert_eq!(max_age(&h), Some(Duration::from_secs(600)));
        h.insert(CACHE_CONTROL, "no-cache".parse().expect("v"));
        assert_eq!(max_age(&h), None);
    }
}
