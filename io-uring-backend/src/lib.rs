//! `UringIo`: ioswap's production backend on Linux — a single-threaded executor driven by
//! io_uring.
//!
//! One turn of [`Driver::poll`]:
//!
//! 1. fire due timers and reap ready completions (each readies the park of the task waiting on
//!    it);
//! 2. run every task that was ready at the start of the turn (spawned tasks are deferred, as on
//!    fiber);
//! 3. push the SQEs the tasks submitted;
//! 4. if nothing is runnable, sleep in `io_uring_enter` — submitting and waiting in one system
//!    call — until a completion arrives or the next timer is due (`IORING_ENTER_EXT_ARG`
//!    timeout). A waker woken on another thread writes an eventfd whose read is kept in flight
//!    on the ring, which ends the wait.
//!
//! I/O ops ([`io_core::op`]) own their buffers; the backend keeps each op — buffers, paths,
//! sockaddrs — until its final CQE, whatever happens to its future. A canceled op gets an
//! `ASYNC_CANCEL` and its task waits for the final CQE; an op that completed despite the cancel
//! returns its result; a late accept or open whose future is gone is closed; a close waits for
//! the ops still holding its descriptor; and tear-down drains the ring before anything is freed.
//! No op waits for another to finish: a full submission queue is handed to the kernel at once,
//! and completions beyond the completion queue's size wait on the kernel's overflow list.
//!
//! Work with no opcode (reading a directory or a link, name lookups, `spawn_blocking`
//! closures, the standard streams) runs on an [`io_core::offload::Offloader`]'s thread pool,
//! whose finished jobs wake the loop through the same eventfd.
//!
//! Needs Linux 5.11 (`IORING_FEAT_EXT_ARG` and `IORING_OP_SHUTDOWN`); anything less, or a
//! process that may not use io_uring, gets a [`UringError`] naming the cause. Newer opcodes are
//! used where the ring's probe finds them, with a fallback otherwise: `set_len` is
//! `IORING_OP_FTRUNCATE` from Linux 6.9 and a synchronous `ftruncate` before; creating a
//! directory and making links are `MKDIRAT`/`LINKAT`/`SYMLINKAT` from 5.15 and pool jobs
//! before.
//!
//! ```
//! use io_uring_backend::UringIo;
//!
//! let io = UringIo::new().expect("io_uring available");
//! let (sum, slept) = io
//!     .run(|cx| async move {
//!         let start = cx.now_ms();
//!         let a = cx.spawn(|cx| async move { cx.sleep(20).await?; Ok(1) });
//!         let b = cx.spawn(|cx| async move { cx.sleep(20).await?; Ok(2) });
//!         let sum = a.await? + b.await?;
//!         Ok((sum, cx.now_ms() - start))
//!     })
//!     .unwrap();
//! assert_eq!(sum, 3);
//! assert!(slept >= 20); // the two sleeps overlapped on the real clock
//! ```
#![warn(missing_docs, missing_debug_implementations)]

mod error;
mod op;
mod ring;
mod wakeup;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_core::offload::{Offload, Offloader};
use io_core::{
    BackendCore, Canceled, Completion, Cx, Driver, Io, Next, Op, OpId, RunError, RunQueue,
    Runnable, Submitted,
};

pub use error::UringError;
pub use op::UringStats;
use op::{ring_serves, Aftermath, Ops};

/// Submission-queue entries of a ring built by [`UringIo::new`].
pub const DEFAULT_SQ_ENTRIES: u32 = 256;
/// Completion-queue entries of a ring built by [`UringIo::new`]. They bound no count of ops in
/// flight, only how many completions wait for a reap before the kernel's (slower) overflow list
/// keeps the rest.
pub const DEFAULT_CQ_ENTRIES: u32 = 8192;

/// The io_uring backend. Cheap to clone: clones share one ring and one scheduler.
#[derive(Clone)]
pub struct UringIo(Rc<Uring>);

struct Uring {
    core: BackendCore,
    ops: RefCell<Ops>,
    /// Reused between table calls; borrowed while in use (a nested call, from a drop that
    /// `apply` set off, starts an empty one).
    after: RefCell<Aftermath>,
    /// The turn's runnables; its buffer is kept between turns (taken while a turn runs).
    batch: Cell<Option<VecDeque<Runnable>>>,
    /// The pool for offloaded work the ring has no opcode for (see DESIGN.md, "Offloaded work").
    offloader: RefCell<Offloader>,
    /// Set by the pool when a job finished (before it wakes the loop): the loop reaps the
    /// offloader only then, so a turn without offloaded work takes no lock for it.
    offloads_finished: Arc<AtomicBool>,
    /// Cancels (`false`) and discards (`true`) that arrived while the offloader was borrowed.
    offloads_deferred: RefCell<Vec<(OpId, bool)>>,
}

