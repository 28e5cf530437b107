//! The simulated world the fiber backend serves I/O from: hosts with addresses and names, a
//! network between them, a disk per host, and the faults a seed draws.
//!
//! - `net`: TCP (latency, windows, retransmission, partitions, crashes, Linux's error kinds,
//!   the bind options' backlog and `SO_REUSEPORT`) and Unix stream sockets.
//! - `dgram`: UDP (latency per datagram, loss, duplication, reordering, ICMP refusals of a
//!   connected socket, bounded receive buffers, truncation) and Unix datagram sockets.
//! - `disk`: files, directories, symbolic and hard links, with a real disk's durability for
//!   contents and a journal's for directory entries; `EIO`, `ENOSPC`, torn writes.
//! - `offload`: name lookups from the host table, `spawn_blocking` closures run at a seeded
//!   turn, and each host's standard streams.
//!
//! (Each module's docs give its semantics in full, with the error kinds and faults.)
//!
//! Everything here is a pure function of the seed and the program: state lives in ordered maps
//! and queues (no hash-map iteration), every choice is drawn from the world's own [`SplitMix64`]
//! stream, and time is the fiber backend's virtual clock. Each step of the world (a segment
//! delivered, an op completed, a host crashed) is folded into the backend's trace hash.
//!
//! The world is a queue of timed events (`Event`) beside the backend's timers. The fiber
//! driver fires the events that are due in each turn and, when nothing is runnable, moves the
//! clock to the earlier of the next timer and the next event.

mod dgram;
mod disk;
mod events;
mod faults;
mod host;
mod net;
mod offload;
mod ops;
mod sweep;
mod world;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::rc::{Rc, Weak};

use io_core::offload::Offload;
use io_core::op::{Completion, Handle, Op, OpId, OpSlot, Submitted};
use io_core::{Canceled, SplitMix64, Unsupported};

pub use faults::{DiskFaults, Faults, NetFaults};
pub(crate) use host::Host;
pub use sweep::{
    scheduler_from_env, sweep, sweep_named, sweep_named_with, sweep_with, Seeds, SweepFailure,
    SCHEDULER_VAR, SEEDS_VAR, SEED_VAR,
};
pub use world::{
    check_world_determinism, Control, HostStart, Outcome, SimError, World, WorldReport,
};

use crate::decision::Recorder;
use crate::trace::Tracer;
use crate::Fiber;

/// A host's index in the world. Host 0 is the fiber backend itself (the runner of a plain
/// [`FiberIo`](crate::FiberIo) run and of a world's control code); declared hosts follow.
pub(crate) type HostId = usize;

/// The world's state, owned by the fiber backend.
pub(crate) struct Sim {
    state: RefCell<State>,
    /// Sockets whose last handle user code dropped, closed at the world's next step. (A handle's
    /// `Drop` must not borrow `state`: it may run while the world is mid-step.)
    dropped: Rc<RefCell<Vec<net::SockId>>>,
    /// The time of the world's first event (see [`State::first_event`]).
    first_event: Rc<Cell<u64>>,
    /// The backend, for starting a host's tasks again after a restart.
    fiber: RefCell<Weak<Fiber>>,
    /// Folded into the backend's trace hash at each step.
    hash: Cell<u64>,
    /// Where a traced run's events go (shared with the backend).
    tracer: Rc<Tracer>,
}

/// An op the world has not completed yet.
struct Pending {
    host: HostId,
    op: Op,
    slot: OpSlot,
    /// The op's effect is done (bytes moved, a file written) and only its report waits: like
    /// an op io_uring has started, it can no longer be canceled (rule 3, completion wins).
    done: bool,
    /// The network queue it waits in, if it waits in one.
    parked: Option<net::ParkOn>,
}

impl Pending {
    /// Reports `result` to the op's task. Every op of the world completes here or in
    /// [`complete_op`], so a traced run sees every completion.
    fn complete(self, tracer: &Tracer, now: u64, id: u64, result: io::Result<usize>) {
        let completion = Completion {
            result,
            op: self.op,
        };
        complete_op(tracer, now, id, self.host, &self.slot, completion);
    }

