//! The test OpenID Provider (`tests/common/oidc.rs`) does what wristband's
//! login (SPEC §7) will rely on, driven here the way wristband and a browser
//! will drive it, over plain HTTP: discovery (OIDC Discovery 1.0 §3), the
//! authorization-code flow with PKCE S256 (RFC 7636) and a nonce (OIDC Core
//! §3.1.2.1), the three client authentication methods (RFC 6749 §2.3), an
//! id_token that verifies against the JWKS, refresh-token rotation (RFC 9700
//! §4.14.2), RP-initiated logout, and the test hooks.

mod common;

use aws_lc_rs::digest;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};

use common::client::{self, Reply};
use common::oidc::{
    AuthMethod, OidcProvider, OpBrowser, OpClient, OpSettings, TokenFailure, form, query_param,
};
use common::tokens::{b64std, b64url, random_bytes, random_id};

/// Nothing listens there: the flow ends at the redirect, which is read, not
/// followed.
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const LOGGED_OUT_URI: &str = "http://127.0.0.1:9/logged-out";
const SCOPES: &str = "openid email profile groups offline_access";

fn alice() -> Value {
    json!({"email": "alice@example.com", "name": "Alice", "groups": ["admins", "dev"]})
}

async fn discovery(op: &OidcProvider) -> Value {
    let reply = client::get(op.addr(), "/.well-known/openid-configuration", &[]).await;
    assert_eq!(reply.status, 200, "discovery: {}", reply.text());
    reply.json()
}

#[tokio::test]
async fn discovery_names_the_endpoints_and_end_session_only_when_enabled() {
    let client =
        OpClient::basic("rp", "secret", REDIRECT_URI).post_logout_redirect_uri(LOGGED_OUT_URI);
    let with = OidcProvider::start(OpSettings::new().client(client.clone())).await;
    let without = OidcProvider::start(OpSettings::new().client(client).without_end_session()).await;

    let doc = discovery(&with).await;
    assert_eq!(doc["issuer"], with.issuer());
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
        "end_session_endpoint",
    ] {
        let url = doc[endpoint]
            .as_str()
            .unwrap_or_else(|| panic!("no {endpoint}: {doc}"));
        assert!(
            url.starts_with(&format!("{}/", with.issuer())),
            "{endpoint} = {url}"
        );
    }
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));

    let doc = discovery(&without).await;
    assert_eq!(doc["issuer"], without.issuer());
    assert!(doc["token_endpoint"].is_string(), "{doc}");
    assert!(doc.get("end_session_endpoint").is_none(), "{doc}");
}

/// One relying party's view of a login: its PKCE verifier, state and nonce.
struct Login {
    client: OpClient,
    verifier: String,
    state: String,
    nonce: String,
}

impl Login {
    fn new(client: OpClient) -> Login {
        Login {
            client,
            verifier: b64url(&random_bytes(32)),
            state: random_id(),
            nonce: random_id(),
        }
    }

