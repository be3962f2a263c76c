//! The floor of wristband's stack as a forward-auth service (SPEC §8), for
//! bench/run.sh (`hyper-floor-auth`): hyper's HTTP/1 server on the same
//! tokio runtime wristband uses, answering every request 200 with an
//! `X-Auth-User` header and no body. No routing, no question parsing, no
//! token, no identity headers, no metrics. What wristband's forward-auth
//! costs above this is wristband's; what this costs above an nginx that
//! answers an empty 200 is the stack's.
//!
//! `bare_auth LISTEN`. Like wristband, `TOKIO_WORKER_THREADS=1` gives a
//! single-threaded runtime.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let one_worker = std::env::var("TOKIO_WORKER_THREADS").is_ok_and(|v| v.trim() == "1");
    let runtime = if one_worker {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()?;
    runtime.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .ok_or("usage: bare_auth LISTEN")?
        .parse()?;
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                let mut response = Response::new(Empty::<Bytes>::new());
                response
                    .headers_mut()
                    .insert("x-auth-user", HeaderValue::from_static("bench-user"));
                Ok::<_, Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
