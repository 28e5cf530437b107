//! Parks: the one thing a task suspends on.
//!
//! A [`Park`] is a one-slot readiness flag with the waker of the task parked on it. Whoever the
//! task waits for (a timer, another task, an I/O completion) calls [`Io::ready`](crate::Io::ready)
//! on it; the task's suspend point then returns. Readiness is remembered, so a `ready` that comes
//! before the suspend is not lost, and it is consumed by the suspend that observes it.
//!
//! A park is counted by hand rather than an `Rc`, because it lives in one of two places: in the
//! task that made it (every task has room for one park, its *own park*, at the end of its body:
//! a sleep, a yield or a wait of a task costs no allocation), or, when that is taken (a task that
//! waits on two things at once), there is no current task, or the task's output would overwrite
//! it, in an allocation of its own. See io-core's DESIGN.md, "Parks".
#![allow(unsafe_code)]

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::panic::Location;
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::ctl::{ParkedOn, TaskCtl};
use super::current::{cancel_pending, own_park, set_parked_on};
use crate::{Canceled, TimerId};

/// Where a task waits. Cheap to clone (a count); all clones are the same park.
///
/// ```
/// use io_core::Park;
/// let park = Park::new("signal");
/// assert!(!park.is_ready());
/// park.ready();
/// park.ready(); // idempotent
/// assert!(park.is_ready());
/// assert_eq!(park.what(), "signal");
/// ```
pub struct Park {
    /// A park in its own allocation (a leaked `Box`) or a task's own park (in its body); see
    /// [`ParkState::owner`].
    state: NonNull<ParkState>,
    /// `!Send`, `!Sync`, and not unwind-safe, like the `Rc` it replaced.
    _rc: PhantomData<Rc<ParkState>>,
}

/// A park's timers after the first: a thin pointer (one word in every park, where a boxed slice
/// takes two), allocated only for the rare park with more than one timer.
#[allow(clippy::box_collection)]
type MoreTimers = Box<Vec<TimerId>>;

/// The state of one park, shared by its handles.
pub(crate) struct ParkState {
    /// The handles; `0`: unused (a task's own park, free) or about to be freed.
    refs: Cell<u32>,
    /// `None`: a park apart, freed (or put back in [`SPARE_PARK`]) when the last handle goes.
    /// Otherwise the control block of the task whose own park this is, in the task's body:
    /// free for the task's next wait when the last handle goes. The park outlives the body
    /// (the body's end leaves its memory to the task's output, which is never large enough to
    /// reach the park, see `body.rs`), and while a handle exists the task's allocation is kept
    /// alive: by its join handle until the body ends, then by a waker of the task, which
    /// [`TaskCtl::finish`] keeps (rather than drops) while its park is held, and which the
    /// last handle then drops.
    owner: Option<NonNull<TaskCtl>>,
    readied: Cell<bool>,
    /// A suspend on this park has started and not yet returned.
    parked: Cell<bool>,
    /// Cells because parks are reused (a task's own park, [`SPARE_PARK`]).
    what: Cell<&'static str>,
    /// Where it was made: the suspend point a determinism report names.
    at: Cell<&'static Location<'static>>,
    /// A `Cell`, not a `RefCell`: the waker is only ever taken out and put back, and an idle
    /// task's memory (bench/) counts every word of its park.
    waker: Cell<Option<Waker>>,
    /// Timers armed for this park and not yet fired or disarmed: a canceled suspend evicts them.
    /// The first inline (`TimerId::EMPTY` when there is none), any others boxed: a park rarely
    /// has more than one, and keeping one should cost neither an allocation nor much room.
    timer: Cell<TimerId>,
    more_timers: Cell<Option<MoreTimers>>,
}

