//! The load generator: requests at a steady rate, spread over the proxy
//! instances and over request kinds, each answer checked against the
//! credential the request carried.
//!
//! Open loop: a request is started every `1 / rate` seconds whatever the
//! earlier ones are doing (up to `max_in_flight`; a tick with no room is
//! recorded as `Skipped`), so a stalled proxy shows up as latency and
//! errors instead of slowing the generator down.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::backend::EXPECT_HEADER;

/// What a request carries, and so what it must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A live session cookie on the session route: 200 as its user.
    Session,
    /// A valid token on the JWT route: 200 as its `sub`.
    Jwt,
    /// The public route, with a spoofed `X-Auth-User`: 200, anonymous.
    Public,
    /// A session id that is not in the store: never forwarded.
    BadSession,
    /// A token with a known `kid` and a forged signature: never forwarded.
    ForgedJwt,
    /// A token signed by a key the JWKS does not hold (unknown `kid`):
    /// never forwarded; 401, or 503 while the JWKS cannot be fetched.
    UnknownKid,
    /// Random bytes where a token goes: never forwarded.
    GarbageJwt,
    /// No credential on a required route: never forwarded.
    Anonymous,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Session,
        Kind::Jwt,
        Kind::Public,
        Kind::BadSession,
        Kind::ForgedJwt,
        Kind::Session,
        Kind::Jwt,
        Kind::UnknownKid,
    ];
    /// Kinds that appear every other cycle.
    pub const RARE: [Kind; 2] = [Kind::GarbageJwt, Kind::Anonymous];

    /// A valid credential, or none needed: the answer should be 200.
    pub fn should_pass(self) -> bool {
        matches!(self, Kind::Session | Kind::Jwt | Kind::Public)
    }
}

/// The credentials the requests carry.
#[derive(Clone, Default)]
pub struct Credentials {
    /// (cookie value, user)
    pub sessions: Vec<(String, String)>,
    /// (token, sub)
    pub tokens: Vec<(String, String)>,
    pub bad_sessions: Vec<String>,
    pub forged_tokens: Vec<String>,
    pub unknown_kid_tokens: Vec<String>,
    pub garbage_tokens: Vec<String>,
    /// The session cookie's name.
    pub cookie: String,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// The connection could not be made (refused, reset while connecting).
    Connect,
    /// The connection failed after it was made (closed, reset, malformed).
    Transport(String),
    /// No answer within the request timeout.
    Timeout,
    /// The generator had `max_in_flight` requests open: not sent.
    Skipped,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Status(s) => write!(f, "{s}"),
            Outcome::Connect => f.write_str("connect error"),
            Outcome::Transport(e) => write!(f, "transport error ({e})"),
            Outcome::Timeout => f.write_str("timeout"),
            Outcome::Skipped => f.write_str("skipped"),
        }
    }
}

/// One request: when it was started (since the load began), where it
/// went, what it carried, how it ended, and what was wrong with a
/// forwarded answer.
#[derive(Debug, Clone)]
pub struct Record {
    pub at: Duration,
    /// When it ended (since the load began).
    pub done: Duration,
    pub instance: usize,
    pub kind: Kind,
    pub outcome: Outcome,
    /// Forwarded without the identity its credential names (or forwarded at
    /// all when it must not be): the thing that must never happen.
    pub violation: Option<String>,
}

/// A steady load.
#[derive(Clone)]
pub struct Load {
    pub instances: Vec<SocketAddr>,
    pub credentials: Arc<Credentials>,
    /// Requests per second, over all instances.
    pub rate: u32,
    pub duration: Duration,
    /// The backend holds every forwarded request this long (keeps requests
    /// in flight when a fault strikes).
    pub backend_delay: Duration,
    pub max_in_flight: usize,
    pub timeout: Duration,
    /// Path prefixes of the three routes.
    pub session_path: String,
    pub jwt_path: String,
    pub public_path: String,
}