    /// The op ends without a result (its host crashed, its future is gone): traced as a
    /// completion that never reached its task, so every traced submit has its end.
    fn dropped(&self, tracer: &Tracer, now: u64, id: u64, why: &str) {
        if tracer.is_on() {
            let result = Err(io::Error::other(format!("dropped ({why})")));
            tracer.op_completed(now, self.host, id, self.op.name(), &result);
        }
    }
}

/// Completes op `id` of `host` in `slot` (its task is readied), traced.
fn complete_op(
    tracer: &Tracer,
    now: u64,
    id: u64,
    host: HostId,
    slot: &OpSlot,
    completion: Completion,
) {
    if tracer.is_on() {
        tracer.op_completed(now, host, id, completion.op.name(), &completion.result);
    }
    slot.complete(completion);
}

/// Something the world does at a virtual time.
#[derive(Debug)]
enum Event {
    /// A network event (a segment or handshake step arrives).
    Net(net::Event),
    /// An op whose effect is done completes (the latency of a disk).
    Complete { op: u64, result: io::Result<usize> },
    /// A cancel that arrived late reaches its op: unless it completed meanwhile, it ends canceled.
    Cancel { op: u64 },
    /// A host crashes.
    Crash(HostId),
    /// A crashed host boots again.
    Restart(HostId),
    /// Packets from one host to another start being dropped (a one-way partition).
    Cut { from: HostId, to: HostId },
    /// A cut heals.
    Heal { from: HostId, to: HostId },
    /// The fault plan draws its next partition.
    NextPartition,
    /// A blocking closure's turn: it runs, and its op completes (unless its caller left).
    RunBlocking { op: u64 },
}

pub(crate) struct State {
    /// The world's choices: latencies, faults, the kernel's freedoms.
    rng: Draws,
    faults: Faults,
    /// Timed events, in time order, ties in scheduling order.
    events: events::Events,
    /// The time of the first of `events` (`u64::MAX`: none), shared with [`Sim`] so a turn with
    /// nothing due costs the driver no borrow of the state.
    first_event: Rc<Cell<u64>>,
    /// Ops in flight, by id.
    ops: ops::Ops,
    next_op: u64,
    hosts: Vec<host::Host>,
    net: net::Net,
    /// What the world did to the program, for a failing run's report.
    log: Vec<String>,
    /// Buggify sites seen so far, and whether this run enabled each.
    buggify: BTreeMap<&'static str, bool>,
    now: u64,
    /// Where dropped socket handles are noted (see [`Sim::dropped`]).
    dropped: Rc<RefCell<Vec<net::SockId>>>,
    /// Files whose last handle was dropped, noted by the handle's `Drop` (which must not borrow
    /// the state) and counted at the next file op (see [`disk::closed`]).
    closed_files: disk::Closed,
    /// The clients of a world's run, canceled if it fails.
    clients: Vec<io_core::TaskRef>,
    /// The first failure of a host, and its time.
    failure: Option<(String, u64)>,
    /// Hosts `1..=crash_hosts` are crashed by the fault plan.
    crash_hosts: usize,
    /// The clients are done.
    ended: bool,
    /// Blocking closures whose callers left (canceled or dropped), still to run at their turn,
    /// by op id, with their host.
    detached: BTreeMap<u64, (HostId, Op)>,
    /// Where a traced run's events go.
    tracer: Rc<Tracer>,
}

impl Sim {
    /// A world with only host 0 (`localhost`, 127.0.0.1) and no faults: a plain fiber backend.
    #[cfg(test)]
    pub(crate) fn new(seed: u64) -> Sim {
        Sim::with(
            seed,
            Faults::none(),
            Vec::new(),
            Rc::default(),
            Rc::default(),
        )
    }

