//! [server], [admin] and [log].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::config::diag::{self, join};
use crate::config::raw::{RawAdmin, RawLog, RawServer};
use crate::config::{
    AdminConfig, LogConfig, LogFormat, Secret, ServerConfig, TlsConfig, UnderscoreHeaders,
};

use super::V;

impl V<'_, '_> {
    pub(super) fn server(&mut self, raw: RawServer) -> ServerConfig {
        let t = "server";
        let mut listen = Vec::new();
        match raw.listen {
            None => listen.push(ServerConfig::DEFAULT_LISTEN),
            Some(list) => {
                if list.is_empty() {
                    self.err(&join(t, "listen"), "must list at least one address");
                }
                let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
                for (i, text) in list.iter().enumerate() {
                    let path = diag::index(&join(t, "listen"), i);
                    match text.parse::<SocketAddr>() {
                        Ok(addr) => {
                            if let Some(first) = seen.get(&addr) {
                                self.err(&path, format!("duplicate of server.listen[{first}]"));
                            } else {
                                seen.insert(addr, i);
                                listen.push(addr);
                            }
                        }
                        Err(_) => self.err(
                            &path,
                            format!(
                                "invalid socket address \"{text}\" (expected e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")"
                            ),
                        ),
                    }
                }
            }
        }

        let header_read_timeout = self.positive_duration(
            &join(t, "header_read_timeout"),
            raw.header_read_timeout.as_deref(),
            ServerConfig::DEFAULT_HEADER_READ_TIMEOUT,
        );
        let idle_timeout = self.positive_duration(
            &join(t, "idle_timeout"),
            raw.idle_timeout.as_deref(),
            ServerConfig::DEFAULT_IDLE_TIMEOUT,
        );
        let max_header_bytes = self.int_in(
            &join(t, "max_header_bytes"),
            raw.max_header_bytes,
            ServerConfig::DEFAULT_MAX_HEADER_BYTES,
            ServerConfig::MIN_MAX_HEADER_BYTES,
            Some(ServerConfig::MAX_MAX_HEADER_BYTES),
        );
        let max_connections = self.int_in(
            &join(t, "max_connections"),
            raw.max_connections,
            ServerConfig::DEFAULT_MAX_CONNECTIONS,
            1,
            None,
        );
        let shutdown_grace = self.duration(
            &join(t, "shutdown_grace"),
            raw.shutdown_grace.as_deref(),
            ServerConfig::DEFAULT_SHUTDOWN_GRACE,
        );

        let mut trusted_proxies = Vec::new();
        for (i, text) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
            let path = diag::index(&join(t, "trusted_proxies"), i);
            match parse_cidr(text) {
                Some(net) => trusted_proxies.push(net),
                None => self.err(
                    &path,
                    format!("invalid CIDR \"{text}\" (expected e.g. \"10.0.0.0/8\", \"fd00::/8\" or an address)"),
                ),
            }
        }

        let headers_with_underscores = self.choice(
            &join(t, "headers_with_underscores"),
            raw.headers_with_underscores.as_deref(),
            UnderscoreHeaders::Drop,
            &[
                ("drop", UnderscoreHeaders::Drop),
                ("reject", UnderscoreHeaders::Reject),
                ("allow", UnderscoreHeaders::Allow),
            ],
        );

        let tls = raw.tls.map(|tls| {
            let tt = join(t, "tls");
            let cert = self.required_file(&join(&tt, "cert"), tls.cert.as_deref());
            let key = self.required_file(&join(&tt, "key"), tls.key.as_deref());
            TlsConfig { cert, key }
        });

        ServerConfig {
            listen,
            header_read_timeout,
            idle_timeout,
            max_header_bytes,
            max_connections,
            shutdown_grace,
            trusted_proxies,
            headers_with_underscores,
            tls,
        }
    }

    pub(super) fn admin(&mut self, raw: RawAdmin, server_listen: &[SocketAddr]) -> AdminConfig {
        let token = self.admin_token(raw.token, raw.token_file.as_deref());
        let path = join("admin", "listen");
        let default = AdminConfig::DEFAULT_LISTEN;
        let listen = match raw.listen.as_deref() {
            None => default,
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    self.err(
                        &path,
                        format!("invalid socket address \"{text}\" (expected e.g. \"{default}\")"),
                    );
                    return AdminConfig {
                        listen: default,
                        token,
                    };
                }
            },
        };
        // Port 0 asks the OS for a free port, so two of them never clash.
        if listen.port() != 0
            && let Some(i) = server_listen.iter().position(|a| *a == listen)
        {
            self.err(&path, format!("same address as server.listen[{i}]"));
        }
        AdminConfig { listen, token }
    }

    /// `admin.token` or `admin.token_file`; empty means off (SPEC §3).
    /// Never quoted in a message.
    fn admin_token(&mut self, inline: Option<String>, file: Option<&str>) -> Option<Secret> {
        let (token, key) = self.secret("admin", "token", inline, file).ok()??;
        if token.is_empty() {
            return None;
        }
        if token.chars().count() < AdminConfig::MIN_TOKEN_LEN
            || token.chars().any(|c| c.is_control() || c == ' ')
        {
            self.err(
                &key,
                format!(
                    "must be at least {} characters, without spaces or control characters",
                    AdminConfig::MIN_TOKEN_LEN
                ),
            );
            return None;
        }
        Some(Secret::new(token))
    }

    pub(super) fn log(&mut self, raw: RawLog) -> LogConfig {
        let format = self.choice(
            &join("log", "format"),
            raw.format.as_deref(),
            LogFormat::Json,
            &[("json", LogFormat::Json), ("pretty", LogFormat::Pretty)],
        );
        let path = join("log", "level");
        let level = self.non_empty(&path, raw.level, LogConfig::DEFAULT_LEVEL);
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
            self.err(&path, format!("invalid log filter \"{level}\": {e}"));
        }
        LogConfig {
            format,
            level,
            access_log: raw.access_log.unwrap_or(true),
        }
    }
}

/// `10.0.0.0/8`, or a bare address meaning /32 or /128.
fn parse_cidr(text: &str) -> Option<ipnet::IpNet> {
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>().ok().map(ipnet::IpNet::from)
}
