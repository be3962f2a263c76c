//! Raw -> validated: applies the defaults of SPEC §3 and checks every rule,
//! collecting all errors (never stopping at the first), each at its key path.
//!
//! Secrets (`store.url`, `sessions.secrets`, `hmac_secret`) never appear in a
//! message, whatever is wrong with them; other values are quoted to help.
//! A value that is wrong is replaced by its default so that checking can go
//! on; the `Config` built that way is thrown away when there are errors.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::diag::{self, Diag, join};
use super::load::{RawDoc, Section};
use super::raw::{
    RawAdmin, RawAssertion, RawHealthCheck, RawIdentity, RawJwt, RawLog, RawProvider, RawRoute,
    RawServer, RawSessions, RawStore, RawUpstream,
};
use super::{
    AdminConfig, AssertionConfig, AuthMode, Balance, Config, CookieCodec, CredentialKind, Csrf,
    HeaderPattern, HealthCheck, HostPattern, IdentityConfig, JwtAlgorithm, JwtConfig, JwtProvider,
    KeySource, LogConfig, LogFormat, OnUnauthenticated, RouteConfig, Secret, ServerConfig,
    SessionFormat, SessionsConfig, StoreConfig, StoreKind, Target, TlsConfig, UnderscoreHeaders,
    UpstreamConfig, canonical_header_name,
};

/// SPEC §3 `identity.strip` default.
const DEFAULT_STRIP: &[&str] = &[
    "X-Auth-*",
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Groups",
    "X-Forwarded-Preferred-Username",
    "X-Forwarded-Access-Token",
    "X-Amzn-Oidc-*",
];

const REQUIRED: &str = "required key is missing";

pub(super) fn validate(diag: &mut Diag<'_>, raw: RawDoc, source: &Path, base_dir: &Path) -> Config {
    let mut v = V { diag, base_dir };

    let server_failed = matches!(raw.server, Section::Invalid);
    let server = v.server(raw.server.or_default());
    let admin = v.admin(raw.admin.or_default(), if server_failed { &[] } else { &server.listen });
    let log = v.log(raw.log.or_default());
    let store = v.store(raw.store.or_default());
    let sessions = match raw.sessions {
        Section::Absent => None,
        Section::Present(s) => Some(v.sessions(s)),
        Section::Invalid => Some(v.sessions(RawSessions::default())),
    };
    let session_configured = sessions.is_some();
    let jwt_configured = !raw.providers.is_empty();
    let jwt = v.jwt(raw.jwt.or_default(), raw.providers);
    let upstreams = v.upstreams(raw.upstreams, &raw.upstream_names);
    let routes = v.routes(
        raw.routes,
        &raw.upstream_names,
        jwt_configured,
        session_configured,
    );
    let identity = v.identity(raw.identity.or_default());

    Config {
        source: source.to_path_buf(),
        server,
        admin,
        log,
        store,
        sessions,
        jwt,
        upstreams,
        routes,
        identity,
    }
}

/// An error about this value has already been reported.
struct Reported;

struct V<'d, 'a> {
    diag: &'d mut Diag<'a>,
    base_dir: &'d Path,
}

