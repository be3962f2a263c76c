//! The admin listener (SPEC §6): `/healthz`, `/readyz`, `/metrics`, the
//! proxy's JWKS, and `POST /revoke` behind `admin.token` (SPEC §9,
//! [`super::revoke`]). Kept off the client listener so that probes and
//! scrapes never compete with, or get routed like, client traffic.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::Proxy;

/// What `/readyz` waits for.
#[derive(Debug, Default)]
pub struct Readiness {
    pub listeners_bound: AtomicBool,
}

impl Readiness {
    /// The names of what is not ready yet; empty when ready.
    pub fn missing(&self, proxy: &Proxy) -> Vec<String> {
        let mut missing = Vec::new();
        if !self.listeners_bound.load(Ordering::Relaxed) {
            missing.push("listeners".to_owned());
        }
        missing.extend(proxy.gateway.load().auth.not_ready());
        missing
    }
}

pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    readiness: Arc<Readiness>,
    mut drain: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = drain.changed() => return,
        };
        let proxy = proxy.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let proxy = proxy.clone();
                let readiness = readiness.clone();
                async move {
                    if req.uri().path() == "/revoke" {
                        let gateway = proxy.gateway.load_full();
                        if let Some(response) = super::revoke::answer(req, &gateway).await {
                            return Ok::<_, Infallible>(response);
                        }
                        return Ok(not_found());
                    }
                    Ok(answer(&req, &proxy, &readiness))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, proxy: &Proxy, readiness: &Readiness) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => text(
            StatusCode::OK,
            "application/json",
            r#"{"status":"ok"}"#.into(),
        ),
        "/readyz" => {
            let missing = readiness.missing(proxy);
            if missing.is_empty() {
                text(
                    StatusCode::OK,
                    "application/json",
                    r#"{"ready":true}"#.into(),
                )
            } else {
                let body = serde_json::json!({ "ready": false, "missing": missing });
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    body.to_string(),
                )
            }
        }
        "/metrics" => {
            proxy.gateway.load().auth.export_gauges();
            text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                proxy.metrics.encode(),
            )
        }
        crate::gateway::JWKS_PATH => {
            let mut response = Response::new(Full::new(proxy.gateway.load().jwks()));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        _ => not_found(),
    }
}

fn not_found() -> Response<Full<Bytes>> {
    text(
        StatusCode::NOT_FOUND,
        "application/json",
        r#"{"error":"not_found"}"#.into(),
    )
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
