//! The request pipeline (SPEC §1), top to bottom in [`Proxy::pipeline`]:
//! route, authenticate, authorize, build the upstream request (strip, then
//! inject), forward. Each stage lives in the module named after it; every
//! rejection is a [`Rejection`] turned into a response in one place.

pub mod balance;
pub mod headers;
pub mod health;
pub mod pool;
pub mod upgrade;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::auth::counters::{AuthCounters, Outcome};
use crate::auth::redirect::Site;
use crate::auth::{self, Authenticated, Authenticator};
use crate::boxed::boxed;
use crate::config::{Config, RouteConfig, UnderscoreHeaders};
use crate::error::{BadRequest, Rejection, Side};
use crate::identity::{Identity, IdentityHeaders};
use crate::reuse::Reuse;
use crate::routing::{Router, normalize_path};
use crate::telemetry::Metrics;
use crate::telemetry::logging::LoggedPath;
use crate::telemetry::metrics::{RouteLabel, StatusCounters};
use prometheus_client::metrics::histogram::Histogram;
use upstream::Upstream;

/// What a client receives: the upstream's body streamed through, or one the
/// proxy made itself.
pub type ResponseBody = Either<pool::PooledBody, Full<Bytes>>;

/// Everything derived from one version of the config. Swapped whole on
/// SIGHUP, carrying over the state that still holds ([`crate::reuse`]);
/// requests in flight keep the version they started with.
pub struct Gateway {
    pub config: Arc<Config>,
    router: Router,
    pub upstreams: Vec<Arc<Upstream>>,
    identity: Arc<IdentityHeaders>,
    pub auth: Authenticator,
    /// Per route, what each request needs without allocating: the `Allow`
    /// value for 405s, the name as a metric label, its latency histogram.
    routes: Vec<RouteRuntime>,
    /// The latency histogram and status counters of requests that matched
    /// no route.
    unrouted: Histogram,
    unrouted_requests: StatusCounters,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Gateway {
    /// The route for this host and normalized path (404), if it allows the
    /// method (405 with `Allow`, never another route).
    fn route(
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
        let tls = match &config.server.tls {
            Some(tls) => Some(crate::server::tls::acceptor(tls)?),
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
        let gateway = Arc::new(Gateway {
            auth,
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

struct RouteRuntime {
    name: Arc<str>,
    auth: AuthCounters,
    allow: Option<HeaderValue>,
    duration: Histogram,
    requests: StatusCounters,
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

/// The client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer address as `X-Forwarded-For` wants it, formatted once per
    /// connection rather than once per request.
    pub peer_ip: HeaderValue,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ConnInfo { peer, tls, peer_ip }
    }
}

/// The proxy: the current gateway and what outlives reloads.
pub struct Proxy {
    pub gateway: ArcSwap<Gateway>,
    pub metrics: Arc<Metrics>,
}

/// What the access log and the metrics learn about one request
/// (pingora's per-request `CTX`).
#[derive(Default)]
struct RequestLog {
    /// The normalized path, without the query (SPEC §3 `[log]`): what was
    /// routed and forwarded. Empty when the path was refused (400), so the
    /// field only ever holds a path that passed normalization.
    path: String,
    /// Indexes into the gateway's routes, upstreams and their targets.
    route: Option<usize>,
    upstream: Option<usize>,
    target: Option<usize>,
    auth: &'static str,
}

impl Proxy {
    pub fn new(gateway: Arc<Gateway>, metrics: Arc<Metrics>) -> Arc<Proxy> {
        Arc::new(Proxy {
            gateway: ArcSwap::new(gateway),
            metrics,
        })
    }

    /// Serves one request: never fails, every error is a response.
    pub async fn handle(&self, conn: &ConnInfo, req: Request<Incoming>) -> Response<ResponseBody> {
        let started = Instant::now();
        let gateway = self.gateway.load_full();
        let request_id = headers::request_id(req.headers());
        let method = req.method().clone();
        let mut log = RequestLog {
            auth: "none",
            ..RequestLog::default()
        };
        self.metrics.in_flight.inc();
        // Boxed, once per request: hyper keeps each connection's service
        // future allocated for the connection's whole life, so everything
        // inline here is paid per idle keep-alive connection. The box lives
        // only while the request does (bench: SWEEP=idle, ~2 KB less per
        // idle connection for one allocation per request).
        let result = boxed(|| self.pipeline(&gateway, conn, req, &request_id, &mut log)).await;
        self.metrics.in_flight.dec();
        let mut response = match result {
            Ok(response) => response,
            Err(rejection) => {
                let reason = rejection.to_string();
                match rejection.side() {
                    Side::Client => {
                        tracing::debug!(request_id = request_id.to_str().unwrap_or(""), %reason, "rejected")
                    }
                    Side::Upstream => {
                        tracing::warn!(request_id = request_id.to_str().unwrap_or(""), %reason, "upstream failure")
                    }
                    Side::Internal => {
                        tracing::error!(request_id = request_id.to_str().unwrap_or(""), %reason, "unavailable")
                    }
                }
                rejection.into_response().map(Either::Right)
            }
        };
        response
            .headers_mut()
            .insert(&headers::X_REQUEST_ID, request_id.clone());

        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        let route = log.route.map(|i| &gateway.routes[i]);
        let upstream = log.upstream.map(|i| &gateway.upstreams[i]);
        let target = upstream
            .zip(log.target)
            .map_or("", |(u, t)| u.targets[t].target.configured.as_str());
        let name = route.map_or("", |r| &*r.name);
        route
            .map_or(&gateway.unrouted, |r| &r.duration)
            .observe(elapsed.as_secs_f64());
        if gateway.config.log.access_log {
            tracing::info!(
                target: "wristband::access",
                request_id = request_id.to_str().unwrap_or(""),
                peer = %conn.peer.ip(),
                method = %method,
                path = %LoggedPath(&log.path),
                route = name,
                status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                auth = log.auth,
                upstream = upstream.map_or("", |u| u.name()),
                upstream_target = target,
            );
        }
        route
            .map_or(&gateway.unrouted_requests, |r| &r.requests)
            .inc(status);
        response
    }

    /// SPEC §1, in order. Returns the upstream's response, or why not.
    async fn pipeline(
        &self,
        gateway: &Gateway,
        conn: &ConnInfo,
        req: Request<Incoming>,
        request_id: &HeaderValue,
        log: &mut RequestLog,
    ) -> Result<Response<ResponseBody>, Rejection> {
        let config = &gateway.config;
        let (mut parts, body) = req.into_parts();
        check_head(&parts, config)?;

        // Route: the normalized path is what policy sees and what is forwarded.
        // The access log keeps it; the pipeline borrows it from there.
        log.path = normalize_path(parts.uri.path()).map_err(BadRequest::Path)?;
        let path = log.path.as_str();
        // The proxy's own key set is answered here, never routed, so that no
        // route can shadow it.
        if path == JWKS_PATH {
            return jwks_response(gateway, &parts.method);
        }
        let host = client_host(&parts);
        let index = gateway.route(host.as_ref(), path, &parts.method)?;
        let route = &config.routes[index];
        let runtime = &gateway.routes[index];
        log.route = Some(index);

        // Hop-by-hop headers go before anything looks at the request, so a
        // `Connection`-named header can never carry a credential or identity.
        let upgrade = headers::remove_hop_by_hop(&mut parts.headers);

        // Authenticate, then authorize.
        let site = Site {
            tls: conn.tls,
            host: host.as_ref(),
        };
        let authenticated = gateway
            .auth
            .authenticate(route, &runtime.auth, &parts, &site)
            .await?;
        let kind = match &authenticated {
            Authenticated::Caller { kind, .. } => Some(*kind),
            Authenticated::NotChecked | Authenticated::Anonymous => None,
        };
        let authenticated = auth::policy::authorize(route, authenticated)
            .and_then(|authenticated| {
                auth::csrf::check(route, &authenticated, &parts, &site)?;
                Ok(authenticated)
            })
            .inspect_err(|_| {
                runtime.auth.inc(kind, Outcome::Forbidden);
            })?;
        log.auth = match &authenticated {
            Authenticated::NotChecked => "public",
            Authenticated::Anonymous => "anonymous",
            Authenticated::Caller { .. } => "ok",
        };
        let identity = authenticated.identity();

        // Build the upstream request: strip, then inject (last).
        let client = headers::Client {
            ip: conn.peer.ip(),
            ip_header: &conn.peer_ip,
            tls: conn.tls,
            trusted: config
                .server
                .trusted_proxies
                .iter()
                .any(|net| net.contains(&conn.peer.ip())),
            host: host.as_ref(),
            request_id,
        };
        let upstream = &gateway.upstreams[route.upstream];
        headers::build_upstream_headers(
            &mut parts.headers,
            &gateway.identity,
            &gateway.auth,
            config.server.headers_with_underscores,
            &client,
            identity,
            upstream.name(),
        )
        // Fail closed: never forward an identity without the assertion a
        // backend may depend on.
        .map_err(|e| Rejection::Unavailable(e.to_string()))?;
        headers::set_host(
            &mut parts.headers,
            upstream.config.preserve_host,
            host.as_ref(),
        );
        let client_upgrade = upgrade::prepare(&mut parts, upgrade);
        let path_and_query = upstream_path(&parts, path)?;

        // Forward.
        log.upstream = Some(route.upstream);
        let user = identity.map(Identity::sub);
        let mut request = Request::new(upstream::body(body));
        *request.method_mut() = parts.method;
        *request.uri_mut() = Uri::from(path_and_query);
        *request.headers_mut() = parts.headers;
        let (mut response, target) = upstream.forward(request, user).await?;
        log.target = Some(target);

        upgrade::finish(&mut response, client_upgrade, &runtime.name)?;
        Ok(response.map(Either::Left))
    }
}

/// `GET`/`HEAD` of [`JWKS_PATH`] on the client listener.
fn jwks_response(
    gateway: &Gateway,
    method: &http::Method,
) -> Result<Response<ResponseBody>, Rejection> {
    if method != http::Method::GET && method != http::Method::HEAD {
        return Err(Rejection::MethodNotAllowed {
            allow: HeaderValue::from_static("GET, HEAD"),
        });
    }
    let mut response = Response::new(Either::Right(Full::new(gateway.jwks())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// What the upstream is asked for: the normalized path (guarantee 3) and
/// the query as sent. Unchanged by normalization (the common case), the
/// request's own target is reused.
fn upstream_path(parts: &Parts, path: &str) -> Result<PathAndQuery, Rejection> {
    let target = match (parts.uri.path_and_query(), parts.uri.query()) {
        (Some(pq), _) if pq.path() == path => return Ok(pq.clone()),
        (_, Some(query)) => PathAndQuery::try_from(format!("{path}?{query}")),
        (_, None) => PathAndQuery::try_from(path),
    };
    target.map_err(|_| Rejection::BadRequest(BadRequest::Target))
}

/// The Host the client asked for: the authority of an absolute-form target
/// or HTTP/2 `:authority` first (RFC 9112 §3.2.2), else the Host header.
fn client_host(parts: &Parts) -> Option<HeaderValue> {
    if let Some(authority) = parts.uri.authority() {
        return HeaderValue::from_str(authority.as_str()).ok();
    }
    parts.headers.get(HOST).cloned()
}

/// `server.max_header_bytes` (431), `headers_with_underscores = "reject"`,
/// and the Host rules of RFC 9112 §3.2: an HTTP/1.1 request needs exactly
/// one Host (unless its target is absolute), since two proxies that read
/// different Hosts would route one request two ways.
fn check_head(parts: &Parts, config: &Config) -> Result<(), Rejection> {
    let hosts = parts.headers.get_all(HOST).iter().count();
    let host_required = parts.version == Version::HTTP_11 && parts.uri.authority().is_none();
    if hosts > 1 || (host_required && hosts == 0) {
        return Err(Rejection::BadRequest(BadRequest::Host));
    }
    let size: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > config.server.max_header_bytes {
        return Err(Rejection::HeadersTooLarge);
    }
    if config.server.headers_with_underscores == UnderscoreHeaders::Reject
        && headers::has_underscore_header(&parts.headers)
    {
        return Err(Rejection::BadRequest(BadRequest::UnderscoreHeader));
    }
    Ok(())
}
