//! What login (SPEC §7) writes to the session store, on either backend:
//! sessions it creates, the per-user index, single-use login states and
//! refresh locks. Sessions are read only by [`super::SessionAuth::verify`]:
//! one path validates every session, whoever wrote it.
//!
//! Redis keys: `key_prefix` + id (a hash, with its TTL), `key_prefix` +
//! `user:` + hex SHA-256(sub) (a set of ids, with the newest session's
//! TTL), and whatever the caller names for states and locks.

use std::time::Duration;

use fred::prelude::*;
use fred::types::{Expiration, SetOptions};

use super::memory::Other;
use super::redis::StoreError;
use super::{Store, Stored};
use crate::boxed::boxed;

/// The Redis key of a user's index (SPEC §7): `key_prefix` + `user:` +
/// hex SHA-256(sub), so a `sub` of any shape makes a tame key. Login adds
/// to it; revocation (SPEC §9) ends what it names.
pub fn index_key(key_prefix: &str, sub: &str) -> String {
    [key_prefix, "user:", &crate::encoding::sha256_hex(sub)].concat()
}

/// The store of one `[sessions]`, for writing. Cheap to clone.
#[derive(Clone)]
pub struct SessionStore {
    pub(super) store: Store,
    pub(super) key_prefix: String,
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl SessionStore {
    /// The Redis key of a session.
    pub fn session_key(&self, id: &str) -> String {
        [self.key_prefix.as_str(), id].concat()
    }

    pub fn index_key(&self, sub: &str) -> String {
        index_key(&self.key_prefix, sub)
    }

    /// `SET key value PX ttl`.
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        match &self.store {
            Store::Memory(memory) => {
                memory.put(key, Other::Text(value.to_owned()), ttl, false);
                Ok(())
            }
            Store::Redis(redis) => {
                boxed(|| async {
                    redis
                        .client
                        .set::<(), _, _>(key, value, Some(Expiration::PX(millis(ttl))), None, false)
                        .await
                        .map_err(|e| redis.failed(e))
                })
                .await
            }
        }
    }

    /// `GETDEL`: the value, which no one else can then take.
    pub async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        match &self.store {
            Store::Memory(memory) => Ok(match memory.take(key) {
                Some(Other::Text(text)) => Some(text),
                _ => None,
            }),
            Store::Redis(redis) => {
                boxed(|| async {
                    redis
                        .client
                        .getdel::<Option<String>, _>(key)
                        .await
                        .map_err(|e| redis.failed(e))
                })
                .await
            }
        }
    }

    /// `SET key 1 NX PX ttl`: whether this caller holds the lock now.
    pub async fn lock(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        match &self.store {
            Store::Memory(memory) => Ok(memory.put(key, Other::Text("1".into()), ttl, true)),
            Store::Redis(redis) => {
                boxed(|| async {
                    let reply: Option<String> = redis
                        .client
                        .set(
                            key,
                            "1",
                            Some(Expiration::PX(millis(ttl))),
                            Some(SetOptions::NX),
                            false,
                        )
                        .await
                        .map_err(|e| redis.failed(e))?;
                    Ok(reply.is_some())
                })
                .await
            }
        }
    }

    /// `DEL` of a state or lock key.
    pub async fn remove(&self, key: &str) -> Result<(), StoreError> {
        match &self.store {
            Store::Memory(memory) => {
                memory.remove_other(key);
                Ok(())
            }
            Store::Redis(redis) => {
                boxed(|| async {
                    redis
                        .client
                        .del::<(), _>(key)
                        .await
                        .map_err(|e| redis.failed(e))
                })
                .await
            }
        }
    }

    /// Writes a new session (hash and TTL in one transaction, so no session
    /// ever lives without its TTL), then adds it to its user's index.
    pub async fn create(
        &self,
        id: &str,
        sub: &str,
        fields: Vec<(String, String)>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.session_key(id);
        let index = self.index_key(sub);
        match &self.store {
            Store::Memory(memory) => {
                memory.insert(key, Stored::Hash(fields), Some(ttl));
                memory.add_to_set(&index, id, ttl);
                Ok(())
            }
            Store::Redis(redis) => {
                boxed(|| async {
                    let failed = |e| redis.failed(e);
                    let trx = redis.client.multi();
                    trx.hset::<(), _, _>(key.as_str(), fields)
                        .await
                        .map_err(failed)?;
                    trx.pexpire::<(), _>(key.as_str(), millis(ttl), None)
                        .await
                        .map_err(failed)?;
                    trx.exec::<()>(true).await.map_err(failed)?;
                    // Another slot in a cluster: not in the transaction. Every
                    // session lives as long as the last one written, so the
                    // index outlives none of them.
                    let trx = redis.client.multi();
                    trx.sadd::<(), _, _>(index.as_str(), id)
                        .await
                        .map_err(failed)?;
                    trx.pexpire::<(), _>(index.as_str(), millis(ttl), None)
                        .await
                        .map_err(failed)?;
                    trx.exec::<()>(true).await.map_err(failed)
                })
                .await
            }
        }
    }

    /// The session's fields as stored now (`None`: gone).
    pub async fn fields(&self, id: &str) -> Result<Option<Vec<(String, String)>>, StoreError> {
        let key = self.session_key(id);
        match &self.store {
            Store::Memory(memory) => Ok(match memory.get(&key) {
                Some(Stored::Hash(fields)) => Some(fields),
                _ => None,
            }),
            Store::Redis(redis) => {
                boxed(|| async {
                    let fields: std::collections::HashMap<String, String> = redis
                        .client
                        .hgetall(key.as_str())
                        .await
                        .map_err(|e| redis.failed(e))?;
                    Ok((!fields.is_empty()).then(|| fields.into_iter().collect()))
                })
                .await
            }
        }
    }

    /// Replaces some fields of a session that still exists, keeping its
    /// TTL (a refresh never extends a session); `false` when it is gone.
    pub async fn update(
        &self,
        id: &str,
        fields: Vec<(String, String)>,
    ) -> Result<bool, StoreError> {
        let key = self.session_key(id);
        match &self.store {
            Store::Memory(memory) => Ok(memory.update_hash(&key, &fields)),
            Store::Redis(redis) => {
                boxed(|| async {
                    // HSET on a deleted key would bring it back without a TTL:
                    // only while it exists, in one step.
                    const UPDATE: &str = "if redis.call('EXISTS', KEYS[1]) == 1 then \
                     redis.call('HSET', KEYS[1], unpack(ARGV)) return 1 end return 0";
                    let args: Vec<String> = fields.into_iter().flat_map(|(k, v)| [k, v]).collect();
                    let existed: i64 = redis
                        .client
                        .eval(UPDATE, vec![key.as_str()], args)
                        .await
                        .map_err(|e| redis.failed(e))?;
                    Ok(existed == 1)
                })
                .await
            }
        }
    }

    /// Ends a session: deletes it and takes it out of its user's index.
    pub async fn end(&self, id: &str, sub: &str) -> Result<(), StoreError> {
        let key = self.session_key(id);
        let index = self.index_key(sub);
        match &self.store {
            Store::Memory(memory) => {
                memory.remove(&key);
                memory.remove_from_set(&index, id);
                Ok(())
            }
            Store::Redis(redis) => {
                boxed(|| async {
                    let failed = |e| redis.failed(e);
                    redis
                        .client
                        .del::<(), _>(key.as_str())
                        .await
                        .map_err(failed)?;
                    redis
                        .client
                        .srem::<(), _, _>(index.as_str(), id)
                        .await
                        .map_err(failed)
                })
                .await
            }
        }
    }
}
