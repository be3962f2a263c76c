//! What a revocation does, wherever it is asked for (SPEC §9): the admin
//! `POST /revoke` (through [`super::Revocations::revoke`]) and the
//! `wristband revoke` / `wristband sessions` commands, which talk to the
//! configured store directly.

use std::time::Duration;

use anyhow::{Context as _, bail};
use fred::prelude::*;

use super::list::{self, Entry, Lifetimes};
use super::sessions;
use crate::auth::session::{StoreError, redis_client};
use crate::config::{Config, StoreKind};

/// The longest `jti` or `sub` accepted: a store key, not a document.
const MAX_ID_BYTES: usize = 1024;

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    /// One token, until its `exp`.
    Jti { jti: String, exp: u64 },
    /// Every token of `sub` issued before now, and its login sessions.
    Sub { sub: String },
}

impl Revoke {
    /// `{"jti": "...", "exp": 123}` or `{"sub": "..."}`, nothing else.
    pub fn from_json(body: &[u8]) -> Result<Revoke, &'static str> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            jti: Option<String>,
            exp: Option<u64>,
            sub: Option<String>,
        }
        let body: Body = serde_json::from_slice(body)
            .map_err(|_| "expected {\"jti\": ..., \"exp\": ...} or {\"sub\": ...}")?;
        let revoke = match body {
            Body {
                jti: Some(jti),
                exp: Some(exp),
                sub: None,
            } => Revoke::Jti { jti, exp },
            Body {
                jti: None,
                exp: None,
                sub: Some(sub),
            } => Revoke::Sub { sub },
            Body { jti: Some(_), .. } => return Err("jti needs exp, and nothing else"),
            _ => return Err("expected {\"jti\": ..., \"exp\": ...} or {\"sub\": ...}"),
        };
        revoke.checked()
    }

    /// A non-empty id of bounded size, without control characters (it
    /// becomes part of a store key and of log lines).
    pub fn checked(self) -> Result<Revoke, &'static str> {
        let id = match &self {
            Revoke::Jti { jti, .. } => jti,
            Revoke::Sub { sub } => sub,
        };
        if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
            return Err("the id must be 1 to 1024 bytes without control characters");
        }
        Ok(self)
    }
}

/// What was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub entry: Entry,
    /// How long the store keeps it; `None`: the token has expired already,
    /// so there was nothing to write.
    pub ttl: Option<Duration>,
    /// Login sessions ended (`sub` only, with `[sessions]`).
    pub sessions_ended: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// Nothing was written.
    #[error("the revocation could not be written")]
    Store(#[source] StoreError),
    /// The `sub` revocation was written; the sessions could not all be ended.
    #[error("the revocation was written; the login sessions could not all be ended (run it again)")]
    Sessions {
        entry: Entry,
        #[source]
        error: StoreError,
    },
}

/// The entry and its TTL, without writing anything.
pub fn plan(what: Revoke, lifetimes: Lifetimes, now: u64) -> Revoked {
    let entry = match what {
        Revoke::Jti { jti, exp } => Entry::Jti { jti, exp },
        Revoke::Sub { sub } => Entry::Sub { sub, before: now },
    };
    let until = lifetimes.until(&entry);
    Revoked {
        ttl: (until > now).then(|| Duration::from_secs(until - now)),
        entry,
        sessions_ended: None,
    }
}

/// Writes the revocation to Redis (`SET key value EX ttl`), then, for a
/// `sub`, ends its login sessions.
pub async fn revoke(
    client: &Client,
    what: Revoke,
    lifetimes: Lifetimes,
    sessions_prefix: Option<&str>,
    now: u64,
) -> Result<Revoked, RevokeError> {
    let mut done = plan(what, lifetimes, now);
    let Some(ttl) = done.ttl else {
        return Ok(done);
    };
    let value = match &done.entry {
        Entry::Jti { exp, .. } => *exp,
        Entry::Sub { before, .. } => *before,
    };
    let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    client
        .set::<(), _, _>(
            list::key(&done.entry),
            value.to_string(),
            Some(Expiration::EX(seconds)),
            None,
            false,
        )
        .await
        .map_err(|e| RevokeError::Store(store_error(&e)))?;
    if let (Entry::Sub { sub, .. }, Some(prefix)) = (&done.entry, sessions_prefix) {
        match sessions::end_all(client, prefix, sub).await {
            Ok(ended) => done.sessions_ended = Some(ended),
            Err(error) => {
                return Err(RevokeError::Sessions {
                    entry: done.entry,
                    error: store_error(&error),
                });
            }
        }
    }
    Ok(done)
}

/// Only the kind: a fred error may quote the command, and so a key.
fn store_error(error: &Error) -> StoreError {
    StoreError::Redis(error.kind().clone())
}

