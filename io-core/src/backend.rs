//! [`BackendCore`]: the bookkeeping every backend keeps the same way.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::time::Instant;

use crate::{
    BlockedTask, Next, Park, RawTask, RealClock, RunError, RunQueue, SpawnError, SplitMix64,
    TaskRef, TaskSet, TimerId, TimerQueue,
};

/// A backend's name, clock, run queue, timers, live tasks and choice generator, and whether it
/// has run and shut down: everything that does not depend on how a backend waits or performs
/// I/O. Backends embed one and return it from [`Io::core`](crate::Io::core); the protocol's
/// defaults and the driver [`run`](crate::run) are written over it once.
///
/// Every method releases its borrows before a park is readied or dropped, so waker and drop code
/// may call back into the backend.
///
/// ```
/// use io_core::{BackendCore, Park, RunQueue};
/// let core = BackendCore::virtual_clock("test", RunQueue::new(), 0);
/// let park = Park::new("t");
/// let id = core.arm_timer(20, &park);
/// assert_eq!(core.next_deadline(), Some(20));
/// core.advance_to(5);
/// assert_eq!(core.disarm_timer(id), Some(15));
/// core.arm_timer(10, &park);
/// core.advance_to(10);
/// core.fire_due();
/// assert!(park.is_ready());
/// assert!(core.start_run().is_ok());
/// assert!(core.start_run().is_err(), "a backend runs once");
/// ```
pub struct BackendCore {
    name: &'static str,
    clock: Clock,
    /// Serves [`Io::random_u64`](crate::Io::random_u64).
    choices: SplitMix64,
    queue: RunQueue,
    timers: RefCell<TimerQueue>,
    tasks: RefCell<TaskSet>,
    ran: Cell<bool>,
    shut_down: Cell<bool>,
}

/// A backend's clock, in milliseconds since it started.
enum Clock {
    /// Moved only by the backend ([`BackendCore::advance_to`]).
    Virtual(Cell<u64>),
    /// Monotonic real time.
    Real(RealClock),
}

impl BackendCore {
    /// Bookkeeping for a backend named `name` on a virtual clock starting at 0, around `queue`
    /// (the queue its wakers schedule onto), drawing choices from `choice_seed`.
    pub fn virtual_clock(name: &'static str, queue: RunQueue, choice_seed: u64) -> BackendCore {
        BackendCore::build(name, Clock::Virtual(Cell::new(0)), queue, choice_seed)
    }

    /// Bookkeeping for a backend named `name` on the real monotonic clock, starting now.
    pub fn real_clock(name: &'static str, queue: RunQueue, choice_seed: u64) -> BackendCore {
        BackendCore::build(name, Clock::Real(RealClock::start()), queue, choice_seed)
    }

    fn build(name: &'static str, clock: Clock, queue: RunQueue, choice_seed: u64) -> BackendCore {
        BackendCore {
            name,
            clock,
            choices: SplitMix64::new(choice_seed),
            queue,
            timers: RefCell::new(TimerQueue::new()),
            tasks: RefCell::new(TaskSet::new()),
            ran: Cell::new(false),
            shut_down: Cell::new(false),
        }
    }

