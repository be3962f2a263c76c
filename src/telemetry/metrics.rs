//! Prometheus metrics (SPEC §6), exposed by the admin listener.
//!
//! One `Metrics` lives for the whole process and survives config reloads, so
//! counters never reset on SIGHUP.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: Arc<str>,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub route: Arc<str>,
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub upstream: String,
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderResult {
    pub provider: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabel {
    pub cache: &'static str,
}

/// Buckets from 0.5 ms to ~16 s: proxy overhead sits at the low end,
/// slow upstreams at the high end.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16)
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub request_duration: Family<RouteLabel, Histogram>,
    pub auth: Family<AuthLabels, Counter>,
    pub upstream_duration: Family<UpstreamLabel, Histogram>,
    pub upstream_healthy: Family<TargetLabels, Gauge>,
    pub jwks_refresh: Family<ProviderResult, Counter>,
    pub jwks_age: Family<ProviderLabel, Gauge<f64, AtomicU64>>,
    pub cache_hits: Family<CacheLabel, Counter>,
    pub cache_misses: Family<CacheLabel, Counter>,
    pub store_errors: Counter,
    /// `wristband_login_total{result}` (SPEC §6, §7).
    pub login: Family<ResultLabel, Counter>,
    pub revocations: Family<KindLabel, Gauge>,
    pub connections: Gauge,
    pub in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wristband");
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        let request_duration = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head",
            request_duration.clone(),
        );
        let auth = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth",
            "Authentication outcomes by route and credential kind",
            auth.clone(),
        );
        let upstream_duration = Family::<UpstreamLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "upstream_duration_seconds",
            "Time from forwarding to the upstream's response head",
            upstream_duration.clone(),
        );
        let upstream_healthy = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "upstream_healthy",
            "1 when the target receives traffic, 0 when ejected",
            upstream_healthy.clone(),
        );
        let jwks_refresh = Family::<ProviderResult, Counter>::default();
        registry.register(
            "jwks_refresh",
            "Key set fetches by provider and result (ok, error)",
            jwks_refresh.clone(),
        );
        let jwks_age = Family::<ProviderLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "jwks_age_seconds",
            "Seconds since the provider's keys were last fetched successfully",
            jwks_age.clone(),
        );
        let cache_hits = Family::<CacheLabel, Counter>::default();
        registry.register("cache_hits", "Cache hits by cache", cache_hits.clone());
        let cache_misses = Family::<CacheLabel, Counter>::default();
        registry.register(
            "cache_misses",
            "Cache misses by cache",
            cache_misses.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Session store commands that failed or timed out",
            store_errors.clone(),
        );
        let login = Family::<ResultLabel, Counter>::default();
        registry.register(
            "login",
            "Login flow events (started, ok, failed, refreshed, refresh_failed, logout)",
            login.clone(),
        );
        let revocations = Family::<KindLabel, Gauge>::default();
        registry.register(
            "revocations",
            "Revocations held in memory, by kind (jti, sub)",
            revocations.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being processed",
            in_flight.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            auth,
            upstream_duration,
            upstream_healthy,
            jwks_refresh,
            jwks_age,
            cache_hits,
            cache_misses,
            store_errors,
            login,
            revocations,
            connections,
            in_flight,
        }
    }

    /// The Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One route's `wristband_requests_total` counters, by status, resolved
/// once like `AuthCounters`' (`auth/counters.rs`): no label hashing per
/// request. Statuses are an open set, so instead of one slot per label each
/// slot is claimed by the first status that needs it; reads are lock-free
/// (a hot route's requests on several workers share no lock).
#[derive(Debug)]
pub struct StatusCounters {
    family: Family<RouteStatus, Counter>,
    route: Arc<str>,
    slots: [std::sync::OnceLock<(u16, Counter)>; StatusCounters::SLOTS],
}

impl StatusCounters {
    /// More than a route realistically answers; a status beyond them is
    /// counted through the family.
    const SLOTS: usize = 16;

    pub fn new(family: &Family<RouteStatus, Counter>, route: Arc<str>) -> Self {
        StatusCounters {
            family: family.clone(),
            route,
            slots: Default::default(),
        }
    }

    pub fn inc(&self, status: u16) {
        for slot in &self.slots {
            // Either this status's slot, another status's, or the first
            // free one, which this status claims unless a concurrent
            // request claims it first for another (then look further).
            let (claimed, counter) = slot.get_or_init(|| (status, self.resolve(status)));
            if *claimed == status {
                counter.inc();
                return;
            }
        }
        self.resolve(status).inc();
    }

    fn resolve(&self, status: u16) -> Counter {
        let label = RouteStatus {
            route: self.route.clone(),
            status,
        };
        self.family.get_or_create(&label).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counters_count_into_the_family_past_their_capacity() {
        let metrics = Metrics::new();
        let counters = StatusCounters::new(&metrics.requests, "r".into());
        let statuses: Vec<u16> = (0..40).map(|i| 200 + i).collect();
        for _ in 0..3 {
            for &status in &statuses {
                counters.inc(status);
            }
        }
        for &status in &statuses {
            let label = RouteStatus {
                route: "r".into(),
                status,
            };
            assert_eq!(metrics.requests.get_or_create(&label).get(), 3, "{status}");
        }
        let text = metrics.encode();
        assert!(
            text.contains(r#"wristband_requests_total{route="r",status="239"} 3"#),
            "{text}"
        );
    }
}
