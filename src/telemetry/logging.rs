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

/// A normalized path as the access log writes it: segment parameters (the
/// `;...` after a segment) are left out, because servlet containers carry
/// the session id there (`/cart;jsessionid=...`) and guarantee 7 keeps ids
/// out of logs. `/a;jsessionid=X/b` is written `/a;…/b`.
pub struct LoggedPath<'a>(pub &'a str);

impl std::fmt::Display for LoggedPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut segments = self.0.split('/').peekable();
        while let Some(segment) = segments.next() {
            match segment.split_once(';') {
                Some((name, _)) => write!(f, "{name};…")?,
                None => f.write_str(segment)?,
            }
            if segments.peek().is_some() {
                f.write_str("/")?;
            }
        }
        Ok(())
    }
}

/// An error with every cause, for log lines: "connect failed: tcp connect
/// error: Connection refused".
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::LoggedPath;

    #[test]
    fn segment_parameters_never_reach_the_log() {
        for (path, logged) in [
            ("/a/c", "/a/c"),
            ("/", "/"),
            ("", ""),
            ("/cart;jsessionid=ABC123/items", "/cart;…/items"),
            ("/x;a=1;b=2", "/x;…"),
            ("/;s=1/", "/;…/"),
        ] {
            assert_eq!(LoggedPath(path).to_string(), logged, "{path}");
        }
    }
}
