//! The control block of a task ([`TaskCtl`]): its state word, waker, deadline and registry slot.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::fmt;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::rc::{Rc, Weak};
use std::task::Waker;

use super::body::Outcome;
use super::park::ParkState;
use super::set::Registry;
use crate::run_queue::QueueKey;
use crate::{Io, Park, TimerId};

/// What a parked task waits for, kept for deadlock reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParkedOn {
    Nothing,
    Park(&'static str),
    Join(u64),
}

/// A [`ParkedOn`] in two words on 64-bit targets, where the enum takes three (a control block's every word counts
/// in an idle task's memory, see bench's idle-memory): a park's name as its pointer and length;
/// a join as no pointer and the joined task's id, never 0 (ids count from 1); nothing as no
/// pointer and 0.
#[derive(Clone, Copy)]
pub(super) struct PackedParkedOn {
    name: Option<NonNull<u8>>,
    word: u64,
}

impl PackedParkedOn {
    pub(super) const NOTHING: PackedParkedOn = PackedParkedOn {
        name: None,
        word: 0,
    };

    fn pack(on: ParkedOn) -> PackedParkedOn {
        match on {
            ParkedOn::Nothing => PackedParkedOn::NOTHING,
            ParkedOn::Park(what) => PackedParkedOn {
                name: Some(NonNull::from(what).cast()),
                word: what.len() as u64,
            },
            ParkedOn::Join(id) => {
                debug_assert!(id != 0, "task ids count from 1");
                PackedParkedOn {
                    name: None,
                    word: id,
                }
            }
        }
    }

    fn unpack(self) -> ParkedOn {
        match self.name {
            // SAFETY: `pack` took the pointer and the length from a `&'static str`, so they
            // describe valid UTF-8 that lives for the whole program.
            Some(name) => ParkedOn::Park(unsafe {
                std::str::from_utf8_unchecked(std::slice::from_raw_parts(
                    name.as_ptr(),
                    self.word as usize,
                ))
            }),
            None if self.word == 0 => ParkedOn::Nothing,
            None => ParkedOn::Join(self.word),
        }
    }
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
/// and every waker of it are gone. An unfinished task keeps its join handle: the user's
/// [`Task`](crate::Task) while it exists, and, once that is dropped or detached, the block's
/// `handle` until the body ends (see `TaskCtl::keep_handle`); async-task frees no task whose
/// handle exists, so a task's control block is alive at least until its body ends (or for good,
/// if a misused run queue drops the task on another thread: the body then leaks it). The task
/// set, the current-task cell, a backend's [`RawTask`](crate::RawTask) and a view of a task
/// that has no waker of itself yet rely on that; a [`TaskRef`](crate::TaskRef) taken later
/// holds a waker of the task.
pub struct TaskCtl {
    pub(super) id: u64,
    /// The run queue the task's wakers schedule it onto ([`crate::run_queue::schedule`]), by
    /// key: here rather than in a schedule closure, which async-task would guard with a waker's
    /// clone and drop at every schedule, and a key rather than the queue, which would be a locked
    /// add and subtract per task.
    pub(super) queue: QueueKey,
    /// The name and the deadline, and the shared part of the views of a task that had no
    /// waker of itself when they were taken (see [`Watch`]). Boxed: all are rare, and a bare
    /// `Cow` would take two more words in every task. Set at spawn for a task with a name or a
    /// deadline, otherwise by the first such view.
    pub(super) extra: OnceCell<Box<Extra>>,
    /// The task's own waker, so a cancel request can ready it while it waits. Taken from the
    /// task's first poll that returns `Pending` (or by [`RawTask::task`](crate::RawTask::task)),
    /// so a task that ends in its first poll never takes one: a waker's clone and drop are
    /// atomic operations, a sixth of a spawn and join. Dropped by [`TaskCtl::finish`], or kept
    /// past it while a handle of the task's own park is held.
    pub(super) waker: Cell<Option<Waker>>,
    /// The task's async-task join handle once the user's [`Task`](crate::Task) let go of it
    /// before the body ended (`HANDLE_KEPT`), stored as its bytes (its type names the task's
    /// output type, which the block does not know); released by the body when it ends.
    pub(super) handle: Cell<MaybeUninit<*const ()>>,
    pub(super) parked_on: Cell<PackedParkedOn>,
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
/// The task has taken a waker of itself (`waker`; it may have been dropped since, by `finish`).
pub(super) const OWN_WAKER: u8 = 32;
/// `handle` holds the task's join handle.
pub(super) const HANDLE_KEPT: u8 = 64;

/// The async-task join handle of a task whose output type is `T`.
pub(crate) type JoinHandle<T> = async_task::FallibleTask<Outcome<T>, TaskCtl>;

// SAFETY: async-task requires the metadata to be `Send + Sync` for its `Runnable` to be (the run
// queue is thread-safe, and a waker may schedule the task from any thread). Of this block, only
// `id` and `queue` (immutable, plain values) are reachable from another thread: the
// other fields are private to this module
// tree, and everything that reads them runs on the spawning thread — the task body (which checks
// the thread before anything else), and the `RawTask`, the join handle, `TaskRef`s, the task set
// and the current-task cell, all `!Send` and made on that thread. The block is dropped by async-task on
// whichever thread frees the allocation, which happens only after `finish` (an unfinished task's
// join handle, the user's or the one the block keeps, holds the allocation): by then it owns
// nothing of the spawning thread's (`finish` empties the registry, waker, watch, timer and
// backend cells; the name is `Send`); `Drop` leaks whatever such
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
        // A kept join handle (`handle`) is left as it is: its bytes are only ever read by the
        // body, as the handle's type.
    }
}

