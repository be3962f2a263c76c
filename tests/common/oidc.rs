//! A real OpenID Provider for the login tests: `tests/oidc-provider/server.js`
//! (the certified npm package `oidc-provider`) as a child process on
//! 127.0.0.1, so wristband's OIDC code (SPEC §7) meets a peer that follows
//! OpenID Connect Core 1.0, RFC 7636 and RP-Initiated Logout 1.0 on its own.
//!
//! The child picks its own port and prints its issuer once listening, so
//! there is no port race. It is killed (by PID) on drop.
//!
//! How it behaves, besides the specs: any login name with any password signs
//! in as that `sub`; consent is granted without a click; a refresh token is
//! issued to every client allowed the refresh_token grant (whether or not
//! `offline_access` survived, see server.js) and rotates on every use; using
//! a rotated one again is `invalid_grant` and revokes the whole grant, the
//! fresh refresh token included (reuse detection).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::{self, Reply};

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc-provider/server.js");
const NODE_MODULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/oidc-provider/node_modules"
);

/// `npm ci` for the OP's packages on the first run on a machine, so that
/// `cargo test` alone works wherever Node.js is installed. Test binaries run
/// at once, so one installs (the one that creates the lock directory) and
/// the others wait for it; a lock older than five minutes is a killed run's.
fn install_packages() {
    let installed = || Path::new(NODE_MODULES).join(".package-lock.json").is_file();
    if installed() {
        return;
    }
    let dir = Path::new(SERVER).parent().expect("tests/oidc-provider");
    let lock = dir.join(".installing");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        if installed() {
            return;
        }
        let stale = std::fs::metadata(&lock)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(300));
        if stale {
            let _ = std::fs::remove_dir(&lock);
        }
        if std::fs::create_dir(&lock).is_ok() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(dir)
                .stdin(Stdio::null())
                .status();
            let _ = std::fs::remove_dir(&lock);
            match status {
                Ok(status) if status.success() => return,
                other => panic!(
                    "npm ci in {} failed ({other:?}); the login tests need Node.js >= 20.18 and npm \
                     (.ci/install-node.sh installs them)",
                    dir.display()
                ),
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 5 min for another test's npm ci in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3,
/// OIDC Core §9).
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client: PKCE alone.
    None,
}

/// One registered client.
#[derive(Serialize, Clone, Debug)]
pub struct OpClient {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub token_endpoint_auth_method: AuthMethod,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Whether the client may use the refresh_token grant (and so gets a
    /// refresh token with its code exchange).
    pub refresh_tokens: bool,
}

impl OpClient {
    /// A confidential client using `client_secret_basic`.
    pub fn basic(client_id: &str, secret: &str, redirect_uri: &str) -> OpClient {
        OpClient::new(
            client_id,
            Some(secret),
            AuthMethod::ClientSecretBasic,
            redirect_uri,
        )
    }

    /// A confidential client using `client_secret_post`.
    pub fn post(client_id: &str, secret: &str, redirect_uri: &str) -> OpClient {
        OpClient::new(
            client_id,
            Some(secret),
            AuthMethod::ClientSecretPost,
            redirect_uri,
        )
    }

    /// A public client (`token_endpoint_auth_method = none`).
    pub fn public(client_id: &str, redirect_uri: &str) -> OpClient {
        OpClient::new(client_id, None, AuthMethod::None, redirect_uri)
    }

    fn new(
        client_id: &str,
        secret: Option<&str>,
        method: AuthMethod,
        redirect_uri: &str,
    ) -> OpClient {
        OpClient {
            client_id: client_id.to_owned(),
            client_secret: secret.map(str::to_owned),
            token_endpoint_auth_method: method,
            redirect_uris: vec![redirect_uri.to_owned()],
            post_logout_redirect_uris: Vec::new(),
            refresh_tokens: true,
        }
    }

    /// Also accepts `uri` as a redirect URI (e.g. a second wristband).
    pub fn redirect_uri(mut self, uri: &str) -> OpClient {
        self.redirect_uris.push(uri.to_owned());
        self
    }

    /// Accepts `uri` as a `post_logout_redirect_uri`.
    pub fn post_logout_redirect_uri(mut self, uri: &str) -> OpClient {
        self.post_logout_redirect_uris.push(uri.to_owned());
        self
    }