/// `wristband revoke`: the line to print on success.
pub async fn revoke_command(config: &Config, what: Revoke) -> anyhow::Result<String> {
    let what = what.checked().map_err(anyhow::Error::msg)?;
    let client = connect(config, "revoke").await?;
    let result = revoke(
        &client,
        what,
        super::lifetimes(config),
        config.sessions.as_ref().map(|s| s.key_prefix.as_str()),
        super::unix_now(),
    )
    .await;
    let _ = client.quit().await;
    let done = result.context("store")?;
    Ok(describe(&done))
}

/// One line saying what a revocation did.
pub fn describe(done: &Revoked) -> String {
    let what = match &done.entry {
        Entry::Jti { jti, .. } => format!("jti {jti:?}"),
        Entry::Sub { sub, before } => {
            format!("tokens of sub {sub:?} issued before {}", rfc3339(*before))
        }
    };
    let Some(ttl) = done.ttl else {
        return format!("{what}: already expired, nothing to revoke");
    };
    let sessions = match done.sessions_ended {
        Some(n) => format!("; {n} login session(s) ended"),
        None => String::new(),
    };
    format!(
        "revoked {what} (kept {}){sessions}",
        humantime::format_duration(ttl)
    )
}

/// `wristband sessions`: one line per live session.
pub async fn sessions_command(config: &Config, sub: &str) -> anyhow::Result<String> {
    let Some(sessions_config) = &config.sessions else {
        bail!("no [sessions] table: there are no login sessions to list");
    };
    let client = connect(config, "sessions").await?;
    let listed = sessions::list(&client, &sessions_config.key_prefix, sub).await;
    let _ = client.quit().await;
    let listed = listed.map_err(|e| store_error(&e)).context("store")?;
    let now = super::unix_now();
    let mut out = format!("{} login session(s) of sub {sub:?}\n", listed.len());
    for session in listed {
        let created = session
            .created
            .map_or_else(|| "unknown".to_owned(), rfc3339);
        let expires = session
            .expires_in
            .map_or_else(|| "never".to_owned(), |s| rfc3339(now.saturating_add(s)));
        out.push_str(&format!(
            "{}  created {created}  expires {expires}\n",
            session.id_hint
        ));
    }
    Ok(out.trim_end().to_owned())
}

/// A connected client for a command; the reasons a command cannot run at
/// all, said plainly.
async fn connect(config: &Config, command: &str) -> anyhow::Result<Client> {
    if config.revocation.is_none() && command == "revoke" {
        bail!(
            "{}: no [revocation] table: no instance would enforce the revocation",
            config.source.display()
        );
    }
    if config.store.kind == StoreKind::Memory {
        bail!(
            "{}: store.kind = \"memory\" lives inside the running proxy; use its admin POST /revoke, or a redis store",
            config.source.display()
        );
    }
    let (client, _) = redis_client(&config.store, false, false)?;
    let limit = config.store.command_timeout.max(Duration::from_secs(5));
    match tokio::time::timeout(limit, client.init()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(error)) => bail!("store: cannot connect ({:?})", error.kind()),
        Err(_) => {
            let _ = client.quit().await;
            bail!(
                "store: no connection within {}",
                humantime::format_duration(limit)
            )
        }
    }
}

fn rfc3339(unix: u64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIMES: Lifetimes = Lifetimes {
        leeway: 30,
        sub_ttl: 3600,
    };

    #[test]
    fn the_admin_body_is_a_jti_with_exp_or_a_sub() {
        assert_eq!(
            Revoke::from_json(br#"{"jti":"a","exp":5}"#),
            Ok(Revoke::Jti {
                jti: "a".into(),
                exp: 5
            })
        );
        assert_eq!(
            Revoke::from_json(br#"{"sub":"u"}"#),
            Ok(Revoke::Sub { sub: "u".into() })
        );
        for bad in [
            &br#"{"jti":"a"}"#[..],
            br#"{"jti":"a","exp":5,"sub":"u"}"#,
            br#"{"sub":"u","exp":5}"#,
            br#"{"sub":""}"#,
            br#"{"sub":"a\nb"}"#,
            br#"{"jti":"a","exp":-1}"#,
            br#"{"other":1}"#,
            b"not json",
        ] {
            assert!(
                Revoke::from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn ttls_follow_exp_plus_leeway_and_the_sub_ttl() {
        let jti = plan(
            Revoke::Jti {
                jti: "a".into(),
                exp: 1100,
            },
            LIFETIMES,
            1000,
        );
        assert_eq!(jti.ttl, Some(Duration::from_secs(130)));
        let expired = plan(
            Revoke::Jti {
                jti: "a".into(),
                exp: 900,
            },
            LIFETIMES,
            1000,
        );
        assert_eq!(expired.ttl, None);
        let sub = plan(Revoke::Sub { sub: "u".into() }, LIFETIMES, 1000);
        assert_eq!(
            sub.entry,
            Entry::Sub {
                sub: "u".into(),
                before: 1000
            }
        );
        assert_eq!(sub.ttl, Some(Duration::from_secs(3600)));
    }
}
