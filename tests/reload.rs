//! A reload keeps what still holds (SPEC §2 SIGHUP, §5 guarantees 5 and 6,
//! §6 `/readyz`; issue 13, item 6). Each test first breaks something for
//! real — the JWKS server stopped, a session cached from a real Redis, a
//! target that died — then reloads through `Running::reload` (what SIGHUP
//! calls; `tests/lifecycle.rs` covers the signal itself) and checks that the
//! proxy still knows what it knew: keys and their age, the verified-token
//! cache, the Redis connection and its session cache, a target's health.
//!
//! The runtime is multi-threaded where Redis is involved: the harness
//! blocks while it runs `redis-cli`, and the proxy must keep serving (and
//! receiving invalidations) meanwhile.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::client::{Reply, get, raw};
use common::upstream;
use common::{TestProxy, closed_port, metric_sample, start_proxy, upstream_toml};

/// Reads `/metrics` and returns one sample (`None` when absent).
async fn metric(px: &TestProxy, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let metrics = get(px.admin, "/metrics", &[]).await.text();
    metric_sample(&metrics, name, labels)
}

// ---------------------------------------------------------------------------
// Upstreams: pools and health state.

/// `POST /upload` with a body: never retried, so a pick of a dead target
/// shows as a 502.
async fn post(px: &TestProxy) -> Reply {
    raw(
        px.addr,
        "POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 2",
        b"hi",
    )
    .await
}

async fn target_healthy(px: &TestProxy, target: SocketAddr) -> Option<f64> {
    let target = format!("http://{target}");
    metric(
        px,
        "wristband_upstream_healthy",
        &[("upstream", "app"), ("target", &target)],
    )
    .await
}

const CATCH_ALL: &str =
    "[[routes]]\nname = \"all\"\npath = \"/\"\nupstream = \"app\"\nauth = \"public\"\n";

#[tokio::test]
async fn sighup_keeps_a_target_that_failed_its_health_checks_out_of_rotation() {
    let up = upstream::echo().await;
    let dead = closed_port();
    let health = "[upstreams.health_check]\npath = \"/healthz\"\ninterval = \"1s\"\nunhealthy_after = 2\nhealthy_after = 2";
    let config = upstream_toml(&[dead, up.addr], health, CATCH_ALL);
    let px = start_proxy(&config).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while target_healthy(&px, dead).await != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "the dead target never marked unhealthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    px.reload(&config);
    assert_eq!(
        target_healthy(&px, dead).await,
        Some(0.0),
        "the dead target counts as healthy again after the reload"
    );
    for _ in 0..4 {
        let reply = post(&px).await;
        assert_eq!(
            reply.status,
            200,
            "sent to the dead target: {}",
            reply.text()
        );
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn sighup_keeps_a_refused_target_passively_ejected() {
    let up = upstream::echo().await;
    let dead = closed_port();
    let config = upstream_toml(&[dead, up.addr], "retries = 1", CATCH_ALL);
    let px = start_proxy(&config).await;
    // Round robin starts at the dead target: refused, ejected, retried.
    assert_eq!(get(px.addr, "/x", &[]).await.status, 200);
    assert_eq!(target_healthy(&px, dead).await, Some(0.0), "ejected");

    px.reload(&config);
    assert_eq!(
        target_healthy(&px, dead).await,
        Some(0.0),
        "the ejection was forgotten by the reload"
    );
    for _ in 0..4 {
        let reply = post(&px).await;
        assert_eq!(
            reply.status,
            200,
            "sent to the dead target: {}",
            reply.text()
        );
    }
}
