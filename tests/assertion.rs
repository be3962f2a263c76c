//! The signed identity assertion (SPEC §3 `[identity.assertion]`), checked
//! by an independent verifier: the proxy signs with aws-lc-rs, the test
//! verifies with `jsonwebtoken` against the key set the proxy publishes on
//! its client listener, so a bug shared by signer and verifier is unlikely.

mod common;

use jsonwebtoken::jwk::{JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};

use common::client::{get, raw};
use common::process::{TempDir, binary};
use common::tokens::p256_pkcs8_pem;
use common::{TestProxy, idp, start_proxy};

const JWKS: &str = "/.well-known/wristband/jwks.json";
const ISSUER: &str = "wristband-test";

/// Two upstreams, `app` and `billing`, on the same echo server: the only
/// difference between their requests is the assertion's `aud`.
fn config(up: std::net::SocketAddr, key_file: &std::path::Path) -> String {
    format!(
        r#"
[log]
access_log = false

{provider}

[identity]
headers = {{ "X-Auth-User" = "sub", "X-Roles" = "roles", "X-Issuer" = "iss" }}

[identity.assertion]
key_file = "{key}"
issuer = "{ISSUER}"
ttl = "90s"

[[upstreams]]
name = "app"
targets = ["http://{up}"]

[[upstreams]]
name = "billing"
targets = ["http://{up}"]

[[routes]]
path = "/app"
upstream = "app"

[[routes]]
path = "/billing"
upstream = "billing"

[[routes]]
path = "/opt"
upstream = "app"
auth = "optional"

[[routes]]
path = "/pub"
upstream = "app"
auth = "public"
"#,
        provider = idp::provider_toml(),
        key = key_file.display(),
    )
}

struct Fixture {
    _dir: TempDir,
    _up: common::upstream::TestUpstream,
    px: TestProxy,
}

async fn fixture() -> Fixture {
    let dir = TempDir::new();
    let key = dir.write("assertion.pem", &p256_pkcs8_pem());
    let up = common::upstream::echo().await;
    let px = start_proxy(&config(up.addr, &key)).await;
    Fixture {
        _dir: dir,
        _up: up,
        px,
    }
}

fn validation(audience: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation
}

#[tokio::test]
async fn the_assertion_verifies_with_the_published_key_for_its_own_upstream_only() {
    let f = fixture().await;
    let token = idp::token(
        "alice",
        &[
            ("roles", json!(["admin", "dev"])),
            ("secret", json!("not named by any header")),
        ],
    );
    let bearer = format!("Authorization: Bearer {token}");

    // The key set, from the client listener; the admin listener agrees.
    let published = get(f.px.addr, JWKS, &[]).await;
    assert_eq!(published.status, 200, "{}", published.text());
    assert_eq!(published.header("content-type"), Some("application/json"));
    let admin = get(f.px.admin, JWKS, &[]).await;
    assert_eq!(admin.status, 200);
    assert_eq!(admin.json(), published.json());
    let set: JwkSet = serde_json::from_slice(&published.body).expect("a JWK set");
    assert_eq!(set.keys.len(), 1);
    let jwk = &set.keys[0];
    let raw_jwk = &published.json()["keys"][0];
    assert_eq!(raw_jwk["kty"], "EC");
    assert_eq!(raw_jwk["crv"], "P-256");
    assert_eq!(raw_jwk["alg"], "ES256");
    assert_eq!(raw_jwk["use"], "sig");
    assert!(raw_jwk.get("d").is_none(), "never the private key");
    let kid = jwk.common.key_id.clone().expect("kid");
    assert_eq!(
        kid,
        jwk.thumbprint(ThumbprintHash::SHA256).expect("thumbprint"),
        "kid is the RFC 7638 thumbprint"
    );
    let key = DecodingKey::from_jwk(jwk).expect("decoding key");

    let seen = get(f.px.addr, "/app/x", &[&bearer]).await.seen();
    let assertion = seen.header("x-auth-assertion").expect("an assertion");
    let header = decode_header(assertion).expect("JOSE header");
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
    let claims = decode::<Value>(assertion, &key, &validation("app"))
        .expect("the assertion verifies for aud = app")
        .claims;
    assert_eq!(claims["iss"], ISSUER, "the proxy's issuer, not the IdP's");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["roles"], json!(["admin", "dev"]));
    assert!(
        claims.get("secret").is_none(),
        "only claims named by headers"
    );
    let iat = claims["iat"].as_u64().expect("iat");
    let exp = claims["exp"].as_u64().expect("exp");
    assert_eq!(exp - iat, 90, "exp = iat + ttl");
    // The identity headers are still there, the assertion beside them.
    assert_eq!(seen.header("x-auth-user"), Some("alice"));
    assert_eq!(seen.header("x-issuer"), Some(idp::ISSUER));

    // The same caller through the other upstream: a different audience.
    let other = get(f.px.addr, "/billing/x", &[&bearer]).await.seen();
    let other = other.header("x-auth-assertion").expect("an assertion");
    let error = decode::<Value>(other, &key, &validation("app"))
        .expect_err("an assertion for billing must not verify for app");
    assert_eq!(
        *error.kind(),
        jsonwebtoken::errors::ErrorKind::InvalidAudience
    );
    decode::<Value>(other, &key, &validation("billing")).expect("valid for billing");

    // A changed payload breaks the signature.
    let mut parts: Vec<String> = assertion.split('.').map(str::to_owned).collect();
    let forged_claims = json!({"iss": ISSUER, "sub": "root", "aud": "app", "iat": iat, "exp": exp});
    parts[1] = common::tokens::b64url(forged_claims.to_string().as_bytes());
    assert!(decode::<Value>(parts.join("."), &key, &validation("app")).is_err());
}

