//! Log output: JSON lines (the default, for collectors) or human-readable.
//!
//! The access log is an ordinary event with target `wristband::access`, so it
//! can be filtered like anything else (`log.level = "info,wristband::access=off"`).

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (tests start
/// several proxies in one process): later calls are no-ops.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
