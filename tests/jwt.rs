//! JWT authentication through real sockets (SPEC §3 `[jwt]`, §4, §5
//! guarantees 1, 4, 6, 7, §6a): tokens built by hand (RFC 7515/7519),
//! keys served by a real JWKS endpoint (RFC 7517) the tests steer, bearer
//! errors as RFC 6750 §3 describes them, and the attacks of RFC 8725 §2.
//!
//! Every rejection test also checks that the upstream was never called
//! (guarantee 1) and that the token does not come back in the body
//! (guarantee 7).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::client::{Reply, get};
use common::jwks::JwksServer;
use common::tokens::{self, EcKey, EdKey, RsaKey, Token, b64url, now, oct_jwk, random_id};
use common::upstream::{self, Seen, TestUpstream};
use common::{TestProxy, jump_clock, one_upstream, start_proxy};
use serde_json::{Value, json};

use common::REQUIRED_OPTIONAL_PUBLIC as ROUTES;

/// The keys an identity provider signs with.
struct Keys {
    rsa: RsaKey,
    ec: EcKey,
    ed: EdKey,
}

impl Keys {
    fn generate() -> Keys {
        Keys {
            rsa: RsaKey::generate("k1"),
            ec: EcKey::generate("e1"),
            ed: EdKey::generate("d1"),
        }
    }

    /// A realistic mixed key set: RSA, EC and OKP, none bound to an `alg`.
    fn all(&self) -> Vec<Value> {
        vec![self.rsa.jwk(), self.ec.jwk(), self.ed.jwk()]
    }
}

/// An identity provider and an upstream, before the proxy starts.
struct Setup {
    keys: Keys,
    idp: JwksServer,
    up: TestUpstream,
}

impl Setup {
    async fn new() -> Setup {
        let keys = Keys::generate();
        Setup::with_keys(keys, Keys::all).await
    }

    async fn with_keys(keys: Keys, published: impl FnOnce(&Keys) -> Vec<Value>) -> Setup {
        let idp = JwksServer::start(published(&keys)).await;
        Setup {
            keys,
            idp,
            up: upstream::echo().await,
        }
    }

    fn issuer(&self) -> String {
        self.idp.base_url()
    }

    /// iss, sub, aud, iat, exp (+5 min) and the kid of the RSA key.
    fn token(&self) -> Token {
        good_claims(Token::new().kid("k1"), &self.issuer())
    }

    /// The proxy config: `jwt_table` (may be empty), one provider `idp`
    /// with `overrides` (value "-" removes a default key), the routes.
    fn config(&self, jwt_table: &str, overrides: &[(&str, &str)]) -> String {
        let provider = common::jwks::provider_toml(&self.idp, overrides);
        one_upstream(self.up.addr, &format!("{jwt_table}\n{provider}\n{ROUTES}"))
    }

    /// Starts the proxy and waits until it holds the provider's keys.
    async fn start(self, jwt_table: &str, overrides: &[(&str, &str)]) -> Fixture {
        let px = start_proxy(&self.config(jwt_table, overrides)).await;
        let fetches_keys = !overrides.iter().any(|(k, _)| *k == "hmac_secret");
        if fetches_keys {
            wait_until("the start-up JWKS fetch", || self.idp.fetches() >= 1).await;
        }
        common::wait_ready(&px).await;
        Fixture {
            keys: self.keys,
            idp: self.idp,
            up: self.up,
            px,
        }
    }
}

fn good_claims(token: Token, issuer: &str) -> Token {
    let now = now();
    token
        .claim("iss", json!(issuer))
        .claim("sub", json!("alice"))
        .claim("aud", json!("app"))
        .claim("iat", json!(now))
        .claim("exp", json!(now + 300))
}

/// `provider_toml`'s `min_refresh_interval`.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// Polls `condition` (a state the test cannot await directly) for up to 10 s.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running proxy with one provider `idp` in front of an echo upstream.
struct Fixture {
    keys: Keys,
    idp: JwksServer,
    up: TestUpstream,
    px: TestProxy,
}

impl Fixture {
    async fn start(jwt_table: &str, overrides: &[(&str, &str)]) -> Fixture {
        Setup::new().await.start(jwt_table, overrides).await
    }

    fn issuer(&self) -> String {
        self.idp.base_url()
    }

    fn token(&self) -> Token {
        good_claims(Token::new().kid("k1"), &self.issuer())
    }

    fn upstream_calls(&self) -> usize {
        self.up.requests.load(Ordering::SeqCst)
    }

    async fn get(&self, path: &str, headers: &[&str]) -> Reply {
        get(self.px.addr, path, headers).await
    }

    async fn bearer(&self, token: &str) -> Reply {
        let auth = format!("Authorization: Bearer {token}");
        self.get("/api/x", &[&auth]).await
    }

    /// The token is accepted: 200 from the upstream, identity injected.
    async fn assert_accepted(&self, token: &str, why: &str) -> Seen {
        let reply = self.bearer(token).await;
        assert_eq!(
            reply.status,
            200,
            "{why}: expected 200, got {}",
            reply.text()
        );
        let seen = reply.seen();
        assert_eq!(
            seen.headers.get("x-auth-user"),
            Some(&vec!["alice".to_owned()]),
            "{why}: X-Auth-User from `sub`"
        );
        seen
    }

    /// The token is refused as RFC 6750 `invalid_token`, never forwarded,
    /// never echoed.
    async fn assert_invalid(&self, token: &str, why: &str) {
        let before = self.upstream_calls();
        let reply = self.bearer(token).await;
        assert_invalid_token_reply(&reply, token, why);
        assert_eq!(
            self.upstream_calls(),
            before,
            "{why}: the upstream must not be called"
        );
    }

    async fn metrics(&self) -> String {
        let reply = get(self.px.admin, "/metrics", &[]).await;
        assert_eq!(reply.status, 200, "metrics: {}", reply.text());
        reply.text()
    }
}

/// Guarantee 7: neither the token nor any of its longer segments is echoed.
fn assert_not_echoed(reply: &Reply, token: &str, why: &str) {
    let body = reply.text();
    assert!(
        !body.contains(token),
        "{why}: the body echoes the token: {body}"
    );
    for segment in token.split('.').filter(|s| s.len() >= 12) {
        assert!(
            !body.contains(segment),
            "{why}: the body echoes a token segment: {body}"
        );
    }
}

/// A 401 with body code `code` and the RFC 6750 challenge, which names
/// `invalid_token` exactly when the code does.
fn assert_401_reply(reply: &Reply, code: &str, why: &str) {
    assert_eq!(
        reply.status,
        401,
        "{why}: expected 401, got {}",
        reply.text()
    );
    assert_eq!(reply.json()["error"], code, "{why}: body {}", reply.text());
    let challenge = reply
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{why}: a 401 without WWW-Authenticate"));
    assert!(
        challenge.starts_with("Bearer realm=\"wristband\""),
        "{why}: challenge {challenge}"
    );
    assert_eq!(
        challenge.contains("error=\"invalid_token\""),
        code == "invalid_token",
        "{why}: challenge {challenge}"
    );
}

fn assert_invalid_token_reply(reply: &Reply, token: &str, why: &str) {
    assert_401_reply(reply, "invalid_token", why);
    assert_not_echoed(reply, token, why);
}

