//! Path normalization (SPEC §5.3, §6a): the one path that routing, policy and
//! the upstream all see.
//!
//! A proxy that checks one spelling of a path and forwards another can be
//! walked around (`/public/../admin`, `/public/%2e%2e/admin`, Tomcat's
//! `/public/..;/admin`). So the path is normalized once, here, and the
//! normalized form is what gets forwarded. Anything whose meaning could differ
//! between us and a backend — an encoded `/`, `\` or NUL, a raw `\`, a dot
//! segment with a `;` parameter, a `..` above the root — is refused instead.
//!
//! The steps follow RFC 3986: only `pchar` and `/` are accepted raw (§3.3);
//! escapes of unreserved characters are decoded and every other escape is
//! kept with upper-case hex digits (§6.2.2.1, §6.2.2.2), decoding exactly once;
//! runs of `/` are merged; then dot segments are removed (§5.2.4), a `..` above
//! the root being an error rather than clamped.

use crate::encoding::hex_digit;

/// Why a request path was refused. Every variant becomes a 400 `bad_request`
/// (SPEC §4); the message is logged, so it never echoes the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// RFC 9112 §3.2.1: origin-form starts with `/`.
    #[error("path does not start with '/'")]
    NotAbsolute,
    /// RFC 3986 §3.3: a byte that is neither `pchar` nor `/`.
    #[error("invalid character in path")]
    InvalidCharacter,
    /// RFC 3986 §2.1: `%` not followed by two hex digits.
    #[error("malformed percent-escape in path")]
    InvalidEscape,
    /// Some servers read `\` as `/`; we cannot know which the upstream does.
    #[error("raw backslash in path")]
    RawBackslash,
    /// `%2F`: one segment to us, two to a backend that decodes first.
    #[error("encoded slash in path")]
    EncodedSlash,
    /// `%5C`: a separator to backends that decode, then read `\` as `/`.
    #[error("encoded backslash in path")]
    EncodedBackslash,
    /// `%00`: truncates the path in C-string backends.
    #[error("encoded NUL in path")]
    EncodedNul,
    /// `..;x` or `.;`: a dot segment to Tomcat-style path-parameter stripping.
    #[error("dot segment with a parameter in path")]
    DotSegmentWithParameter,
    /// A `..` segment that would climb above `/`.
    #[error("dot segment above the root")]
    AboveRoot,
}

/// Normalizes the path of an origin-form request target (the caller has split
/// off `?query`). See the module docs for the rules.
///
/// A path that is already normal — no `%`, no `//`, no segment starting with
/// `.` — is returned as an unchanged copy after one validating scan.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if validate(raw.as_bytes())? {
        rewrite(raw.as_bytes())
    } else {
        Ok(raw.to_owned())
    }
}

/// Checks every byte and escape. Returns whether the path needs rewriting
/// (it holds an escape, a `//`, or a segment starting with `.`).
fn validate(raw: &[u8]) -> Result<bool, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut needs_rewrite = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'%' => {
                let value = escape_at(raw, i)?;
                match value {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    0 => return Err(PathError::EncodedNul),
                    _ => {}
                }
                needs_rewrite = true;
                i += 3;
                continue;
            }
            b'/' => {
                if matches!(raw.get(i + 1), Some(b'/' | b'.')) {
                    needs_rewrite = true;
                }
            }
            b'\\' => return Err(PathError::RawBackslash),
            _ if is_pchar(b) => {}
            _ => return Err(PathError::InvalidCharacter),
        }
        i += 1;
    }
    Ok(needs_rewrite)
}

