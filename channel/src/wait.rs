//! Waiting on channels: the token a counterpart completes, the slot a value passes through, and
//! the alarm that wakes a waiter when a timed message falls due.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use io_core::{Cx, Park, TimerId};

use crate::queue::Place;

/// One wait of one task: the park it suspends on, and which of its cases a counterpart
/// completed. A plain send or receive has one case (0); a select shares one `Wait` among all its
/// cases, so the first counterpart to complete a case claims the whole select and later
/// counterparts skip it.
pub(crate) struct Wait {
    pub(crate) park: Park,
    done: Cell<Option<usize>>,
}

impl Wait {
    pub(crate) fn new(what: &'static str) -> Rc<Wait> {
        Rc::new(Wait {
            park: Park::new(what),
            done: Cell::new(None),
        })
    }

    /// The case a counterpart completed, if any.
    pub(crate) fn done_case(&self) -> Option<usize> {
        self.done.get()
    }

    /// Whether a counterpart may still complete this wait.
    pub(crate) fn is_open(&self) -> bool {
        self.done.get().is_none()
    }

    /// Marks `case` completed and wakes the waiting task.
    pub(crate) fn complete(&self, cx: &Cx, case: usize) {
        debug_assert!(self.is_open(), "a wait is completed once");
        self.done.set(Some(case));
        cx.ready(&self.park);
    }

    /// Wakes the waiting task to look again (a close, a timer), completing nothing.
    pub(crate) fn nudge(&self, cx: &Cx) {
        cx.ready(&self.park);
    }
}

/// One case of a wait, queued on a channel. For a receiver the slot starts empty and a sender
/// fills it; for a sender it holds the value until a receiver takes it.
pub(crate) struct Waiter<T> {
    pub(crate) wait: Rc<Wait>,
    pub(crate) case: usize,
    pub(crate) slot: RefCell<Option<T>>,
    /// Where it is in the channel queue it waits in, if any.
    pub(crate) place: Place,
}

impl<T> Waiter<T> {
    pub(crate) fn new(wait: Rc<Wait>, case: usize, slot: Option<T>) -> Rc<Waiter<T>> {
        Rc::new(Waiter {
            wait,
            case,
            slot: RefCell::new(slot),
            place: Place::default(),
        })
    }
}

/// The waiter of a finished send or receive, kept by its channel for the next one of the same
/// kind: a ping-pong waits on every receive, and allocating a `Wait` and a `Waiter` each time was
/// a fifth of a round trip in `bench/`. One slot per kind of wait (a channel keeps one for
/// sends, one for `recv`s, one for streams, so a kept park keeps its name); nothing is ever
/// shared through it, as a waiter is kept only once its last other handle is gone.
pub(crate) struct Spare<T>(Option<Rc<Waiter<T>>>);

impl<T> Spare<T> {
    pub(crate) fn new() -> Spare<T> {
        Spare(None)
    }

    /// A waiter for one plain send or receive (case 0) holding `slot`: the kept one, else a new
    /// one whose park waits for `what` (the same for every waiter of this slot).
    pub(crate) fn take(&mut self, what: &'static str, slot: Option<T>) -> Rc<Waiter<T>> {
        if let Some(mut waiter) = self.0.take() {
            if let Some(unique) = Rc::get_mut(&mut waiter) {
                *unique.slot.get_mut() = slot;
                return waiter;
            }
        }
        Waiter::new(Wait::new(what), 0, slot)
    }

    /// Keeps `waiter`, whose suspend has returned (so its park is not parked on), if nothing
    /// else holds it or its wait, it holds no value, and its park has no readiness left over.
    /// A waiter whose park may have had a timer is not to be offered: its queue could still
    /// ready it. What is not kept (or is displaced) comes back, to be dropped outside the
    /// channel's borrow (dropping a park can drop a waker, and so a task).
    pub(crate) fn keep(&mut self, mut waiter: Rc<Waiter<T>>) -> Option<Rc<Waiter<T>>> {
        let Some(unique) = Rc::get_mut(&mut waiter) else {
            return Some(waiter);
        };
        if unique.case != 0 || unique.slot.get_mut().is_some() {
            return Some(waiter);
        }
        let Some(wait) = Rc::get_mut(&mut unique.wait) else {
            return Some(waiter);
        };
        if wait.park.is_ready() {
            return Some(waiter);
        }
        wait.done.set(None);
        self.0.replace(waiter)
    }
}

/// At most one protocol timer, kept armed for a changing deadline; disarmed on drop, so a waiter
/// that leaves leaves no timer behind (which would move fiber's virtual clock for nothing). It
/// holds its `Cx` only while armed: most receives never arm one.
#[derive(Default)]
pub(crate) struct Alarm {
    armed: Option<(Cx, TimerId)>,
    /// A timer was armed since [`Alarm::default`]: its park is not to be reused.
    used: bool,
}

impl Alarm {
    /// Keeps a timer armed on `park` for `deadline` (`None`: no timer).
    pub(crate) fn set(&mut self, cx: &Cx, deadline: Option<u64>, park: &Park) {
        if self.armed.as_ref().map(|(_, t)| t.deadline_ms()) == deadline {
            return;
        }
        self.clear();
        if let Some(deadline) = deadline {
            self.armed = Some((cx.clone(), cx.arm_timer(deadline, park)));
            self.used = true;
        }
    }

    /// Whether a timer was ever armed on this alarm.
    pub(crate) fn was_used(&self) -> bool {
        self.used
    }

    pub(crate) fn clear(&mut self) {
        if let Some((cx, timer)) = self.armed.take() {
            cx.disarm_timer(timer);
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.clear();
    }
}