/// The rarely used parts of a control block: the name, the deadline, and the views' watch.
pub(super) struct Extra {
    pub(super) name: Option<Cow<'static, str>>,
    /// `u64::MAX`: none.
    pub(super) deadline_ms: u64,
    /// The backend the deadline's timer is armed on (set by [`spawn_on`]).
    pub(super) io: Cell<Option<Weak<dyn Io>>>,
    /// The deadline's timer once armed, and its park (whose waker is the task's own).
    pub(super) timer: Cell<Option<(Park, TimerId)>>,
    /// Shared with the views taken while the task had no waker of itself; `finish` ends it.
    pub(super) watch: Cell<Option<Rc<Watch>>>,
}

impl Extra {
    pub(super) fn new(name: Option<Cow<'static, str>>, deadline_ms: u64) -> Extra {
        Extra {
            name,
            deadline_ms,
            io: Cell::new(None),
            timer: Cell::new(None),
            watch: Cell::new(None),
        }
    }
}

/// What the views of a task share when they were taken while the task held no waker of itself
/// (it had not yet waited; see [`TaskCtl::waker`]), so they cannot hold its allocation: the
/// block while the body has not ended (until then the task's join handle keeps it, see
/// [`TaskCtl`]), and, once it has, what a finished task still answers.
pub(super) struct Watch {
    /// The task's block, `None` once the body has ended (`TaskCtl::finish` clears it before
    /// anything may free the block).
    pub(super) ctl: Cell<Option<NonNull<TaskCtl>>>,
    pub(super) id: u64,
    pub(super) name: Option<Cow<'static, str>>,
    /// Whether a cancel had been requested when the body ended.
    pub(super) canceled: Cell<bool>,
}

