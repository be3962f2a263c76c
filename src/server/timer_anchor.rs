//! Keeps tokio's timer from waking its own driver on every request.
//!
//! When a timer is registered whose deadline is earlier than the one the
//! driver last computed as its next wake-up, tokio unparks the driver: an
//! 8-byte `write` to its eventfd, whether the thread is parked or not. Each
//! request arms timers (hyper's `header_read_timeout`, the upstream's
//! `response_timeout`), and their deadlines are often the earliest: the
//! other pending timers are the idle checks, up to `idle_timeout / 4` away
//! (and in step, for connections opened together). So most requests paid a
//! syscall for nothing (issue 16: ~1 per request under wrk, every one from
//! hyper's header timer, found with gdb on `mio::Waker::wake`).
//!
//! A timer that always fires within [`PERIOD`] keeps the driver's next
//! wake-up that close, so no timer set later than that unparks it. Costs
//! one timer per runtime every [`PERIOD`].

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
