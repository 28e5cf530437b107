//! Parks: the one thing a task suspends on.
//!
//! A [`Park`] is a one-slot readiness flag with the waker of the task parked on it. Whoever the
//! task waits for (a timer, another task, an I/O completion) calls [`Io::ready`](crate::Io::ready)
//! on it; the task's suspend point then returns. Readiness is remembered, so a `ready` that comes
//! before the suspend is not lost, and it is consumed by the suspend that observes it.

use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::task::{self, ParkedOn};
use crate::{Canceled, TimerId};

/// Where a task waits. Cheap to clone (an `Rc`); all clones are the same park.
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
#[derive(Clone)]
pub struct Park(Rc<ParkState>);

struct ParkState {
    /// A `Cell` because parks are reused (see [`SPARE_PARK`]).
    what: Cell<&'static str>,
    /// Where it was made: the suspend point a determinism report names.
    at: Cell<&'static Location<'static>>,
    readied: Cell<bool>,
    /// A suspend on this park has started and not yet returned.
    parked: Cell<bool>,
    /// A `Cell`, not a `RefCell`: the waker is only ever taken out and put back, and an idle
    /// task's memory (bench/) counts every word of its park.
    waker: Cell<Option<Waker>>,
    /// Timers armed for this park and not yet fired or disarmed: a canceled suspend evicts them.
    /// The first inline ([`TimerId::NONE`] when there is none), any others boxed: a park rarely
    /// has more than one, and keeping one should cost neither an allocation nor much room.
    timer: Cell<TimerId>,
    more_timers: Cell<Option<Box<[TimerId]>>>,
}

thread_local! {
    /// The park whose last handle was dropped most recently on this thread, reset, for
    /// [`Park::new`] to reuse: a park lives for one wait (a sleep, a yield, a receive), and a
    /// task that waits in a loop drops one just before it makes the next. Allocating each was a
    /// tenth of a task switch in `bench/`'s yield-ping. (One slot: a small pool cost more per
    /// yield than it saved.)
    static SPARE_PARK: Cell<Option<Rc<ParkState>>> = const { Cell::new(None) };
}

impl Park {
    /// A new, unreadied park. `what` describes what it waits for; deadlock reports show it.
    /// The caller's source location is kept as the park's [`location`](Park::location).
    #[track_caller]
    #[inline]
    pub fn new(what: &'static str) -> Park {
        Park::new_at(what, Location::caller())
    }

    /// A new, unreadied park made for a wait at `at` (a primitive that makes its park later
    /// than it is called passes its caller's location).
    pub fn new_at(what: &'static str, at: &'static Location<'static>) -> Park {
        let spare = SPARE_PARK.try_with(Cell::take).ok().flatten();
        match spare {
            Some(state) => {
                // Reset when it was put back (see `Drop`): only the name and place are new.
                state.what.set(what);
                state.at.set(at);
                Park(state)
            }
            None => Park(Rc::new(ParkState {
                what: Cell::new(what),
                at: Cell::new(at),
                readied: Cell::new(false),
                parked: Cell::new(false),
                waker: Cell::new(None),
                timer: Cell::new(TimerId::NONE),
                more_timers: Cell::new(None),
            })),
        }
    }