    pub fn without_refresh_tokens(mut self) -> OpClient {
        self.refresh_tokens = false;
        self
    }
}

/// Token lifetimes, in seconds.
#[derive(Serialize, Clone, Debug)]
pub struct Ttl {
    pub access_token: u64,
    pub id_token: u64,
    pub refresh_token: u64,
}

/// What the OP is started with (`server.js` reads the same JSON).
#[derive(Serialize, Clone, Debug)]
pub struct OpSettings {
    pub clients: Vec<OpClient>,
    /// Whether discovery names an `end_session_endpoint`.
    pub end_session: bool,
    pub ttl: Ttl,
    /// Claims by login name (`email`, `name`, `groups`, ...); another login
    /// has only `sub`.
    pub accounts: BTreeMap<String, Value>,
    /// Claims left out of the id_token, served only by userinfo.
    pub userinfo_only: Vec<String>,
}

impl Default for OpSettings {
    fn default() -> Self {
        OpSettings {
            clients: Vec::new(),
            end_session: true,
            ttl: Ttl {
                access_token: 600,
                id_token: 600,
                refresh_token: 86_400,
            },
            accounts: BTreeMap::new(),
            userinfo_only: Vec::new(),
        }
    }
}

impl OpSettings {
    pub fn new() -> OpSettings {
        OpSettings::default()
    }

    pub fn client(mut self, client: OpClient) -> OpSettings {
        self.clients.push(client);
        self
    }

    /// Discovery without `end_session_endpoint` (no RP-initiated logout).
    pub fn without_end_session(mut self) -> OpSettings {
        self.end_session = false;
        self
    }

    /// Access token and id_token lifetime, e.g. short for refresh tests.
    pub fn token_ttl(mut self, ttl: Duration) -> OpSettings {
        self.ttl.access_token = ttl.as_secs();
        self.ttl.id_token = ttl.as_secs();
        self
    }

    pub fn refresh_token_ttl(mut self, ttl: Duration) -> OpSettings {
        self.ttl.refresh_token = ttl.as_secs();
        self
    }

    /// The claims `login` gets, e.g. `json!({"email": "a@example.com",
    /// "groups": ["admins"]})`.
    pub fn account(mut self, login: &str, claims: Value) -> OpSettings {
        self.accounts.insert(login.to_owned(), claims);
        self
    }

    /// Serves `claims` from userinfo only, never in the id_token.
    pub fn userinfo_only(mut self, claims: &[&str]) -> OpSettings {
        self.userinfo_only = claims.iter().map(|c| (*c).to_owned()).collect();
        self
    }
}

/// How the token endpoint answers every request until told otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFailure {
    /// 400 `invalid_grant` (RFC 6749 §5.2), as for a revoked refresh token.
    InvalidGrant,
    /// 500 `server_error`: the IdP is broken.
    ServerError,
}

/// What the OP was asked, counted by the OP.
#[derive(Deserialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct OpStats {
    /// Code exchanges answered with tokens / with an error.
    pub code_ok: u64,
    pub code_error: u64,
    /// Refresh grants answered with tokens / with an error.
    pub refresh_ok: u64,
    pub refresh_error: u64,
    /// Token requests answered by [`TokenFailure`] instead.
    pub injected_token_failures: u64,
    pub userinfo: u64,
    /// Completed RP-initiated logouts.
    pub end_session: u64,
    /// id_tokens forged by [`OidcProvider::tamper_id_tokens`].
    pub tampered_id_tokens: u64,
}

/// The running OP.
pub struct OidcProvider {
    child: Child,
    issuer: String,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl OidcProvider {
    /// Starts `node tests/oidc-provider/server.js` with `settings` and waits
    /// (at most 20 s) for its issuer line.
    pub async fn start(settings: OpSettings) -> OidcProvider {
        install_packages();
        let settings = serde_json::to_string(&settings).expect("settings serialize");
        let mut child = Command::new("node")
            .arg(SERVER)
            .env("WB_OP_SETTINGS", settings)
            // Kept open (in `child.stdin`) for the OP's lifetime: it exits at
            // EOF, even if this process dies without dropping it.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node {SERVER} ({e}): is Node.js installed?"));

        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let stderr_reader = std::thread::spawn({
            let stderr = Arc::clone(&stderr);
            move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    if let Ok(mut text) = stderr.lock() {
                        text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            }
        });
        let (line_tx, line_rx) = tokio::sync::oneshot::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = line_tx.send(lines.next());
            // Keep reading so a stray write can never block the child on a
            // full pipe.
            for _ in lines {}
        });

