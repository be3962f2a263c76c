//! What a reload carries over (SPEC §2 SIGHUP; issue 13, item 6).
//!
//! A reload builds a new gateway, but some of the old one's state was
//! earned and cannot simply be rebuilt: keys fetched from an identity
//! provider that may be down now (a new key set would have none: every JWT
//! route 503), a Redis connection and the sessions its tracking keeps exact,
//! a target found dead (a new upstream would think it healthy). Each of
//! those is kept when the new file leaves unchanged what it depends on, and
//! rebuilt otherwise; routes, identity headers and TLS are always rebuilt.
//! [`Reuse`] records which, for the reload's log line.

/// The stateful parts a reload kept and the ones it rebuilt, by name.
#[derive(Debug, Default)]
pub struct Reuse {
    kept: Vec<String>,
    rebuilt: Vec<String>,
}

impl Reuse {
    pub fn kept(&mut self, what: impl Into<String>) {
        self.kept.push(what.into());
    }

    pub fn rebuilt(&mut self, what: impl Into<String>) {
        self.rebuilt.push(what.into());
    }

    /// `kept` when `kept` is true, else `rebuilt`.
    pub fn record(&mut self, kept: bool, what: impl Into<String>) {
        if kept {
            self.kept(what);
        } else {
            self.rebuilt(what);
        }
    }

    /// What was kept, comma-separated (`-` for nothing).
    pub fn kept_list(&self) -> String {
        list(&self.kept)
    }

    /// What was rebuilt, comma-separated (`-` for nothing).
    pub fn rebuilt_list(&self) -> String {
        list(&self.rebuilt)
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}
