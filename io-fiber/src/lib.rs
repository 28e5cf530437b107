//! `FiberIo`: ioswap's deterministic backend, for tests and simulation.
//!
//! - **Single-threaded**: one run queue, drained in turns on the calling thread.
//! - **Virtual clock**: starts at 0 and moves only when nothing is runnable, jumping straight to
//!   the earliest timer. An hour of sleeps takes microseconds of wall time.
//! - **Seeded**: seed 0 runs ready tasks in FIFO order; any other seed picks among the ready
//!   tasks with a seeded generator (splitmix64), so each seed is a different but reproducible
//!   interleaving. Nothing here reads the wall clock, thread ids, or unseeded randomness, and no
//!   hash-map iteration order reaches the schedule: the run is a pure function of the program
//!   and the seed, and [`FiberIo::trace_hash`] proves it.
//! - **No hangs**: when nothing is runnable, no timer is armed and the main task is unfinished,
//!   [`FiberIo::run`] returns [`RunError::Deadlock`] naming every blocked task and its park.
//! - **Simulated I/O**: files and sockets are served by a simulated world ([`sim`]), never by
//!   the kernel: a disk with a real disk's durability (what was not synced may be lost or torn
//!   when a host crashes, directory entries included), TCP and UDP networks with latency, Unix
//!   sockets, name lookups from the world's host table, `spawn_blocking` closures run on the
//!   loop's thread at a seeded turn, and simulated standard streams ([`FiberIo::stdin`],
//!   [`FiberIo::stdout`]). A plain run is host 0, `localhost`,
//!   on a healthy world (an exact, instant disk; a 1 ms network) whose disk starts empty;
//!   [`sim::World`] adds hosts, crashes and the faults a seed draws. Fiber never touches a real
//!   file or socket: a handle a real backend opened is refused with the typed
//!   [`Unsupported`](io_core::Unsupported).
//!
//! Wakes from other threads are accepted (the run queue is thread-safe) but break determinism
//! and can race the deadlock check; keep fiber programs on one thread.
//!
//! ```
//! use io_fiber::FiberIo;
//!
//! let io = FiberIo::with_seed(7);
//! let (slept_until, virtual_ms) = io
//!     .run(|cx| async move {
//!         cx.sleep(3_600_000).await?; // one virtual hour
//!         Ok((cx.now_ms(), cx.now_ms()))
//!     })
//!     .unwrap();
//! assert_eq!(slept_until, 3_600_000);
//! assert_eq!(virtual_ms, io.now_ms());
//! ```
//!
//! # Finding bugs, not just replaying them
//!
//! A seed replays one run; these find the runs worth replaying and make them small.
//!
//! - **Schedulers** ([`Scheduler`], [`FiberIo::with_scheduler`], [`sim::World::scheduler`];
//!   in a sweep, [`sim::sweep_with`] passes the one `IOSWAP_SCHEDULER` names).
//!   [`Scheduler::Random`] (the default) runs in turns: every task ready at a turn's start runs
//!   once, in a seeded order, so tasks that are always ready advance in lockstep and an
//!   ordering across steps (one task three steps ahead of another) never happens.
//!   [`Scheduler::Walk`] picks uniformly among all enabled tasks at every step;
//!   [`Scheduler::Pct`] is probabilistic concurrency testing: random task priorities and
//!   `depth - 1` priority change points, which finds a bug of depth `d` with a probability
//!   bounded below by `1/(n·k^(d-1))` (n tasks, k steps). `tests/explore.rs` measures them on
//!   planted bugs of depth 1 to 3.
//! - **What the scheduler decides, and what is only recorded.** The scheduler chooses which
//!   enabled task runs next. Every other seeded choice is recorded and replayed but drawn as
//!   before: the simulated world's draws (latencies, hence the order in which I/O completes;
//!   faults and their timing; short transfers; late cancels; buggify) and the program's draws
//!   (`select`'s case, [`Cx::random_below`](io_core::Cx::random_below)). Timers due at the same
//!   time fire in arming order, a promise of the protocol, not a choice; but the tasks that
//!   timers and completions due at one moment wake are then enabled together, and which of them
//!   runs first is the scheduler's pick.
//! - **Schedules as data** ([`FiberIo::record_decisions`], [`DecisionLog`],
//!   [`FiberIo::replay`]): every decision of a run, one text line long, replayed exactly. A pick
//!   names the task it ran, so a log survives changes that do not touch its decisions; when it
//!   runs out, the replay goes on with the default choice and says so ([`ReplayReport`]).
//! - **Shrinking** ([`shrink`]): a failing schedule delta-debugged down to the few choices that
//!   make it fail.
//! - **Determinism self-check** ([`check_determinism`]; for a world,
//!   [`sim::check_world_determinism`]): a seed run twice; if the runs differ,
//!   the first step that does, with the task's name, the line that spawned it and the line of
//!   each run's wait ([`FiberIo::record_trace`] keeps them).
//! - **Looking at a run** ([`FiberIo::record_trace`], [`sim::World::record_trace`], then
//!   [`FiberIo::run_trace`] or the world's report): every poll, spawn, timer, I/O op, cancel and
//!   injected fault on the virtual timeline, as Chrome/Perfetto trace-event JSON
//!   ([`RunTrace::write_perfetto`]: one track per task, one process per host) or as a text
//!   timeline ([`RunTrace::timeline`]). See [`trace`] for how a millisecond's steps are laid
//!   out.
//!
//! The guide `docs/testing.md` (in the repository) walks through all of it with the
//! `examples/kv` store: from a flaky bug to its seed, its replay, a scheduler that finds it, the
//! shrunk schedule, its trace in Perfetto, and the determinism check.
//!
//! ```
//! use io_fiber::{shrink, FiberIo, Scheduler};
//!
//! // Two tasks add to a counter; one reads, yields, then writes back: an update can be lost.
//! fn lost_update(io: &FiberIo) -> bool {
//!     io.run(|cx| async move {
//!         let counter = std::rc::Rc::new(std::cell::Cell::new(0));
//!         let (a, b) = (counter.clone(), counter.clone());
//!         let racy = cx.spawn(move |cx| async move {
//!             let read = a.get();
//!             cx.yield_now().await?;
//!             a.set(read + 1);
//!             Ok(())
//!         });
//!         let atomic = cx.spawn(move |cx| async move {
//!             cx.yield_now().await?;
//!             cx.yield_now().await?;
//!             b.set(b.get() + 1);
//!             Ok(())
//!         });
//!         racy.await?;
//!         atomic.await?;
//!         Ok(counter.get() != 2)
//!     })
//!     .unwrap()
//! }
//!
//! let pct = Scheduler::Pct { depth: 2, steps: 8 };
//! let seed = (0..1_000)
//!     .find(|&seed| lost_update(&FiberIo::with_scheduler(seed, pct.clone())))
//!     .expect("PCT finds the lost update");
//! let failing = FiberIo::with_scheduler(seed, pct).record_decisions();
//! assert!(lost_update(&failing));
//! let shrunk = shrink(failing.decisions(), |log| lost_update(&FiberIo::replay(log.clone())));
//! let schedule = shrunk.unwrap().log;
//! assert!(lost_update(&FiberIo::replay(schedule.to_string().parse().unwrap())));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod decision;
mod determinism;
mod schedule;
mod shrink;
pub mod sim;
pub mod trace;

