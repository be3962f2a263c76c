//! Building the upstream request's headers (SPEC §1, in this order): drop
//! hop-by-hop headers and those the client's `Connection` names (RFC 9110
//! §7.6.1), drop every identity-header alias, drop `_` headers when so
//! configured, set `X-Forwarded-*` and `X-Request-Id`, then inject identity
//! headers. Injection is always the last step, so nothing the client sent can
//! survive under an identity name.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::auth::Authenticator;
use crate::config::UnderscoreHeaders;
use crate::identity::{AssertionUnsigned, Identity, IdentityHeaders};

/// RFC 9110 §7.6.1 plus the de-facto ones (`Keep-Alive`, `Proxy-Connection`).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Removes hop-by-hop headers and every header the `Connection` header names.
/// Returns the `Upgrade` value when the client asked for a protocol upgrade,
/// so the caller can put it back after authentication.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    // One pass over the names finds which of the fixed list are present, so
    // only those are removed. Most requests carry none of them; most
    // responses carry `Connection: keep-alive` (nginx always sends it), which
    // must cost neither an allocation nor nine hashed removals.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name.as_str()) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return None;
    }
    let mut upgrade_requested = false;
    // Names from `Connection` outside the fixed list (`close` and the fixed
    // names need no lookup); rare, so the Vec allocates only when used.
    let mut named: Vec<HeaderName> = Vec::new();
    let tokens = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for token in tokens {
        if token.eq_ignore_ascii_case("upgrade") {
            upgrade_requested = true;
        }
        let fixed = token.eq_ignore_ascii_case("close")
            || HOP_BY_HOP
                .iter()
                .any(|h| token.eq_ignore_ascii_case(h.as_str()));
        if !fixed && let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            named.push(name);
        }
    }
    let upgrade = if upgrade_requested {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    for name in named {
        headers.remove(&name);
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    upgrade
}

/// The position of `name` (lowercase, as `HeaderName`s are) in
/// [`HOP_BY_HOP`]. A `match` on the string compiles to a length switch, so
/// the usual name is ruled out in a couple of instructions.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    let index = match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        _ => return None,
    };
    debug_assert_eq!(HOP_BY_HOP[index].as_str(), name);
    Some(index)
}

/// Is any header name spelled with `_`? (nginx's `underscores_in_headers`.)
pub fn has_underscore_header(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| name.as_str().contains('_'))
}

/// Removes every header whose name `doomed` picks. `HeaderMap` has no
/// `retain`; the names are collected only when something matches, so the
/// common case allocates nothing.
pub fn remove_matching(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    if !headers.keys().any(&doomed) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
    for name in names {
        headers.remove(&name);
    }
}

/// What the builder needs to know about the client connection.
pub struct Client<'a> {
    pub ip: IpAddr,
    /// `ip`, formatted once per connection.
    pub ip_header: &'a HeaderValue,
    pub tls: bool,
    /// The peer is in `server.trusted_proxies`: its `X-Forwarded-*` count.
    pub trusted: bool,
    /// The Host the client asked for (Host header or `:authority`).
    pub host: Option<&'a HeaderValue>,
    pub request_id: &'a HeaderValue,
}

