//! The revocations every instance holds in memory (SPEC §9): what the JWT
//! check reads on every request, with no store round trip. It mirrors the
//! store's `revoked:` keys; an entry also leaves on its own once it can no
//! longer refuse anything (`until`), so the set stays bounded even while
//! the store is unreachable and sends no expiry.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The store key prefix of every revocation (SPEC §9).
pub const PREFIX: &str = "revoked:";
pub const JTI_PREFIX: &str = "revoked:jti:";
pub const SUB_PREFIX: &str = "revoked:sub:";

/// One revocation, as its store key and value say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `revoked:jti:<jti>` = the token's `exp`.
    Jti { jti: String, exp: u64 },
    /// `revoked:sub:<sub>` = tokens issued before this (unix seconds) are
    /// refused.
    Sub { sub: String, before: u64 },
}

/// A `revoked:` key and what it holds: `None` for a key of another form.
/// A value that is not a unix time still revokes (fail closed): a `jti`
/// for a day from when the key was read (each load reads it again), a
/// `sub` for every token issued until then.
pub fn parse(key: &str, value: &str, now: u64) -> Option<Entry> {
    const DAY: u64 = 24 * 3600;
    let number = value.trim().parse::<u64>().ok();
    if let Some(jti) = key.strip_prefix(JTI_PREFIX) {
        return Some(Entry::Jti {
            jti: jti.to_owned(),
            exp: number.unwrap_or(now.saturating_add(DAY)),
        });
    }
    let sub = key.strip_prefix(SUB_PREFIX)?;
    Some(Entry::Sub {
        sub: sub.to_owned(),
        before: number.unwrap_or(now.saturating_add(1)),
    })
}

/// The store key of an entry.
pub fn key(entry: &Entry) -> String {
    match entry {
        Entry::Jti { jti, .. } => format!("{JTI_PREFIX}{jti}"),
        Entry::Sub { sub, .. } => format!("{SUB_PREFIX}{sub}"),
    }
}

/// How long entries matter, from the config (SPEC §9 TTLs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Added to a token's `exp`: the longest provider `leeway`.
    pub leeway: u64,
    /// How long a `sub` revocation holds.
    pub sub_ttl: u64,
}

impl Lifetimes {
    /// When the entry can no longer refuse a token (unix seconds).
    pub fn until(&self, entry: &Entry) -> u64 {
        match entry {
            Entry::Jti { exp, .. } => exp.saturating_add(self.leeway),
            Entry::Sub { before, .. } => before.saturating_add(self.sub_ttl),
        }
    }
}

#[derive(Clone)]
struct Held {
    /// Read under the same lock as the entries: a reload may change them.
    lifetimes: Lifetimes,
    /// jti -> exp.
    jti: HashMap<String, u64>,
    /// sub -> before.
    sub: HashMap<String, u64>,
}