fn assert_unauthenticated_reply(reply: &Reply, why: &str) {
    assert_401_reply(reply, "unauthenticated", why);
}

fn assert_unavailable_reply(reply: &Reply, why: &str) {
    assert_eq!(
        reply.status,
        503,
        "{why}: expected 503, got {} {}",
        reply.status,
        reply.text()
    );
    assert_eq!(
        reply.json()["error"],
        "unavailable",
        "{why}: body {}",
        reply.text()
    );
    assert_eq!(reply.header("retry-after"), Some("1"), "{why}: Retry-After");
}

// ---------------------------------------------------------------------------
// The helpers themselves.

#[test]
fn the_test_base64_encoders_match_rfc4648_vectors() {
    let vectors = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (plain, encoded) in vectors {
        assert_eq!(tokens::b64std(plain.as_bytes()), encoded);
        assert_eq!(b64url(plain.as_bytes()), encoded.trim_end_matches('='));
    }
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
}

#[test]
fn the_test_signatures_verify_with_aws_lc_rs() {
    use aws_lc_rs::signature::{self, UnparsedPublicKey};
    let keys = Keys::generate();
    let token = Token::new().claim("sub", json!("x")).sign_rs256(&keys.rsa);
    let (input, sig) = token.rsplit_once('.').expect("three segments");
    let sig = base64url_decode(sig);
    UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        keys.rsa.public_der_pkcs1(),
    )
    .verify(input.as_bytes(), &sig)
    .expect("RS256 signature verifies");
    let jwk = keys.rsa.jwk();
    assert_eq!(jwk["e"], "AQAB");
    assert_eq!(
        base64url_decode(jwk["n"].as_str().expect("n")).len(),
        256,
        "2048-bit modulus without a leading zero"
    );
    assert!(
        keys.rsa
            .public_pem()
            .starts_with("-----BEGIN PUBLIC KEY-----\nMII")
    );
}

fn base64url_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}

// ---------------------------------------------------------------------------
// Valid tokens.

#[tokio::test]
async fn a_valid_rs256_token_is_forwarded_with_its_subject_as_x_auth_user() {
    let f = Fixture::start("", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "RS256").await;
    assert_eq!(f.upstream_calls(), 1);
}

#[tokio::test]
async fn a_valid_es256_token_is_forwarded() {
    let f = Fixture::start("", &[]).await;
    let token = f.token().kid("e1").sign_es256(&f.keys.ec);
    f.assert_accepted(&token, "ES256").await;
}

#[tokio::test]
async fn a_valid_eddsa_token_is_forwarded_when_eddsa_is_allowed() {
    let f = Fixture::start("", &[("algorithms", "[\"EdDSA\"]")]).await;
    let token = f.token().kid("d1").sign_eddsa(&f.keys.ed);
    f.assert_accepted(&token, "EdDSA").await;
    // The list is an allow-list: RS256 is now refused.
    let rs256 = f.token().sign_rs256(&f.keys.rsa);
    f.assert_invalid(&rs256, "RS256 outside algorithms = [EdDSA]")
        .await;
}

#[tokio::test]
async fn a_client_sent_x_auth_user_is_replaced_not_duplicated() {
    let f = Fixture::start("", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    let auth = format!("Authorization: Bearer {token}");
    let reply = f
        .get(
            "/api/x",
            &[&auth, "X-Auth-User: mallory", "x-auth-user: eve"],
        )
        .await;
    let seen = reply.seen();
    assert_eq!(
        seen.headers.get("x-auth-user"),
        Some(&vec!["alice".to_owned()])
    );
}

#[tokio::test]
async fn a_token_expired_within_the_default_leeway_is_accepted() {
    let f = Fixture::start("", &[]).await;
    let token = f
        .token()
        .claim("iat", json!(now() - 300))
        .claim("exp", json!(now() - 10))
        .sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "exp 10 s ago, leeway 30 s").await;
    let token = f
        .token()
        .claim("nbf", json!(now() + 10))
        .sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "nbf 10 s ahead, leeway 30 s")
        .await;
}

// ---------------------------------------------------------------------------
// Guarantee 4: what is never accepted.

#[tokio::test]
async fn alg_none_is_rejected_in_every_spelling_with_or_without_a_signature() {
    let f = Fixture::start("", &[]).await;
    let real_sig = {
        let signed = f.token().sign_rs256(&f.keys.rsa);
        let (_, sig) = signed.rsplit_once('.').expect("three segments");
        sig.to_owned()
    };
    for spelling in ["none", "None", "NONE", "nOnE"] {
        for with_kid in [true, false] {
            let mut token = f.token().alg(spelling);
            if !with_kid {
                token = token.without_header("kid");
            }
            f.assert_invalid(
                &token.unsigned(),
                &format!("alg {spelling}, empty signature"),
            )
            .await;
            f.assert_invalid(
                &token.with_signature(b"signature"),
                &format!("alg {spelling}, junk signature"),
            )
            .await;
            let with_real = format!("{}.{real_sig}", token.signing_input());
            f.assert_invalid(
                &with_real,
                &format!("alg {spelling}, another token's signature"),
            )
            .await;
            // Two segments only: the signature dropped altogether.
            f.assert_invalid(
                &token.signing_input(),
                &format!("alg {spelling}, no third segment"),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn hs256_signed_with_the_providers_rsa_public_key_is_rejected() {
    let f = Fixture::start("", &[]).await;
    let rsa = &f.keys.rsa;
    let pem = rsa.public_pem();
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("PEM", pem.clone().into_bytes()),
        (
            "PEM without the final newline",
            pem.trim_end().as_bytes().to_vec(),
        ),
        ("SPKI DER", rsa.public_der_spki()),
        ("PKCS#1 DER", rsa.public_der_pkcs1()),
        ("JWK JSON", rsa.jwk().to_string().into_bytes()),
        (
            "JWK n",
            rsa.jwk()["n"].as_str().expect("n").as_bytes().to_vec(),
        ),
    ];
    for (form, secret) in secrets {
        for alg in ["HS256", "HS384", "HS512"] {
            let token = f.token().alg(alg).sign_hmac(&secret);
            f.assert_invalid(
                &token,
                &format!("{alg} keyed with the public key as {form}"),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn tokens_whose_header_carries_jku_x5u_jwk_x5c_or_crit_are_rejected() {
    let f = Fixture::start("", &[]).await;
    let attacker = RsaKey::generate("evil");
    let evil = JwksServer::start(vec![attacker.jwk()]).await;

    // Keys the token points at are never fetched, whoever signed it.
    for field in ["jku", "x5u"] {
        let by_attacker = f
            .token()
            .kid("evil")
            .header(field, json!(evil.jwks_url()))
            .sign_rs256(&attacker);
        f.assert_invalid(&by_attacker, &format!("{field} to the attacker's keys"))
            .await;
        let by_idp = f
            .token()
            .header(field, json!(evil.jwks_url()))
            .sign_rs256(&f.keys.rsa);
        f.assert_invalid(&by_idp, &format!("{field}, signed by the real key"))
            .await;
    }
    assert_eq!(evil.fetches(), 0, "jku/x5u must never be fetched");

    let embedded = f
        .token()
        .kid("evil")
        .header("jwk", attacker.jwk())
        .sign_rs256(&attacker);
    f.assert_invalid(&embedded, "jwk: the attacker's embedded key")
        .await;
    let embedded_real_kid = f
        .token()
        .header("jwk", attacker.with_kid("k1").jwk())
        .sign_rs256(&attacker);
    f.assert_invalid(&embedded_real_kid, "jwk: embedded key claiming kid k1")
        .await;
    let embedded_real_key = f
        .token()
        .header("jwk", f.keys.rsa.jwk())
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&embedded_real_key, "jwk: even the real key embedded")
        .await;

    let x5c = f
        .token()
        .header(
            "x5c",
            json!([tokens::b64std(&f.keys.rsa.public_der_spki())]),
        )
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&x5c, "x5c").await;

    let crit = f
        .token()
        .header("crit", json!(["https://example.invalid/ext"]))
        .header("https://example.invalid/ext", json!(true))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&crit, "crit").await;
    let crit_exp = f
        .token()
        .header("crit", json!(["exp"]))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&crit_exp, "crit naming a claim").await;
}

#[tokio::test]
async fn a_token_without_exp_is_rejected() {
    let f = Fixture::start("", &[]).await;
    let token = f.token().without("exp").sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "no exp").await;
    let token = f.token().claim("exp", json!(null)).sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "exp null").await;
}

#[tokio::test]
async fn a_token_expired_beyond_the_leeway_is_rejected() {
    let f = Fixture::start("", &[]).await;
    let token = f
        .token()
        .claim("iat", json!(now() - 600))
        .claim("exp", json!(now() - 120))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "exp 2 min ago").await;
}