    pub(crate) fn with(
        seed: u64,
        faults: Faults,
        hosts: Vec<host::Host>,
        recorder: Rc<Recorder>,
        tracer: Rc<Tracer>,
    ) -> Sim {
        let mut all = vec![host::Host::runner()];
        all.extend(hosts);
        let dropped = Rc::new(RefCell::new(Vec::new()));
        let first_event = Rc::new(Cell::new(u64::MAX));
        Sim {
            state: RefCell::new(State {
                rng: Draws {
                    rng: SplitMix64::new(seed ^ WORLD_STREAM),
                    recorder,
                },
                faults,
                events: events::Events::default(),
                first_event: first_event.clone(),
                ops: ops::Ops::default(),
                next_op: 1,
                hosts: all,
                net: net::Net::default(),
                log: Vec::new(),
                buggify: BTreeMap::new(),
                now: 0,
                dropped: dropped.clone(),
                closed_files: disk::Closed::default(),
                clients: Vec::new(),
                failure: None,
                crash_hosts: 0,
                ended: false,
                detached: BTreeMap::new(),
                tracer: tracer.clone(),
            }),
            dropped,
            first_event,
            fiber: RefCell::new(Weak::new()),
            hash: Cell::new(0),
            tracer,
        }
    }

    pub(crate) fn attach(&self, fiber: Weak<Fiber>) {
        *self.fiber.borrow_mut() = fiber;
    }

    /// The time of the world's next event, if any is scheduled.
    pub(crate) fn next_event(&self) -> Option<u64> {
        Some(self.first_event.get()).filter(|&at| at != u64::MAX)
    }

    /// Whether an event is scheduled (the world will make progress on its own).
    pub(crate) fn is_busy(&self) -> bool {
        self.first_event.get() != u64::MAX
    }

    /// A hash of every world step so far.
    pub(crate) fn hash(&self) -> u64 {
        self.hash.get()
    }

    /// What the world did (faults, crashes), one line each.
    pub(crate) fn log(&self) -> Vec<String> {
        self.state.borrow().log.clone()
    }

    /// The hosts' names, by host number.
    pub(crate) fn host_names(&self) -> Vec<String> {
        let state = self.state.borrow();
        state.hosts.iter().map(|host| host.name.clone()).collect()
    }

    /// Fires every event due at `now`, in order. Returns how many fired.
    #[inline]
    pub(crate) fn fire_due(&self, now: u64) -> usize {
        // The driver calls this every turn: a turn with nothing due stays this cheap.
        if self.first_event.get() > now && self.dropped.borrow().is_empty() {
            return 0;
        }
        self.fire_due_now(now)
    }

    fn fire_due_now(&self, now: u64) -> usize {
        self.sweep_now(now);
        let mut fired = 0;
        loop {
            let event = {
                let mut state = self.state.borrow_mut();
                state.now = now;
                state.pop_due(now)
            };
            let Some(event) = event else { break };
            fired += 1;
            self.fold(event_word(&event));
            self.handle(event, now);
            self.sweep(now);
        }
        fired
    }

    fn handle(&self, event: Event, now: u64) {
        match event {
            Event::Net(event) => {
                let mut state = self.state.borrow_mut();
                net::on_event(&mut state, event);
            }
            Event::Complete { op, result } => {
                let mut state = self.state.borrow_mut();
                state.complete(op, result);
            }
            Event::Cancel { op } => {
                let mut state = self.state.borrow_mut();
                state.cancel_now(op);
            }
            Event::Crash(host) => self.crash(host),
            Event::NextPartition => self.state.borrow_mut().schedule_partition(),
            Event::Restart(host) => self.restart(host),
            Event::Cut { from, to } => self.state.borrow_mut().link(from, to, true),
            Event::Heal { from, to } => self.state.borrow_mut().link(from, to, false),
            Event::RunBlocking { op } => {
                let (pending, detached) = {
                    let mut state = self.state.borrow_mut();
                    (state.ops.remove(&op), state.detached.remove(&op))
                };
                // The closure runs with the world unborrowed: it is the program's code.
                if let Some(mut pending) = pending {
                    offload::run(&mut pending.op);
                    pending.complete(&self.tracer, now, op, Ok(0));
                } else if let Some((_, mut op)) = detached {
                    offload::run(&mut op);
                    // Nobody is left to take the output, or a panic from its drop.
                    io_core::drop_contained(op);
                }
            }
        }
    }

    /// Closes the sockets whose handles were dropped since the last step.
    #[inline]
    pub(crate) fn sweep(&self, now: u64) {
        if !self.dropped.borrow().is_empty() {
            self.sweep_now(now);
        }
    }

