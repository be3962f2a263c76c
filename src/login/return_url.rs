//! Where a login ends (SPEC §7 "Return URL"): the `rd` parameter of
//! `login_path`, checked so that no spelling of it sends the browser off
//! site. Accepted: a same-origin absolute path (`/x`, never `//x` or
//! `/\x`), or an `https` URL whose host `allowed_redirect_hosts` lists.
//! Anything else becomes `/`.
//!
//! The checks run on the value percent-decoded once, and are strict there:
//! a decoded `//` at the start, any backslash, any control character
//! (browsers drop tabs and newlines from URLs, so `/\t/evil` would become
//! `//evil`) refuses it. What goes into `Location` is the value as sent,
//! which is visible ASCII only, so a browser resolves exactly what was
//! checked: it never decodes `%2F` into a path separator or an authority.

use crate::config::HostPattern;
use crate::encoding::percent_decode;

/// `allowed_redirect_hosts`, in the config's own host patterns (exact, or
/// `*.example.com` for any host under it, not the apex): the rule routing
/// and validation already use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<HostPattern>);

impl AllowedHosts {
    pub fn new(patterns: Vec<HostPattern>) -> AllowedHosts {
        AllowedHosts(patterns)
    }

    fn allows(&self, host: &str) -> bool {
        self.0.iter().any(|pattern| pattern.matches(host))
    }
}

/// The `rd` parameter of a query string (as sent, still percent-encoded),
/// when it appears once. Twice is ambiguous: neither counts.
pub fn rd_parameter(query: Option<&str>) -> Option<&str> {
    let mut found = query?
        .split('&')
        .filter_map(|pair| pair.strip_prefix("rd="));
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// Where the login sends the browser back to: `rd` when it is safe, else
/// `/`. Always a valid `Location` value.
pub fn return_url<'a>(rd: Option<&'a str>, allowed: &AllowedHosts) -> &'a str {
    rd.filter(|rd| is_safe(rd, allowed)).unwrap_or("/")
}

