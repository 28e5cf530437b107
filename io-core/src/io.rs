//! The protocol: the object-safe [`Io`] trait every backend implements.

use std::task::{Context, Poll};

use crate::op::{Completion, Op, OpId, Submitted};
use crate::{Canceled, Park, RawTask, RunQueue, SpawnError, SpawnOptions, TaskRef, TimerId};

/// The Io protocol. Everything else in ioswap (sleep, join, cancel, race, channels, I/O) is written
/// once on top of these operations; a backend implements only this.
///
/// User code never calls it directly: it takes a [`Cx`](crate::Cx), which holds an `Rc<dyn Io>`.
///
/// Semantics every backend must keep (the conformance suite checks them):
/// - [`suspend_raw`](Io::suspend_raw) is the only suspension point; it checks the current task's
///   cancellation before parking and after resuming.
/// - [`ready`](Io::ready) is idempotent and harmless on a finished task.
/// - Timers fire in deadline order, ties in arming order; a past deadline fires on the next
///   turn; `u64::MAX` never fires.
pub trait Io {
    /// The backend's short name: `"blocking"`, `"fiber"`, `"uring"`.
    fn name(&self) -> &'static str;

    /// Starts a type-erased task built with [`RawTask::new`] on [`Io::run_queue`]. A backend that
    /// runs tasks inline runs it to completion before returning, and refuses
    /// `opts.requires_concurrency()` with [`SpawnError::ConcurrencyUnavailable`]; every backend
    /// refuses with [`SpawnError::ShutDown`] once its run has returned.
    fn spawn_raw(&self, task: RawTask, opts: &SpawnOptions) -> Result<(), SpawnError>;

    /// One poll of the suspension point: park the current task on `park` until it is readied.
    /// See [`Park::poll_suspend`] for the exact rules, which the default keeps. When it raises
    /// `Canceled`, the default also evicts every timer still armed for `park`.
    ///
    /// On a backend that has shut down nothing will ever ready `park`, so every suspend there —
    /// shielded or not, inside a task of another backend or outside any task — returns
    /// `Err(Canceled)` at once instead of waiting forever.
    fn suspend_raw(&self, park: &Park, cx: &mut Context<'_>) -> Poll<Result<(), Canceled>> {
        let poll = if self.run_queue().is_closed() {
            Poll::Ready(Err(Canceled))
        } else {
            park.poll_suspend(cx)
        };
        if let Poll::Ready(Err(Canceled)) = poll {
            park.evict_timers(|timer| {
                self.disarm_timer(timer);
            });
        }
        poll
    }

    /// Makes the task parked on `park` runnable.
    fn ready(&self, park: &Park) {
        park.ready();
    }

    /// One turn of the loop: fire due timers, run what is ready, reap I/O, and wait (for real or
    /// virtually) no later than `deadline_ms` when there is nothing to run. Returns what could
    /// still make a task runnable ([`Next`]), so a driver can tell waiting from a deadlock.
    fn poll(&self, deadline_ms: u64) -> Next;

    /// Milliseconds since the backend started: virtual on fiber, monotonic real time elsewhere.
    fn now_ms(&self) -> u64;

    /// Readies `park` once the clock reaches `deadline_ms`. On a backend that has shut down it
    /// arms nothing (and the wait on `park` fails, see [`Io::suspend_raw`]).
    fn arm_timer(&self, deadline_ms: u64, park: &Park) -> TimerId;

    /// Disarms a timer: the milliseconds it had left, or `None` if it already fired (or was
    /// disarmed). A timer armed for `u64::MAX` reports `u64::MAX`.
    fn disarm_timer(&self, id: TimerId) -> Option<u64>;

    /// A random number for choices written once above the protocol (which ready `select` case
    /// wins). Fiber draws it from a generator seeded by its seed, so the choices are part of the
    /// reproducible run; real backends use a per-backend [`SplitMix64`](crate::SplitMix64).
    fn random_u64(&self) -> u64;

    /// The queue this backend's wakers schedule onto.
    fn run_queue(&self) -> &RunQueue;

    /// Every task spawned here that has not finished, in id order.
    fn live_tasks(&self) -> Vec<TaskRef>;

    /// Every live task that is parked, for a deadlock report.
    fn blocked_tasks(&self) -> Vec<crate::BlockedTask>;

    /// Starts an I/O op (see [`crate::op`]). Either it is already finished ([`Submitted::Done`]:
    /// blocking performs it inline, fiber refuses real I/O), or it is in flight and the backend
    /// owns it — buffers included — until its completion, when it readies `park` and keeps the
    /// [`Completion`] for [`Io::take_completion`]. A backend with too many ops in flight queues
    /// the op (back-pressure); it never fails a submit for lack of room.
    fn submit(&self, op: Op, park: &Park) -> Submitted;

    /// The completion of an op in flight, once it has completed (then the id is spent).
    /// The default suits backends whose `submit` always returns [`Submitted::Done`].
    fn take_completion(&self, id: OpId) -> Option<Completion> {
        let _ = id;
        None
    }

    /// Asks the backend to cancel an op in flight. The op still completes — with a canceled
    /// error, or with its real result if it finished first — and its park is readied then.
    fn cancel_op(&self, id: OpId) {
        let _ = id;
    }

    /// The op's future is gone: cancel the op, keep its memory until its final completion, then
    /// drop it, closing whatever it produced (an accepted socket, an opened file).
    fn discard_op(&self, id: OpId) {
        let _ = id;
    }

    /// Ends the backend's run: later spawns fail with [`SpawnError::ShutDown`]; queued tasks and
    /// armed timers are dropped.
    fn shut_down(&self);
}

static_assertions::assert_obj_safe!(Io);

/// What a turn of the loop ([`Io::poll`]) leaves behind: what, if anything, can still make a
/// task runnable. Drivers wait on the first three and stop at the last two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A task is runnable: the next turn runs it without waiting.
    Run,
    /// A timer is armed; the earliest is due at this time (milliseconds on the backend's clock).
    Timer(u64),
    /// No timer is armed, but I/O is in flight: its completion will wake the loop.
    Io,
    /// Only a wake from outside the protocol can come: a task waits on a foreign future, whose
    /// waker another thread may wake. A backend that never waits for such wakes (fiber, whose
    /// run must stay a function of its seed) reports [`Next::Idle`] instead.
    Foreign,
    /// Nothing can ever make a task runnable.
    Idle,
}

impl Next {
    /// Whether something the backend drives itself (a task, a timer, I/O) will come: waiting
    /// for it cannot hang.
    pub fn will_come(self) -> bool {
        matches!(self, Next::Run | Next::Timer(_) | Next::Io)
    }
}
