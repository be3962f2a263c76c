//! Session cookie codecs: `plain` (the value is the id) and `express`
//! (express-session's `cookie-signature`: `s:<id>.<base64 HMAC-SHA256(id)>`
//! without `=` padding, URL-encoded in the cookie).
//!
//! Everything here runs before the store is asked: a forged signature or a
//! malformed id never costs a Redis round trip.

use std::borrow::Cow;

use aws_lc_rs::hmac;

use crate::config::{CookieCodec, Secret};
use crate::encoding::percent_decode;

/// Why a cookie value is not a session id (the reason is logged only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("not a signed value (no \"s:\" prefix)")]
    NotSigned,
    #[error("signature does not match any secret")]
    BadSignature,
    #[error("malformed session id")]
    MalformedId,
}

/// The longest session id accepted: far above what session libraries mint,
/// far below what could hurt the store.
const MAX_ID_LEN: usize = 256;

/// The shape of a session id, checked before the store is asked: 1 to
/// `MAX_ID_LEN` characters of `[A-Za-z0-9_-]`.
pub fn well_formed_session_id(id: &str) -> bool {
    // `fold`, not `all`: without the early exit the check is vectorised,
    // and MAX_ID_LEN bounds the scan.
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().fold(true, |ok, b| {
            ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_'))
        })
}

pub struct Codec {
    kind: CookieCodec,
    keys: Vec<hmac::Key>,
}

