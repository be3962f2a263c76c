//! Active health checks: each target is probed every `interval`; it leaves
//! rotation after `unhealthy_after` failures in a row and returns after
//! `healthy_after` successes in a row. Without `[upstreams.health_check]`
//! only passive ejection applies (see `upstream.rs`).

use std::sync::Weak;
use std::sync::atomic::Ordering;

use super::Upstream;

/// Starts one checker per target, so a slow target never delays the verdict
/// on the others. Each holds only a weak reference and stops by itself once a
/// reload has replaced the upstream.
pub fn spawn(upstream: &std::sync::Arc<Upstream>) {
    let Some(check) = upstream.config.health_check.clone() else {
        return;
    };
    for index in 0..upstream.targets.len() {
        let weak: Weak<Upstream> = std::sync::Arc::downgrade(upstream);
        let check = check.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(check.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(upstream) = weak.upgrade() else {
                    return;
                };
                let state = &upstream.targets[index];
                let ok = upstream.probe(state, &check.path, check.interval).await;
                record(upstream.name(), state, ok, &check);
            }
        });
    }
}

fn record(
    upstream: &str,
    state: &super::TargetState,
    ok: bool,
    check: &crate::config::HealthCheck,
) {
    if ok {
        state.consecutive_fail.store(0, Ordering::Relaxed);
        let n = state.consecutive_ok.fetch_add(1, Ordering::Relaxed) + 1;
        if !state.is_healthy() && n >= check.healthy_after {
            tracing::info!(upstream, target = %state.target.configured, "target healthy again");
            state.set_healthy(true);
        }
    } else {
        state.consecutive_ok.store(0, Ordering::Relaxed);
        let n = state.consecutive_fail.fetch_add(1, Ordering::Relaxed) + 1;
        if state.is_healthy() && n >= check.unhealthy_after {
            tracing::warn!(upstream, target = %state.target.configured,
                failures = n, "target failed its health check; ejected");
            state.set_healthy(false);
        }
    }
}
