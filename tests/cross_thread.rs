//! A waker woken on another thread.
mod support;

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use ioswap::{Backend, Error, RunError};

/// A task waits on a future whose waker is woken from a std thread. Real-clock backends block
/// until that wake arrives. Fiber is single-threaded and deterministic by design: with nothing
/// runnable and no timer armed it reports a deadlock instead of waiting for the outside world.
fn wake_from_another_thread(backend: Backend) {
    let outcome = backend.run(|_| async move {
        let done = Arc::new(AtomicBool::new(false));
        let mut started = false;
        poll_fn(|cx| {
            if done.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if !started {
                started = true;
                let (done, waker) = (done.clone(), cx.waker().clone());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    done.store(true, Ordering::Release);
                    waker.wake();
                });
            }
            Poll::Pending
        })
        .await;
        Ok("woken")
    });
    match backend {
        Backend::Fiber => {
            let Err(Error::Run(RunError::Deadlock(deadlock))) = outcome else {
                panic!("fiber should report a deadlock, got {outcome:?}");
            };
            assert_eq!(
                deadlock.to_string(),
                "deadlock at t=0ms: 'main' (#1) parked on a future outside the protocol"
            );
        }
        _ => assert_eq!(outcome, Ok("woken")),
    }
}

conformance!(wake_from_another_thread);