pub use decision::{Decision, DecisionLog, Granularity, ParseLogError, ReplayReport};
pub use determinism::{check_determinism, Divergence, RunTrace, StepReport};
pub use schedule::{ParseSchedulerError, Scheduler};
pub use shrink::{shrink, ShrinkError, Shrunk};

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_core::{
    BackendCore, Canceled, Cx, Driver, Io, Next, Op, OpId, Park, RawTask, RunError, RunQueue,
    Runnable, SpawnError, SpawnOptions, SplitMix64, Submitted, TimerId,
};

/// The deterministic virtual-clock backend. Cheap to clone: clones share one scheduler.
#[derive(Clone)]
pub struct FiberIo(Rc<Fiber>);

/// One step of a recorded schedule: which task was polled, when, and where it suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceEvent {
    /// The virtual time of the poll.
    pub at_ms: u64,
    /// The id of the task polled (1 is the main task).
    pub task: u64,
    /// Where the poll left the task waiting (the line of its `sleep`, `yield_now`, park…),
    /// `None` if it finished or its wait has no known place.
    pub suspended_at: Option<&'static Location<'static>>,
}

/// A task of a traced run ([`FiberIo::record_trace`]): its name and where it was spawned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskInfo {
    /// The task's id (1 is the main task).
    pub id: u64,
    /// Its name (`task#<id>` when spawned unnamed).
    pub name: String,
    /// The line that spawned it (for the main task, the line that called `run`).
    pub spawned_at: Option<&'static Location<'static>>,
    /// The host it runs on: 0 is the runner (`localhost`), a world's hosts and clients follow
    /// from 1 ([`RunTrace::hosts`] names them).
    pub host: usize,
}

