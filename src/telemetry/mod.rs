//! Logs and metrics: what operators see. Neither ever carries a token, a
//! cookie, a session id or a secret (guarantee 7).

pub mod logging;
pub mod metrics;

pub use metrics::Metrics;
