//! An upstream: its targets, their health, a connection pool per target
//! (`pool.rs`), and forwarding one request with timeouts and retries.
//!
//! The pool has no request timeout of its own; `response_timeout` is set
//! here. Retries happen only for idempotent methods
//! without a body and only when the connection could not be made, so a
//! request is never sent twice to an upstream that may have acted on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{Either, Empty};
use hyper::body::{Body, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use prometheus_client::metrics::gauge::Gauge;

use super::balance::{Balancer, Candidate};
use super::pool::{Pool, PooledBody, SendError};
use crate::boxed::boxed;
use crate::config::{Target, UpstreamConfig};
use crate::error::Rejection;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{TargetLabels, UpstreamLabel};

/// What the upstream receives as a body: the client's, streamed, or nothing
/// (health checks, and retried requests).
pub type UpstreamBody = Either<Incoming, Empty<Bytes>>;

/// The client's body as the upstream gets it: none at all when it is empty
/// (so that a retry may resend the request).
pub fn body(incoming: Incoming) -> UpstreamBody {
    if incoming.is_end_stream() {
        Either::Right(Empty::new())
    } else {
        Either::Left(incoming)
    }
}

/// How long a target that refused a connection gets no traffic when no
/// active health check would readmit it.
const PASSIVE_EJECTION: Duration = Duration::from_secs(5);

/// One configured target and what the proxy knows about it.
pub struct TargetState {
    pub target: Target,
    /// Active health check verdict (true until proven otherwise).
    healthy: AtomicBool,
    /// Passive ejection: no traffic before this instant (ms since `epoch`).
    ejected_until_ms: AtomicU64,
    in_flight: AtomicUsize,
    pub(super) consecutive_ok: AtomicU32,
    pub(super) consecutive_fail: AtomicU32,
    gauge: Gauge,
    epoch: Instant,
    pool: Arc<Pool>,
}

impl TargetState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn ejected(&self) -> bool {
        // 0 (never ejected, or since readmitted) needs no clock: that is
        // every pick of a healthy target, twice per request.
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && until > self.now_ms()
    }

    fn eject(&self, upstream: &str) {
        let until = self.now_ms() + PASSIVE_EJECTION.as_millis() as u64;
        let was = self.ejected_until_ms.swap(until, Ordering::Relaxed);
        if was <= self.now_ms() {
            tracing::warn!(upstream, target = %self.target.configured,
                "target refused the connection; ejected for {:?}", PASSIVE_EJECTION);
        }
        self.gauge.set(0);
    }

    fn connected(&self) {
        if self.ejected_until_ms.swap(0, Ordering::Relaxed) != 0 && self.is_healthy() {
            self.gauge.set(1);
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(super) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        self.gauge.set(i64::from(healthy && !self.ejected()));
    }
}

impl Candidate for TargetState {
    fn available(&self) -> bool {
        self.is_healthy() && !self.ejected()
    }
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    fn key(&self) -> &str {
        &self.target.configured
    }
}

pub struct Upstream {
    pub config: UpstreamConfig,
    pub targets: Vec<TargetState>,
    balancer: Balancer,
    duration: prometheus_client::metrics::histogram::Histogram,
}

/// Keeps a target's in-flight count right however the request ends.
struct InFlight<'a>(&'a AtomicUsize);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, metrics: &Metrics, idle_timeout: Duration) -> Arc<Self> {
        let epoch = Instant::now();
        let connector = https_connector(config.connect_timeout);
        let targets = config
            .targets
            .iter()
            .map(|target| {
                let gauge = metrics
                    .upstream_healthy
                    .get_or_create(&TargetLabels {
                        upstream: config.name.clone(),
                        target: target.configured.clone(),
                    })
                    .clone();
                gauge.set(1);
                TargetState {
                    target: target.clone(),
                    healthy: AtomicBool::new(true),
                    ejected_until_ms: AtomicU64::new(0),
                    in_flight: AtomicUsize::new(0),
                    consecutive_ok: AtomicU32::new(0),
                    consecutive_fail: AtomicU32::new(0),
                    gauge,
                    epoch,
                    pool: Pool::new(target, connector.clone(), idle_timeout),
                }
            })
            .collect();
        let duration = metrics
            .upstream_duration
            .get_or_create(&UpstreamLabel {
                upstream: config.name.clone(),
            })
            .clone();
        Arc::new(Upstream {
            config: config.clone(),
            targets,
            balancer: Balancer::default(),
            duration,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Sends the request (origin-form URI) to a target. A request that no
    /// connection could carry comes back unsent and is retried on another
    /// target when that is safe.
    pub async fn forward(
        &self,
        request: Request<UpstreamBody>,
        user: Option<&str>,
    ) -> Result<(Response<PooledBody>, usize), Rejection> {
        let retryable = request.method().is_idempotent() && request.body().is_end_stream();
        let attempts = if retryable {
            1 + self.config.retries
        } else {
            1
        };
        let mut request = Some(request);
        // Both only on the retry path: the common request allocates neither.
        let mut tried: Vec<usize> = Vec::new();
        let mut last_error = None;
        for _ in 0..attempts {
            let Some(mut unsent) = request.take() else {
                break;
            };
            let Some(index) = self
                .balancer
                .pick(self.config.balance, &self.targets, user, &tried)
            else {
                break;
            };
            let state = &self.targets[index];
            *unsent.version_mut() = Version::HTTP_11;
            state.in_flight.fetch_add(1, Ordering::Relaxed);
            let _guard = InFlight(&state.in_flight);
            let started = Instant::now();
            let outcome = tokio::time::timeout(
                self.config.response_timeout,
                boxed(|| state.pool.send(unsent)),
            )
            .await;
            self.duration.observe(started.elapsed().as_secs_f64());
            match outcome {
                Ok(Ok(response)) => {
                    state.connected();
                    return Ok((response, index));
                }
                Ok(Err(SendError::Connect {
                    error,
                    request: back,
                })) => {
                    if is_timeout(&*error) {
                        return Err(Rejection::GatewayTimeout(format!(
                            "{}: connect timed out after {:?}",
                            state.target.configured, self.config.connect_timeout
                        )));
                    }
                    state.eject(self.name());
                    last_error = Some(Rejection::BadGateway(format!(
                        "{}: connect failed: {}",
                        state.target.configured,
                        crate::error::chain(&*error)
                    )));
                    tried.push(index);
                    request = Some(*back);
                }
                Ok(Err(error)) => {
                    return Err(Rejection::BadGateway(format!(
                        "{}: {error}",
                        state.target.configured,
                    )));
                }
                Err(_elapsed) => {
                    return Err(Rejection::GatewayTimeout(format!(
                        "{}: no response head within {:?}",
                        state.target.configured, self.config.response_timeout
                    )));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Rejection::BadGateway("no target available".into())))
    }

    /// A bare GET for the health checker.
    pub(super) async fn probe(&self, state: &TargetState, path: &str, timeout: Duration) -> bool {
        let Ok(request) = Request::get(path)
            .header(http::header::USER_AGENT, "wristband-health-check")
            .body(Either::Right(Empty::new()))
        else {
            return false;
        };
        match tokio::time::timeout(timeout, state.pool.send(request)).await {
            Ok(Ok(response)) => {
                let ok = response.status().is_success() || response.status().is_redirection();
                // Drain so the connection goes back to the pool.
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                ok
            }
            Ok(Err(_)) | Err(_) => false,
        }
    }
}

pub(super) fn https_connector(connect_timeout: Duration) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let tls = match crate::client_tls::client_config(None) {
        Ok(tls) => tls,
        // Only an extra CA file can fail, and there is none here.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if e.to_string().contains("timed out") {
            return true;
        }
        source = e.source();
    }
    false
}