impl ParkState {
    /// An unused park (see `owner`).
    fn new(
        owner: Option<NonNull<TaskCtl>>,
        what: &'static str,
        at: &'static Location<'static>,
    ) -> ParkState {
        ParkState {
            refs: Cell::new(0),
            owner,
            readied: Cell::new(false),
            parked: Cell::new(false),
            what: Cell::new(what),
            at: Cell::new(at),
            waker: Cell::new(None),
            timer: Cell::new(TimerId::EMPTY),
            more_timers: Cell::new(None),
        }
    }

    /// The own park, free, of the task `ctl` controls, for its body (`ctl` with the whole
    /// block's reach: the park's last handle reads the block).
    #[inline]
    pub(super) fn own(ctl: NonNull<TaskCtl>) -> ParkState {
        ParkState::new(Some(ctl), "", Location::caller())
    }

    /// Whether no handle holds this park (a task's own park is then free for its next wait).
    #[inline]
    pub(super) fn is_free(&self) -> bool {
        self.refs.get() == 0
    }

    /// Empties the park for reuse; returns its waker and extra timers, which the caller drops
    /// once nothing touches the park any more (dropping a waker can run any code).
    #[inline]
    fn reset(&self) -> (Option<Waker>, Option<MoreTimers>) {
        self.readied.set(false);
        self.parked.set(false);
        // Normally empty already (a timer's queue holds a handle until it fires or is
        // disarmed, which forgets it); reset anyway.
        self.timer.set(TimerId::EMPTY);
        (self.waker.take(), self.more_timers.take())
    }
}

thread_local! {
    /// The heap park whose last handle was dropped most recently on this thread, reset, for
    /// [`Park::new`] to reuse when the current task's own park is taken (or outside any task).
    /// (One slot: a small pool cost more per yield than it saved.)
    static SPARE_PARK: Cell<Option<Box<ParkState>>> = const { Cell::new(None) };
}

impl Park {
    /// A new, unreadied park. `what` describes what it waits for; deadlock reports show it.
    /// The caller's source location is kept as the park's [`location`](Park::location).
    ///
    /// Inside a task whose own park is free, this is that park (no allocation).
    #[track_caller]
    #[inline]
    pub fn new(what: &'static str) -> Park {
        Park::new_at(what, Location::caller())
    }

    /// A new, unreadied park made for a wait at `at` (a primitive that makes its park later
    /// than it is called passes its caller's location).
    #[inline]
    pub fn new_at(what: &'static str, at: &'static Location<'static>) -> Park {
        match own_park() {
            Some(state) => Park::take(state, what, at),
            None => Park::new_apart(what, at),
        }
    }

    /// A new park in an allocation of its own, never the current task's own park (a park that
    /// outlives the wait of the task making it: a task's deadline park).
    pub(crate) fn new_apart(what: &'static str, at: &'static Location<'static>) -> Park {
        let spare = SPARE_PARK.try_with(Cell::take).ok().flatten();
        let state = match spare {
            Some(state) => {
                // Reset when it was put back (see `release`): only the name and place are new.
                state.what.set(what);
                state.at.set(at);
                state
            }
            None => Box::new(ParkState::new(None, what, at)),
        };
        Park::take(NonNull::from(Box::leak(state)), what, at)
    }

    /// The first handle of the unused, reset park `state`.
    #[inline]
    fn take(state: NonNull<ParkState>, what: &'static str, at: &'static Location<'static>) -> Park {
        let park = Park {
            state,
            _rc: PhantomData,
        };
        let state = park.state();
        state.refs.set(1);
        state.what.set(what);
        state.at.set(at);
        park
    }

    #[inline]
    fn state(&self) -> &ParkState {
        // SAFETY: a handle keeps its park's state alive: a heap park is freed only by its last
        // handle's drop (`release_heap`); a task's own park lives in the task's allocation (at
        // the end of its body, which the task's output never reaches), which the task's join
        // handle keeps alive while the task is unfinished, and a waker of the task, which
        // `TaskCtl::finish` keeps while a handle exists (`refs > 0`), after that, until the last
        // handle's `release_own` drops it. The body
        // is pinned, and the pointer was taken from it while pinned (at its first poll). The
        // state is only reached through shared references (cells), on this thread (`Park` is
        // `!Send`, and a task's own park is taken on the task's thread).
        unsafe { self.state.as_ref() }
    }

