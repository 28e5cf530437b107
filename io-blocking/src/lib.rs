//! `BlockingIo`: ioswap's simplest backend. Tasks run inline on the caller's thread; a task that
//! suspends blocks the thread until its park is readied.
//!
//! - `spawn` runs the task to completion before it returns (Zig's `io.async` on a blocking Io), so
//!   a spawned task has always finished by the time its handle is awaited — or canceled. A spawn
//!   that *requires* concurrency fails with [`SpawnError::ConcurrencyUnavailable`].
//! - Sleeping blocks on the real monotonic clock; [`Driver::poll`] blocks until the next timer or a
//!   wake from another thread.
//! - I/O ops ([`Io::submit`]) are plain blocking system calls made inside `submit`: a read
//!   blocks the thread until data arrives. A read whose peer is a socket of this same backend
//!   (client and server of one connection in one run), with nothing arrived, could only be
//!   satisfied by this thread: after [`DEADLOCK_GRACE`] it fails with [`WouldDeadlock`](io_core::WouldDeadlock)
//!   instead of hanging; so does a send such a peer does not take. The same holds for a Unix
//!   stream both of whose ends were made here, and for a receive on a connected UDP socket whose
//!   peer's address only a socket of this backend can send from; what is and is not detected is
//!   listed in `own_sockets.rs` (never a false report: when unsure, the op blocks). A program that talks to
//!   itself over a socket works as long as each read comes after the write it waits for;
//!   otherwise it needs a second thread, or a backend with concurrency. (An accept with no
//!   connection queued still blocks: another thread or process may connect.)
//! - Servers are out of reach: [`TcpListener::serve`](io_core::TcpListener::serve) requires
//!   concurrency, so it fails at once here. Blocking is for scripts, CLIs and tests of
//!   sequential code.
//! - An inline task parked on the protocol (a park, a join) with no timer armed can only be
//!   readied by its own thread, which is blocked on it — or by a foreign future it races against
//!   the park, woken from another thread. After [`DEADLOCK_GRACE`] with no such wake, that is a
//!   deadlock: [`BlockingIo::run`] reports it as [`RunError::Deadlock`], after canceling the stuck
//!   tasks so they unwind (a task still stuck then, in a shield, is given up on and dropped).
//!   Work that must wait for its spawner needs real concurrency: spawn it with
//!   `SpawnOptions::concurrent()` on a backend that has it.
//!
//! ```
//! use io_blocking::BlockingIo;
//!
//! let order = BlockingIo::new()
//!     .run(|cx| async move {
//!         let mut order = vec![1];
//!         let child = cx.spawn(|_| async { Ok(10) }); // runs right here, inline
//!         order.push(2);
//!         order.push(child.await?);
//!         Ok(order)
//!     })
//!     .unwrap();
//! assert_eq!(order, vec![1, 2, 10]);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod op;
mod own_sockets;

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_core::{
    BackendCore, Canceled, Cx, Deadlock, Driver, Handle, Io, Next, Op, RawTask, RunError, RunQueue,
    Runnable, SpawnError, SpawnOptions, Submitted, TaskRef,
};

use own_sockets::OwnSockets;

/// How long an inline task parked on the protocol, with no timer armed, may wait for a wake from
/// another thread before it is reported as deadlocked; and how long a read or a send whose peer
/// is a socket of this backend waits for it before it fails with [`WouldDeadlock`](io_core::WouldDeadlock).
pub const DEADLOCK_GRACE: Duration = Duration::from_millis(250);

/// The inline, real-clock backend. Cheap to clone: clones share one backend.
#[derive(Clone)]
pub struct BlockingIo(Rc<Blocking>);

struct Blocking {
    core: BackendCore,
    deadlock: RefCell<Option<Deadlock>>,
    /// The sockets this backend issued, to tell a read that only this thread could satisfy.
    own_sockets: RefCell<OwnSockets>,
}

impl BlockingIo {
    /// A new blocking backend; its clock starts now.
    pub fn new() -> BlockingIo {
        BlockingIo(Rc::new(Blocking {
            // A fixed choice seed: choices need only be fair here, not varied between runs.
            core: BackendCore::real_clock("blocking", RunQueue::new(), 0x626c_6f63_6b69_6e67),
            deadlock: RefCell::new(None),
            own_sockets: RefCell::default(),
        }))
    }

    /// Runs `main` inline and returns its value. A backend runs once; a second `run` gives
    /// [`RunError::ShutDown`].
    pub fn run<T, F, Fut>(&self, main: F) -> Result<T, RunError>
    where
        T: 'static,
        F: FnOnce(Cx) -> Fut,
        Fut: Future<Output = Result<T, Canceled>> + 'static,
    {
        let outcome = io_core::run(self.io(), main);
        match self.0.deadlock.borrow_mut().take() {
            Some(deadlock) => Err(RunError::Deadlock(deadlock)),
            None => outcome,
        }
    }