/// The `Location` for a checked `rd` ([`return_url`]'s answer): the value
/// decoded once, as a query parameter is, so that the target's own query
/// (`/a?b=1&c=2`, sent as `rd=/a%3Fb%3D1%26c%3D2`) survives. Everything the
/// checks refused stays refused, as they ran on this very decoding;
/// blanks and bytes past ASCII are escaped again, so the value stays
/// visible ASCII.
pub fn same_site_location(checked: &str) -> String {
    let Some(decoded) = percent_decode(checked) else {
        return "/".to_owned();
    };
    let mut out = String::with_capacity(decoded.len());
    for b in decoded.bytes() {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_safe(raw: &str, allowed: &AllowedHosts) -> bool {
    // What is sent on must be a header value that means what was checked.
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return false;
    }
    let Some(decoded) = percent_decode(raw) else {
        return false;
    };
    if decoded.chars().any(|c| c.is_control() || c == '\\') {
        return false;
    }
    if decoded.starts_with('/') {
        // It goes on as sent, where `%2Fx` is no absolute path but a
        // relative reference, resolved against `login_path`.
        return raw.starts_with('/') && !decoded.starts_with("//");
    }
    is_allowed_https_url(raw, allowed)
}

/// `https://host[:port][/...]` with `host` allowed; no user info and no
/// escapes in the authority.
fn is_allowed_https_url(raw: &str, allowed: &AllowedHosts) -> bool {
    let Some(scheme_end) = raw.find("://") else {
        return false;
    };
    if !raw[..scheme_end].eq_ignore_ascii_case("https") {
        return false;
    }
    let rest = &raw[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    // Without escapes, the authority reads the same decoded.
    if authority.contains(['@', '%']) {
        return false;
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return false,
        None => authority,
    };
    !host.is_empty() && allowed.allows(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn allowed() -> AllowedHosts {
        AllowedHosts::new(vec![
            HostPattern::Exact("app.example.com".into()),
            HostPattern::Wildcard(".corp.example".into()),
        ])
    }

    #[test]
    fn same_origin_paths_are_kept_as_sent() {
        for rd in [
            "/",
            "/x",
            "/a/b?c=d&e=f",
            "/a%20b",
            "/a%3Fb",
            "/reports/2026?q=%2F%2F",
            "/p@x",
        ] {
            assert_eq!(return_url(Some(rd), &allowed()), rd, "{rd}");
        }
    }

    #[test]
    fn every_off_site_spelling_becomes_the_root() {
        for rd in [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "%2F%2Fevil.example",
            "%2f%2fevil.example",
            "/%2F/evil.example",
            "/%5Cevil.example",
            "%5C%5Cevil.example",
            "/%09/evil.example",
            "/%0D%0ALocation:%20https://evil.example",
            "/\t/evil.example",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "java%0Ascript:alert(1)",
            "data:text/html,x",
            "http://app.example.com/",
            "https://evil.example/",
            "https://app.example.com@evil.example/",
            "https://app.example.com%40evil.example/",
            "https://evil.example%2F@app.example.com/",
            "https://evil.example\\@app.example.com/",
            "https://app.example.com.evil.example/",
            "https://corp.example/",
            "https://evilcorp.example/",
            "https://app.example.com:x/",
            "https:app.example.com",
            "evil.example",
            "/x%zz",
            "/%C0%AF",
            "/é",
            "/a b",
        ] {
            assert_eq!(return_url(Some(rd), &allowed()), "/", "{rd:?}");
        }
        assert_eq!(return_url(None, &allowed()), "/");
    }

    /// Regression (found by `a_return_url_never_leaves_the_site`): `%2Fx`
    /// was checked as `/x` but sent on as `%2Fx`, a relative reference that
    /// the browser resolves against `login_path`, not the path checked.
    #[test]
    fn an_encoded_leading_slash_is_no_absolute_path() {
        for rd in ["%2Fwiki", "%2fwiki", "%2F", "%2Fa%2Fb"] {
            assert_eq!(return_url(Some(rd), &allowed()), "/", "{rd:?}");
        }
    }

    #[test]
    fn https_urls_on_allowed_hosts_are_kept() {
        for rd in [
            "https://app.example.com/",
            "https://APP.example.com/x?y=1",
            "https://app.example.com:8443/x",
            "https://wiki.corp.example/page",
            "https://a.b.corp.example",
            "HTTPS://app.example.com/",
        ] {
            assert_eq!(return_url(Some(rd), &allowed()), rd, "{rd}");
        }
        assert_eq!(
            return_url(Some("https://app.example.com/"), &AllowedHosts::default()),
            "/",
            "no host is allowed unless configured"
        );
    }

    /// Independent of `AllowedHosts`: the hosts `allowed()` lets through.
    fn is_listed(host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        host == "app.example.com"
            || (host.ends_with(".corp.example") && host.len() > ".corp.example".len())
    }

    /// What a return URL may be: the root; a path that stays a path after
    /// one percent-decode; or an `https` URL on a listed host with no user
    /// info and no escapes in its authority. Always a `Location` value of
    /// visible ASCII.
    fn assert_on_site(rd: &str, out: &str) {
        assert!(
            http::HeaderValue::from_str(out).is_ok(),
            "{rd:?} -> {out:?}"
        );
        // A URL has no blanks and no bytes past ASCII; `HeaderValue` would
        // let both through, and a browser would re-encode what was checked.
        assert!(
            out.bytes().all(|b| b.is_ascii_graphic()),
            "{rd:?} -> {out:?}"
        );
        if out == "/" {
            return;
        }
        assert_eq!(out, rd, "kept as sent");
        let decoded = percent_decode(out);
        let decoded = decoded
            .as_deref()
            .unwrap_or_else(|| panic!("{out:?} does not decode"));
        assert!(
            !decoded.chars().any(|c| c.is_control() || c == '\\'),
            "{out:?}"
        );
        assert!(!out.contains('\\'), "{out:?}");
        if out.starts_with('/') {
            assert!(
                !out.starts_with("//") && !decoded.starts_with("//"),
                "{out:?}"
            );
            assert!(decoded.starts_with('/'), "{out:?}");
            return;
        }
        let scheme = out.get(..8).unwrap_or_default();
        assert!(scheme.eq_ignore_ascii_case("https://"), "{rd:?} -> {out:?}");
        let rest = &out[8..];
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        assert!(!authority.contains(['@', '%']), "{out:?}");
        let host = authority.split(':').next().unwrap_or_default();
        assert!(is_listed(host), "{out:?}");
    }

    proptest! {
        // PROPTEST_CASES raises the count for a deep run.
        #![proptest_config(ProptestConfig {
            cases: ProptestConfig::default().cases.max(4096),
            ..ProptestConfig::default()
        })]

        #[test]
        fn a_return_url_never_leaves_the_site(
            rd in prop_oneof![
                "/?\\PC{0,24}",
                proptest::collection::vec(
                    proptest::sample::select(vec![
                        "/", "//", "\\", "%2F", "%2f", "%5C", "%5c", "%09", "%0A", "%0d",
                        "%00", "%7F", "\u{e9}", "\u{a0}", "\u{7f}", "%25", "%", "%zz",
                        "%C3%A9", "\t", " ", "?", "#", ":",
                        "@", "%40", ".", "x", "443", "https://", "HTTPS://", "http://",
                        "https:", "javascript:", "app.example.com", "APP.example.com",
                        "evil.example", ".corp.example", "wiki", "corp.example",
                    ]),
                    0..8,
                ).prop_map(|pieces| pieces.concat()),
                // URLs whose host is listed, or looks listed, with what could
                // carry them elsewhere: user info, escapes, odd ports.
                (
                    proptest::sample::select(vec!["https://", "HTTPS://", "http://", "https:/"]),
                    proptest::sample::select(vec!["", "evil.example@", "u:p@", "%40", "x%2F"]),
                    proptest::sample::select(vec![
                        "app.example.com", "wiki.corp.example", "corp.example",
                        "evil.example", "x%2Fevil.corp.example", "app.example.com.evil.example",
                    ]),
                    proptest::sample::select(vec!["", ":443", ":", ":x", "@evil.example"]),
                    proptest::sample::select(vec!["", "/", "/x?y=1", "#f", "\\@evil.example/"]),
                ).prop_map(|(scheme, user, host, port, tail)| {
                    format!("{scheme}{user}{host}{port}{tail}")
                }),
            ],
        ) {
            let out = return_url(Some(&rd), &allowed());
            assert_on_site(&rd, out);
            let location = same_site_location(out);
            assert_location_on_site(&location);
        }
    }

    /// What the browser is finally sent to: visible ASCII; a path that is
    /// no network-path reference and holds no backslash; or an `https` URL
    /// on a listed host without user info.
    fn assert_location_on_site(location: &str) {
        assert!(
            location.bytes().all(|b| b.is_ascii_graphic()),
            "{location:?}"
        );
        assert!(!location.contains('\\'), "{location:?}");
        if location.starts_with('/') {
            assert!(!location.starts_with("//"), "{location:?}");
            return;
        }
        let scheme = location.get(..8).unwrap_or_default();
        assert!(scheme.eq_ignore_ascii_case("https://"), "{location:?}");
        let authority = location[8..]
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default();
        assert!(!authority.contains(['@', '%']), "{location:?}");
        assert!(
            is_listed(authority.split(':').next().unwrap_or_default()),
            "{location:?}"
        );
    }

    #[test]
    fn the_location_keeps_the_targets_own_query() {
        let rd = "/a%20b/c%3Fx%3D1%26y%3D%252F";
        let checked = return_url(Some(rd), &allowed());
        assert_eq!(checked, rd);
        assert_eq!(same_site_location(checked), "/a%20b/c?x=1&y=%2F");
        assert_eq!(same_site_location("/caf%C3%A9"), "/caf%C3%A9");
        assert_eq!(same_site_location("/"), "/");
    }

    #[test]
    fn the_rd_parameter_counts_only_when_it_appears_once() {
        assert_eq!(rd_parameter(Some("rd=%2Fx")), Some("%2Fx"));
        assert_eq!(rd_parameter(Some("a=1&rd=/x&b=2")), Some("/x"));
        assert_eq!(rd_parameter(Some("rd=/x&rd=//evil")), None);
        assert_eq!(rd_parameter(Some("xrd=/x")), None);
        assert_eq!(rd_parameter(None), None);
    }
}