impl UringIo {
    /// A backend on a new ring of [`DEFAULT_SQ_ENTRIES`]/[`DEFAULT_CQ_ENTRIES`]; its clock starts
    /// now.
    pub fn new() -> Result<UringIo, UringError> {
        UringIo::with_entries(DEFAULT_SQ_ENTRIES, DEFAULT_CQ_ENTRIES)
    }

    /// A backend on a ring with `sq_entries` submission and `cq_entries` completion entries
    /// (powers of two; the kernel rounds up). Fewer completion than submission entries are
    /// raised to `sq_entries`, the kernel's minimum. Neither bounds the ops in flight: a full
    /// submission queue is handed to the kernel at once, and completions beyond the completion
    /// queue's size wait on the kernel's overflow list (`IORING_FEAT_NODROP`, required).
    ///
    /// ```
    /// use io_uring_backend::UringIo;
    ///
    /// let io = UringIo::with_entries(2, 2).expect("io_uring available");
    /// let done = io
    ///     .run(|cx| async move {
    ///         // Eight ops submitted in one turn on a two-entry ring: none waits for another.
    ///         let tasks: Vec<_> = (0..8)
    ///             .map(|_| cx.spawn(|cx| async move { Ok(cx.submit(io_core::Op::Nop).await) }))
    ///             .collect();
    ///         let mut done = 0;
    ///         for task in tasks {
    ///             done += usize::from(task.await?.result.is_ok());
    ///         }
    ///         Ok(done)
    ///     })
    ///     .unwrap();
    /// assert_eq!(done, 8);
    /// ```
    pub fn with_entries(sq_entries: u32, cq_entries: u32) -> Result<UringIo, UringError> {
        let ops = Ops::new(sq_entries, cq_entries)?;
        let queue = RunQueue::with_idle_hook(ops.wakeup().notifier());
        let offloads_finished = Arc::new(AtomicBool::new(false));
        let offloader = {
            let finished = offloads_finished.clone();
            let wake = ops.wakeup().notifier();
            // Runs on a pool thread after each job: the eventfd write ends the loop's wait.
            Offloader::new(move || {
                finished.store(true, Ordering::Release);
                wake();
            })
        };
        Ok(UringIo(Rc::new(Uring {
            // A fixed choice seed: choices need only be fair here, not varied between runs.
            core: BackendCore::real_clock("uring", queue, 0x7572_696e_6721),
            ops: RefCell::new(ops),
            after: RefCell::new(Aftermath::default()),
            batch: Cell::new(Some(VecDeque::new())),
            offloader: RefCell::new(offloader),
            offloads_finished,
            offloads_deferred: RefCell::new(Vec::new()),
        })))
    }

    /// Whether this process can use io_uring: builds a small ring and drops it.
    ///
    /// ```
    /// match io_uring_backend::UringIo::probe() {
    ///     Ok(()) => println!("io_uring is available"),
    ///     Err(cause) => println!("no io_uring here: {cause}"),
    /// }
    /// ```
    pub fn probe() -> Result<(), UringError> {
        UringIo::with_entries(4, 8).map(drop)
    }

    /// Runs `main` as the main task and drives the ring until it finishes. See
    /// [`io_core::run`] for what happens to tasks still alive then; afterwards the ring is
    /// drained. A backend runs once; a second `run` gives [`RunError::ShutDown`].
    pub fn run<T, F, Fut>(&self, main: F) -> Result<T, RunError>
    where
        T: 'static,
        F: FnOnce(Cx) -> Fut,
        Fut: Future<Output = Result<T, Canceled>> + 'static,
    {
        // Wakes this thread sends to other rings go out on this ring (see wakeup.rs).
        let weak: std::rc::Weak<dyn wakeup::MsgSource> = Rc::downgrade(&self.0) as _;
        let _source = wakeup::run_on_this_thread(weak);
        io_core::run(self.io(), main)
    }

    /// This backend as a protocol object (and its driver side).
    pub fn io(&self) -> Rc<dyn Driver> {
        self.0.clone()
    }