struct Fiber {
    seed: u64,
    /// Picks among ready tasks. [`Io::random_u64`] draws from the core's generator, a stream of
    /// its own, so a program's draws (a `select`) never shift the scheduler's choices, and vice
    /// versa.
    rng: SplitMix64,
    /// The scheduler's state, and whether it steps one task at a time.
    picker: schedule::Picker,
    steps_mode: bool,
    /// Where the run's decisions are recorded to and replayed from (shared with the world).
    recorder: Rc<decision::Recorder>,
    core: BackendCore,
    /// Reused between turns; taken out while tasks run so a nested `poll` cannot alias it.
    /// (An `Option` so taking it leaves nothing behind to drop.)
    batch: RefCell<Option<VecDeque<Runnable>>>,
    trace_hash: Cell<u64>,
    steps: Cell<u64>,
    /// The steps, tasks and events of a traced run (shared with the world).
    tracer: Rc<trace::Tracer>,
    /// The simulated world that serves I/O.
    sim: sim::Sim,
}

impl FiberIo {
    /// A fiber backend with seed 0: ready tasks run in FIFO order.
    pub fn new() -> FiberIo {
        FiberIo::with_seed(0)
    }

    /// A fiber backend whose choice among ready tasks is driven by `seed` (0 = FIFO).
    pub fn with_seed(seed: u64) -> FiberIo {
        FiberIo::with_scheduler(seed, Scheduler::Random)
    }

    /// A fiber backend whose choice among enabled tasks is made by `scheduler`, drawing from
    /// `seed` ([`Scheduler::Random`] is [`FiberIo::with_seed`]).
    pub fn with_scheduler(seed: u64, scheduler: Scheduler) -> FiberIo {
        FiberIo::world(seed, scheduler, sim::Faults::none(), Vec::new())
    }

    /// A backend that replays `log` exactly: its seed, and every decision the log holds. When
    /// the log runs out, picks fall back to the first enabled task (FIFO) and draws to the
    /// seed's generator; [`FiberIo::replay_report`] counts them. The replay records its own
    /// decisions too ([`FiberIo::decisions`]).
    ///
    /// ```
    /// use io_fiber::{FiberIo, Scheduler};
    ///
    /// fn program(io: &FiberIo) -> Vec<u64> {
    ///     io.run(|cx| async move {
    ///         let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    ///         let tasks: Vec<_> = (0..4u64)
    ///             .map(|i| {
    ///                 let order = order.clone();
    ///                 cx.spawn(move |cx| async move {
    ///                     cx.yield_now().await?;
    ///                     order.borrow_mut().push(i * 10 + cx.random_below(10));
    ///                     Ok(())
    ///                 })
    ///             })
    ///             .collect();
    ///         for task in tasks {
    ///             task.await?;
    ///         }
    ///         let order = order.borrow().clone();
    ///         Ok(order)
    ///     })
    ///     .unwrap()
    /// }
    ///
    /// let recorded = FiberIo::with_scheduler(9, Scheduler::Walk).record_decisions();
    /// let original = program(&recorded);
    /// let log = recorded.decisions();
    /// let replay = FiberIo::replay(log.to_string().parse().unwrap());
    /// assert_eq!(program(&replay), original);
    /// assert_eq!(replay.trace_hash(), recorded.trace_hash());
    /// assert_eq!(replay.replay_report().mismatched, 0);
    /// ```
    pub fn replay(log: DecisionLog) -> FiberIo {
        let seed = log.seed;
        FiberIo::with_scheduler(seed, Scheduler::Replay(log)).record_decisions()
    }