    fn sweep_now(&self, now: u64) {
        loop {
            let dropped = std::mem::take(&mut *self.dropped.borrow_mut());
            if dropped.is_empty() {
                return;
            }
            let mut state = self.state.borrow_mut();
            state.now = now;
            for sock in dropped {
                net::on_drop(&mut state, sock);
            }
        }
    }

    /// Serves `op` for `host` (incarnation `epoch`).
    pub(crate) fn submit(&self, host: HostId, epoch: u32, op: Op, now: u64) -> Submitted {
        self.sweep(now);
        let mut state = self.state.borrow_mut();
        state.now = now;
        if !state.hosts[host].is_current(epoch) {
            // A task of a crashed incarnation: it is being dropped and will never see this.
            return Submitted::Done(Completion {
                result: Err(Canceled.into()),
                op,
            });
        }
        let reply = match op {
            Op::Nop => Reply::Done(Ok(0), op),
            Op::Open { .. }
            | Op::ReadAt { .. }
            | Op::WriteAt { .. }
            | Op::SyncAll { .. }
            | Op::Len { .. }
            | Op::SetLen { .. }
            | Op::Stat { .. }
            | Op::Offload(Offload::Fs(_)) => disk::submit(&mut state, host, op),
            Op::Offload(_) => offload::submit(&mut state, host, op),
            Op::Bind { .. }
            | Op::Accept { .. }
            | Op::Connect { .. }
            | Op::Recv { .. }
            | Op::Send { .. }
            | Op::Shutdown { .. }
            | Op::BindUdp { .. }
            | Op::ConnectUdp { .. }
            | Op::SendTo { .. }
            | Op::RecvFrom { .. }
            | Op::BindUnix { .. }
            | Op::ConnectUnix { .. }
            | Op::AcceptUnix { .. }
            | Op::SendToUnix { .. }
            | Op::RecvFromUnix { .. } => net::submit(&mut state, host, op),
            Op::Close { handle } => {
                let result = close(handle);
                Reply::Done(result, Op::Close { handle: None })
            }
            other => {
                let name = other.name();
                Reply::Done(Err(Unsupported::io_error("fiber", name)), other)
            }
        };
        // io_uring's freedom to complete out of order: an op done at once may report later.
        // (Looked at only when the faults allow it: no draw is made otherwise, as before.)
        let (op, then) = match reply {
            Reply::Done(result, op) => {
                let late = state.faults.late_completion_ppm;
                if late == 0 || !state.chance(late) {
                    drop(state);
                    self.sweep(now);
                    return Submitted::Done(Completion { result, op });
                }
                let delay = state.between(1, state.faults.late_completion_ms.max(1));
                (op, Then::After(delay, result))
            }
            Reply::Wait(op, then) => (op, then),
        };
        let id = state.next_op;
        state.next_op += 1;
        let slot = OpSlot::new(op.name());
        let done = matches!(then, Then::After(..));
        let parked = match then {
            Then::Park(park) => Some(park),
            Then::After(..) | Then::Fail(..) | Then::Run(..) => None,
        };
        state.ops.insert(
            id,
            Pending {
                host,
                op,
                slot: slot.clone(),
                done,
                parked,
            },
        );
        match then {
            Then::Park(park) => net::park(&mut state, id, park),
            Then::After(delay, result) | Then::Fail(delay, result) => {
                state.schedule(delay, Event::Complete { op: id, result })
            }
            Then::Run(delay) => state.schedule(delay, Event::RunBlocking { op: id }),
        }
        let submitted = Submitted::InFlight {
            id: OpId::new(id),
            slot,
        };
        drop(state);
        self.sweep(now);
        submitted
    }

