//! Keeps tokio's timer from waking its own driver on every request.
//!
//! When a timer is registered whose deadline is earlier than the one the
//! driver last computed as its next wake-up, tokio unparks the driver: an
//! 8-byte `write` to its eventfd, whether the thread is parked or not.
//! Issue 16 found ~0.5 such writes per request under wrk, nearly all from
//! hyper's per-request header timer (gdb on `mio::Waker::wake`); that
//! timer is now off (`idle.rs` bounds heads), and what remains per request
//! is the upstream's `response_timeout` and, on session routes, the
//! store's `command_timeout` (250 ms), shorter than any connection's idle
//! tick. A timer that always fires within [`PERIOD`] keeps the driver's
//! next wake-up that close, so no deadline set later than that unparks it.
//! Costs one timer per runtime every [`PERIOD`] (an idle process wakes 5
//! times a second). Measured only together with the header-timer change.

use std::time::Duration;

use tokio::sync::watch;

/// Shorter than any per-request deadline wristband sets by default (the
/// store's 250 ms command timeout is the shortest).
pub const PERIOD: Duration = Duration::from_millis(200);

/// Ticks until the drain starts.
pub async fn run(mut drain: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = drain.changed() => return,
        }
    }
}
