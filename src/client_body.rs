//! The body a client sends, as the pipeline gets it and hands it to the
//! upstream: hyper's, plus a word to whoever needs to know once it has been
//! read to its end or dropped. The connection's clocks do (`server::idle`):
//! until then, bytes arriving are the body's, not the next request's head.
//!
//! An HTTP/1 body dropped before its end (a refusal, or an upstream that
//! stopped reading) is read on and thrown away for a while instead
//! ([`LINGER_BYTES`], [`LINGER_TIME`]), as nginx's lingering close does:
//! hyper would otherwise close the connection with the client still
//! sending, the kernel would answer its next bytes with a reset, and a
//! reset discards the answer (a 401, say) before the client has read it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// The most of a dropped HTTP/1 body read and thrown away.
pub const LINGER_BYTES: u64 = 4 * 1024 * 1024;
/// The longest a dropped HTTP/1 body is read on.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// Told once that a request body is over.
pub trait Ended: Send + Sync {
    fn ended(&self);
}

#[derive(Debug)]
pub struct ClientBody {
    /// `None` only once `drop` has taken it to linger.
    body: Option<Incoming>,
    /// `Some` until the body ends or is dropped.
    watcher: Option<Arc<dyn Ended>>,
    /// HTTP/1: a body dropped before its end is read on for a while.
    linger: bool,
    /// Read to its end (a chunked body may not say so afterwards).
    done: bool,
}

impl std::fmt::Debug for dyn Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ended")
    }
}

impl ClientBody {
    /// `linger`: the body comes over HTTP/1 and its client did not ask
    /// `Expect: 100-continue` (reading on would make hyper tell it to
    /// send a body the refusal has no use for).
    pub fn new(body: Incoming, watcher: Option<Arc<dyn Ended>>, linger: bool) -> Self {
        ClientBody {
            body: Some(body),
            watcher,
            linger,
            done: false,
        }
    }

    fn ended(&mut self) {
        self.done = true;
        if let Some(watcher) = self.watcher.take() {
            watcher.ended();
        }
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        let unread = self
            .body
            .take()
            .filter(|body| !self.done && !body.is_end_stream());
        if let (Some(body), true) = (unread, self.linger)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Still the body's bytes, not a next head, until it is over.
            let watcher = self.watcher.take();
            runtime.spawn(async move {
                throw_away(body).await;
                if let Some(watcher) = watcher {
                    watcher.ended();
                }
            });
            return;
        }
        self.ended();
    }
}

/// Reads `body` to its end, or until [`LINGER_BYTES`] or [`LINGER_TIME`]
/// (then it is dropped, and hyper closes the connection).
async fn throw_away(mut body: Incoming) {
    let reading = async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                read += data.len() as u64;
                if read > LINGER_BYTES {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, reading).await;
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *body).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            self.ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