    /// The task waiting on op `id` was canceled.
    pub(crate) fn cancel_op(&self, id: OpId) {
        let mut state = self.state.borrow_mut();
        let id = id.get();
        let Some(pending) = state.ops.get(&id) else {
            return;
        };
        if state.tracer.is_on() {
            state.tracer.op_cancel(state.now, pending.host, id);
        }
        if offload::detaches(&pending.op) {
            // A closure may run for any time, a lookup wait for a slow resolver: the caller
            // goes at once. A closure runs on at its turn; a lookup's result is dropped.
            let pending = state.ops.remove(&id).expect("checked above");
            let shell = offload::shell(&pending.op);
            if offload::runs_later(&pending.op) {
                state.detached.insert(id, (pending.host, pending.op));
            }
            let now = state.now;
            drop(state);
            let completion = Completion {
                result: Err(Canceled.into()),
                op: shell,
            };
            complete_op(
                &self.tracer,
                now,
                id,
                pending.host,
                &pending.slot,
                completion,
            );
            return;
        }
        if pending.done {
            // Its effect is done (a file op waiting out the disk's latency, a late report):
            // its result arrives, as for an op io_uring has started.
            return;
        }
        // The kernel's freedom: a cancel may arrive after the op could complete.
        let late = state.faults.late_cancel_ms;
        if late > 0 && state.rng.below(2) == 0 {
            let delay = 1 + state.rng.below(late);
            state.schedule(delay, Event::Cancel { op: id });
        } else {
            state.cancel_now(id);
        }
    }

    /// The op's future is gone: forget it (its handles close at the next sweep).
    pub(crate) fn discard_op(&self, id: OpId) {
        let pending = {
            let mut state = self.state.borrow_mut();
            let mut pending = state.take_op(id.get());
            if let Some(pending) = &pending {
                pending.dropped(&state.tracer, state.now, id.get(), "its future is gone");
            }
            if pending.as_ref().is_some_and(|p| offload::runs_later(&p.op)) {
                // A closure runs on at its turn, its output dropped. (A lookup's result is
                // dropped with it now: its completion finds no op.)
                let Pending { host, op, .. } = pending.take().expect("checked above");
                state.detached.insert(id.get(), (host, op));
            }
            pending
        };
        drop(pending);
    }

    /// Whether the fault point `site` fires (FoundationDB's rule: each site is enabled for a
    /// run with probability 1/4 the first time it is reached; an enabled site fires 1/4 of the
    /// times it is reached). Never on a world whose faults are off.
    pub(crate) fn buggify(&self, site: &'static str) -> bool {
        let mut state = self.state.borrow_mut();
        if !state.faults.buggify {
            return false;
        }
        let enabled = match state.buggify.get(site) {
            Some(&enabled) => enabled,
            None => {
                let enabled = state.rng.below(4) == 0;
                state.buggify.insert(site, enabled);
                enabled
            }
        };
        enabled && state.rng.below(4) == 0
    }

    fn fold(&self, word: u64) {
        let h = (self.hash.get() ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.hash.set(h ^ (h >> 29));
    }
}

impl Drop for Sim {
    /// Closures still to run when the backend goes (detached, or waited for by a task that is
    /// dropped with it) are dropped contained: nobody is left to receive a panic from them.
    fn drop(&mut self) {
        let state = self.state.get_mut();
        io_core::drop_contained(std::mem::take(&mut state.detached));
        io_core::drop_contained(state.ops.take_all());
    }
}

/// Separates the world's stream from the scheduler's and the program's.
const WORLD_STREAM: u64 = 0x776f_726c_6421_0001;

/// One word per event, for the trace hash.
fn event_word(event: &Event) -> u64 {
    match event {
        Event::Net(event) => net::event_word(event),
        Event::Complete { op, result } => {
            1 ^ (op << 8) ^ (*result.as_ref().unwrap_or(&usize::MAX) as u64).rotate_left(32)
        }
        Event::Cancel { op } => 2 ^ (op << 8),
        Event::Crash(host) => 3 ^ ((*host as u64) << 8),
        Event::Restart(host) => 4 ^ ((*host as u64) << 8),
        Event::Cut { from, to } => 5 ^ ((*from as u64) << 8) ^ ((*to as u64) << 32),
        Event::Heal { from, to } => 6 ^ ((*from as u64) << 8) ^ ((*to as u64) << 32),
        Event::NextPartition => 7,
        Event::RunBlocking { op } => 8 ^ (op << 8),
    }
}

/// What serving an op gave: its result now, or a wait.
pub(crate) enum Reply {
    Done(io::Result<usize>, Op),
    Wait(Op, Then),
}

/// How a waiting op ends.
pub(crate) enum Then {
    /// When the world says so (data arrives, a handshake ends): it waits in a queue of the net.
    Park(net::ParkOn),
    /// After `delay` ms, with `result` (its effect is already done: it cannot be canceled).
    After(u64, io::Result<usize>),
    /// After `delay` ms, with `result`, unless canceled first (nothing was done yet: a connect
    /// that no host will ever answer).
    Fail(u64, io::Result<usize>),
    /// A blocking closure, run after `delay` ms.
    Run(u64),
}

/// Closes a file or socket: its last handle is dropped here, or when the op holding another ends.
fn close(handle: Option<Handle>) -> io::Result<usize> {
    match handle {
        Some(handle) if handle.get::<net::SimSocket>().is_some() => Ok(0),
        Some(handle) if handle.get::<disk::SimFile>().is_some() => Ok(0),
        Some(_) => Err(Unsupported::io_error("fiber", "close")),
        None => Ok(0),
    }
}

/// The world's generator, whose every draw is a decision of the run: recorded when asked for,
/// replayed from a log.
struct Draws {
    rng: SplitMix64,
    recorder: Rc<Recorder>,
}

impl Draws {
    /// A draw in `0..n` (`n > 0`).
    #[inline]
    fn below(&self, n: u64) -> u64 {
        self.recorder.world(self.rng.below(n), n)
    }
}

impl State {
    fn schedule(&mut self, delay: u64, event: Event) {
        self.schedule_at(self.now.saturating_add(delay), event);
    }