    /// What this park waits for.
    pub fn what(&self) -> &'static str {
        self.0.what.get()
    }

    /// Where the park was made: for a sleep, a yield or a [`Cx::park`](crate::Cx::park), the
    /// line of user code that asked for the wait.
    ///
    /// ```
    /// let park = io_core::Park::new("here");
    /// assert_eq!(park.location().line(), line!() - 1);
    /// ```
    pub fn location(&self) -> &'static Location<'static> {
        self.0.at.get()
    }

    /// Whether the park has been readied and no suspend has consumed that yet.
    pub fn is_ready(&self) -> bool {
        self.0.readied.get()
    }

    /// Makes the parked task runnable. Idempotent; harmless if nobody is parked or the task has
    /// finished. The default [`Io::ready`](crate::Io::ready) is this.
    pub fn ready(&self) {
        if self.0.readied.replace(true) {
            return;
        }
        let waker = self.0.waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether two handles are the same park.
    pub fn same_as(&self, other: &Park) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
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
        let state = &*self.0;
        if task::cancel_pending() {
            state.parked.set(false);
            return Poll::Ready(Err(Canceled));
        }
        if !state.parked.replace(true) {
            if state.readied.get() {
                cx.waker().wake_by_ref();
            } else {
                self.store_waker(cx);
            }
            task::set_parked_on(ParkedOn::Park(state.what.get()));
            return Poll::Pending;
        }
        if state.readied.replace(false) {
            state.parked.set(false);
            return Poll::Ready(Ok(()));
        }
        self.store_waker(cx);
        task::set_parked_on(ParkedOn::Park(state.what.get()));
        Poll::Pending
    }

    /// A suspend on this park was abandoned (its future dropped before it returned): the next
    /// suspend is a first suspend again, and the stale waker is released.
    pub(crate) fn abandon(&self) {
        self.0.parked.set(false);
        let waker = self.0.waker.take();
        drop(waker);
    }

    /// Notes a timer armed for this park ([`TimerQueue`](crate::TimerQueue) keeps this list).
    pub(crate) fn note_timer(&self, id: TimerId) {
        if self.0.timer.get() == TimerId::NONE {
            self.0.timer.set(id);
        } else {
            let mut more = self.0.more_timers.take().map(Vec::from).unwrap_or_default();
            more.push(id);
            self.0.more_timers.set(Some(more.into_boxed_slice()));
        }
    }

    /// Forgets a timer that fired or was disarmed.
    pub(crate) fn forget_timer(&self, id: TimerId) {
        if self.0.timer.get() == id {
            self.0.timer.set(TimerId::NONE);
        } else if let Some(more) = self.0.more_timers.take() {
            let mut more = Vec::from(more);
            more.retain(|t| *t != id);
            if !more.is_empty() {
                self.0.more_timers.set(Some(more.into_boxed_slice()));
            }
        }
    }

    /// Hands each timer still armed for this park to `evict`, forgetting them all (eviction on
    /// cancel, without allocating).
    pub(crate) fn evict_timers(&self, mut evict: impl FnMut(TimerId)) {
        let first = self.0.timer.replace(TimerId::NONE);
        if first != TimerId::NONE {
            evict(first);
        }
        if let Some(more) = self.0.more_timers.take() {
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
        let old = self.0.waker.replace(Some(waker.clone()));
        drop(old);
    }

    fn store_waker(&self, cx: &mut Context<'_>) {
        let old = self.0.waker.take();
        match old {
            Some(waker) if waker.will_wake(cx.waker()) => self.0.waker.set(Some(waker)),
            _ => {
                self.0.waker.set(Some(cx.waker().clone()));
                // Dropped once the park is consistent again: dropping a waker can run any code.
                drop(old);
            }
        }
    }
}

impl Drop for Park {
    /// The last handle of a park puts it back for reuse, reset.
    fn drop(&mut self) {
        if Rc::strong_count(&self.0) != 1 || Rc::weak_count(&self.0) != 0 {
            return;
        }
        // Dropping a waker can drop its task and run any code: do it before the park is in the
        // spare slot, where that code could take it.
        drop(self.0.waker.take());
        self.0.readied.set(false);
        self.0.parked.set(false);
        // Normally empty already (a timer's queue holds a handle until it fires or is
        // disarmed, which forgets it); reset anyway.
        self.0.timer.set(TimerId::NONE);
        drop(self.0.more_timers.take());
        let state = self.0.clone();
        // A park already in the slot is freed, outside the slot.
        let replaced = SPARE_PARK.try_with(move |spare| spare.replace(Some(state)));
        drop(replaced);
    }
}

impl fmt::Debug for Park {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Park")
            .field("what", &self.0.what.get())
            .field("ready", &self.0.readied.get())
            .finish()
    }
}