    /// Milliseconds since the backend was built (monotonic).
    pub fn now_ms(&self) -> u64 {
        self.0.core.now_ms()
    }

    /// Ops the backend still owns (in flight, queued for the kernel, or completed and not yet taken
    /// by their future). Zero once every op has ended and every buffer has gone back.
    pub fn ops_owned(&self) -> usize {
        self.0.ops.borrow().owned()
    }

    /// Whether file reads ([`Op::ReadAt`]) first try the page cache inside submit (on by
    /// default): a `preadv2` with `RWF_NOWAIT` copies cached pages at once, with no SQE and no
    /// suspend, and says so without blocking when it would have to wait, and the read then
    /// goes through the ring as before. What a read returns is the same either way; only when it
    /// completes differs (at once, counted in [`UringStats::reads_from_cache`]).
    ///
    /// Each handle is looked at once: a file opened `O_DIRECT` (whose direct reads wait for the
    /// device even with `RWF_NOWAIT`), one on a file system without `RWF_NOWAIT` (tmpfs), and
    /// anything not read at offsets are read through the ring only. Turn it off to measure
    /// io_uring's own read path, or for a test that needs its reads in the ring.
    ///
    /// ```
    /// use io_uring_backend::UringIo;
    ///
    /// let path = std::env::temp_dir().join(format!("ioswap-doc-cached-{}", std::process::id()));
    /// std::fs::write(&path, b"cached").unwrap();
    /// let read = |io: &UringIo| {
    ///     let path = path.clone();
    ///     io.run(move |cx| async move {
    ///         let file = io_core::File::open(&cx, &path).await.unwrap();
    ///         let (n, buf) = file.read_at(Vec::with_capacity(16), 0).await;
    ///         Ok((n.unwrap(), buf))
    ///     })
    ///     .unwrap()
    /// };
    /// let cached = UringIo::new().unwrap();
    /// assert_eq!(read(&cached), (6, b"cached".to_vec())); // at once, if the file system can
    /// let ring_only = UringIo::new().unwrap();
    /// ring_only.set_cached_reads(false);
    /// assert_eq!(read(&ring_only), (6, b"cached".to_vec()));
    /// assert_eq!(ring_only.stats().reads_from_cache, 0);
    /// assert_eq!(ring_only.stats().submitted, 2); // the open and the read
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn set_cached_reads(&self, on: bool) {
        self.0.ops.borrow_mut().set_cached_reads(on);
    }

    /// Counters of submissions, cancels, and results dropped because their future was gone.
    ///
    /// ```
    /// let io = io_uring_backend::UringIo::new().unwrap();
    /// io.run(|cx| async move { Ok(cx.submit(io_core::Op::Nop).await.result.unwrap()) }).unwrap();
    /// assert_eq!(io.stats().submitted, 1);
    /// ```
    pub fn stats(&self) -> UringStats {
        self.0.ops.borrow().stats()
    }
}

impl fmt::Debug for UringIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringIo")
            .field("now_ms", &self.0.core.now_ms())
            .field("ops_owned", &self.ops_owned())
            .finish_non_exhaustive()
    }
}

impl Uring {
    /// Runs `f` on the op table, then — with the table released — readies the parks and drops
    /// the ops it left. (Table work that can deliver nothing and free nothing — pushing,
    /// submitting, waiting — borrows `ops` directly.)
    fn with_ops<R>(&self, f: impl FnOnce(&mut Ops, &mut Aftermath) -> R) -> R {
        // A nested call (from a drop that `apply` set off) finds the reused one borrowed and
        // starts an empty one (no allocation until it is used).
        let Ok(mut after) = self.after.try_borrow_mut() else {
            let mut after = Aftermath::default();
            let result = f(&mut self.ops.borrow_mut(), &mut after);
            after.apply();
            return result;
        };
        let result = f(&mut self.ops.borrow_mut(), &mut after);
        after.apply();
        result
    }

    /// Whether anything could ever make a task runnable without a timer: an op that will
    /// complete, or a task waiting on something outside the protocol (a foreign future whose
    /// waker another thread may wake).
    fn can_be_woken(&self) -> bool {
        self.io_in_flight() || self.core.foreign_waits()
    }

