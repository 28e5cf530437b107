//! A backend abandoned without shutting down, on a thread that then exits.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use io_core::Cx;

/// Its drop code asks the protocol whether the task is canceled.
struct AsksOnDrop(Cx);

impl Future for AsksOnDrop {
    type Output = Result<(), io_core::Canceled>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for AsksOnDrop {
    fn drop(&mut self) {
        let _ = self.0.check_cancel();
        let _ = self.0.current_task();
    }
}

/// Tasks still queued when the thread exits are dropped by thread-local destructors; their drop
/// code must not find the protocol's thread-locals gone and abort the process.
#[test]
fn queued_tasks_dropped_at_thread_exit_do_not_abort() {
    let joined = std::thread::spawn(|| {
        let fiber = io_fiber::FiberIo::new();
        let cx = Cx::new(fiber.io());
        cx.spawn(AsksOnDrop).detach();
        fiber.io().poll(0);
        fiber.io().poll(0);
        // Dropped without `run` finishing: the task stays queued on this thread.
    })
    .join();
    assert!(joined.is_ok());
}
