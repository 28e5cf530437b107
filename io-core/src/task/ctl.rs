//! The control block of a task ([`TaskCtl`]): its state word, waker, deadline and registry slot.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::rc::{Rc, Weak};
use std::task::Waker;

use super::set::Registry;
use crate::{Io, Park, TimerId};

/// What a parked task waits for, kept for deadlock reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParkedOn {
    Nothing,
    Park(&'static str),
    Join(u64),
}

/// The control block of one task, shared by its body, its join handle and the backend.
///
/// One allocation per task besides async-task's own, so it is kept small (an idle task's memory
/// is measured in `bench/`): cells rather than `RefCell`s, a 16-bit shield depth, one state
/// byte, a boxed name; 72 bytes, which with the `Rc` counts fits glibc's 96-byte size class.
pub(crate) struct TaskCtl {
    pub(super) id: u64,
    /// The name and the deadline. Boxed: both are rare and a bare `Cow` would take two more
    /// words in every task.
    pub(super) extra: Option<Box<Extra>>,
    /// The task's own waker, so a cancel request can ready it. Captured when the task first
    /// returns `Pending`: a task that finishes in its first poll never needs one (a clone and
    /// a drop of a waker are two atomic operations).
    pub(super) waker: Cell<Option<Waker>>,
    pub(super) parked_on: Cell<ParkedOn>,
    /// The backend's task set this task is registered in (see [`TaskSet`]), until its body ends.
    pub(super) registry: Cell<Option<Rc<Registry>>>,
    /// This task's slot in `registry`.
    pub(super) slot: Cell<u32>,
    pub(super) shield_depth: Cell<u16>,
    /// The task's life in one word: [`CANCEL_REQUESTED`], [`ABANDONED`], [`FINISHED`].
    pub(super) state: Cell<u8>,
}

/// A cancel has been requested; the task's suspend points raise `Canceled` (outside shields).
pub(super) const CANCEL_REQUESTED: u8 = 1;
/// The backend is shutting down and gives up on the task: its next poll drops its future
/// without polling it (see [`TaskRef::abandon`]). Implies `CANCEL_REQUESTED`.
pub(super) const ABANDONED: u8 = 2;
/// The body has ended (returned, panicked, or was dropped); its future is gone.
pub(super) const FINISHED: u8 = 4;

/// The rarely used parts of a control block: the name, and the deadline.
pub(super) struct Extra {
    pub(super) name: Option<Cow<'static, str>>,
    /// `u64::MAX`: none.
    pub(super) deadline_ms: u64,
    /// The backend the deadline's timer is armed on (set by [`spawn_on`]).
    pub(super) io: Cell<Option<Weak<dyn Io>>>,
    /// The deadline's timer once armed, and its park (whose waker is the task's own).
    pub(super) timer: Cell<Option<(Park, TimerId)>>,
}

impl TaskCtl {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn has(&self, flag: u8) -> bool {
        self.state.get() & flag != 0
    }

    /// Sets `flags`; whether any of them was set already.
    pub(super) fn set(&self, flags: u8) -> bool {
        let state = self.state.get();
        self.state.set(state | flags);
        state & flags != 0
    }

    pub(crate) fn is_cancel_requested(&self) -> bool {
        self.has(CANCEL_REQUESTED)
    }

    pub(crate) fn is_abandoned(&self) -> bool {
        self.has(ABANDONED)
    }

    pub(super) fn is_finished(&self) -> bool {
        self.has(FINISHED)
    }

    /// See [`TaskRef::abandon`](super::TaskRef::abandon).
    pub(super) fn abandon(&self) {
        if self.is_finished() {
            return;
        }
        self.set(CANCEL_REQUESTED | ABANDONED);
        self.disarm_deadline();
        if let Some(waker) = self.waker.take() {
            waker.wake_by_ref();
            self.waker.set(Some(waker));
        }
    }

    /// At the start of each poll of the user's future.
    pub(crate) fn before_poll(&self, waker: &Waker) {
        self.parked_on.set(ParkedOn::Nothing);
        self.watch_deadline(waker);
    }