        let line = tokio::time::timeout(Duration::from_secs(20), line_rx).await;
        let mut op = OidcProvider {
            child,
            issuer: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        let line = match line {
            Ok(Ok(Some(Ok(line)))) => line,
            Ok(_) => op.fail("exited before printing its issuer"),
            Err(_) => op.fail("printed no issuer within 20 s"),
        };
        let issuer = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["issuer"].as_str().map(str::to_owned))
            .unwrap_or_else(|| op.fail(&format!("printed {line:?}, not {{\"issuer\": ...}}")));
        let addr = issuer
            .strip_prefix("http://")
            .and_then(|hostport| hostport.parse().ok())
            .unwrap_or_else(|| op.fail(&format!("issuer {issuer:?} is not http://IP:PORT")));
        op.addr = addr;
        op.issuer = issuer;
        op
    }

    fn fail(&mut self, what: &str) -> ! {
        // Once the child is gone its stderr pipe ends, and the reader with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        panic!(
            "the test OpenID Provider {what}; stderr:\n{}",
            self.stderr()
        );
    }

    /// `http://127.0.0.1:PORT`, exactly as in discovery and in `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A cookie jar for this OP, standing in for a browser's.
    pub fn browser(&self) -> OpBrowser<'_> {
        OpBrowser {
            op: self,
            cookies: Vec::new(),
        }
    }

    /// Everything the OP wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// From now on the token endpoint answers `failure` to every request
    /// (code exchange and refresh alike); `None` restores it.
    pub async fn set_token_failure(&self, failure: Option<TokenFailure>) {
        let answer = match failure {
            Some(TokenFailure::InvalidGrant) => json!("invalid_grant"),
            Some(TokenFailure::ServerError) => json!("server_error"),
            None => Value::Null,
        };
        self.hook("/__test/token-failure", &json!({ "answer": answer }))
            .await;
    }

    /// From now on (`true`) the token endpoint's id_tokens carry
    /// `sub = "mallory"` in a payload their signature was not made over.
    pub async fn tamper_id_tokens(&self, on: bool) {
        self.hook("/__test/tamper-id-tokens", &json!({ "on": on }))
            .await;
    }

    /// Rewrites the OP's answers from now on (replacing what an earlier
    /// call set): `{"id_token": {"claims": {..}, "resign": bool}}` merges
    /// claims into the token endpoint's id_tokens, signed again with the
    /// OP's own key when `resign` (an IdP that really says so);
    /// `{"userinfo": {"claims": {..}}}` and `{"discovery": {"fields":
    /// {..}}}` merge into those documents. `{}` stops all of it.
    pub async fn tamper(&self, parts: Value) {
        self.hook("/__test/tamper", &parts).await;
    }

    /// Revokes every grant of `sub` (or of everyone), as an admin ending a
    /// user's access at the IdP: their refresh tokens then get
    /// `invalid_grant`. Returns how many grants were revoked.
    pub async fn revoke_grants(&self, sub: Option<&str>) -> u64 {
        let body = match sub {
            Some(sub) => json!({ "sub": sub }),
            None => json!({}),
        };
        let reply = self.hook("/__test/revoke-grants", &body).await;
        reply["revoked"].as_u64().expect("revoked count")
    }

    /// What the OP has been asked so far.
    pub async fn stats(&self) -> OpStats {
        let reply = client::get(self.addr, "/__test/stats", &[]).await;
        assert_eq!(reply.status, 200, "stats: {}", reply.text());
        serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("stats ({e}): {}", reply.text()))
    }

    async fn hook(&self, path: &str, body: &Value) -> Value {
        let reply = self
            .post(path, "application/json", &[], body.to_string().as_bytes())
            .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        reply.json()
    }

    /// `POST path` to the OP with a body of `content_type` and extra header
    /// lines.
    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        headers: &[&str],
        body: &[u8],
    ) -> Reply {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}",
            self.addr,
            body.len()
        );
        for h in headers {
            head.push_str("\r\n");
            head.push_str(h);
        }
        client::raw(self.addr, &head, body).await
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        // Child::kill signals this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a browser does at the OP, over plain HTTP: follows the OP's
/// redirects with its cookies and fills in its forms, until the OP sends it
/// elsewhere (back to the relying party).
pub struct OpBrowser<'a> {
    op: &'a OidcProvider,
    cookies: Vec<(String, String)>,
}