/// Small, reusable checks.
impl V<'_, '_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.diag.error(path, message);
    }

    fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(text) = value else {
            return default;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.err(
                    path,
                    format!("invalid duration \"{text}\": {e} (expected e.g. \"250ms\", \"30s\", \"5m\")"),
                );
                default
            }
        }
    }

    /// A duration for which `0s` means nothing sensible.
    fn positive_duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        let d = self.duration(path, value, default);
        if d.is_zero() {
            self.err(path, "must be greater than 0s");
            return default;
        }
        d
    }

    fn choice<T: Copy>(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: T,
        options: &[(&str, T)],
    ) -> T {
        let Some(text) = value else {
            return default;
        };
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == text) {
            return *t;
        }
        let names: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        self.err(
            path,
            format!("invalid value \"{text}\": expected {}", names.join(" or ")),
        );
        default
    }

    fn int_in(&mut self, path: &str, value: Option<i64>, default: i64, min: i64, max: i64) -> i64 {
        let Some(n) = value else {
            return default;
        };
        if n < min || n > max {
            if max == i64::MAX {
                self.err(path, format!("must be at least {min} (got {n})"));
            } else {
                self.err(path, format!("must be between {min} and {max} (got {n})"));
            }
            return default;
        }
        n
    }

    /// A key that must be present and non-empty.
    fn required_str<'s>(&mut self, path: &str, value: Option<&'s str>) -> Option<&'s str> {
        match value {
            None => {
                self.err(path, REQUIRED);
                None
            }
            Some("") => {
                self.err(path, "must not be empty");
                None
            }
            Some(s) => Some(s),
        }
    }

    /// A non-empty string with a default.
    fn non_empty(&mut self, path: &str, value: Option<String>, default: &str) -> String {
        match value {
            None => default.to_owned(),
            Some(s) if s.is_empty() => {
                self.err(path, "must not be empty");
                default.to_owned()
            }
            Some(s) => s,
        }
    }

    fn resolve(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// A file that must exist and be readable now; relative to the config file.
    fn readable_file(&mut self, path: &str, file: &str) -> PathBuf {
        let resolved = self.resolve(file);
        if file.is_empty() {
            self.err(path, "must not be empty");
            return resolved;
        }
        match std::fs::File::open(&resolved).and_then(|f| f.metadata()) {
            Ok(meta) if meta.is_dir() => {
                self.err(path, format!("\"{}\" is a directory, not a file", resolved.display()));
            }
            Ok(_) => {}
            Err(e) => self.err(path, format!("cannot read \"{}\": {e}", resolved.display())),
        }
        resolved
    }

    /// `""` or absent: none.
    fn optional_file(&mut self, path: &str, file: Option<&str>) -> Option<PathBuf> {
        match file {
            None | Some("") => None,
            Some(f) => Some(self.readable_file(path, f)),
        }
    }

    /// Reads a `<name>_file` secret; the contents never reach a message.
    fn read_secret_file(&mut self, path: &str, file: &str) -> Option<String> {
        let resolved = self.resolve(file);
        match std::fs::read_to_string(&resolved) {
            Ok(text) => Some(text),
            Err(e) => {
                self.err(path, format!("cannot read \"{}\": {e}", resolved.display()));
                None
            }
        }
    }

    /// `<name> = "..."` or `<name>_file = "path"` (one trailing newline
    /// trimmed), never both. Returns the value and the key it came from;
    /// `Err` when an error was already reported (so callers do not add
    /// "missing" errors on top).
    fn secret(
        &mut self,
        table: &str,
        name: &str,
        inline: Option<String>,
        file: Option<&str>,
    ) -> Result<Option<(String, String)>, Reported> {
        let inline_path = join(table, name);
        let file_path = join(table, &format!("{name}_file"));
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.err(
                    &file_path,
                    format!("give either {name} or {name}_file, not both"),
                );
                Err(Reported)
            }
            (Some(value), None) => Ok(Some((value, inline_path))),
            (None, Some(f)) => {
                let text = self.read_secret_file(&file_path, f).ok_or(Reported)?;
                let text = text
                    .strip_suffix("\r\n")
                    .or_else(|| text.strip_suffix('\n'))
                    .unwrap_or(&text)
                    .to_owned();
                Ok(Some((text, file_path)))
            }
            (None, None) => Ok(None),
        }
    }
}

/// The sections.
impl V<'_, '_> {
    fn server(&mut self, raw: RawServer) -> ServerConfig {
        let t = "server";
        let mut listen = Vec::new();
        match raw.listen {
            None => listen.push(SocketAddr::from((Ipv4Addr::LOCALHOST, 8080))),
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
            Duration::from_secs(10),
        );
        let idle_timeout = self.positive_duration(
            &join(t, "idle_timeout"),
            raw.idle_timeout.as_deref(),
            Duration::from_secs(60),
        );
        let max_header_bytes = self.int_in(
            &join(t, "max_header_bytes"),
            raw.max_header_bytes,
            16384,
            1024,
            1024 * 1024,
        );
        let max_connections = self.int_in(
            &join(t, "max_connections"),
            raw.max_connections,
            10000,
            1,
            i64::MAX,
        );
        let shutdown_grace = self.duration(
            &join(t, "shutdown_grace"),
            raw.shutdown_grace.as_deref(),
            Duration::from_secs(30),
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
            max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(16384),
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
            shutdown_grace,
            trusted_proxies,
            headers_with_underscores,
            tls,
        }
    }

    fn required_file(&mut self, path: &str, file: Option<&str>) -> PathBuf {
        match file {
            Some(f) => self.readable_file(path, f),
            None => {
                self.err(path, REQUIRED);
                PathBuf::new()
            }
        }
    }

