//! The Redis store through fred: standalone (`redis://`, `rediss://`),
//! Sentinel and Cluster, with what fred leaves unset made explicit — a
//! command timeout, fail-fast while disconnected (503 at once, never a
//! queue), endless reconnection with backoff, and detection of unresponsive
//! connections (a paused server).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;
use prometheus_client::metrics::counter::Counter;

use super::cache::TrackedCache;
use super::record::Stored;
use super::tracking::Tracking;
use crate::config::{SessionFormat, StoreConfig};

pub struct RedisStore {
    pub(super) client: Client,
    read_from_replicas: bool,
    /// Cluster deployments route replica reads by slot (see `read_replica`).
    clustered: bool,
    ready: Arc<AtomicBool>,
    errors: Counter,
    /// Keeps the cache's tracking supervisor running while the store lives.
    _tracking: Option<Arc<Tracking>>,
}

/// How long closing a replaced store's client may take.
const QUIT_LIMIT: Duration = Duration::from_secs(5);

/// A store a reload replaced closes its connections. fred's connection
/// task (and the tracking handlers) keep the client alive: dropping the
/// last handle would leave it connected, and reconnecting, for good.
impl Drop for RedisStore {
    fn drop(&mut self) {
        close_replaced(&self.client);
    }
}

/// Closes a client that a reload replaced (a session store's, or a
/// revocation watcher's), in the background and bounded by
/// [`QUIT_LIMIT`]. Stopped (between two connection attempts) there is
/// nothing to close, and the restart loop ends by itself; outside a
/// runtime the process is ending.
pub fn close_replaced(client: &Client) {
    let client = client.clone();
    if client.state() == fred::types::ClientState::Disconnected {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            // Bounded: a client between connection attempts may never
            // answer, and this task must not outlive it for good.
            match tokio::time::timeout(QUIT_LIMIT, client.quit()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(error = ?error.kind(), "closing a replaced Redis client")
                }
                Err(_) => tracing::debug!("closing a replaced Redis client timed out"),
            }
        });
    }
}

/// SPEC §3 URL forms to fred's: `redis-sentinel://h1:p1,h2:p2/name[/db]`
/// becomes `redis-sentinel://h1:p1[/db]?node=h2:p2&sentinelServiceName=name`,
/// `redis-cluster://h1:p1,h2:p2` becomes `redis-cluster://h1:p1?node=h2:p2`.
/// Credentials stay where they are.
pub fn to_fred_url(url: &str) -> Result<String, &'static str> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((user, rest)) => (format!("{user}@"), rest),
        None => (String::new(), rest),
    };
    let (hosts, path) = match rest.split_once('/') {
        Some((hosts, path)) => (hosts, path),
        None => (rest, ""),
    };
    let mut hosts = hosts.split(',').filter(|h| !h.is_empty());
    let first = hosts.next().ok_or("no host")?;
    let nodes: Vec<String> = hosts.map(|h| format!("node={h}")).collect();
    match scheme {
        "redis" | "rediss" => Ok(url.to_owned()),
        "redis-cluster" | "rediss-cluster" => {
            let query = if nodes.is_empty() {
                String::new()
            } else {
                format!("?{}", nodes.join("&"))
            };
            Ok(format!("{scheme}://{userinfo}{first}{query}"))
        }
        "redis-sentinel" | "rediss-sentinel" => {
            let (name, db) = match path.split_once('/') {
                Some((name, db)) => (name, format!("/{db}")),
                None => (path, String::new()),
            };
            if name.is_empty() {
                return Err("redis-sentinel URL without a master name");
            }
            let mut query = nodes;
            query.push(format!("sentinelServiceName={name}"));
            Ok(format!(
                "{scheme}://{userinfo}{first}{db}?{}",
                query.join("&")
            ))
        }
        _ => Err("unknown scheme"),
    }
}

