//! [identity] and [identity.assertion].

use std::collections::HashMap;
use std::time::Duration;

use crate::config::diag::{self, join};
use crate::config::raw::{RawAssertion, RawIdentity};
use crate::config::{AssertionConfig, HeaderPattern, IdentityConfig, canonical_header_name};

use super::V;

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

impl V<'_, '_> {
    pub(super) fn identity(&mut self, raw: RawIdentity) -> IdentityConfig {
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
        let key_key = join(a, "key_file");
        let key_file = self.required_file(&key_key, raw.key_file.as_deref());
        // A file that cannot be opened is reported above; one that opens
        // must hold a usable key, so that `check` catches what start-up
        // would refuse.
        if key_file.is_file()
            && let Err(problem) = crate::assertion_key::load_key(&key_file)
        {
            self.err(&key_key, problem.to_string());
        }
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
