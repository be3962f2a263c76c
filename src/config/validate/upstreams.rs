//! [[upstreams]] and their health checks.

use crate::config::diag::{self, join};
use crate::config::raw::{RawHealthCheck, RawUpstream};
use crate::config::{Balance, HealthCheck, Target, UpstreamConfig};
use std::collections::HashMap;

use super::{REQUIRED, V, earlier_use};

impl V<'_, '_> {
    pub(super) fn upstreams(
        &mut self,
        raws: Vec<Option<RawUpstream>>,
        names: &[Option<String>],
    ) -> Vec<UpstreamConfig> {
        let mut seen = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            if let Some(name) = name.as_deref()
                && let Some(first) = earlier_use(&mut seen, name, i)
            {
                self.err(
                    &join(&diag::index("upstreams", i), "name"),
                    format!("duplicate upstream name \"{name}\" (also upstreams[{first}])"),
                );
            }
        }
        let mut out = Vec::new();
        for (i, raw) in raws.into_iter().enumerate() {
            if let Some(raw) = raw {
                out.push(self.upstream(&diag::index("upstreams", i), raw));
            }
        }
        out
    }

    fn upstream(&mut self, u: &str, raw: RawUpstream) -> UpstreamConfig {
        let name = self
            .required_str(&join(u, "name"), raw.name.as_deref())
            .unwrap_or_default()
            .to_owned();
        let targets_path = join(u, "targets");
        let mut targets = Vec::new();
        match raw.targets {
            None => self.err(&targets_path, REQUIRED),
            Some(list) => {
                if list.is_empty() {
                    self.err(&targets_path, "must list at least one target");
                }
                for (i, text) in list.iter().enumerate() {
                    match parse_target(text) {
                        Ok(t) => {
                            if targets.contains(&t) {
                                self.err(
                                    &diag::index(&targets_path, i),
                                    format!("duplicate target \"{text}\""),
                                );
                            }
                            targets.push(t);
                        }
                        Err(problem) => {
                            self.err(
                                &diag::index(&targets_path, i),
                                format!("\"{text}\" {problem}"),
                            );
                        }
                    }
                }
            }
        }
        let balance = self.choice(
            &join(u, "balance"),
            raw.balance.as_deref(),
            Balance::RoundRobin,
            &[
                ("round_robin", Balance::RoundRobin),
                ("least_requests", Balance::LeastRequests),
                ("user_hash", Balance::UserHash),
            ],
        );
        let connect_timeout = self.positive_duration(
            &join(u, "connect_timeout"),
            raw.connect_timeout.as_deref(),
            UpstreamConfig::DEFAULT_CONNECT_TIMEOUT,
        );
        let response_timeout = self.positive_duration(
            &join(u, "response_timeout"),
            raw.response_timeout.as_deref(),
            UpstreamConfig::DEFAULT_RESPONSE_TIMEOUT,
        );
        let retries = self.int_in(
            &join(u, "retries"),
            raw.retries,
            UpstreamConfig::DEFAULT_RETRIES,
            0,
            Some(UpstreamConfig::MAX_RETRIES),
        );
        let health_check = raw
            .health_check
            .map(|hc| self.health_check(&join(u, "health_check"), hc));
        UpstreamConfig {
            name,
            targets,
            balance,
            preserve_host: raw.preserve_host.unwrap_or(true),
            connect_timeout,
            response_timeout,
            retries,
            health_check,
        }
    }

    fn health_check(&mut self, h: &str, raw: RawHealthCheck) -> HealthCheck {
        let path_key = join(h, "path");
        let path = self.non_empty(&path_key, raw.path, HealthCheck::DEFAULT_PATH);
        if !path.starts_with('/') {
            self.err(&path_key, format!("\"{path}\" must start with \"/\""));
        }
        let interval = self.positive_duration(
            &join(h, "interval"),
            raw.interval.as_deref(),
            HealthCheck::DEFAULT_INTERVAL,
        );
        let unhealthy_after = self.int_in(
            &join(h, "unhealthy_after"),
            raw.unhealthy_after,
            HealthCheck::DEFAULT_UNHEALTHY_AFTER,
            1,
            None,
        );
        let healthy_after = self.int_in(
            &join(h, "healthy_after"),
            raw.healthy_after,
            HealthCheck::DEFAULT_HEALTHY_AFTER,
            1,
            None,
        );
        HealthCheck {
            path,
            interval,
            unhealthy_after,
            healthy_after,
        }
    }
}

/// `http://host[:port]` or `https://host[:port]`, stored with its port.
fn parse_target(text: &str) -> Result<Target, &'static str> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| "is not a valid URL (expected e.g. \"http://127.0.0.1:3000\")")?;
    let scheme = match uri.scheme_str() {
        Some("http") => http::uri::Scheme::HTTP,
        Some("https") => http::uri::Scheme::HTTPS,
        _ => return Err("must start with http:// or https://"),
    };
    let authority = uri.authority().ok_or("has no host")?;
    if authority.as_str().contains('@') {
        return Err("must not contain user info");
    }
    if authority.host().is_empty() {
        return Err("has no host");
    }
    if uri.query().is_some() || !matches!(uri.path(), "" | "/") || text.ends_with('?') {
        return Err("must not have a path or query (only scheme, host and port)");
    }
    let port = authority
        .port_u16()
        .unwrap_or(Target::default_port(&scheme));
    let authority = format!("{}:{port}", authority.host())
        .parse::<http::uri::Authority>()
        .map_err(|_| "has an invalid host")?;
    Ok(Target {
        configured: text.to_owned(),
        scheme,
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn a_target_keeps_its_port_and_its_host_header_drops_the_default_one() {
        for (text, authority, host) in [
            ("http://app.internal", "app.internal:80", "app.internal"),
            (
                "http://app.internal:8080",
                "app.internal:8080",
                "app.internal:8080",
            ),
            (
                "https://api.example.com",
                "api.example.com:443",
                "api.example.com",
            ),
            (
                "https://api.example.com:443/",
                "api.example.com:443",
                "api.example.com",
            ),
            (
                "https://api.example.com:80",
                "api.example.com:80",
                "api.example.com:80",
            ),
            ("http://127.0.0.1:443", "127.0.0.1:443", "127.0.0.1:443"),
        ] {
            let target = parse_target(text).expect(text);
            assert_eq!(target.authority.as_str(), authority, "{text}");
            let header = target.host_header().expect(text);
            assert_eq!(header, host, "{text}");
        }
    }
}