impl RedisStore {
    /// Builds the client and starts connecting in the background: the proxy
    /// starts (and answers 503 on required session routes, /readyz 503)
    /// while Redis is still down.
    pub fn start(
        store: &StoreConfig,
        cache: Option<Arc<TrackedCache>>,
        errors: Counter,
    ) -> anyhow::Result<Arc<RedisStore>> {
        // Client tracking watches the keys read on the tracked (primary)
        // connection only: a session cached from a replica read would never
        // be invalidated. With the cache on, reads stay on the primary.
        let read_from_replicas = store.read_from_replicas && cache.is_none();
        if store.read_from_replicas && cache.is_some() {
            tracing::warn!(
                "store.read_from_replicas is ignored while sessions.cache_ttl > 0: \
                 cached sessions must be read where client tracking sees them (the primary)"
            );
        }
        // Client tracking pushes invalidations over RESP3.
        let (client, clustered) = client(store, cache.is_some(), read_from_replicas)?;
        let tracking = cache.map(|cache| Tracking::wire(&client, cache));
        let ready = Arc::new(AtomicBool::new(false));
        let store = Arc::new(RedisStore {
            client,
            read_from_replicas,
            clustered,
            ready: ready.clone(),
            errors,
            _tracking: tracking.clone(),
        });
        let weak = Arc::downgrade(&store);
        keep_connected(move || weak.upgrade().map(|s| s.client.clone()));
        spawn_pinger(Arc::downgrade(&store));
        if let Some(tracking) = tracking {
            let store = Arc::downgrade(&store);
            tracking.spawn_supervisor(move || store.upgrade().map(|s| s.client.clone()));
        }
        Ok(store)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The session at `key`, and its TTL when `with_ttl`.
    pub async fn fetch(
        &self,
        key: &str,
        format: SessionFormat,
        with_ttl: bool,
    ) -> Result<Option<(Stored, Option<i64>)>, FetchError> {
        let mut found = None;
        if self.read_from_replicas {
            found = self.read_replica(key, format).await;
        }
        if found.is_none() {
            found = self.read(&self.client, key, format).await?;
        }
        let Some(stored) = found else {
            return Ok(None);
        };
        let ttl = if with_ttl {
            Some(
                self.client
                    .ttl::<i64, _>(key)
                    .await
                    .map_err(|e| FetchError::Unavailable(self.failed(e)))?,
            )
        } else {
            None
        };
        Ok(Some((stored, ttl)))
    }

    /// The session as a replica sees it; `None` on a miss and on a replica
    /// error, so the primary decides both (a replica may lag or be down; the
    /// primary's answer, or its error, is the one that counts).
    ///
    /// fred routes replica reads by the primary that owns the command: in a
    /// cluster the key's slot names it, but a standalone or Sentinel client
    /// has no slots, so the primary it is connected to is named explicitly.
    async fn read_replica(&self, key: &str, format: SessionFormat) -> Option<Stored> {
        let result = if self.clustered {
            self.read(&self.client.replicas(), key, format).await
        } else {
            // Replica -> primary, as fred learnt it from ROLE at (re)connect.
            let primary = self.client.replicas().nodes().into_values().next()?;
            let replicas = self.client.with_cluster_node(primary).replicas();
            self.read(&replicas, key, format).await
        };
        result.ok().flatten()
    }

    async fn read<C: KeysInterface + HashesInterface + Sync>(
        &self,
        client: &C,
        key: &str,
        format: SessionFormat,
    ) -> Result<Option<Stored>, FetchError> {
        match format {
            SessionFormat::Hash => {
                // As fred's `Value`, read once: asking fred for a
                // `HashMap<String, String>` builds a second map from its own,
                // ~2,500 instructions per lookup (bench/instructions.sh).
                let reply: Value = client.hgetall(key).await.map_err(|e| self.read_failed(e))?;
                let fields = hash_fields(reply).map_err(|bad| self.bad_reply(bad))?;
                Ok((!fields.is_empty()).then_some(Stored::Hash(fields)))
            }
            SessionFormat::Json => {
                let reply: Value = client.get(key).await.map_err(|e| self.read_failed(e))?;
                let text = json_text(reply).map_err(|bad| self.bad_reply(bad))?;
                Ok(text.map(Stored::Json))
            }
        }
    }

    pub async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        self.client
            .expire::<(), _>(key, seconds, None)
            .await
            .map_err(|e| self.failed(e))
    }

    /// A read that did not give a session: the key holds another type
    /// (the store answered: not a session, and not a store error), or the
    /// store failed.
    fn read_failed(&self, error: Error) -> FetchError {
        if is_wrong_type(&error) {
            FetchError::NotASession("the session key holds another Redis type")
        } else {
            FetchError::Unavailable(self.failed(error))
        }
    }