    fn admin(&mut self, raw: RawAdmin, server_listen: &[SocketAddr]) -> AdminConfig {
        let path = join("admin", "listen");
        let default = SocketAddr::from((Ipv4Addr::LOCALHOST, 9090));
        let listen = match raw.listen.as_deref() {
            None => default,
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    self.err(
                        &path,
                        format!("invalid socket address \"{text}\" (expected e.g. \"127.0.0.1:9090\")"),
                    );
                    return AdminConfig { listen: default };
                }
            },
        };
        // Port 0 asks the OS for a free port, so two of them never clash.
        if listen.port() != 0
            && let Some(i) = server_listen.iter().position(|a| *a == listen)
        {
            self.err(&path, format!("same address as server.listen[{i}]"));
        }
        AdminConfig { listen }
    }

    fn log(&mut self, raw: RawLog) -> LogConfig {
        let format = self.choice(
            &join("log", "format"),
            raw.format.as_deref(),
            LogFormat::Json,
            &[("json", LogFormat::Json), ("pretty", LogFormat::Pretty)],
        );
        let path = join("log", "level");
        let level = self.non_empty(&path, raw.level, "info");
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
            self.err(&path, format!("invalid log filter \"{level}\": {e}"));
        }
        LogConfig {
            format,
            level,
            access_log: raw.access_log.unwrap_or(true),
        }
    }

    fn store(&mut self, raw: RawStore) -> StoreConfig {
        let t = "store";
        let kind = self.choice(
            &join(t, "kind"),
            raw.kind.as_deref(),
            StoreKind::Memory,
            &[("memory", StoreKind::Memory), ("redis", StoreKind::Redis)],
        );
        let url = self.secret(t, "url", raw.url, raw.url_file.as_deref());
        let reported = url.is_err();
        let url = url.ok().flatten().filter(|(url, _)| !url.is_empty());
        match (&url, kind) {
            (None, StoreKind::Redis) if !reported => {
                self.err(&join(t, "url"), "kind = \"redis\" needs url (or url_file)");
            }
            (Some((url, path)), _) => {
                if let Err(problem) = check_redis_url(url) {
                    // Never the value: it may carry a password.
                    self.err(path, problem);
                }
            }
            (None, _) => {}
        }
        let command_timeout = self.positive_duration(
            &join(t, "command_timeout"),
            raw.command_timeout.as_deref(),
            Duration::from_millis(250),
        );
        let ca_file = self.optional_file(&join(t, "ca_file"), raw.ca_file.as_deref());
        StoreConfig {
            kind,
            url: url.map(|(u, _)| Secret::new(u)),
            command_timeout,
            read_from_replicas: raw.read_from_replicas.unwrap_or(false),
            ca_file,
        }
    }

    fn sessions(&mut self, raw: RawSessions) -> SessionsConfig {
        let t = "sessions";
        let cookie = self.non_empty(&join(t, "cookie"), raw.cookie, "sid");
        if !is_token(&cookie) {
            self.err(
                &join(t, "cookie"),
                format!("\"{cookie}\" is not a valid cookie name (RFC 6265 token)"),
            );
        }
        let codec = self.choice(
            &join(t, "codec"),
            raw.codec.as_deref(),
            CookieCodec::Plain,
            &[("plain", CookieCodec::Plain), ("express", CookieCodec::Express)],
        );

        let secrets_path = join(t, "secrets");
        let secrets_file_path = join(t, "secrets_file");
        let mut reported = false;
        let secrets: Vec<Secret> = match (raw.secrets, raw.secrets_file.as_deref()) {
            (Some(_), Some(_)) => {
                self.err(&secrets_file_path, "give either secrets or secrets_file, not both");
                reported = true;
                Vec::new()
            }
            (Some(list), None) => {
                for (i, s) in list.iter().enumerate() {
                    if s.is_empty() {
                        self.err(&diag::index(&secrets_path, i), "a secret must not be empty");
                    }
                }
                list.into_iter().map(Secret::new).collect()
            }
            (None, Some(file)) => self
                .read_secret_file(&secrets_file_path, file)
                .or_else(|| {
                    reported = true;
                    None
                })
                .map(|text| {
                    text.lines()
                        .map(|l| l.strip_suffix('\r').unwrap_or(l))
                        .filter(|l| !l.trim().is_empty())
                        .map(Secret::new)
                        .collect()
                })
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        };
        if codec == CookieCodec::Express && secrets.is_empty() && !reported {
            let path = if raw.secrets_file.is_some() {
                secrets_file_path
            } else {
                secrets_path
            };
            self.err(&path, "codec = \"express\" needs at least one secret");
        }

        let key_prefix = raw.key_prefix.unwrap_or_else(|| "sessions:".to_owned());
        let format = self.choice(
            &join(t, "format"),
            raw.format.as_deref(),
            SessionFormat::Hash,
            &[("hash", SessionFormat::Hash), ("json", SessionFormat::Json)],
        );
        let user_field_path = join(t, "user_field");
        let user_field = self.non_empty(&user_field_path, raw.user_field, "user_id");
        if format == SessionFormat::Json
            && user_field.starts_with('/')
            && !is_json_pointer(&user_field)
        {
            self.err(
                &user_field_path,
                format!("\"{user_field}\" is not a valid JSON pointer (\"~\" must be followed by 0 or 1)"),
            );
        }
        let list_fields = raw.list_fields.unwrap_or_default();
        for (i, f) in list_fields.iter().enumerate() {
            if f.is_empty() {
                self.err(&diag::index(&join(t, "list_fields"), i), "must not be empty");
            }
        }
        let cache_ttl = self.duration(&join(t, "cache_ttl"), raw.cache_ttl.as_deref(), Duration::ZERO);
        let sliding_path = join(t, "sliding_ttl");
        let mut sliding_ttl = self.duration(&sliding_path, raw.sliding_ttl.as_deref(), Duration::ZERO);
        if !sliding_ttl.is_zero() && sliding_ttl <= Duration::from_secs(60) {
            // Keys are refreshed when their TTL drops below sliding_ttl - 60s.
            self.err(&sliding_path, "must be 0s (off) or more than 60s");
            sliding_ttl = Duration::ZERO;
        }

        SessionsConfig {
            cookie,
            codec,
            secrets,
            key_prefix,
            format,
            user_field,
            list_fields,
            forward_cookie: raw.forward_cookie.unwrap_or(true),
            cache_ttl,
            sliding_ttl,
        }
    }

    fn jwt(&mut self, raw: RawJwt, providers: Vec<Option<RawProvider>>) -> JwtConfig {
        let t = "jwt";
        let cookie = match raw.cookie {
            None => None,
            Some(c) if c.is_empty() => None,
            Some(c) => {
                if !is_token(&c) {
                    self.err(
                        &join(t, "cookie"),
                        format!("\"{c}\" is not a valid cookie name (RFC 6265 token)"),
                    );
                }
                Some(c)
            }
        };
        let max_token_bytes = self.int_in(
            &join(t, "max_token_bytes"),
            raw.max_token_bytes,
            16384,
            256,
            i64::MAX,
        );

        let providers_path = join(t, "providers");
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut issuers: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, raw) in providers.into_iter().enumerate() {
            let Some(raw) = raw else { continue };
            let p = diag::index(&providers_path, i);
            if let Some(name) = raw.name.as_deref()
                && let Some(first) = names.insert(name.to_owned(), i)
            {
                names.insert(name.to_owned(), first);
                self.err(
                    &join(&p, "name"),
                    format!("duplicate provider name \"{name}\" (also jwt.providers[{first}])"),
                );
            }
            if let Some(issuer) = raw.issuer.as_deref()
                && let Some(first) = issuers.insert(issuer.to_owned(), i)
            {
                issuers.insert(issuer.to_owned(), first);
                self.err(
                    &join(&p, "issuer"),
                    format!("duplicate issuer \"{issuer}\" (also jwt.providers[{first}]): the issuer selects the provider"),
                );
            }
            out.push(self.provider(&p, raw));
        }

        JwtConfig {
            header: raw.header.unwrap_or(true),
            cookie,
            forward_token: raw.forward_token.unwrap_or(true),
            max_token_bytes: usize::try_from(max_token_bytes).unwrap_or(16384),
            providers: out,
        }
    }

    fn provider(&mut self, p: &str, raw: RawProvider) -> JwtProvider {
        let name = self
            .required_str(&join(p, "name"), raw.name.as_deref())
            .unwrap_or_default()
            .to_owned();
        let issuer_path = join(p, "issuer");
        let issuer = self
            .required_str(&issuer_path, raw.issuer.as_deref())
            .unwrap_or_default()
            .to_owned();

        // Key source: exactly one of jwks_url | jwks_file | hmac_secret(_file).
        let hmac = self.secret(p, "hmac_secret", raw.hmac_secret, raw.hmac_secret_file.as_deref());
        let mut sources: Vec<(&str, KeySource)> = Vec::new();
        if let Some(url) = raw.jwks_url.as_deref() {
            let path = join(p, "jwks_url");
            if let Err(problem) = check_fetch_url(url) {
                self.err(&path, format!("\"{url}\" {problem}"));
            }
            sources.push(("jwks_url", KeySource::JwksUrl(url.to_owned())));
        }
        if let Some(file) = raw.jwks_file.as_deref() {
            let resolved = self.readable_file(&join(p, "jwks_file"), file);
            sources.push(("jwks_file", KeySource::JwksFile(resolved)));
        }
        let hmac_given = raw.hmac_secret_file.is_some();
        let hmac = hmac.unwrap_or_else(|Reported| {
            // Already reported; still an HMAC provider for the checks below.
            Some((String::from("unreadable"), String::new()))
        });
        if let Some((secret, path)) = hmac {
            if secret.is_empty() {
                self.err(&path, "must not be empty");
            }
            let key = if hmac_given { "hmac_secret_file" } else { "hmac_secret" };
            sources.push((key, KeySource::HmacSecret(Secret::new(secret))));
        }
        if sources.len() > 1 {
            let names: Vec<&str> = sources.iter().map(|(k, _)| *k).collect();
            self.err(
                &join(p, sources[1].0),
                format!(
                    "give only one key source (jwks_url, jwks_file or hmac_secret), not {}",
                    names.join(" and ")
                ),
            );
        }
        let key_source = match sources.into_iter().next() {
            Some((_, source)) => source,
            None => {
                if !issuer.is_empty()
                    && let Err(problem) = check_fetch_url(&issuer)
                {
                    self.err(
                        &issuer_path,
                        format!("\"{issuer}\" {problem}; without jwks_url, jwks_file or hmac_secret the keys come from OIDC discovery at the issuer"),
                    );
                }
                KeySource::Discovery
            }
        };
        let is_hmac_source = matches!(key_source, KeySource::HmacSecret(_));

        let audiences_path = join(p, "audiences");
        let audiences = match raw.audiences {
            None => {
                self.err(&audiences_path, REQUIRED);
                Vec::new()
            }
            Some(list) => {
                if list.is_empty() {
                    self.err(&audiences_path, "must list at least one audience");
                }
                for (i, a) in list.iter().enumerate() {
                    if a.is_empty() {
                        self.err(&diag::index(&audiences_path, i), "must not be empty");
                    }
                }
                list
            }
        };
        let audience_claim = self.non_empty(&join(p, "audience_claim"), raw.audience_claim, "aud");

        let algorithms_path = join(p, "algorithms");
        let explicit = raw.algorithms.is_some();
        let names = raw.algorithms.unwrap_or_else(|| vec!["RS256".to_owned()]);
        if names.is_empty() {
            self.err(&algorithms_path, "must list at least one algorithm");
        }
        let mut algorithms = Vec::new();
        for (i, text) in names.iter().enumerate() {
            let path = if explicit {
                diag::index(&algorithms_path, i)
            } else {
                algorithms_path.clone()
            };
            let default_note = if explicit {
                ""
            } else {
                " (the default algorithms = [\"RS256\"]; set algorithms)"
            };
            if text.eq_ignore_ascii_case("none") {
                self.err(&path, "\"none\" is never allowed: tokens must be signed");
                continue;
            }
            let Some(alg) = JwtAlgorithm::parse(text) else {
                let all: Vec<&str> = JwtAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
                self.err(
                    &path,
                    format!("unknown algorithm \"{text}\" (expected one of {})", all.join(", ")),
                );
                continue;
            };
            if algorithms.contains(&alg) {
                self.err(&path, format!("duplicate algorithm \"{text}\""));
                continue;
            }
            if alg.is_hmac() && !is_hmac_source {
                self.err(
                    &path,
                    format!("{text} needs hmac_secret: HMAC algorithms are never used with keys from jwks_url, jwks_file or discovery"),
                );
            } else if !alg.is_hmac() && is_hmac_source {
                self.err(
                    &path,
                    format!("{text} cannot be used with hmac_secret, which only verifies HS256, HS384 or HS512{default_note}"),
                );
            }
            algorithms.push(alg);
        }

        let leeway = self.duration(&join(p, "leeway"), raw.leeway.as_deref(), Duration::from_secs(30));
        let lifetime = self.duration(
            &join(p, "max_token_lifetime"),
            raw.max_token_lifetime.as_deref(),
            Duration::ZERO,
        );
        let max_token_lifetime = (!lifetime.is_zero()).then_some(lifetime);

        let claims_path = join(p, "claims");
        let mut claims = BTreeMap::new();
        for (claim, value) in raw.claims.unwrap_or_default() {
            let path = join(&claims_path, &claim);
            match value {
                serde_json::Value::String(_)
                | serde_json::Value::Number(_)
                | serde_json::Value::Bool(_) => {
                    claims.insert(claim, value);
                }
                _ => self.err(&path, "must be a string, integer, float or boolean"),
            }
        }

        let refresh_interval = self.positive_duration(
            &join(p, "refresh_interval"),
            raw.refresh_interval.as_deref(),
            Duration::from_secs(300),
        );
        let min_path = join(p, "min_refresh_interval");
        let min_refresh_interval = self.positive_duration(
            &min_path,
            raw.min_refresh_interval.as_deref(),
            Duration::from_secs(30),
        );
        if min_refresh_interval > refresh_interval {
            self.err(
                &min_path,
                format!(
                    "must not exceed refresh_interval ({})",
                    humantime::format_duration(refresh_interval)
                ),
            );
        }
        let fetch_timeout = self.positive_duration(
            &join(p, "fetch_timeout"),
            raw.fetch_timeout.as_deref(),
            Duration::from_secs(5),
        );
        let max_stale = self.duration(
            &join(p, "max_stale"),
            raw.max_stale.as_deref(),
            Duration::from_secs(24 * 3600),
        );
        let ca_file = self.optional_file(&join(p, "ca_file"), raw.ca_file.as_deref());

        JwtProvider {
            name,
            issuer,
            key_source,
            audiences,
            audience_claim,
            algorithms,
            leeway,
            max_token_lifetime,
            claims,
            refresh_interval,
            min_refresh_interval,
            fetch_timeout,
            max_stale,
            ca_file,
        }
    }

    fn upstreams(
        &mut self,
        raws: Vec<Option<RawUpstream>>,
        names: &[Option<String>],
    ) -> Vec<UpstreamConfig> {
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let Some(name) = name.as_deref() else { continue };
            if let Some(first) = first_of.get(name) {
                self.err(
                    &join(&diag::index("upstreams", i), "name"),
                    format!("duplicate upstream name \"{name}\" (also upstreams[{first}])"),
                );
            } else {
                first_of.insert(name, i);
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
                                self.err(&diag::index(&targets_path, i), format!("duplicate target \"{text}\""));
                            }
                            targets.push(t);
                        }
                        Err(problem) => {
                            self.err(&diag::index(&targets_path, i), format!("\"{text}\" {problem}"));
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
            Duration::from_secs(2),
        );
        let response_timeout = self.positive_duration(
            &join(u, "response_timeout"),
            raw.response_timeout.as_deref(),
            Duration::from_secs(30),
        );
        let retries = self.int_in(&join(u, "retries"), raw.retries, 1, 0, 5);
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
            retries: u32::try_from(retries).unwrap_or(1),
            health_check,
        }
    }

    fn health_check(&mut self, h: &str, raw: RawHealthCheck) -> HealthCheck {
        let path_key = join(h, "path");
        let path = self.non_empty(&path_key, raw.path, "/healthz");
        if !path.starts_with('/') {
            self.err(&path_key, format!("\"{path}\" must start with \"/\""));
        }
        let interval = self.positive_duration(
            &join(h, "interval"),
            raw.interval.as_deref(),
            Duration::from_secs(5),
        );
        let max = i64::from(u32::MAX);
        let unhealthy_after = self.int_in(&join(h, "unhealthy_after"), raw.unhealthy_after, 3, 1, max);
        let healthy_after = self.int_in(&join(h, "healthy_after"), raw.healthy_after, 2, 1, max);
        HealthCheck {
            path,
            interval,
            unhealthy_after: u32::try_from(unhealthy_after).unwrap_or(3),
            healthy_after: u32::try_from(healthy_after).unwrap_or(2),
        }
    }

    fn routes(
        &mut self,
        raws: Vec<Option<RawRoute>>,
        upstream_names: &[Option<String>],
        jwt_configured: bool,
        session_configured: bool,
    ) -> Vec<RouteConfig> {
        let mut out = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        // HostPattern is not Hash; routes are few.
        let mut places: Vec<((Option<HostPattern>, String), usize)> = Vec::new();
        for (i, raw) in raws.into_iter().enumerate() {
            let Some(raw) = raw else { continue };
            let r = diag::index("routes", i);
            let explicit_name = raw.name.is_some();
            let route = self.route(&r, raw, upstream_names, jwt_configured, session_configured);
            let place = (route.host.clone(), route.path.clone());
            let same_place = places.iter().find(|(p, _)| *p == place).map(|(_, i)| *i);
            if let Some(first) = same_place {
                self.err(&join(&r, "path"), format!("same host and path as routes[{first}]"));
            } else {
                places.push((place, i));
            }
            if let Some(first) = names.get(&route.name) {
                if explicit_name {
                    self.err(
                        &join(&r, "name"),
                        format!("duplicate route name \"{}\" (also routes[{first}])", route.name),
                    );
                } else if same_place.is_none() {
                    self.err(
                        &join(&r, "name"),
                        format!(
                            "the default name \"{}\" (host + path) is already used by routes[{first}]; set name",
                            route.name
                        ),
                    );
                }
            } else {
                names.insert(route.name.clone(), i);
            }
            out.push(route);
        }
        out
    }

    fn route(
        &mut self,
        r: &str,
        raw: RawRoute,
        upstream_names: &[Option<String>],
        jwt_configured: bool,
        session_configured: bool,
    ) -> RouteConfig {
        let path_key = join(r, "path");
        let path = match raw.path.as_deref() {
            None => "/".to_owned(),
            Some(p) => match normalize_route_path(p) {
                Ok(p) => p,
                Err(problem) => {
                    self.err(&path_key, format!("\"{p}\" {problem}"));
                    "/".to_owned()
                }
            },
        };

        let host_key = join(r, "host");
        let (host, host_text) = match raw.host.as_deref() {
            None => (None, String::new()),
            Some(h) => match parse_host_pattern(h) {
                Ok(pattern) => (Some(pattern), h.to_ascii_lowercase()),
                Err(problem) => {
                    self.err(&host_key, format!("\"{h}\" {problem}"));
                    (None, String::new())
                }
            },
        };

        let name = match raw.name {
            None => format!("{host_text}{path}"),
            Some(n) => {
                if n.is_empty() {
                    self.err(&join(r, "name"), "must not be empty");
                }
                n
            }
        };

        let mut methods: Vec<http::Method> = Vec::new();
        for (i, m) in raw.methods.unwrap_or_default().iter().enumerate() {
            let path = diag::index(&join(r, "methods"), i);
            let upper = m.to_ascii_uppercase();
            match http::Method::from_bytes(upper.as_bytes()) {
                Ok(method) if !upper.is_empty() => {
                    if methods.contains(&method) {
                        self.err(&path, format!("duplicate method \"{upper}\""));
                    } else {
                        methods.push(method);
                    }
                }
                _ => self.err(&path, format!("\"{m}\" is not a valid HTTP method")),
            }
        }

        let upstream_key = join(r, "upstream");
        let upstream = match self.required_str(&upstream_key, raw.upstream.as_deref()) {
            None => 0,
            Some(u) => match upstream_names.iter().position(|n| n.as_deref() == Some(u)) {
                Some(idx) => idx,
                None => {
                    self.err(&upstream_key, format!("no upstream named \"{u}\""));
                    0
                }
            },
        };

        let auth = self.choice(
            &join(r, "auth"),
            raw.auth.as_deref(),
            AuthMode::Required,
            &[
                ("required", AuthMode::Required),
                ("optional", AuthMode::Optional),
                ("public", AuthMode::Public),
            ],
        );

        let accept_key = join(r, "accept");
        let accept = match raw.accept {
            None => {
                let mut kinds = Vec::new();
                if jwt_configured {
                    kinds.push(CredentialKind::Jwt);
                }
                if session_configured {
                    kinds.push(CredentialKind::Session);
                }
                kinds
            }
            Some(list) => {
                if list.is_empty() && auth != AuthMode::Public {
                    self.err(&accept_key, "must not be empty unless auth = \"public\"");
                }
                let mut kinds = Vec::new();
                for (i, k) in list.iter().enumerate() {
                    let path = diag::index(&accept_key, i);
                    let (kind, configured, missing) = match k.as_str() {
                        "jwt" => (CredentialKind::Jwt, jwt_configured, "no [[jwt.providers]]"),
                        "session" => (
                            CredentialKind::Session,
                            session_configured,
                            "no [sessions] table",
                        ),
                        _ => {
                            self.err(&path, format!("invalid value \"{k}\": expected \"jwt\" or \"session\""));
                            continue;
                        }
                    };
                    if !configured {
                        self.err(&path, format!("\"{k}\" is not configured ({missing})"));
                    } else if kinds.contains(&kind) {
                        self.err(&path, format!("duplicate \"{k}\""));
                    } else {
                        kinds.push(kind);
                    }
                }
                kinds
            }
        };

        let require_key = join(r, "require");
        let mut require = BTreeMap::new();
        let raw_require = raw.require.unwrap_or_default();
        if !raw_require.is_empty() && auth == AuthMode::Public {
            self.err(&require_key, "has no effect on a route with auth = \"public\"");
        }
        for (claim, values) in raw_require {
            let path = join(&require_key, &claim);
            if claim.is_empty() {
                self.err(&path, "claim name must not be empty");
            }
            if values.0.is_empty() {
                self.err(&path, "must list at least one value");
            }
            for (i, value) in values.0.iter().enumerate() {
                if value.is_empty() {
                    self.err(&diag::index(&path, i), "must not be empty");
                }
            }
            require.insert(claim, values.0);
        }

        let on_key = join(r, "on_unauthenticated");
        let redirect = self.choice(
            &on_key,
            raw.on_unauthenticated.as_deref(),
            false,
            &[("deny", false), ("redirect", true)],
        );
        let on_unauthenticated = if redirect {
            let login_key = join(r, "login_url");
            match raw.login_url.as_deref() {
                None | Some("") => {
                    self.err(&login_key, "on_unauthenticated = \"redirect\" needs login_url");
                }
                Some(url) => {
                    if let Err(problem) = check_login_url(url) {
                        self.err(&login_key, format!("\"{url}\" {problem}"));
                    }
                }
            }
            OnUnauthenticated::Redirect(raw.login_url.unwrap_or_default())
        } else {
            OnUnauthenticated::Deny
        };

        let csrf = self.choice(
            &join(r, "csrf"),
            raw.csrf.as_deref(),
            Csrf::Off,
            &[("off", Csrf::Off), ("origin", Csrf::Origin)],
        );

        RouteConfig {
            name,
            host,
            path,
            methods,
            upstream,
            auth,
            accept,
            require,
            on_unauthenticated,
            csrf,
        }
    }

    fn identity(&mut self, raw: RawIdentity) -> IdentityConfig {
        let t = "identity";
        let strip_key = join(t, "strip");
        let strip_given = raw.strip.is_some();
        let entries = raw
            .strip
            .unwrap_or_else(|| DEFAULT_STRIP.iter().map(|s| (*s).to_owned()).collect());
        let mut strip = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let path = if strip_given {
                diag::index(&strip_key, i)
            } else {
                strip_key.clone()
            };
            match parse_strip(entry) {
                Ok(pattern) => strip.push(pattern),
                Err(problem) => self.err(&path, format!("\"{entry}\" {problem}")),
            }
        }

        let headers_key = join(t, "headers");
        let mut headers = Vec::new();
        match raw.headers {
            None => headers.push((http::HeaderName::from_static("x-auth-user"), "sub".to_owned())),
            Some(map) => {
                // The table arrives sorted by key; the file order is kept.
                let mut entries: Vec<(Option<usize>, String, String)> = map
                    .into_iter()
                    .map(|(h, c)| (self.diag.key_offset(&join(&headers_key, &h)), h, c))
                    .collect();
                entries.sort_by_key(|(offset, _, _)| offset.unwrap_or(usize::MAX));
                let mut seen: HashMap<String, String> = HashMap::new();
                for (_, header, claim) in entries {
                    let path = join(&headers_key, &header);
                    let Ok(name) = http::HeaderName::from_bytes(header.as_bytes()) else {
                        self.err(&path, format!("\"{header}\" is not a valid header name"));
                        continue;
                    };
                    let canonical = canonical_header_name(&header);
                    if let Some(first) = seen.get(&canonical) {
                        self.err(
                            &path,
                            format!("\"{header}\" is the same header as \"{first}\" (case, \"_\" and \".\" do not matter)"),
                        );
                        continue;
                    }
                    seen.insert(canonical, header.clone());
                    if claim.is_empty() {
                        self.err(&path, "claim name must not be empty");
                    }
                    headers.push((name, claim));
                }
            }
        }

        let assertion = raw
            .assertion
            .map(|a| self.assertion(&join(t, "assertion"), a));
        IdentityConfig {
            strip,
            headers,
            assertion,
        }
    }

    fn assertion(&mut self, a: &str, raw: RawAssertion) -> AssertionConfig {
        let header_key = join(a, "header");
        let header_text = self.non_empty(&header_key, raw.header, "X-Auth-Assertion");
        let header = match http::HeaderName::from_bytes(header_text.as_bytes()) {
            Ok(h) => h,
            Err(_) => {
                self.err(&header_key, format!("\"{header_text}\" is not a valid header name"));
                http::HeaderName::from_static("x-auth-assertion")
            }
        };
        let key_file = self.required_file(&join(a, "key_file"), raw.key_file.as_deref());
        let issuer = self.non_empty(&join(a, "issuer"), raw.issuer, "wristband");
        let ttl_key = join(a, "ttl");
        let mut ttl = self.positive_duration(&ttl_key, raw.ttl.as_deref(), Duration::from_secs(60));
        if ttl > Duration::from_secs(3600) {
            self.err(&ttl_key, "must be at most 1h");
            ttl = Duration::from_secs(60);
        }
        AssertionConfig {
            header,
            key_file,
            issuer,
            ttl,
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

/// RFC 6265 cookie-name = token (RFC 9110 tchar).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^'
                        | b'_' | b'`' | b'|' | b'~'
                )
        })
}

