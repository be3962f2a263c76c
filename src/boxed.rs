//! Futures boxed where they are built.
//!
//! Some futures are boxed on purpose: hyper keeps a connection's service
//! future allocated for the connection's whole life, so what sits inline in
//! it is paid per idle keep-alive connection. `Box::pin(future)` builds the
//! future on the stack and then copies all of it into the box, several KB a
//! request for the pipeline and for fred's commands (callgrind: ~700
//! instructions of `memcpy` per fred command future). Allocating first and
//! building the future in the allocation lets the compiler skip that copy.

use std::future::Future;
use std::pin::Pin;

/// `Box::pin(make())`, without the copy: the allocation comes first, then
/// `make` builds the future in it.
#[inline(always)]
pub fn boxed<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    let slot = Box::new_uninit();
    Box::into_pin(Box::write(slot, make()))
}
