//! The two clocks of a client connection, kept by one watcher per
//! connection that ticks, so the request path never reads the clock or
//! arms a timer:
//!
//! - `server.idle_timeout`: no bytes moving either way for that long closes
//!   the connection gracefully (a request in flight still completes).
//! - `server.header_read_timeout` (the slowloris bound): a request head
//!   must be complete that long after it began: after the accept for the
//!   first request, after its first byte for the next ones on a keep-alive
//!   connection. Waiting for that first byte is idling, not reading a head
//!   (hyper's own header timer ran from the end of the previous response,
//!   so idle keep-alive connections were closed after `header_read_timeout`
//!   instead of `idle_timeout`; found by the issue 17 soak). A head that
//!   runs out is cut off at once. A request is over, and the next bytes
//!   begin a head, only once its response is written and its body read
//!   ([`crate::client_body`]): the rest of an upload the upstream answered early
//!   is not a slow head.
//!
//! Counting I/O events instead of reading the clock on each of them keeps the
//! hot path to a few relaxed atomic operations.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::client_body::Ended;

/// What the watcher and the connection share.
#[derive(Debug)]
pub struct Clocks {
    /// Reads and writes so far.
    activity: AtomicU64,
    /// The watcher's ticks so far.
    ticks: AtomicU64,
    /// No request is being handled: the next bytes begin a head.
    awaiting_head: AtomicBool,
    /// Parts of the requests being handled still open: each request's
    /// body (while the client may still be sending it) and response.
    open: AtomicU32,
    /// The tick at which the head being read began; [`NO_HEAD`] between
    /// heads.
    head_started: AtomicU64,
}

const NO_HEAD: u64 = u64::MAX;

impl Clocks {
    /// A new connection: its first head is being waited for from now.
    pub fn new() -> Arc<Clocks> {
        Arc::new(Clocks {
            activity: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            awaiting_head: AtomicBool::new(true),
            open: AtomicU32::new(0),
            head_started: AtomicU64::new(0),
        })
    }

    /// A whole head was read: the request is being handled, its response
    /// and, `with_body`, its body are open.
    pub fn request_started(&self, with_body: bool) {
        self.open
            .fetch_add(1 + u32::from(with_body), Ordering::Relaxed);
        self.awaiting_head.store(false, Ordering::Relaxed);
        self.head_started.store(NO_HEAD, Ordering::Relaxed);
    }

    /// A response has been written (its body ended, or was dropped), or a
    /// request body read to its end (or dropped). With nothing open, the
    /// next bytes begin the next head. Not sooner: a pipelined head read
    /// while a slow response is still being written is not late, and the
    /// rest of an upload the upstream answered early is no head at all.
    fn part_done(&self) {
        if self.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.awaiting_head.store(true, Ordering::Relaxed);
        }
    }

    fn read_some(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
        if self.awaiting_head.load(Ordering::Relaxed)
            && self.head_started.load(Ordering::Relaxed) == NO_HEAD
        {
            let now = self.ticks.load(Ordering::Relaxed);
            self.head_started.store(now, Ordering::Relaxed);
        }
    }
}

pin_project_lite::pin_project! {
    /// An I/O stream that counts its reads and writes, and notes where a
    /// request head begins.
    pub struct Tracked<T> {
        #[pin]
        inner: T,
        clocks: Arc<Clocks>,
    }
}

impl<T> Tracked<T> {
    pub fn new(inner: T, clocks: Arc<Clocks>) -> Self {
        Tracked { inner, clocks }
    }
}

impl<T: AsyncRead> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let poll = this.inner.poll_read(cx, buf);
        if poll.is_ready() {
            if buf.filled().len() > before {
                this.clocks.read_some();
            } else {
                this.clocks.activity.fetch_add(1, Ordering::Relaxed);
            }
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
            this.clocks.activity.fetch_add(1, Ordering::Relaxed);
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
            this.clocks.activity.fetch_add(1, Ordering::Relaxed);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

pin_project_lite::pin_project! {
    /// A response body that tells the connection's clocks when it is done
    /// (hyper drops it once written, or when the connection ends).
    pub struct Finished<B> {
        #[pin]
        inner: B,
        done: Done,
    }
}

struct Done(Arc<Clocks>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.part_done();
    }
}

impl<B> Finished<B> {
    pub fn new(inner: B, clocks: Arc<Clocks>) -> Self {
        Finished {
            inner,
            done: Done(clocks),
        }
    }
}

impl<B: http_body::Body> http_body::Body for Finished<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body read to its end or dropped (see
/// [`crate::client_body::ClientBody`]).
impl Ended for Clocks {
    fn ended(&self) {
        self.part_done();
    }
}

/// Why the watcher ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No bytes moved for `idle_timeout`: close gracefully.
    Idle,
    /// A head was not complete within `header_read_timeout`: cut off.
    HeadTimeout,
}

/// Resolves once the connection has been quiet for `idle`, or a head has
/// been read for longer than `header_read` (`None`: no head bound, as for
/// HTTP/2, whose streams interleave). Within a quarter of either.
pub async fn expired(clocks: &Clocks, idle: Duration, header_read: Option<Duration>) -> Expired {
    let shortest = header_read.map_or(idle, |h| h.min(idle));
    let tick = (shortest / 4).max(Duration::from_millis(10));
    let mut last = clocks.activity.load(Ordering::Relaxed);
    let mut quiet = Duration::ZERO;
    let mut ticks: u64 = 0;
    loop {
        tokio::time::sleep(tick).await;
        ticks += 1;
        clocks.ticks.store(ticks, Ordering::Relaxed);
        let started = clocks.head_started.load(Ordering::Relaxed);
        let reading_head = header_read.is_some()
            && clocks.awaiting_head.load(Ordering::Relaxed)
            && started != NO_HEAD;
        if let Some(limit) = header_read.filter(|_| reading_head) {
            // The head began after tick `started` was stored: only whole
            // ticks since then count, so the bound is never early (and
            // late by at most a tick).
            let whole = ticks.saturating_sub(started).saturating_sub(1);
            let elapsed = tick.saturating_mul(u32::try_from(whole).unwrap_or(u32::MAX));
            if elapsed >= limit {
                return Expired::HeadTimeout;
            }
        }
        let now = clocks.activity.load(Ordering::Relaxed);
        if now == last {
            quiet += tick;
            if quiet >= idle {
                // hyper ignores a graceful shutdown while it reads a first
                // head: a quiet head must be cut, or it would never end.
                return if reading_head {
                    Expired::HeadTimeout
                } else {
                    Expired::Idle
                };
            }
        } else {
            last = now;
            quiet = Duration::ZERO;
        }
    }
}
