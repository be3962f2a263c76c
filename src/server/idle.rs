//! `server.idle_timeout`: a connection with no bytes moving either way for
//! that long is closed gracefully (a request in flight still completes).
//!
//! Counting I/O events instead of reading the clock on each of them keeps the
//! hot path to one relaxed atomic increment.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project_lite::pin_project! {
    /// An I/O stream that counts its reads and writes.
    pub struct Tracked<T> {
        #[pin]
        inner: T,
        activity: Arc<AtomicU64>,
    }
}

impl<T> Tracked<T> {
    pub fn new(inner: T) -> (Self, Arc<AtomicU64>) {
        let activity = Arc::new(AtomicU64::new(0));
        (
            Tracked {
                inner,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl<T: AsyncRead> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let poll = this.inner.poll_read(cx, buf);
        if poll.is_ready() {
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        poll
    }
}

impl<T: AsyncWrite> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write(cx, buf);
        if poll.is_ready() {
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write_vectored(cx, bufs);
        if poll.is_ready() {
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Resolves once `activity` has not changed for `idle` (within a quarter of
/// it).
pub async fn expired(activity: &AtomicU64, idle: Duration) {
    let tick = (idle / 4).max(Duration::from_millis(10));
    let mut last = activity.load(Ordering::Relaxed);
    let mut quiet = Duration::ZERO;
    loop {
        tokio::time::sleep(tick).await;
        let now = activity.load(Ordering::Relaxed);
        if now == last {
            quiet += tick;
            if quiet >= idle {
                return;
            }
        } else {
            last = now;
            quiet = Duration::ZERO;
        }
    }
}
