//! [jwt] and [[jwt.providers]].

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use crate::config::diag::{self, join};
use crate::config::raw::{RawJwt, RawProvider};
use crate::config::{JwtAlgorithm, JwtConfig, JwtProvider, KeySource, Secret};

use super::{REQUIRED, Reported, V, is_token};

impl V<'_, '_> {
    pub(super) fn jwt(&mut self, raw: RawJwt, providers: Vec<Option<RawProvider>>) -> JwtConfig {
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
        let verified_cache_size = self.int_in(
            &join(t, "verified_cache_size"),
            raw.verified_cache_size,
            100_000,
            0,
            10_000_000,
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
            verified_cache_size: u64::try_from(verified_cache_size).unwrap_or(100_000),
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
