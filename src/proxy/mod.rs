//! The request pipeline (SPEC §1), top to bottom in [`Proxy::pipeline`]:
//! route ([`crate::routing`]), authenticate ([`crate::auth`]), authorize
//! ([`crate::auth::policy`]), build the upstream request
//! ([`upstream_request`]: strip, then inject), forward
//! ([`crate::upstream`]). A forward-auth question (SPEC §8) runs the same
//! stages on the request the edge describes ([`forward_auth`]) and ends by
//! answering with the identity instead of forwarding. Every rejection is a
//! [`Rejection`], turned into a response in one place; what authentication
//! concluded is counted once, here, for the metric and the access log alike.

pub mod forward_auth;
pub mod upgrade;
pub mod upstream_request;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::client_body::ClientBody;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONNECTION, HOST, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Version};
use http_body_util::{Either, Full};

use crate::auth::counters::AuthRecord;
use crate::auth::redirect::{Site, is_navigational};
use crate::auth::{self, Authenticated};
use crate::config::{Config, UnderscoreHeaders};
use crate::error::{BadRequest, Rejection, Side};
use crate::gateway::{Gateway, JWKS_PATH};
use crate::headers;
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
    pub async fn handle(
        &self,
        conn: &ConnInfo,
        req: Request<ClientBody>,
    ) -> Response<ResponseBody> {
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
        // Not boxed here: the listener boxes the whole service future, this
        // one inside it, once per request (hyper keeps a connection's service
        // future slot for the connection's life).
        let result = self
            .pipeline(&gateway, conn, req, &request_id, &mut log)
            .await;
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
        // Last, so the id moves into the response instead of being cloned.
        response
            .headers_mut()
            .insert(&headers::X_REQUEST_ID, request_id);
        response
    }

    /// SPEC §1, in order. Returns the upstream's response, or why not;
    /// for a forward-auth question (SPEC §8), the answer to the edge.
    async fn pipeline(
        &self,
        gateway: &Gateway,
        conn: &ConnInfo,
        req: Request<ClientBody>,
        request_id: &HeaderValue,
        log: &mut RequestLog,
    ) -> Result<Response<ResponseBody>, Rejection> {
        let config = &gateway.config;
        let (parts, body) = req.into_parts();
        check_head(&parts, config)?;

        // The normalized path is what policy sees and what is forwarded.
        // The access log keeps it; the pipeline borrows it from there.
        log.path = normalize_path(parts.uri.path()).map_err(BadRequest::Path)?;
        // The proxy's own endpoints are answered here, never routed, so
        // that no route can shadow them.
        if log.path == JWKS_PATH {
            return jwks_response(gateway, &parts.method);
        }
        let asked = match &config.forward_auth {
            Some(fa) => forward_auth::asked(&fa.path, parts.uri.path(), &log.path)?,
            None => None,
        };
        if let Some(below) = asked {
            return answer_edge(gateway, conn, parts, below.as_deref(), log).await;
        }
        let host = client_host(&parts);
        let trusted = trusted(config, conn);
        // The site the browser sees is https when the connection is TLS,
        // or a trusted proxy in front terminated it and says so (SPEC §3
        // `trusted_proxies`): for the Origin checks and the redirects.
        let site = Site {
            tls: conn.tls
                || (trusted && headers::forwarded_https(&parts.headers) == Ok(Some(true))),
            host: host.as_ref(),
        };
        // The login flow's own endpoints, ahead of routing like the key set.
        if let Some(login) = &gateway.login
            && let Some(endpoint) = login.endpoint(&log.path)
        {
            return login_answer(login, endpoint, &parts, &site).await;
        }
        let inbound = Inbound::new(parts);
        let (index, authenticated) = admit(
            gateway,
            &inbound,
            &log.path,
            &site,
            LastStep::Forward,
            &mut log.route,
        )
        .await?;
        log.auth = authenticated.record();
        let route = &config.routes[index];
        let runtime = &gateway.routes[index];
        let upstream_index = route.upstream.ok_or(Rejection::NoRoute)?;

        // Last: build the upstream request (strip, then inject), forward.
        let upstream = &gateway.upstreams[upstream_index];
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
        let outbound = upstream_request::build(
            inbound,
            &log.path,
            pool::body(body),
            &client,
            &rules,
            identity,
        )?;
        log.upstream = Some(upstream_index);
        let (mut response, target) = upstream
            .forward(outbound.request, identity.map(Arc::as_ref))
            .await?;
        log.target = Some(target);

        upgrade::finish(&mut response, outbound.upgrade, &runtime.name)?;
        Ok(response.map(Either::Left))
    }
}

