//! Parks: the one thing a task suspends on.
//!
//! A [`Park`] is a one-slot readiness flag with the waker of the task parked on it. Whoever the
//! task waits for (a timer, another task, an I/O completion) calls [`Io::ready`](crate::Io::ready)
//! on it; the task's suspend point then returns. Readiness is remembered, so a `ready` that comes
//! before the suspend is not lost, and it is consumed by the suspend that observes it.

use std::cell::{Cell, RefCell};
use std::fmt;
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
    what: &'static str,
    readied: Cell<bool>,
    /// A suspend on this park has started and not yet returned.
    parked: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    /// Timers armed for this park and not yet fired or disarmed: a canceled suspend evicts them.
    timers: RefCell<Vec<TimerId>>,
}

impl Park {
    /// A new, unreadied park. `what` describes what it waits for; deadlock reports show it.
    pub fn new(what: &'static str) -> Park {
        Park(Rc::new(ParkState {
            what,
            readied: Cell::new(false),
            parked: Cell::new(false),
            waker: RefCell::new(None),
            timers: RefCell::new(Vec::new()),
        }))
    }

    /// What this park waits for.
    pub fn what(&self) -> &'static str {
        self.0.what
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
        let waker = self.0.waker.borrow_mut().take();
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
            task::set_parked_on(ParkedOn::Park(state.what));
            return Poll::Pending;
        }
        if state.readied.replace(false) {
            state.parked.set(false);
            return Poll::Ready(Ok(()));
        }
        self.store_waker(cx);
        task::set_parked_on(ParkedOn::Park(state.what));
        Poll::Pending
    }

    /// A suspend on this park was abandoned (its future dropped before it returned): the next
    /// suspend is a first suspend again, and the stale waker is released.
    pub(crate) fn abandon(&self) {
        self.0.parked.set(false);
        let waker = self.0.waker.borrow_mut().take();
        drop(waker);
    }

    /// Notes a timer armed for this park ([`TimerQueue`](crate::TimerQueue) keeps this list).
    pub(crate) fn note_timer(&self, id: TimerId) {
        self.0.timers.borrow_mut().push(id);
    }

    /// Forgets a timer that fired or was disarmed.
    pub(crate) fn forget_timer(&self, id: TimerId) {
        self.0.timers.borrow_mut().retain(|t| *t != id);
    }

    /// The timers still armed for this park, which it forgets (for eviction on cancel).
    pub fn take_timers(&self) -> Vec<TimerId> {
        std::mem::take(&mut *self.0.timers.borrow_mut())
    }

    fn store_waker(&self, cx: &mut Context<'_>) {
        let mut slot = self.0.waker.borrow_mut();
        match &*slot {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => {
                let old = slot.replace(cx.waker().clone());
                drop(slot);
                drop(old);
            }
        }
    }
}

impl fmt::Debug for Park {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Park")
            .field("what", &self.0.what)
            .field("ready", &self.0.readied.get())
            .finish()
    }
}
