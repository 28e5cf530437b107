//! The thread's *current task*: the task being polled, whose cancel state suspend points read.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ptr::NonNull;

use super::budget;
use super::ctl::{ParkedOn, TaskCtl, OWN_PARK};
use super::park::ParkState;
use super::TaskRef;

thread_local! {
    /// The control block of the task being polled on this thread. Set only by [`Enter`], for
    /// the length of one poll of the task's body, during which its `Runnable` is running and so
    /// async-task's allocation (where the block lives) is alive.
    static CURRENT: Cell<Option<NonNull<TaskCtl>>> = const { Cell::new(None) };
}

/// Runs `f` with the task currently being polled on this thread, if any.
///
/// While the thread's locals are being destroyed (a task dropped by a thread-local destructor at
/// thread exit) there is no current task: drop code may still ask, and must not panic.
#[inline]
pub(super) fn with_current<R>(f: impl FnOnce(Option<&TaskCtl>) -> R) -> R {
    let mut f = Some(f);
    let result = CURRENT.try_with(|cell| {
        // SAFETY: the pointer was set by an `Enter` that is still alive (it restores the
        // previous one when its poll ends), so the block is alive (see `CURRENT`); it is only
        // reached through shared references, on this thread.
        let current = cell.get().map(|ctl| unsafe { ctl.as_ref() });
        (f.take().expect("called once"))(current)
    });
    match (result, f) {
        (Ok(result), _) => result,
        (Err(_), Some(f)) => f(None),
        (Err(_), None) => unreachable!("try_with fails before running its closure"),
    }
}

/// Makes a task current for the duration of one poll, with a full operation budget
/// (`op_budget`, see [`budget`](super::budget)); restores the previous task and what its poll
/// had left of its budget on drop, even if the poll panics.
pub(crate) struct Enter {
    previous: Option<NonNull<TaskCtl>>,
    previous_budget: u64,
}

impl Enter {
    /// Makes `ctl` current; it must stay alive until the returned guard is dropped (the task
    /// body enters around one poll of its own task).
    #[inline]
    pub(crate) fn new(ctl: &TaskCtl, op_budget: u32) -> Enter {
        Enter {
            previous: CURRENT
                .try_with(|cell| cell.replace(Some(NonNull::from(ctl))))
                .ok()
                .flatten(),
            previous_budget: budget::install(budget::refill_value(op_budget)),
        }
    }
}

impl Drop for Enter {
    #[inline]
    fn drop(&mut self) {
        budget::restore(self.previous_budget);
        let previous = self.previous.take();
        // During thread-local destruction there is nothing to restore.
        let _ = CURRENT.try_with(|cell| cell.set(previous));
    }
}

/// The current task's own park, if it is free (no handle holds it) and the task has not
/// finished: the state for [`Park::new`](crate::Park::new) to take.
#[inline]
pub(super) fn own_park() -> Option<NonNull<ParkState>> {
    CURRENT
        .try_with(|cell| {
            let ctl = cell.get()?;
            // SAFETY: as in `with_current`: the block is alive for the current poll.
            let block = unsafe { ctl.as_ref() };
            let park = block.park.get()?;
            if block.is_finished() {
                return None;
            }
            if !block.set(OWN_PARK) {
                // The task's first wait: the park is written now (a task that never waits never
                // pays for it).
                // SAFETY: `park` is the place of the park in the task's body, which is being
                // polled (pinned, alive), taken from the body's own `&mut` (`as_mut_ptr`); it is
                // written once, before any handle or read of it (`OWN_PARK` was clear).
                unsafe { park.as_ptr().write(ParkState::own(ctl)) };
                return Some(park);
            }
            // SAFETY: written (above, at the first take), in the body being polled; shared
            // access, on this thread.
            unsafe { park.as_ref() }.is_free().then_some(park)
        })
        .ok()
        .flatten()
}

/// Whether the current task has a cancel request it must observe now (not shielded).
/// Outside any task this is `false`.
pub(crate) fn cancel_pending() -> bool {
    with_current(|ctl| ctl.is_some_and(|ctl| ctl.cancel_pending()))
}

/// The task being polled on this thread, if any.
pub(crate) fn current_task() -> Option<TaskRef> {
    with_current(|ctl| ctl.map(TaskRef::of))
}

/// Records what the current task is about to park on.
pub(crate) fn set_parked_on(what: ParkedOn) {
    with_current(|ctl| {
        if let Some(ctl) = ctl {
            ctl.set_parked_on(what);
        }
    });
}

/// Raises the current task's shield depth for one poll of a shielded future. A guard lives
/// inside that poll (a local of the shielded future's `poll`), so the task stays current, and
/// alive, until it is dropped.
pub(crate) struct ShieldGuard(Option<NonNull<TaskCtl>>);

impl ShieldGuard {
    pub(crate) fn enter() -> ShieldGuard {
        ShieldGuard(with_current(|ctl| {
            let ctl = ctl?;
            let depth = ctl.shield_depth.get().checked_add(1);
            ctl.shield_depth
                .set(depth.expect("more than 65535 nested shields"));
            Some(NonNull::from(ctl))
        }))
    }
}

impl Drop for ShieldGuard {
    fn drop(&mut self) {
        if let Some(ctl) = self.0 {
            // SAFETY: the guard is dropped inside the poll it was made in (see the type's
            // note), while the task it raised is being polled, so its block is alive; shared
            // access only, on this thread (the guard is `!Send`).
            let ctl = unsafe { ctl.as_ref() };
            ctl.shield_depth.set(ctl.shield_depth.get() - 1);
        }
    }
}
