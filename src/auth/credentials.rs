//! Finding credentials in a request: the bearer token (RFC 6750 §2.1) and
//! cookies (RFC 6265 §5.4). Never the query string: URLs end up in logs,
//! histories and `Referer` headers.
//!
//! Ambiguity is refused rather than resolved: with two `Authorization`
//! headers, or two different values for one cookie name, a backend or
//! another proxy might pick the other one than we checked.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE, HeaderValue};

use crate::config::Config;

/// Two different credentials of one kind, and where: never guess which
/// one counts (400 `ambiguous_credentials`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ambiguous credentials: {0}")]
pub struct Ambiguous(pub &'static str);

/// The credentials `forward_token = false` and `forward_cookie = false`
/// keep from the upstream, known once per config.
#[derive(Debug, Default)]
pub struct Unforwarded {
    pub authorization: bool,
    pub cookies: Vec<String>,
}

impl Unforwarded {
    pub fn of(config: &Config) -> Unforwarded {
        let mut unforwarded = Unforwarded::default();
        let jwt = &config.jwt;
        if !jwt.providers.is_empty() && !jwt.forward_token {
            unforwarded.authorization = jwt.header;
            unforwarded.cookies.extend(jwt.cookie.clone());
        }
        if let Some(sessions) = config.sessions.as_ref().filter(|s| !s.forward_cookie) {
            unforwarded.cookies.push(sessions.cookie.clone());
        }
        unforwarded
    }

    pub fn remove_from(&self, headers: &mut HeaderMap) {
        if self.authorization {
            headers.remove(AUTHORIZATION);
        }
        for name in &self.cookies {
            remove_cookie(headers, name);
        }
    }
}

/// The bearer token of the `Authorization` header. Another scheme, or an
/// empty token, is no credential (SPEC §6a).
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Ambiguous> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Ambiguous("two Authorization headers"));
    }
    let Ok(text) = value.to_str() else {
        return Ok(None);
    };
    let Some((scheme, token)) = text.trim_ascii().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim_ascii();
    Ok((!token.is_empty()).then_some(token))
}

/// The value of cookie `name` across every `Cookie` header (HTTP/2 may
/// split them). Two different values are ambiguous; an empty value is no
/// credential. `name` is an RFC 6265 token (config validation).
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Ambiguous> {
    let mut found: Option<&str> = None;
    for pair in cookie_texts(headers).flat_map(|text| text.split(';')) {
        let Some(value) = value_if_named(pair, name) else {
            continue;
        };
        match found {
            Some(previous) if previous != value => {
                return Err(Ambiguous(
                    "two cookies of the same name with different values",
                ));
            }
            _ => found = Some(value),
        }
    }
    Ok(found.filter(|v| !v.is_empty()))
}

/// Every non-empty value of cookie `name`, duplicates included: for
/// logout, which ends each session a browser holds rather than refuse an
/// ambiguous pair (and leave both alive).
pub fn cookie_values<'h>(headers: &'h HeaderMap, name: &'h str) -> impl Iterator<Item = &'h str> {
    cookie_texts(headers)
        .flat_map(|text| text.split(';'))
        .filter_map(move |pair| value_if_named(pair, name))
        .filter(|value| !value.is_empty())
}

/// The value of `pair` (`name=value`, blanks around either) when its name
/// is `name`. The same answer as splitting the pair at its first `=` and
/// comparing the trimmed name, since a token holds neither `=` nor blanks,
/// without splitting every pair: this runs on every request of a session
/// route.
fn value_if_named<'p>(pair: &'p str, name: &str) -> Option<&'p str> {
    let rest = pair.trim_ascii_start().strip_prefix(name)?;
    let value = rest.trim_ascii_start().strip_prefix('=')?;
    Some(strip_quotes(value.trim_ascii()))
}