    /// Counts the error and keeps its kind only (a fred error may quote
    /// the command, and the command names the session key).
    pub(super) fn failed(&self, error: Error) -> StoreError {
        self.errors.inc();
        StoreError::Redis(error.kind().clone())
    }

    /// A reply that gives no session. Never quoted (it may hold session
    /// data). Bytes that are not text are what the key holds: not a
    /// session, like a key of another type. A reply the command cannot
    /// give is the store misbehaving: counted like any store error.
    fn bad_reply(&self, bad: BadReply) -> FetchError {
        match bad {
            BadReply::NotText(what) => FetchError::NotASession(what),
            BadReply::Unexpected(what) => {
                self.errors.inc();
                FetchError::Unavailable(StoreError::BadReply(what))
            }
        }
    }
}

/// The store could not be asked, or answered nonsense: 503, counted in
/// `wristband_store_errors_total`. Never the command or the reply: both
/// may name a session or hold its data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0:?}")]
    Redis(ErrorKind),
    #[error("redis: {0}")]
    BadReply(&'static str),
}

/// Why [`RedisStore::fetch`] has no session to give.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchError {
    Unavailable(StoreError),
    /// The store answered, and the key is not a session (guarantee 5: a key
    /// of another type): 401, like a missing key.
    NotASession(&'static str),
}

/// Redis's `WRONGTYPE` error reply: the key exists and holds another type
/// (HGETALL on a string, GET on a hash). fred has no kind of its own for it:
/// it files the reply under `InvalidArgument`, which it also uses for
/// argument errors it raises itself, and keeps the server's reply as the
/// details. So the kind narrows, and the reply's error code decides: RESP
/// defines the first word of an error reply, up to a space or newline, as
/// its kind, and `WRONGTYPE` is the code Redis sends for this case. That is
/// Redis's protocol, not fred's message text.
fn is_wrong_type(error: &Error) -> bool {
    *error.kind() == ErrorKind::InvalidArgument
        && error.details().split([' ', '\r', '\n']).next() == Some("WRONGTYPE")
}

