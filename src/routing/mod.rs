//! Routing (SPEC §1, §3 `[[routes]]`, §6a): normalize the path, then pick the
//! route by host, then by longest segment prefix of the path.
//!
//! Precedence, most specific first: routes whose exact host is the request's
//! host; then wildcard routes (`*.example.com`), the longest matching suffix
//! first; then routes without a host. A tier is consulted only when no route
//! of the tiers before it matches the path; within a tier the longest route
//! path wins. Host comparison ignores case, the port and one trailing dot
//! (RFC 9110 §7.2, RFC 1034 §3.1).
//!
//! Lookups run on every request, so they cost O(segments of the path + labels
//! of the host) hash probes whatever the number of routes: each tier is a map
//! from route path to route index, probed with the request path's segment
//! prefixes from longest to shortest.

mod path;

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::{HostPattern, RouteConfig};

/// Request paths for property tests of the stages after routing.
#[cfg(test)]
pub(crate) use path::tests::any_path;
pub use path::{PathError, normalize_path};

/// Finds the route for a request. Built once per config (and on reload).
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// Lower-case host without port -> routes of that exact host.
    exact: HashMap<String, PathTable>,
    /// Wildcard suffix with its leading dot (`.example.com`) -> routes.
    wildcard: HashMap<String, PathTable>,
    /// Routes without `host`.
    any_host: PathTable,
}

/// Route path -> index into the routes, for one host tier. Paths are stored
/// without trailing `/`, so the root route is the empty string.
#[derive(Debug, Clone, Default)]
struct PathTable {
    paths: HashMap<String, usize>,
}

impl PathTable {
    fn insert(&mut self, path: &str, index: usize) {
        // When two routes share host and path, the first one in the file wins.
        self.paths
            .entry(path.trim_end_matches('/').to_owned())
            .or_insert(index);
    }

    /// The longest route path that is a segment prefix of `path`.
    fn find(&self, path: &str) -> Option<usize> {
        if self.paths.is_empty() {
            return None;
        }
        // `/api/x/` probes `/api/x`, `/api`, then `` (the root route).
        let mut prefix = path.trim_end_matches('/');
        loop {
            if let Some(&index) = self.paths.get(prefix) {
                return Some(index);
            }
            if prefix.is_empty() {
                return None;
            }
            prefix = prefix.rfind('/').map_or("", |slash| &prefix[..slash]);
        }
    }
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Router {
        let mut router = Router::default();
        for (index, route) in routes.iter().enumerate() {
            let table = match &route.host {
                None => &mut router.any_host,
                Some(HostPattern::Exact(host)) => {
                    router.exact.entry(canonical_config_host(host)).or_default()
                }
                Some(HostPattern::Wildcard(suffix)) => router
                    .wildcard
                    .entry(suffix.to_ascii_lowercase())
                    .or_default(),
            };
            table.insert(&route.path, index);
        }
        router
    }

    /// The index into the `routes` given to [`Router::new`] of the route for
    /// a request with this `Host` (as sent: may carry a port, upper case, a
    /// trailing dot) and this already normalized path.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<usize> {
        if let Some(host) = host.filter(|_| !self.exact.is_empty() || !self.wildcard.is_empty()) {
            let host = request_host(host);
            if let Some(index) = self.exact.get(host.as_ref()).and_then(|t| t.find(path)) {
                return Some(index);
            }
            if let Some(index) = self.find_wildcard(&host, path) {
                return Some(index);
            }
        }
        self.any_host.find(path)
    }

    fn find_wildcard(&self, host: &str, path: &str) -> Option<usize> {
        if self.wildcard.is_empty() {
            return None;
        }
        // Suffixes from the longest: for `a.b.example.com`, `.b.example.com`,
        // `.example.com`, `.com`. A dot at position 0 would leave an empty
        // label, which `*` does not match.
        host.bytes()
            .enumerate()
            .filter(|&(i, b)| b == b'.' && i > 0)
            .find_map(|(i, _)| self.wildcard.get(&host[i..])?.find(path))
    }
}

/// The request's host as routes spell it: without port, without one trailing
/// dot, lower case (allocating only when it has upper-case letters). An IPv6
/// literal keeps its brackets: `[::1]:8080` -> `[::1]`.
fn request_host(host: &str) -> Cow<'_, str> {
    let host = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.split_once(':').map_or(host, |(name, _port)| name)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// A configured exact host in the form [`request_host`] produces. Config