    /// A backend serving the world of `hosts` (after host 0, itself) with `faults`.
    pub(crate) fn world(
        seed: u64,
        scheduler: Scheduler,
        faults: sim::Faults,
        hosts: Vec<sim::Host>,
    ) -> FiberIo {
        let recorder = Rc::new(decision::Recorder::default());
        if let Scheduler::Replay(log) = &scheduler {
            recorder.replay(log);
        }
        let tracer = Rc::new(trace::Tracer::default());
        let sim = sim::Sim::with(seed, faults, hosts, recorder.clone(), tracer.clone());
        let rng = SplitMix64::new(seed);
        let picker = schedule::Picker::new(seed, &scheduler, &rng);
        let fiber = Rc::new(Fiber {
            seed,
            rng,
            picker,
            steps_mode: scheduler.granularity() == Granularity::Steps,
            recorder,
            core: BackendCore::virtual_clock("fiber", RunQueue::new(), seed ^ CHOICE_STREAM),
            batch: RefCell::new(Some(VecDeque::new())),
            trace_hash: Cell::new(TRACE_SEED),
            steps: Cell::new(0),
            tracer,
            sim,
        });
        fiber.sim.attach(Rc::downgrade(&fiber));
        FiberIo(fiber)
    }

    pub(crate) fn fiber(&self) -> Rc<Fiber> {
        self.0.clone()
    }

    /// Also records the full schedule, step by step, for [`FiberIo::trace`], and what happened
    /// between and inside the steps ([`trace::Event`]: spawns, timers, ops, cancels, the world's
    /// faults), for [`FiberIo::run_trace`] to show ([`RunTrace::to_perfetto_json`],
    /// [`RunTrace::timeline`]). (The trace hash is always kept; the full trace costs memory per
    /// step and event.)
    pub fn record_trace(self) -> FiberIo {
        self.0.tracer.start();
        self
    }

    /// The run so far as one value (steps, tasks, hash), for comparing two runs
    /// ([`RunTrace::compare`]). Empty steps and tasks unless [`FiberIo::record_trace`] was
    /// asked for.
    pub fn run_trace(&self) -> RunTrace {
        RunTrace {
            seed: self.0.seed,
            steps: self.trace(),
            tasks: self.tasks(),
            hash: self.trace_hash(),
            events: self.0.tracer.events(),
            hosts: self.0.sim.host_names(),
        }
    }

