//! Joining a task the way race and groups need: the joiner's own cancellation held off, and a
//! panic in the task caught so it can be resumed only after everything else is cleaned up.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use io_core::{Canceled, Cx, Task};

/// A caught panic payload.
pub(crate) type Panic = Box<dyn Any + Send + 'static>;

/// How a joined task ended.
pub(crate) enum Joined<T> {
    /// It finished with a value (possibly after a cancel request: completion wins).
    Value(T),
    /// It ended with `Err(Canceled)`, or was never run.
    Canceled,
    /// It panicked; the payload waits to be resumed.
    Panicked(Panic),
}

/// One poll of joining `task` inside a shield: `Pending` while it runs, whatever happens to the
/// joiner, so `Joined::Canceled` always means the *task* ended canceled.
pub(crate) fn poll_join<T>(cx: &Cx, task: &mut Task<T>, ctx: &mut Context<'_>) -> Poll<Joined<T>> {
    let mut shielded = cx.shield(task);
    match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut shielded).poll(ctx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(Ok(value))) => Poll::Ready(Joined::Value(value)),
        Ok(Poll::Ready(Err(Canceled))) => Poll::Ready(Joined::Canceled),
        Err(payload) => Poll::Ready(Joined::Panicked(payload)),
    }
}

/// The first panic seen among several tasks; later ones are dropped (one payload can unwind).
#[derive(Default)]
pub(crate) struct FirstPanic(Option<Panic>);

impl FirstPanic {
    pub(crate) fn record(&mut self, payload: Panic) {
        self.0.get_or_insert(payload);
    }

    pub(crate) fn is_some(&self) -> bool {
        self.0.is_some()
    }

    /// Resumes the recorded panic, if any, in the caller.
    pub(crate) fn resume(self) {
        if let Some(payload) = self.0 {
            resume_unwind(payload);
        }
    }
}
