//! HTTPS for the client listener: rustls with aws-lc-rs, ALPN `h2` then
//! `http/1.1`. The acceptor is part of the gateway, so a SIGHUP reload picks
//! up a renewed certificate for new connections.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

pub fn acceptor(config: &TlsConfig) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert)
        .with_context(|| format!("server.tls.cert: cannot read {}", config.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("server.tls.cert: bad PEM in {}", config.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "server.tls.cert: no certificate in {}",
            config.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&config.key).with_context(|| {
        format!(
            "server.tls.key: no usable private key in {}",
            config.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("server.tls: protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server.tls: certificate and key do not form a usable pair")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}