#[tokio::test]
async fn exp_as_a_string_is_rejected() {
    let f = Fixture::start("", &[]).await;
    let exp = (now() + 300).to_string();
    let token = f.token().claim("exp", json!(exp)).sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "exp is a string, not a NumericDate")
        .await;
}

#[tokio::test]
async fn a_token_with_nbf_in_the_future_beyond_the_leeway_is_rejected() {
    let f = Fixture::start("", &[]).await;
    let token = f
        .token()
        .claim("nbf", json!(now() + 120))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "nbf in 2 min").await;
}

#[tokio::test]
async fn a_token_without_aud_is_rejected() {
    let f = Fixture::start("", &[]).await;
    let token = f.token().without("aud").sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "no aud").await;
    let token = f.token().claim("aud", json!([])).sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "aud = []").await;
    let token = f.token().claim("aud", json!("")).sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "aud = \"\"").await;
}

#[tokio::test]
async fn a_token_with_an_audience_not_on_the_list_is_rejected() {
    let f = Fixture::start("", &[]).await;
    for aud in ["other", "APP", "app ", "ap"] {
        let token = f.token().claim("aud", json!(aud)).sign_rs256(&f.keys.rsa);
        f.assert_invalid(&token, &format!("aud {aud:?}")).await;
    }
}

#[tokio::test]
async fn an_aud_array_is_accepted_only_when_it_holds_a_listed_audience() {
    let f = Fixture::start("", &[]).await;
    let token = f
        .token()
        .claim("aud", json!(["other", "third"]))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "aud array without app").await;
    let token = f
        .token()
        .claim("aud", json!(["other", "app"]))
        .sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "aud array with app").await;
}

#[tokio::test]
async fn a_token_with_a_wrong_or_missing_iss_is_rejected() {
    let f = Fixture::start("", &[]).await;
    let trailing_slash = format!("{}/", f.issuer());
    for iss in [
        json!(trailing_slash),
        json!(f.issuer().to_uppercase()),
        json!(["x", f.issuer()]),
        json!(null),
    ] {
        let token = f.token().claim("iss", iss.clone()).sign_rs256(&f.keys.rsa);
        f.assert_invalid(&token, &format!("iss {iss}")).await;
    }
    let token = f.token().without("iss").sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "no iss").await;
}

#[tokio::test]
async fn a_token_from_an_unknown_issuer_is_rejected() {
    let f = Fixture::start("", &[]).await;
    let token = f
        .token()
        .claim("iss", json!("https://unknown.example.com"))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "no provider has this issuer")
        .await;
}

