//! Configuration: the TOML file of SPEC §3, turned into validated types.
//!
//! Two layers, as in sozu and ripgrep: `raw` mirrors the file with serde and
//! knows nothing of meaning; `validate` turns it into the types below, where
//! every duration is a `Duration`, every reference is resolved and every
//! invariant the proxy relies on already holds. `load` reads the file, keeps
//! the position of every key and reports all errors at once, as
//! `FILE:LINE:COL: key.path: message` (SPEC §2).

mod diag;
mod error;
mod load;
mod raw;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_prop;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors};

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for reloads and messages).
    pub source: PathBuf,
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    /// `None`: no `[sessions]` table, so no session authentication.
    pub sessions: Option<SessionsConfig>,
    pub jwt: JwtConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    pub identity: IdentityConfig,
    /// `None`: no `[login]` table, so sessions come from elsewhere.
    pub login: Option<LoginConfig>,
    /// `None`: no `[forward_auth]` table, the endpoint is off (SPEC §8).
    pub forward_auth: Option<ForwardAuthConfig>,
    /// `None`: no `[revocation]` table, tokens are never looked up (SPEC §9).
    pub revocation: Option<RevocationConfig>,
}

impl Config {
    /// Reads, parses and validates `path`, reporting every error found.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        load::load_file(path)
    }

    /// Parses and validates TOML text; `source` only names it in messages.
    pub fn from_toml(source: &Path, text: &str) -> Result<Config, ConfigErrors> {
        load::load_str(source, text)
    }

    /// One line for `wristband check`.
    pub fn summary(&self) -> String {
        format!(
            "{}: ok ({} listener(s), {} route(s), {} upstream(s), {} JWT provider(s), sessions {}, login {}, store {})",
            self.source.display(),
            self.server.listen.len(),
            self.routes.len(),
            self.upstreams.len(),
            self.jwt.providers.len(),
            if self.sessions.is_some() { "on" } else { "off" },
            if self.login.is_some() { "on" } else { "off" },
            self.store.kind.as_str(),
        )
    }
}

/// A secret value: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub headers_with_underscores: UnderscoreHeaders,
    pub tls: Option<TlsConfig>,
}

/// The defaults and bounds of `[server]` (SPEC §3).
impl ServerConfig {
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
    pub const MIN_MAX_HEADER_BYTES: usize = 1024;
    pub const MAX_MAX_HEADER_BYTES: usize = 1024 * 1024;
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderscoreHeaders {
    Drop,
    Reject,
    Allow,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// `admin.token` / `admin.token_file`: enables `POST /revoke` (SPEC §9).
    pub token: Option<Secret>,
}

/// The defaults and bounds of `[admin]` (SPEC §3).
impl AdminConfig {
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9090));
    /// A shorter bearer token could be guessed; 16 characters of a
    /// generated token are ~96 bits.
    pub const MIN_TOKEN_LEN: usize = 16;
}

/// `[forward_auth]` (SPEC §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    /// Normalized, as a route path is; never `/`.
    pub path: String,
}

impl ForwardAuthConfig {
    pub const DEFAULT_PATH: &str = "/_wristband/auth";
}

/// `[revocation]` (SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    pub propagation: Duration,
}

impl RevocationConfig {
    pub const DEFAULT_PROPAGATION: Duration = Duration::from_secs(1);
    /// How long a `sub` revocation is kept when no provider bounds token
    /// lifetimes (`max_token_lifetime`).
    pub const DEFAULT_SUB_TTL: Duration = Duration::from_secs(24 * 3600);
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive, already checked to parse.
    pub level: String,
    pub access_log: bool,
}

/// The defaults of `[log]` (SPEC §3).
impl LogConfig {
    pub const DEFAULT_LEVEL: &str = "info";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// Redis only; may carry a password, hence a secret.
    pub url: Option<Secret>,
    pub command_timeout: Duration,
    pub read_from_replicas: bool,
    pub ca_file: Option<PathBuf>,
}