impl Codec {
    pub fn new(kind: CookieCodec, secrets: &[Secret]) -> Self {
        Codec {
            kind,
            keys: secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.expose().as_bytes()))
                .collect(),
        }
    }

    /// The session id carried by a cookie value.
    pub fn session_id<'v>(&self, cookie_value: &'v str) -> Result<Cow<'v, str>, CookieError> {
        let id = match self.kind {
            CookieCodec::Plain => Cow::Borrowed(cookie_value),
            CookieCodec::Express => Cow::Owned(self.unsign(cookie_value)?),
        };
        if !well_formed_session_id(&id) {
            return Err(CookieError::MalformedId);
        }
        Ok(id)
    }

    /// cookie-signature's `unsign`, trying every secret so that secrets can
    /// rotate: the first signs (in the app), every one verifies. Like
    /// cookie-signature, the expected signature is recomputed and compared
    /// as text in constant time, so non-canonical base64 spellings of a
    /// valid MAC are refused too.
    fn unsign(&self, cookie_value: &str) -> Result<String, CookieError> {
        let decoded = percent_decode(cookie_value).ok_or(CookieError::MalformedId)?;
        let signed = decoded.strip_prefix("s:").ok_or(CookieError::NotSigned)?;
        let (id, signature) = signed.rsplit_once('.').ok_or(CookieError::BadSignature)?;
        let matches = self.keys.iter().any(|key| {
            let expected =
                crate::encoding::base64_unpadded(hmac::sign(key, id.as_bytes()).as_ref());
            aws_lc_rs::constant_time::verify_slices_are_equal(
                expected.as_bytes(),
                signature.as_bytes(),
            )
            .is_ok()
        });
        if matches {
            Ok(id.to_owned())
        } else {
            Err(CookieError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn express(secrets: &[&str]) -> Codec {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        Codec::new(CookieCodec::Express, &secrets)
    }

    #[test]
    fn cookie_signature_test_vector_verifies() {
        // cookie-signature's own test: sign('hello', 'tobiiscool').
        let codec = express(&["tobiiscool"]);
        let value = "s:hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI";
        assert_eq!(codec.session_id(value), Ok("hello".into()));
        let encoded = "s%3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI";
        assert_eq!(codec.session_id(encoded), Ok("hello".into()));
    }

    #[test]
    fn every_secret_verifies_so_secrets_can_rotate() {
        let codec = express(&["new-secret", "tobiiscool"]);
        let value = "s:hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI";
        assert_eq!(codec.session_id(value), Ok("hello".into()));
    }

    #[test]
    fn forged_or_unsigned_values_are_refused() {
        let codec = express(&["tobiiscool"]);
        for (value, why) in [
            (
                "s:hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QJ",
                "last char",
            ),
            (
                "s:hellp.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI",
                "other id",
            ),
            ("hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI", "no s:"),
            ("s:hello", "no signature"),
            ("s:hello.!!!", "not base64"),
            (
                "s:hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI=",
                "padded",
            ),
            ("s%3", "bad escape"),
        ] {
            assert!(codec.session_id(value).is_err(), "{why}");
        }
    }

    #[test]
    fn an_express_cookie_with_a_signed_escape_is_refused() {
        let codec = express(&["tobiiscool"]);
        let encoded = "s%3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI";
        assert_eq!(codec.session_id(encoded), Ok("hello".into()));
        for bad in [
            "s%+3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
            "s%3Ahel%+5lo.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
            "s%3Ahello.DGDUkGlIkCzPz%+2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
        ] {
            assert_eq!(
                codec.session_id(bad),
                Err(CookieError::MalformedId),
                "{bad:?}"
            );
        }
    }

    /// cookie-signature's `sign`, written out apart from `unsign`.
    fn sign(id: &str, secret: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let mac = crate::encoding::base64_unpadded(hmac::sign(&key, id.as_bytes()).as_ref());
        format!("s:{id}.{mac}")
    }

    fn is_id_shaped(id: &str) -> bool {
        (1..=MAX_ID_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    proptest! {
        // PROPTEST_CASES raises the count for a deep run.
        #![proptest_config(ProptestConfig {
            cases: ProptestConfig::default().cases.max(2048),
            ..ProptestConfig::default()
        })]

        #[test]
        fn plain_accepts_exactly_the_ids_of_the_allowed_shape(
            value in prop_oneof![
                "[A-Za-z0-9_-]{0,300}",
                "[A-Za-z0-9_.:/%+ -]{0,12}",
                "\\PC{0,12}",
            ],
        ) {
            let codec = Codec::new(CookieCodec::Plain, &[]);
            match codec.session_id(&value) {
                Ok(id) => {
                    prop_assert_eq!(id.as_ref(), value.as_str());
                    prop_assert!(is_id_shaped(&id), "{:?}", value);
                }
                Err(_) => prop_assert!(!is_id_shaped(&value), "{:?}", value),
            }
        }

        /// Signed by any configured secret: accepted, as sent or URL-encoded,
        /// and the id comes back. Signed by another secret, or with one byte
        /// changed: refused.
        #[test]
        fn express_accepts_exactly_what_a_configured_secret_signed(
            id in "[A-Za-z0-9_-]{1,40}",
            secrets in proptest::collection::vec("\\PC{1,16}", 1..4),
            signer in any::<proptest::sample::Index>(),
            outsider in "\\PC{1,16}",
            at in any::<proptest::sample::Index>(),
            shift in 1u8..94,
        ) {
            prop_assume!(!secrets.contains(&outsider));
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let codec = express(&refs);

            let signed = sign(&id, signer.get(&secrets).as_str());
            prop_assert_eq!(codec.session_id(&signed), Ok(Cow::Borrowed(id.as_str())));
            let encoded = signed.replace(':', "%3A").replace('+', "%2B").replace('/', "%2F");
            prop_assert_eq!(codec.session_id(&encoded), Ok(Cow::Borrowed(id.as_str())));

            prop_assert!(codec.session_id(&sign(&id, &outsider)).is_err());

            let mut mutated = signed.clone().into_bytes();
            let i = at.index(mutated.len());
            // Another visible byte, never the same one: no rejected cases.
            mutated[i] = (mutated[i] - 0x21 + shift) % 94 + 0x21;
            let mutated = String::from_utf8(mutated).map_err(|e| {
                proptest::test_runner::TestCaseError::fail(e.to_string())
            })?;
            prop_assert!(codec.session_id(&mutated).is_err(), "{:?} accepted", mutated);
        }
    }

    #[test]
    fn ids_are_checked_before_any_lookup() {
        let codec = Codec::new(CookieCodec::Plain, &[]);
        assert_eq!(codec.session_id("abc-DEF_123"), Ok("abc-DEF_123".into()));
        for bad in ["", "a b", "a:b", "ä", "a\"b", "../x", &"a".repeat(257)] {
            assert_eq!(
                codec.session_id(bad),
                Err(CookieError::MalformedId),
                "{bad:?}"
            );
        }
    }
}
