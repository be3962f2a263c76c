//! TLS for the proxy's outgoing connections (https upstreams, JWKS and OIDC
//! discovery): rustls with aws-lc-rs, the system's CA store plus an optional
//! extra CA file.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The system's CA certificates, read once; empty (every https connection
/// fails, loudly) when the system has none.
fn native_roots() -> rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(cert);
            }
            store
        })
        .clone()
}

/// A client config trusting the system roots and every certificate in
/// `extra_ca` (PEM).
pub fn client_config(extra_ca: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = native_roots();
    if let Some(path) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read CA file {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("bad PEM in CA file {}", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!("no certificate in CA file {}", path.display());
        }
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("unusable CA certificate in {}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `http://` is only acceptable to loopback hosts (SPEC §3 `ca_file`).
pub fn is_acceptable_url(url: &http::Uri) -> bool {
    match url.scheme_str() {
        Some("https") => true,
        Some("http") => url.host().is_some_and(|host| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}
