//! The hook through which login (SPEC §7 "Refresh") re-validates a session
//! with the IdP. Sessions are verified here, in `auth`; the IdP exchange
//! lives in `login`, above it: login hands a [`Refresher`] down, so the one
//! session path also refreshes, cache hits included.

use std::future::Future;
use std::pin::Pin;

/// What a refresh concluded for the request that asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// The session stands: refreshed, not due after all, refreshed by
    /// someone else, or left as it was because the IdP could not be asked.
    Kept,
    /// The IdP refused the grant (`invalid_grant`): the session was ended.
    Ended,
}

pub trait Refresher: Send + Sync {
    /// Whether a session last refreshed at `refreshed` (unix seconds) is due.
    fn due(&self, refreshed: u64) -> bool;

    /// Refreshes session `id` of user `sub`, once across instances.
    fn refresh<'a>(
        &'a self,
        id: &'a str,
        sub: &'a str,
    ) -> Pin<Box<dyn Future<Output = Refreshed> + Send + 'a>>;
}
