//! [[routes]].

use std::collections::{BTreeMap, HashMap};

use crate::config::diag::{self, join};
use crate::config::raw::{OneOrMany, RawRoute};
use crate::config::{AuthMode, CredentialKind, Csrf, HostPattern, OnUnauthenticated, RouteConfig};

use super::{V, earlier_use};

/// Where a route applies; two routes may not share one.
type Place = (Option<HostPattern>, String);

impl V<'_, '_> {
    /// `configured`: the credential kinds some section enables, in the
    /// order a route accepts them by default.
    pub(super) fn routes(
        &mut self,
        raws: Vec<Option<RawRoute>>,
        upstream_names: &[Option<String>],
        configured: &[CredentialKind],
        login: bool,
        forward_auth: bool,
    ) -> Vec<RouteConfig> {
        let mut out = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        // HostPattern is not Hash; routes are few.
        let mut places: Vec<(Place, usize)> = Vec::new();
        for (i, raw) in raws.into_iter().enumerate() {
            let Some(raw) = raw else { continue };
            let r = diag::index("routes", i);
            let explicit_name = raw.name.is_some();
            let route = self.route(&r, raw, upstream_names, configured, login, forward_auth);
            let same_place = self.unique_place(&join(&r, "path"), &route, i, &mut places);
            let name_clash = if explicit_name {
                NameClash::Explicit
            } else if same_place {
                // Same host and path, hence the same default name: the
                // place error above already says it.
                NameClash::Silent
            } else {
                NameClash::Default
            };
            self.unique_route_name(&join(&r, "name"), &route.name, i, name_clash, &mut names);
            out.push(route);
        }
        out
    }

    /// Reports a route on the same host and path as an earlier one; `true`
    /// when it is.
    fn unique_place(
        &mut self,
        path: &str,
        route: &RouteConfig,
        i: usize,
        seen: &mut Vec<(Place, usize)>,
    ) -> bool {
        let place = (route.host.clone(), route.path.clone());
        match seen.iter().find(|(p, _)| *p == place) {
            Some((_, first)) => {
                self.err(path, format!("same host and path as routes[{first}]"));
                true
            }
            None => {
                seen.push((place, i));
                false
            }
        }
    }

    /// Route names are metric labels, so each is used once.
    fn unique_route_name(
        &mut self,
        path: &str,
        name: &str,
        i: usize,
        clash: NameClash,
        seen: &mut HashMap<String, usize>,
    ) {
        let Some(first) = earlier_use(seen, name, i) else {
            return;
        };
        match clash {
            NameClash::Explicit => self.err(
                path,
                format!("duplicate route name \"{name}\" (also routes[{first}])"),
            ),
            NameClash::Default => self.err(
                path,
                format!("the default name \"{name}\" (host + path) is already used by routes[{first}]; set name"),
            ),
            NameClash::Silent => {}
        }
    }

