//! wristband: an auth-enforcing reverse proxy.
//!
//! The request pipeline of SPEC §1 reads top to bottom in
//! [`proxy::Proxy`]: [`routing`], [`auth`] (authenticate, then
//! [`auth::policy`]), [`proxy::upstream_request`] with [`identity`] (strip,
//! then inject), [`upstream`] (forward). Every rejection is an
//! [`error::Rejection`], mapped to HTTP in one place. [`gateway`] holds what
//! one config version builds; [`server`] owns the listeners and reloads.
//!
//! Layers, each importing only those below it (`tests/modules.rs` checks
//! that no module imports one that imports it back): `server`, `demo` >
//! `proxy` > `gateway` > `error` > `auth`, `identity`, `upstream` >
//! `routing`, `tls`, `telemetry`, `reuse` > `config` > `headers`,
//! `encoding`, `boxed`.

pub mod assertion_key;
pub mod auth;
mod boxed;
pub mod cli;
pub mod client_body;
pub mod config;
pub mod demo;
pub mod encoding;
pub mod error;
pub mod gateway;
pub mod headers;
pub mod identity;
pub mod login;
pub mod proxy;
pub mod reuse;
pub mod routing;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use config::Config;
pub use server::{Running, Workers, run, run_with, start, start_with};

/// Installs aws-lc-rs as the process-wide rustls provider, for any code path
/// that asks rustls for "the default". Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
