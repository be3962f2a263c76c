//! Forward (SPEC §1, the last stage): an upstream, its targets, their
//! health (`health.rs`), a connection pool per target (`pool.rs`), the
//! balancer (`balance.rs`), and forwarding one request with timeouts and
//! retries.
//!
//! The pool has no request timeout of its own; `response_timeout` is set
//! here. Retries happen only for idempotent methods
//! without a body and only when the connection could not be made, so a
//! request is never sent twice to an upstream that may have acted on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response, Version};
use http_body_util::{Either, Empty};
use hyper::body::Body;
use prometheus_client::metrics::gauge::Gauge;

pub mod affinity;
pub mod balance;
pub mod health;
pub mod pool;

use crate::boxed::boxed;
use crate::config::{Balance, Target, UpstreamConfig};
use crate::identity::Identity;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{TargetLabels, UpstreamLabel};
use balance::{Balancer, Candidate};
use pool::{Pool, PooledBody, SendError, UpstreamBody};

/// Why a forward gave no response: 504 when it ran out of time, else 502.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("{target}: connect timed out after {timeout:?}")]
    ConnectTimeout { target: String, timeout: Duration },
    #[error("{target}: connect failed")]
    Connect {
        target: String,
        #[source]
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Sent, or partly sent, and failed: never retried.
    #[error("{target}: request failed")]
    Request {
        target: String,
        #[source]
        error: hyper::Error,
    },
    #[error("{target}: no response head within {timeout:?}")]
    ResponseTimeout { target: String, timeout: Duration },
    #[error("no target available")]
    NoTarget,
    /// An upstream may not switch protocols nobody asked for.
    #[error("upstream answered 101 to a request without Upgrade")]
    UnaskedUpgrade,
}

impl ForwardError {
    /// 504 rather than 502.
    pub fn timed_out(&self) -> bool {
        matches!(
            self,
            ForwardError::ConnectTimeout { .. } | ForwardError::ResponseTimeout { .. }
        )
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
        let connector = pool::connector(config.connect_timeout, upstream_tls());
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
    /// target when that is safe. `identity` picks the target for
    /// `balance = "user_hash"`.
    pub async fn forward(
        &self,
        request: Request<UpstreamBody>,
        identity: Option<&Identity>,
    ) -> Result<(Response<PooledBody>, usize), ForwardError> {
        // Read only when it counts: `sub` is a lookup among the claims.
        let user = match self.config.balance {
            Balance::UserHash => identity.map(Identity::sub),
            _ => None,
        };
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
                    let target = state.target.configured.clone();
                    if is_timeout(&*error) {
                        return Err(ForwardError::ConnectTimeout {
                            target,
                            timeout: self.config.connect_timeout,
                        });
                    }
                    state.eject(self.name());
                    last_error = Some(ForwardError::Connect { target, error });
                    tried.push(index);
                    request = Some(*back);
                }
                Ok(Err(SendError::Request(error))) => {
                    return Err(ForwardError::Request {
                        target: state.target.configured.clone(),
                        error,
                    });
                }
                Err(_elapsed) => {
                    return Err(ForwardError::ResponseTimeout {
                        target: state.target.configured.clone(),
                        timeout: self.config.response_timeout,
                    });
                }
            }
        }
        Err(last_error.unwrap_or(ForwardError::NoTarget))
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

/// The TLS client config of every upstream: the system roots.
fn upstream_tls() -> rustls::ClientConfig {
    match crate::tls::client::client_config(None) {
        Ok(tls) => tls,
        // Only an extra CA file can fail, and there is none here.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    }
}

/// A connect that ran out of `connect_timeout`: hyper-util's connector
/// reports it as an `io::Error` of kind `TimedOut` in the error's chain.
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = e.source();
    }
    false
}
