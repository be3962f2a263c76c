//! [jwt] and [[jwt.providers]].

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use crate::config::diag::{self, join};
use crate::config::raw::{RawJwt, RawProvider};
use crate::config::{JwtAlgorithm, JwtConfig, JwtProvider, KeySource, Secret};

use super::{REQUIRED, Reported, V, earlier_use, is_token};

/// A provider's key source as the file names it, before it is known to be
/// usable. An HMAC secret that could not be read (already reported) is
/// `UnreadableHmac`, never a stand-in value: the rules that depend on the
/// kind of source still run, and no provider is built from it.
enum NamedSource {
    Usable(KeySource),
    UnreadableHmac,
}

impl NamedSource {
    fn is_hmac(&self) -> bool {
        matches!(
            self,
            NamedSource::Usable(KeySource::HmacSecret(_)) | NamedSource::UnreadableHmac
        )
    }
}

impl V<'_, '_> {
    pub(super) fn jwt(&mut self, raw: RawJwt, providers: Vec<Option<RawProvider>>) -> JwtConfig {
        let t = "jwt";
        let cookie = self.jwt_cookie(&join(t, "cookie"), raw.cookie);
        let max_token_bytes = self.int_in(
            &join(t, "max_token_bytes"),
            raw.max_token_bytes,
            JwtConfig::DEFAULT_MAX_TOKEN_BYTES,
            JwtConfig::MIN_MAX_TOKEN_BYTES,
            None,
        );
        let verified_cache_size = self.int_in(
            &join(t, "verified_cache_size"),
            raw.verified_cache_size,
            JwtConfig::DEFAULT_VERIFIED_CACHE_SIZE,
            0,
            Some(JwtConfig::MAX_VERIFIED_CACHE_SIZE),
        );
        let providers = self.providers(&join(t, "providers"), providers);
        JwtConfig {
            header: raw.header.unwrap_or(true),
            cookie,
            forward_token: raw.forward_token.unwrap_or(true),
            max_token_bytes,
            verified_cache_size,
            providers,
        }
    }

    /// `""` means no cookie; any other name must be an RFC 6265 token.
    fn jwt_cookie(&mut self, path: &str, cookie: Option<String>) -> Option<String> {
        let cookie = cookie.filter(|c| !c.is_empty())?;
        if !is_token(&cookie) {
            self.err(
                path,
                format!("\"{cookie}\" is not a valid cookie name (RFC 6265 token)"),
            );
        }
        Some(cookie)
    }