    /// Whether an op will still complete: one on the ring, or a job on the offload pool that is
    /// not a detached closure or stdin read (see DESIGN.md, "Offloaded work").
    fn io_in_flight(&self) -> bool {
        self.ops.borrow().unfinished() > 0
            || self
                .offloader
                .try_borrow()
                .map_or(true, |offloader| offloader.outstanding() > 0)
    }

    /// Runs `f` on the offloader, then the cancels and discards that came in meanwhile.
    fn with_offloader<R>(&self, f: impl FnOnce(&mut Offloader) -> R) -> R {
        let result = f(&mut self.offloader.borrow_mut());
        loop {
            let deferred = self.offloads_deferred.borrow_mut().pop();
            let Some((id, discard)) = deferred else {
                break;
            };
            self.cancel_offload(id, discard);
        }
        result
    }

    /// Cancels (or, `discard`, lets go of) an offloaded job. A slot the offloader completes
    /// readies a park, which may drop a future that discards its own op: such a call, made
    /// while the offloader is borrowed, is kept for when it is released.
    fn cancel_offload(&self, id: OpId, discard: bool) {
        if self.offloader.try_borrow_mut().is_err() {
            self.offloads_deferred.borrow_mut().push((id, discard));
            return;
        }
        self.with_offloader(|offloader| {
            if discard {
                offloader.discard(id);
            } else {
                offloader.cancel(id);
            }
        });
    }

    /// Delivers the completions of offloaded jobs, if any finished since the last call.
    fn reap_offloads(&self) {
        if self.offloads_finished.load(Ordering::Relaxed)
            && self.offloads_finished.swap(false, Ordering::Acquire)
        {
            self.with_offloader(Offloader::reap);
        }
    }

    /// Hands `work` to the offload pool.
    fn offload(&self, work: Offload) -> Submitted {
        if self.ops.borrow().is_closing() {
            return Submitted::Done(Completion {
                result: Err(io::Error::other("the uring backend has shut down")),
                op: Op::Offload(work),
            });
        }
        self.with_offloader(|offloader| offloader.submit(work))
    }

    /// Sleeps in the kernel until a task is runnable, a timer is due, or `deadline_ms` passes,
    /// and moves what became runnable into `batch` (empty on entry: the turn found nothing to
    /// run). Returns at once when nothing could ever wake the loop (the driver reports the
    /// deadlock).
    ///
    /// The loop's thread keeps owning the run queue while it sleeps ([`RunQueue::begin_sleep`]):
    /// between `begin_sleep` and `end_sleep` it only enters the kernel, which runs no task code,
    /// so it readies no task there.
    fn idle(&self, deadline_ms: u64, batch: &mut VecDeque<Runnable>) {
        let queue = self.core.queue();
        loop {
            let next = self.core.next_deadline();
            let target = next.unwrap_or(u64::MAX).min(deadline_ms);
            let timeout = if target == u64::MAX {
                if !self.can_be_woken() {
                    return;
                }
                None
            } else {
                let at = self.core.instant_at(target).expect("a real clock");
                let now = Instant::now();
                if now >= at {
                    return;
                }
                Some(at - now)
            };
            // `false`: another thread queued a task meanwhile; it is drained below.
            if queue.begin_sleep() {
                self.ops.borrow_mut().wait(timeout);
                queue.end_sleep();
                // The wait ended: nearly always a completion is there (no `has_ready` first).
                self.with_ops(|ops, after| ops.reap(after));
                self.reap_offloads();
            }
            self.core.fire_due();
            queue.drain_into(batch);
            if !batch.is_empty() {
                return;
            }
        }
    }

    /// Delivers the ring's ready completions, if it has any (no table or aftermath work when
    /// it has none).
    fn reap(&self) {
        if self.ops.borrow_mut().has_ready() {
            self.with_ops(|ops, after| ops.reap(after));
        }
    }

    /// Cancels everything and waits for every final completion: offloaded jobs first (while
    /// the ring's wakeup read still runs to tell when one finishes), then the ring. Queued jobs
    /// are dropped unrun; running file-system ops are waited for, as ops in the
    /// kernel are; blocking closures and lookups, which may run for any time, are left
    /// running (their results dropped when they arrive; counted in
    /// [`UringStats::offloads_left_running`]).
    fn drain(&self) {
        self.with_offloader(Offloader::cancel_all);
        loop {
            self.offloads_finished.store(false, Ordering::Relaxed);
            self.with_offloader(Offloader::reap);
            if self.offloader.borrow().outstanding() == 0 {
                break;
            }
            // After tear-down began the wakeup read is gone: poll for the pool instead.
            let closing = self.ops.borrow().is_closing();
            let timeout = closing.then_some(Duration::from_millis(1));
            self.ops.borrow_mut().wait(timeout);
            self.reap();
        }
        let left_running = self.offloader.borrow().in_flight();
        let mut ops = self.ops.borrow_mut();
        if !ops.is_closing() {
            ops.note_offloads_left_running(left_running);
        }
        drop(ops);
        while !self.with_ops(|ops, after| ops.drain_step(after)) {}
    }
}