    /// The tasks spawned so far, by id, if [`FiberIo::record_trace`] was asked for (else
    /// empty): names and spawn locations for the steps of [`FiberIo::trace`].
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.0.tracer.tasks()
    }

    /// Also records every decision of the run ([`FiberIo::decisions`]): each choice of the
    /// scheduler, of the simulated world and of the program's random draws. Costs memory per
    /// decision; off, a decision costs one `Cell` read.
    pub fn record_decisions(self) -> FiberIo {
        self.0.recorder.record();
        self
    }

    /// The decisions recorded so far ([`FiberIo::record_decisions`]; empty if not asked for),
    /// as a log that [`FiberIo::replay`] replays.
    pub fn decisions(&self) -> DecisionLog {
        DecisionLog {
            seed: self.0.seed,
            granularity: if self.0.steps_mode {
                Granularity::Steps
            } else {
                Granularity::Turns
            },
            decisions: self.0.recorder.decisions(),
        }
    }

    /// How closely a replay ([`FiberIo::replay`]) followed its log so far.
    pub fn replay_report(&self) -> ReplayReport {
        self.0.recorder.report()
    }

    /// Runs `main` as the main task on the virtual clock and returns its value. See
    /// [`io_core::run`] for what happens to tasks still alive when it returns. A backend runs
    /// once; a second `run` gives [`RunError::ShutDown`].
    #[track_caller]
    pub fn run<T, F, Fut>(&self, main: F) -> Result<T, RunError>
    where
        T: 'static,
        F: FnOnce(Cx) -> Fut,
        Fut: Future<Output = Result<T, Canceled>> + 'static,
    {
        let result = io_core::run(self.io(), main);
        if self.0.tracer.is_on() {
            if let Err(err @ (RunError::Deadlock(_) | RunError::Panicked { .. })) = &result {
                self.0.tracer.failed(self.0.core.now_ms(), err.to_string());
            }
        }
        result
    }

    /// This backend as a protocol object (and its driver side), for protocol-level code and
    /// tests.
    pub fn io(&self) -> Rc<dyn Driver> {
        self.0.clone()
    }

    /// Gives the program `bytes` as its standard input (a simulated one: reads give them, then
    /// end of file). Set it before [`FiberIo::run`].
    pub fn stdin(self, bytes: impl Into<Vec<u8>>) -> FiberIo {
        self.0.sim.set_stdin(0, bytes.into());
        self
    }

    /// What the program wrote to its (simulated) standard output.
    pub fn stdout(&self) -> Vec<u8> {
        self.0.sim.host_output(0).0
    }

    /// What the program wrote to its (simulated) standard error.
    pub fn stderr(&self) -> Vec<u8> {
        self.0.sim.host_output(0).1
    }

    /// The seed this backend schedules with.
    pub fn seed(&self) -> u64 {
        self.0.seed
    }

    /// The virtual clock.
    pub fn now_ms(&self) -> u64 {
        self.0.core.now_ms()
    }

    /// A hash of the schedule so far (every poll: which task, at what virtual time). Same
    /// program and seed ⇒ same hash, on every run and every machine.
    pub fn trace_hash(&self) -> u64 {
        self.0.trace_hash.get()
    }

    /// How many task polls the schedule has made.
    pub fn steps(&self) -> u64 {
        self.0.steps.get()
    }

    /// The full schedule, if [`FiberIo::record_trace`] was asked for (else empty).
    pub fn trace(&self) -> Vec<TraceEvent> {
        self.0.tracer.steps()
    }
}

impl Default for FiberIo {
    fn default() -> Self {
        FiberIo::new()
    }
}

impl fmt::Debug for FiberIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FiberIo")
            .field("seed", &self.0.seed)
            .field("now_ms", &self.0.core.now_ms())
            .field("steps", &self.0.steps.get())
            .finish_non_exhaustive()
    }
}

/// Separates the choice stream from the scheduling stream of the same seed.
const CHOICE_STREAM: u64 = 0x6368_6f69_6365_7321;

const TRACE_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// One schedule step as one word: the task id in the low half, the virtual time in the high
/// half (distinct for every step until ids or milliseconds pass 2^32, and still mixed after).
fn step_word(task: u64, at_ms: u64) -> u64 {
    task ^ at_ms.rotate_left(32)
}

