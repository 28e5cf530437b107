//! One racer's place in a race ([`Slot`]), seen by the race loop through the type-erased
//! [`Lane`] so one loop serves every arity and output type.

use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll};

use io_core::{Cx, Task};

use crate::join::{poll_join, Joined, Panic};
use crate::Racer;

/// What a poll of a lane found.
pub(crate) enum LaneState {
    /// Running, not finished.
    Pending,
    /// Finished with a value, which waits in the slot.
    Value,
    /// Ended without a value: canceled, never started, or its value already taken.
    Ended,
    /// It panicked just now (reported once; the lane is `Ended` afterwards).
    Panicked(Panic),
}

/// The race loop's view of a slot.
pub(crate) trait Lane {
    /// Starts the racer if it is an unstarted body and `start` is set (an unstarted body polled
    /// with `start` unset is dropped: it never runs), then polls its task if it runs.
    fn poll_lane(&mut self, cx: &Cx, start: bool, ctx: &mut Context<'_>) -> LaneState;

    /// Requests cancellation of the racer's task, if it runs.
    fn cancel(&self);
}

/// One racer: waiting to start, running, or ended.
pub(crate) enum Slot<R: Racer> {
    /// A body, and the deadline to spawn it with (`u64::MAX`: none).
    Unstarted(R, u64),
    Running(Task<R::Output>),
    Finished(R::Output),
    Ended,
}

impl<R: Racer> Slot<R> {
    pub(crate) fn new(cx: &Cx, racer: R) -> Slot<R> {
        Slot::with_deadline(cx, racer, u64::MAX)
    }

    /// A slot whose body, once started, is canceled when the clock reaches `deadline_ms`
    /// ([`Racer::start_until`]); a task passed in keeps running as it is.
    pub(crate) fn with_deadline(cx: &Cx, racer: R, deadline_ms: u64) -> Slot<R> {
        if racer.is_running() {
            // A task runs already: whatever the race decides, it must be joined.
            Slot::Running(racer.start(cx))
        } else {
            Slot::Unstarted(racer, deadline_ms)
        }
    }

    /// The value the racer finished with, if it did and it was not taken yet.
    pub(crate) fn take(&mut self) -> Option<R::Output> {
        match mem::replace(self, Slot::Ended) {
            Slot::Finished(value) => Some(value),
            other => {
                *self = other;
                None
            }
        }
    }
}

impl<R: Racer> Lane for Slot<R> {
    fn poll_lane(&mut self, cx: &Cx, start: bool, ctx: &mut Context<'_>) -> LaneState {
        *self = match mem::replace(self, Slot::Ended) {
            // A body that panics before it returns its future ends the race like a racer that
            // panics later.
            Slot::Unstarted(racer, deadline_ms) if start => {
                match catch_unwind(AssertUnwindSafe(|| racer.start_until(cx, deadline_ms))) {
                    Ok(task) => Slot::Running(task),
                    Err(payload) => return LaneState::Panicked(payload),
                }
            }
            Slot::Unstarted(..) => Slot::Ended, // never started: the body is dropped unrun
            other => other,
        };
        match self {
            Slot::Finished(_) => LaneState::Value,
            Slot::Unstarted(..) | Slot::Ended => LaneState::Ended,
            Slot::Running(task) => match poll_join(cx, task, ctx) {
                Poll::Pending => LaneState::Pending,
                Poll::Ready(Joined::Value(value)) => {
                    *self = Slot::Finished(value);
                    LaneState::Value
                }
                Poll::Ready(Joined::Canceled) => {
                    *self = Slot::Ended;
                    LaneState::Ended
                }
                Poll::Ready(Joined::Panicked(payload)) => {
                    *self = Slot::Ended;
                    LaneState::Panicked(payload)
                }
            },
        }
    }

    fn cancel(&self) {
        if let Slot::Running(task) = self {
            task.cancel();
        }
    }
}