    /// Every provider, each with a name and an issuer of its own. A provider
    /// that failed to deserialize, or whose secret could not be read, is
    /// left out (its errors are already reported).
    fn providers(&mut self, path: &str, raws: Vec<Option<RawProvider>>) -> Vec<JwtProvider> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut issuers: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, raw) in raws.into_iter().enumerate() {
            let Some(raw) = raw else { continue };
            let p = diag::index(path, i);
            if let Some(name) = raw.name.as_deref()
                && let Some(first) = earlier_use(&mut names, name, i)
            {
                self.err(
                    &join(&p, "name"),
                    format!("duplicate provider name \"{name}\" (also jwt.providers[{first}])"),
                );
            }
            if let Some(issuer) = raw.issuer.as_deref()
                && let Some(first) = earlier_use(&mut issuers, issuer, i)
            {
                self.err(
                    &join(&p, "issuer"),
                    format!("duplicate issuer \"{issuer}\" (also jwt.providers[{first}]): the issuer selects the provider"),
                );
            }
            out.extend(self.provider(&p, raw));
        }
        out
    }

    /// `None` when the provider's HMAC secret could not be read; every rule
    /// is still checked.
    fn provider(&mut self, p: &str, mut raw: RawProvider) -> Option<JwtProvider> {
        let name = self
            .required_str(&join(p, "name"), raw.name.as_deref())
            .unwrap_or_default()
            .to_owned();
        let issuer_path = join(p, "issuer");
        let issuer = self
            .required_str(&issuer_path, raw.issuer.as_deref())
            .unwrap_or_default()
            .to_owned();
        let source = self.key_source(p, &mut raw);
        if matches!(source, NamedSource::Usable(KeySource::Discovery)) {
            self.discovery_issuer(&issuer_path, &issuer);
        }
        let audiences = self.audiences(&join(p, "audiences"), raw.audiences);
        let audience_claim = self.non_empty(
            &join(p, "audience_claim"),
            raw.audience_claim,
            JwtProvider::DEFAULT_AUDIENCE_CLAIM,
        );
        let algorithms = self.algorithms(&join(p, "algorithms"), raw.algorithms, &source);
        let leeway = self.duration(
            &join(p, "leeway"),
            raw.leeway.as_deref(),
            JwtProvider::DEFAULT_LEEWAY,
        );
        let lifetime = self.duration(
            &join(p, "max_token_lifetime"),
            raw.max_token_lifetime.as_deref(),
            Duration::ZERO,
        );
        let claims = self.exact_claims(&join(p, "claims"), raw.claims.unwrap_or_default());
        let refresh_interval = self.positive_duration(
            &join(p, "refresh_interval"),
            raw.refresh_interval.as_deref(),
            JwtProvider::DEFAULT_REFRESH_INTERVAL,
        );
        let min_refresh_interval = self.min_refresh_interval(
            &join(p, "min_refresh_interval"),
            raw.min_refresh_interval.as_deref(),
            refresh_interval,
        );
        let fetch_timeout = self.positive_duration(
            &join(p, "fetch_timeout"),
            raw.fetch_timeout.as_deref(),
            JwtProvider::DEFAULT_FETCH_TIMEOUT,
        );
        let max_stale = self.duration(
            &join(p, "max_stale"),
            raw.max_stale.as_deref(),
            JwtProvider::DEFAULT_MAX_STALE,
        );
        let ca_file = self.optional_file(&join(p, "ca_file"), raw.ca_file.as_deref());

        let NamedSource::Usable(key_source) = source else {
            return None;
        };
        Some(JwtProvider {
            name,
            issuer,
            key_source,
            audiences,
            audience_claim,
            algorithms,
            leeway,
            max_token_lifetime: (!lifetime.is_zero()).then_some(lifetime),
            claims,
            refresh_interval,
            min_refresh_interval,
            fetch_timeout,
            max_stale,
            ca_file,
        })
    }

    /// At most one of `jwks_url`, `jwks_file` and `hmac_secret(_file)`; with
    /// more, the first one counts. None: OIDC discovery at the issuer.
    fn key_source(&mut self, p: &str, raw: &mut RawProvider) -> NamedSource {
        let mut named: Vec<(&str, NamedSource)> = Vec::new();
        if let Some(url) = raw.jwks_url.as_deref() {
            self.fetch_url(&join(p, "jwks_url"), url);
            named.push((
                "jwks_url",
                NamedSource::Usable(KeySource::JwksUrl(url.to_owned())),
            ));
        }
        if let Some(file) = raw.jwks_file.as_deref() {
            let resolved = self.readable_file(&join(p, "jwks_file"), file);
            named.push((
                "jwks_file",
                NamedSource::Usable(KeySource::JwksFile(resolved)),
            ));
        }
        let hmac_file = raw.hmac_secret_file.as_deref();
        if let Some(hmac) = self.hmac_secret(p, raw.hmac_secret.take(), hmac_file) {
            // Named after the file when one is given, even next to an
            // inline secret (that conflict is reported by `secret`).
            let key = if hmac_file.is_some() {
                "hmac_secret_file"
            } else {
                "hmac_secret"
            };
            named.push((key, hmac));
        }
        if named.len() > 1 {
            let keys: Vec<&str> = named.iter().map(|(k, _)| *k).collect();
            self.err(
                &join(p, keys[1]),
                format!(
                    "give only one key source (jwks_url, jwks_file or hmac_secret), not {}",
                    keys.join(" and ")
                ),
            );
        }
        named
            .into_iter()
            .next()
            .map_or(NamedSource::Usable(KeySource::Discovery), |(_, s)| s)
    }

    /// `hmac_secret` or `hmac_secret_file`, non-empty; `None` when neither
    /// is given.
    fn hmac_secret(
        &mut self,
        p: &str,
        inline: Option<String>,
        file: Option<&str>,
    ) -> Option<NamedSource> {
        match self.secret(p, "hmac_secret", inline, file) {
            Err(Reported) => Some(NamedSource::UnreadableHmac),
            Ok(None) => None,
            Ok(Some((secret, path))) => {
                if secret.is_empty() {
                    self.err(&path, "must not be empty");
                }
                Some(NamedSource::Usable(KeySource::HmacSecret(Secret::new(
                    secret,
                ))))
            }
        }
    }

    /// A JWKS URL: https, or http for loopback hosts only.
    fn fetch_url(&mut self, path: &str, url: &str) {
        if let Err(problem) = check_fetch_url(url) {
            self.err(path, format!("\"{url}\" {problem}"));
        }
    }

    /// Without a key source, the keys come from OIDC discovery at the
    /// issuer, so the issuer must be a URL that may be fetched.
    fn discovery_issuer(&mut self, path: &str, issuer: &str) {
        if issuer.is_empty() {
            return;
        }
        if let Err(problem) = check_fetch_url(issuer) {
            self.err(
                path,
                format!("\"{issuer}\" {problem}; without jwks_url, jwks_file or hmac_secret the keys come from OIDC discovery at the issuer"),
            );
        }
    }

    /// Required, non-empty, and no audience may be `""`.
    fn audiences(&mut self, path: &str, audiences: Option<Vec<String>>) -> Vec<String> {
        let Some(list) = audiences else {
            self.err(path, REQUIRED);
            return Vec::new();
        };
        if list.is_empty() {
            self.err(path, "must list at least one audience");
        }
        for (i, a) in list.iter().enumerate() {
            if a.is_empty() {
                self.err(&diag::index(path, i), "must not be empty");
            }
        }
        list
    }

    /// The allow-list of algorithms: known names, never `none`, no
    /// repeats, and each one fit for the key source.
    fn algorithms(
        &mut self,
        path: &str,
        written: Option<Vec<String>>,
        source: &NamedSource,
    ) -> Vec<JwtAlgorithm> {
        let explicit = written.is_some();
        let names =
            written.unwrap_or_else(|| vec![JwtProvider::DEFAULT_ALGORITHM.as_str().to_owned()]);
        if names.is_empty() {
            self.err(path, "must list at least one algorithm");
        }
        let mut algorithms = Vec::new();
        for (i, text) in names.iter().enumerate() {
            // The default has no position of its own: errors about it go to
            // the key and say where the value came from.
            let (entry_path, default_note) = if explicit {
                (diag::index(path, i), String::new())
            } else {
                (
                    path.to_owned(),
                    format!(" (the default algorithms = [\"{text}\"]; set algorithms)"),
                )
            };
            let Some(alg) = self.algorithm_name(&entry_path, text) else {
                continue;
            };
            if algorithms.contains(&alg) {
                self.err(&entry_path, format!("duplicate algorithm \"{text}\""));
                continue;
            }
            self.algorithm_fits_key_source(&entry_path, alg, source, &default_note);
            algorithms.push(alg);
        }
        algorithms
    }

    /// A name of RFC 7518, exactly; `none` in any case is refused.
    fn algorithm_name(&mut self, path: &str, text: &str) -> Option<JwtAlgorithm> {
        if text.eq_ignore_ascii_case("none") {
            self.err(path, "\"none\" is never allowed: tokens must be signed");
            return None;
        }
        let alg = JwtAlgorithm::parse(text);
        if alg.is_none() {
            let all: Vec<&str> = JwtAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
            self.err(
                path,
                format!(
                    "unknown algorithm \"{text}\" (expected one of {})",
                    all.join(", ")
                ),
            );
        }
        alg
    }

    /// HMAC algorithms only with an HMAC secret, and an HMAC secret only
    /// with HMAC algorithms (RFC 8725 §3.1: a public key must never be
    /// usable as an HMAC secret).
    fn algorithm_fits_key_source(
        &mut self,
        path: &str,
        alg: JwtAlgorithm,
        source: &NamedSource,
        default_note: &str,
    ) {
        let name = alg.as_str();
        if alg.is_hmac() && !source.is_hmac() {
            self.err(
                path,
                format!("{name} needs hmac_secret: HMAC algorithms are never used with keys from jwks_url, jwks_file or discovery"),
            );
        } else if !alg.is_hmac() && source.is_hmac() {
            self.err(
                path,
                format!("{name} cannot be used with hmac_secret, which only verifies HS256, HS384 or HS512{default_note}"),
            );
        }
    }

    /// Exact-match claims: scalars only.
    fn exact_claims(
        &mut self,
        path: &str,
        written: BTreeMap<String, serde_json::Value>,
    ) -> BTreeMap<String, serde_json::Value> {
        let mut claims = BTreeMap::new();
        for (claim, value) in written {
            match value {
                serde_json::Value::String(_)
                | serde_json::Value::Number(_)
                | serde_json::Value::Bool(_) => {
                    claims.insert(claim, value);
                }
                _ => self.err(
                    &join(path, &claim),
                    "must be a string, integer, float or boolean",
                ),
            }
        }
        claims
    }

    /// Positive, and no longer than `refresh_interval`.
    fn min_refresh_interval(
        &mut self,
        path: &str,
        value: Option<&str>,
        refresh_interval: Duration,
    ) -> Duration {
        let min = self.positive_duration(path, value, JwtProvider::DEFAULT_MIN_REFRESH_INTERVAL);
        if min > refresh_interval {
            self.err(
                path,
                format!(
                    "must not exceed refresh_interval ({})",
                    humantime::format_duration(refresh_interval)
                ),
            );
        }
        min
    }
}

pub(super) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A JWKS or discovery URL: https, or http for loopback hosts only.
pub(super) fn check_fetch_url(url: &str) -> Result<(), &'static str> {
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