    fn schedule_at(&mut self, at: u64, event: Event) {
        let at = at.max(self.now);
        self.events.push(at, event);
        if at < self.first_event.get() {
            self.first_event.set(at);
        }
    }

    /// The first event due at `now`, taken out of the queue.
    fn pop_due(&mut self, now: u64) -> Option<Event> {
        let (event, time_ended) = self.events.pop_due(now)?;
        if time_ended {
            let next = self.events.first_time().unwrap_or(u64::MAX);
            self.first_event.set(next);
        }
        Some(event)
    }

    /// Takes op `id` out of the world (and out of the network queue it waits in), to end it.
    fn take_op(&mut self, id: u64) -> Option<Pending> {
        let pending = self.ops.remove(&id)?;
        if let Some(on) = pending.parked {
            net::unpark(self, id, on);
        }
        Some(pending)
    }

    /// Completes op `id` with `result`, unless it already ended (canceled, discarded).
    fn complete(&mut self, id: u64, result: io::Result<usize>) {
        if let Some(pending) = self.take_op(id) {
            pending.complete(&self.tracer, self.now, id, result);
        }
    }

    /// Ends op `id` canceled, buffers intact, unless it already ended.
    fn cancel_now(&mut self, id: u64) {
        self.complete(id, Err(Canceled.into()));
    }

    /// A draw in `min..=max`.
    fn between(&self, min: u64, max: u64) -> u64 {
        if max <= min {
            min
        } else {
            min + self.rng.below((max - min).saturating_add(1))
        }
    }

    /// Whether an event of probability `per_million` / 1,000,000 happens.
    fn chance(&self, per_million: u32) -> bool {
        per_million > 0 && self.rng.below(1_000_000) < u64::from(per_million)
    }

    /// The kernel's freedom to move fewer bytes than asked: `n` or, when the world's faults
    /// allow short transfers and the seed says so, fewer (at least one). Inline: most worlds
    /// have short transfers off, and then this is two comparisons on every read and write.
    #[inline]
    fn transfer(&self, n: usize) -> usize {
        if n > 1 && self.chance(self.faults.short_transfer_ppm) {
            1 + self.rng.below(n as u64 - 1) as usize
        } else {
            n
        }
    }
}

impl Sim {
    fn crash(&self, host: HostId) {
        // The ops and closures the crash ends, dropped once the world is unborrowed, each drop
        // contained: nobody is left to receive a panic from it.
        let mut ended_ops = Vec::new();
        let tasks = {
            let mut state = self.state.borrow_mut();
            if !state.hosts[host].up {
                return;
            }
            let what = format!("crash {}", state.hosts[host].name);
            state.report(host, what);
            net::crash(&mut state, host);
            // Its ops end with it: their tasks are dropped before they could see a result.
            let ended = state.ops.of_host(host);
            for id in ended {
                let Some(pending) = state.take_op(id) else {
                    continue;
                };
                pending.dropped(&state.tracer, state.now, id, "its host crashed");
                ended_ops.push(pending.op);
            }
            let detached = std::mem::take(&mut state.detached);
            for (id, (owner, op)) in detached {
                if owner == host {
                    ended_ops.push(op);
                } else {
                    state.detached.insert(id, (owner, op));
                }
            }
            disk::crash(&mut state, host);
            let host_state = &mut state.hosts[host];
            host_state.up = false;
            host_state.epoch += 1;
            let tasks = std::mem::take(&mut host_state.tasks);
            let restart = state.faults.restart_after_ms;
            if let Some((min, max)) = restart {
                let delay = state.between(min, max);
                state.schedule(delay, Event::Restart(host));
            }
            tasks
        };
        for op in ended_ops {
            io_core::drop_contained(op);
        }
        // Each task drops its future at its next run, without polling it: no code of the host
        // runs past the crash.
        for task in tasks {
            if self.tracer.is_on() {
                self.tracer.abandoned(task.id());
            }
            task.abandon();
        }
    }