/// hosts are already lower case and without port; this also brackets a bare
/// IPv6 literal (`::1` -> `[::1]`), since a `Host` header always brackets it.
fn canonical_config_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{}]", host.to_ascii_lowercase())
    } else {
        request_host(host).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMode;

    fn route(host: Option<&str>, path: &str) -> RouteConfig {
        let host = host.map(|h| match h.strip_prefix('*') {
            Some(suffix) => HostPattern::Wildcard(suffix.to_owned()),
            None => HostPattern::Exact(h.to_owned()),
        });
        RouteConfig {
            name: format!("{host:?}{path}"),
            host,
            path: path.to_owned(),
            auth: AuthMode::Public,
            ..RouteConfig::for_tests()
        }
    }

    fn router(routes: &[(Option<&str>, &str)]) -> Router {
        let routes: Vec<RouteConfig> = routes.iter().map(|&(h, p)| route(h, p)).collect();
        Router::new(&routes)
    }

    #[test]
    fn route_path_is_a_segment_prefix() {
        let r = router(&[(None, "/api"), (None, "/api/v1")]);
        assert_eq!(r.find(None, "/api"), Some(0));
        assert_eq!(r.find(None, "/api/"), Some(0));
        assert_eq!(r.find(None, "/api/x"), Some(0));
        assert_eq!(r.find(None, "/api/v1"), Some(1));
        assert_eq!(r.find(None, "/api/v1/x/y"), Some(1));
        assert_eq!(r.find(None, "/api/v10"), Some(0));
        assert_eq!(r.find(None, "/apix"), None);
        assert_eq!(r.find(None, "/"), None);
        assert_eq!(r.find(None, "/other"), None);
    }

    #[test]
    fn root_route_matches_everything() {
        let r = router(&[(None, "/"), (None, "/api")]);
        assert_eq!(r.find(None, "/"), Some(0));
        assert_eq!(r.find(None, "/apix"), Some(0));
        assert_eq!(r.find(None, "/a/b/c/"), Some(0));
        assert_eq!(r.find(None, "/api/x"), Some(1));
    }

    #[test]
    fn trailing_slash_in_route_path_is_ignored() {
        let r = router(&[(None, "/api/")]);
        assert_eq!(r.find(None, "/api"), Some(0));
        assert_eq!(r.find(None, "/api/"), Some(0));
        assert_eq!(r.find(None, "/api/x"), Some(0));
        assert_eq!(r.find(None, "/apix"), None);
    }

    #[test]
    fn first_of_duplicate_routes_wins() {
        let r = router(&[(None, "/api"), (None, "/api/")]);
        assert_eq!(r.find(None, "/api/x"), Some(0));
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any_host() {
        let r = router(&[
            (None, "/api/v1/long"),
            (Some("*.example.com"), "/api/v1"),
            (Some("app.example.com"), "/api"),
        ]);
        // The exact host's shorter path beats everything longer elsewhere.
        assert_eq!(r.find(Some("app.example.com"), "/api/v1/long/x"), Some(2));
        // Another subdomain: the wildcard.
        assert_eq!(r.find(Some("www.example.com"), "/api/v1/long/x"), Some(1));
        // Exact host, but its routes don't match the path: wildcard next.
        let r = router(&[
            (None, "/"),
            (Some("*.example.com"), "/static"),
            (Some("app.example.com"), "/api"),
        ]);
        assert_eq!(r.find(Some("app.example.com"), "/api/x"), Some(2));
        assert_eq!(r.find(Some("app.example.com"), "/static/a.css"), Some(1));
        // Then the routes without host.
        assert_eq!(r.find(Some("app.example.com"), "/other"), Some(0));
        assert_eq!(r.find(Some("elsewhere.org"), "/api/x"), Some(0));
    }

    #[test]
    fn longest_wildcard_suffix_first() {
        let r = router(&[
            (Some("*.example.com"), "/api/v1"),
            (Some("*.b.example.com"), "/api"),
        ]);
        assert_eq!(r.find(Some("a.b.example.com"), "/api/v1"), Some(1));
        assert_eq!(r.find(Some("a.c.example.com"), "/api/v1"), Some(0));
        // The longer suffix has no match for the path: the shorter one is tried.
        assert_eq!(r.find(Some("a.b.example.com"), "/x"), None);
        let r = router(&[
            (Some("*.example.com"), "/x"),
            (Some("*.b.example.com"), "/api"),
        ]);
        assert_eq!(r.find(Some("a.b.example.com"), "/x/1"), Some(0));
    }

    #[test]
    fn wildcard_matches_any_depth_but_not_the_apex() {
        let r = router(&[(Some("*.example.com"), "/")]);
        assert_eq!(r.find(Some("a.example.com"), "/"), Some(0));
        assert_eq!(r.find(Some("a.b.c.example.com"), "/x"), Some(0));
        assert_eq!(r.find(Some("A.Example.COM:443"), "/x"), Some(0));
        assert_eq!(r.find(Some("example.com"), "/"), None);
        assert_eq!(r.find(Some(".example.com"), "/"), None);
        assert_eq!(r.find(Some("badexample.com"), "/"), None);
        assert_eq!(r.find(Some("example.com.evil.org"), "/"), None);
        assert_eq!(r.find(None, "/"), None);
    }

    #[test]
    fn host_ignores_case_port_and_trailing_dot() {
        let r = router(&[(Some("app.example.com"), "/")]);
        for host in [
            "app.example.com",
            "APP.Example.Com",
            "app.example.com:8080",
            "app.example.com.",
            "App.Example.com.:443",
        ] {
            assert_eq!(r.find(Some(host), "/x"), Some(0), "{host}");
        }
        for host in ["example.com", "app.example.com..", "xapp.example.com", ""] {
            assert_eq!(r.find(Some(host), "/x"), None, "{host}");
        }
    }

    #[test]
    fn ipv6_host() {
        let r = router(&[(Some("[::1]"), "/a"), (Some("fe80::1"), "/b")]);
        assert_eq!(r.find(Some("[::1]"), "/a"), Some(0));
        assert_eq!(r.find(Some("[::1]:8080"), "/a"), Some(0));
        assert_eq!(r.find(Some("[FE80::1]:8080"), "/b"), Some(1));
        assert_eq!(r.find(Some("[::2]:8080"), "/a"), None);
    }

    #[test]
    fn without_host_header_only_host_less_routes_apply() {
        let r = router(&[(Some("app.example.com"), "/"), (Some("*.example.com"), "/")]);
        assert_eq!(r.find(None, "/"), None);
        let r = router(&[(Some("app.example.com"), "/api"), (None, "/")]);
        assert_eq!(r.find(None, "/api"), Some(1));
    }

    #[test]
    fn no_routes_no_match() {
        let r = Router::new(&[]);
        assert_eq!(r.find(Some("example.com"), "/"), None);
        assert_eq!(r.find(None, "/"), None);
    }

    #[test]
    fn ten_thousand_routes() {
        let mut routes = Vec::new();
        for i in 0..2_500 {
            routes.push(route(Some(&format!("h{i}.example.com")), &format!("/p{i}")));
            routes.push(route(
                Some(&format!("*.w{i}.example.org")),
                &format!("/p{i}"),
            ));
            routes.push(route(None, &format!("/svc/{i}")));
            routes.push(route(None, &format!("/svc/{i}/deep/path")));
        }
        assert_eq!(routes.len(), 10_000);
        let r = Router::new(&routes);
        for i in 0..2_500 {
            let host = format!("h{i}.example.com:8443");
            assert_eq!(r.find(Some(&host), &format!("/p{i}/x")), Some(4 * i));
            // Exact host, other path: falls through to the host-less routes.
            assert_eq!(r.find(Some(&host), &format!("/svc/{i}/y")), Some(4 * i + 2));
            let host = format!("a.b.w{i}.example.org");
            assert_eq!(r.find(Some(&host), &format!("/p{i}")), Some(4 * i + 1));
            assert_eq!(
                r.find(None, &format!("/svc/{i}/deep/path/z")),
                Some(4 * i + 3)
            );
            assert_eq!(r.find(None, &format!("/svc/{i}/deep")), Some(4 * i + 2));
        }
        assert_eq!(r.find(Some("h1.example.com"), "/p2"), None);
        assert_eq!(r.find(None, "/svc/2500"), None);
    }

    #[test]
    fn normalized_path_is_what_is_routed() {
        let r = router(&[(None, "/public"), (None, "/admin")]);
        let path = normalize_path("/public/../admin").expect("valid path");
        assert_eq!(r.find(None, &path), Some(1));
        let path = normalize_path("/public//%2e%2E/admin").expect("valid path");
        assert_eq!(r.find(None, &path), Some(1));
    }
}
