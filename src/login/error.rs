//! Why a login endpoint refused (SPEC §4 `login_failed`, §7). The reason
//! goes to the log; the answer carries only the fixed code.

use crate::auth::jwt::{Invalid, KeysUnavailable};
use crate::auth::session::StoreError;

use super::idp::IdpError;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// 403 `login_failed`: the callback is refused, nothing was written.
    #[error("login failed")]
    Failed(#[source] Failure),
    /// 403 `forbidden`: a logout POST from another site.
    #[error("logout from another site")]
    CrossSiteLogout,
    /// 405: the endpoint does not take this method.
    #[error("method not allowed")]
    Method(&'static str),
    /// 503 `unavailable`: the store or the IdP could not be asked.
    #[error("unavailable")]
    Unavailable(#[from] Unavailable),
}

/// Why a callback is refused.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("no state parameter")]
    NoState,
    #[error("no code parameter")]
    NoCode,
    #[error("the binding cookie is missing")]
    NoBindingCookie,
    #[error("the state is unknown, expired or already used")]
    UnknownState,
    #[error("the state was started by another browser (binding cookie differs)")]
    OtherBrowser,
    #[error("the IdP answered error={0:?}")]
    IdpError(String),
    #[error("the token endpoint refused the code: {0}")]
    TokenRefused(String),
    #[error("the token endpoint gave no id_token")]
    NoIdToken,
    #[error("id_token: {0}")]
    IdToken(#[source] Invalid),
    #[error("id_token: nonce does not match the one sent")]
    Nonce,
    #[error("id_token: several audiences and azp is not the client_id")]
    Azp,
    #[error("userinfo: sub differs from the id_token's")]
    UserinfoSub,
    #[error("the stored login state is unreadable")]
    BadState,
}

#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("session store")]
    Store(#[from] StoreError),
    #[error("identity provider")]
    Idp(#[from] IdpError),
    #[error("identity provider keys")]
    Keys(#[from] KeysUnavailable),
    #[error("revocations not loaded yet")]
    Revocations,
    #[error("random number generator")]
    Random,
    #[error("sealing a token")]
    Seal,
    #[error("a response header could not be built")]
    Header,
}

impl From<StoreError> for LoginError {
    fn from(error: StoreError) -> Self {
        LoginError::Unavailable(error.into())
    }
}

impl From<IdpError> for LoginError {
    fn from(error: IdpError) -> Self {
        LoginError::Unavailable(error.into())
    }
}

impl From<Failure> for LoginError {
    fn from(failure: Failure) -> Self {
        LoginError::Failed(failure)
    }
}