/// Decodes, merges `//` and removes dot segments, in one pass over the
/// segments of an already validated path.
fn rewrite(raw: &[u8]) -> Result<String, PathError> {
    // Decoding only shrinks the path, so one allocation suffices.
    let mut out = String::with_capacity(raw.len());
    out.push('/');
    // `raw` starts with `/` (validated), so the first piece is what follows it.
    let mut segments = raw[1..].split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        if segment.is_empty() {
            // An empty segment is a `//` (merged) or the trailing slash, which
            // `out` already ends with.
            continue;
        }
        let start = out.len();
        decode_segment(segment, &mut out)?;
        match &out[start..] {
            "." => out.truncate(start),
            ".." => {
                out.truncate(start);
                // `out` is `/` or `/a/.../b/`: drop `b/`.
                let parent = start.checked_sub(1).ok_or(PathError::AboveRoot)?;
                match out[..parent].rfind('/') {
                    Some(slash) => out.truncate(slash + 1),
                    None => return Err(PathError::AboveRoot),
                }
            }
            s if is_dot_with_parameter(s) => return Err(PathError::DotSegmentWithParameter),
            _ if is_last => {}
            _ => out.push('/'),
        }
    }
    Ok(out)
}

/// `.;x`, `..;x`, and the same with `;` escaped as `%3B`: a backend that
/// decodes before stripping path parameters would see a dot segment.
fn is_dot_with_parameter(segment: &str) -> bool {
    let rest = segment
        .strip_prefix("..")
        .or_else(|| segment.strip_prefix('.'));
    rest.is_some_and(|rest| rest.starts_with(';') || rest.starts_with("%3B"))
}

/// Appends one segment of a validated path to `out`, decoding escapes of
/// unreserved characters and upper-casing the hex digits of the others.
fn decode_segment(segment: &[u8], out: &mut String) -> Result<(), PathError> {
    let mut i = 0;
    while i < segment.len() {
        let b = segment[i];
        if b == b'%' {
            let value = escape_at(segment, i)?;
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push(char::from(segment[i + 1].to_ascii_uppercase()));
                out.push(char::from(segment[i + 2].to_ascii_uppercase()));
            }
            i += 3;
        } else {
            // Validated: every raw byte is ASCII.
            out.push(char::from(b));
            i += 1;
        }
    }
    Ok(())
}