#[tokio::test]
async fn a_token_signed_by_one_provider_naming_another_issuer_is_rejected() {
    // Two providers; the issuer selects the provider, so provider B's
    // issuer on a token signed with A's key (same kid) must not verify.
    let a = Setup::new().await;
    let b_keys = Keys::generate();
    let b = JwksServer::start(b_keys.all()).await;
    let providers = format!(
        "{}\n{}",
        common::jwks::provider_toml(&a.idp, &[]),
        common::jwks::provider_toml(&b, &[("name", "\"other\"")])
    );
    let toml = one_upstream(a.up.addr, &format!("{providers}\n{ROUTES}"));
    let px = start_proxy(&toml).await;
    wait_until("both start-up fetches", || {
        a.idp.fetches() >= 1 && b.fetches() >= 1
    })
    .await;
    common::wait_ready(&px).await;
    let token = good_claims(Token::new().kid("k1"), &b.base_url()).sign_rs256(&a.keys.rsa);
    let reply = get(
        px.addr,
        "/api/x",
        &[&format!("Authorization: Bearer {token}")],
    )
    .await;
    assert_invalid_token_reply(&reply, &token, "A's key, B's issuer");
    let token = good_claims(Token::new().kid("k1"), &b.base_url()).sign_rs256(&b_keys.rsa);
    let reply = get(
        px.addr,
        "/api/x",
        &[&format!("Authorization: Bearer {token}")],
    )
    .await;
    assert_eq!(reply.status, 200, "B's own token: {}", reply.text());
    assert_eq!(a.up.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_signature_by_another_key_with_the_same_kid_is_rejected() {
    let f = Fixture::start("", &[]).await;
    let impostor = RsaKey::generate("k1");
    let token = f.token().sign_rs256(&impostor);
    f.assert_invalid(&token, "RSA key not in the JWKS, kid k1")
        .await;
    let impostor = EcKey::generate("e1");
    let token = f.token().kid("e1").sign_es256(&impostor);
    f.assert_invalid(&token, "EC key not in the JWKS, kid e1")
        .await;
}

#[tokio::test]
async fn a_tampered_payload_or_header_is_rejected() {
    let f = Fixture::start("", &[]).await;
    let signed = f.token().sign_rs256(&f.keys.rsa);
    let parts: Vec<&str> = signed.split('.').collect();
    let forged = f.token().claim("sub", json!("admin"));
    let forged_payload = b64url(forged.claims_json().as_bytes());
    let token = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    f.assert_invalid(&token, "payload changed after signing")
        .await;
    let forged_header = b64url(
        f.token()
            .header("typ", json!("at+jwt"))
            .header_json()
            .as_bytes(),
    );
    let token = format!("{}.{}.{}", forged_header, parts[1], parts[2]);
    f.assert_invalid(&token, "header changed after signing")
        .await;
    // A flipped bit in the signature.
    let mut sig = base64url_decode(parts[2]);
    sig[10] ^= 1;
    let token = format!("{}.{}.{}", parts[0], parts[1], b64url(&sig));
    f.assert_invalid(&token, "signature bit flipped").await;
}

#[tokio::test]
async fn an_algorithm_outside_the_providers_list_is_rejected() {
    // The JWK has no `alg`: the key may serve the list ∩ its type only.
    let f = Fixture::start("", &[]).await;
    for alg in ["RS384", "RS512", "PS256"] {
        let token = f.token().alg(alg).sign_rsa(&f.keys.rsa);
        f.assert_invalid(&token, &format!("{alg} not in [RS256, ES256]"))
            .await;
    }
    // Nor is an allowed algorithm used with a key of another type.
    let token = f.token().kid("k1").sign_es256(&f.keys.ec);
    f.assert_invalid(&token, "ES256 header, RSA kid").await;
    let token = f.token().kid("e1").sign_rs256(&f.keys.rsa);
    f.assert_invalid(&token, "RS256 header, EC kid").await;
}

#[tokio::test]
async fn a_jwk_bound_to_rs256_refuses_a_ps256_token() {
    let keys = Keys::generate();
    let setup = Setup::with_keys(keys, |k| {
        vec![
            k.rsa.jwk_with_alg("RS256"),
            // The same key pair without a binding, as a control.
            k.rsa.with_kid("k2").jwk(),
        ]
    })
    .await;
    let f = setup
        .start("", &[("algorithms", "[\"RS256\", \"PS256\"]")])
        .await;
    let token = f.token().alg("PS256").sign_rsa(&f.keys.rsa);
    f.assert_invalid(&token, "PS256 with the RS256-bound JWK")
        .await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "RS256 with the RS256-bound JWK")
        .await;
    let token = f.token().kid("k2").alg("PS256").sign_rsa(&f.keys.rsa);
    f.assert_accepted(&token, "PS256 with the unbound JWK")
        .await;
}

#[tokio::test]
async fn garbage_tokens_are_invalid_tokens() {
    let f = Fixture::start("", &[]).await;
    let claims = f.token().claims_json();
    let not_json_payload = {
        let input = format!(
            "{}.{}",
            b64url(f.token().header_json().as_bytes()),
            b64url(b"not json")
        );
        let sig = f
            .keys
            .rsa
            .sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, input.as_bytes());
        format!("{input}.{}", b64url(&sig))
    };
    let garbage = vec![
        "abc".to_owned(),
        "a.b".to_owned(),
        "a.b.c".to_owned(),
        "a.b.c.d".to_owned(),
        "..".to_owned(),
        "e30.e30.".to_owned(),
        "***.***.***".to_owned(),
        "e30.e30.%%%".to_owned(),
        format!("{}.extra", f.token().sign_rs256(&f.keys.rsa)),
        tokens::raw("not json", &claims, b"sig"),
        tokens::raw("[]", &claims, b"sig"),
        tokens::raw(r#"{"alg":256,"kid":"k1"}"#, &claims, b"sig"),
        tokens::raw(r#"{"kid":"k1"}"#, &claims, b"sig"),
        not_json_payload,
    ];
    for token in garbage {
        f.assert_invalid(&token, &format!("garbage {token:?}"))
            .await;
    }
}

#[tokio::test]
async fn max_token_bytes_counts_the_token_alone_and_a_longer_token_is_401() {
    let setup = Setup::new().await;
    // A valid token of length L and one of L + 1 (padding one more byte
    // adds one base64url character when the payload length is 3k + 1);
    // the limit is set to exactly L, so the header value `Bearer <token>`
    // is longer than the limit.
    let padded = |n: usize| {
        setup
            .token()
            .claim("pad", json!("x".repeat(n)))
            .sign_rs256(&setup.keys.rsa)
    };
    let (token, longer) = (600..603)
        .map(|n| (padded(n), padded(n + 1)))
        .find(|(a, b)| b.len() == a.len() + 1)
        .expect("one of three consecutive paddings grows the token by one byte");
    let limit = token.len();
    let huge = setup
        .token()
        .claim("pad", json!("x".repeat(8000)))
        .sign_rs256(&setup.keys.rsa);
    let f = setup
        .start(&format!("[jwt]\nmax_token_bytes = {limit}\n"), &[])
        .await;
    f.assert_accepted(&token, "exactly max_token_bytes").await;
    f.assert_invalid(&longer, "one byte over max_token_bytes")
        .await;
    f.assert_invalid(
        &huge,
        "10 kB token over max_token_bytes, under the header limit",
    )
    .await;
}

#[tokio::test]
async fn provider_claims_refuse_an_id_token_and_accept_an_access_token() {
    let f = Fixture::start("", &[("claims", "{ token_use = \"access\" }")]).await;
    let access = f
        .token()
        .claim("token_use", json!("access"))
        .sign_rs256(&f.keys.rsa);
    f.assert_accepted(&access, "token_use access").await;
    let id = f
        .token()
        .claim("token_use", json!("id"))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&id, "token_use id").await;
    let none = f.token().sign_rs256(&f.keys.rsa);
    f.assert_invalid(&none, "no token_use").await;
    let array = f
        .token()
        .claim("token_use", json!(["access"]))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&array, "token_use as an array is not an exact match")
        .await;
}

#[tokio::test]
async fn audience_claim_client_id_checks_client_id_and_not_aud() {
    let f = Fixture::start("", &[("audience_claim", "\"client_id\"")]).await;
    // A Cognito access token: client_id, no aud.
    let cognito = f
        .token()
        .without("aud")
        .claim("client_id", json!("app"))
        .claim("token_use", json!("access"))
        .sign_rs256(&f.keys.rsa);
    f.assert_accepted(&cognito, "client_id app, no aud").await;
    let wrong = f
        .token()
        .without("aud")
        .claim("client_id", json!("other"))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&wrong, "client_id other").await;
    let aud_only = f.token().sign_rs256(&f.keys.rsa);
    f.assert_invalid(&aud_only, "aud app but no client_id")
        .await;
}

#[tokio::test]
async fn max_token_lifetime_rejects_long_lived_tokens_and_tokens_without_iat() {
    let f = Fixture::start("", &[("max_token_lifetime", "\"1h\"")]).await;
    let short = f
        .token()
        .claim("iat", json!(now()))
        .claim("exp", json!(now() + 1800))
        .sign_rs256(&f.keys.rsa);
    f.assert_accepted(&short, "lifetime 30 min").await;
    let long = f
        .token()
        .claim("iat", json!(now()))
        .claim("exp", json!(now() + 7200))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&long, "lifetime 2 h").await;
    let no_iat = f.token().without("iat").sign_rs256(&f.keys.rsa);
    f.assert_invalid(&no_iat, "no iat").await;
}

#[tokio::test]
async fn an_oct_key_in_the_fetched_jwks_is_ignored() {
    let secret = tokens::random_bytes(32);
    let keys = Keys::generate();
    let published_secret = secret.clone();
    let setup = Setup::with_keys(keys, move |k| {
        vec![oct_jwk("hmac", &published_secret), k.rsa.jwk()]
    })
    .await;
    let f = setup.start("", &[]).await;
    for alg in ["HS256", "HS384", "HS512"] {
        let token = f.token().kid("hmac").alg(alg).sign_hmac(&secret);
        f.assert_invalid(&token, &format!("{alg} with the oct key's secret"))
            .await;
    }
    // The rest of the set still serves.
    let token = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "RS256 next to an oct key").await;
}

