//! Which worker thread this is, so that a pool hands a request only the
//! idle connections this thread made. An upstream connection is a task of
//! the runtime that dialled it: used from another worker's runtime, every
//! request and response would cross threads twice (see
//! [`crate::server::workers`]).

use std::cell::Cell;

/// Idle lists per pool. List 0 is for threads that are no worker (the
/// main runtime's health checks, say, and every thread of tokio's
/// work-stealing pool); workers use the others, and beyond 7 of them
/// share (still correct, only less local).
pub const SLOTS: usize = 8;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Called once by worker `index`'s thread.
pub fn set(index: usize) {
    WORKER.with(|worker| worker.set(1 + index % (SLOTS - 1)));
}

/// This thread's idle list.
pub fn slot() -> usize {
    WORKER.with(Cell::get)
}