impl TaskCtl {
    /// A control block for a bare async-task task in unit tests: no name, no deadline, in no
    /// task set.
    #[cfg(test)]
    pub(crate) fn bare(id: u64, queue: &crate::RunQueue) -> TaskCtl {
        TaskCtl {
            id,
            queue: queue.key(),
            extra: OnceCell::new(),
            waker: Cell::new(None),
            handle: Cell::new(MaybeUninit::uninit()),
            parked_on: Cell::new(PackedParkedOn::NOTHING),
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

    /// The key of the run queue the task is scheduled onto (any thread may read it: see the
    /// `Send` note).
    #[inline]
    pub(crate) fn queue_key(&self) -> QueueKey {
        self.queue
    }

    /// What the task waits for, if it is parked.
    pub(super) fn parked_on(&self) -> ParkedOn {
        self.parked_on.get().unpack()
    }

    pub(super) fn set_parked_on(&self, on: ParkedOn) {
        self.parked_on.set(PackedParkedOn::pack(on));
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

    /// The name and the deadline, if the task has either (or a watch, see [`Watch`]).
    #[inline]
    pub(super) fn extra(&self) -> Option<&Extra> {
        self.extra.get().map(|extra| &**extra)
    }

    /// The task's name, if it was given one.
    pub(super) fn name(&self) -> Option<&Cow<'static, str>> {
        self.extra().and_then(|extra| extra.name.as_ref())
    }

    /// The watch the views of this task share while it has no waker of itself (see
    /// [`Watch`]); made by the first such view. Only for a task whose body has not ended.
    #[cold]
    pub(super) fn watch(&self) -> Rc<Watch> {
        let extra = self
            .extra
            .get_or_init(|| Box::new(Extra::new(None, u64::MAX)));
        let watch = extra.watch.take().unwrap_or_else(|| {
            Rc::new(Watch {
                ctl: Cell::new(Some(NonNull::from(self))),
                id: self.id,
                name: extra.name.clone(),
                canceled: Cell::new(false),
            })
        });
        extra.watch.set(Some(watch.clone()));
        watch
    }

    /// The task has returned `Pending`: from its first such poll it holds a waker of itself, so
    /// a cancel request can ready it while it waits.
    #[inline]
    pub(crate) fn suspended(&self, waker: &Waker) {
        if !self.has(OWN_WAKER) {
            self.take_own_waker(waker.clone());
        }
    }

    /// The first `Pending` of the task (or a view of it taken from its `RawTask`): it takes a
    /// waker of itself. A cancel requested since the task started found no waker to ready it
    /// with, so it is readied now: a suspend point that had parked before the request then
    /// sees it.
    #[cold]
    #[inline(never)]
    pub(super) fn take_own_waker(&self, waker: Waker) {
        self.set(OWN_WAKER);
        if self.is_cancel_requested() {
            waker.wake_by_ref();
        }
        self.waker.set(Some(waker));
    }

    /// The user's join handle let go of the task before its body ended: the block keeps the
    /// async-task handle, so async-task keeps the task's allocation (and this block) until the
    /// body ends, which releases it ([`TaskCtl::take_handle`]). Only for an unfinished task (the
    /// caller detaches the handle of a finished one itself: that may free this block, which
    /// must not happen inside a method borrowing it).
    pub(super) fn keep_handle<T>(&self, handle: JoinHandle<T>) {
        const {
            assert!(
                size_of::<JoinHandle<T>>() == size_of::<*const ()>()
                    && align_of::<JoinHandle<T>>() <= align_of::<*const ()>()
            )
        };
        debug_assert!(!self.is_finished(), "a finished task's handle is detached");
        debug_assert!(!self.has(HANDLE_KEPT), "a task has one join handle");
        // SAFETY: the cell's bytes are as large as the handle and aligned for it (checked
        // above); nothing else is stored there, `HANDLE_KEPT` says it holds a handle of this
        // task, whose output type is `T` (the join handle's type), and only `take_handle::<T>`,
        // called by this task's body with the same `T`, reads it back, once.
        unsafe { self.handle.as_ptr().cast::<JoinHandle<T>>().write(handle) };
        self.set(HANDLE_KEPT);
    }

    /// The join handle [`TaskCtl::keep_handle`] kept, for the body to release as the task ends.
    /// `T` must be the task's output type.
    #[inline]
    pub(super) fn take_handle<T>(&self) -> Option<JoinHandle<T>> {
        if !self.has(HANDLE_KEPT) {
            return None;
        }
        self.state.set(self.state.get() & !HANDLE_KEPT);
        // SAFETY: `HANDLE_KEPT` was set, so `keep_handle::<T>` wrote a handle there (the caller
        // passes the task's output type, as `keep_handle` was given); it is read once, as the
        // flag is now clear.
        Some(unsafe { self.handle.as_ptr().cast::<JoinHandle<T>>().read() })
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
        // A task with no waker of itself has not waited yet: it is queued (and will see the
        // flag when it runs) or being polled (`take_own_waker` readies it if it then waits).
        if let Some(waker) = self.waker.take() {
            waker.wake_by_ref();
            self.waker.set(Some(waker));
        }
    }

    /// At the start of each poll of the user's future.
    #[inline]
    pub(crate) fn before_poll(&self, waker: &Waker) {
        self.parked_on.set(PackedParkedOn::NOTHING);
        // Only a task with a name or a deadline has anything to watch.
        if let Some(extra) = self.extra() {
            self.watch_deadline(extra, waker);
        }
    }

    /// The body has ended and its future is gone: leave the backend's task set (so the slot is
    /// reused and this block is freed as soon as the handles are gone), disarm the deadline, end
    /// the views' watch, and drop the task's own waker. Idempotent. `waker` is the waker of the
    /// poll the body ended in (`None`: it was dropped, not polled). The caller then releases a
    /// kept join handle ([`TaskCtl::take_handle`]).
    #[inline]
    pub(crate) fn finish(&self, waker: Option<&Waker>) {
        self.set(FINISHED);
        self.parked_on.set(PackedParkedOn::NOTHING);
        if let Some(registry) = self.registry.take() {
            registry.remove(self.slot.get());
        }
        if let Some(extra) = self.extra() {
            self.finish_extra(extra);
        }
        if !self.own_park_held() {
            let own = self.waker.take();
            drop(own);
        } else if !self.has(OWN_WAKER) {
            // A handle of the task's own park is still held (a park handed to another task, an
            // op the backend still owns): a waker of the task keeps the allocation, where the
            // park lives, and the park's last handle drops it (`release_kept_waker`). A task
            // that gave its park away in the poll it ended in has not taken one yet. (A body
            // dropped unpolled never took its park; one that has waited holds a waker.)
            debug_assert!(waker.is_some(), "an own park taken outside a poll");
            if let Some(waker) = waker {
                self.set(OWN_WAKER);
                self.waker.set(Some(waker.clone()));
            }
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

    /// The part of [`TaskCtl::finish`] for tasks with a name, a deadline or a watch (rare).
    #[cold]
    #[inline(never)]
    fn finish_extra(&self, extra: &Extra) {
        // No timer outlives the task; this also breaks the cycle task -> body -> ctl ->
        // deadline park -> waker -> task.
        Self::disarm_deadline_of(extra);
        // The views that hold no waker stop reading the block, which may be freed from now on.
        if let Some(watch) = extra.watch.take() {
            watch.canceled.set(self.is_cancel_requested());
            watch.ctl.set(None);
        }
        // Nothing of this thread's is left in the block (see the `Send` note).
        drop(extra.io.take());
    }

    /// The task's deadline, `u64::MAX` for none.
    #[inline]
    pub(super) fn deadline_ms(&self) -> u64 {
        self.extra().map_or(u64::MAX, |extra| extra.deadline_ms)
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
        if let Some(extra) = self.extra() {
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
        // queued one stays queued once); it runs no drop code. A task with no waker of itself
        // has not waited yet: see `abandon`.
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
