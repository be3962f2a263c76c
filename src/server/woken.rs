//! A future polled only when its own waker fired.
//!
//! A connection task is woken several times per request, each time for
//! hyper's sake; its idle and drain watcher shares the task but only needs
//! polling when its timer or the drain signal wakes it. `FuturesUnordered`
//! gives that, at the price of two heap copies of the watcher per
//! connection (its stub task is sized to the future too: ~1.4 KB per idle
//! connection, heaptrack). This keeps the watcher inline in the connection
//! task and adds one small allocation: the flag its waker sets.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

pin_project_lite::pin_project! {
    /// `future`, polled only on the task's first poll and after `future`'s
    /// own waker fired since its last poll.
    pub struct OnlyWhenWoken<F> {
        #[pin]
        future: F,
        flag: Arc<Flag>,
    }
}

struct Flag {
    woken: AtomicBool,
    /// The task polling [`OnlyWhenWoken`], woken on the inner future's
    /// behalf.
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F> OnlyWhenWoken<F> {
    pub fn new(future: F) -> Self {
        OnlyWhenWoken {
            future,
            flag: Arc::new(Flag {
                woken: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
    }
}

impl<F: Future> Future for OnlyWhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Registered before the flag is read, so a wake between the two is
        // not lost.
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(this.flag.clone());
        this.future.poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `wake` was called and it is polled.
    struct Probe {
        polls: Arc<AtomicUsize>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
        fire: Arc<AtomicBool>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.fire.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            if let Ok(mut slot) = self.waker.lock() {
                *slot = Some(cx.waker().clone());
            }
            Poll::Pending
        }
    }

    #[test]
    fn is_polled_first_and_then_only_after_its_own_wake() {
        let polls = Arc::new(AtomicUsize::new(0));
        let inner_waker = Arc::new(std::sync::Mutex::new(None::<Waker>));
        let fire = Arc::new(AtomicBool::new(false));
        let mut gated = Box::pin(OnlyWhenWoken::new(Probe {
            polls: polls.clone(),
            waker: inner_waker.clone(),
            fire: fire.clone(),
        }));
        let task_woken = Arc::new(Counter(AtomicUsize::new(0)));
        let task_waker = Waker::from(task_woken.clone());
        let mut cx = Context::from_waker(&task_waker);

        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1, "the first poll reaches it");
        // The task woken for someone else's sake: not polled.
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1);

        // Its own waker fires: the task is woken, and the next poll reaches it.
        fire.store(true, Ordering::SeqCst);
        let waker = inner_waker.lock().ok().and_then(|mut w| w.take());
        waker.expect("the probe stored its waker").wake();
        assert_eq!(task_woken.0.load(Ordering::SeqCst), 1);
        assert!(gated.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
