//! The control block of a task ([`TaskCtl`]): its state word, waker, deadline and registry slot.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::ptr::NonNull;
use std::rc::{Rc, Weak};
use std::task::Waker;

use super::park::ParkState;
use super::set::Registry;
use crate::{Io, Park, TimerId};

/// What a parked task waits for, kept for deadlock reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParkedOn {
    Nothing,
    Park(&'static str),
    Join(u64),
}

/// The control block of one task: async-task's metadata of the task, so it lives in the task's
/// one allocation, read by its body, its join handle, its [`TaskRef`](crate::TaskRef)s and the
/// backend's task set.
///
/// Backends see it as [`Runnable::metadata`](async_task::Runnable::metadata) and read only its
/// [`id`](TaskCtl::id); everything else is the spawning thread's (see the `Send`/`Sync` note
/// below). Kept small (an idle task's memory is measured in `bench/`): cells rather than
/// `RefCell`s, a 16-bit shield depth, one state byte, a boxed name.
///
/// It lives as long as async-task's allocation: until the task's `Runnable`, its join handle
/// and every waker of it are gone. An unfinished task holds a waker of itself (`waker`, taken
/// at spawn and dropped when its body ends), so a task's control block is alive at least until
/// its body ends; the task set, the current-task cell and a backend's [`RawTask`](crate::RawTask)
/// rely on that, and a [`TaskRef`](crate::TaskRef) holds a waker of its own.
pub struct TaskCtl {
    pub(super) id: u64,
    /// The name and the deadline. Boxed: both are rare and a bare `Cow` would take two more
    /// words in every task.
    pub(super) extra: Option<Box<Extra>>,
    /// The task's own waker, so a cancel request can ready it; it also keeps the task's
    /// allocation (and so this block) alive until the body ends. Set at spawn, dropped by
    /// [`TaskCtl::finish`].
    pub(super) waker: Cell<Option<Waker>>,
    pub(super) parked_on: Cell<ParkedOn>,
    /// The backend's task set this task is registered in (see [`TaskSet`]), until its body ends.
    pub(super) registry: Cell<Option<Rc<Registry>>>,
    /// This task's slot in `registry`.
    pub(super) slot: Cell<u32>,
    pub(super) shield_depth: Cell<u16>,
    /// The task's life in one word: [`CANCEL_REQUESTED`], [`ABANDONED`], [`FINISHED`].
    pub(super) state: Cell<u8>,
    /// The task's own park, at the end of its body (set at the body's first poll, when it is
    /// pinned; `None` for a task whose output would reach it, see `body.rs`): what
    /// [`Park::new`] gives the task while no handle holds it, so a sleep, a yield or a wait
    /// costs no allocation of its own. A handle held past the task's end keeps the task's
    /// allocation (see [`TaskCtl::finish`]).
    pub(super) park: Cell<Option<NonNull<ParkState>>>,
}

/// A cancel has been requested; the task's suspend points raise `Canceled` (outside shields).
pub(super) const CANCEL_REQUESTED: u8 = 1;
/// The backend is shutting down and gives up on the task: its next poll drops its future
/// without polling it (see [`TaskRef::abandon`]). Implies `CANCEL_REQUESTED`.
pub(super) const ABANDONED: u8 = 2;
/// The body has ended (returned, panicked, or was dropped); its future is gone.
pub(super) const FINISHED: u8 = 4;
/// The join handle has returned the task's result.
pub(super) const JOINED: u8 = 8;
/// The task's own park has been written (at its first take): `park` may be read.
pub(super) const OWN_PARK: u8 = 16;

// SAFETY: async-task requires the metadata to be `Send + Sync` for its `Runnable` to be (the run
// queue is thread-safe, and a waker may schedule the task from any thread). Of this block, only
// `id` (immutable) is reachable from another thread: the other fields are private to this module
// tree, and everything that reads them runs on the spawning thread — the task body (which checks
// the thread before anything else), and the `RawTask`, the join handle, `TaskRef`s, the task set
// and the current-task cell, all `!Send` and made on that thread. The block is dropped by async-task on
// whichever thread frees the allocation, which happens only after `finish` (an unfinished task
// holds a waker of itself): by then it owns nothing of the spawning thread's (`finish` empties
// the registry, waker, timer and backend cells; the name is `Send`); `Drop` leaks whatever such
// state it might still hold rather than touch it. The task's own park (`park`, in the body) is
// touched only through `Park` handles (`!Send`, on the spawning thread); while one exists the
// task keeps its own waker (see `finish`), so the allocation is only freed once the park is free
// and empty.
unsafe impl Send for TaskCtl {}
// SAFETY: see `Send` above.
unsafe impl Sync for TaskCtl {}