    fn restart(&self, host: HostId) {
        let start = {
            let mut state = self.state.borrow_mut();
            let host_state = &mut state.hosts[host];
            if host_state.up {
                return;
            }
            host_state.up = true;
            let what = format!("restart {}", host_state.name);
            let start = host_state.start.clone();
            state.report(host, what);
            if let Some((min, max)) = state.faults.crash_every_ms {
                if host <= state.crash_hosts {
                    let at = state.between(min, max);
                    state.schedule(at, Event::Crash(host));
                }
            }
            start
        };
        let Some(fiber) = self.fiber.borrow().upgrade() else {
            return;
        };
        if let Some(start) = start {
            host::boot(&fiber, host, &start);
        }
    }

    /// Crashes `host` at the start of the next turn (from a test): a task that crashes its own
    /// host stops at its next suspend point, as it would if another host had done it.
    pub(crate) fn crash_now(&self, host: HostId) {
        self.sync_clock();
        self.state.borrow_mut().schedule(0, Event::Crash(host));
    }

    /// Boots a crashed `host` at the start of the next turn.
    pub(crate) fn restart_now(&self, host: HostId) {
        self.sync_clock();
        self.state.borrow_mut().schedule(0, Event::Restart(host));
    }

    /// Cuts the network from `from` to `to` now.
    pub(crate) fn cut_now(&self, from: HostId, to: HostId) {
        let now = self.sync_clock();
        self.handle(Event::Cut { from, to }, now);
    }

    /// Heals a cut now.
    pub(crate) fn heal_now(&self, from: HostId, to: HostId) {
        let now = self.sync_clock();
        self.handle(Event::Heal { from, to }, now);
    }

    /// Brings the world's idea of now up to the backend's clock (a turn with nothing due does
    /// not touch the world), for what the program does to the world between its events.
    fn sync_clock(&self) -> u64 {
        let mut state = self.state.borrow_mut();
        if let Some(fiber) = self.fiber.borrow().upgrade() {
            state.now = fiber.core.now_ms();
        }
        state.now
    }

    /// Sets `host`'s standard input.
    pub(crate) fn set_stdin(&self, host: HostId, bytes: Vec<u8>) {
        self.state.borrow_mut().hosts[host].stdio.stdin = bytes.into();
    }

    /// What each host wrote to stdout and stderr, by name (hosts that wrote nothing left out).
    pub(crate) fn output(&self) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let state = self.state.borrow();
        state
            .hosts
            .iter()
            .filter(|h| !h.stdio.stdout.is_empty() || !h.stdio.stderr.is_empty())
            .map(|h| {
                (
                    h.name.clone(),
                    h.stdio.stdout.clone(),
                    h.stdio.stderr.clone(),
                )
            })
            .collect()
    }

    /// What `host` wrote to stdout and stderr.
    pub(crate) fn host_output(&self, host: HostId) -> (Vec<u8>, Vec<u8>) {
        let state = self.state.borrow();
        let stdio = &state.hosts[host].stdio;
        (stdio.stdout.clone(), stdio.stderr.clone())
    }

