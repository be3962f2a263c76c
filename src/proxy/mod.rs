//! The request pipeline (SPEC §1), top to bottom in [`Proxy::pipeline`]:
//! route, authenticate, authorize, build the upstream request (strip, then
//! inject), forward. Each stage lives in the module named after it; every
//! rejection is a [`Rejection`] turned into a response in one place.

pub mod balance;
pub mod headers;
pub mod health;
pub mod upgrade;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::auth::{self, Authenticated, Authenticator};
use crate::config::{Config, UnderscoreHeaders};
use crate::error::{BadRequest, Rejection, Side};
use crate::identity::IdentityHeaders;
use crate::routing::{Router, normalize_path};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{RouteLabel, RouteStatus};
use upstream::Upstream;

/// What a client receives: the upstream's body streamed through, or one the
/// proxy made itself.
pub type ResponseBody = Either<Incoming, Full<Bytes>>;

/// Everything derived from one version of the config. Swapped whole on
/// SIGHUP; requests in flight keep the version they started with.
pub struct Gateway {
    pub config: Arc<Config>,
    router: Router,
    pub upstreams: Vec<Arc<Upstream>>,
    identity: Arc<IdentityHeaders>,
    pub auth: Authenticator,
    /// Per route: the `Allow` value for 405s (empty `methods`: no 405).
    allow: Vec<Option<HeaderValue>>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Gateway {
    /// Builds the runtime state and starts the health checkers. Must run
    /// inside the tokio runtime.
    pub fn new(config: Config, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<Gateway>> {
        let tls = match &config.server.tls {
            Some(tls) => Some(crate::server::tls::acceptor(tls)?),
            None => None,
        };
        let upstreams: Vec<Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|u| Upstream::new(u, metrics, config.server.idle_timeout))
            .collect();
        for u in &upstreams {
            health::spawn(u);
        }
        let allow = config
            .routes
            .iter()
            .map(|r| {
                if r.methods.is_empty() {
                    return None;
                }
                let list: Vec<&str> = r.methods.iter().map(|m| m.as_str()).collect();
                HeaderValue::from_str(&list.join(", ")).ok()
            })
            .collect();
        Ok(Arc::new(Gateway {
            auth: Authenticator::new(&config, metrics)?,
            router: Router::new(&config.routes),
            identity: IdentityHeaders::new(&config.identity),
            upstreams,
            allow,
            tls,
            config: Arc::new(config),
        }))
    }
}

/// The client connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
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
    route: Option<String>,
    upstream: Option<String>,
    target: Option<String>,
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
    pub async fn handle(&self, conn: ConnInfo, req: Request<Incoming>) -> Response<ResponseBody> {
        let started = Instant::now();
        let gateway = self.gateway.load_full();
        let request_id = headers::request_id(req.headers());
        let method = req.method().clone();
        let mut log = RequestLog {
            auth: "none",
            ..RequestLog::default()
        };
        self.metrics.in_flight.inc();
        let result = self
            .pipeline(&gateway, conn, req, &request_id, &mut log)
            .await;
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
        let route = log.route.as_deref().unwrap_or("");
        self.metrics
            .requests
            .get_or_create(&RouteStatus {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.metrics
            .request_duration
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        if gateway.config.log.access_log {
            tracing::info!(
                target: "wristband::access",
                request_id = request_id.to_str().unwrap_or(""),
                peer = %conn.peer.ip(),
                method = %method,
                route,
                status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                auth = log.auth,
                upstream = log.upstream.as_deref().unwrap_or(""),
                upstream_target = log.target.as_deref().unwrap_or(""),
            );
        }
        response
    }

    /// SPEC §1, in order. Returns the upstream's response, or why not.
    async fn pipeline(
        &self,
        gateway: &Gateway,
        conn: ConnInfo,
        req: Request<Incoming>,
        request_id: &HeaderValue,
        log: &mut RequestLog,
    ) -> Result<Response<ResponseBody>, Rejection> {
        let config = &gateway.config;
        let (mut parts, body) = req.into_parts();
        check_head(&parts, config)?;

        // Route: the normalized path is what policy sees and what is forwarded.
        let path = normalize_path(parts.uri.path()).map_err(BadRequest::Path)?;
        let host = client_host(&parts);
        let host_text = host.as_ref().and_then(|h| h.to_str().ok());
        let index = gateway
            .router
            .find(host_text, &path)
            .ok_or(Rejection::NoRoute)?;
        let route = &config.routes[index];
        log.route = Some(route.name.clone());
        if let Some(allow) = &gateway.allow[index]
            && !route.methods.contains(&parts.method)
        {
            return Err(Rejection::MethodNotAllowed {
                allow: allow.clone(),
            });
        }

        // Hop-by-hop headers go before anything looks at the request, so a
        // `Connection`-named header can never carry a credential or identity.
        let upgrade = headers::remove_hop_by_hop(&mut parts.headers);

        // Authenticate, then authorize.
        let authenticated = gateway.auth.authenticate(route, &parts).await?;
        let authenticated = auth::policy::authorize(route, authenticated)?;
        log.auth = match &authenticated {
            Authenticated::NotChecked => "public",
            Authenticated::Anonymous => "anonymous",
            Authenticated::Caller(_) => "ok",
        };
        let identity = authenticated.identity();

        // Build the upstream request: strip, then inject (last).
        let client = headers::Client {
            ip: conn.peer.ip(),
            tls: conn.tls,
            trusted: config
                .server
                .trusted_proxies
                .iter()
                .any(|net| net.contains(&conn.peer.ip())),
            host: host.as_ref(),
            request_id,
        };
        headers::build_upstream_headers(
            &mut parts.headers,
            &gateway.identity,
            &gateway.auth,
            config.server.headers_with_underscores,
            &client,
            identity,
        );
        let upstream = &gateway.upstreams[route.upstream];
        if upstream.config.preserve_host {
            if let Some(host) = &host {
                parts.headers.insert(HOST, host.clone());
            }
        } else {
            parts.headers.remove(HOST);
        }
        let client_upgrade = match &upgrade {
            Some(protocol) if parts.version == Version::HTTP_11 => {
                parts.headers.insert(
                    http::header::CONNECTION,
                    HeaderValue::from_static("upgrade"),
                );
                parts
                    .headers
                    .insert(http::header::UPGRADE, protocol.clone());
                parts.extensions.remove::<OnUpgrade>()
            }
            _ => None,
        };
        let path_and_query = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };

        // Forward.
        log.upstream = Some(upstream.name().to_owned());
        let user = identity.map(|i| i.sub.as_str());
        let (mut response, target) = upstream
            .forward(&parts.method, user, Some(body), |target, body| {
                let uri = Uri::builder()
                    .scheme(target.scheme.clone())
                    .authority(target.authority.clone())
                    .path_and_query(path_and_query.as_str())
                    .build()
                    .unwrap_or_default();
                let mut request = Request::new(body);
                *request.method_mut() = parts.method.clone();
                *request.uri_mut() = uri;
                *request.headers_mut() = parts.headers.clone();
                request
            })
            .await?;
        log.target = Some(target.target.configured.clone());

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                // An upstream may not switch protocols nobody asked for.
                return Err(Rejection::BadGateway(
                    "upstream answered 101 to a request without Upgrade".into(),
                ));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            upgrade::spawn_tunnel(client_upgrade, upstream_upgrade, route.name.clone());
        } else {
            headers::remove_hop_by_hop(response.headers_mut());
        }
        Ok(response.map(Either::Left))
    }
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