#[test]
fn hmac_algorithms_on_a_jwks_provider_are_a_config_error() {
    let toml = r#"
[[jwt.providers]]
name = "idp"
issuer = "https://idp.example.com"
jwks_url = "https://idp.example.com/jwks.json"
audiences = ["app"]
algorithms = ["RS256", "HS256"]
"#;
    let errors = wristband::Config::from_toml(std::path::Path::new("t.toml"), toml)
        .expect_err("HS256 with jwks_url must be refused");
    assert!(
        errors.to_string().contains("jwt.providers[0].algorithms"),
        "{errors}"
    );
}

// ---------------------------------------------------------------------------
// HMAC providers.

#[tokio::test]
async fn an_hs256_provider_accepts_its_secret_and_refuses_another() {
    let secret = "a-long-shared-secret-for-hs256-tests";
    let f = Fixture::start(
        "",
        &[
            ("jwks_url", "-"),
            ("hmac_secret", &format!("\"{secret}\"")),
            ("algorithms", "[\"HS256\"]"),
        ],
    )
    .await;
    let good = f
        .token()
        .without_header("kid")
        .sign_hs256(secret.as_bytes());
    f.assert_accepted(&good, "HS256 with the shared secret")
        .await;
    let bad = f
        .token()
        .without_header("kid")
        .sign_hs256(b"another-secret-of-the-same-length-xx");
    f.assert_invalid(&bad, "HS256 with another secret").await;
    let rs = f.token().sign_rs256(&f.keys.rsa);
    f.assert_invalid(&rs, "RS256 on an HMAC provider").await;
    let none = f.token().without_header("kid").alg("none").unsigned();
    f.assert_invalid(&none, "alg none on an HMAC provider")
        .await;
    assert_eq!(f.idp.fetches(), 0, "an HMAC provider fetches nothing");
}

// ---------------------------------------------------------------------------
// Where the token comes from (§3 `[jwt]`, §6a).

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let f = Fixture::start("", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let auth = format!("authorization: {scheme} {token}");
        let reply = f.get("/api/x", &[&auth]).await;
        assert_eq!(reply.status, 200, "{scheme}: {}", reply.text());
    }
}

#[tokio::test]
async fn basic_or_an_empty_bearer_counts_as_no_credential() {
    let f = Fixture::start("", &[]).await;
    for header in [
        "Authorization: Basic YWxpY2U6c2VjcmV0",
        "Authorization: Bearer ",
        "Authorization: Bearer",
        "Authorization: Digest username=\"alice\"",
    ] {
        let reply = f.get("/api/x", &[header]).await;
        assert_unauthenticated_reply(&reply, header);
    }
    let reply = f.get("/api/x", &[]).await;
    assert_unauthenticated_reply(&reply, "no Authorization");
    assert_eq!(f.upstream_calls(), 0);
}