impl wakeup::MsgSource for Uring {
    fn send_msg_wake(&self, target: &Arc<wakeup::Target>) -> bool {
        self.ops
            .try_borrow_mut()
            .is_ok_and(|mut ops| ops.send_msg_wake(target))
    }
}

impl Io for Uring {
    fn core(&self) -> &BackendCore {
        &self.core
    }

    /// Turns the op into an SQE (pushed now, or queued while the kernel refuses SQEs); its park is
    /// readied by its CQE.
    /// Offloaded work the ring has no opcode for goes to the pool instead.
    fn submit(&self, op: Op) -> Submitted {
        match op {
            Op::Offload(work) if !ring_serves(&work, self.ops.borrow().opcodes()) => {
                self.offload(work)
            }
            // A close may cancel the ops holding its descriptor: their slots are readied once
            // the table is released. Any other op delivers and frees nothing here.
            op @ Op::Close { .. } => self.with_ops(|ops, after| ops.submit_close(op, after)),
            op => self.ops.borrow_mut().submit(op),
        }
    }

    fn cancel_op(&self, id: OpId) {
        if Offloader::owns(id) {
            self.cancel_offload(id, false);
        } else {
            self.with_ops(|ops, after| ops.cancel(id, after));
        }
    }

    fn discard_op(&self, id: OpId) {
        if Offloader::owns(id) {
            self.cancel_offload(id, true);
        } else {
            self.with_ops(|ops, after| ops.discard(id, after));
        }
    }
}

impl Driver for Uring {
    /// One turn: fire due timers, reap completions, and run every task ready at the start of
    /// the turn; if none was ready, first sleep in `io_uring_enter` until a completion, the next
    /// timer, or `deadline_ms`, then run what that made ready. SQEs the tasks pushed go to the
    /// kernel with the next sleep (or at once, when more tasks are already runnable, and at the
    /// start of any turn that runs tasks without sleeping). A turn
    /// never sleeps after running tasks, so the driver sees at once what they did (the main task
    /// finishing, say).
    fn poll(&self, deadline_ms: u64) -> Next {
        self.core.fire_due();
        self.reap();
        self.reap_offloads();
        let mut batch = self.batch.take().unwrap_or_default();
        self.core.queue().drain_into(&mut batch);
        if batch.is_empty() {
            // The wait hands the kernel every SQE pushed so far.
            self.idle(deadline_ms, &mut batch);
        } else {
            // SQEs pushed by earlier turns reach the kernel even when no turn goes idle (tasks
            // woken by due timers every turn): no system call when nothing is pushed and no
            // completion work is pending.
            self.ops.borrow_mut().submit_now();
        }
        let ran = !batch.is_empty();
        while let Some(runnable) = batch.pop_front() {
            runnable.run();
        }
        self.batch.set(Some(batch));
        let next = self.core.next(self.io_in_flight(), true);
        if ran {
            let mut ops = self.ops.borrow_mut();
            if next == Next::Run {
                // Let the kernel start on this turn's SQEs while the next turn runs.
                ops.submit_now();
            } else {
                // The next turn sleeps, submitting and waiting in one system call.
                ops.flush();
            }
        }
        next
    }

    /// Refuses later spawns and ops, drops every task still alive, and drains the ring.
    fn shut_down(&self) {
        self.core.shut_down();
        self.drain();
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // The kernel may still write into op buffers and the wakeup read's buffer: nothing is
        // freed before every request has completed.
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener as StdListener, TcpStream as StdStream};
    use std::sync::mpsc;
    use std::time::Duration;

    use futures_lite::future;
    use io_core::{Handle, Op, TcpStream};

    use super::UringIo;
    use crate::ring::tests::{pretend_no_opcodes_on_this_thread, refuse_submits};