impl Held {
    fn new(lifetimes: Lifetimes) -> Self {
        Held {
            lifetimes,
            jti: HashMap::new(),
            sub: HashMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.jti.is_empty() && self.sub.is_empty()
    }

    fn jti_until(&self, exp: u64) -> u64 {
        exp.saturating_add(self.lifetimes.leeway)
    }

    fn sub_until(&self, before: u64) -> u64 {
        before.saturating_add(self.lifetimes.sub_ttl)
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the token's jti is revoked")]
    Jti,
    #[error("the token's sub is revoked for tokens issued before {before}")]
    IssuedBefore { before: u64 },
    #[error("the token's sub is revoked and the token has no iat")]
    NoIat,
}

pub struct RevokedList {
    held: RwLock<Held>,
    /// Nothing is held: the common case costs no lock.
    empty: AtomicBool,
    /// Loaded from the store at least once: before that, nothing is known
    /// to be not revoked.
    loaded: AtomicBool,
}

impl RevokedList {
    pub fn new(lifetimes: Lifetimes) -> Self {
        RevokedList {
            held: RwLock::new(Held::new(lifetimes)),
            empty: AtomicBool::new(true),
            loaded: AtomicBool::new(false),
        }
    }

    /// What `self` holds now, loaded as `self` is, with `lifetimes`: a set
    /// for a new watcher of the same store, so that the watcher being
    /// replaced can never write into it (one writer per set).
    pub fn copy_with(&self, lifetimes: Lifetimes) -> Self {
        let mut held = self.held.read().unwrap_or_else(|p| p.into_inner()).clone();
        held.lifetimes = lifetimes;
        RevokedList {
            empty: AtomicBool::new(held.is_empty()),
            loaded: AtomicBool::new(self.is_loaded()),
            held: RwLock::new(held),
        }
    }

    pub fn lifetimes(&self) -> Lifetimes {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .lifetimes
    }

    /// A reload changed how long entries matter; what they say stays.
    pub fn set_lifetimes(&self, lifetimes: Lifetimes) {
        self.write().lifetimes = lifetimes;
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Refuses a token whose `jti` is revoked, or whose `sub` has a
    /// "revoked before" later than its `iat` (or that has no `iat` then).
    /// Entries past their `until` refuse nothing, pruned or not.
    pub fn check(
        &self,
        jti: Option<&str>,
        sub: &str,
        iat: Option<u64>,
        now: u64,
    ) -> Result<(), Refusal> {
        if self.empty.load(Ordering::Acquire) {
            return Ok(());
        }
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        if let Some(jti) = jti
            && held
                .jti
                .get(jti)
                .is_some_and(|exp| held.jti_until(*exp) >= now)
        {
            return Err(Refusal::Jti);
        }
        if let Some(&before) = held.sub.get(sub)
            && held.sub_until(before) >= now
        {
            match iat {
                None => return Err(Refusal::NoIat),
                Some(iat) if before > iat => return Err(Refusal::IssuedBefore { before }),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Adds or replaces one entry; one already past its `until` is
    /// dropped instead.
    pub fn insert(&self, entry: Entry, now: u64) {
        let mut held = self.write();
        if held.lifetimes.until(&entry) < now {
            remove(&mut held, &entry);
        } else {
            match entry {
                Entry::Jti { jti, exp } => {
                    held.jti.insert(jti, exp);
                }
                Entry::Sub { sub, before } => {
                    held.sub.insert(sub, before);
                }
            }
        }
        self.settle(&held);
    }

    /// The store no longer holds `key` (deleted, expired).
    pub fn remove_key(&self, key: &str) {
        let mut held = self.write();
        if let Some(jti) = key.strip_prefix(JTI_PREFIX) {
            held.jti.remove(jti);
        } else if let Some(sub) = key.strip_prefix(SUB_PREFIX) {
            held.sub.remove(sub);
        }
        self.settle(&held);
    }

    /// Replaces everything with what a full load read, and marks the list
    /// loaded.
    pub fn replace(&self, entries: Vec<Entry>, now: u64) {
        let mut held = self.write();
        let mut fresh = Held::new(held.lifetimes);
        for entry in entries {
            if fresh.lifetimes.until(&entry) < now {
                continue;
            }
            match entry {
                Entry::Jti { jti, exp } => {
                    fresh.jti.insert(jti, exp);
                }
                Entry::Sub { sub, before } => {
                    fresh.sub.insert(sub, before);
                }
            }
        }
        *held = fresh;
        self.settle(&held);
        self.loaded.store(true, Ordering::Release);
    }

    /// Nothing to load (the memory store): loaded as it is.
    pub fn mark_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// Drops what can no longer refuse anything.
    pub fn prune(&self, now: u64) {
        let mut held = self.write();
        let Lifetimes { leeway, sub_ttl } = held.lifetimes;
        held.jti.retain(|_, exp| exp.saturating_add(leeway) >= now);
        held.sub
            .retain(|_, before| before.saturating_add(sub_ttl) >= now);
        self.settle(&held);
    }

    /// Entries held: (jti, sub).
    pub fn counts(&self) -> (usize, usize) {
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        (held.jti.len(), held.sub.len())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Held> {
        self.held.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Called with the write lock held, so a reader that sees `empty`
    /// false finds what made it so.
    fn settle(&self, held: &Held) {
        self.empty.store(held.is_empty(), Ordering::Release);
    }
}

fn remove(held: &mut Held, entry: &Entry) {
    match entry {
        Entry::Jti { jti, .. } => {
            held.jti.remove(jti);
        }
        Entry::Sub { sub, .. } => {
            held.sub.remove(sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIMES: Lifetimes = Lifetimes {
        leeway: 30,
        sub_ttl: 3600,
    };

    fn jti(jti: &str, exp: u64) -> Entry {
        Entry::Jti {
            jti: jti.into(),
            exp,
        }
    }

    #[test]
    fn a_revoked_jti_is_refused_until_exp_plus_leeway() {
        let list = RevokedList::new(LIFETIMES);
        list.insert(jti("a", 1000), 900);
        assert_eq!(
            list.check(Some("a"), "u", Some(900), 950),
            Err(Refusal::Jti)
        );
        assert_eq!(list.check(Some("b"), "u", Some(900), 950), Ok(()));
        assert_eq!(list.check(None, "u", Some(900), 950), Ok(()));
        assert_eq!(
            list.check(Some("a"), "u", Some(900), 1030),
            Err(Refusal::Jti)
        );
        assert_eq!(list.check(Some("a"), "u", Some(900), 1031), Ok(()));
    }

    #[test]
    fn a_revoked_sub_refuses_tokens_issued_before_and_tokens_without_iat() {
        let list = RevokedList::new(LIFETIMES);
        let sub = Entry::Sub {
            sub: "u".into(),
            before: 1000,
        };
        list.insert(sub, 1000);
        assert_eq!(
            list.check(None, "u", Some(999), 1000),
            Err(Refusal::IssuedBefore { before: 1000 })
        );
        assert_eq!(list.check(None, "u", Some(1000), 1000), Ok(()));
        assert_eq!(list.check(None, "u", None, 1000), Err(Refusal::NoIat));
        assert_eq!(list.check(None, "v", None, 1000), Ok(()));
        // Past the sub TTL the cut-off is gone.
        assert_eq!(list.check(None, "u", Some(1), 4601), Ok(()));
    }

    /// A reload's new watcher starts from a copy: what the old set knew,
    /// loaded; what the old watcher writes later stays out of it.
    #[test]
    fn a_copy_holds_what_was_known_and_nothing_written_after() {
        let old = RevokedList::new(LIFETIMES);
        old.insert(jti("a", 1000), 900);
        let unloaded = old.copy_with(LIFETIMES);
        assert!(!unloaded.is_loaded(), "not loaded stays not loaded");
        old.mark_loaded();
        let copy = old.copy_with(LIFETIMES);
        assert!(copy.is_loaded());
        assert_eq!(
            copy.check(Some("a"), "u", Some(900), 950),
            Err(Refusal::Jti)
        );
        old.replace(Vec::new(), 950);
        old.insert(jti("b", 1000), 950);
        assert_eq!(
            copy.check(Some("a"), "u", Some(900), 950),
            Err(Refusal::Jti)
        );
        assert_eq!(copy.check(Some("b"), "u", Some(900), 950), Ok(()));
        assert_eq!(copy.counts(), (1, 0));
    }

    #[test]
    fn expired_entries_leave_and_are_never_added() {
        let list = RevokedList::new(LIFETIMES);
        for i in 0..100 {
            list.insert(jti(&format!("t{i}"), 1000 + i), 900);
        }
        list.insert(jti("old", 10), 900);
        assert_eq!(list.counts(), (100, 0));
        list.prune(1050);
        assert_eq!(list.counts(), (80, 0));
        list.prune(2000);
        assert_eq!(list.counts(), (0, 0));
        list.replace(vec![jti("x", 10), jti("y", 5000)], 2000);
        assert_eq!(list.counts(), (1, 0));
    }

    #[test]
    fn keys_parse_and_odd_values_still_revoke() {
        assert_eq!(parse("revoked:jti:a:b", "12", 0), Some(jti("a:b", 12)));
        assert_eq!(parse("revoked:jti:a", "x", 5), Some(jti("a", 86_405)));
        assert_eq!(
            parse("revoked:sub:u", "nope", 50),
            Some(Entry::Sub {
                sub: "u".into(),
                before: 51
            })
        );
        assert_eq!(parse("revoked:other", "1", 0), None);
        assert_eq!(key(&jti("a", 1)), "revoked:jti:a");
    }

    #[test]
    fn removing_a_key_unrevokes() {
        let list = RevokedList::new(LIFETIMES);
        list.insert(jti("a", 1000), 900);
        list.remove_key("revoked:jti:a");
        assert_eq!(list.check(Some("a"), "u", Some(1), 950), Ok(()));
        assert!(list.empty.load(Ordering::Acquire));
    }
}