    /// The backend's short name: `"blocking"`, `"fiber"`, `"uring"`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The clock ([`Io::now_ms`](crate::Io::now_ms)).
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match &self.clock {
            Clock::Virtual(now) => now.get(),
            Clock::Real(clock) => clock.now_ms(),
        }
    }

    /// Moves a virtual clock forward to `ms` (never back). Does nothing on a real clock.
    pub fn advance_to(&self, ms: u64) {
        if let Clock::Virtual(now) = &self.clock {
            if ms > now.get() {
                now.set(ms);
            }
        }
    }

    /// The real instant at which a real clock reads `ms` (`None` on a virtual clock, or for
    /// `u64::MAX`, which never comes).
    pub fn instant_at(&self, ms: u64) -> Option<Instant> {
        match &self.clock {
            Clock::Real(clock) if ms != u64::MAX => Some(clock.instant_at(ms)),
            _ => None,
        }
    }

    /// A number from the backend's choice generator ([`Io::random_u64`](crate::Io::random_u64)).
    pub fn random_u64(&self) -> u64 {
        self.choices.next_u64()
    }

    /// The run queue the backend's wakers schedule onto.
    pub fn queue(&self) -> &RunQueue {
        &self.queue
    }

    /// How many operations a task spawned here may complete without suspending in one poll
    /// before its next operation yields ([`Cx::poll_budget`](crate::Cx::poll_budget));
    /// [`DEFAULT_OP_BUDGET`](crate::DEFAULT_OP_BUDGET) unless set. `0` means unlimited.
    pub fn op_budget(&self) -> u32 {
        self.queue.op_budget()
    }

    /// Sets the operation budget of each poll of the tasks spawned here from now on (the main
    /// task too, if set before the run): a task that completes `ops` operations without
    /// suspending yields at its next one, so the others, timers and cancels get their turn.
    /// `0` means unlimited: a task yields only where it suspends (as before budgets existed).
    /// A task keeps the budget it was spawned with.
    ///
    /// ```
    /// use io_core::Op;
    ///
    /// let io = io_fiber::FiberIo::new();
    /// io.io().core().set_op_budget(16);
    /// let done = io
    ///     .run(|cx| async move {
    ///         let other = cx.spawn(|_| async { Ok(()) });
    ///         let mut done = 0;
    ///         while !other.is_finished() {
    ///             cx.submit(Op::Nop).await.result.unwrap(); // done at once: no suspend
    ///             done += 1;
    ///         }
    ///         Ok(done)
    ///     })
    ///     .unwrap();
    /// assert_eq!(done, 17, "16 ops, then the 17th yielded and the other task ran");
    /// ```
    pub fn set_op_budget(&self, ops: u32) {
        self.queue.set_op_budget(ops);
    }

    /// Marks the backend as run: a backend runs once; the second time gives
    /// [`RunError::ShutDown`].
    pub fn start_run(&self) -> Result<(), RunError> {
        if self.ran.replace(true) {
            Err(RunError::ShutDown)
        } else {
            Ok(())
        }
    }

    /// Records a task being spawned, or refuses it with [`SpawnError::ShutDown`].
    #[inline]
    pub fn admit(&self, task: &RawTask) -> Result<(), SpawnError> {
        if self.shut_down.get() {
            return Err(SpawnError::ShutDown);
        }
        self.tasks.borrow_mut().insert_ctl(task.ctl());
        Ok(())
    }

    /// Whether [`BackendCore::shut_down`] has run.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.get()
    }

    /// Arms a timer ([`Io::arm_timer`](crate::Io::arm_timer)); after shutdown, none.
    pub fn arm_timer(&self, deadline_ms: u64, park: &Park) -> TimerId {
        if self.shut_down.get() {
            return TimerId::NONE;
        }
        self.timers.borrow_mut().arm(deadline_ms, park)
    }

    /// Disarms a timer ([`Io::disarm_timer`](crate::Io::disarm_timer)).
    pub fn disarm_timer(&self, id: TimerId) -> Option<u64> {
        let disarmed = self.timers.borrow_mut().disarm(id, self.now_ms());
        // The park (and the waker it may hold) is dropped here, outside the borrow.
        disarmed.map(|(left, _park)| left)
    }

    /// Readies the parks of every timer due at the clock's reading. The clock is only read if
    /// a timer is armed (a real clock read is not free on a loop's hot path).
    pub fn fire_due(&self) {
        let due = {
            let mut timers = self.timers.borrow_mut();
            let Some(next) = timers.next_deadline() else {
                return;
            };
            let now = self.now_ms();
            if next > now {
                return;
            }
            timers.take_due(now)
        };
        for park in due {
            park.ready();
        }
    }

    /// The earliest pending timer deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.borrow().next_deadline()
    }

    /// What can still make a task runnable ([`Driver::poll`](crate::Driver::poll)'s answer), given
    /// whether I/O is in flight and whether the backend waits for wakes from other threads
    /// (then a task waiting on a foreign future counts).
    pub fn next(&self, io_in_flight: bool, waits_for_foreign_wakes: bool) -> Next {
        if !self.queue.is_empty() {
            Next::Run
        } else if let Some(deadline) = self.next_deadline() {
            Next::Timer(deadline)
        } else if io_in_flight {
            Next::Io
        } else if waits_for_foreign_wakes && self.foreign_waits() {
            Next::Foreign
        } else {
            Next::Idle
        }
    }

    /// Whether a live task waits on something outside the protocol (a foreign future whose
    /// waker another thread may wake): it is not parked on a park or a join.
    pub fn foreign_waits(&self) -> bool {
        self.live_tasks()
            .iter()
            .any(|task| task.parked_on().is_none())
    }

    /// Whether no timer will fire.
    pub fn no_timers(&self) -> bool {
        self.timers.borrow().is_empty()
    }

    /// Every task spawned here that has not finished, in id order.
    pub fn live_tasks(&self) -> Vec<TaskRef> {
        self.tasks.borrow().live()
    }

    /// How many tasks spawned here have not finished.
    pub fn live_count(&self) -> usize {
        self.tasks.borrow().live_count()
    }

    /// Every live task and what it waits for, for a deadlock report.
    pub fn blocked_tasks(&self) -> Vec<BlockedTask> {
        self.tasks.borrow().blocked()
    }

    /// Refuses later spawns, timers and waits, drops every task still alive, and drops armed
    /// timers ([`Driver::shut_down`](crate::Driver::shut_down)).
    ///
    /// Tasks are dropped by running them one last time, abandoned: each drops its own future
    /// inside its body, where a panicking `Drop` is caught and becomes the task's panic (its
    /// joiner's, if it has one), instead of inside async-task, where it would abort the process.
    pub fn shut_down(&self) {
        self.shut_down.set(true);
        for task in self.live_tasks() {
            task.abandon();
        }
        // Dropping a future may wake other tasks; those are abandoned too, or finished.
        while let Some(runnable) = self.queue.pop() {
            runnable.run();
        }
        self.queue.clear();
        let parks = self.timers.borrow_mut().clear();
        drop(parks);
    }
}

impl fmt::Debug for BackendCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendCore")
            .field("name", &self.name)
            .field("now_ms", &self.now_ms())
            .field("queue", &self.queue)
            .field("timers", &self.timers.borrow().len())
            .field("shut_down", &self.shut_down.get())
            .field("op_budget", &self.op_budget())
            .finish_non_exhaustive()
    }
}