/// Why a reply holds no session.
#[derive(Debug, PartialEq, Eq)]
enum BadReply {
    /// The key holds bytes that are not UTF-8: the store answered, and
    /// what it holds is not a session (401).
    NotText(&'static str),
    /// Not a reply the command can give: the store misbehaves (503).
    Unexpected(&'static str),
}

/// An `HGETALL` reply as fred maps it (a field/value array under RESP2, a
/// map under RESP3), fields and values being bulk strings: fred's `String`
/// when they are UTF-8, `Bytes` when not. An error reply never gets here
/// (fred returns it as an error).
fn hash_fields(reply: Value) -> Result<Vec<(String, String)>, BadReply> {
    let Value::Map(map) = reply else {
        return Err(BadReply::Unexpected(
            "HGETALL replied with something other than a hash",
        ));
    };
    map.inner()
        .into_iter()
        .map(|(name, value)| {
            let name = name
                .into_string()
                .ok_or(BadReply::NotText("a session field name is not UTF-8"))?;
            let value = match value {
                // Not `to_string()`: on fred's `Str` that formats through
                // `Display`, ~200 instructions a field more than a copy.
                Value::String(text) => String::from(&*text),
                Value::Bytes(_) => return Err(BadReply::NotText("a session field is not UTF-8")),
                _ => return Err(BadReply::Unexpected("a hash field is not a string")),
            };
            Ok((name, value))
        })
        .collect()
}

/// A `GET` reply: nothing, or the document, which must be UTF-8 text.
fn json_text(reply: Value) -> Result<Option<String>, BadReply> {
    match reply {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(String::from(&*text))),
        Value::Bytes(_) => Err(BadReply::NotText("the session document is not UTF-8")),
        _ => Err(BadReply::Unexpected(
            "GET replied with something other than a string",
        )),
    }
}

/// A fred client for `store`, with what fred leaves unset made explicit
/// (see the module doc), and whether it talks to a cluster. `resp3`: for
/// client tracking's invalidation pushes. `replica_reads`: connect to the
/// replicas up front, so reads can be routed to them. Not connected yet:
/// see [`keep_connected`].
pub fn client(
    store: &StoreConfig,
    resp3: bool,
    replica_reads: bool,
) -> anyhow::Result<(Client, bool)> {
    let url = store
        .url
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("store.url is required for kind = \"redis\""))?;
    let fred_url =
        to_fred_url(url.expose()).map_err(|reason| anyhow::anyhow!("store.url: {reason}"))?;
    // fred's error would quote the URL, password included: keep only its kind.
    let mut config = Config::from_url(&fred_url)
        .map_err(|e| anyhow::anyhow!("store.url: not usable ({:?})", e.kind()))?;
    config.fail_fast = true;
    let clustered = config.server.is_clustered();
    if resp3 {
        config.version = fred::types::RespVersion::RESP3;
    }
    if config.tls.is_some() || store.ca_file.is_some() {
        let tls = crate::tls::client::client_config(store.ca_file.as_deref())?;
        config.tls = Some(tls.into());
    }
    let timeout = store.command_timeout;
    let client = Builder::from_config(config)
        .with_performance_config(|perf| {
            perf.default_command_timeout = timeout;
        })
        .with_connection_config(|conn| {
            conn.connection_timeout = timeout.max(Duration::from_secs(1));
            conn.internal_command_timeout = timeout.max(Duration::from_secs(1));
            // fred spends an attempt on each write, and following a
            // cluster redirection is a second write (after `ASKING`, or
            // after re-reading the slots on MOVED): with one attempt a
            // migrating slot's keys could never be read. The command
            // timeout bounds all attempts together, so a failure is
            // still a 503 within `command_timeout`, never a queue.
            conn.max_command_attempts = 3;
            if replica_reads && !clustered {
                // fred connects lazily only where a slot names the
                // primary (a cluster); elsewhere the replica connections
                // must exist before a read can be routed to them.
                conn.replica.lazy_connections = false;
            }
            conn.unresponsive = UnresponsiveConfig {
                max_timeout: Some(timeout.max(Duration::from_millis(500)) * 2),
                interval: Duration::from_millis(100),
            };
        })
        // Reconnect forever, 100 ms doubling to 2 s: recovery needs no restart.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()
        .map_err(|e| anyhow::anyhow!("store: cannot build the Redis client ({:?})", e.kind()))?;
    Ok((client, clustered))
}

/// Drives fred's connection task, and starts it again if it ends. fred ends
/// it when the first connection fails (Redis down when the proxy starts) and
/// on some errors later; every command of the client would fail from then
/// on, and the store must recover by itself. Restarts back off from 100 ms
/// to 2 s, like the reconnect policy, and are logged once per outage. Ends
/// once `client_of` says the client's owner is gone.
pub fn keep_connected(client_of: impl Fn() -> Option<Client> + Send + 'static) {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);
    tokio::spawn(async move {
        let mut pause = FIRST;
        loop {
            let Some(task) = client_of().map(|c| c.connect()) else {
                return;
            };
            let started = tokio::time::Instant::now();
            let ended = task.await;
            if client_of().is_none() {
                return;
            }
            // A task that ran a while had connected: a new outage.
            if started.elapsed() > MAX {
                pause = FIRST;
            }
            let reason = match &ended {
                Ok(Ok(())) => "closed".to_owned(),
                Ok(Err(error)) => format!("{:?}", error.kind()),
                Err(_) => "task failed".to_owned(),
            };
            if pause == FIRST {
                tracing::warn!(%reason, "Redis connection ended; connecting again until it answers");
            } else {
                tracing::debug!(%reason, "Redis connection attempt failed");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX);
        }
    });
}