/// The defaults of `[store]` (SPEC §3).
impl StoreConfig {
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Redis,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionsConfig {
    pub cookie: String,
    pub codec: CookieCodec,
    /// Express codec: the first signs, every one verifies. Non-empty then.
    pub secrets: Vec<Secret>,
    pub key_prefix: String,
    pub format: SessionFormat,
    pub user_field: String,
    pub list_fields: Vec<String>,
    pub forward_cookie: bool,
    pub cache_ttl: Duration,
    pub sliding_ttl: Duration,
}

/// The defaults and bounds of `[sessions]` (SPEC §3).
impl SessionsConfig {
    pub const DEFAULT_COOKIE: &str = "sid";
    pub const DEFAULT_KEY_PREFIX: &str = "sessions:";
    pub const DEFAULT_USER_FIELD: &str = "user_id";
    /// A non-zero `sliding_ttl` must exceed this: keys are refreshed when
    /// their TTL drops below `sliding_ttl` minus this margin.
    pub const SLIDING_TTL_MARGIN: Duration = Duration::from_secs(60);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieCodec {
    Plain,
    Express,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFormat {
    Hash,
    Json,
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub header: bool,
    /// Name of a cookie carrying a JWT, if any.
    pub cookie: Option<String>,
    pub forward_token: bool,
    pub max_token_bytes: usize,
    /// Verified tokens remembered (signature check skipped); 0: none.
    pub verified_cache_size: u64,
    pub providers: Vec<JwtProvider>,
}

/// The defaults and bounds of `[jwt]` (SPEC §3).
impl JwtConfig {
    pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
    pub const MIN_MAX_TOKEN_BYTES: usize = 256;
    pub const DEFAULT_VERIFIED_CACHE_SIZE: u64 = 100_000;
    pub const MAX_VERIFIED_CACHE_SIZE: u64 = 10_000_000;
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtProvider {
    pub name: String,
    pub issuer: String,
    pub key_source: KeySource,
    /// Never empty.
    pub audiences: Vec<String>,
    pub audience_claim: String,
    /// Never empty, never `none`; HMAC only with `KeySource::HmacSecret`.
    pub algorithms: Vec<JwtAlgorithm>,
    pub leeway: Duration,
    /// `None` when 0s (no limit).
    pub max_token_lifetime: Option<Duration>,
    /// Exact-match claims, as JSON values (TOML strings, numbers, booleans).
    pub claims: BTreeMap<String, serde_json::Value>,
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    pub fetch_timeout: Duration,
    pub max_stale: Duration,
    pub ca_file: Option<PathBuf>,
}

/// The defaults of `[[jwt.providers]]` (SPEC §3).
impl JwtProvider {
    pub const DEFAULT_AUDIENCE_CLAIM: &str = "aud";
    pub const DEFAULT_ALGORITHM: JwtAlgorithm = JwtAlgorithm::RS256;
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
    pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
    pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
    pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
}

#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    JwksUrl(String),
    /// OIDC discovery from `issuer`.
    Discovery,
    JwksFile(PathBuf),
    HmacSecret(Secret),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwtAlgorithm {
    pub const ALL: [JwtAlgorithm; 12] = [
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
        JwtAlgorithm::RS256,
        JwtAlgorithm::RS384,
        JwtAlgorithm::RS512,
        JwtAlgorithm::PS256,
        JwtAlgorithm::PS384,
        JwtAlgorithm::PS512,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::HS384 => "HS384",
            JwtAlgorithm::HS512 => "HS512",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::RS384 => "RS384",
            JwtAlgorithm::RS512 => "RS512",
            JwtAlgorithm::PS256 => "PS256",
            JwtAlgorithm::PS384 => "PS384",
            JwtAlgorithm::PS512 => "PS512",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::ES384 => "ES384",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// Exact, case-sensitive, as RFC 7518 spells them.
    pub fn parse(name: &str) -> Option<JwtAlgorithm> {
        JwtAlgorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    /// Never empty.
    pub targets: Vec<Target>,
    pub balance: Balance,
    pub preserve_host: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: u32,
    pub health_check: Option<HealthCheck>,
}

/// The defaults and bounds of `[[upstreams]]` (SPEC §3).
impl UpstreamConfig {
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_RETRIES: u32 = 1;
    pub const MAX_RETRIES: u32 = 5;
}

/// One upstream target: `http://host:port` (a base path is not allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As written in the file: the `target` label of metrics.
    pub configured: String,
    pub scheme: http::uri::Scheme,
    /// Always with its port (the scheme's default when none was written).
    pub authority: http::uri::Authority,
}

impl Target {
    /// The port of `http` (80) or `https` (443), the only schemes a target
    /// may have.
    pub fn default_port(scheme: &http::uri::Scheme) -> u16 {
        if *scheme == http::uri::Scheme::HTTPS {
            443
        } else {
            80
        }
    }

    /// `host[:port]` as a Host header, the port left out when it is the
    /// scheme's default.
    pub fn host_header(&self) -> Option<http::HeaderValue> {
        let host = match self.authority.port_u16() {
            Some(port) if port == Self::default_port(&self.scheme) => self.authority.host(),
            _ => self.authority.as_str(),
        };
        http::HeaderValue::from_str(host).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastRequests,
    UserHash,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
}

/// The defaults of `[upstreams.health_check]` (SPEC §3).
impl HealthCheck {
    pub const DEFAULT_PATH: &str = "/healthz";
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    pub const DEFAULT_UNHEALTHY_AFTER: u32 = 3;
    pub const DEFAULT_HEALTHY_AFTER: u32 = 2;
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Default `<host><path>`; the `route` label of metrics.
    pub name: String,
    pub host: Option<HostPattern>,
    /// Normalized; no trailing `/` except the root `/`.
    pub path: String,
    /// Empty: any method.
    pub methods: Vec<http::Method>,
    /// Index into `Config::upstreams`; `None` only with `[forward_auth]`,
    /// for a route the edge proxies itself (proxying to it is 404).
    pub upstream: Option<usize>,
    pub auth: AuthMode,
    /// Never empty when `auth` is not `Public` and some kind is configured.
    pub accept: Vec<CredentialKind>,
    /// claim -> any-of values; every key must hold.
    pub require: BTreeMap<String, Vec<String>>,
    pub on_unauthenticated: OnUnauthenticated,
    pub csrf: Csrf,
}

#[cfg(test)]
impl RouteConfig {
    /// A `required` route on `/` with every optional rule off, for unit
    /// tests to adjust with struct-update syntax.
    pub fn for_tests() -> RouteConfig {
        RouteConfig {
            name: "r".into(),
            host: None,
            path: "/".into(),
            methods: Vec::new(),
            upstream: Some(0),
            auth: AuthMode::Required,
            accept: Vec::new(),
            require: BTreeMap::new(),
            on_unauthenticated: OnUnauthenticated::Deny,
            csrf: Csrf::Off,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Lower-case, without port.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: any depth, not the apex.
    Wildcard(String),
}

impl HostPattern {
    /// Whether `host` (without port) is one this pattern names, ASCII case
    /// ignored, without allocating.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => host.eq_ignore_ascii_case(exact),
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Optional,
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Jwt,
    Session,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Jwt => "jwt",
            CredentialKind::Session => "session",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnUnauthenticated {
    Deny,
    /// `login_url`, with `{url}` still in it.
    Redirect(String),
    /// Into wristband's own login flow (`[login]`, SPEC §7).
    Login,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csrf {
    Off,
    Origin,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub strip: Vec<HeaderPattern>,
    /// Header -> claim, in file order.
    pub headers: Vec<(http::HeaderName, String)>,
    pub assertion: Option<AssertionConfig>,
}

/// A header name pattern from `identity.strip`, kept in canonical form
/// (lower case, `_` and `.` read as `-`) so that aliases match (SPEC §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderPattern {
    Exact(String),
    /// `X-Auth-*`: stored as the canonical prefix `x-auth-`.
    Prefix(String),
}

#[derive(Debug, Clone)]
pub struct AssertionConfig {
    pub header: http::HeaderName,
    pub key_file: PathBuf,
    pub issuer: String,
    pub ttl: Duration,
}

/// The canonical form used to compare header names: ASCII lower case, with
/// `_` and `.` read as `-` (SPEC §5.2).
pub fn canonical_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' | b'.' => '-',
            b => b.to_ascii_lowercase() as char,
        })
        .collect()
}

/// `[login]` (SPEC §7): wristband logs browsers in at an OpenID provider
/// and writes the sessions `[sessions]` then enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginConfig {
    /// As written: discovery is at `<issuer>/.well-known/...`, and the
    /// discovered `issuer` must equal it.
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE alone).
    pub client_secret: Option<Secret>,
    pub redirect_uri: String,
    /// `redirect_uri`'s path: where the IdP sends the browser back.
    pub callback_path: String,
    pub scopes: Vec<String>,
    pub login_path: String,
    pub logout_path: String,
    pub claims: Vec<String>,
    pub session_ttl: Duration,
    pub persistent: bool,
    /// Zero: sessions are never re-validated with the IdP.
    pub refresh_interval: Duration,
    pub allowed_redirect_hosts: Vec<HostPattern>,
    pub post_logout_redirect: String,
    /// Each 32 bytes in base64 (checked); the first encrypts.
    pub encryption_keys: Vec<Secret>,
    pub cookie_secure: bool,
    pub ca_file: Option<PathBuf>,
}

/// The defaults and fixed values of `[login]` (SPEC §7).
impl LoginConfig {
    pub const DEFAULT_SCOPES: &[&str] = &["openid", "email", "profile"];
    pub const DEFAULT_LOGIN_PATH: &str = "/_wristband/login";
    pub const DEFAULT_LOGOUT_PATH: &str = "/_wristband/logout";
    pub const DEFAULT_CLAIMS: &[&str] = &["sub", "email", "name", "groups"];
    pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
    pub const DEFAULT_POST_LOGOUT_REDIRECT: &str = "/";
    /// How long a started login may take to come back (the state's TTL and
    /// the binding cookie's Max-Age).
    pub const STATE_TTL: Duration = Duration::from_secs(600);
    /// Bound on every exchange with the IdP (discovery, token, userinfo).
    pub const IDP_TIMEOUT: Duration = Duration::from_secs(5);

    /// The cookie that binds a started login to the browser that started it.
    pub fn binding_cookie(&self) -> &'static str {
        if self.cookie_secure {
            "__Host-wristband-login"
        } else {
            "wristband-login"
        }
    }
}
