use std::time::Duration;

use super::{PROVIDER, provider};
use crate::config::diag::Diag;
use crate::config::raw::{RawDoc, RawProvider};
use crate::config::test_support::{TempDir, ok, one_error, one_error_in};
use crate::config::validate::validate;
use crate::config::{JwtAlgorithm, KeySource};

#[test]
fn jwt_rules() {
    one_error(
        "[jwt]\nmax_token_bytes = 255\n",
        "jwt.max_token_bytes",
        "at least 256",
    );
    one_error("[jwt]\ncookie = \"a b\"\n", "jwt.cookie", "cookie name");
    assert_eq!(ok("[jwt]\ncookie = \"\"\n").jwt.cookie, None);
    assert_eq!(
        ok("[jwt]\ncookie = \"token\"\n").jwt.cookie.as_deref(),
        Some("token")
    );
}

#[test]
fn provider_identity_rules() {
    one_error(
        "[[jwt.providers]]\nissuer = \"https://i\"\naudiences = [\"a\"]\n",
        "jwt.providers[0].name",
        "required",
    );
    one_error(
        "[[jwt.providers]]\nname = \"p\"\naudiences = [\"a\"]\n",
        "jwt.providers[0].issuer",
        "required",
    );
    one_error(
        &format!(
            "{PROVIDER}[[jwt.providers]]\nname = \"p\"\nissuer = \"https://other\"\naudiences = [\"a\"]\n"
        ),
        "jwt.providers[1].name",
        "duplicate provider name",
    );
    one_error(
        &format!(
            "{PROVIDER}[[jwt.providers]]\nname = \"q\"\nissuer = \"https://idp.example.com\"\naudiences = [\"a\"]\n"
        ),
        "jwt.providers[1].issuer",
        "duplicate issuer",
    );
}

#[test]
fn provider_key_source_rules() {
    let dir = TempDir::new();
    dir.write("jwks.json", "{}");
    one_error_in(
        &dir,
        &provider("jwks_url = \"https://idp/jwks\"\njwks_file = \"jwks.json\""),
        "jwt.providers[0].jwks_file",
        "only one key source",
    );
    one_error_in(
        &dir,
        &provider("jwks_file = \"nope.json\""),
        "jwt.providers[0].jwks_file",
        "cannot read",
    );
    one_error(
        "[[jwt.providers]]\nname = \"p\"\nissuer = \"http://idp.example.com\"\naudiences = [\"a\"]\n",
        "jwt.providers[0].issuer",
        "https",
    );
    one_error(
        "[[jwt.providers]]\nname = \"p\"\nissuer = \"idp\"\naudiences = [\"a\"]\n",
        "jwt.providers[0].issuer",
        "OIDC discovery",
    );
    ok(
        "[[jwt.providers]]\nname = \"p\"\nissuer = \"http://127.0.0.1:9000\"\naudiences = [\"a\"]\n",
    );
    one_error(
        &provider("jwks_url = \"http://idp.example.com/jwks\""),
        "jwt.providers[0].jwks_url",
        "https",
    );
    for url in [
        "http://localhost:1/jwks",
        "http://127.0.0.2/jwks",
        "http://[::1]:8/jwks",
    ] {
        let c = ok(&provider(&format!("jwks_url = \"{url}\"")));
        assert!(matches!(&c.jwt.providers[0].key_source, KeySource::JwksUrl(u) if u == url));
    }
    let c = ok(&provider(
        "hmac_secret = \"s\"\nalgorithms = [\"HS256\", \"HS512\"]",
    ));
    assert!(
        matches!(&c.jwt.providers[0].key_source, KeySource::HmacSecret(s) if s.expose() == "s")
    );
    one_error(
        &provider("hmac_secret = \"\"\nalgorithms = [\"HS256\"]"),
        "jwt.providers[0].hmac_secret",
        "must not be empty",
    );
    // The default RS256 cannot verify with an HMAC secret.
    one_error(
        &provider("hmac_secret = \"s\""),
        "jwt.providers[0].algorithms",
        "cannot be used with hmac_secret",
    );
}

#[test]
fn provider_algorithm_and_audience_rules() {
    one_error(
        &provider("algorithms = [\"none\"]"),
        "jwt.providers[0].algorithms[0]",
        "never allowed",
    );
    one_error(
        &provider("algorithms = [\"RS256\", \"NoNe\"]"),
        "jwt.providers[0].algorithms[1]",
        "never allowed",
    );
    one_error(
        &provider("algorithms = [\"rs256\"]"),
        "jwt.providers[0].algorithms[0]",
        "unknown algorithm",
    );
    one_error(
        &provider("algorithms = []"),
        "jwt.providers[0].algorithms",
        "at least one",
    );
    one_error(
        &provider("algorithms = [\"HS256\"]"),
        "jwt.providers[0].algorithms[0]",
        "needs hmac_secret",
    );
    one_error(
        &provider("jwks_url = \"https://idp/jwks\"\nalgorithms = [\"ES256\", \"HS384\"]"),
        "jwt.providers[0].algorithms[1]",
        "needs hmac_secret",
    );
    one_error(
        &provider("hmac_secret = \"s\"\nalgorithms = [\"HS256\", \"RS256\"]"),
        "jwt.providers[0].algorithms[1]",
        "cannot be used",
    );
    let c = ok(&provider("algorithms = [\"ES256\", \"EdDSA\", \"PS512\"]"));
    assert_eq!(
        c.jwt.providers[0].algorithms,
        vec![
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
            JwtAlgorithm::PS512
        ]
    );

    let base = "[[jwt.providers]]\nname = \"p\"\nissuer = \"https://i\"\n";
    one_error(base, "jwt.providers[0].audiences", "required");
    one_error(
        &format!("{base}audiences = []\n"),
        "jwt.providers[0].audiences",
        "at least one",
    );
    one_error(
        &format!("{base}audiences = [\"a\", \"\"]\n"),
        "jwt.providers[0].audiences[1]",
        "must not be empty",
    );
    one_error(
        &provider("audience_claim = \"\""),
        "jwt.providers[0].audience_claim",
        "must not be empty",
    );
    assert_eq!(
        ok(&provider("audience_claim = \"client_id\""))
            .jwt
            .providers[0]
            .audience_claim,
        "client_id"
    );
}

