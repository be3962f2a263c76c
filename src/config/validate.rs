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
    let admin = v.admin(
        raw.admin.or_default(),
        if server_failed { &[] } else { &server.listen },
    );
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
    fn positive_duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
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
            if max >= i64::from(u32::MAX) {
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
                self.err(
                    path,
                    format!("\"{}\" is a directory, not a file", resolved.display()),
                );
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
            Some(text) => {
                match text.parse::<SocketAddr>() {
                    Ok(addr) => addr,
                    Err(_) => {
                        self.err(
                        &path,
                        format!("invalid socket address \"{text}\" (expected e.g. \"127.0.0.1:9090\")"),
                    );
                        return AdminConfig { listen: default };
                    }
                }
            }
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
            &[
                ("plain", CookieCodec::Plain),
                ("express", CookieCodec::Express),
            ],
        );

        let secrets_path = join(t, "secrets");
        let secrets_file_path = join(t, "secrets_file");
        let mut reported = false;
        let secrets: Vec<Secret> = match (raw.secrets, raw.secrets_file.as_deref()) {
            (Some(_), Some(_)) => {
                self.err(
                    &secrets_file_path,
                    "give either secrets or secrets_file, not both",
                );
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
                self.err(
                    &diag::index(&join(t, "list_fields"), i),
                    "must not be empty",
                );
            }
        }
        let cache_ttl = self.duration(
            &join(t, "cache_ttl"),
            raw.cache_ttl.as_deref(),
            Duration::ZERO,
        );
        let sliding_path = join(t, "sliding_ttl");
        let mut sliding_ttl =
            self.duration(&sliding_path, raw.sliding_ttl.as_deref(), Duration::ZERO);
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
        let hmac = self.secret(
            p,
            "hmac_secret",
            raw.hmac_secret,
            raw.hmac_secret_file.as_deref(),
        );
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
            let key = if hmac_given {
                "hmac_secret_file"
            } else {
                "hmac_secret"
            };
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
                    format!(
                        "unknown algorithm \"{text}\" (expected one of {})",
                        all.join(", ")
                    ),
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

        let leeway = self.duration(
            &join(p, "leeway"),
            raw.leeway.as_deref(),
            Duration::from_secs(30),
        );
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
            let Some(name) = name.as_deref() else {
                continue;
            };
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
        let unhealthy_after =
            self.int_in(&join(h, "unhealthy_after"), raw.unhealthy_after, 3, 1, max);
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
                self.err(
                    &join(&r, "path"),
                    format!("same host and path as routes[{first}]"),
                );
            } else {
                places.push((place, i));
            }
            if let Some(first) = names.get(&route.name) {
                if explicit_name {
                    self.err(
                        &join(&r, "name"),
                        format!(
                            "duplicate route name \"{}\" (also routes[{first}])",
                            route.name
                        ),
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
                            self.err(
                                &path,
                                format!("invalid value \"{k}\": expected \"jwt\" or \"session\""),
                            );
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
            self.err(
                &require_key,
                "has no effect on a route with auth = \"public\"",
            );
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
                    self.err(
                        &login_key,
                        "on_unauthenticated = \"redirect\" needs login_url",
                    );
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
            None => headers.push((
                http::HeaderName::from_static("x-auth-user"),
                "sub".to_owned(),
            )),
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
                self.err(
                    &header_key,
                    format!("\"{header_text}\" is not a valid header name"),
                );
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
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
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
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or("must be an absolute URL with a host")?;
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
    if path
        .chars()
        .any(|c| c.is_control() || c == ' ' || c == '\\')
    {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::test_support::{TempDir, errors, load_in, ok, one_error, one_error_in};

    const UPSTREAM: &str = "[[upstreams]]\nname = \"app\"\ntargets = [\"http://127.0.0.1:3000\"]\n";
    const PROVIDER: &str = "[[jwt.providers]]\nname = \"p\"\nissuer = \"https://idp.example.com\"\naudiences = [\"a\"]\n";

    fn route(extra: &str) -> String {
        format!("{UPSTREAM}[[routes]]\nupstream = \"app\"\n{extra}\n")
    }

    fn provider(extra: &str) -> String {
        format!("{PROVIDER}{extra}\n")
    }

    #[test]
    fn an_empty_file_gives_the_defaults_of_spec_section_3() {
        let c = ok("");
        let s = &c.server;
        assert_eq!(s.listen, vec!["127.0.0.1:8080".parse().expect("addr")]);
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.max_header_bytes, 16384);
        assert_eq!(s.max_connections, 10000);
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));
        assert!(s.trusted_proxies.is_empty());
        assert_eq!(s.headers_with_underscores, UnderscoreHeaders::Drop);
        assert!(s.tls.is_none());
        assert_eq!(c.admin.listen, "127.0.0.1:9090".parse().expect("addr"));
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "info");
        assert!(c.log.access_log);
        assert_eq!(c.store.kind, StoreKind::Memory);
        assert!(c.store.url.is_none());
        assert_eq!(c.store.command_timeout, Duration::from_millis(250));
        assert!(!c.store.read_from_replicas);
        assert!(c.store.ca_file.is_none());
        assert!(c.sessions.is_none());
        assert!(c.jwt.header);
        assert!(c.jwt.cookie.is_none());
        assert!(c.jwt.forward_token);
        assert_eq!(c.jwt.max_token_bytes, 16384);
        assert!(c.jwt.providers.is_empty());
        assert!(c.upstreams.is_empty());
        assert!(c.routes.is_empty());
        let strip: Vec<HeaderPattern> = vec![
            HeaderPattern::Prefix("x-auth-".into()),
            HeaderPattern::Exact("x-forwarded-user".into()),
            HeaderPattern::Exact("x-forwarded-email".into()),
            HeaderPattern::Exact("x-forwarded-groups".into()),
            HeaderPattern::Exact("x-forwarded-preferred-username".into()),
            HeaderPattern::Exact("x-forwarded-access-token".into()),
            HeaderPattern::Prefix("x-amzn-oidc-".into()),
        ];
        assert_eq!(c.identity.strip, strip);
        assert_eq!(c.identity.headers.len(), 1);
        assert_eq!(c.identity.headers[0].0.as_str(), "x-auth-user");
        assert_eq!(c.identity.headers[0].1, "sub");
        assert!(c.identity.assertion.is_none());
        assert!(c.summary().contains("0 route(s)"));
    }

    #[test]
    fn section_defaults_of_sessions_providers_upstreams_and_routes() {
        let c = ok(&format!("[sessions]\n{PROVIDER}{}", route("")));
        let s = c.sessions.expect("sessions");
        assert_eq!(s.cookie, "sid");
        assert_eq!(s.codec, CookieCodec::Plain);
        assert!(s.secrets.is_empty());
        assert_eq!(s.key_prefix, "sessions:");
        assert_eq!(s.format, SessionFormat::Hash);
        assert_eq!(s.user_field, "user_id");
        assert!(s.list_fields.is_empty());
        assert!(s.forward_cookie);
        assert_eq!(s.cache_ttl, Duration::ZERO);
        assert_eq!(s.sliding_ttl, Duration::ZERO);

        let p = &c.jwt.providers[0];
        assert!(matches!(p.key_source, KeySource::Discovery));
        assert_eq!(p.audience_claim, "aud");
        assert_eq!(p.algorithms, vec![JwtAlgorithm::RS256]);
        assert_eq!(p.leeway, Duration::from_secs(30));
        assert_eq!(p.max_token_lifetime, None);
        assert!(p.claims.is_empty());
        assert_eq!(p.refresh_interval, Duration::from_secs(300));
        assert_eq!(p.min_refresh_interval, Duration::from_secs(30));
        assert_eq!(p.fetch_timeout, Duration::from_secs(5));
        assert_eq!(p.max_stale, Duration::from_secs(24 * 3600));
        assert!(p.ca_file.is_none());

        let u = &c.upstreams[0];
        assert_eq!(u.balance, Balance::RoundRobin);
        assert!(u.preserve_host);
        assert_eq!(u.connect_timeout, Duration::from_secs(2));
        assert_eq!(u.response_timeout, Duration::from_secs(30));
        assert_eq!(u.retries, 1);
        assert!(u.health_check.is_none());

        let r = &c.routes[0];
        assert_eq!(r.name, "/");
        assert_eq!(r.host, None);
        assert_eq!(r.path, "/");
        assert!(r.methods.is_empty());
        assert_eq!(r.upstream, 0);
        assert_eq!(r.auth, AuthMode::Required);
        assert_eq!(r.accept, vec![CredentialKind::Jwt, CredentialKind::Session]);
        assert!(r.require.is_empty());
        assert_eq!(r.on_unauthenticated, OnUnauthenticated::Deny);
        assert_eq!(r.csrf, Csrf::Off);

        let hc = ok(&format!("{UPSTREAM}[upstreams.health_check]\n")).upstreams[0]
            .health_check
            .clone()
            .expect("health check");
        assert_eq!(hc.path, "/healthz");
        assert_eq!(hc.interval, Duration::from_secs(5));
        assert_eq!(hc.unhealthy_after, 3);
        assert_eq!(hc.healthy_after, 2);
    }

    #[test]
    fn durations() {
        one_error(
            "[server]\nidle_timeout = \"-5s\"\n",
            "server.idle_timeout",
            "invalid duration",
        );
        one_error(
            "[server]\nidle_timeout = \"soon\"\n",
            "server.idle_timeout",
            "invalid duration",
        );
        one_error(
            "[server]\nheader_read_timeout = \"0s\"\n",
            "server.header_read_timeout",
            "greater than 0s",
        );
        let c = ok("[server]\nshutdown_grace = \"0s\"\nidle_timeout = \"1m 30s\"\n");
        assert_eq!(c.server.shutdown_grace, Duration::ZERO);
        assert_eq!(c.server.idle_timeout, Duration::from_secs(90));
    }

    #[test]
    fn server_rules() {
        one_error("[server]\nlisten = []\n", "server.listen", "at least one");
        one_error(
            "[server]\nlisten = [\"localhost:80\"]\n",
            "server.listen[0]",
            "invalid socket address",
        );
        one_error(
            "[server]\nlisten = [\"127.0.0.1:80\", \"127.0.0.1:80\"]\n",
            "server.listen[1]",
            "duplicate",
        );
        let c = ok("[server]\nlisten = [\"127.0.0.1:80\", \"[::1]:8080\"]\n");
        assert_eq!(c.server.listen.len(), 2);
        one_error(
            "[server]\nmax_header_bytes = 1023\n",
            "server.max_header_bytes",
            "between 1024 and 1048576",
        );
        one_error(
            "[server]\nmax_header_bytes = 1048577\n",
            "server.max_header_bytes",
            "between",
        );
        assert_eq!(
            ok("[server]\nmax_header_bytes = 1048576\n")
                .server
                .max_header_bytes,
            1 << 20
        );
        one_error(
            "[server]\nmax_connections = 0\n",
            "server.max_connections",
            "at least 1",
        );
        one_error(
            "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "server.trusted_proxies[0]",
            "invalid CIDR",
        );
        let c = ok("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"::1\"]\n");
        let nets: Vec<String> = c
            .server
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, vec!["10.0.0.0/8", "192.0.2.7/32", "::1/128"]);
        one_error(
            "[server]\nheaders_with_underscores = \"keep\"\n",
            "server.headers_with_underscores",
            "\"drop\" or \"reject\" or \"allow\"",
        );
        assert_eq!(
            ok("[server]\nheaders_with_underscores = \"reject\"\n")
                .server
                .headers_with_underscores,
            UnderscoreHeaders::Reject
        );
    }

    #[test]
    fn tls_needs_both_readable_files() {
        let dir = TempDir::new();
        dir.write("tls.crt", "cert");
        dir.write("tls.key", "key");
        one_error_in(
            &dir,
            "[server.tls]\ncert = \"tls.crt\"\n",
            "server.tls.key",
            "required",
        );
        one_error_in(
            &dir,
            "[server.tls]\ncert = \"tls.crt\"\nkey = \"nope.key\"\n",
            "server.tls.key",
            "cannot read",
        );
        one_error_in(
            &dir,
            "[server.tls]\ncert = \".\"\nkey = \"tls.key\"\n",
            "server.tls.cert",
            "directory",
        );
        let c = load_in(
            &dir,
            "[server.tls]\ncert = \"tls.crt\"\nkey = \"tls.key\"\n",
        )
        .expect("valid");
        let tls = c.server.tls.expect("tls");
        assert_eq!(tls.cert, dir.path().join("tls.crt"));
        assert_eq!(tls.key, dir.path().join("tls.key"));
    }

    #[test]
    fn admin_rules() {
        one_error(
            "[admin]\nlisten = \"nowhere\"\n",
            "admin.listen",
            "invalid socket address",
        );
        one_error(
            "[server]\nlisten = [\"127.0.0.1:9000\"]\n[admin]\nlisten = \"127.0.0.1:9000\"\n",
            "admin.listen",
            "same address as server.listen[0]",
        );
        // Port 0 (tests) is never a clash.
        ok("[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    }

    #[test]
    fn log_rules() {
        one_error(
            "[log]\nformat = \"xml\"\n",
            "log.format",
            "invalid value \"xml\"",
        );
        one_error(
            "[log]\nlevel = \"wristband=loud\"\n",
            "log.level",
            "invalid log filter",
        );
        one_error("[log]\nlevel = \"\"\n", "log.level", "must not be empty");
        let c = ok(
            "[log]\nformat = \"pretty\"\nlevel = \"wristband=debug,hyper=warn\"\naccess_log = false\n",
        );
        assert_eq!(c.log.format, LogFormat::Pretty);
        assert!(!c.log.access_log);
    }

    #[test]
    fn store_rules() {
        one_error(
            "[store]\nkind = \"postgres\"\n",
            "store.kind",
            "\"memory\" or \"redis\"",
        );
        one_error("[store]\nkind = \"redis\"\n", "store.url", "needs url");
        one_error(
            "[store]\nkind = \"redis\"\nurl = \"\"\n",
            "store.url",
            "needs url",
        );
        one_error(
            "[store]\nkind = \"redis\"\nurl = \"http://h:6379\"\n",
            "store.url",
            "redis://",
        );
        one_error(
            "[store]\nkind = \"redis\"\nurl = \"redis://\"\n",
            "store.url",
            "no host",
        );
        one_error(
            "[store]\ncommand_timeout = \"0s\"\n",
            "store.command_timeout",
            "greater than 0s",
        );
        one_error(
            "[store]\nca_file = \"nope.pem\"\n",
            "store.ca_file",
            "cannot read",
        );
        for scheme in ["redis", "rediss", "redis-sentinel", "redis-cluster"] {
            let c = ok(&format!(
                "[store]\nkind = \"redis\"\nurl = \"{scheme}://h1:7000,h2:7001/x\"\n"
            ));
            assert_eq!(c.store.kind, StoreKind::Redis);
            assert!(c.store.url.is_some());
        }
    }

    #[test]
    fn sessions_rules() {
        one_error(
            "[sessions]\ncodec = \"express\"\n",
            "sessions.secrets",
            "at least one secret",
        );
        one_error(
            "[sessions]\ncodec = \"express\"\nsecrets = []\n",
            "sessions.secrets",
            "at least one secret",
        );
        one_error(
            "[sessions]\ncodec = \"express\"\nsecrets = [\"\"]\n",
            "sessions.secrets[0]",
            "must not be empty",
        );
        one_error(
            "[sessions]\ncodec = \"jwt\"\n",
            "sessions.codec",
            "\"plain\" or \"express\"",
        );
        one_error(
            "[sessions]\ncookie = \"my sid\"\n",
            "sessions.cookie",
            "cookie name",
        );
        one_error(
            "[sessions]\ncookie = \"a;b\"\n",
            "sessions.cookie",
            "cookie name",
        );
        one_error(
            "[sessions]\nformat = \"xml\"\n",
            "sessions.format",
            "\"hash\" or \"json\"",
        );
        one_error(
            "[sessions]\nuser_field = \"\"\n",
            "sessions.user_field",
            "must not be empty",
        );
        one_error(
            "[sessions]\nformat = \"json\"\nuser_field = \"/a~2\"\n",
            "sessions.user_field",
            "JSON pointer",
        );
        one_error(
            "[sessions]\nsliding_ttl = \"60s\"\n",
            "sessions.sliding_ttl",
            "more than 60s",
        );
        one_error(
            "[sessions]\ncache_ttl = \"forever\"\n",
            "sessions.cache_ttl",
            "invalid duration",
        );
        let c = ok(
            "[sessions]\ncodec = \"express\"\nsecrets = [\"s1\", \"s2\"]\nformat = \"json\"\n\
                    user_field = \"/passport/user\"\nsliding_ttl = \"61s\"\ncache_ttl = \"5s\"\n\
                    cookie = \"connect.sid\"\nlist_fields = [\"roles\"]\nforward_cookie = false\n",
        );
        let s = c.sessions.expect("sessions");
        assert_eq!(s.secrets.len(), 2);
        assert_eq!(s.sliding_ttl, Duration::from_secs(61));
        assert_eq!(s.cookie, "connect.sid");
        assert!(!s.forward_cookie);
    }

    #[test]
    fn jwt_rules() {
        one_error(
            "[jwt]\nmax_token_bytes = 255\n",
            "jwt.max_token_bytes",
            "at least 256",
        );
        one_error("[jwt]\ncookie = \"a b\"\n", "jwt.cookie", "cookie name");
        assert_eq!(ok("[jwt]\ncookie = \"\"\n").jwt.cookie, None);
        assert_eq!(
            ok("[jwt]\ncookie = \"token\"\n").jwt.cookie.as_deref(),
            Some("token")
        );
    }

    #[test]
    fn provider_identity_rules() {
        one_error(
            "[[jwt.providers]]\nissuer = \"https://i\"\naudiences = [\"a\"]\n",
            "jwt.providers[0].name",
            "required",
        );
        one_error(
            "[[jwt.providers]]\nname = \"p\"\naudiences = [\"a\"]\n",
            "jwt.providers[0].issuer",
            "required",
        );
        one_error(
            &format!(
                "{PROVIDER}[[jwt.providers]]\nname = \"p\"\nissuer = \"https://other\"\naudiences = [\"a\"]\n"
            ),
            "jwt.providers[1].name",
            "duplicate provider name",
        );
        one_error(
            &format!(
                "{PROVIDER}[[jwt.providers]]\nname = \"q\"\nissuer = \"https://idp.example.com\"\naudiences = [\"a\"]\n"
            ),
            "jwt.providers[1].issuer",
            "duplicate issuer",
        );
    }

    #[test]
    fn provider_key_source_rules() {
        let dir = TempDir::new();
        dir.write("jwks.json", "{}");
        one_error_in(
            &dir,
            &provider("jwks_url = \"https://idp/jwks\"\njwks_file = \"jwks.json\""),
            "jwt.providers[0].jwks_file",
            "only one key source",
        );
        one_error_in(
            &dir,
            &provider("jwks_file = \"nope.json\""),
            "jwt.providers[0].jwks_file",
            "cannot read",
        );
        one_error(
            "[[jwt.providers]]\nname = \"p\"\nissuer = \"http://idp.example.com\"\naudiences = [\"a\"]\n",
            "jwt.providers[0].issuer",
            "https",
        );
        one_error(
            "[[jwt.providers]]\nname = \"p\"\nissuer = \"idp\"\naudiences = [\"a\"]\n",
            "jwt.providers[0].issuer",
            "OIDC discovery",
        );
        ok(
            "[[jwt.providers]]\nname = \"p\"\nissuer = \"http://127.0.0.1:9000\"\naudiences = [\"a\"]\n",
        );
        one_error(
            &provider("jwks_url = \"http://idp.example.com/jwks\""),
            "jwt.providers[0].jwks_url",
            "https",
        );
        for url in [
            "http://localhost:1/jwks",
            "http://127.0.0.2/jwks",
            "http://[::1]:8/jwks",
        ] {
            let c = ok(&provider(&format!("jwks_url = \"{url}\"")));
            assert!(matches!(&c.jwt.providers[0].key_source, KeySource::JwksUrl(u) if u == url));
        }
        let c = ok(&provider(
            "hmac_secret = \"s\"\nalgorithms = [\"HS256\", \"HS512\"]",
        ));
        assert!(
            matches!(&c.jwt.providers[0].key_source, KeySource::HmacSecret(s) if s.expose() == "s")
        );
        one_error(
            &provider("hmac_secret = \"\"\nalgorithms = [\"HS256\"]"),
            "jwt.providers[0].hmac_secret",
            "must not be empty",
        );
        // The default RS256 cannot verify with an HMAC secret.
        one_error(
            &provider("hmac_secret = \"s\""),
            "jwt.providers[0].algorithms",
            "cannot be used with hmac_secret",
        );
    }

    #[test]
    fn provider_algorithm_and_audience_rules() {
        one_error(
            &provider("algorithms = [\"none\"]"),
            "jwt.providers[0].algorithms[0]",
            "never allowed",
        );
        one_error(
            &provider("algorithms = [\"RS256\", \"NoNe\"]"),
            "jwt.providers[0].algorithms[1]",
            "never allowed",
        );
        one_error(
            &provider("algorithms = [\"rs256\"]"),
            "jwt.providers[0].algorithms[0]",
            "unknown algorithm",
        );
        one_error(
            &provider("algorithms = []"),
            "jwt.providers[0].algorithms",
            "at least one",
        );
        one_error(
            &provider("algorithms = [\"HS256\"]"),
            "jwt.providers[0].algorithms[0]",
            "needs hmac_secret",
        );
        one_error(
            &provider("jwks_url = \"https://idp/jwks\"\nalgorithms = [\"ES256\", \"HS384\"]"),
            "jwt.providers[0].algorithms[1]",
            "needs hmac_secret",
        );
        one_error(
            &provider("hmac_secret = \"s\"\nalgorithms = [\"HS256\", \"RS256\"]"),
            "jwt.providers[0].algorithms[1]",
            "cannot be used",
        );
        let c = ok(&provider("algorithms = [\"ES256\", \"EdDSA\", \"PS512\"]"));
        assert_eq!(
            c.jwt.providers[0].algorithms,
            vec![
                JwtAlgorithm::ES256,
                JwtAlgorithm::EdDSA,
                JwtAlgorithm::PS512
            ]
        );

        let base = "[[jwt.providers]]\nname = \"p\"\nissuer = \"https://i\"\n";
        one_error(base, "jwt.providers[0].audiences", "required");
        one_error(
            &format!("{base}audiences = []\n"),
            "jwt.providers[0].audiences",
            "at least one",
        );
        one_error(
            &format!("{base}audiences = [\"a\", \"\"]\n"),
            "jwt.providers[0].audiences[1]",
            "must not be empty",
        );
        one_error(
            &provider("audience_claim = \"\""),
            "jwt.providers[0].audience_claim",
            "must not be empty",
        );
        assert_eq!(
            ok(&provider("audience_claim = \"client_id\""))
                .jwt
                .providers[0]
                .audience_claim,
            "client_id"
        );
    }

    #[test]
    fn provider_timing_claims_and_files() {
        let c = ok(&provider(
            "max_token_lifetime = \"1h\"\nleeway = \"0s\"\nclaims = { token_use = \"access\", level = 3, ratio = 0.5, admin = true }",
        ));
        let p = &c.jwt.providers[0];
        assert_eq!(p.max_token_lifetime, Some(Duration::from_secs(3600)));
        assert_eq!(p.leeway, Duration::ZERO);
        assert_eq!(p.claims["token_use"], serde_json::json!("access"));
        assert_eq!(p.claims["level"], serde_json::json!(3));
        assert_eq!(p.claims["ratio"], serde_json::json!(0.5));
        assert_eq!(p.claims["admin"], serde_json::json!(true));
        one_error(
            &provider("claims = { groups = [\"a\"] }"),
            "jwt.providers[0].claims.groups",
            "string, integer, float or boolean",
        );
        one_error(
            &provider("claims = { x = { y = 1 } }"),
            "jwt.providers[0].claims.x",
            "string, integer",
        );
        one_error(
            &provider("refresh_interval = \"1m\"\nmin_refresh_interval = \"2m\""),
            "jwt.providers[0].min_refresh_interval",
            "must not exceed refresh_interval",
        );
        ok(&provider(
            "refresh_interval = \"1m\"\nmin_refresh_interval = \"1m\"",
        ));
        one_error(
            &provider("fetch_timeout = \"0s\""),
            "jwt.providers[0].fetch_timeout",
            "greater than 0s",
        );
        one_error(
            &provider("ca_file = \"nope.pem\""),
            "jwt.providers[0].ca_file",
            "cannot read",
        );
        one_error(
            &provider("max_stale = \"a while\""),
            "jwt.providers[0].max_stale",
            "invalid duration",
        );
    }

    #[test]
    fn upstream_rules() {
        one_error(
            "[[upstreams]]\ntargets = [\"http://h:1\"]\n",
            "upstreams[0].name",
            "required",
        );
        one_error(
            &format!("{UPSTREAM}{UPSTREAM}"),
            "upstreams[1].name",
            "duplicate upstream name \"app\"",
        );
        one_error(
            "[[upstreams]]\nname = \"a\"\n",
            "upstreams[0].targets",
            "required",
        );
        one_error(
            "[[upstreams]]\nname = \"a\"\ntargets = []\n",
            "upstreams[0].targets",
            "at least one",
        );
        for (target, fragment) in [
            ("ftp://h:1", "http:// or https://"),
            ("127.0.0.1:3000", "http:// or https://"),
            ("http://h:1/base", "path"),
            ("http://h:1/?x=1", "path"),
            ("http://user@h:1", "user info"),
            ("http://", "valid URL"),
        ] {
            one_error(
                &format!("[[upstreams]]\nname = \"a\"\ntargets = [\"{target}\"]\n"),
                "upstreams[0].targets[0]",
                fragment,
            );
        }
        let c = ok(
            "[[upstreams]]\nname = \"a\"\ntargets = [\"http://h\", \"https://h\", \"http://h:8/\", \"http://[::1]:9\"]\n",
        );
        let t: Vec<String> = c.upstreams[0]
            .targets
            .iter()
            .map(|t| format!("{}://{}", t.scheme, t.authority))
            .collect();
        assert_eq!(
            t,
            vec![
                "http://h:80",
                "https://h:443",
                "http://h:8",
                "http://[::1]:9"
            ]
        );
        assert_eq!(c.upstreams[0].targets[0].configured, "http://h");
        one_error(
            &format!("{UPSTREAM}balance = \"random\"\n"),
            "upstreams[0].balance",
            "\"round_robin\" or",
        );
        assert_eq!(
            ok(&format!("{UPSTREAM}balance = \"user_hash\"\n")).upstreams[0].balance,
            Balance::UserHash
        );
        one_error(
            &format!("{UPSTREAM}retries = 6\n"),
            "upstreams[0].retries",
            "between 0 and 5",
        );
        one_error(
            &format!("{UPSTREAM}retries = -1\n"),
            "upstreams[0].retries",
            "between 0 and 5",
        );
        assert_eq!(
            ok(&format!("{UPSTREAM}retries = 5\n")).upstreams[0].retries,
            5
        );
        one_error(
            &format!("{UPSTREAM}connect_timeout = \"0s\"\n"),
            "upstreams[0].connect_timeout",
            "greater than 0s",
        );
        let hc = format!("{UPSTREAM}[upstreams.health_check]\n");
        one_error(
            &format!("{hc}path = \"healthz\"\n"),
            "upstreams[0].health_check.path",
            "start with \"/\"",
        );
        one_error(
            &format!("{hc}interval = \"0s\"\n"),
            "upstreams[0].health_check.interval",
            "greater than 0s",
        );
        one_error(
            &format!("{hc}unhealthy_after = 0\n"),
            "upstreams[0].health_check.unhealthy_after",
            "at least 1",
        );
        one_error(
            &format!("{hc}healthy_after = 0\n"),
            "upstreams[0].health_check.healthy_after",
            "at least 1",
        );
    }

    #[test]
    fn route_paths() {
        for (path, fragment) in [
            ("api", "start with"),
            ("/a/../b", "segments"),
            ("/a/./b", "segments"),
            ("/..", "segments"),
            ("/a//b", "//"),
            ("/a%2Fb", "%"),
            ("/a?x", "?"),
            ("/a#x", "#"),
        ] {
            one_error(
                &route(&format!("path = \"{path}\"")),
                "routes[0].path",
                fragment,
            );
        }
        assert_eq!(ok(&route("path = \"/api/\"")).routes[0].path, "/api");
        assert_eq!(ok(&route("path = \"/\"")).routes[0].path, "/");
        assert_eq!(ok(&route("path = \"/api/v1\"")).routes[0].name, "/api/v1");
    }

    #[test]
    fn route_hosts_names_and_methods() {
        for (host, fragment) in [
            ("*", "\"*\" only"),
            ("a.*.com", "\"*\" only"),
            ("*.*.com", "\"*\" only"),
            ("app.example.com:8080", "port"),
            ("", "must not be empty"),
            ("a..b", "host name"),
        ] {
            one_error(
                &route(&format!("host = \"{host}\"")),
                "routes[0].host",
                fragment,
            );
        }
        let c = ok(&route("host = \"*.Example.COM\"\npath = \"/x\""));
        assert_eq!(
            c.routes[0].host,
            Some(HostPattern::Wildcard(".example.com".into()))
        );
        assert_eq!(c.routes[0].name, "*.example.com/x");
        let c = ok(&route("host = \"App.Example.com\""));
        assert_eq!(
            c.routes[0].host,
            Some(HostPattern::Exact("app.example.com".into()))
        );
        assert_eq!(c.routes[0].name, "app.example.com/");

        one_error(&route("name = \"\""), "routes[0].name", "must not be empty");
        one_error(
            &format!(
                "{}[[routes]]\nname = \"x\"\npath = \"/b\"\nupstream = \"app\"\n",
                route("name = \"x\"")
            ),
            "routes[1].name",
            "duplicate route name \"x\"",
        );
        // Same default name, different place: "a.com" + "/b" vs "a.com/b" can't clash, but
        // two routes can be named like another's default.
        one_error(
            &format!(
                "{}[[routes]]\npath = \"/api\"\nupstream = \"app\"\n",
                route("name = \"/api\"\npath = \"/other\"")
            ),
            "routes[1].name",
            "default name \"/api\"",
        );
        one_error(
            &format!(
                "{}[[routes]]\nname = \"b\"\npath = \"/api/\"\nupstream = \"app\"\n",
                route("path = \"/api\"")
            ),
            "routes[1].path",
            "same host and path as routes[0]",
        );
        ok(&format!(
            "{}[[routes]]\nhost = \"a.com\"\nupstream = \"app\"\n",
            route("")
        ));

        let c = ok(&route("methods = [\"get\", \"POST\", \"PROPFIND\"]"));
        let m: Vec<&str> = c.routes[0].methods.iter().map(|m| m.as_str()).collect();
        assert_eq!(m, vec!["GET", "POST", "PROPFIND"]);
        one_error(
            &route("methods = [\"GET\", \"get\"]"),
            "routes[0].methods[1]",
            "duplicate method",
        );
        one_error(
            &route("methods = [\"G ET\"]"),
            "routes[0].methods[0]",
            "not a valid HTTP method",
        );
        one_error(
            &route("methods = [\"\"]"),
            "routes[0].methods[0]",
            "not a valid HTTP method",
        );
    }

    #[test]
    fn route_upstream_auth_and_accept() {
        one_error(
            &format!("{UPSTREAM}[[routes]]\npath = \"/\"\n"),
            "routes[0].upstream",
            "required",
        );
        one_error(
            &format!("{UPSTREAM}[[routes]]\nupstream = \"nope\"\n"),
            "routes[0].upstream",
            "no upstream named \"nope\"",
        );
        let two = "[[upstreams]]\nname = \"b\"\ntargets = [\"http://h:1\"]\n";
        let c = ok(&format!("{two}{}", route("")));
        assert_eq!(c.routes[0].upstream, 1);
        assert_eq!(c.upstreams[1].name, "app");

        one_error(
            &route("auth = \"maybe\""),
            "routes[0].auth",
            "\"required\" or \"optional\" or \"public\"",
        );
        assert_eq!(
            ok(&route("auth = \"optional\"")).routes[0].auth,
            AuthMode::Optional
        );

        // Default accept: the configured kinds, jwt first.
        assert!(ok(&route("")).routes[0].accept.is_empty());
        assert_eq!(
            ok(&format!("[sessions]\n{}", route(""))).routes[0].accept,
            vec![CredentialKind::Session]
        );
        assert_eq!(
            ok(&format!("{PROVIDER}{}", route(""))).routes[0].accept,
            vec![CredentialKind::Jwt]
        );
        let both = format!("[sessions]\n{PROVIDER}");
        assert_eq!(
            ok(&format!(
                "{both}{}",
                route("accept = [\"session\", \"jwt\"]")
            ))
            .routes[0]
                .accept,
            vec![CredentialKind::Session, CredentialKind::Jwt]
        );
        one_error(
            &format!("{PROVIDER}{}", route("accept = [\"session\"]")),
            "routes[0].accept[0]",
            "not configured",
        );
        one_error(
            &format!("[sessions]\n{}", route("accept = [\"jwt\"]")),
            "routes[0].accept[0]",
            "not configured",
        );
        one_error(
            &format!("{both}{}", route("accept = [\"basic\"]")),
            "routes[0].accept[0]",
            "\"jwt\" or \"session\"",
        );
        one_error(
            &format!("{both}{}", route("accept = [\"jwt\", \"jwt\"]")),
            "routes[0].accept[1]",
            "duplicate",
        );
        one_error(
            &format!("{both}{}", route("accept = []")),
            "routes[0].accept",
            "must not be empty",
        );
        let c = ok(&format!(
            "{both}{}",
            route("accept = []\nauth = \"public\"")
        ));
        assert!(c.routes[0].accept.is_empty());
    }

    #[test]
    fn route_require_redirect_and_csrf() {
        let c = ok(&route(
            "require = { roles = [\"admin\", \"ops\"], token_use = \"access\" }",
        ));
        assert_eq!(c.routes[0].require["roles"], vec!["admin", "ops"]);
        assert_eq!(c.routes[0].require["token_use"], vec!["access"]);
        one_error(
            &route("require = { roles = [] }"),
            "routes[0].require.roles",
            "at least one value",
        );
        one_error(
            &route("require = { roles = [\"\"] }"),
            "routes[0].require.roles[0]",
            "must not be empty",
        );
        one_error(
            &route("require = { roles = 3 }"),
            "routes[0].require.roles",
            "invalid type",
        );
        one_error(
            &route("require = { roles = \"a\" }\nauth = \"public\""),
            "routes[0].require",
            "no effect",
        );

        one_error(
            &route("on_unauthenticated = \"login\""),
            "routes[0].on_unauthenticated",
            "\"deny\" or \"redirect\"",
        );
        one_error(
            &route("on_unauthenticated = \"redirect\""),
            "routes[0].login_url",
            "needs login_url",
        );
        one_error(
            &route("on_unauthenticated = \"redirect\"\nlogin_url = \"\""),
            "routes[0].login_url",
            "needs login_url",
        );
        one_error(
            &route("on_unauthenticated = \"redirect\"\nlogin_url = \"/login?rd={url}\""),
            "routes[0].login_url",
            "absolute",
        );
        one_error(
            &route("on_unauthenticated = \"redirect\"\nlogin_url = \"ftp://login/\""),
            "routes[0].login_url",
            "absolute http",
        );
        let c = ok(&route(
            "on_unauthenticated = \"redirect\"\nlogin_url = \"https://login.example.com/?rd={url}\"",
        ));
        assert_eq!(
            c.routes[0].on_unauthenticated,
            OnUnauthenticated::Redirect("https://login.example.com/?rd={url}".into())
        );
        // login_url without redirect is allowed (and unused).
        assert_eq!(
            ok(&route("login_url = \"https://l/\"")).routes[0].on_unauthenticated,
            OnUnauthenticated::Deny
        );

        one_error(
            &route("csrf = \"strict\""),
            "routes[0].csrf",
            "\"off\" or \"origin\"",
        );
        assert_eq!(ok(&route("csrf = \"origin\"")).routes[0].csrf, Csrf::Origin);
    }

    #[test]
    fn identity_rules() {
        let c = ok("[identity]\nstrip = [\"X-Internal-*\", \"x_user.name\"]\nheaders = {}\n");
        assert_eq!(
            c.identity.strip,
            vec![
                HeaderPattern::Prefix("x-internal-".into()),
                HeaderPattern::Exact("x-user-name".into())
            ]
        );
        assert!(c.identity.headers.is_empty());
        one_error(
            "[identity]\nstrip = [\"*\"]\n",
            "identity.strip[0]",
            "every header",
        );
        one_error(
            "[identity]\nstrip = [\"X-*-A\"]\n",
            "identity.strip[0]",
            "only at the end",
        );
        one_error(
            "[identity]\nstrip = [\"X A\"]\n",
            "identity.strip[0]",
            "header name",
        );
        one_error(
            "[identity]\nstrip = [\"\"]\n",
            "identity.strip[0]",
            "must not be empty",
        );

        // File order, not alphabetical.
        let c = ok(
            "[identity]\nheaders = { \"X-User\" = \"sub\", \"X-Email\" = \"email\", \"A-Roles\" = \"roles\" }\n",
        );
        let h: Vec<(&str, &str)> = c
            .identity
            .headers
            .iter()
            .map(|(h, c)| (h.as_str(), c.as_str()))
            .collect();
        assert_eq!(
            h,
            vec![
                ("x-user", "sub"),
                ("x-email", "email"),
                ("a-roles", "roles")
            ]
        );
        one_error(
            "[identity]\nheaders = { \"X User\" = \"sub\" }\n",
            "identity.headers.\"X User\"",
            "header name",
        );
        one_error(
            "[identity]\nheaders = { \"X-User\" = \"\" }\n",
            "identity.headers.X-User",
            "must not be empty",
        );
        one_error(
            "[identity]\nheaders = { \"X-User\" = \"sub\", \"x_user\" = \"email\" }\n",
            "identity.headers.x_user",
            "same header",
        );
    }

    #[test]
    fn assertion_rules() {
        let dir = TempDir::new();
        dir.write("assertion.pem", "pem");
        one_error_in(
            &dir,
            "[identity.assertion]\n",
            "identity.assertion.key_file",
            "required",
        );
        one_error_in(
            &dir,
            "[identity.assertion]\nkey_file = \"nope.pem\"\n",
            "identity.assertion.key_file",
            "cannot read",
        );
        let base = "[identity.assertion]\nkey_file = \"assertion.pem\"\n";
        one_error_in(
            &dir,
            &format!("{base}ttl = \"2h\"\n"),
            "identity.assertion.ttl",
            "at most 1h",
        );
        one_error_in(
            &dir,
            &format!("{base}ttl = \"0s\"\n"),
            "identity.assertion.ttl",
            "greater than 0s",
        );
        one_error_in(
            &dir,
            &format!("{base}header = \"X Assert\"\n"),
            "identity.assertion.header",
            "header name",
        );
        one_error_in(
            &dir,
            &format!("{base}issuer = \"\"\n"),
            "identity.assertion.issuer",
            "must not be empty",
        );
        let a = load_in(&dir, base)
            .expect("valid")
            .identity
            .assertion
            .expect("assertion");
        assert_eq!(a.header.as_str(), "x-auth-assertion");
        assert_eq!(a.key_file, dir.path().join("assertion.pem"));
        assert_eq!(a.issuer, "wristband");
        assert_eq!(a.ttl, Duration::from_secs(60));
        let a = load_in(&dir, &format!("{base}ttl = \"1h\"\n"))
            .expect("valid")
            .identity
            .assertion
            .expect("a");
        assert_eq!(a.ttl, Duration::from_secs(3600));
    }

    #[test]
    fn all_errors_are_collected_not_just_the_first() {
        let errs = errors(&format!(
            "[server]\nmax_connections = 0\nidle_timeout = \"x\"\n[log]\nformat = \"xml\"\n{UPSTREAM}retries = 9\n\
             [[routes]]\nupstream = \"nope\"\npath = \"x\"\ncsrf = \"y\"\n"
        ));
        assert_eq!(errs.len(), 7, "{errs:#?}");
    }
}
