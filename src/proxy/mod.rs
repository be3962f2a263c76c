//! The request pipeline (SPEC §1), top to bottom in [`Proxy::pipeline`]:
//! route ([`crate::routing`]), authenticate ([`crate::auth`]), authorize
//! ([`crate::auth::policy`]), build the upstream request
//! ([`upstream_request`]: strip, then inject), forward
//! ([`crate::upstream`]). Every rejection is a [`Rejection`], turned into a
//! response in one place; what authentication concluded is counted once,
//! here, for the metric and the access log alike.

pub mod upgrade;
pub mod upstream_request;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONNECTION, HOST, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::auth;
use crate::auth::counters::AuthRecord;
use crate::auth::redirect::{Site, is_navigational};
use crate::boxed::boxed;
use crate::config::{Config, UnderscoreHeaders};
use crate::error::{BadRequest, Rejection, Side};
use crate::gateway::{Gateway, JWKS_PATH};
use crate::headers;
use crate::identity::Identity;
use crate::login::{Endpoint, Login};
use crate::routing::normalize_path;
use crate::telemetry::Metrics;
use crate::telemetry::logging::{LoggedPath, chain};
use crate::upstream::pool::{self, PooledBody};
use upstream_request::{Client, Inbound, Rules};

/// What a client receives: the upstream's body streamed through, or one the
/// proxy made itself.
pub type ResponseBody = Either<PooledBody, Full<Bytes>>;

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
    /// What authentication concluded when it let the request through; a
    /// refusal says it in its [`Rejection`].
    auth: AuthRecord,
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
        // An HTTP/1 request with a body: a rejection may leave it unread,
        // and hyper then closes the connection after the answer, which the
        // answer must announce (RFC 9112 §9.6).
        let body_left_unread =
            req.version() < Version::HTTP_2 && !http_body::Body::is_end_stream(req.body());
        let mut log = RequestLog::default();
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
                if let Some(outcome) = rejection.auth_outcome() {
                    log.auth = AuthRecord::Decided(outcome);
                }
                log_rejection(&rejection, &request_id);
                let mut response = rejection.into_response().map(Either::Right);
                if body_left_unread {
                    // Say so, or a pooling client sends its next request
                    // into the closed connection.
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                response
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
        if let (Some(route), Some(outcome)) = (route, log.auth.counted()) {
            route.auth.inc(outcome);
        }
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
                auth = log.auth.label(),
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
        let (parts, body) = req.into_parts();
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
        let trusted = config
            .server
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&conn.peer.ip()));
        let site = Site {
            tls: conn.tls || (trusted && forwarded_https(&parts.headers)),
            host: host.as_ref(),
        };
        // The login flow's own endpoints, ahead of routing like the key set.
        if let Some(login) = &gateway.login
            && let Some(endpoint) = login.endpoint(path)
        {
            return login_answer(login, endpoint, &parts, &site).await;
        }
        let index = gateway.route(host.as_ref(), path, &parts.method)?;
        let route = &config.routes[index];
        let runtime = &gateway.routes[index];
        log.route = Some(index);

        // Authenticate, then authorize, on the request without its
        // hop-by-hop headers.
        let inbound = Inbound::new(parts);
        let authenticated = gateway
            .auth
            .authenticate(route, inbound.parts(), &site)
            .await?;
        let authenticated = auth::policy::authorize(route, authenticated)?;
        auth::csrf::check(route, &authenticated, inbound.parts(), &site)?;
        log.auth = authenticated.record();

        // Build the upstream request: strip, then inject (last).
        let upstream = &gateway.upstreams[route.upstream];
        let client = Client {
            ip: conn.peer.ip(),
            ip_header: &conn.peer_ip,
            tls: conn.tls,
            trusted,
            host: host.as_ref(),
            request_id,
        };
        let rules = Rules {
            identity: &gateway.identity,
            unforwarded: &gateway.auth.unforwarded,
            underscores: config.server.headers_with_underscores,
            preserve_host: upstream.config.preserve_host,
            audience: upstream.name(),
        };
        let identity = authenticated.identity();
        let outbound =
            upstream_request::build(inbound, path, pool::body(body), &client, &rules, identity)?;

        // Forward.
        log.upstream = Some(route.upstream);
        let user = identity.map(Identity::sub);
        let (mut response, target) = upstream.forward(outbound.request, user).await?;
        log.target = Some(target);

        upgrade::finish(&mut response, outbound.upgrade, &runtime.name)?;
        Ok(response.map(Either::Left))
    }
}

/// One line per rejection, at the level of the side that caused it, with
/// every cause of the error chain.
fn log_rejection(rejection: &Rejection, request_id: &HeaderValue) {
    let request_id = request_id.to_str().unwrap_or("");
    let reason = chain(rejection);
    match rejection.side() {
        Side::Client => tracing::debug!(request_id, %reason, "rejected"),
        Side::Upstream => tracing::warn!(request_id, %reason, "upstream failure"),
        Side::Internal => tracing::error!(request_id, %reason, "unavailable"),
    }
}

/// A login endpoint's answer; a refused callback is a page for a browser
/// and JSON for anything else (SPEC §7).
async fn login_answer(
    login: &Login,
    endpoint: Endpoint,
    parts: &Parts,
    site: &Site<'_>,
) -> Result<Response<ResponseBody>, Rejection> {
    match login.answer(endpoint, parts, site).await {
        Ok(answer) => Ok(answer.map(Either::Right)),
        Err(error) => {
            let browser = is_navigational(&parts.method, &parts.headers);
            Err(Rejection::Login {
                error,
                retry: browser.then(|| login.login_path().to_owned()),
            })
        }
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

/// A trusted proxy in front terminated TLS: its `X-Forwarded-Proto` (the
/// first value, the hop nearest the client) says `https`. Then the site
/// the browser sees is https, for the Origin checks and the redirects made
/// here (SPEC §3 `trusted_proxies`).
fn forwarded_https(headers: &http::HeaderMap) -> bool {
    headers
        .get(&headers::X_FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
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