/// RFC 6901: `~` only as `~0` or `~1`.
fn is_json_pointer(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first() == Some(&b'/')
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| *b != b'~' || matches!(bytes.get(i + 1), Some(b'0' | b'1')))
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A JWKS or discovery URL: https, or http for loopback hosts only.
fn check_fetch_url(url: &str) -> Result<(), &'static str> {
    let uri: http::Uri = url.parse().map_err(|_| "is not a valid URL")?;
    let host = uri.host().filter(|h| !h.is_empty()).ok_or("must be an absolute URL with a host")?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err("must use https:// (http:// only for loopback hosts)"),
        _ => Err("must be an https:// URL"),
    }
}

/// An absolute http(s) URL; `{url}` is a placeholder, not part of the syntax.
fn check_login_url(url: &str) -> Result<(), &'static str> {
    let uri: http::Uri = url
        .replace("{url}", "x")
        .parse()
        .map_err(|_| "is not a valid URL")?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(()),
        _ => Err("must be an absolute http:// or https:// URL"),
    }
}

/// The scheme and shape of a Redis URL; the errors never quote it.
fn check_redis_url(url: &str) -> Result<(), String> {
    const SCHEMES: [&str; 4] = ["redis", "rediss", "redis-sentinel", "redis-cluster"];
    let expected = "must be a URL starting with redis://, rediss://, redis-sentinel:// or redis-cluster:// (value not shown: it may hold a password)";
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(expected.to_owned());
    };
    if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(expected.to_owned());
    }
    let authority = rest.split('/').next().unwrap_or("");
    let hosts = authority.rsplit('@').next().unwrap_or("");
    if hosts.is_empty() {
        return Err("has no host (value not shown: it may hold a password)".to_owned());
    }
    Ok(())
}

