//! Everything derived from one version of the config: the router, the
//! credential kinds, the identity headers, the upstreams and the TLS
//! acceptor. The proxy serves each request with the gateway current when it
//! arrived; a SIGHUP builds the next one, carrying over what still holds
//! ([`crate::reuse`]).

use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::HeaderValue;
use prometheus_client::metrics::histogram::Histogram;

use crate::auth::Authenticator;
use crate::auth::counters::AuthCounters;
use crate::config::{Config, RouteConfig};
use crate::error::Rejection;
use crate::identity::IdentityHeaders;
use crate::login::Login;
use crate::reuse::Reuse;
use crate::routing::Router;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{RouteLabel, StatusCounters};
use crate::upstream::{Upstream, health};

/// Everything derived from one version of the config. Swapped whole on
/// SIGHUP, carrying over the state that still holds ([`crate::reuse`]);
/// requests in flight keep the version they started with.
pub struct Gateway {
    pub config: Arc<Config>,
    router: Router,
    pub upstreams: Vec<Arc<Upstream>>,
    pub identity: Arc<IdentityHeaders>,
    pub auth: Authenticator,
    /// `[login]`: the endpoints of the login flow.
    pub login: Option<Arc<Login>>,
    /// Per route, what each request needs without allocating: the `Allow`
    /// value for 405s, the name as a metric label, its latency histogram.
    pub routes: Vec<RouteRuntime>,
    /// The latency histogram and status counters of requests that matched
    /// no route.
    pub unrouted: Histogram,
    pub unrouted_requests: StatusCounters,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Gateway {
    /// The route for this host and normalized path (404), if it allows the
    /// method (405 with `Allow`, never another route).
    pub fn route(
        &self,
        host: Option<&HeaderValue>,
        path: &str,
        method: &http::Method,
    ) -> Result<usize, Rejection> {
        let host = host.and_then(|h| h.to_str().ok());
        let index = self.router.find(host, path).ok_or(Rejection::NoRoute)?;
        if let Some(allow) = &self.routes[index].allow
            && !self.config.routes[index].methods.contains(method)
        {
            return Err(Rejection::MethodNotAllowed {
                allow: allow.clone(),
            });
        }
        Ok(index)
    }

    /// Builds the runtime state and starts the health checkers. Must run
    /// inside the tokio runtime.
    pub fn new(config: Config, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<Gateway>> {
        Gateway::build(config, metrics, None).map(|(gateway, _)| gateway)
    }

    /// As [`Gateway::new`], carrying over from `previous` the state of
    /// every part whose config did not change (see [`crate::reuse`]), and
    /// saying which.
    pub fn reload(
        previous: &Gateway,
        config: Config,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<(Arc<Gateway>, Reuse)> {
        Gateway::build(config, metrics, Some(previous))
    }

    fn build(
        config: Config,
        metrics: &Arc<Metrics>,
        previous: Option<&Gateway>,
    ) -> anyhow::Result<(Arc<Gateway>, Reuse)> {
        let mut reuse = Reuse::default();
        // Valid (SPEC §8 refuses untrusted callers), but surely a mistake.
        if config.forward_auth.is_some() && config.server.trusted_proxies.is_empty() {
            tracing::warn!(
                "[forward_auth] is on but server.trusted_proxies is empty: every forward-auth call will be refused (403)"
            );
        }
        let tls = match &config.server.tls {
            Some(tls) => Some(crate::tls::server::acceptor(tls)?),
            None => None,
        };
        let upstreams = upstreams(&config, metrics, previous, &mut reuse);
        let routes = config
            .routes
            .iter()
            .map(|r| RouteRuntime::new(r, metrics))
            .collect();
        let unrouted = metrics
            .request_duration
            .get_or_create(&RouteLabel { route: "".into() })
            .clone();
        let unrouted_requests = StatusCounters::new(&metrics.requests, "".into());
        let auth = Authenticator::new(&config, metrics, previous.map(|p| &p.auth), &mut reuse)?;
        let login = Login::new(
            &config,
            &auth,
            metrics,
            previous.and_then(|p| p.login.as_deref()),
            &mut reuse,
        )?;
        let gateway = Arc::new(Gateway {
            auth,
            login,
            router: Router::new(&config.routes),
            identity: IdentityHeaders::new(&config.identity)
                .context("identity.assertion.key_file")?,
            upstreams,
            routes,
            unrouted,
            unrouted_requests,
            tls,
            config: Arc::new(config),
        });
        Ok((gateway, reuse))
    }
}

/// The config's upstreams: the previous gateway's own where the upstream's
/// config (and `server.idle_timeout`, which its pools use) is unchanged, so
/// that pools, health verdicts and passive ejections survive the reload
/// (a dead target must not count as healthy again) and no second health
/// checker starts; new ones, with their checkers, otherwise.
fn upstreams(
    config: &Config,
    metrics: &Arc<Metrics>,
    previous: Option<&Gateway>,
    reuse: &mut Reuse,
) -> Vec<Arc<Upstream>> {
    let idle_timeout = config.server.idle_timeout;
    let reusable = previous
        .filter(|p| p.config.server.idle_timeout == idle_timeout)
        .map_or(&[][..], |p| &p.upstreams[..]);
    config
        .upstreams
        .iter()
        .map(|wanted| {
            let kept = reusable.iter().find(|u| u.config == *wanted);
            reuse.record(kept.is_some(), format!("upstream {}", wanted.name));
            match kept {
                Some(upstream) => upstream.clone(),
                None => {
                    let upstream = Upstream::new(wanted, metrics, idle_timeout);
                    health::spawn(&upstream);
                    upstream
                }
            }
        })
        .collect()
}

impl Gateway {
    /// The assertion key set, served on both listeners.
    pub fn jwks(&self) -> Bytes {
        self.identity.jwks()
    }
}

/// Where the proxy publishes its assertion keys, on the admin listener and,
/// ahead of routing, on the client listener (SPEC §3).
pub const JWKS_PATH: &str = "/.well-known/wristband/jwks.json";

pub struct RouteRuntime {
    pub name: Arc<str>,
    pub auth: AuthCounters,
    allow: Option<HeaderValue>,
    pub duration: Histogram,
    pub requests: StatusCounters,
}

impl RouteRuntime {
    fn new(route: &RouteConfig, metrics: &Metrics) -> Self {
        let name: Arc<str> = route.name.as_str().into();
        let allow = (!route.methods.is_empty()).then(|| {
            let list: Vec<&str> = route.methods.iter().map(|m| m.as_str()).collect();
            HeaderValue::from_str(&list.join(", ")).ok()
        });
        RouteRuntime {
            auth: AuthCounters::new(name.clone(), metrics),
            duration: metrics
                .request_duration
                .get_or_create(&RouteLabel {
                    route: name.clone(),
                })
                .clone(),
            allow: allow.flatten(),
            requests: StatusCounters::new(&metrics.requests, name.clone()),
            name,
        }
    }
}