    fn route(
        &mut self,
        r: &str,
        raw: RawRoute,
        upstream_names: &[Option<String>],
        configured: &[CredentialKind],
        login: bool,
        forward_auth: bool,
    ) -> RouteConfig {
        let path = self.route_path(&join(r, "path"), raw.path.as_deref());
        let (host, host_text) = self.route_host(&join(r, "host"), raw.host.as_deref());
        let name = self.route_name(&join(r, "name"), raw.name, &host_text, &path);
        let methods = self.methods(&join(r, "methods"), raw.methods.unwrap_or_default());
        let upstream = self.route_upstream(
            &join(r, "upstream"),
            raw.upstream.as_deref(),
            upstream_names,
            forward_auth,
        );
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
        let accept = match raw.accept {
            None => configured.to_vec(),
            Some(list) => self.accept(&join(r, "accept"), &list, auth, configured),
        };
        let require = self.require(&join(r, "require"), raw.require.unwrap_or_default(), auth);
        let on_unauthenticated =
            self.on_unauthenticated(r, raw.on_unauthenticated.as_deref(), raw.login_url, login);
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

    /// Normalized (SPEC §5.3); `/` when absent or invalid.
    fn route_path(&mut self, key: &str, path: Option<&str>) -> String {
        let Some(p) = path else {
            return "/".to_owned();
        };
        normalize_route_path(p).unwrap_or_else(|problem| {
            self.err(key, format!("\"{p}\" {problem}"));
            "/".to_owned()
        })
    }

    /// The pattern, and the host as written (lower case) for the default
    /// name; any host when absent or invalid.
    fn route_host(&mut self, key: &str, host: Option<&str>) -> (Option<HostPattern>, String) {
        let Some(h) = host else {
            return (None, String::new());
        };
        match parse_host_pattern(h) {
            Ok(pattern) => (Some(pattern), h.to_ascii_lowercase()),
            Err(problem) => {
                self.err(key, format!("\"{h}\" {problem}"));
                (None, String::new())
            }
        }
    }

    /// As written, never empty; by default `<host><path>`.
    fn route_name(&mut self, key: &str, written: Option<String>, host: &str, path: &str) -> String {
        let Some(name) = written else {
            return format!("{host}{path}");
        };
        if name.is_empty() {
            self.err(key, "must not be empty");
        }
        name
    }

    /// Valid HTTP methods, upper-cased, each listed once.
    fn methods(&mut self, key: &str, written: Vec<String>) -> Vec<http::Method> {
        let mut methods: Vec<http::Method> = Vec::new();
        for (i, m) in written.iter().enumerate() {
            let path = diag::index(key, i);
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
        methods
    }

    /// The name of an upstream; its index. Required, except with
    /// `[forward_auth]` (SPEC §8): the edge then proxies the route itself.
    fn route_upstream(
        &mut self,
        key: &str,
        upstream: Option<&str>,
        upstream_names: &[Option<String>],
        forward_auth: bool,
    ) -> Option<usize> {
        if upstream.is_none() && forward_auth {
            return None;
        }
        if upstream.is_none() {
            self.err(
                key,
                "required key is missing (only with [forward_auth] may a route have no upstream)",
            );
            return Some(0);
        }
        let u = self.required_str(key, upstream)?;
        match upstream_names.iter().position(|n| n.as_deref() == Some(u)) {
            Some(idx) => Some(idx),
            None => {
                self.err(key, format!("no upstream named \"{u}\""));
                Some(0)
            }
        }
    }

    /// An explicit `accept`: configured kinds, each once, and not empty
    /// unless the route is public.
    fn accept(
        &mut self,
        key: &str,
        list: &[String],
        auth: AuthMode,
        configured: &[CredentialKind],
    ) -> Vec<CredentialKind> {
        if list.is_empty() && auth != AuthMode::Public {
            self.err(key, "must not be empty unless auth = \"public\"");
        }
        let mut kinds = Vec::new();
        for (i, k) in list.iter().enumerate() {
            let path = diag::index(key, i);
            let kind = match k.as_str() {
                "jwt" => CredentialKind::Jwt,
                "session" => CredentialKind::Session,
                _ => {
                    self.err(
                        &path,
                        format!("invalid value \"{k}\": expected \"jwt\" or \"session\""),
                    );
                    continue;
                }
            };
            if !configured.contains(&kind) {
                let missing = match kind {
                    CredentialKind::Jwt => "no [[jwt.providers]]",
                    CredentialKind::Session => "no [sessions] table",
                };
                self.err(&path, format!("\"{k}\" is not configured ({missing})"));
            } else if kinds.contains(&kind) {
                self.err(&path, format!("duplicate \"{k}\""));
            } else {
                kinds.push(kind);
            }
        }
        kinds
    }

    /// claim -> any-of values: named claims, non-empty values, and only on
    /// routes that authenticate.
    fn require(
        &mut self,
        key: &str,
        written: BTreeMap<String, OneOrMany>,
        auth: AuthMode,
    ) -> BTreeMap<String, Vec<String>> {
        if !written.is_empty() && auth == AuthMode::Public {
            self.err(key, "has no effect on a route with auth = \"public\"");
        }
        let mut require = BTreeMap::new();
        for (claim, OneOrMany(values)) in written {
            let path = join(key, &claim);
            if claim.is_empty() {
                self.err(&path, "claim name must not be empty");
            }
            if values.is_empty() {
                self.err(&path, "must list at least one value");
            }
            for (i, value) in values.iter().enumerate() {
                if value.is_empty() {
                    self.err(&diag::index(&path, i), "must not be empty");
                }
            }
            require.insert(claim, values);
        }
        require
    }

    /// `deny`, `redirect` to a `login_url` that is an absolute URL, or
    /// `login` (whether `[login]` exists is checked with the whole file).
    fn on_unauthenticated(
        &mut self,
        r: &str,
        value: Option<&str>,
        login_url: Option<String>,
        login: bool,
    ) -> OnUnauthenticated {
        #[derive(Clone, Copy, PartialEq)]
        enum Choice {
            Deny,
            Redirect,
            Login,
        }
        let choice = self.choice(
            &join(r, "on_unauthenticated"),
            value,
            Choice::Deny,
            &[
                ("deny", Choice::Deny),
                ("redirect", Choice::Redirect),
                ("login", Choice::Login),
            ],
        );
        match choice {
            Choice::Deny => return OnUnauthenticated::Deny,
            Choice::Login => {
                if !login {
                    self.err(
                        &join(r, "on_unauthenticated"),
                        "\"login\" needs a [login] section (SPEC §7)",
                    );
                }
                return OnUnauthenticated::Login;
            }
            Choice::Redirect => {}
        }
        let login_key = join(r, "login_url");
        match login_url.as_deref() {
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
        OnUnauthenticated::Redirect(login_url.unwrap_or_default())
    }
}

/// How a repeated route name is reported.
#[derive(Clone, Copy)]
enum NameClash {
    /// Written in the file: always an error.
    Explicit,
    /// The default `<host><path>` of a route on a new place.
    Default,
    /// The default name of a route whose place is already reported.
    Silent,
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
pub(super) fn normalize_route_path(path: &str) -> Result<String, &'static str> {
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
pub(super) fn parse_host_pattern(host: &str) -> Result<HostPattern, &'static str> {
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