/// `http://host[:port]` or `https://host[:port]`, stored with its port.
fn parse_target(text: &str) -> Result<Target, &'static str> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| "is not a valid URL (expected e.g. \"http://127.0.0.1:3000\")")?;
    let (scheme, default_port) = match uri.scheme_str() {
        Some("http") => (http::uri::Scheme::HTTP, 80),
        Some("https") => (http::uri::Scheme::HTTPS, 443),
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
    let port = authority.port_u16().unwrap_or(default_port);
    let authority = format!("{}:{port}", authority.host())
        .parse::<http::uri::Authority>()
        .map_err(|_| "has an invalid host")?;
    Ok(Target {
        configured: text.to_owned(),
        scheme,
        authority,
    })
}

/// A route prefix in the normalized form requests are matched in (SPEC §5.3),
/// so that it can only be written one way.
fn normalize_route_path(path: &str) -> Result<String, &'static str> {
    if !path.starts_with('/') {
        return Err("must start with \"/\"");
    }
    if path.contains(['%', '?', '#']) {
        return Err("must not contain \"%\", \"?\" or \"#\" (write the decoded path)");
    }
    if path.contains("//") {
        return Err("must not contain \"//\"");
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err("must not contain \".\" or \"..\" segments");
    }
    if path.chars().any(|c| c.is_control() || c == ' ' || c == '\\') {
        return Err("must not contain spaces, \"\\\" or control characters");
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

/// `app.example.com`, `*.example.com` (any depth, not the apex), or an IP.
fn parse_host_pattern(host: &str) -> Result<HostPattern, &'static str> {
    let lower = host.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("*.") {
        if rest.contains('*') {
            return Err("may hold \"*\" only as the whole first label (\"*.example.com\")");
        }
        check_dns_name(rest)?;
        return Ok(HostPattern::Wildcard(format!(".{rest}")));
    }
    if lower.contains('*') {
        return Err("may hold \"*\" only as the whole first label (\"*.example.com\")");
    }
    if let Some(inner) = lower.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(HostPattern::Exact(lower)),
            Err(_) => Err("is not a valid IPv6 address"),
        };
    }
    if lower.contains(':') {
        return Err("must not include a port (hosts match whatever the port)");
    }
    check_dns_name(&lower)?;
    Ok(HostPattern::Exact(lower))
}

fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if labels_ok {
        Ok(())
    } else {
        Err("is not a valid host name")
    }
}

/// `X-Auth-User` or `X-Auth-*`, in canonical form.
fn parse_strip(entry: &str) -> Result<HeaderPattern, &'static str> {
    let (name, prefix) = match entry.strip_suffix('*') {
        Some(name) => (name, true),
        None => (entry, false),
    };
    if name.contains('*') {
        return Err("may hold \"*\" only at the end");
    }
    if name.is_empty() {
        return Err(if prefix {
            "would strip every header"
        } else {
            "must not be empty"
        });
    }
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err("is not a valid header name");
    }
    let canonical = canonical_header_name(name);
    Ok(if prefix {
        HeaderPattern::Prefix(canonical)
    } else {
        HeaderPattern::Exact(canonical)
    })
}
