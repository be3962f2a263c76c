//! Unpadded base64 (RFC 4648): base64url for JWS segments, JWK members and
//! key thumbprints (RFC 7515 §2, RFC 7638), the standard alphabet for
//! express-session cookie signatures (cookie-signature). And the hex digit
//! of a percent-escape (RFC 3986 §2.1), one rule for every decoder here.

const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Unpadded base64url (RFC 7515 §2).
pub fn base64url(bytes: &[u8]) -> String {
    encode(bytes, URL_SAFE)
}

/// Unpadded standard base64, as cookie-signature writes MACs.
pub fn base64_unpadded(bytes: &[u8]) -> String {
    encode(bytes, STANDARD)
}

fn encode(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut buf = [0u8; 3];
        buf[..chunk.len()].copy_from_slice(chunk);
        let v = (u32::from(buf[0]) << 16) | (u32::from(buf[1]) << 8) | u32::from(buf[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[((v >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The value of one hex digit of a percent-escape (RFC 3986 §2.1 `HEXDIG`,
/// either case). Nothing else: `u8::from_str_radix` would also take a
/// leading `+` as a sign; `char::to_digit` takes ASCII digits and letters
/// only.
pub fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_are_exactly_rfc_3986_hexdig() {
        let digits: Vec<(u8, u8)> = (0..=255u8)
            .filter_map(|b| hex_digit(b).map(|v| (b, v)))
            .collect();
        let expected: Vec<(u8, u8)> = (b'0'..=b'9')
            .zip(0..)
            .chain((b'A'..=b'F').zip(10..))
            .chain((b'a'..=b'f').zip(10..))
            .collect();
        assert_eq!(digits, expected, "in byte order: 0-9, A-F, a-f");
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(plain.as_bytes()), encoded);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
