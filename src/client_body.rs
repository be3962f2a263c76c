//! The body a client sends, as the pipeline gets it and hands it to the
//! upstream: hyper's, plus a word to whoever needs to know once it has been
//! read to its end or dropped. The connection's clocks do (`server::idle`):
//! until then, bytes arriving are the body's, not the next request's head.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Told once that a request body is over.
pub trait Ended: Send + Sync {
    fn ended(&self);
}

#[derive(Debug)]
pub struct ClientBody {
    body: Incoming,
    /// `Some` until the body ends or is dropped.
    watcher: Option<Arc<dyn Ended>>,
}

impl std::fmt::Debug for dyn Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ended")
    }
}

impl ClientBody {
    pub fn new(body: Incoming, watcher: Option<Arc<dyn Ended>>) -> Self {
        ClientBody { body, watcher }
    }

    fn ended(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            watcher.ended();
        }
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        self.ended();
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.body.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            self.ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
