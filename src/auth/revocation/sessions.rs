//! A user's login sessions, through the per-user index the login flow
//! writes (SPEC §7): `[sessions].key_prefix` + `user:` + the lower-case hex
//! SHA-256 of `sub`, a Redis set of session ids, each session a hash at
//! `key_prefix` + id whose internal `_wb_created` field is when it began.
//!
//! Ending them (SPEC §9) deletes each session key, then the index: once a
//! key is gone every instance refuses it (guarantee 5). The ids are bearer
//! secrets: only their first characters ever leave this module.

use fred::prelude::*;

use crate::auth::session::CREATED_FIELD;
/// How much of an id a listing shows: enough to tell sessions apart.
const SHOWN_ID_CHARS: usize = 4;

pub use crate::auth::session::store::index_key;

/// One live session, as `wristband sessions` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSession {
    /// The first characters of the id, then `…`.
    pub id_hint: String,
    /// `_wb_created` (unix seconds), when the session has one.
    pub created: Option<u64>,
    /// Seconds left; `None`: no expiry.
    pub expires_in: Option<u64>,
}

/// The live sessions in `sub`'s index; ids the index still names but the
/// store no longer holds (expired) are left out.
pub async fn list(client: &Client, key_prefix: &str, sub: &str) -> Result<Vec<UserSession>, Error> {
    let ids: Vec<String> = client.smembers(index_key(key_prefix, sub)).await?;
    let mut sessions = Vec::with_capacity(ids.len());
    for id in ids {
        let key = format!("{key_prefix}{id}");
        let ttl: i64 = client.ttl(&key).await?;
        // -2: no such key.
        if ttl == -2 {
            continue;
        }
        let created: Option<String> = match client.hget(&key, CREATED_FIELD).await {
            Ok(created) => created,
            // Not a hash: not a login session, though the index names it.
            Err(error) if *error.kind() == ErrorKind::InvalidArgument => None,
            Err(error) => return Err(error),
        };
        sessions.push(UserSession {
            id_hint: hint(&id),
            created: created.and_then(|c| c.trim().parse().ok()),
            expires_in: u64::try_from(ttl).ok(),
        });
    }
    sessions.sort_by_key(|s| s.created);
    Ok(sessions)
}

/// Deletes every session in `sub`'s index, then the index; the number of
/// sessions that were still there.
pub async fn end_all(client: &Client, key_prefix: &str, sub: &str) -> Result<usize, Error> {
    let index = index_key(key_prefix, sub);
    let ids: Vec<String> = client.smembers(&index).await?;
    let mut ended = 0;
    // One key per command: in a cluster the sessions live in other slots.
    for id in &ids {
        let deleted: i64 = client.del(format!("{key_prefix}{id}")).await?;
        ended += usize::try_from(deleted).unwrap_or(0);
    }
    client.del::<(), _>(&index).await?;
    Ok(ended)
}

fn hint(id: &str) -> String {
    let shown: String = id.chars().take(SHOWN_ID_CHARS).collect();
    format!("{shown}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_key_is_the_prefix_user_and_the_hex_sha256_of_sub() {
        // printf %s alice | sha256sum
        assert_eq!(
            index_key("sessions:", "alice"),
            "sessions:user:2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"
        );
    }

    #[test]
    fn a_listing_never_shows_a_whole_id() {
        assert_eq!(hint("abcdefgh"), "abcd…");
        assert_eq!(hint("ab"), "ab…");
    }
}