/// Sets `X-Forwarded-For/Proto/Host`. From a trusted proxy the chain is
/// extended and its Proto/Host kept; from anyone else every `X-Forwarded-*`
/// header is replaced (guarantee 2).
fn set_forwarded(headers: &mut HeaderMap, client: &Client<'_>) {
    if client.trusted {
        let ip = client.ip.to_string();
        let chain: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let xff = if chain.is_empty() {
            ip
        } else {
            format!("{}, {ip}", chain.join(", "))
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert(&X_FORWARDED_FOR, v);
        }
    } else {
        remove_matching(headers, |name| name.as_str().starts_with("x-forwarded-"));
        headers.insert(&X_FORWARDED_FOR, client.ip_header.clone());
    }
    if !(client.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if client.tls { "https" } else { "http" };
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(client.trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match client.host {
            Some(host) => {
                headers.insert(&X_FORWARDED_HOST, host.clone());
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// The whole header pipeline for the upstream request, in SPEC order.
/// `headers` arrive with hop-by-hop headers already removed (the caller needs
/// the `Upgrade` value before authentication); injection happens last.
/// `upstream` names where the request goes: the `aud` of the assertion.
pub fn build_upstream_headers(
    headers: &mut HeaderMap,
    identity_headers: &IdentityHeaders,
    auth: &Authenticator,
    underscores: UnderscoreHeaders,
    client: &Client<'_>,
    identity: Option<&Identity>,
    upstream: &str,
) -> Result<(), AssertionUnsigned> {
    identity_headers.strip(headers);
    auth.remove_unforwarded_credentials(headers);
    if underscores == UnderscoreHeaders::Drop {
        remove_matching(headers, |name| name.as_str().contains('_'));
    }
    set_forwarded(headers, client);
    headers.insert(&X_REQUEST_ID, client.request_id.clone());
    match identity {
        Some(identity) => identity_headers.inject(identity, upstream, headers),
        None => Ok(()),
    }
}

/// `preserve_host`: the client's Host (also for HTTP/2, which has none);
/// otherwise none, so the client sets the target's.
pub fn set_host(headers: &mut HeaderMap, preserve: bool, client_host: Option<&HeaderValue>) {
    match client_host.filter(|_| preserve) {
        Some(host) => {
            headers.insert(header::HOST, host.clone());
        }
        None => {
            headers.remove(header::HOST);
        }
    }
}

/// SPEC §4: the client's id if it is 1–128 characters of `[A-Za-z0-9._-]`,
/// else a fresh one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let bytes = v.as_bytes();
        let valid = (1..=128).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            return v.clone();
        }
    }
    new_request_id()
}

fn new_request_id() -> HeaderValue {
    // Ids need to be unique, not secret: a per-thread generator seeded once
    // from the system RNG costs a few nanoseconds instead of a DRBG call.
    thread_local! {
        static STATE: std::cell::Cell<(u64, u64)> = std::cell::Cell::new(seed());
    }
    fn seed() -> (u64, u64) {
        let mut bytes = [0u8; 16];
        // Should the system RNG fail, ids stay unique per thread anyway.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        let (a, b) = bytes.split_at(8);
        let a = u64::from_le_bytes(a.try_into().unwrap_or_default());
        let b = u64::from_le_bytes(b.try_into().unwrap_or_default());
        (a | 1, b | 1)
    }
    // xorshift128+ (Vigna), twice for 128 bits.
    let next = || {
        STATE.with(|state| {
            let (mut s1, s0) = state.get();
            s1 ^= s1 << 23;
            s1 ^= s1 >> 17;
            s1 ^= s0 ^ (s0 >> 26);
            state.set((s0, s1));
            s0.wrapping_add(s1)
        })
    };
    let (hi, lo) = (next(), next());
    let mut text = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in hi.to_be_bytes().iter().chain(&lo.to_be_bytes()).enumerate() {
        text[2 * i] = HEX[usize::from(byte >> 4)];
        text[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeaderPattern, IdentityConfig};
    use std::collections::BTreeMap;

    fn identity_headers() -> std::sync::Arc<IdentityHeaders> {
        IdentityHeaders::new(&IdentityConfig {
            strip: vec![HeaderPattern::Prefix("x-auth-".into())],
            headers: vec![(HeaderName::from_static("x-auth-user"), "sub".into())],
            assertion: None,
        })
        .expect("no assertion key to load")
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret, x-auth-user"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic abc"),
            ("accept", "*/*"),
        ]);
        assert_eq!(remove_hop_by_hop(&mut headers), None);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("accept"));
    }

    #[test]
    fn the_hop_by_hop_index_agrees_with_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name.as_str()), Some(i), "{name}");
        }
        for other in [
            "host",
            "accept",
            "user-agent",
            "x-connection",
            "upgrade-insecure-requests",
        ] {
            assert_eq!(hop_by_hop_index(other), None, "{other}");
        }
    }

    #[test]
    fn a_response_connection_header_goes_and_the_rest_stays() {
        let mut headers = map(&[
            ("connection", "Keep-Alive"),
            ("keep-alive", "timeout=75"),
            ("content-type", "text/plain"),
            ("content-length", "2"),
        ]);
        assert_eq!(remove_hop_by_hop(&mut headers), None);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "content-type"]);
        let mut headers = map(&[
            ("connection", "close, X-Private"),
            ("x-private", "1"),
            ("etag", "\"a\""),
        ]);
        remove_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["etag"]);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed_and_others_are_left() {
        for name in &HOP_BY_HOP {
            let mut headers = map(&[(name.as_str(), "x"), ("accept", "*/*")]);
            remove_hop_by_hop(&mut headers);
            assert!(!headers.contains_key(name), "{name} survived");
            assert!(headers.contains_key("accept"));
        }
        let mut plain = map(&[("accept", "*/*"), ("x-custom", "1")]);
        assert_eq!(remove_hop_by_hop(&mut plain), None);
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn an_upgrade_is_reported_only_when_connection_names_it() {
        let mut headers = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(
            remove_hop_by_hop(&mut headers).expect("upgrade"),
            "websocket"
        );
        assert!(headers.is_empty());
        let mut headers = map(&[("upgrade", "websocket")]);
        assert_eq!(remove_hop_by_hop(&mut headers), None);
    }

    #[test]
    fn untrusted_forwarded_headers_are_replaced_and_identity_injected_last() {
        let rid = HeaderValue::from_static("req-1");
        let host = HeaderValue::from_static("app.example.com");
        let ip_header = HeaderValue::from_static("192.0.2.7");
        let client = Client {
            ip: "192.0.2.7".parse().expect("ip"),
            ip_header: &ip_header,
            tls: false,
            trusted: false,
            host: Some(&host),
            request_id: &rid,
        };
        let mut headers = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-user", "root"),
            ("x_auth_user", "root"),
            ("x-auth-user", "root"),
            ("some_header", "1"),
        ]);
        let identity = Identity::new("alice", BTreeMap::new());
        build_upstream_headers(
            &mut headers,
            &identity_headers(),
            &Authenticator::disabled(),
            UnderscoreHeaders::Drop,
            &client,
            Some(&identity),
            "app",
        )
        .expect("no assertion configured");
        assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "app.example.com");
        assert!(headers.get("x-forwarded-user").is_none());
        assert!(headers.get("some_header").is_none());
        assert_eq!(headers["x-auth-user"], "alice");
        assert_eq!(headers.get_all("x-auth-user").iter().count(), 1);
        assert_eq!(headers["x-request-id"], "req-1");
    }

    #[test]
    fn trusted_proxies_extend_the_chain() {
        let rid = HeaderValue::from_static("r");
        let ip_header = HeaderValue::from_static("10.1.2.3");
        let client = Client {
            ip: "10.1.2.3".parse().expect("ip"),
            ip_header: &ip_header,
            tls: true,
            trusted: true,
            host: None,
            request_id: &rid,
        };
        let mut headers = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "public.example"),
        ]);
        build_upstream_headers(
            &mut headers,
            &identity_headers(),
            &Authenticator::disabled(),
            UnderscoreHeaders::Allow,
            &client,
            None,
            "app",
        )
        .expect("no assertion configured");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 10.1.2.3");
        assert_eq!(headers["x-forwarded-host"], "public.example");
        assert!(headers.get("x-auth-user").is_none());
    }

    #[test]
    fn request_ids_are_kept_only_when_well_formed() {
        let ok = map(&[("x-request-id", "abc-123_x.y")]);
        assert_eq!(request_id(&ok), "abc-123_x.y");
        for bad in ["", "has space", "semi;colon", &"a".repeat(129)] {
            let headers = map(&[("x-request-id", bad)]);
            let id = request_id(&headers);
            assert_eq!(id.len(), 32, "fresh id for {bad:?}");
            assert_ne!(id, bad);
        }
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }
}