/// Folds one word into the trace hash: xor, multiply by an odd constant, xor-shift. Each step is
/// a bijection of the running hash, so the hash depends on every word and on their order. One
/// multiply per step: hashing task and time byte by byte (FNV) was a chain of sixteen dependent
/// multiplies, a fifth of a task switch in `bench/`'s yield-ping.
fn mix(hash: u64, word: u64) -> u64 {
    let h = (hash ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

impl Fiber {
    /// Picks the next runnable: the only one, or the scheduler's choice (with seed 0 and the
    /// default scheduler, the oldest).
    #[inline]
    fn pick(&self, batch: &mut VecDeque<Runnable>) -> Option<Runnable> {
        if batch.len() < 2 || self.picker.is_plain_fifo(&self.recorder) {
            return batch.pop_front();
        }
        let step = self.steps.get() + 1;
        Some(self.picker.pick(batch, step, &self.rng, &self.recorder))
    }

    /// Fires the timers and world events that are due.
    #[inline]
    fn fire_due(&self) {
        if self.tracer.is_on() {
            self.trace_timers_fire();
        }
        self.core.fire_due();
        if self.sim.fire_due(self.core.now_ms()) > 0 {
            self.trace_hash
                .set(mix(self.trace_hash.get(), self.sim.hash()));
        }
    }

    /// What can still make a task runnable: scheduled world events count as I/O in flight.
    /// (Sockets dropped during the turn are closed first: their FIN or RST is such an event.)
    fn next(&self) -> Next {
        self.sim.sweep(self.core.now_ms());
        match self.core.next(self.sim.is_busy(), false) {
            // The core reports the earliest timer; a world event may come first.
            Next::Timer(at) => Next::Timer(at.min(self.sim.next_event().unwrap_or(u64::MAX))),
            Next::Io => match self.sim.next_event() {
                Some(at) => Next::Timer(at),
                None => Next::Io,
            },
            other => other,
        }
    }

    fn record(&self, task: u64) {
        let at_ms = self.core.now_ms();
        self.trace_hash
            .set(mix(self.trace_hash.get(), step_word(task, at_ms)));
        self.steps.set(self.steps.get() + 1);
    }

    /// Runs one step of a task, noting where it suspended when tracing.
    #[inline]
    fn run_step(&self, runnable: Runnable) {
        let task = runnable.metadata().id();
        self.record(task);
        // One call site of `run` (two would keep this from inlining), the tracing out of line.
        let tracing = self.tracer.is_on();
        if tracing {
            self.trace_poll_starts(task);
        }
        runnable.run();
        if tracing {
            self.trace_poll_ends();
        }
    }

    #[cold]
    #[inline(never)]
    fn trace_poll_starts(&self, task: u64) {
        self.tracer.poll_starts(self.core.now_ms(), task);
    }

    #[cold]
    #[inline(never)]
    fn trace_poll_ends(&self) {
        self.tracer.poll_ends();
    }

    // The tracing hooks: on the hot paths only a `Cell` read stays inline; what tracing does
    // (reading the clock, allocating) is out of line, so it does not tip the inlining of the
    // suspend and submit paths it sits in.

    /// A task is spawned on `host` (0: here): noted while tracing.
    #[inline(always)]
    pub(crate) fn note_spawn(&self, host: usize, task: &RawTask, opts: &SpawnOptions) {
        if self.tracer.is_on() {
            self.trace_spawn(host, task, opts);
        }
    }

    #[cold]
    #[inline(never)]
    fn trace_spawn(&self, host: usize, task: &RawTask, opts: &SpawnOptions) {
        let info = TaskInfo {
            id: task.id(),
            name: task.task().name().into_owned(),
            spawned_at: opts.location(),
            host,
        };
        self.tracer.spawned(self.core.now_ms(), info);
    }

    /// A suspend on `park` (here or on a simulated host): where it waits, or the cancel it
    /// met, is noted while tracing.
    #[inline(always)]
    pub(crate) fn note_suspend(&self, park: &Park, poll: Poll<Result<(), Canceled>>) {
        if self.tracer.is_on() {
            self.trace_suspend(park, poll);
        }
    }

    #[cold]
    #[inline(never)]
    fn trace_suspend(&self, park: &Park, poll: Poll<Result<(), Canceled>>) {
        self.tracer.suspended(self.core.now_ms(), park, &poll);
    }

    /// A timer armed (here or on a simulated host): noted while tracing, for the trace to say
    /// when it fires and whom it wakes.
    #[inline(always)]
    pub(crate) fn note_timer(&self, id: TimerId, park: &Park) -> TimerId {
        if self.tracer.is_on() {
            self.tracer.timer_armed(id, park);
        }
        id
    }

    /// A timer disarmed before it fired.
    #[inline(always)]
    pub(crate) fn note_disarm(&self, id: TimerId) {
        if self.tracer.is_on() {
            self.tracer.timer_disarmed(id);
        }
    }

    /// The timers due now are about to fire: noted while tracing.
    #[cold]
    #[inline(never)]
    fn trace_timers_fire(&self) {
        self.tracer.timers_fire(self.core.now_ms());
    }

    /// Serves `op` for `host` (incarnation `epoch`) from the world, and notes it: a submit
    /// while tracing.
    #[cold]
    #[inline(never)]
    pub(crate) fn submit_traced(&self, host: usize, epoch: u32, op: Op) -> Submitted {
        let now = self.core.now_ms();
        let name = op.name();
        let submitted = self.sim.submit(host, epoch, op, now);
        self.tracer.op_submitted(now, host, name, &submitted);
        submitted
    }
}

impl Io for Fiber {
    fn core(&self) -> &BackendCore {
        &self.core
    }

    fn spawn_raw(&self, task: RawTask, opts: &SpawnOptions) -> Result<(), SpawnError> {
        self.core.admit(&task)?;
        self.note_spawn(0, &task, opts);
        task.schedule();
        Ok(())
    }

    fn suspend_raw(&self, park: &Park, cx: &mut Context<'_>) -> Poll<Result<(), Canceled>> {
        let poll = io_core::suspend_on(self, park, cx);
        self.note_suspend(park, poll);
        poll
    }

    /// I/O is served by the simulated world ([`sim`]): this backend is its host 0,
    /// `localhost`. No real file or socket is ever touched.
    fn submit(&self, op: Op) -> Submitted {
        if self.tracer.is_on() {
            return self.submit_traced(0, 0, op);
        }
        self.sim.submit(0, 0, op, self.core.now_ms())
    }

    fn arm_timer(&self, deadline_ms: u64, park: &Park) -> TimerId {
        self.note_timer(self.core.arm_timer(deadline_ms, park), park)
    }

    fn disarm_timer(&self, id: TimerId) -> Option<u64> {
        self.note_disarm(id);
        self.core.disarm_timer(id)
    }

    fn cancel_op(&self, id: OpId) {
        self.sim.cancel_op(id)
    }

    fn discard_op(&self, id: OpId) {
        self.sim.discard_op(id)
    }

    fn buggify(&self, site: &'static str) -> bool {
        self.sim.buggify(site)
    }

    /// The program's draws are part of the schedule: recorded, and replayed.
    fn random_u64(&self) -> u64 {
        self.recorder.program(self.core.random_u64())
    }
}

impl Driver for Fiber {
    /// One turn: fire due timers; run every task that was ready at the start of the turn, in
    /// seeded order (tasks woken meanwhile run next turn); if none was ready, move the clock to
    /// the earliest timer (or to `deadline_ms`, whichever is first) and fire what is due. Never
    /// reports [`Next::Foreign`]: a wake from another thread is not part of a seeded run.
    fn poll(&self, deadline_ms: u64) -> Next {
        self.fire_due();
        let mut batch = self.batch.take().unwrap_or_default();
        self.core.queue().drain_into(&mut batch);
        if batch.is_empty() {
            self.batch.replace(Some(batch));
            let target = self
                .core
                .next_deadline()
                .unwrap_or(u64::MAX)
                .min(self.sim.next_event().unwrap_or(u64::MAX))
                .min(deadline_ms);
            if target != u64::MAX {
                self.core.advance_to(target);
            }
            self.fire_due();
            return self.next();
        }
        if self.steps_mode {
            // One step: the scheduler sees every enabled task, including those this step wakes.
            if let Some(runnable) = self.pick(&mut batch) {
                self.batch.replace(Some(batch));
                self.run_step(runnable);
            }
            let next = self.next();
            let enabled = self.batch.borrow().as_ref().is_some_and(|b| !b.is_empty());
            return if enabled { Next::Run } else { next };
        }
        while let Some(runnable) = self.pick(&mut batch) {
            self.run_step(runnable);
        }
        self.batch.replace(Some(batch));
        self.next()
    }

    /// Tasks still enabled (a step scheduler keeps them between polls) go back on the run
    /// queue first, so shutting down runs and drops them like every other task.
    fn shut_down(&self) {
        let batch = self.batch.take();
        if let Some(mut batch) = batch {
            for runnable in batch.drain(..) {
                runnable.schedule();
            }
            self.batch.replace(Some(batch));
        }
        self.core.shut_down();
    }
}