    /// What this park waits for.
    pub fn what(&self) -> &'static str {
        self.state().what.get()
    }

    /// Where the park was made: for a sleep, a yield or a [`Cx::park`](crate::Cx::park), the
    /// line of user code that asked for the wait.
    ///
    /// ```
    /// let park = io_core::Park::new("here");
    /// assert_eq!(park.location().line(), line!() - 1);
    /// ```
    pub fn location(&self) -> &'static Location<'static> {
        self.state().at.get()
    }

    /// Whether the park has been readied and no suspend has consumed that yet.
    pub fn is_ready(&self) -> bool {
        self.state().readied.get()
    }

    /// Makes the parked task runnable. Idempotent; harmless if nobody is parked or the task has
    /// finished. The default [`Io::ready`](crate::Io::ready) is this.
    #[inline]
    pub fn ready(&self) {
        let state = self.state();
        if state.readied.replace(true) {
            return;
        }
        let waker = state.waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether two handles are the same park.
    pub fn same_as(&self, other: &Park) -> bool {
        self.state == other.state
    }

    /// One poll of a suspend on this park; the default
    /// [`Io::suspend_raw`](crate::Io::suspend_raw).
    ///
    /// - The current task's cancellation (outside a shield) is checked first, on every poll:
    ///   `Ready(Err(Canceled))`, and the park is left as it is.
    /// - The first poll always yields (`Pending`), even if the park is already ready, so every
    ///   suspend point is a real scheduling point; a ready park re-wakes the task at once.
    /// - A later poll returns `Ready(Ok(()))` once the park is ready, consuming the readiness.
    pub fn poll_suspend(&self, cx: &mut Context<'_>) -> Poll<Result<(), Canceled>> {
        let state = self.state();
        if cancel_pending() {
            state.parked.set(false);
            return Poll::Ready(Err(Canceled));
        }
        if !state.parked.replace(true) {
            if state.readied.get() {
                cx.waker().wake_by_ref();
            } else {
                self.store_waker(cx);
            }
            set_parked_on(ParkedOn::Park(state.what.get()));
            return Poll::Pending;
        }
        if state.readied.replace(false) {
            state.parked.set(false);
            return Poll::Ready(Ok(()));
        }
        self.store_waker(cx);
        set_parked_on(ParkedOn::Park(state.what.get()));
        Poll::Pending
    }

    /// A suspend on this park was abandoned (its future dropped before it returned): the next
    /// suspend is a first suspend again, and the stale waker is released.
    pub(crate) fn abandon(&self) {
        let state = self.state();
        state.parked.set(false);
        let waker = state.waker.take();
        drop(waker);
    }

    /// Notes a timer armed for this park ([`TimerQueue`](crate::TimerQueue) keeps this list).
    #[inline]
    pub(crate) fn note_timer(&self, id: TimerId) {
        let state = self.state();
        if state.timer.get() == TimerId::EMPTY {
            state.timer.set(id);
        } else {
            let mut more = state.more_timers.take().unwrap_or_default();
            more.push(id);
            state.more_timers.set(Some(more));
        }
    }

    /// Forgets a timer that fired or was disarmed.
    #[inline]
    pub(crate) fn forget_timer(&self, id: TimerId) {
        let state = self.state();
        if state.timer.get() == id {
            state.timer.set(TimerId::EMPTY);
        } else if let Some(mut more) = state.more_timers.take() {
            more.retain(|t| *t != id);
            if !more.is_empty() {
                state.more_timers.set(Some(more));
            }
        }
    }

    /// Hands each timer still armed for this park to `evict`, forgetting them all (eviction on
    /// cancel, without allocating).
    pub(crate) fn evict_timers(&self, mut evict: impl FnMut(TimerId)) {
        let state = self.state();
        let first = state.timer.replace(TimerId::EMPTY);
        if first != TimerId::EMPTY {
            evict(first);
        }
        if let Some(more) = state.more_timers.take() {
            more.iter().copied().for_each(&mut evict);
        }
    }

    /// The timers still armed for this park, which it forgets (for eviction on cancel).
    pub fn take_timers(&self) -> Vec<TimerId> {
        let mut timers = Vec::new();
        self.evict_timers(|id| timers.push(id));
        timers
    }

    /// Sets the waker `ready` wakes, without suspending (a task's deadline park, see
    /// `TaskCtl::watch_deadline`).
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let old = self.state().waker.replace(Some(waker.clone()));
        drop(old);
    }

    #[inline]
    fn store_waker(&self, cx: &mut Context<'_>) {
        let state = self.state();
        let old = state.waker.take();
        match old {
            Some(waker) if waker.will_wake(cx.waker()) => state.waker.set(Some(waker)),
            _ => {
                state.waker.set(Some(cx.waker().clone()));
                // Dropped once the park is consistent again: dropping a waker can run any code.
                drop(old);
            }
        }
    }

    /// The last handle is gone: the park is reset, and freed (a heap park: into the spare slot)
    /// or left free for its task's next wait (a task's own park).
    #[cold]
    #[inline(never)]
    fn release_heap(state: NonNull<ParkState>) {
        // SAFETY: a heap park's state is a leaked `Box` (`new_apart`), and this was its last
        // handle (`refs` is 0): nothing else reaches it, so the box is taken back exactly once.
        let state = unsafe { Box::from_raw(state.as_ptr()) };
        // Dropping a waker can drop its task and run any code: do it before the park is in the
        // spare slot, where that code could take it.
        let (waker, more) = state.reset();
        drop(waker);
        drop(more);
        // A park already in the slot is freed, outside the slot.
        let replaced = SPARE_PARK.try_with(move |spare| spare.replace(Some(state)));
        drop(replaced);
    }

    /// The last handle of a task's own park is gone: the park is free for the task's next wait.
    ///
    /// Takes pointers, not references: dropping the kept waker may free the allocation that
    /// holds the park and the block, which must not happen while a reference argument to
    /// either is alive.
    #[inline]
    fn release_own(state: NonNull<ParkState>, ctl: NonNull<TaskCtl>) {
        // SAFETY: see `state`: the handle being dropped still keeps the park alive here.
        let (waker, more) = unsafe { state.as_ref() }.reset();
        // A task that finished while this park was held kept its own waker for it: the last
        // handle drops it (it may free the task, and this park with it: nothing touches the park
        // after).
        // SAFETY: the block of the task whose allocation holds the park, alive as long as the
        // park is (see `state`), reached through a pointer to the whole block (`ParkState::own`);
        // shared references only (cells), on its thread.
        let ctl = unsafe { ctl.as_ref() };
        let kept = ctl.release_kept_waker();
        drop(waker);
        drop(more);
        drop(kept);
    }
}

impl Clone for Park {
    #[inline]
    fn clone(&self) -> Park {
        let refs = &self.state().refs;
        refs.set(refs.get().checked_add(1).expect("2^32 handles of one park"));
        Park {
            state: self.state,
            _rc: PhantomData,
        }
    }
}

impl Drop for Park {
    /// The last handle of a park puts it back for reuse, reset.
    #[inline]
    fn drop(&mut self) {
        let state = self.state();
        let refs = state.refs.get() - 1;
        state.refs.set(refs);
        if refs != 0 {
            return;
        }
        match state.owner {
            None => Park::release_heap(self.state),
            Some(ctl) => Park::release_own(self.state, ctl),
        }
    }
}

impl fmt::Debug for Park {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Park")
            .field("what", &self.what())
            .field("ready", &self.is_ready())
            .finish()
    }
}