    /// What `host` runs when it boots.
    pub(crate) fn set_start(&self, host: HostId, start: host::Start) {
        self.state.borrow_mut().hosts[host].start = Some(start);
    }

    /// Boots `host` (its first start).
    pub(crate) fn boot(&self, host: HostId) {
        let start = self.state.borrow().hosts[host].start.clone();
        if let (Some(start), Some(fiber)) = (start, self.fiber.borrow().upgrade()) {
            host::boot(&fiber, host, &start);
        }
    }

    /// A client of the run: canceled if the run fails elsewhere.
    pub(crate) fn add_client(&self, task: io_core::TaskRef) {
        self.state.borrow_mut().clients.push(task);
    }

    /// The run fails with `cause` (the first failure is kept): every client is canceled.
    pub(crate) fn fail(&self, cause: String) {
        self.sync_clock();
        let clients = {
            let mut state = self.state.borrow_mut();
            let now = state.now;
            if state.failure.is_none() && !state.ended {
                if state.tracer.is_on() {
                    state.tracer.failed(now, cause.clone());
                }
                state.failure = Some((cause, now));
            }
            state.clients.clone()
        };
        for client in clients {
            client.cancel();
        }
    }

    /// The run is over: later failures of hosts are not its failures.
    pub(crate) fn end(&self) {
        self.state.borrow_mut().ended = true;
    }

    /// The run's failure, if a host failed.
    pub(crate) fn failure(&self) -> Option<(String, u64)> {
        self.state.borrow().failure.clone()
    }

    /// Schedules the fault plan's first crashes and partition (`servers`: hosts 1..=servers
    /// may crash; clients never do).
    pub(crate) fn plan(&self, faults: &Faults, servers: usize) {
        let mut state = self.state.borrow_mut();
        if let Some((min, max)) = faults.crash_every_ms {
            for host in 1..=servers {
                let at = state.between(min, max);
                state.schedule(at, Event::Crash(host));
            }
        }
        state.crash_hosts = servers;
        if faults.partition_every_ms.is_some() && state.hosts.len() > 2 {
            state.schedule_partition();
        }
    }
}

impl State {
    /// Cuts (or heals) the network from `from` to `to`, and logs it.
    fn link(&mut self, from: HostId, to: HostId, cut: bool) {
        let what = if cut {
            self.net.cut(from, to);
            "partition"
        } else {
            self.net.heal(from, to);
            "heal"
        };
        let what = format!(
            "{what} {} -> {}",
            self.hosts[from].name, self.hosts[to].name
        );
        self.report(from, what);
    }

    /// Something the world did to `host` (a fault, a crash, a restart): logged for the run's
    /// report (`"5210 ms: crash db-1"`), and traced.
    fn report(&mut self, host: HostId, what: String) {
        if self.tracer.is_on() {
            self.tracer.fault(self.now, host, what.clone());
        }
        let line = format!("{} ms: {what}", self.now);
        self.log.push(line);
    }

    /// A disk error the seed chose for an op of `host` (`EIO`, `ENOSPC`): traced (the op's
    /// error is the program's to report).
    fn disk_fault(&self, host: HostId, errno: &'static str, op: &'static str) {
        if self.tracer.is_on() {
            let what = format!("{errno} on {op} ({})", self.hosts[host].name);
            self.tracer.fault(self.now, host, what);
        }
    }

    /// Schedules the next partition of the plan: a random pair, one way or both.
    fn schedule_partition(&mut self) {
        let Some((min, max)) = self.faults.partition_every_ms else {
            return;
        };
        let hosts = self.hosts.len() as u64 - 1;
        let from = 1 + self.rng.below(hosts) as usize;
        let mut to = 1 + self.rng.below(hosts - 1) as usize;
        if to >= from {
            to += 1;
        }
        let start = self.between(min, max);
        let (lo, hi) = self.faults.partition_for_ms;
        let length = self.between(lo, hi);
        let both = self.rng.below(2) == 0;
        let end = start.saturating_add(length);
        self.schedule(start, Event::Cut { from, to });
        self.schedule(end, Event::Heal { from, to });
        if both {
            self.schedule(start, Event::Cut { from: to, to: from });
            self.schedule(end, Event::Heal { from: to, to: from });
        }
        self.schedule(end, Event::NextPartition);
    }
}