    fn authorization_url(&self, doc: &Value) -> String {
        let challenge = b64url(digest::digest(&digest::SHA256, self.verifier.as_bytes()).as_ref());
        format!(
            "{}?{}",
            doc["authorization_endpoint"]
                .as_str()
                .expect("authorization_endpoint"),
            form(&[
                ("response_type", "code"),
                ("client_id", &self.client.client_id),
                ("redirect_uri", REDIRECT_URI),
                ("scope", SCOPES),
                ("state", &self.state),
                ("nonce", &self.nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
        )
    }

    /// A token request authenticated the way the client is registered.
    async fn token_request(&self, op: &OidcProvider, params: &[(&str, &str)]) -> Reply {
        let mut params = params.to_vec();
        let mut headers = Vec::new();
        let secret = self.client.client_secret.as_deref().unwrap_or_default();
        match self.client.token_endpoint_auth_method {
            AuthMethod::ClientSecretBasic => headers.push(format!(
                "Authorization: Basic {}",
                b64std(format!("{}:{secret}", self.client.client_id).as_bytes())
            )),
            AuthMethod::ClientSecretPost => {
                params.push(("client_id", &self.client.client_id));
                params.push(("client_secret", secret));
            }
            AuthMethod::None => params.push(("client_id", &self.client.client_id)),
        }
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        op.post(
            "/token",
            "application/x-www-form-urlencoded",
            &headers,
            form(&params).as_bytes(),
        )
        .await
    }

    /// Signs `login` in at the OP and exchanges the code: the token response.
    async fn complete(&self, op: &OidcProvider, login: &str) -> Value {
        self.complete_in(&mut op.browser(), op, login).await
    }

    /// As [`Login::complete`], in `browser` (which keeps the OP session).
    async fn complete_in(
        &self,
        browser: &mut OpBrowser<'_>,
        op: &OidcProvider,
        login: &str,
    ) -> Value {
        let doc = discovery(op).await;
        let back = browser.sign_in(&self.authorization_url(&doc), login).await;
        assert!(back.starts_with(&format!("{REDIRECT_URI}?")), "{back}");
        assert_param(&back, "state", &self.state);
        assert_param(&back, "iss", op.issuer());
        let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
        let reply = self
            .token_request(
                op,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT_URI),
                    ("code_verifier", &self.verifier),
                ],
            )
            .await;
        assert_eq!(reply.status, 200, "code exchange: {}", reply.text());
        reply.json()
    }

    async fn refresh(&self, op: &OidcProvider, refresh_token: &str) -> Reply {
        self.token_request(
            op,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }
}

/// The id_token's claims, verified the way SPEC §7 asks of wristband:
/// signature by a key of the OP's JWKS, `iss`, `aud` = client_id, `exp`.
async fn verified_claims(op: &OidcProvider, client_id: &str, id_token: &str) -> Value {
    let doc = discovery(op).await;
    let jwks_path = doc["jwks_uri"]
        .as_str()
        .and_then(|u| u.strip_prefix(op.issuer()))
        .unwrap_or_else(|| panic!("jwks_uri on the OP: {doc}"));
    let jwks: JwkSet = serde_json::from_slice(&client::get(op.addr(), jwks_path, &[]).await.body)
        .expect("a JWKS jsonwebtoken reads");
    let header = decode_header(id_token).expect("id_token header");
    let jwk = jwks
        .find(header.kid.as_deref().expect("id_token kid"))
        .expect("the id_token's key is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).expect("usable JWK");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[op.issuer()]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    decode::<Value>(id_token, &key, &validation)
        .unwrap_or_else(|e| panic!("id_token does not verify: {e}"))
        .claims
}

/// An OP with just `client`, and a login for it.
async fn op_for(client: OpClient) -> (OidcProvider, Login) {
    let op = OidcProvider::start(OpSettings::new().client(client.clone())).await;
    (op, Login::new(client))
}

/// `url`'s query has `name` = `expected`.
fn assert_param(url: &str, name: &str, expected: &str) {
    assert_eq!(
        query_param(url, name).as_deref(),
        Some(expected),
        "{name} in {url}"
    );
}

fn token_field<'a>(tokens: &'a Value, name: &str) -> &'a str {
    tokens[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {tokens}"))
}

#[tokio::test]
async fn code_flow_with_pkce_gives_a_verified_id_token_and_a_rotating_refresh_token() {
    let client = OpClient::basic("rp", "s3cret", REDIRECT_URI);
    let op = OidcProvider::start(
        OpSettings::new()
            .client(client.clone())
            .account("alice", alice())
            .userinfo_only(&["groups"])
            .token_ttl(std::time::Duration::from_secs(120)),
    )
    .await;
    let login = Login::new(client);
    let tokens = login.complete(&op, "alice").await;
    assert_eq!(tokens["expires_in"], 120, "{tokens}");

    let claims = verified_claims(&op, "rp", token_field(&tokens, "id_token")).await;
    assert_eq!(claims["nonce"], login.nonce.as_str(), "{claims}");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["name"], "Alice");
    assert!(
        claims.get("groups").is_none(),
        "groups is userinfo-only: {claims}"
    );

    let userinfo = client::get(
        op.addr(),
        "/me",
        &[&format!(
            "Authorization: Bearer {}",
            token_field(&tokens, "access_token")
        )],
    )
    .await;
    assert_eq!(userinfo.status, 200, "{}", userinfo.text());
    assert_eq!(userinfo.json()["groups"], json!(["admins", "dev"]));

    let first = token_field(&tokens, "refresh_token");
    let reply = login.refresh(&op, first).await;
    assert_eq!(reply.status, 200, "refresh: {}", reply.text());
    let refreshed = reply.json();
    let second = token_field(&refreshed, "refresh_token");
    assert_ne!(first, second, "rotation gives a new refresh token");
    let claims = verified_claims(&op, "rp", token_field(&refreshed, "id_token")).await;
    assert_eq!(claims["sub"], "alice");

    let replay = login.refresh(&op, first).await;
    assert_eq!(replay.status, 400, "{}", replay.text());
    assert_eq!(replay.json()["error"], "invalid_grant");
    // Reuse detection revoked the grant: the new token is dead too, which is
    // why wristband must refresh once per session, under a lock.
    let after_replay = login.refresh(&op, second).await;
    assert_eq!(after_replay.json()["error"], "invalid_grant");

    let stats = op.stats().await;
    assert_eq!(
        (stats.code_ok, stats.refresh_ok, stats.refresh_error),
        (1, 1, 2),
        "{stats:?}"
    );
    assert_eq!(stats.userinfo, 1);
}

#[tokio::test]
async fn client_secret_post_and_public_clients_complete_the_flow() {
    let post = OpClient::post("post-rp", "p0st", REDIRECT_URI);
    let public = OpClient::public("public-rp", REDIRECT_URI);
    let op = OidcProvider::start(
        OpSettings::new()
            .client(post.clone())
            .client(public.clone()),
    )
    .await;
    for client in [post, public] {
        let id = client.client_id.clone();
        let login = Login::new(client);
        let tokens = login.complete(&op, "bob").await;
        let claims = verified_claims(&op, &id, token_field(&tokens, "id_token")).await;
        assert_eq!(
            (claims["sub"].as_str(), claims["nonce"].as_str()),
            (Some("bob"), Some(login.nonce.as_str()))
        );
        let reply = login
            .refresh(&op, token_field(&tokens, "refresh_token"))
            .await;
        assert_eq!(reply.status, 200, "{id} refresh: {}", reply.text());
    }
}

#[tokio::test]
async fn an_authorization_request_without_pkce_is_refused() {
    let op =
        OidcProvider::start(OpSettings::new().client(OpClient::basic("rp", "s", REDIRECT_URI)))
            .await;
    let path = format!(
        "/auth?{}",
        form(&[
            ("response_type", "code"),
            ("client_id", "rp"),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid")
        ])
    );
    let reply = client::get(op.addr(), &path, &[]).await;
    let location = reply
        .header("location")
        .unwrap_or_else(|| panic!("{} {}", reply.status, reply.text()));
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    assert_param(location, "error", "invalid_request");
}

#[tokio::test]
async fn cancel_at_the_login_form_returns_access_denied() {
    let client = OpClient::basic("rp", "s", REDIRECT_URI);
    let (op, login) = op_for(client).await;
    let back = op
        .browser()
        .cancel(&login.authorization_url(&discovery(&op).await))
        .await;
    assert_param(&back, "error", "access_denied");
    assert_param(&back, "state", &login.state);
}

#[tokio::test]
async fn rp_initiated_logout_returns_to_the_registered_uri() {
    let client = OpClient::basic("rp", "s", REDIRECT_URI).post_logout_redirect_uri(LOGGED_OUT_URI);
    let (op, login) = op_for(client).await;
    let doc = discovery(&op).await;
    let mut browser = op.browser();
    let tokens = login.complete_in(&mut browser, &op, "alice").await;

    let end_session = format!(
        "{}?{}",
        doc["end_session_endpoint"]
            .as_str()
            .expect("end_session_endpoint"),
        form(&[
            ("id_token_hint", token_field(&tokens, "id_token")),
            ("post_logout_redirect_uri", LOGGED_OUT_URI),
            ("state", "bye"),
        ])
    );
    let back = browser.sign_out(&end_session).await;
    assert_eq!(back, format!("{LOGGED_OUT_URI}?state=bye"));
    assert_eq!(op.stats().await.end_session, 1);

    // The OP session is gone: the next authorization asks for the login
    // form again (cancel reaches it only through the form).
    let again = browser
        .cancel(&Login::new(login.client.clone()).authorization_url(&doc))
        .await;
    assert_param(&again, "error", "access_denied");
}

#[tokio::test]
async fn token_endpoint_failures_and_revoked_grants_are_what_tests_asked_for() {
    let client = OpClient::basic("rp", "s", REDIRECT_URI);
    let (op, login) = op_for(client).await;
    let tokens = login.complete(&op, "alice").await;
    let refresh_token = token_field(&tokens, "refresh_token");

    op.set_token_failure(Some(TokenFailure::ServerError)).await;
    let reply = login.refresh(&op, refresh_token).await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (500, json!("server_error"))
    );
    op.set_token_failure(Some(TokenFailure::InvalidGrant)).await;
    let reply = login.refresh(&op, refresh_token).await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
    op.set_token_failure(None).await;
    assert_eq!(op.stats().await.injected_token_failures, 2);

    // Injected failures never reached the OP: the token still works.
    let reply = login.refresh(&op, refresh_token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let refresh_token = token_field(&reply.json(), "refresh_token").to_owned();

    assert_eq!(op.revoke_grants(Some("somebody-else")).await, 0);
    assert_eq!(op.revoke_grants(Some("alice")).await, 1);
    let reply = login.refresh(&op, &refresh_token).await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
}