    /// The body has ended and its future is gone: leave the backend's task set (so the slot is
    /// reused and this block is freed as soon as the handles are gone), disarm the deadline, and
    /// drop the kept waker. Idempotent.
    pub(crate) fn finish(&self) {
        self.set(FINISHED);
        self.parked_on.set(ParkedOn::Nothing);
        if let Some(registry) = self.registry.take() {
            registry.remove(self.slot.get());
        }
        // No timer outlives the task; this also breaks the cycle task -> body -> ctl ->
        // deadline park -> waker -> task.
        self.disarm_deadline();
        // Break the cycle task -> body -> ctl -> waker -> task.
        let waker = self.waker.take();
        drop(waker);
    }

    /// The task's deadline, `u64::MAX` for none.
    pub(super) fn deadline_ms(&self) -> u64 {
        self.extra
            .as_deref()
            .map_or(u64::MAX, |extra| extra.deadline_ms)
    }

    /// At each poll of a task with a deadline: once the clock has reached it, the task is
    /// canceled (the flag only: it is being polled, so its next suspend point sees it);
    /// before that, a timer is armed for it, which wakes the task at the deadline so that this
    /// check runs again. Written once here, so no backend knows about deadlines.
    pub(super) fn watch_deadline(&self, waker: &Waker) {
        let Some(extra) = self.extra.as_deref() else {
            return;
        };
        if extra.deadline_ms == u64::MAX || self.is_cancel_requested() {
            return;
        }
        let io = extra.io.take();
        let live = io.as_ref().and_then(Weak::upgrade);
        extra.io.set(io);
        let Some(io) = live else {
            return;
        };
        if io.now_ms() >= extra.deadline_ms {
            self.set(CANCEL_REQUESTED);
            self.disarm_deadline();
            return;
        }
        let timer = extra.timer.take();
        match timer {
            Some(timer) => extra.timer.set(Some(timer)),
            None => {
                let park = Park::new("deadline");
                park.set_waker(waker);
                let id = io.arm_timer(extra.deadline_ms, &park);
                extra.timer.set(Some((park, id)));
            }
        }
    }

    /// Disarms the deadline's timer, if one is armed. The park is dropped here, after the
    /// backend has released its timers (a backend's `disarm_timer` borrows them only inside).
    #[inline]
    pub(super) fn disarm_deadline(&self) {
        if let Some(extra) = self.extra.as_deref() {
            Self::disarm_deadline_of(extra);
        }
    }

    /// The part of [`TaskCtl::disarm_deadline`] for tasks with a name or a deadline (rare).
    fn disarm_deadline_of(extra: &Extra) {
        let Some((park, id)) = extra.timer.take() else {
            return;
        };
        let io = extra.io.take();
        if let Some(io) = io.as_ref().and_then(Weak::upgrade) {
            io.disarm_timer(id);
        }
        drop(park);
    }

    pub(super) fn request_cancel(&self) {
        if self.is_finished() || self.set(CANCEL_REQUESTED) {
            return;
        }
        // The deadline has nothing left to do, and an armed timer would keep a backend waiting
        // for it (a canceled task stuck on a foreign future, say) until it fired.
        self.disarm_deadline();
        // Taken out while waking, so nothing can reach the cell meanwhile. `wake_by_ref` only
        // schedules the task; it runs no drop code. No waker yet: the task has not returned
        // `Pending` so far, so it is queued or running, and will see the flag (see
        // `TaskBody::poll`).
        if let Some(waker) = self.waker.take() {
            waker.wake_by_ref();
            self.waker.set(Some(waker));
        }
    }

    /// Called when the task's future returned `Pending`: keeps the task's waker for cancel
    /// requests. The first time, a cancel requested during this very poll found no waker to
    /// ready the task with, so it is readied here instead (inside the poll, exactly where the
    /// waker would have scheduled it).
    pub(crate) fn keep_waker(&self, waker: &Waker) {
        let kept = self.waker.take();
        match kept {
            Some(kept) => self.waker.set(Some(kept)),
            None => {
                self.waker.set(Some(waker.clone()));
                if self.is_cancel_requested() {
                    waker.wake_by_ref();
                }
            }
        }
    }

    pub(super) fn cancel_pending(&self) -> bool {
        self.is_cancel_requested() && self.shield_depth.get() == 0
    }
}

impl fmt::Debug for TaskCtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskCtl").field("id", &self.id).finish()
    }
}