impl Drop for TaskCtl {
    #[inline]
    fn drop(&mut self) {
        if self.is_finished() {
            return;
        }
        // Not reached (see above); were it ever, the thread-bound parts are leaked, not dropped
        // on what may be another thread.
        std::mem::forget(self.registry.take());
        if let Some(extra) = self.extra.take() {
            std::mem::forget(extra);
        }
    }
}

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
    /// A control block for a bare async-task task in unit tests: no name, no deadline, in no
    /// task set.
    #[cfg(test)]
    pub(crate) fn bare(id: u64) -> TaskCtl {
        TaskCtl {
            id,
            extra: None,
            waker: Cell::new(None),
            parked_on: Cell::new(ParkedOn::Nothing),
            registry: Cell::new(None),
            slot: Cell::new(0),
            shield_depth: Cell::new(0),
            state: Cell::new(0),
            park: Cell::new(None),
        }
    }

    /// The task's id: 1, 2, 3, … in spawn order within its backend.
    pub fn id(&self) -> u64 {
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
    #[inline]
    pub(crate) fn before_poll(&self, waker: &Waker) {
        self.parked_on.set(ParkedOn::Nothing);
        // Only a task with a name or a deadline has anything to watch.
        if let Some(extra) = self.extra.as_deref() {
            self.watch_deadline(extra, waker);
        }
    }

    /// The body has ended and its future is gone: leave the backend's task set (so the slot is
    /// reused and this block is freed as soon as the handles are gone), disarm the deadline, and
    /// drop the kept waker. Idempotent.
    #[inline]
    pub(crate) fn finish(&self) {
        self.set(FINISHED);
        self.parked_on.set(ParkedOn::Nothing);
        if let Some(registry) = self.registry.take() {
            registry.remove(self.slot.get());
        }
        if let Some(extra) = self.extra.as_deref() {
            Self::finish_extra(extra);
        }
        // Break the cycle task -> ctl -> waker -> task: the task may now be freed. Unless a
        // handle of the task's own park is still held (a park handed to another task, an op the
        // backend still owns): the waker then keeps the allocation, where the park lives, and
        // the park's last handle drops it (`release_kept_waker`).
        if !self.own_park_held() {
            let waker = self.waker.take();
            drop(waker);
        }
    }

    /// Whether a handle of the task's own park exists.
    #[inline]
    fn own_park_held(&self) -> bool {
        if !self.has(OWN_PARK) {
            return false;
        }
        // SAFETY: `OWN_PARK` says the park was written (`own_park`), at the place `park` names,
        // in the task's allocation, which is alive while this block is; shared access, on this
        // thread.
        self.park
            .get()
            .is_some_and(|park| !unsafe { park.as_ref() }.is_free())
    }

    /// The last handle of the task's own park is gone: the waker [`TaskCtl::finish`] kept for
    /// it, if the task has finished, for the caller to drop (last: it may free the task).
    #[inline]
    pub(super) fn release_kept_waker(&self) -> Option<Waker> {
        if self.is_finished() {
            self.waker.take()
        } else {
            None
        }
    }

    /// The part of [`TaskCtl::finish`] for tasks with a name or a deadline (rare).
    #[cold]
    #[inline(never)]
    fn finish_extra(extra: &Extra) {
        // No timer outlives the task; this also breaks the cycle task -> body -> ctl ->
        // deadline park -> waker -> task.
        Self::disarm_deadline_of(extra);
        // Nothing of this thread's is left in the block (see the `Send` note).
        drop(extra.io.take());
    }

    /// The task's deadline, `u64::MAX` for none.
    #[inline]
    pub(super) fn deadline_ms(&self) -> u64 {
        self.extra
            .as_deref()
            .map_or(u64::MAX, |extra| extra.deadline_ms)
    }

    /// At each poll of a task with a deadline: once the clock has reached it, the task is
    /// canceled (the flag only: it is being polled, so its next suspend point sees it);
    /// before that, a timer is armed for it, which wakes the task at the deadline so that this
    /// check runs again. Written once here, so no backend knows about deadlines.
    #[cold]
    #[inline(never)]
    fn watch_deadline(&self, extra: &Extra, waker: &Waker) {
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
                // Apart from the task's own park, which its waits use: this one lives as long
                // as the deadline is armed.
                let park = Park::new_apart("deadline", std::panic::Location::caller());
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
        // schedules the task (a task being polled is scheduled again when its poll returns, a
        // queued one stays queued once); it runs no drop code.
        if let Some(waker) = self.waker.take() {
            waker.wake_by_ref();
            self.waker.set(Some(waker));
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