#[test]
fn provider_timing_claims_and_files() {
    let c = ok(&provider(
        "max_token_lifetime = \"1h\"\nleeway = \"0s\"\nclaims = { token_use = \"access\", level = 3, ratio = 0.5, admin = true }",
    ));
    let p = &c.jwt.providers[0];
    assert_eq!(p.max_token_lifetime, Some(Duration::from_secs(3600)));
    assert_eq!(p.leeway, Duration::ZERO);
    assert_eq!(p.claims["token_use"], serde_json::json!("access"));
    assert_eq!(p.claims["level"], serde_json::json!(3));
    assert_eq!(p.claims["ratio"], serde_json::json!(0.5));
    assert_eq!(p.claims["admin"], serde_json::json!(true));
    one_error(
        &provider("claims = { groups = [\"a\"] }"),
        "jwt.providers[0].claims.groups",
        "string, integer, float or boolean",
    );
    one_error(
        &provider("claims = { x = { y = 1 } }"),
        "jwt.providers[0].claims.x",
        "string, integer",
    );
    one_error(
        &provider("refresh_interval = \"1m\"\nmin_refresh_interval = \"2m\""),
        "jwt.providers[0].min_refresh_interval",
        "must not exceed refresh_interval",
    );
    ok(&provider(
        "refresh_interval = \"1m\"\nmin_refresh_interval = \"1m\"",
    ));
    one_error(
        &provider("fetch_timeout = \"0s\""),
        "jwt.providers[0].fetch_timeout",
        "greater than 0s",
    );
    one_error(
        &provider("ca_file = \"nope.pem\""),
        "jwt.providers[0].ca_file",
        "cannot read",
    );
    one_error(
        &provider("max_stale = \"a while\""),
        "jwt.providers[0].max_stale",
        "invalid duration",
    );
}

#[test]
fn jwt_cache_size_bounds() {
    one_error(
        "[jwt]\nverified_cache_size = -1\n",
        "jwt.verified_cache_size",
        "between 0 and 10000000",
    );
    one_error(
        "[jwt]\nverified_cache_size = 10000001\n",
        "jwt.verified_cache_size",
        "between 0 and 10000000",
    );
    assert_eq!(
        ok("[jwt]\nverified_cache_size = 0\n")
            .jwt
            .verified_cache_size,
        0
    );
}

#[test]
fn a_repeated_algorithm_is_an_error_at_the_repeat() {
    one_error(
        &provider("algorithms = [\"ES256\", \"RS256\", \"ES256\"]"),
        "jwt.providers[0].algorithms[2]",
        "duplicate algorithm \"ES256\"",
    );
}

#[test]
fn a_jwks_url_must_be_an_absolute_url() {
    one_error(
        &provider("jwks_url = \"not a url\""),
        "jwt.providers[0].jwks_url",
        "is not a valid URL",
    );
    one_error(
        &provider("jwks_url = \"/jwks.json\""),
        "jwt.providers[0].jwks_url",
        "absolute URL with a host",
    );
}

/// The HMAC secret is missing (its file cannot be read, or it is given
/// twice): one error at the key, and no "needs hmac_secret" on top.
#[test]
fn a_missing_hmac_secret_is_one_error_naming_its_key() {
    let dir = TempDir::new();
    dir.write("hmac.txt", "s\n");
    one_error_in(
        &dir,
        &provider("hmac_secret_file = \"nope.txt\"\nalgorithms = [\"HS256\"]"),
        "jwt.providers[0].hmac_secret_file",
        "cannot read",
    );
    one_error_in(
        &dir,
        &provider("hmac_secret = \"s\"\nhmac_secret_file = \"hmac.txt\"\nalgorithms = [\"HS256\"]"),
        "jwt.providers[0].hmac_secret_file",
        "give either hmac_secret or hmac_secret_file, not both",
    );
}

/// Regression: an unreadable secret used to become the stand-in secret
/// "unreadable" so that later checks kept quiet; now no provider is built.
#[test]
fn an_unreadable_hmac_secret_builds_no_provider() {
    let dir = TempDir::new();
    let path = dir.config_path();
    let mut diag = Diag::new(&path, "");
    let raw = RawDoc {
        providers: vec![Some(RawProvider {
            name: Some("p".into()),
            issuer: Some("https://idp".into()),
            audiences: Some(vec!["a".into()]),
            hmac_secret_file: Some("nope.txt".into()),
            algorithms: Some(vec!["HS256".into()]),
            ..RawProvider::default()
        })],
        ..RawDoc::default()
    };
    let config = validate(&mut diag, raw, &path, dir.path());
    assert!(
        config.jwt.providers.is_empty(),
        "{:?}",
        config.jwt.providers
    );
    let errors = diag.into_errors();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(errors.0[0].key_path, "jwt.providers[0].hmac_secret_file");
}