#[tokio::test]
async fn two_authorization_headers_are_ambiguous_credentials() {
    let f = Fixture::start("", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    let auth = format!("Authorization: Bearer {token}");
    for pair in [
        [auth.as_str(), auth.as_str()],
        [auth.as_str(), "Authorization: Basic YWxpY2U6c2VjcmV0"],
    ] {
        let reply = f.get("/api/x", &pair).await;
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert_eq!(reply.json()["error"], "ambiguous_credentials");
        assert_not_echoed(&reply, &token, "ambiguous");
    }
    assert_eq!(f.upstream_calls(), 0);
}

#[tokio::test]
async fn a_token_in_the_query_string_is_never_used() {
    let f = Fixture::start("", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    for query in ["access_token", "token", "jwt", "id_token"] {
        let reply = f.get(&format!("/api/x?{query}={token}"), &[]).await;
        assert_unauthenticated_reply(&reply, query);
        assert_not_echoed(&reply, &token, query);
    }
    assert_eq!(f.upstream_calls(), 0);
}

#[tokio::test]
async fn a_jwt_cookie_is_read_only_when_configured() {
    let f = Fixture::start("", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    let reply = f.get("/api/x", &[&format!("Cookie: jwt={token}")]).await;
    assert_unauthenticated_reply(&reply, "cookie = \"\" (default)");

    let f = Fixture::start("[jwt]\ncookie = \"jwt\"\n", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    let reply = f.get("/api/x", &[&format!("Cookie: jwt={token}")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.seen().header("x-auth-user"), Some("alice"));
    let reply = f
        .get(
            "/api/x",
            &[&format!("Cookie: theme=dark; jwt={token}; lang=en")],
        )
        .await;
    assert_eq!(reply.status, 200, "among other cookies: {}", reply.text());

    let reply = f.get("/api/x", &["Cookie: jwt="]).await;
    assert_unauthenticated_reply(&reply, "empty cookie value");
    let bad = f.token().without("exp").sign_rs256(&f.keys.rsa);
    let reply = f.get("/api/x", &[&format!("Cookie: jwt={bad}")]).await;
    assert_invalid_token_reply(&reply, &bad, "invalid cookie token");
}

#[tokio::test]
async fn the_header_token_beats_the_cookie() {
    let f = Fixture::start("[jwt]\ncookie = \"jwt\"\n", &[]).await;
    let valid = f.token().sign_rs256(&f.keys.rsa);
    let invalid = f
        .token()
        .claim("exp", json!(now() - 3600))
        .sign_rs256(&f.keys.rsa);
    let reply = f
        .get(
            "/api/x",
            &[
                &format!("Cookie: jwt={valid}"),
                &format!("Authorization: Bearer {invalid}"),
            ],
        )
        .await;
    assert_invalid_token_reply(&reply, &invalid, "invalid header, valid cookie");
    assert_not_echoed(&reply, &valid, "the cookie either");
    assert_eq!(f.upstream_calls(), 0);
}

#[tokio::test]
async fn a_basic_authorization_header_leaves_the_jwt_cookie_in_charge() {
    // Basic is "no credential" (§6a), so there is no header token to prefer.
    let f = Fixture::start("[jwt]\ncookie = \"jwt\"\n", &[]).await;
    let valid = f.token().sign_rs256(&f.keys.rsa);
    let reply = f
        .get(
            "/api/x",
            &[
                &format!("Cookie: jwt={valid}"),
                "Authorization: Basic YWxpY2U6c2VjcmV0",
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn forward_token_false_removes_the_authorization_header_and_the_jwt_cookie_only() {
    let f = Fixture::start("[jwt]\ncookie = \"jwt\"\nforward_token = false\n", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    let seen = f
        .assert_accepted(&token, "header token, forward_token = false")
        .await;
    assert_eq!(seen.header("authorization"), None);

    let reply = f
        .get(
            "/api/x",
            &[&format!("Cookie: theme=dark; jwt={token}; lang=en")],
        )
        .await;
    let seen = reply.seen();
    let cookies = seen
        .headers
        .get("cookie")
        .cloned()
        .unwrap_or_default()
        .join("; ");
    assert!(
        !cookies.contains(&token),
        "the JWT cookie was forwarded: {cookies}"
    );
    assert!(
        !cookies.contains("jwt="),
        "the JWT cookie was forwarded: {cookies}"
    );
    assert!(
        cookies.contains("theme=dark"),
        "other cookies stay: {cookies}"
    );
    assert!(cookies.contains("lang=en"), "other cookies stay: {cookies}");
    let everything = format!("{:?}", seen.headers);
    assert!(
        !everything.contains(&token),
        "token in some header: {everything}"
    );
}

#[tokio::test]
async fn the_token_is_forwarded_by_default() {
    let f = Fixture::start("[jwt]\ncookie = \"jwt\"\n", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    let seen = f.assert_accepted(&token, "header token").await;
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    let reply = f
        .get("/api/x", &[&format!("Cookie: theme=dark; jwt={token}")])
        .await;
    let cookies = reply
        .seen()
        .headers
        .get("cookie")
        .cloned()
        .unwrap_or_default()
        .join("; ");
    assert!(cookies.contains(&format!("jwt={token}")), "{cookies}");
}

// ---------------------------------------------------------------------------
// Guarantee 6 and the JWKS fine points.

#[tokio::test]
async fn unknown_kids_during_the_cooldown_are_401_at_once_without_a_fetch() {
    let f = Fixture::start("", &[("min_refresh_interval", "\"1m\"")]).await;
    let start_up = f.idp.fetches();
    for _ in 0..20 {
        let token = f.token().kid(&random_id()).sign_rs256(&f.keys.rsa);
        f.assert_invalid(&token, "unknown kid in the cooldown")
            .await;
    }
    assert_eq!(
        f.idp.fetches(),
        start_up,
        "the start-up fetch counts: no fetch within min_refresh_interval"
    );
}

#[tokio::test]
async fn a_burst_of_unknown_kids_shares_one_jwks_fetch() {
    let min_refresh = Duration::from_secs(3);
    let f = Fixture::start("", &[("min_refresh_interval", "\"3s\"")]).await;
    let start_up = f.idp.fetches();
    // Let the cooldown after the start-up fetch run out, so one refetch is due.
    jump_clock(min_refresh).await;
    let tokens: Vec<String> = (0..200)
        .map(|_| f.token().kid(&random_id()).sign_rs256(&f.keys.rsa))
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for token in tokens.clone() {
        let addr = f.px.addr;
        tasks.push(tokio::spawn(async move {
            let auth = format!("Authorization: Bearer {token}");
            get(addr, "/api/x", &[&auth]).await
        }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("request task"));
    }
    let elapsed = started.elapsed();
    for (reply, token) in replies.iter().zip(&tokens) {
        assert_invalid_token_reply(reply, token, "unknown kid, JWKS up");
    }
    assert_eq!(f.upstream_calls(), 0);
    // One fetch for the burst, plus at most one per further interval the
    // burst took on a loaded machine.
    let allowed = 1 + (elapsed.as_secs_f64() / min_refresh.as_secs_f64()).floor() as usize;
    let extra = f.idp.fetches() - start_up;
    assert!(
        (1..=allowed).contains(&extra),
        "{extra} JWKS fetches for 200 unknown kids in {elapsed:?} (allowed 1..={allowed})"
    );
}

#[tokio::test]
async fn a_key_rotated_in_is_picked_up_without_a_restart() {
    let f = Fixture::start("", &[]).await;
    let new_key = RsaKey::generate("k2");
    f.idp.add_key(new_key.jwk());
    // The cooldown after the start-up fetch runs out.
    jump_clock(MIN_REFRESH).await;
    let token = f.token().kid("k2").sign_rs256(&new_key);
    f.assert_accepted(&token, "the first token with the new kid")
        .await;
    assert_eq!(f.idp.fetches(), 2, "one refetch for the new kid");
    let old = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&old, "the old key still works").await;
}

#[tokio::test]
async fn a_failing_jwks_makes_unknown_kids_503_while_known_kids_keep_working() {
    let f = Fixture::start("", &[]).await;
    f.idp.fail();
    jump_clock(MIN_REFRESH).await;
    let unknown = f.token().kid(&random_id()).sign_rs256(&f.keys.rsa);
    let reply = f.bearer(&unknown).await;
    assert_unavailable_reply(&reply, "unknown kid, refetch failed");
    assert_not_echoed(&reply, &unknown, "503");
    assert!(f.idp.fetches() >= 2, "a refetch was attempted");
    // SPEC §6a: during the cooldown no refetch is allowed, so another
    // unknown kid is 401 at once, not 503.
    let fetches = f.idp.fetches();
    let another = f.token().kid(&random_id()).sign_rs256(&f.keys.rsa);
    let reply = f.bearer(&another).await;
    assert_eq!(
        reply.status,
        401,
        "unknown kid during the cooldown: {}",
        reply.text()
    );
    assert_eq!(reply.json()["error"], "invalid_token");
    assert_eq!(f.idp.fetches(), fetches, "no fetch during the cooldown");
    let known = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&known, "known kid, stale keys within max_stale")
        .await;
    assert_eq!(f.upstream_calls(), 1);
}

#[tokio::test]
async fn known_keys_expire_after_max_stale_while_the_jwks_fails() {
    let f = Fixture::start(
        "",
        &[("max_stale", "\"1s\""), ("refresh_interval", "\"1s\"")],
    )
    .await;
    let known = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&known, "fresh keys").await;
    f.idp.fail();
    // The proxy's clock, which the jumps move.
    let failed_at = tokio::time::Instant::now();
    jump_clock(Duration::from_millis(1200)).await;
    // Make the proxy see a failing fetch (in case it only refreshes on demand).
    let unknown = f.token().kid(&random_id()).sign_rs256(&f.keys.rsa);
    let reply = f.bearer(&unknown).await;
    assert_unavailable_reply(&reply, "unknown kid, JWKS failing");
    jump_clock(Duration::from_millis(1500)).await;
    assert!(failed_at.elapsed() > Duration::from_secs(2));
    let calls = f.upstream_calls();
    let known = f.token().sign_rs256(&f.keys.rsa);
    let reply = f.bearer(&known).await;
    assert_unavailable_reply(&reply, "known kid, keys older than max_stale");
    assert_eq!(f.upstream_calls(), calls, "fail closed");
}

/// Regression (issue 13.3): a token verified before the JWKS went down
/// was served from the verified-token cache long after `max_stale`, since
/// the cache hit skipped the provider's freshness check. Guarantee 6:
/// cached verifications included, then 503 (and /readyz 503) until a fetch
/// succeeds.
#[tokio::test]
async fn a_cached_verification_is_503_after_max_stale_until_the_jwks_answers_again() {
    let max_stale = Duration::from_secs(3);
    let refresh_interval = Duration::from_secs(1);
    let f = Fixture::start(
        "",
        &[("max_stale", "\"3s\""), ("refresh_interval", "\"1s\"")],
    )
    .await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "fresh keys").await;
    f.assert_accepted(&token, "fresh keys, from the verified cache")
        .await;
    assert!(jwt_cache_hits(&f.px).await >= 1, "the token is cached");

    // The last successful fetch was at most one refresh_interval ago, so
    // one interval into the outage the keys are at most two intervals old,
    // short of max_stale by a second: a margin for a loaded machine.
    f.idp.fail_with(500);
    let fetches = f.idp.fetches();
    jump_clock(refresh_interval).await;
    f.assert_accepted(&token, "cached, one refresh_interval into the outage")
        .await;
    // Now past max_stale whenever the last success was.
    jump_clock(max_stale).await;
    let refused = f.bearer(&token).await;
    assert!(f.idp.fetches() > fetches, "the refresher kept trying");
    assert_unavailable_reply(&refused, "cached token, keys older than max_stale");
    assert_not_echoed(&refused, &token, "503");
    let calls = f.upstream_calls();
    let again = f.bearer(&token).await;
    assert_unavailable_reply(&again, "cached token, still stale");
    assert_eq!(f.upstream_calls(), calls, "fail closed");
    let ready = get(f.px.admin, "/readyz", &[]).await;
    assert_eq!(ready.status, 503, "readyz while stale: {}", ready.text());
    assert!(
        ready.text().contains("idp"),
        "readyz names the provider: {}",
        ready.text()
    );

    // A successful fetch makes the keys, and the cached verdict, usable again.
    // After a failure the next fetch may come a cooldown after the last.
    f.idp.serve();
    jump_clock(MIN_REFRESH).await;
    let recovered = Instant::now();
    loop {
        let reply = f.bearer(&token).await;
        if reply.status == 200 {
            break;
        }
        assert_unavailable_reply(&reply, "stale until a fetch succeeds");
        assert!(
            recovered.elapsed() < Duration::from_secs(10),
            "still refused 10 s after the JWKS answers again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.assert_accepted(&token, "after the JWKS recovered").await;
    let ready = get(f.px.admin, "/readyz", &[]).await;
    assert_eq!(ready.status, 200, "readyz after recovery: {}", ready.text());
}

#[tokio::test]
async fn a_hanging_jwks_delays_an_unknown_kid_by_at_most_about_fetch_timeout() {
    let f = Fixture::start("", &[]).await;
    f.idp.hang();
    jump_clock(MIN_REFRESH).await;
    let unknown = f.token().kid(&random_id()).sign_rs256(&f.keys.rsa);
    let started = Instant::now();
    let reply = f.bearer(&unknown).await;
    let waited = started.elapsed();
    assert_unavailable_reply(&reply, "unknown kid, JWKS hangs");
    // fetch_timeout = 500ms; a bound, not a performance claim.
    assert!(
        waited < Duration::from_millis(2500),
        "waited {waited:?} with fetch_timeout = 500ms"
    );
    let known = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&known, "known kid while the JWKS hangs")
        .await;
}

#[tokio::test]
async fn oidc_discovery_finds_the_jwks() {
    let f = Fixture::start("", &[("jwks_url", "-")]).await;
    assert!(f.idp.discovery_fetches() >= 1, "discovery document read");
    let token = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "keys found through discovery")
        .await;
}

#[tokio::test]
async fn discovery_naming_another_issuer_gives_no_keys_and_503() {
    let setup = Setup::new().await;
    setup
        .idp
        .set_discovery_issuer(&format!("{}/someone-else", setup.issuer()));
    let px = start_proxy(&setup.config("", &[("jwks_url", "-")])).await;
    wait_until("the discovery fetch", || setup.idp.discovery_fetches() >= 1).await;
    let token = setup.token().sign_rs256(&setup.keys.rsa);
    let reply = get(
        px.addr,
        "/api/x",
        &[&format!("Authorization: Bearer {token}")],
    )
    .await;
    assert_unavailable_reply(&reply, "provider without keys");
    assert_not_echoed(&reply, &token, "503");
    assert_eq!(setup.up.requests.load(Ordering::SeqCst), 0);
    let ready = get(px.admin, "/readyz", &[]).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(
        ready.text().contains("idp"),
        "readyz names the provider: {}",
        ready.text()
    );
}

// ---------------------------------------------------------------------------
// Routes that do not require a caller.

#[tokio::test]
async fn an_optional_route_forwards_an_invalid_token_without_identity() {
    let f = Fixture::start("", &[]).await;
    let invalid = f.token().without("exp").sign_rs256(&f.keys.rsa);
    let auth = format!("Authorization: Bearer {invalid}");
    let reply = f.get("/opt/x", &[&auth, "X-Auth-User: mallory"]).await;
    let seen = reply.seen();
    assert_eq!(seen.header("x-auth-user"), None, "no identity");
    let valid = f.token().sign_rs256(&f.keys.rsa);
    let auth = format!("Authorization: Bearer {valid}");
    let reply = f.get("/opt/x", &[&auth]).await;
    assert_eq!(reply.seen().header("x-auth-user"), Some("alice"));
}

#[tokio::test]
async fn a_public_route_never_looks_at_the_token() {
    let f = Fixture::start("", &[]).await;
    let invalid = f
        .token()
        .claim("aud", json!("other"))
        .sign_rs256(&f.keys.rsa);
    let auth = format!("Authorization: Bearer {invalid}");
    let reply = f.get("/pub/x", &[&auth, "X-Auth-User: mallory"]).await;
    let seen = reply.seen();
    assert_eq!(seen.header("x-auth-user"), None);
    let valid = f.token().sign_rs256(&f.keys.rsa);
    let auth = format!("Authorization: Bearer {valid}");
    let reply = f.get("/pub/x", &[&auth]).await;
    assert_eq!(
        reply.seen().header("x-auth-user"),
        None,
        "public: no identity"
    );
}

// ---------------------------------------------------------------------------
// Metrics (§6) and guarantee 7 there.

#[tokio::test]
async fn auth_outcomes_and_jwks_refreshes_are_counted_without_tokens() {
    let f = Fixture::start("", &[]).await;
    let good = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&good, "ok").await;
    let bad = f
        .token()
        .claim("aud", json!("other"))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&bad, "invalid").await;
    let expired = f
        .token()
        .claim("exp", json!(now() - 3600))
        .sign_rs256(&f.keys.rsa);
    f.assert_invalid(&expired, "expired").await;

    let metrics = f.metrics().await;
    let auth = "wristband_auth_total";
    for outcome in ["ok", "invalid", "expired"] {
        let value = common::metric_sample(
            &metrics,
            auth,
            &[("route", "api"), ("kind", "jwt"), ("outcome", outcome)],
        );
        assert_eq!(value, Some(1.0), "{auth} outcome {outcome}:\n{metrics}");
    }
    assert!(
        common::metric_sample(
            &metrics,
            "wristband_jwks_refresh_total",
            &[("provider", "idp")]
        )
        .is_some_and(|v| v >= 1.0),
        "wristband_jwks_refresh_total{{provider=\"idp\"}}:\n{metrics}"
    );
    for token in [&good, &bad, &expired] {
        assert!(!metrics.contains(token.as_str()), "a token in the metrics");
        for segment in token.split('.') {
            assert!(!metrics.contains(segment), "a token segment in the metrics");
        }
    }
}

// ---------------------------------------------------------------------------
// Key set limits and refreshes (guarantee 4, §3 refresh_interval).

/// `n` JWKs: the RSA key under kid k1, then copies under other kids.
fn many_keys(keys: &Keys, n: usize) -> Vec<Value> {
    let mut set = vec![keys.rsa.jwk()];
    set.extend((1..n).map(|i| keys.rsa.with_kid(&format!("copy-{i}")).jwk()));
    set
}

async fn assert_provider_has_no_keys(setup: &Setup, px: &TestProxy, why: &str) {
    let token = setup.token().sign_rs256(&setup.keys.rsa);
    let reply = get(
        px.addr,
        "/api/x",
        &[&format!("Authorization: Bearer {token}")],
    )
    .await;
    assert_unavailable_reply(&reply, why);
    assert_eq!(setup.up.requests.load(Ordering::SeqCst), 0, "{why}");
    let ready = get(px.admin, "/readyz", &[]).await;
    assert_eq!(ready.status, 503, "{why}: readyz {}", ready.text());
}

#[tokio::test]
async fn a_jwks_of_100_keys_is_used_and_one_of_101_is_refused() {
    let at_limit = Setup::with_keys(Keys::generate(), |k| many_keys(k, 100)).await;
    let f = at_limit.start("", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "100 keys").await;

    let over = Setup::with_keys(Keys::generate(), |k| many_keys(k, 101)).await;
    let px = start_proxy(&over.config("", &[])).await;
    wait_until("the start-up fetch", || over.idp.fetches() >= 1).await;
    assert_provider_has_no_keys(&over, &px, "101 keys").await;
}

#[tokio::test]
async fn a_jwks_over_256_kib_is_refused() {
    let over = Setup::with_keys(Keys::generate(), |k| {
        let mut padded = k.rsa.jwk();
        padded["x-padding"] = json!("p".repeat(256 * 1024));
        vec![padded]
    })
    .await;
    let px = start_proxy(&over.config("", &[])).await;
    wait_until("the start-up fetch", || over.idp.fetches() >= 1).await;
    assert_provider_has_no_keys(&over, &px, "JWKS over 256 KiB").await;
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_stops_verifying_after_a_max_age_refresh() {
    let setup = Setup::new().await;
    setup.idp.set_max_age(Some(1));
    let f = setup.start("", &[("refresh_interval", "\"1h\"")]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "before the removal").await;
    f.idp.set_keys(vec![f.keys.ec.jwk()]);
    // Cache-Control: max-age=1 within [1s, 1h]: the set is refreshed about
    // every second, not hourly. A known kid triggers no refetch by itself.
    jump_clock(Duration::from_secs(1)).await;
    let removed = Instant::now();
    loop {
        let reply = f.bearer(&token).await;
        if reply.status == 401 {
            assert_invalid_token_reply(&reply, &token, "removed key");
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            removed.elapsed() < Duration::from_secs(5),
            "a removed key still verifies 5 s after a 1 s jump with max-age=1"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_verified_token_is_rejected_once_it_expires() {
    // Whatever is cached, exp is checked on every request (guarantee 4).
    let f = Fixture::start("", &[("leeway", "\"0s\"")]).await;
    let exp = now() + 2;
    let token = f.token().claim("exp", json!(exp)).sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "before exp").await;
    f.assert_accepted(&token, "before exp, again").await;
    while now() <= exp + 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.assert_invalid(&token, "the same token after exp").await;
}

/// `wristband_cache_hits_total{cache="jwt"}` (0 when absent).
async fn jwt_cache_hits(px: &TestProxy) -> u64 {
    let metrics = get(px.admin, "/metrics", &[]).await.text();
    common::metric_sample(&metrics, "wristband_cache_hits_total", &[("cache", "jwt")])
        .map_or(0, |v| v as u64)
}

#[tokio::test]
async fn a_repeated_token_is_served_from_the_verified_cache() {
    let f = Fixture::start("", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    f.assert_accepted(&token, "first use verifies").await;
    assert_eq!(jwt_cache_hits(&f.px).await, 0);
    f.assert_accepted(&token, "second use").await;
    assert_eq!(jwt_cache_hits(&f.px).await, 1);
}

#[tokio::test]
async fn verified_cache_size_zero_verifies_every_time() {
    let f = Fixture::start("[jwt]\nverified_cache_size = 0", &[]).await;
    let token = f.token().sign_rs256(&f.keys.rsa);
    for _ in 0..3 {
        f.assert_accepted(&token, "verified again").await;
    }
    assert_eq!(jwt_cache_hits(&f.px).await, 0);
}

/// Differential test against an independent implementation: for a corpus
/// of good and bad tokens, the proxy accepts exactly those that
/// jsonwebtoken, configured with every check on, accepts.
#[tokio::test]
async fn the_proxy_agrees_with_jsonwebtoken_on_every_token_of_a_corpus() {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, jwk::Jwk};
    let f = Fixture::start("", &[]).await;
    let issuer = f.issuer();
    let other = RsaKey::generate("k1");
    let corpus: Vec<(&str, String)> = vec![
        ("good RS256", f.token().sign_rs256(&f.keys.rsa)),
        (
            "good ES256",
            good_claims(Token::new().kid("e1"), &issuer).sign_es256(&f.keys.ec),
        ),
        ("signed by another key", f.token().sign_rs256(&other)),
        (
            "expired",
            f.token()
                .claim("exp", json!(now() - 3600))
                .sign_rs256(&f.keys.rsa),
        ),
        (
            "nbf ahead",
            f.token()
                .claim("nbf", json!(now() + 3600))
                .sign_rs256(&f.keys.rsa),
        ),
        (
            "wrong aud",
            f.token()
                .claim("aud", json!("other"))
                .sign_rs256(&f.keys.rsa),
        ),
        (
            "aud array",
            f.token()
                .claim("aud", json!(["x", "app"]))
                .sign_rs256(&f.keys.rsa),
        ),
        (
            "wrong iss",
            f.token()
                .claim("iss", json!("https://evil.example"))
                .sign_rs256(&f.keys.rsa),
        ),
        ("no exp", f.token().without("exp").sign_rs256(&f.keys.rsa)),
        ("no aud", f.token().without("aud").sign_rs256(&f.keys.rsa)),
        ("alg none", f.token().alg("none").unsigned()),
        (
            "RS256 header, ES256 key",
            f.token().kid("e1").sign_rs256(&f.keys.rsa),
        ),
    ];
    let jwks: Vec<Jwk> = [f.keys.rsa.jwk(), f.keys.ec.jwk()]
        .into_iter()
        .map(|jwk| serde_json::from_value(jwk).expect("a JWK jsonwebtoken reads"))
        .collect();
    for (name, token) in corpus {
        let reference = jsonwebtoken::decode_header(&token).ok().and_then(|header| {
            let jwk = jwks.iter().find(|k| k.common.key_id == header.kid)?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            // The provider's allow-list; jsonwebtoken wants one family per
            // validation, so the header's alg is checked against it first.
            if ![Algorithm::RS256, Algorithm::ES256].contains(&header.alg) {
                return None;
            }
            let mut v = Validation::new(header.alg);
            v.leeway = 30;
            v.validate_nbf = true;
            v.set_issuer(&[issuer.as_str()]);
            v.set_audience(&["app"]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            decode::<serde_json::Value>(&token, &key, &v)
                .inspect_err(|e| eprintln!("{name}: jsonwebtoken: {e}"))
                .ok()
        });
        let reply = f.bearer(&token).await;
        assert_eq!(
            reply.status == 200,
            reference.is_some(),
            "{name}: proxy {} vs jsonwebtoken {}",
            reply.status,
            if reference.is_some() {
                "accepts"
            } else {
                "refuses"
            }
        );
    }
}