    /// `count` connected pairs (peer, server) whose peers never write: a read on a server side
    /// never completes.
    fn idle_pairs(count: usize) -> Vec<(StdStream, StdStream)> {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (0..count)
            .map(|_| {
                let peer = StdStream::connect(addr).unwrap();
                (peer, listener.accept().unwrap().0)
            })
            .collect()
    }

    /// While the kernel refuses submits for a moment (a passing `EAGAIN`), ops held back in user
    /// space still reach it although everything in flight is an idle read that never completes:
    /// a wait is bounded while anything is held back. (Unbounded, the loop slept forever with
    /// the held-back op in user space, and no deadlock was reported.)
    #[test]
    fn ops_held_back_by_a_refused_submit_reach_the_kernel_behind_idle_reads() {
        let pairs = idle_pairs(16);
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let (peers, servers): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
            let io = UringIo::with_entries(4, 4).unwrap();
            let result = io.run(move |cx| async move {
                refuse_submits(8);
                let readers: Vec<_> = servers
                    .into_iter()
                    .map(|server| {
                        let stream = TcpStream::from_std(&cx, server);
                        cx.spawn(move |_| async move {
                            let _ = stream.read(Vec::with_capacity(16)).await;
                            Ok(())
                        })
                    })
                    .collect();
                cx.yield_now().await?; // every reader submits its read
                let nop = cx.submit(Op::Nop).await.result;
                drop(readers); // cancels the reads
                Ok(nop.ok())
            });
            drop(peers);
            let _ = done.send(result);
        });
        let result = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("hung: an op held back behind idle reads never reached the kernel");
        assert_eq!(result, Ok(Some(0)));
    }

    /// A close whose only holder is an op still queued in user space (the kernel refused
    /// SQEs): the holder is canceled on the spot and leaves the table, and the close completes.
    /// (It waited forever in AwaitingFd: nothing retried it, no CQE, no discard.)
    #[test]
    fn a_close_whose_holders_were_canceled_while_queued_completes() {
        let pairs = idle_pairs(8);
        let path = std::env::temp_dir().join(format!("ioswap-close-queued-{}", std::process::id()));
        std::fs::write(&path, b"hello").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let (peers, servers): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
            let io = UringIo::with_entries(4, 4).unwrap();
            io.set_cached_reads(false); // the read must go to the ring
            let result = io.run(move |cx| async move {
                cx.yield_now().await?; // the wakeup read is armed and submitted
                refuse_submits(1_000);
                let streams: Vec<_> = servers
                    .into_iter()
                    .map(|s| TcpStream::from_std(&cx, s))
                    .collect();
                // Idle reads (peers never write) fill the submission queue.
                let mut idle = Vec::new();
                for s in &streams {
                    let mut read = Box::pin(s.read(Vec::with_capacity(16)));
                    assert!(future::poll_once(&mut read).await.is_none());
                    idle.push(read);
                }
                let handle = Handle::new(file);
                let mut read = Box::pin(cx.submit(Op::ReadAt {
                    file: handle.clone(),
                    buf: Vec::with_capacity(8),
                    offset: 0,
                }));
                assert!(future::poll_once(&mut read).await.is_none()); // queued in user space
                let mut close = Box::pin(cx.submit(Op::Close {
                    handle: Some(handle),
                }));
                assert!(future::poll_once(&mut close).await.is_none()); // AwaitingFd
                let read_done = read.await; // canceled while queued, taken now
                assert!(io_core::Canceled::is_canceled(
                    read_done.result.as_ref().unwrap_err()
                ));
                drop(read_done);
                let closed = close.await.result;
                drop(idle);
                Ok(closed.ok())
            });
            drop(peers);
            let _ = done.send(result);
        });
        let result = finished
            .recv_timeout(Duration::from_secs(5))
            .expect("hung: a close waits forever for a holder canceled while queued");
        let _ = std::fs::remove_file(&path);
        assert_eq!(result, Ok(Some(0)));
    }

    /// set_len, then every file-system op by path with opcodes (or their errors): ops the
    /// kernel is asked for through the ring are counted in `stats().submitted`.
    fn set_len_and_fs_ops(io: UringIo, dir: &std::path::Path) {
        use io_core::offload::{FsOp, Offload};
        use std::io::ErrorKind;
        let dir = dir.to_path_buf();
        io.run(|cx| async move {
            let fs = |op: FsOp| {
                let cx = cx.clone();
                async move {
                    let done = cx.submit(Op::Offload(Offload::Fs(op))).await;
                    done.result.map(|_| done.op)
                }
            };
            let file = dir.join("file");
            let opened = cx
                .submit(Op::Open {
                    path: file.clone(),
                    options: io_core::OpenOptions::new().write(true).create(true),
                    file: None,
                })
                .await;
            opened.result.unwrap();
            let Op::Open {
                file: Some(handle), ..
            } = opened.op
            else {
                panic!("no file")
            };
            let set = cx
                .submit(Op::SetLen {
                    file: handle.clone(),
                    len: 3,
                })
                .await;
            set.result.unwrap();
            assert_eq!(std::fs::metadata(&file).unwrap().len(), 3);
            let sub = dir.join("sub");
            fs(FsOp::CreateDir { path: sub.clone() }).await.unwrap();
            let again = fs(FsOp::CreateDir { path: sub.clone() }).await;
            assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists);
            let meta = fs(FsOp::Metadata {
                path: sub.clone(),
                follow: true,
                metadata: None,
            });
            assert!(matches!(
                meta.await.unwrap(),
                Op::Offload(Offload::Fs(FsOp::Metadata { metadata: Some(m), .. })) if m.is_dir()
            ));
            let link = dir.join("link");
            fs(FsOp::Symlink {
                original: file.clone(),
                link: link.clone(),
            })
            .await
            .unwrap();
            let meta = fs(FsOp::Metadata {
                path: link.clone(),
                follow: false,
                metadata: None,
            });
            assert!(matches!(
                meta.await.unwrap(),
                Op::Offload(Offload::Fs(FsOp::Metadata { metadata: Some(m), .. })) if m.is_symlink()
            ));
            let hard = dir.join("hard");
            fs(FsOp::HardLink {
                original: file.clone(),
                link: hard.clone(),
            })
            .await
            .unwrap();
            let moved = dir.join("moved");
            fs(FsOp::Rename {
                from: hard.clone(),
                to: moved.clone(),
            })
            .await
            .unwrap();
            for path in [&moved, &link, &file] {
                fs(FsOp::RemoveFile { path: path.clone() }).await.unwrap();
            }
            let twice = fs(FsOp::RemoveFile { path: file.clone() }).await;
            assert_eq!(twice.unwrap_err().kind(), ErrorKind::NotFound);
            fs(FsOp::RemoveDir { path: sub.clone() }).await.unwrap();
            let missing = fs(FsOp::Metadata {
                path: sub,
                follow: true,
                metadata: None,
            })
            .await;
            assert_eq!(missing.unwrap_err().kind(), ErrorKind::NotFound);
            Ok(())
        })
        .unwrap();
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ioswap-uring-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Where the kernel lacks the newer opcodes (FTRUNCATE before 6.9; MKDIRAT, LINKAT and
    /// SYMLINKAT before 5.15), set_len is a plain `ftruncate` and the file-system ops by path
    /// run on the pool: the same results and errors, and nothing of theirs on the ring (only
    /// the open).
    #[test]
    fn without_the_newer_opcodes_ops_fall_back() {
        pretend_no_opcodes_on_this_thread(true);
        let io = UringIo::new().unwrap();
        pretend_no_opcodes_on_this_thread(false);
        let dir = scratch("fallback");
        set_len_and_fs_ops(io.clone(), &dir);
        assert_eq!(io.stats().submitted, 1);
        assert_eq!(io.stats().offloads_left_running, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// With the opcodes the kernel has, the same ops go through the ring: every one of them
    /// that the probe found.
    #[test]
    fn with_the_opcodes_ops_go_through_the_ring() {
        let io = UringIo::new().unwrap();
        let have = io.0.ops.borrow().opcodes();
        let dir = scratch("opcodes");
        set_len_and_fs_ops(io.clone(), &dir);
        // The ops of `set_len_and_fs_ops`, by opcode: open, set_len, 2 mkdir, 3 statx,
        // symlink, link, rename, 4 unlinks (one fails), rmdir.
        let expected = 1
            + usize::from(have.ftruncate)
            + 2 * usize::from(have.mkdirat)
            + 3 * usize::from(have.statx)
            + usize::from(have.symlinkat)
            + usize::from(have.linkat)
            + usize::from(have.renameat)
            + 5 * usize::from(have.unlinkat);
        assert_eq!(io.stats().submitted, expected as u64);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
