//! [[routes]].

use std::collections::{BTreeMap, HashMap};

use crate::config::diag::{self, join};
use crate::config::raw::RawRoute;
use crate::config::{AuthMode, CredentialKind, Csrf, HostPattern, OnUnauthenticated, RouteConfig};

use super::V;

impl V<'_, '_> {
    pub(super) fn routes(
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
