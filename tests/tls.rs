//! HTTPS on the client listener: HTTP/2 and HTTP/1.1 chosen by ALPN, and
//! `X-Forwarded-Proto: https` upstream.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use common::{one_upstream, start_proxy, upstream};

struct Pki {
    dir: std::path::PathBuf,
    cert_der: rustls::pki_types::CertificateDer<'static>,
}

fn make_pki(name: &str) -> Pki {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("self-signed cert");
    let dir = std::env::temp_dir().join(format!("wristband-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("tls.crt"), certified.cert.pem()).expect("cert");
    std::fs::write(dir.join("tls.key"), certified.signing_key.serialize_pem()).expect("key");
    Pki {
        dir,
        cert_der: certified.cert.der().clone(),
    }
}

async fn connect(
    addr: std::net::SocketAddr,
    pki: &Pki,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.cert_der.clone()).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

fn tls_config(pki: &Pki, upstream: std::net::SocketAddr) -> String {
    format!(
        "[server]\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{}",
        pki.dir.join("tls.crt").display(),
        pki.dir.join("tls.key").display(),
        one_upstream(
            upstream,
            "[[routes]]\npath = \"/\"\nupstream = \"app\"\nauth = \"public\""
        )
    )
}

#[tokio::test]
async fn http2_over_tls_is_negotiated_by_alpn() {
    let pki = make_pki("h2");
    let up = upstream::echo().await;
    let px = start_proxy(&tls_config(&pki, up.addr)).await;
    let tls = connect(px.addr, &pki, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let request = http::Request::get("https://localhost/over/h2?x=1")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("echo");
    assert_eq!(seen["uri"], "/over/h2?x=1");
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(seen["headers"]["host"][0], "localhost");
}

#[tokio::test]
async fn http1_over_tls_still_works() {
    let pki = make_pki("h1");
    let up = upstream::echo().await;
    let px = start_proxy(&tls_config(&pki, up.addr)).await;
    let tls = connect(px.addr, &pki, b"http/1.1").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let request = http::Request::get("/over/h1")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("echo");
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");
}

/// SPEC §3 `[server.tls]`: "reloaded on SIGHUP". A renewed certificate at
/// the same paths is served to new connections after a reload.
#[tokio::test]
async fn a_reload_serves_the_renewed_certificate() {
    let old = make_pki("reload");
    let up = upstream::echo().await;
    let config = tls_config(&old, up.addr);
    let px = start_proxy(&config).await;
    let before = connect(px.addr, &old, b"http/1.1").await;
    let served = |tls: &tokio_rustls::client::TlsStream<TcpStream>| {
        tls.get_ref().1.peer_certificates().expect("certificate")[0].clone()
    };
    assert_eq!(served(&before), old.cert_der);

    // Renewal: new key and certificate written over the old files.
    let renewed =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("self-signed cert");
    std::fs::write(old.dir.join("tls.crt"), renewed.cert.pem()).expect("cert");
    std::fs::write(old.dir.join("tls.key"), renewed.signing_key.serialize_pem()).expect("key");
    let new = Pki {
        dir: old.dir.clone(),
        cert_der: renewed.cert.der().clone(),
    };
    px.reload(&config);
    let after = connect(px.addr, &new, b"http/1.1").await;
    assert_eq!(served(&after), new.cert_der);
    assert_ne!(served(&after), served(&before));
}

/// An `https://` upstream is verified against the web PKI roots: a
/// self-signed certificate fails the request (502) before anything is sent,
/// never a silent plaintext or unverified fallback.
#[tokio::test]
async fn an_https_upstream_with_an_untrusted_certificate_is_502_and_gets_nothing() {
    let pki = make_pki("untrusted-upstream");
    let up = upstream::echo().await;
    // A TLS-terminating wristband in front of the echo server plays the
    // HTTPS upstream.
    let tls_upstream = start_proxy(&tls_config(&pki, up.addr)).await;
    let front = start_proxy(&format!(
        "[log]\naccess_log = false\n\n[[upstreams]]\nname = \"app\"\ntargets = [\"https://{}\"]\n\n\
         [[routes]]\npath = \"/\"\nupstream = \"app\"\nauth = \"public\"\n",
        tls_upstream.addr
    ))
    .await;
    let reply = common::client::get(front.addr, "/x", &[]).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(
        up.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing may reach the upstream past an untrusted certificate"
    );
}