/// `/readyz`: the store answers a ping, checked once a second.
fn spawn_pinger(store: std::sync::Weak<RedisStore>) {
    tokio::spawn(async move {
        loop {
            let Some(store) = store.upgrade() else { return };
            let ok = store.client.ping::<String>(None).await.is_ok();
            if store.ready.swap(ok, Ordering::Relaxed) != ok {
                if ok {
                    tracing::info!("session store reachable");
                } else {
                    tracing::warn!("session store unreachable");
                }
            }
            drop(store);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_urls_become_freds() {
        assert_eq!(
            to_fred_url("redis://:pw@127.0.0.1:6380/2").as_deref(),
            Ok("redis://:pw@127.0.0.1:6380/2")
        );
        assert_eq!(
            to_fred_url("redis-sentinel://h1:26379,h2:26380,h3:26381/mymaster").as_deref(),
            Ok(
                "redis-sentinel://h1:26379?node=h2:26380&node=h3:26381&sentinelServiceName=mymaster"
            )
        );
        assert_eq!(
            to_fred_url("redis-sentinel://:pw@h1:26379/mymaster/3").as_deref(),
            Ok("redis-sentinel://:pw@h1:26379/3?sentinelServiceName=mymaster")
        );
        assert_eq!(
            to_fred_url("redis-cluster://h1:7000,h2:7001,h3:7002").as_deref(),
            Ok("redis-cluster://h1:7000?node=h2:7001&node=h3:7002")
        );
        assert!(to_fred_url("redis-sentinel://h1:26379").is_err());
        assert!(to_fred_url("memcached://h").is_err());
    }

    fn reply(fields: &[(&str, Value)]) -> Value {
        let map: std::collections::HashMap<Key, Value> = fields
            .iter()
            .map(|(name, value)| (Key::from(*name), value.clone()))
            .collect();
        Value::Map(map.try_into().expect("a map of string keys"))
    }

    #[test]
    fn hgetall_replies_become_fields() {
        let mut fields = hash_fields(reply(&[
            ("user_id", Value::from("u1")),
            ("roles", Value::from("a,b")),
        ]))
        .expect("a hash of strings");
        fields.sort();
        assert_eq!(
            fields,
            vec![
                ("roles".into(), "a,b".into()),
                ("user_id".into(), "u1".into())
            ]
        );
        assert_eq!(hash_fields(reply(&[])), Ok(vec![]));
    }

    #[test]
    fn only_a_wrongtype_reply_is_a_key_of_another_type() {
        let wrong_type = Error::new(
            ErrorKind::InvalidArgument,
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        );
        assert!(is_wrong_type(&wrong_type));
        for other in [
            // fred's own argument errors share the kind.
            Error::new(ErrorKind::InvalidArgument, "Cannot convert to key."),
            Error::new(ErrorKind::InvalidArgument, "WRONGTYPEX is not a code"),
            // The code under another kind is not a reply fred parsed as one.
            Error::new(ErrorKind::Unknown, "WRONGTYPE Operation"),
            Error::new(ErrorKind::IO, "connection reset"),
            Error::new(ErrorKind::Timeout, "Request timed out."),
            Error::new(ErrorKind::Unknown, "ERR unknown command"),
        ] {
            assert!(!is_wrong_type(&other), "{other:?}");
        }
    }

    #[test]
    fn other_hgetall_replies_are_store_failures() {
        let not_utf8 = reply(&[(
            "user_id",
            Value::Bytes(bytes::Bytes::from_static(b"\xff\xfe")),
        )]);
        let nested = reply(&[("user_id", Value::Array(vec![]))]);
        let number = reply(&[("user_id", Value::Integer(1))]);
        let array = Value::Array(vec![Value::from("user_id"), Value::from("u1")]);
        for odd in [
            not_utf8.clone(),
            nested,
            number,
            array,
            Value::Null,
            Value::Integer(0),
        ] {
            assert!(
                hash_fields(odd.clone()).is_err(),
                "{odd:?} was taken for a session"
            );
        }
        // Which side: bytes the key holds are not a session (401); a reply
        // HGETALL cannot give is the store's failure (503).
        assert!(matches!(hash_fields(not_utf8), Err(BadReply::NotText(_))));
        assert!(matches!(
            hash_fields(Value::Integer(0)),
            Err(BadReply::Unexpected(_))
        ));
    }

    #[test]
    fn get_replies_are_a_document_nothing_or_not_a_session() {
        assert_eq!(json_text(Value::Null), Ok(None));
        assert_eq!(json_text(Value::from("{}")), Ok(Some("{}".to_owned())));
        assert!(matches!(
            json_text(Value::Bytes(bytes::Bytes::from_static(b"\xff"))),
            Err(BadReply::NotText(_))
        ));
        assert!(matches!(
            json_text(Value::Integer(1)),
            Err(BadReply::Unexpected(_))
        ));
    }
}