#[tokio::test]
async fn a_client_sent_assertion_never_reaches_the_upstream() {
    let f = fixture().await;
    let forged = "X-Auth-Assertion: eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.";
    let aliased = "X_Auth.Assertion: eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.";
    for path in ["/pub/x", "/opt/x"] {
        let seen = get(f.px.addr, path, &[forged, aliased]).await.seen();
        assert!(
            seen.header("x-auth-assertion").is_none(),
            "{path}: no identity, no assertion: {:?}",
            seen.headers
        );
        assert!(seen.header("x_auth.assertion").is_none(), "{path}");
    }
    let bearer = format!("Authorization: Bearer {}", idp::token("alice", &[]));
    let seen = get(f.px.addr, "/app/x", &[forged, aliased, &bearer])
        .await
        .seen();
    let values = &seen.headers["x-auth-assertion"];
    assert_eq!(values.len(), 1, "only the proxy's assertion: {values:?}");
    assert_ne!(values[0], forged.trim_start_matches("X-Auth-Assertion: "));
    assert!(seen.header("x_auth.assertion").is_none());
}

#[tokio::test]
async fn the_key_set_is_empty_without_an_assertion_key_and_is_never_routed() {
    let up = common::upstream::echo().await;
    let px = start_proxy(&common::one_upstream(
        up.addr,
        "[[routes]]\npath = \"/\"\nupstream = \"app\"\nauth = \"public\"\n",
    ))
    .await;
    let reply = get(px.addr, JWKS, &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"keys": []}));
    // Even a path that only normalizes to it.
    let reply = get(px.addr, "/.well-known//wristband/./jwks.json", &[]).await;
    assert_eq!(reply.json(), json!({"keys": []}));
    let post = raw(
        px.addr,
        &format!("POST {JWKS} HTTP/1.1\r\nHost: x\r\nContent-Length: 0"),
        b"",
    )
    .await;
    assert_eq!(post.status, 405);
    assert_eq!(
        up.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the upstream never saw a JWKS request"
    );
}

#[test]
fn check_rejects_a_key_that_is_not_p256_pkcs8_and_names_the_key() {
    let dir = TempDir::new();
    let key = dir.write(
        "assertion.pem",
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    );
    let file = dir.write(
        "wristband.toml",
        &format!(
            "[[upstreams]]\nname = \"app\"\ntargets = [\"http://127.0.0.1:1\"]\n\n[[routes]]\nupstream = \"app\"\nauth = \"public\"\n\n[identity.assertion]\nkey_file = \"{}\"\n",
            key.display()
        ),
    );
    let output = std::process::Command::new(binary())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .expect("run wristband check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("identity.assertion.key_file"),
        "names the key: {stderr}"
    );
    assert!(
        stderr.contains("PRIVATE KEY"),
        "says what is wrong: {stderr}"
    );
}

/// SPEC §8: forward-auth's 200 carries the assertion too, with `aud` =
/// the route's upstream, or the route's name when it has none.
#[tokio::test]
async fn forward_auth_answers_carry_the_assertion_for_the_upstream_or_the_route() {
    let dir = TempDir::new();
    let key = dir.write("assertion.pem", &p256_pkcs8_pem());
    let up = common::upstream::echo().await;
    let toml = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[forward_auth]\n{}\n\
         [[routes]]\nname = \"edge-only\"\npath = \"/edge\"\n",
        config(up.addr, &key)
    );
    let px = start_proxy(&toml).await;
    let set: JwkSet = serde_json::from_slice(&get(px.addr, JWKS, &[]).await.body).expect("keys");
    let key = DecodingKey::from_jwk(&set.keys[0]).expect("decoding key");
    let bearer = format!("Authorization: Bearer {}", idp::token("alice", &[]));
    for (uri, audience) in [
        ("/app/x", "app"),
        ("/billing/x", "billing"),
        ("/edge/x", "edge-only"),
    ] {
        let original = format!("X-Original-URI: {uri}");
        let answer = get(
            px.addr,
            "/_wristband/auth",
            &["X-Original-Method: GET", &original, &bearer],
        )
        .await;
        assert_eq!(answer.status, 200, "{uri}: {}", answer.text());
        let assertion = answer.header("x-auth-assertion").expect("an assertion");
        let claims = decode::<Value>(assertion, &key, &validation(audience))
            .unwrap_or_else(|e| panic!("{uri}: no assertion for aud = {audience}: {e}"))
            .claims;
        assert_eq!(claims["sub"], "alice");
    }
}