    /// This backend as a protocol object (and its driver side).
    pub fn io(&self) -> Rc<dyn Driver> {
        self.0.clone()
    }
}

impl Default for BlockingIo {
    fn default() -> Self {
        BlockingIo::new()
    }
}

impl fmt::Debug for BlockingIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingIo")
            .field("now_ms", &self.0.core.now_ms())
            .finish_non_exhaustive()
    }
}

impl Blocking {
    /// Blocks until `task` is runnable again and returns its runnable. Other runnables that show
    /// up (a task woken from another thread) are run inline on the way. `None`: the task is
    /// deadlocked and canceling it did not unstick it; the caller gives up on it.
    fn wait_for(&self, task: &TaskRef) -> Option<Runnable> {
        loop {
            // A nested `wait_for` (a task this one runs on the way) may have run it to its end.
            if task.is_finished() {
                return None;
            }
            while let Some(runnable) = self.core.queue().pop() {
                if runnable.metadata().id() == task.id() {
                    return Some(runnable);
                }
                runnable.run();
            }
            if self.core.no_timers() && task.parked_on().is_some() {
                // Parked on the protocol with no timer: only a wake from another thread (a
                // foreign future raced against the park) could still come. Give it a grace
                // period before calling it a deadlock.
                self.core
                    .queue()
                    .wait(Some(Instant::now() + DEADLOCK_GRACE));
                if self.core.queue().is_empty() && self.core.no_timers() {
                    if !self.break_deadlock() {
                        return None;
                    }
                    continue;
                }
            }
            self.wait(u64::MAX);
        }
    }

    /// Fires due timers; if nothing is queued, blocks until the next timer, `deadline_ms`, or a
    /// wake from another thread (but not once a deadlock was found and no timer is left).
    fn wait(&self, deadline_ms: u64) {
        self.core.fire_due();
        if self.core.queue().is_empty() && !self.stuck() {
            let next = self.core.next_deadline();
            let wake_at = next.unwrap_or(u64::MAX).min(deadline_ms);
            self.core.queue().wait(self.core.instant_at(wake_at));
            self.core.fire_due();
        }
    }

    /// A deadlock was found and no timer is left: nothing this thread waits for can come.
    fn stuck(&self) -> bool {
        self.deadlock.borrow().is_some() && self.core.no_timers()
    }

    /// Records the deadlock (the first one) and cancels every live task so they unwind.
    /// Returns `false` if every live task was canceled already: nothing can unstick them.
    fn break_deadlock(&self) -> bool {
        let blocked = self.core.blocked_tasks();
        self.deadlock.borrow_mut().get_or_insert_with(|| Deadlock {
            at_ms: self.core.now_ms(),
            blocked,
        });
        let live = self.core.live_tasks();
        let mut canceled_any = false;
        for task in live {
            canceled_any |= !task.is_cancel_requested();
            task.cancel();
        }
        canceled_any
    }
}

impl Io for Blocking {
    fn core(&self) -> &BackendCore {
        &self.core
    }

    /// Runs the task inline, to completion, before returning (or until it is found deadlocked).
    fn spawn_raw(&self, task: RawTask, opts: &SpawnOptions) -> Result<(), SpawnError> {
        if opts.requires_concurrency() && !self.core.is_shut_down() {
            return Err(SpawnError::ConcurrencyUnavailable);
        }
        self.core.admit(&task)?;
        let (mut runnable, task) = task.into_parts();
        loop {
            runnable.run();
            if task.is_finished() {
                return Ok(());
            }
            match self.wait_for(&task) {
                Some(next) => runnable = next,
                None => return Ok(()), // deadlocked for good: `run` reports it
            }
        }
    }

    /// Performs the op right here with a plain system call (blocking the thread) and returns
    /// it done; nothing is ever in flight, so there is nothing to cancel.
    fn submit(&self, op: Op) -> Submitted {
        Submitted::Done(op::perform(op, &self.own_sockets))
    }

    /// Records an adopted listener or stream as this backend's own, like those it issues.
    fn adopt(&self, handle: &Handle) {
        self.own_sockets.borrow_mut().record(handle);
    }
}

impl Driver for Blocking {
    /// Runs what is queued (nothing, while a spawn drives its task inline: it runs what it
    /// meets); if nothing was, waits as [`Blocking::wait`] does. Once a deadlock was found and no
    /// timer is left, a wake from another thread is no longer waited for, nor reported as one
    /// that could come.
    fn poll(&self, deadline_ms: u64) -> Next {
        let mut ran = false;
        while let Some(runnable) = self.core.queue().pop() {
            runnable.run();
            ran = true;
        }
        if ran {
            self.core.fire_due();
        } else {
            self.wait(deadline_ms);
        }
        self.core.next(false, !self.stuck())
    }
}
