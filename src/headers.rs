//! Header-map rules more than one stage needs: hop-by-hop headers (RFC
//! 9110 §7.6.1), removing headers by a name rule, the `X-Forwarded-*` and
//! `X-Request-Id` names, and request ids (SPEC §4). Nothing of the crate is
//! imported here, so routing, identity and the proxy can all use it.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

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

/// SPEC §4: the client's id if it is 1–128 characters of `[A-Za-z0-9._-]`,
/// else a fresh one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(id) if well_formed_request_id(id.as_bytes()) => id.clone(),
        _ => new_request_id(),
    }
}

/// SPEC §4's rule for keeping a client's id: 1–128 characters of
/// `[A-Za-z0-9._-]`.
pub fn well_formed_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
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
    let mut text = [0u8; ID_LEN];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in hi.to_be_bytes().iter().chain(&lo.to_be_bytes()).enumerate() {
        text[2 * i] = HEX[usize::from(byte >> 4)];
        text[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    HeaderValue::from_maybe_shared(id_bytes(&text))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

const ID_LEN: usize = 32;

/// Fresh ids per shared block: [`id_bytes`] allocates once per this many.
const IDS_PER_BLOCK: usize = 64;

/// `text` in bytes cut from a per-thread block shared by the next ids.
/// An id is cloned into the upstream request and moved into the response;
/// as bytes of its own it cost an allocation, and its first clone a second
/// one (a `Bytes` made from a `Vec` allocates its shared count when first
/// cloned). Cut from a block, it costs neither, and its clones only count.
/// A block is freed once its last id is: at most 2 KB held for as long as
/// a request that outlives the next 63 keeps its id.
fn id_bytes(text: &[u8; ID_LEN]) -> bytes::Bytes {
    thread_local! {
        static BLOCK: std::cell::Cell<bytes::BytesMut> =
            std::cell::Cell::new(bytes::BytesMut::new());
    }
    BLOCK.with(|cell| {
        let mut block = cell.take();
        if block.capacity() < ID_LEN {
            block = bytes::BytesMut::with_capacity(ID_LEN * IDS_PER_BLOCK);
        }
        block.extend_from_slice(text);
        let id = block.split().freeze();
        cell.set(block);
        id
    })
}

/// What a proxy in front says the client's scheme was: `Ok(None)`
/// without `X-Forwarded-Proto`, `Ok(Some(true))` for exactly `https`,
/// `Ok(Some(false))` for exactly `http`; anything else (two headers, a
/// list, another word) is `Err`: never guessed, since a proxy that appends
/// would put the client's own value first.
pub fn forwarded_https(headers: &HeaderMap) -> Result<Option<bool>, OddProto> {
    forwarded_https_of(headers.get_all(&X_FORWARDED_PROTO).iter())
}

/// [`forwarded_https`] on the `X-Forwarded-Proto` values a caller has
/// already found in the map, in order.
pub fn forwarded_https_of<'v>(
    mut values: impl Iterator<Item = &'v HeaderValue>,
) -> Result<Option<bool>, OddProto> {
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OddProto);
    }
    match value.as_bytes() {
        b"https" => Ok(Some(true)),
        b"http" => Ok(Some(false)),
        _ => Err(OddProto),
    }
}

/// `X-Forwarded-Proto` given twice, as a list, or as neither http nor https.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OddProto;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_https_takes_one_exact_value_or_nothing() {
        let with = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for v in values {
                map.append(&X_FORWARDED_PROTO, HeaderValue::from_str(v).expect("value"));
            }
            forwarded_https(&map)
        };
        assert_eq!(with(&[]), Ok(None));
        assert_eq!(with(&["https"]), Ok(Some(true)));
        assert_eq!(with(&["http"]), Ok(Some(false)));
        for odd in [
            &["https", "http"][..],
            &["http, https"],
            &["HTTPS "],
            &["wss"],
        ] {
            assert_eq!(with(odd), Err(OddProto), "{odd:?}");
        }
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

    #[test]
    fn fresh_ids_stay_distinct_and_whole_across_blocks() {
        // Three blocks' worth, each id kept while the next are cut, and
        // cloned: no id may change once handed out, or repeat. A copy of
        // its bytes taken when it was made is what it is checked against
        // (a clone shares the bytes, and would change with them).
        let ids: Vec<(HeaderValue, HeaderValue, Vec<u8>)> = (0..3 * IDS_PER_BLOCK + 5)
            .map(|_| {
                let id = request_id(&HeaderMap::new());
                let made = id.as_bytes().to_vec();
                (id.clone(), id, made)
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for (id, clone, made) in &ids {
            assert_eq!(id, clone);
            assert_eq!(id.as_bytes(), made.as_slice(), "changed since it was made");
            assert_eq!(id.len(), ID_LEN);
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
            assert!(seen.insert(id.as_bytes().to_vec()), "repeated {id:?}");
        }
    }
}
