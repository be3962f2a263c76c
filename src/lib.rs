//! wristband: an auth-enforcing reverse proxy.
//!
//! The request pipeline of SPEC §1 reads top to bottom in
//! [`proxy::Proxy`]: [`routing`], [`auth`] (authenticate, then
//! [`auth::policy`]), [`proxy::headers`] and [`identity`] (strip, then
//! inject), [`proxy::upstream`] (forward). Every rejection is an
//! [`error::Rejection`], mapped to HTTP in one place.

pub mod assertion_key;
pub mod auth;
mod boxed;
pub mod cli;
pub mod client_tls;
pub mod config;
pub mod demo;
pub mod encoding;
pub mod error;
pub mod identity;
pub mod proxy;
pub mod reuse;
pub mod routing;
pub mod server;
pub mod telemetry;

pub use config::Config;
pub use server::{Running, run, start};

/// Installs aws-lc-rs as the process-wide rustls provider, for any code path
/// that asks rustls for "the default". Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
