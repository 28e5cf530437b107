//! A waker woken on another thread.
mod support;

use ioswap::{Backend, Error, RunError};
use support::woken_from_another_thread;

/// A task waits on a future whose waker is woken from a std thread. Real-clock backends block
/// until that wake arrives. Fiber is single-threaded and deterministic by design: with nothing
/// runnable and no timer armed it reports a deadlock instead of waiting for the outside world.
fn wake_from_another_thread(backend: Backend) {
    let outcome = backend.run(|_| async move {
        woken_from_another_thread(20).await;
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