impl OpBrowser<'_> {
    /// Opens `url` (an authorization request) and signs in as `login`;
    /// returns the URL the OP redirects to (`redirect_uri?code=..&state=..`,
    /// or `?error=..`). Signing in again with the same browser goes through
    /// without the form (the OP's session).
    pub async fn sign_in(&mut self, url: &str, login: &str) -> String {
        self.walk(url, |_| {
            Some(("login", form(&[("login", login), ("password", "pw")])))
        })
        .await
    }

    /// Opens `url` (an authorization request) and presses "Cancel" on the
    /// login form; returns where the OP sends the browser
    /// (`redirect_uri?error=access_denied&..`).
    pub async fn cancel(&mut self, url: &str) -> String {
        self.walk(url, |_| Some(("abort", String::new()))).await
    }

    /// Opens `url` (the `end_session_endpoint` with its query) and confirms
    /// the sign-out as the page's script would; returns where the OP sends
    /// the browser (`post_logout_redirect_uri?state=..`).
    pub async fn sign_out(&mut self, url: &str) -> String {
        self.walk(url, |page| {
            let xsrf = attribute_after(page, "name=\"xsrf\"", "value")?;
            Some(("confirm", format!("xsrf={xsrf}&logout=yes")))
        })
        .await
    }

    /// Follows redirects within the OP; on a page with a form, asks `fill`
    /// which form (by the last segment of its action) and what body to
    /// post. Returns the first location outside the OP.
    async fn walk(
        &mut self,
        url: &str,
        fill: impl Fn(&str) -> Option<(&'static str, String)>,
    ) -> String {
        let mut next = (url.to_owned(), None::<String>);
        for _ in 0..20 {
            let (url, form) = &next;
            let Some(path) = self.op_path(url) else {
                return url.clone();
            };
            let reply = match form {
                None => self.request("GET", &path, b"").await,
                Some(body) => self.request("POST", &path, body.as_bytes()).await,
            };
            next = match reply.status {
                302 | 303 => {
                    let location = reply
                        .header("location")
                        .unwrap_or_else(|| panic!("OP redirect without Location from {path}"));
                    (location.to_owned(), None)
                }
                200 => {
                    let page = reply.text();
                    let (action_end, body) = fill(&page).unwrap_or_else(|| {
                        panic!("no form to fill on the OP page {path}:\n{page}")
                    });
                    let action = form_action(&page, action_end).unwrap_or_else(|| {
                        panic!("no form posting to */{action_end} on {path}:\n{page}")
                    });
                    (action, Some(body))
                }
                status => panic!(
                    "OP answered {status} to {path}: {}\nOP stderr:\n{}",
                    reply.text(),
                    self.op.stderr()
                ),
            };
        }
        panic!("more than 20 steps at the OP from {url}");
    }

    /// The path and query of `url` if it is on the OP.
    fn op_path(&self, url: &str) -> Option<String> {
        if url.starts_with('/') {
            return Some(url.to_owned());
        }
        let rest = url.strip_prefix(self.op.issuer())?;
        if rest.is_empty() {
            return Some("/".to_owned());
        }
        rest.starts_with(['/', '?']).then(|| rest.to_owned())
    }

    async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Reply {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}", self.op.addr());
        if !self.cookies.is_empty() {
            let pairs: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            head.push_str(&format!("\r\nCookie: {}", pairs.join("; ")));
        }
        if method == "POST" {
            head.push_str(&format!(
                "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}",
                body.len()
            ));
        }
        let reply = client::raw(self.op.addr(), &head, body).await;
        self.store_cookies(&reply);
        reply
    }

    /// Keeps the latest value of each cookie by name; paths are ignored
    /// (sending the OP a cookie on a path it did not scope it to is
    /// harmless: it looks each one up by name and signature).
    fn store_cookies(&mut self, reply: &Reply) {
        for (name, value) in &reply.headers {
            if name != "set-cookie" {
                continue;
            }
            let Some((pair, attributes)) = value.split_once(';').or(Some((value, ""))) else {
                continue;
            };
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
            self.cookies.retain(|(name, _)| *name != k);
            let expired = attributes
                .to_ascii_lowercase()
                .contains("expires=thu, 01 jan 1970");
            if !v.is_empty() && !expired {
                self.cookies.push((k, v));
            }
        }
    }
}

/// The `action` of the form whose action ends with `/{end}`.
fn form_action(page: &str, end: &str) -> Option<String> {
    page.split("action=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|action| action.ends_with(&format!("/{end}")))
        .map(str::to_owned)
}

/// The value of attribute `name` in the tag where `marker` appears.
fn attribute_after(page: &str, marker: &str, name: &str) -> Option<String> {
    let start = page[..page.find(marker)?].rfind('<')?;
    let tag = &page[start..start + page[start..].find('>')?];
    let value = tag.split(&format!("{name}=\"")).nth(1)?;
    value.split('"').next().map(str::to_owned)
}

/// `application/x-www-form-urlencoded` (also fine as a URL query).
pub fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The percent-decoded value of `name` in `url`'s query.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
