//! The protocol: the object-safe [`Io`] trait every backend implements, and its [`Driver`] side.

use std::task::{Context, Poll};

use crate::op::{Handle, Op, OpId, Submitted};
use crate::{BackendCore, Canceled, Park, RawTask, SpawnError, SpawnOptions, TimerId};

/// The Io protocol. Everything else in ioswap (sleep, join, cancel, race, channels, I/O) is written
/// once on top of these operations.
///
/// User code never calls it directly: it takes a [`Cx`](crate::Cx), which holds an `Rc<dyn Io>`.
/// A backend implements it together with [`Driver`], the side only a driver loop calls. Most
/// operations have defaults written once over the backend's [`BackendCore`], which keeps the
/// bookkeeping every backend shares (run queue, timers, live tasks, clock, choices); a backend
/// writes only what is its own: how it performs I/O ([`Io::submit`]) and, when it runs tasks
/// inline, how it spawns.
///
/// Semantics every backend must keep (the conformance suite checks them):
/// - [`suspend_raw`](Io::suspend_raw) is the only suspension point; it checks the current task's
///   cancellation before parking and after resuming.
/// - [`ready`](Io::ready) is idempotent and harmless on a finished task.
/// - Timers fire in deadline order, ties in arming order; a past deadline fires on the next
///   turn; `u64::MAX` never fires.
pub trait Io {
    /// The backend's shared bookkeeping, which the defaults below are written over.
    fn core(&self) -> &BackendCore;

    /// Starts a type-erased task built with [`RawTask::new`] on the core's run queue. The default
    /// queues it. A backend that runs tasks inline runs it to completion before returning, and
    /// refuses `opts.requires_concurrency()` with [`SpawnError::ConcurrencyUnavailable`]; every
    /// backend refuses with [`SpawnError::ShutDown`] once its run has returned.
    fn spawn_raw(&self, task: RawTask, opts: &SpawnOptions) -> Result<(), SpawnError> {
        let _ = opts;
        self.core().admit(&task)?;
        task.schedule();
        Ok(())
    }

    /// One poll of the suspension point: park the current task on `park` until it is readied.
    /// See [`Park::poll_suspend`] for the exact rules, which the default keeps. When it raises
    /// `Canceled`, the default also evicts every timer still armed for `park`.
    ///
    /// On a backend that has shut down nothing will ever ready `park`, so every suspend there —
    /// shielded or not, inside a task of another backend or outside any task — returns
    /// `Err(Canceled)` at once instead of waiting forever.
    fn suspend_raw(&self, park: &Park, cx: &mut Context<'_>) -> Poll<Result<(), Canceled>> {
        suspend_on(self, park, cx)
    }

    /// Makes the task parked on `park` runnable.
    fn ready(&self, park: &Park) {
        park.ready();
    }

    /// Milliseconds since the backend started: virtual on fiber, monotonic real time elsewhere.
    fn now_ms(&self) -> u64 {
        self.core().now_ms()
    }

    /// Readies `park` once the clock reaches `deadline_ms`. On a backend that has shut down it
    /// arms nothing (and the wait on `park` fails, see [`Io::suspend_raw`]).
    fn arm_timer(&self, deadline_ms: u64, park: &Park) -> TimerId {
        self.core().arm_timer(deadline_ms, park)
    }

    /// Disarms a timer: the milliseconds it had left, or `None` if it already fired (or was
    /// disarmed). A timer armed for `u64::MAX` reports `u64::MAX`.
    fn disarm_timer(&self, id: TimerId) -> Option<u64> {
        self.core().disarm_timer(id)
    }

    /// A random number for choices written once above the protocol (which ready `select` case
    /// wins). Fiber draws it from a generator seeded by its seed, so the choices are part of the
    /// reproducible run; real backends use a fixed-seed [`SplitMix64`](crate::SplitMix64).
    fn random_u64(&self) -> u64 {
        self.core().random_u64()
    }

    /// Whether the fault point `site` in user code fires now ([`Cx::buggify`](crate::Cx::buggify)).
    /// Real backends never fire one (the default); a simulation decides from its seed.
    fn buggify(&self, site: &'static str) -> bool {
        let _ = site;
        false
    }

    /// Starts an I/O op (see [`crate::op`]). Either it is already finished ([`Submitted::Done`]:
    /// blocking performs it inline, fiber may answer from its simulated world), or it is in flight
    /// ([`Submitted::InFlight`]) and the backend owns it — buffers included — until its
    /// completion, which it delivers through the [`OpSlot`](crate::OpSlot) it returned
    /// ([`OpSlot::complete`](crate::OpSlot::complete) also readies the waiting task). A backend
    /// with too many ops in flight queues the op (back-pressure); it never fails a submit for lack
    /// of room.
    fn submit(&self, op: Op) -> Submitted;

    /// Asks the backend to cancel an op in flight. The op still completes — with a canceled
    /// error, or with its real result if it finished first — and its park is readied then.
    fn cancel_op(&self, id: OpId) {
        let _ = id;
    }

    /// The op's future is gone: cancel the op, keep its memory until its final completion, then
    /// drop it, closing whatever it produced (an accepted socket, an opened file). Also called
    /// for an op whose completion was delivered but never taken (its handles are gone now).
    fn discard_op(&self, id: OpId) {
        let _ = id;
    }

    /// A file, listener or socket made outside the backend (`TcpStream::from_std`,
    /// `TcpListener::from_std`) is handed to it. The default does nothing; a readiness-based
    /// backend makes sockets non-blocking here, once, rather than before every op.
    fn adopt(&self, handle: &Handle) {
        let _ = handle;
    }
}

/// The driver side of a backend: what only a loop that runs it calls ([`run`](crate::run)),
/// never code written against the protocol.
pub trait Driver: Io {
    /// One turn of the loop: fire due timers, run what is ready, reap I/O, and wait (for real or
    /// virtually) no later than `deadline_ms` when there is nothing to run. Returns what could
    /// still make a task runnable ([`Next`]), so a driver can tell waiting from a deadlock.
    fn poll(&self, deadline_ms: u64) -> Next;

    /// Ends the backend's run: later spawns fail with [`SpawnError::ShutDown`], waits fail with
    /// `Canceled`; every task still alive is dropped and armed timers are cleared. The default
    /// is [`BackendCore::shut_down`]; a backend with I/O in flight drains it afterwards.
    fn shut_down(&self) {
        self.core().shut_down();
    }
}

static_assertions::assert_obj_safe!(Io, Driver);

/// The default [`Io::suspend_raw`], for a backend that overrides it to observe its suspends
/// and then does what every backend does.
#[inline]
pub fn suspend_on<I: Io + ?Sized>(
    io: &I,
    park: &Park,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Canceled>> {
    let poll = if io.core().is_shut_down() {
        Poll::Ready(Err(Canceled))
    } else {
        park.poll_suspend(cx)
    };
    if let Poll::Ready(Err(Canceled)) = poll {
        park.evict_timers(|timer| {
            io.disarm_timer(timer);
        });
    }
    poll
}

/// What a turn of the loop ([`Driver::poll`]) leaves behind: what, if anything, can still make a
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
