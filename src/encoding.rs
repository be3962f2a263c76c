//! Unpadded base64 (RFC 4648 §4, §5): base64url for JWS segments, JWK
//! members and key thumbprints (RFC 7515 §2, RFC 7638), the standard
//! alphabet for express-session cookie signatures (cookie-signature). And
//! the hex digit of a percent-escape (RFC 3986 §2.1), one rule for every
//! decoder here.
//!
//! The engines are the `base64` crate's, configured here and nowhere else,
//! so every encoder and decoder in the proxy spells base64 the same way.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};

/// RFC 7515 §2: no padding, and one spelling per value. A trailing `=`,
/// `+` or `/`, whitespace, and a last character whose unused bits are not
/// zero (RFC 4648 §3.5) are all refused, so a token whose signature was
/// re-spelled is refused, not verified as the same signature.
const UNPADDED: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_padding_mode(DecodePaddingMode::RequireNone)
    .with_decode_allow_trailing_bits(false);

const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, UNPADDED);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, UNPADDED);

/// Secrets an operator pastes into the config (`openssl rand -base64 32`):
/// the standard alphabet, padded or not.
const OPERATOR: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Unpadded base64url (RFC 7515 §2).
pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE.encode(bytes)
}

/// Unpadded standard base64, as cookie-signature writes MACs.
pub fn base64_unpadded(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Lower-case hex, two digits per byte (key ids, fingerprints, hashed
/// store keys).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Lower-case hex SHA-256 of `text`: how the store names a value it must
/// not hold in clear (a login state, a user's `sub`).
pub fn sha256_hex(text: &str) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
}

/// Padded standard base64 (RFC 4648 §4), as HTTP Basic credentials are
/// written (RFC 7617 §2).
pub fn base64_padded(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Why a JWS segment or a JWK member is not unpadded base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotBase64url {
    /// One character past a whole number of bytes (length ≡ 1 mod 4).
    Length,
    /// A character outside the base64url alphabet, `=` included.
    Symbol,
    /// The last character sets bits no byte uses (RFC 4648 §3.5).
    NonCanonical,
}

impl NotBase64url {
    /// The reason as a static string, for errors that carry one.
    pub fn as_str(self) -> &'static str {
        match self {
            NotBase64url::Length => "bad base64url length",
            NotBase64url::Symbol => "not base64url",
            NotBase64url::NonCanonical => "non-canonical base64url",
        }
    }
}

impl std::fmt::Display for NotBase64url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for NotBase64url {}

/// Decodes unpadded base64url (RFC 7515 §2), refusing every other spelling.
pub fn base64url_decode(text: &str) -> Result<Vec<u8>, NotBase64url> {
    URL_SAFE.decode(text).map_err(|e| match e {
        base64::DecodeError::InvalidLength(_) => NotBase64url::Length,
        base64::DecodeError::InvalidByte(..) | base64::DecodeError::InvalidPadding => {
            NotBase64url::Symbol
        }
        base64::DecodeError::InvalidLastSymbol(..) => NotBase64url::NonCanonical,
    })
}

/// Decodes a key an operator configured: standard base64, padding
/// optional (`openssl rand -base64 32` writes it padded).
pub fn operator_base64_decode(text: &str) -> Option<Vec<u8>> {
    OPERATOR.decode(text.trim()).ok()
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

/// One round of `%XX` decoding (RFC 3986 §2.1; what `decodeURIComponent`
/// does). A `%` not followed by two hex digits, or a result that is not
/// UTF-8, makes the whole value malformed (`None`), as `decodeURIComponent`
/// throws on it.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_digit(*bytes.get(i + 1)?)?;
            let lo = hex_digit(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 13.7): `u8::from_str_radix` reads a leading `+`
    /// as a sign, so `%+5` was decoded as the byte 5. RFC 3986 §2.1: an
    /// escape is `%` and exactly two hex digits; anything else is refused.
    #[test]
    fn an_escape_is_a_percent_and_exactly_two_hex_digits() {
        for bad in [
            "%+5", "%-5", "% 5", "%5", "%", "%G0", "%0G", "a%+5b", "%+F", "%-0", "%\u{e9}0", "%%41",
        ] {
            assert_eq!(percent_decode(bad), None, "{bad:?} was decoded");
        }
        for (good, decoded) in [
            ("%3A", ":"),
            ("%3a", ":"),
            ("s%3Aab%2Bc", "s:ab+c"),
            ("%C3%A9", "\u{e9}"),
            ("plain", "plain"),
            ("", ""),
        ] {
            assert_eq!(percent_decode(good).as_deref(), Some(decoded), "{good:?}");
        }
    }

    #[test]
    fn hex_and_sha256_hex_are_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

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

    #[test]
    fn base64url_decoding_round_trips_every_length() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(11))
                .collect();
            assert_eq!(base64url_decode(&base64url(&data)), Ok(data));
        }
        assert_eq!(base64url_decode("-_8"), Ok(vec![0xfb, 0xff]));
    }

    #[test]
    fn padding_is_refused() {
        for padded in ["QQ==", "QUE=", "QQ=", "QUFBQQ==", "=", "===="] {
            assert!(base64url_decode(padded).is_err(), "{padded}");
        }
    }

    #[test]
    fn every_ascii_byte_outside_the_url_safe_alphabet_is_refused_in_any_position() {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for x in (0u8..128).filter(|x| !alphabet.contains(x)) {
            // Four full-chunk positions, then the two of a 2-character tail.
            for pos in 0..6 {
                let mut text = *b"QUFBQQ";
                text[pos] = x;
                let text = std::str::from_utf8(&text).expect("ascii");
                assert!(base64url_decode(text).is_err(), "{x:#04x} at {pos}");
            }
        }
        // The standard alphabet's two characters, and whitespace anywhere.
        for text in ["a+b/", "+-__", "QUFB QQ", " QQ", "QQ\n", "QU\tE"] {
            assert_eq!(
                base64url_decode(text),
                Err(NotBase64url::Symbol),
                "{text:?}"
            );
        }
        assert_eq!(base64url_decode("QUé"), Err(NotBase64url::Symbol));
    }

    #[test]
    fn a_length_one_past_whole_bytes_is_refused() {
        for text in ["Q", "QUFBQ", "abcde", "QUFBQUFBQ"] {
            assert_eq!(base64url_decode(text), Err(NotBase64url::Length), "{text}");
        }
    }

    #[test]
    fn a_last_character_with_unused_bits_set_is_refused() {
        // "QQ" is "A"; "QR" to "QV" spell the same byte with stray bits, so
        // one signature would have several spellings.
        assert_eq!(base64url_decode("QQ"), Ok(b"A".to_vec()));
        for text in ["QR", "QS", "QV", "QUF", "QUG", "QUH"] {
            assert_eq!(
                base64url_decode(text),
                Err(NotBase64url::NonCanonical),
                "{text}"
            );
        }
        assert_eq!(base64url_decode("QUE"), Ok(b"AA".to_vec()));
    }

    #[test]
    fn cookie_signatures_are_unpadded_standard_base64() {
        // cookie-signature's own vector: HMAC-SHA256("hello", "tobiiscool").
        let mac = [
            0x0c, 0x60, 0xd4, 0x90, 0x69, 0x48, 0x90, 0x2c, 0xcf, 0xcf, 0xe0, 0xb4, 0x07, 0x4e,
            0xb8, 0x14, 0xd8, 0x07, 0x74, 0x48, 0xe8, 0xc7, 0xb7, 0x21, 0xf2, 0xd3, 0x81, 0x1a,
            0xc9, 0x59, 0xe5, 0x02,
        ];
        assert_eq!(
            base64_unpadded(&mac),
            "DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"
        );
        assert_eq!(base64_unpadded(b"ab"), "YWI");
    }
}