impl Load {
    pub fn new(instances: Vec<SocketAddr>, credentials: Arc<Credentials>) -> Load {
        Load {
            instances,
            credentials,
            rate: 200,
            duration: Duration::from_secs(10),
            backend_delay: Duration::from_millis(20),
            max_in_flight: 1000,
            timeout: Duration::from_secs(15),
            session_path: "/s".into(),
            jwt_path: "/j".into(),
            public_path: "/p".into(),
        }
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build(connector)
}

/// The kind of request number `seq` (after the instance is chosen).
pub fn kind_of(seq: u64) -> Kind {
    let cycle = seq / Kind::ALL.len() as u64;
    let pos = (seq % Kind::ALL.len() as u64) as usize;
    // Every other cycle, the last slot goes to one of the rare kinds.
    if pos == Kind::ALL.len() - 1 && cycle % 2 == 1 {
        Kind::RARE[((cycle / 2) % Kind::RARE.len() as u64) as usize]
    } else {
        Kind::ALL[pos]
    }
}

/// Builds request number `seq` of `kind`; returns it with the identity the
/// backend must see (`x-battery-expect`).
pub fn build_request(load: &Load, addr: SocketAddr, seq: u64, kind: Kind) -> Request<Full<Bytes>> {
    let c = &load.credentials;
    let pick = |n: usize| (seq as usize / 7) % n.max(1);
    let delay = load.backend_delay.as_millis();
    let (prefix, expect, cookie, bearer): (&str, String, Option<&str>, Option<&str>) = match kind {
        Kind::Session => {
            let (id, user) = &c.sessions[pick(c.sessions.len())];
            (&load.session_path, format!("user:{user}"), Some(id), None)
        }
        Kind::Jwt => {
            let (token, sub) = &c.tokens[pick(c.tokens.len())];
            (&load.jwt_path, format!("user:{sub}"), None, Some(token))
        }
        Kind::Public => (&load.public_path, "anonymous".into(), None, None),
        Kind::BadSession => {
            let id = &c.bad_sessions[pick(c.bad_sessions.len())];
            (&load.session_path, "refused".into(), Some(id), None)
        }
        Kind::ForgedJwt => {
            let token = &c.forged_tokens[pick(c.forged_tokens.len())];
            (&load.jwt_path, "refused".into(), None, Some(token))
        }
        Kind::UnknownKid => {
            let token = &c.unknown_kid_tokens[pick(c.unknown_kid_tokens.len())];
            (&load.jwt_path, "refused".into(), None, Some(token))
        }
        Kind::GarbageJwt => {
            let token = &c.garbage_tokens[pick(c.garbage_tokens.len())];
            (&load.jwt_path, "refused".into(), None, Some(token))
        }
        Kind::Anonymous => (&load.session_path, "refused".into(), None, None),
    };
    let uri = format!("http://{addr}{prefix}/r{seq}?delay={delay}");
    let mut builder = Request::get(uri)
        .header("x-request-id", format!("b{seq}"))
        .header(EXPECT_HEADER, expect)
        // Spoofed on every request: the proxy must drop it everywhere.
        .header("x-auth-user", "spoofed-admin");
    if let Some(id) = cookie {
        builder = builder.header("cookie", format!("{}={id}", c.cookie));
    }
    if let Some(token) = bearer {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder
        .body(Full::new(Bytes::new()))
        .expect("a request the generator builds is valid")
}

/// The check of one answer: `None` when it is what `kind` allows, else why
/// it is a violation. Only forwarded answers (those carrying the backend's
/// `x-echo-users`) can be violations.
pub fn check(
    kind: Kind,
    seq: u64,
    users: Option<&str>,
    rid: Option<&str>,
    expect: &str,
) -> Option<String> {
    let users = users?;
    let users: Vec<String> = match serde_json::from_str(users) {
        Ok(users) => users,
        Err(e) => return Some(format!("unreadable x-echo-users ({e}): {users}")),
    };
    if rid != Some(format!("b{seq}").as_str()) {
        return Some(format!("the answer is for request {rid:?}, not b{seq}"));
    }
    if super::backend::identity_matches(expect, &users) {
        None
    } else {
        Some(format!(
            "{kind:?} forwarded as {users:?}, expected {expect}"
        ))
    }
}

async fn one(
    client: HttpClient,
    load: Arc<Load>,
    seq: u64,
    instance: usize,
    kind: Kind,
) -> (Outcome, Option<String>) {
    let addr = load.instances[instance];
    let req = build_request(&load, addr, seq, kind);
    let expect = req
        .headers()
        .get(EXPECT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let exchange = async {
        let resp = client.request(req).await?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let users = header("x-echo-users");
        let rid = header("x-echo-rid");
        // Read the body to the end so the connection goes back to the pool.
        let body = resp.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>((status, users, rid, body.is_ok()))
    };
    match tokio::time::timeout(load.timeout, exchange).await {
        Err(_) => (Outcome::Timeout, None),
        Ok(Err(e)) if e.is_connect() => (Outcome::Connect, None),
        Ok(Err(e)) => (Outcome::Transport(error_chain(&e)), None),
        Ok(Ok((status, users, rid, body_ok))) => {
            let violation = check(kind, seq, users.as_deref(), rid.as_deref(), &expect);
            if violation.is_none() && status == 200 && users.is_none() {
                // A 200 that is not the backend's: nothing the proxy makes.
                return (
                    Outcome::Transport("200 without the backend's headers".into()),
                    None,
                );
            }
            if !body_ok {
                return (
                    Outcome::Transport(format!("body of a {status} cut")),
                    violation,
                );
            }
            (Outcome::Status(status), violation)
        }
    }
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Runs `load` to the end; `started` is its time zero (faults are timed
/// from it too). Returns every request's record, in start order.
pub async fn run(load: Load, started: Instant) -> Vec<Record> {
    let load = Arc::new(load);
    let client = client();
    let room = Arc::new(Semaphore::new(load.max_in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    let mut skipped = Vec::new();
    let period = Duration::from_secs(1) / load.rate.max(1);
    let mut tick = tokio::time::interval_at(started, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let n = load.instances.len();
    let mut seq: u64 = 0;
    loop {
        let at = tick.tick().await;
        let at = at.duration_since(started);
        if at >= load.duration {
            break;
        }
        let instance = (seq % n as u64) as usize;
        let kind = kind_of(seq / n as u64);
        match room.clone().try_acquire_owned() {
            Ok(permit) => {
                let (client, load) = (client.clone(), load.clone());
                tasks.spawn(async move {
                    let (outcome, violation) = one(client, load, seq, instance, kind).await;
                    drop(permit);
                    Record {
                        at,
                        done: started.elapsed(),
                        instance,
                        kind,
                        outcome,
                        violation,
                    }
                });
            }
            Err(_) => skipped.push(Record {
                at,
                done: at,
                instance,
                kind,
                outcome: Outcome::Skipped,
                violation: None,
            }),
        }
        seq += 1;
    }
    let mut records = skipped;
    while let Some(done) = tasks.join_next().await {
        records.push(done.expect("a load task panicked"));
    }
    records.sort_by_key(|r| r.at);
    records
}

/// Counts by outcome, for a report.
pub fn outcome_counts(records: &[Record]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        let key = match &r.outcome {
            Outcome::Transport(e) => format!("transport error: {e}"),
            other => other.to_string(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}