/// Every `Cookie` header's text (HTTP/2 may split the cookies over several).
/// `to_str` lets only visible ASCII and tabs through, so the ASCII trims
/// used on the pairs are enough.
fn cookie_texts(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

/// RFC 6265 allows a cookie value in double quotes.
fn strip_quotes(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// Removes cookie `name` from every `Cookie` header, keeping the others in
/// order; a header left empty is dropped.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let named = |pair: &str| value_if_named(pair, name).is_some();
    if !cookie_texts(headers).any(|text| text.split(';').any(named)) {
        return;
    }
    let kept: Vec<String> = cookie_texts(headers)
        .map(|v| {
            v.split(';')
                .map(str::trim_ascii)
                .filter(|pair| !named(pair))
                .filter(|pair| !pair.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|v| !v.is_empty())
        .collect();
    headers.remove(COOKIE);
    for value in kept {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_no_credential() {
        let h = headers(&[("authorization", "bEaReR abc.def.ghi")]);
        assert_eq!(bearer_token(&h).ok().flatten(), Some("abc.def.ghi"));
        let h = headers(&[("authorization", "Basic YTpi")]);
        assert_eq!(bearer_token(&h).ok().flatten(), None);
        let h = headers(&[("authorization", "Bearer ")]);
        assert_eq!(bearer_token(&h).ok().flatten(), None);
        let h = headers(&[("authorization", "Bearer")]);
        assert_eq!(bearer_token(&h).ok().flatten(), None);
    }

    #[test]
    fn two_authorization_headers_are_ambiguous() {
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer a")]);
        assert!(matches!(bearer_token(&h), Err(Ambiguous(_))));
    }

    #[test]
    fn cookies_are_found_across_headers_and_conflicts_refused() {
        let h = headers(&[("cookie", "a=1; sid=xyz"), ("cookie", "b=2")]);
        assert_eq!(cookie(&h, "sid").ok().flatten(), Some("xyz"));
        assert_eq!(cookie(&h, "SID").ok().flatten(), None);
        let h = headers(&[("cookie", "sid=one; sid=one")]);
        assert_eq!(cookie(&h, "sid").ok().flatten(), Some("one"));
        let h = headers(&[("cookie", "sid=one"), ("cookie", "sid=two")]);
        assert!(cookie(&h, "sid").is_err());
        let h = headers(&[("cookie", "sid=")]);
        assert_eq!(cookie(&h, "sid").ok().flatten(), None);
        let h = headers(&[("cookie", "sid=\"quoted\"")]);
        assert_eq!(cookie(&h, "sid").ok().flatten(), Some("quoted"));
    }

    #[test]
    fn a_cookie_is_found_by_its_whole_name_only() {
        for (header, expected) in [
            ("sid=x", Some("x")),
            ("  sid \t=  x  ", Some("x")),
            ("sidx=1; sid=2", Some("2")),
            ("xsid=1", None),
            ("sid", None),
            ("si=d", None),
            ("a=sid=1", None),
            ("sid==1", Some("=1")),
            (";;sid=1;", Some("1")),
        ] {
            let h = headers(&[("cookie", header)]);
            assert_eq!(cookie(&h, "sid").ok().flatten(), expected, "{header:?}");
            // The plain way: split every pair at its first `=`.
            let by_pairs = header
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim_ascii() == "sid")
                .map(|(_, v)| strip_quotes(v.trim_ascii()));
            assert_eq!(by_pairs, expected, "splitting agrees: {header:?}");
        }
    }

    /// The plain reading of RFC 6265 §5.4, kept apart from the fast one:
    /// every value the readable `Cookie` headers carry for `name`.
    fn values_carried<'h>(headers: &'h HeaderMap, name: &str) -> Vec<&'h str> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|text| text.split(';'))
            .filter_map(|pair| pair.split_once('='))
            .filter(|(k, _)| k.trim_ascii() == name)
            .map(|(_, v)| strip_quotes(v.trim_ascii()))
            .collect()
    }

    /// Checks `cookie` against the plain reading: the value it returns is
    /// one carried for `name`, two different ones are always ambiguous.
    fn agrees_with_the_plain_reading(headers: &HeaderMap, name: &str) {
        let mut carried = values_carried(headers, name);
        carried.sort_unstable();
        carried.dedup();
        match (cookie(headers, name), carried.as_slice()) {
            (Err(Ambiguous(_)), [_, _, ..]) => {}
            (Ok(None), []) => {}
            (Ok(None), [""]) => {}
            (Ok(Some(value)), [one]) if value == *one => {}
            (got, carried) => panic!("{name:?}: {got:?}, but carried {carried:?} in {headers:?}"),
        }
    }

    fn cookie_headers(texts: &[Vec<u8>]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for text in texts {
            if let Ok(value) = HeaderValue::from_bytes(text) {
                map.append(COOKIE, value);
            }
        }
        map
    }

    proptest! {
        // PROPTEST_CASES raises the count for a deep run.
        #![proptest_config(ProptestConfig {
            cases: ProptestConfig::default().cases.max(4096),
            ..ProptestConfig::default()
        })]

        /// Few names and values, so names repeat and values collide.
        #[test]
        fn a_cookie_is_a_value_carried_for_it_and_two_values_are_ambiguous(
            headers in proptest::collection::vec(
                proptest::collection::vec(
                    ("[ \t]{0,1}", "sid|si|sidx|a", "[ \t]{0,1}=?[ \t]{0,1}", "\"?[xy=\"]{0,2}\"?"),
                    0..4,
                ),
                1..4,
            ),
        ) {
            let texts: Vec<Vec<u8>> = headers
                .iter()
                .map(|pairs| {
                    pairs
                        .iter()
                        .map(|(a, k, eq, v)| format!("{a}{k}{eq}{v}"))
                        .collect::<Vec<_>>()
                        .join(";")
                        .into_bytes()
                })
                .collect();
            let map = cookie_headers(&texts);
            for name in ["sid", "si", "a"] {
                agrees_with_the_plain_reading(&map, name);
            }
        }

        #[test]
        fn arbitrary_cookie_bytes_never_panic_and_agree(
            texts in proptest::collection::vec(
                prop_oneof![
                    // Visible bytes, often a cookie's own, so pairs form.
                    3 => proptest::collection::vec(
                        prop_oneof![
                            2 => 0x20u8..0x7f,
                            1 => Just(b'\t'),
                            4 => proptest::sample::select(b"sidax=; \"".to_vec()),
                        ],
                        0..32,
                    ),
                    // Any bytes: a header `to_str` refuses, or none at all.
                    1 => proptest::collection::vec(any::<u8>(), 0..32),
                ],
                1..4,
            ),
        ) {
            let map = cookie_headers(&texts);
            for name in ["sid", "a", "x"] {
                agrees_with_the_plain_reading(&map, name);
            }
        }
    }

    #[test]
    fn removing_a_cookie_keeps_the_others() {
        let mut h = headers(&[("cookie", "a=1; jwt=tok; b=2"), ("cookie", "jwt=tok")]);
        remove_cookie(&mut h, "jwt");
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all, vec!["a=1; b=2"]);
    }
}