/// The byte encoded by the escape starting at `bytes[at]` (a `%`).
fn escape_at(bytes: &[u8], at: usize) -> Result<u8, PathError> {
    let hi = bytes.get(at + 1).and_then(|&b| hex_digit(b));
    let lo = bytes.get(at + 2).and_then(|&b| hex_digit(b));
    match (hi, lo) {
        (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
        _ => Err(PathError::InvalidEscape),
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §3.3 `pchar`, without the `%` of an escape (handled separately).
fn is_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Request paths built from the pieces normalization cares about: pchar
    /// runs, separators, dot segments, escapes of any byte in either case,
    /// and now and then any printable ASCII byte.
    pub(crate) fn any_path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => "[A-Za-z0-9._~!$&'()*+,;=:@-]{1,3}",
            3 => Just("/".to_owned()),
            2 => Just(".".to_owned()),
            2 => Just("..".to_owned()),
            3 => (any::<u8>(), any::<bool>()).prop_map(|(b, upper)| if upper {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            }),
            1 => "[ -~]",
        ];
        proptest::collection::vec(piece, 0..16).prop_map(|pieces| format!("/{}", pieces.concat()))
    }

    #[test]
    fn table_of_paths() {
        use PathError::*;
        let cases: &[(&str, Result<&str, PathError>)] = &[
            // Already normal: returned unchanged.
            ("/", Ok("/")),
            ("/api", Ok("/api")),
            ("/api/", Ok("/api/")),
            ("/a/b.c/d..e/.well", Ok("/a/b.c/d..e/.well")),
            ("/a;b=c/x:y@z/!$&'()*+,", Ok("/a;b=c/x:y@z/!$&'()*+,")),
            ("/a-b_c~d", Ok("/a-b_c~d")),
            // Not absolute.
            ("", Err(NotAbsolute)),
            ("*", Err(NotAbsolute)),
            ("api", Err(NotAbsolute)),
            ("%2F", Err(NotAbsolute)),
            // Characters outside pchar.
            ("/a b", Err(InvalidCharacter)),
            ("/a\tb", Err(InvalidCharacter)),
            ("/a\0b", Err(InvalidCharacter)),
            ("/a\u{7f}", Err(InvalidCharacter)),
            ("/é", Err(InvalidCharacter)),
            ("/\"", Err(InvalidCharacter)),
            ("/<>", Err(InvalidCharacter)),
            ("/^", Err(InvalidCharacter)),
            ("/`", Err(InvalidCharacter)),
            ("/{|}", Err(InvalidCharacter)),
            ("/a#b", Err(InvalidCharacter)),
            ("/a?b", Err(InvalidCharacter)),
            ("/a\\b", Err(RawBackslash)),
            ("/..\\admin", Err(RawBackslash)),
            // Escapes.
            ("/%zz", Err(InvalidEscape)),
            ("/%4", Err(InvalidEscape)),
            ("/%", Err(InvalidEscape)),
            ("/%g0", Err(InvalidEscape)),
            ("/a%2fb", Err(EncodedSlash)),
            ("/a%2Fb", Err(EncodedSlash)),
            ("/a%5Cb", Err(EncodedBackslash)),
            ("/a%5cb", Err(EncodedBackslash)),
            ("/a%00", Err(EncodedNul)),
            // Errors win over any rewriting.
            ("/a%2fb/../x", Err(EncodedSlash)),
            ("/x/../%zz", Err(InvalidEscape)),
            ("/%41%7e", Ok("/A~")),
            ("/%61%2D%2e%5F%30", Ok("/a-._0")),
            ("/%3a", Ok("/%3A")),
            ("/%3A", Ok("/%3A")),
            ("/%c3%a9", Ok("/%C3%A9")),
            ("/%20", Ok("/%20")),
            // Decoded exactly once: `%25` is kept, and what follows is literal.
            ("/%252e", Ok("/%252e")),
            ("/%252E%252e", Ok("/%252E%252e")),
            ("/%25/..", Ok("/")),
            // `//` merged.
            ("//", Ok("/")),
            ("//x//y/", Ok("/x/y/")),
            ("/a///b", Ok("/a/b")),
            // Dot segments.
            ("/.", Ok("/")),
            ("/./", Ok("/")),
            ("/a/.", Ok("/a/")),
            ("/a/./b", Ok("/a/b")),
            ("/a/..", Ok("/")),
            ("/a/../", Ok("/")),
            ("/a/b/..", Ok("/a/")),
            ("/a/b/../c", Ok("/a/c")),
            ("/public/../admin", Ok("/admin")),
            ("/public//../admin", Ok("/admin")),
            ("/public/./../admin/", Ok("/admin/")),
            ("/a/%2e%2E/admin", Ok("/admin")),
            ("/a/.%2e/admin", Ok("/admin")),
            ("/a/%2e/b", Ok("/a/b")),
            ("/..", Err(AboveRoot)),
            ("/../", Err(AboveRoot)),
            ("/../admin", Err(AboveRoot)),
            ("/%2e%2e/admin", Err(AboveRoot)),
            ("/a/../../admin", Err(AboveRoot)),
            ("//../admin", Err(AboveRoot)),
            // Dot segments with a parameter (Tomcat).
            ("/..;/admin", Err(DotSegmentWithParameter)),
            ("/admin/..;x/", Err(DotSegmentWithParameter)),
            ("/a/.;", Err(DotSegmentWithParameter)),
            ("/a/..;", Err(DotSegmentWithParameter)),
            ("/a/%2e%2e;x/b", Err(DotSegmentWithParameter)),
            ("/a/..%3bx/b", Err(DotSegmentWithParameter)),
            ("/a/.%3B", Err(DotSegmentWithParameter)),
            // ... but a `;` elsewhere is an ordinary segment.
            ("/a/...;x", Ok("/a/...;x")),
            ("/a/x..;", Ok("/a/x..;")),
            ("/a/;../b", Ok("/a/;../b")),
            // Segments that merely start with a dot are kept.
            ("/.well-known/jwks", Ok("/.well-known/jwks")),
            ("/a/.../b", Ok("/a/.../b")),
            ("/a/..b/", Ok("/a/..b/")),
        ];
        for (input, expected) in cases {
            let got = normalize_path(input);
            let expected = expected.map(str::to_owned);
            assert_eq!(got, expected, "normalize_path({input:?})");
        }
    }

    #[test]
    fn error_messages_do_not_echo_the_path() {
        for input in [
            "/secret%2f",
            "/secret\\",
            "/secret/..;x",
            "/../secret",
            "/sec ret",
        ] {
            let Err(err) = normalize_path(input) else {
                panic!("{input:?} should be refused");
            };
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    fn assert_normal(y: &str) {
        assert!(y.starts_with('/'), "{y:?}");
        assert!(!y.contains("//"), "{y:?}");
        assert!(
            y.split('/').all(|s| s != "." && s != ".."),
            "dot segment in {y:?}"
        );
        let bytes = y.as_bytes();
        for (i, _) in y.match_indices('%') {
            let escape = &bytes[i + 1..i + 3];
            assert!(
                escape
                    .iter()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
                "lower-case escape in {y:?}"
            );
            let value = escape_at(bytes, i).expect("valid escape");
            assert!(!is_unreserved(value), "unreserved escape in {y:?}");
            assert!(
                !matches!(value, b'/' | b'\\' | 0),
                "encoded separator or NUL in {y:?}"
            );
        }
        assert!(
            y.bytes().all(|b| b == b'/' || b == b'%' || is_pchar(b)),
            "a byte outside pchar in {y:?}"
        );
    }

    proptest! {
        // PROPTEST_CASES raises the count for a deep run.
        #![proptest_config(ProptestConfig {
            cases: ProptestConfig::default().cases.max(4096),
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_accepted_path_is_normal_and_a_fixed_point(x in any_path()) {
            if let Ok(y) = normalize_path(&x) {
                prop_assert_eq!(normalize_path(&y), Ok(y.clone()));
                assert_normal(&y);
            }
        }

        #[test]
        fn arbitrary_text_never_panics_and_is_normal_when_accepted(
            pieces in proptest::collection::vec(
                // Any character, and often the makings of an escape or a
                // dot segment, which plain random text almost never spells.
                prop_oneof![
                    any::<char>().prop_map(String::from),
                    proptest::sample::select(vec!["%", "2f", "5C", "00", "2e", "/", ".", "\\"])
                        .prop_map(str::to_owned),
                ],
                0..24,
            ),
        ) {
            let x = format!("/{}", pieces.concat());
            if let Ok(y) = normalize_path(&x) {
                prop_assert_eq!(normalize_path(&y), Ok(y.clone()));
                assert_normal(&y);
            }
        }

        #[test]
        fn normalized_paths_are_normal_and_fixed_points(
            x in "/?[/.%0-9a-fA-FgzZ;~:]{0,32}"
        ) {
            if let Ok(y) = normalize_path(&x) {
                assert_normal(&y);
                prop_assert_eq!(normalize_path(&y), Ok(y.clone()));
            }
        }

        #[test]
        fn dotty_paths_are_normal_and_fixed_points(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("/"), Just("."), Just(".."), Just("%2e"), Just("%2E"),
                    Just(";"), Just("%3b"), Just("%25"), Just("%41"), Just("a"),
                    Just("2e"), Just("f"), Just("5c"),
                ],
                0..16,
            )
        ) {
            let x = format!("/{}", parts.concat());
            if let Ok(y) = normalize_path(&x) {
                assert_normal(&y);
                prop_assert_eq!(normalize_path(&y), Ok(y.clone()));
            }
        }
    }
}