/// What the pipeline ends with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LastStep {
    /// Build the upstream request and forward it.
    Forward,
    /// Answer the edge with the identity (SPEC §8).
    Answer,
}

/// Route, then authenticate and authorize on the request without its
/// hop-by-hop headers: the stages a proxied request and a forward-auth
/// question share. `route` learns the route as soon as there is one, for
/// the metrics of a refusal.
async fn admit(
    gateway: &Gateway,
    inbound: &Inbound,
    path: &str,
    site: &Site<'_>,
    last: LastStep,
    route: &mut Option<usize>,
) -> Result<(usize, Authenticated), Rejection> {
    let parts = inbound.parts();
    let index = gateway.route(site.host, path, &parts.method)?;
    // A route only the edge proxies (SPEC §8) is no route for a request
    // to forward: 404 before any credential is looked at.
    if last == LastStep::Forward && gateway.config.routes[index].upstream.is_none() {
        return Err(Rejection::NoRoute);
    }
    *route = Some(index);
    let config = &gateway.config.routes[index];
    let authenticated = gateway.auth.authenticate(config, parts, site).await?;
    let authenticated = auth::policy::authorize(config, authenticated)?;
    auth::csrf::check(config, &authenticated, parts, site)?;
    Ok((index, authenticated))
}

/// SPEC §8: the pipeline for the request the edge describes, whose last
/// step answers with the identity headers (and assertion) instead of
/// forwarding: 200 without a body, or the refusal a proxied request would
/// get (a login redirect as `X-Auth-Login`).
async fn answer_edge(
    gateway: &Gateway,
    conn: &ConnInfo,
    call: Parts,
    below: Option<&str>,
    log: &mut RequestLog,
) -> Result<Response<ResponseBody>, Rejection> {
    // Anyone else could describe any request, and learn any identity
    // headers for a credential they hold.
    if !trusted(&gateway.config, conn) {
        return Err(Rejection::UntrustedPeer);
    }
    let asked = match below {
        Some(rest) => forward_auth::Asked::PathPrefix(rest),
        None => forward_auth::Asked::Headers,
    };
    let original = forward_auth::original(call, conn.tls, asked)?;
    log.path = normalize_path(original.parts.uri.path()).map_err(BadRequest::Path)?;
    let host = original.host;
    let site = Site {
        tls: original.tls,
        host: Some(&host),
    };
    let inbound = Inbound::new(original.parts);
    let (index, authenticated) = match admit(
        gateway,
        &inbound,
        &log.path,
        &site,
        LastStep::Answer,
        &mut log.route,
    )
    .await
    {
        Ok(admitted) => admitted,
        Err(rejection) => return Err(forward_auth::for_the_edge(rejection)),
    };
    log.auth = authenticated.record();

    // Last: the identity, as it would have been injected upstream.
    let route = &gateway.config.routes[index];
    let audience = match route.upstream {
        Some(upstream) => gateway.upstreams[upstream].name(),
        None => route.name.as_str(),
    };
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    if let Some(identity) = authenticated.identity() {
        gateway
            .identity
            .inject(identity, audience, response.headers_mut())?;
    }
    Ok(response)
}

/// The peer is in `server.trusted_proxies`.
fn trusted(config: &Config, conn: &ConnInfo) -> bool {
    config
        .server
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&conn.peer.ip()))
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
