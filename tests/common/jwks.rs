//! A real JWKS endpoint on 127.0.0.1:0 (RFC 7517 key set, OpenID Connect
//! Discovery 1.0 §4 metadata) whose behaviour a test steers mid-run.
//!
//! - `/.well-known/jwks.json`             the current key set; every request
//!   is counted, whatever it is answered
//! - `/.well-known/openid-configuration`  `issuer` (its own base URL unless
//!   overridden) and `jwks_uri`; counted separately
//!
//! Modes: serve, fail (503, or any status a test names), or hang (the
//! response never comes while the server lives — longer than any
//! `fetch_timeout` a test sets); or gone altogether (`stop`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const SERVE: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

#[derive(Default)]
struct State {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    mode: AtomicU8,
    /// What `FAIL` answers.
    fail_status: AtomicU16,
    max_age: Mutex<Option<u64>>,
    discovery_issuer: Mutex<Option<String>>,
}

pub struct JwksServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    /// Starts serving `keys` (public JWKs).
    pub async fn start(keys: Vec<Value>) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the JWKS server");
        let addr = listener.local_addr().expect("JWKS server address");
        let state = Arc::new(State::default());
        *state.keys.lock().expect("keys lock") = keys;
        let shared = state.clone();
        let task = tokio::spawn(async move {
            // Held by the accept task, so that ending it (`stop`, drop) also
            // ends every keep-alive connection a client still holds.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(req, addr, state).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        JwksServer { addr, state, task }
    }

    /// The identity provider goes away: the port stops accepting and every
    /// connection it had is closed (a pooled keep-alive connection would
    /// otherwise keep answering).
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// `http://127.0.0.1:PORT` — the issuer, and the discovery base.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base_url())
    }

    /// Replaces the whole key set.
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().expect("keys lock") = keys;
    }

    /// Adds one key to the set (a key rotated in).
    pub fn add_key(&self, key: Value) {
        self.state.keys.lock().expect("keys lock").push(key);
    }

    /// Requests for the JWKS so far, answered or not.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    /// Requests for the discovery document so far.
    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Every request is answered 503 from now on.
    pub fn fail(&self) {
        self.fail_with(503);
    }

    /// Every request is answered `status` (an error status) from now on.
    pub fn fail_with(&self, status: u16) {
        self.state.fail_status.store(status, Ordering::SeqCst);
        self.state.mode.store(FAIL, Ordering::SeqCst);
    }

    /// Every request is left unanswered from now on.
    pub fn hang(&self) {
        self.state.mode.store(HANG, Ordering::SeqCst);
    }

    /// Back to serving.
    pub fn serve(&self) {
        self.state.mode.store(SERVE, Ordering::SeqCst);
    }

    /// Sends `Cache-Control: max-age=N` with the JWKS (None: no header).
    pub fn set_max_age(&self, seconds: Option<u64>) {
        *self.state.max_age.lock().expect("max_age lock") = seconds;
    }

    /// The `issuer` the discovery document claims (default: the base URL).
    pub fn set_discovery_issuer(&self, issuer: &str) {
        *self
            .state
            .discovery_issuer
            .lock()
            .expect("discovery_issuer lock") = Some(issuer.to_owned());
    }
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("content type"),
    );
    resp
}

async fn answer(
    req: Request<Incoming>,
    addr: SocketAddr,
    state: Arc<State>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let counter = match path {
        "/.well-known/jwks.json" => &state.fetches,
        "/.well-known/openid-configuration" => &state.discovery_fetches,
        _ => return respond(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#.into()),
    };
    counter.fetch_add(1, Ordering::SeqCst);
    match state.mode.load(Ordering::SeqCst) {
        FAIL => {
            let status = StatusCode::from_u16(state.fail_status.load(Ordering::SeqCst))
                .expect("fail_with takes a valid status");
            return respond(status, "{}".into());
        }
        HANG => {
            // Held until the server (and its runtime) goes away.
            std::future::pending::<()>().await;
        }
        _ => {}
    }
    if path == "/.well-known/openid-configuration" {
        let base = format!("http://{addr}");
        let issuer = state
            .discovery_issuer
            .lock()
            .expect("discovery_issuer lock")
            .clone()
            .unwrap_or_else(|| base.clone());
        let doc = json!({
            "issuer": issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
        });
        return respond(StatusCode::OK, doc.to_string());
    }
    let keys = state.keys.lock().expect("keys lock").clone();
    let mut resp = respond(StatusCode::OK, json!({ "keys": keys }).to_string());
    if let Some(age) = *state.max_age.lock().expect("max_age lock") {
        resp.headers_mut().insert(
            "cache-control",
            format!("max-age={age}")
                .parse()
                .expect("cache-control value"),
        );
    }
    resp
}

/// A `[[jwt.providers]]` table `idp` whose keys come from `idp`'s JWKS URL,
/// audience `app`, RS256 and ES256, a 1 s cooldown; `overrides` replace a
/// key of the same name, in order, and a value of `"-"` removes the key.
pub fn provider_toml(idp: &JwksServer, overrides: &[(&str, &str)]) -> String {
    let mut keys: Vec<(String, String)> = vec![
        ("name".into(), "\"idp\"".into()),
        ("issuer".into(), format!("\"{}\"", idp.base_url())),
        ("jwks_url".into(), format!("\"{}\"", idp.jwks_url())),
        ("audiences".into(), "[\"app\"]".into()),
        ("algorithms".into(), "[\"RS256\", \"ES256\"]".into()),
        ("min_refresh_interval".into(), "\"1s\"".into()),
        ("fetch_timeout".into(), "\"500ms\"".into()),
    ];
    for (key, value) in overrides {
        keys.retain(|(k, _)| k != key);
        if *value != "-" {
            keys.push(((*key).to_owned(), (*value).to_owned()));
        }
    }
    let mut text = String::from("[[jwt.providers]]\n");
    for (k, v) in keys {
        text.push_str(&format!("{k} = {v}\n"));
    }
    text
}
