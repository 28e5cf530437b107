//! A traced run for people to look at: what happened besides the polls ([`Event`]), recorded
//! once by the scheduler and the simulated world, and two views of a [`RunTrace`]: the
//! Chrome/Perfetto trace-event JSON ([`RunTrace::to_perfetto_json`],
//! [`RunTrace::write_perfetto`]) and a plain-text timeline ([`RunTrace::timeline`]).
//!
//! # The virtual timeline
//!
//! Virtual time does not move while a task is polled, so many steps share one millisecond.
//! Both views lay the things of one millisecond out one after another, in the order they
//! happened: each takes a slot of 1 µs (`ts = at_ms * 1000 + slot`), or, when a millisecond
//! holds more than 1,000 of them, an equal share of it (down to 1 ns). **The part of a
//! timestamp below the millisecond is order only, not time**; the exact virtual time is each
//! event's `at_ms` (in the JSON, its `args`). A poll is a slice whose inner events (the ops it
//! submitted, the tasks it spawned, the cancel it met) are the slots inside it; the time a task
//! spends waiting between two polls is a `wait` slice named after the line it waits at (after
//! its last poll, to one slot past the trace's last item: the wait a deadlock never ends).
//!
//! # Tracks
//!
//! One thread track (`tid`) per task, named after it; one process (`pid`) per host of the
//! simulated world (host 0, `localhost`, runs a plain run and a world's own tasks). What
//! happens on a host but to no task (a crash, a partition) is on the host's `tid` 0, `world`.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::panic::Location;
use std::path::{Path, PathBuf};

use io_core::{Canceled, Park, TimerId};

use crate::{RunTrace, TaskInfo, TraceEvent};

/// Something a traced run did besides polling a task ([`RunTrace::events`]), at a moment of
/// the virtual timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The virtual time it happened at.
    pub at_ms: u64,
    /// How many polls ([`RunTrace::steps`]) had started when it happened.
    pub after_steps: usize,
    /// Whether it happened inside the last of those polls (by the task polled), rather than
    /// between two polls (the world's doing, or a timer's).
    pub during_poll: bool,
    /// The task it happened to, if any.
    pub task: Option<u64>,
    /// The host it happened on: 0 is the runner (`localhost`), a world's hosts and clients
    /// follow from 1 in the order they were declared.
    pub host: usize,
    /// What happened.
    pub kind: EventKind,
}

/// What an [`Event`] was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// The task was spawned, by the task then polled (if any).
    Spawned {
        /// The spawning task.
        by: Option<u64>,
    },
    /// A timer fired, waking the task that armed it.
    TimerFired {
        /// The line of the wait it ends (a `sleep`, a timeout).
        wait: &'static Location<'static>,
    },
    /// The task submitted an I/O op.
    OpSubmitted {
        /// The op's name (`read_at`, `recv`, `sync_all`…).
        op: &'static str,
        /// Its id while in flight; `None` when the world answered at once.
        id: Option<u64>,
    },
    /// An op ended: it completed (its task is readied), or it was dropped without a result
    /// (its host crashed, its future is gone), and `outcome` says so (`"dropped (its host
    /// crashed)"`). Every op submitted in flight ends once.
    OpCompleted {
        /// The op's name.
        op: &'static str,
        /// Its id; `None` when it was answered at once.
        id: Option<u64>,
        /// What it gave: bytes moved, or the error (`"Input/output error (os error 5)"`).
        outcome: Result<usize, String>,
    },
    /// The op's future asked to cancel it (it still completes, canceled or with its result).
    OpCancel {
        /// The op.
        id: u64,
    },
    /// The task met its cancellation at a suspend point (`Err(Canceled)`).
    Canceled {
        /// The line of that suspend point.
        at: &'static Location<'static>,
    },
    /// The world injected a fault, as the run's report words it (`crash primary`,
    /// `partition client -> primary`), or a disk error an op met (`EIO on write_at`).
    Fault {
        /// The fault.
        what: String,
    },
    /// The task's host crashed: this run of the task drops its future without polling it (no
    /// code of a crashed host runs past the crash). The views show that step as `dropped`
    /// rather than as a poll, and not this event on its own.
    Dropped,
    /// The run failed: it deadlocked, or its main task panicked, or, in a world, a host or a
    /// client reported a failure (the one the run reports).
    Failed {
        /// Why.
        cause: String,
    },
}

impl EventKind {
    /// A short name: the instant's name in the JSON.
    fn name(&self) -> String {
        match self {
            EventKind::Spawned { .. } => "spawn".into(),
            EventKind::TimerFired { .. } => "timer fired".into(),
            EventKind::OpSubmitted { op, .. } => format!("submit {op}"),
            EventKind::OpCompleted { op, .. } => format!("complete {op}"),
            EventKind::OpCancel { .. } => "cancel op".into(),
            EventKind::Canceled { .. } => "canceled".into(),
            EventKind::Fault { what } => format!("fault: {what}"),
            EventKind::Dropped => "dropped".into(),
            EventKind::Failed { .. } => "run failed".into(),
        }
    }
}

impl std::fmt::Display for EventKind {
    /// One line: what the text timeline says.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op_id = |id: &Option<u64>| id.map_or(String::new(), |id| format!(" (op {id})"));
        match self {
            EventKind::Spawned { by: Some(by) } => write!(f, "spawned by task#{by}"),
            EventKind::Spawned { by: None } => write!(f, "spawned"),
            EventKind::TimerFired { wait } => write!(f, "timer fired (ends the wait at {wait})"),
            EventKind::OpSubmitted { op, id } => write!(f, "submit {op}{}", op_id(id)),
            EventKind::OpCompleted { op, id, outcome } => {
                write!(f, "complete {op}{}: ", op_id(id))?;
                match outcome {
                    Ok(n) => write!(f, "ok {n}"),
                    Err(e) => write!(f, "error: {e}"),
                }
            }
            EventKind::OpCancel { id } => write!(f, "cancel op {id}"),
            EventKind::Canceled { at } => write!(f, "canceled (at {at})"),
            EventKind::Fault { what } => write!(f, "fault: {what}"),
            EventKind::Dropped => write!(f, "dropped, not polled (its host crashed)"),
            EventKind::Failed { cause } => write!(f, "run failed: {cause}"),
        }
    }
}

/// Writing a trace file failed ([`RunTrace::write_perfetto`]).
#[derive(Debug, thiserror::Error)]
#[error("could not write the trace to {}: {source} (check that the directory exists and is writable)", path.display())]
pub struct TraceFileError {
    /// The file that could not be written.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// The recording of a traced run, shared by the scheduler and the simulated world. Off, each
/// hook is one `Cell` read and nothing is allocated.
#[derive(Default)]
pub(crate) struct Tracer {
    on: Cell<bool>,
    steps: RefCell<Vec<TraceEvent>>,
    events: RefCell<Vec<Event>>,
    tasks: RefCell<BTreeMap<u64, TaskInfo>>,
    /// The task being polled.
    polling: Cell<Option<u64>>,
    /// Where the task being polled last suspended.
    suspended_at: Cell<Option<&'static Location<'static>>>,
    /// Armed timers that will fire: the task that armed each, and the line of its wait.
    timers: RefCell<BTreeMap<TimerId, (Option<u64>, &'static Location<'static>)>>,
    /// Ops in flight: the task that submitted each.
    ops: RefCell<BTreeMap<u64, Option<u64>>>,
    /// Tasks of crashed hosts whose next run drops them unpolled.
    abandoned: RefCell<BTreeSet<u64>>,
}

impl Tracer {
    pub(crate) fn start(&self) {
        self.on.set(true);
    }

    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.on.get()
    }

    pub(crate) fn steps(&self) -> Vec<TraceEvent> {
        self.steps.borrow().clone()
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.events.borrow().clone()
    }

    pub(crate) fn tasks(&self) -> Vec<TaskInfo> {
        self.tasks.borrow().values().cloned().collect()
    }

    /// The host of `task` (0 when unknown).
    fn host_of(&self, task: Option<u64>) -> usize {
        task.and_then(|t| self.tasks.borrow().get(&t).map(|info| info.host))
            .unwrap_or(0)
    }

    fn push(&self, at_ms: u64, task: Option<u64>, host: usize, kind: EventKind) {
        let polling = self.polling.get();
        let event = Event {
            at_ms,
            after_steps: self.steps.borrow().len(),
            during_poll: polling.is_some(),
            task,
            host,
            kind,
        };
        self.events.borrow_mut().push(event);
    }

    /// A poll of `task` starts.
    #[cold]
    #[inline(never)]
    pub(crate) fn poll_starts(&self, at_ms: u64, task: u64) {
        self.steps.borrow_mut().push(TraceEvent {
            at_ms,
            task,
            suspended_at: None,
        });
        self.suspended_at.set(None);
        self.polling.set(Some(task));
        if self.abandoned.borrow_mut().remove(&task) {
            self.push(
                at_ms,
                Some(task),
                self.host_of(Some(task)),
                EventKind::Dropped,
            );
        }
    }

    /// `task`'s host crashed: its next run drops it without polling it.
    #[cold]
    #[inline(never)]
    pub(crate) fn abandoned(&self, task: u64) {
        self.abandoned.borrow_mut().insert(task);
    }

    /// The poll ended: where it left the task waiting.
    #[cold]
    #[inline(never)]
    pub(crate) fn poll_ends(&self) {
        self.polling.set(None);
        let at = self.suspended_at.take();
        if let Some(step) = self.steps.borrow_mut().last_mut() {
            step.suspended_at = at;
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn spawned(&self, at_ms: u64, info: TaskInfo) {
        let (task, host) = (info.id, info.host);
        self.tasks.borrow_mut().insert(task, info);
        let by = self.polling.get();
        self.push(at_ms, Some(task), host, EventKind::Spawned { by });
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn suspended(
        &self,
        at_ms: u64,
        park: &Park,
        poll: &std::task::Poll<Result<(), Canceled>>,
    ) {
        match poll {
            std::task::Poll::Pending => self.suspended_at.set(Some(park.location())),
            std::task::Poll::Ready(Err(Canceled)) => {
                // Outside a poll (a backend shutting down drops its tasks) nobody meets it.
                if let Some(task) = self.polling.get() {
                    let at = park.location();
                    self.push(
                        at_ms,
                        Some(task),
                        self.host_of(Some(task)),
                        EventKind::Canceled { at },
                    );
                }
            }
            std::task::Poll::Ready(Ok(())) => {}
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn timer_armed(&self, id: TimerId, park: &Park) {
        if id.deadline_ms() != u64::MAX {
            let owner = (self.polling.get(), park.location());
            self.timers.borrow_mut().insert(id, owner);
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn timer_disarmed(&self, id: TimerId) {
        self.timers.borrow_mut().remove(&id);
    }

    /// The timers due at `now` are about to fire (in deadline order, ties in arming order,
    /// which is the order of the map's keys).
    #[cold]
    #[inline(never)]
    pub(crate) fn timers_fire(&self, now: u64) {
        loop {
            let due = {
                let mut timers = self.timers.borrow_mut();
                match timers.first_entry() {
                    Some(entry) if entry.key().deadline_ms() <= now => Some(entry.remove()),
                    _ => None,
                }
            };
            let Some((task, wait)) = due else { return };
            let host = self.host_of(task);
            self.push(now, task, host, EventKind::TimerFired { wait });
        }
    }

    /// The polled task submitted `op` on `host`: in flight as `id`, or answered at once.
    #[cold]
    #[inline(never)]
    pub(crate) fn op_submitted(
        &self,
        at_ms: u64,
        host: usize,
        op: &'static str,
        submitted: &io_core::Submitted,
    ) {
        let task = self.polling.get();
        match submitted {
            io_core::Submitted::InFlight { id, .. } => {
                self.ops.borrow_mut().insert(id.get(), task);
                let id = Some(id.get());
                self.push(at_ms, task, host, EventKind::OpSubmitted { op, id });
            }
            io_core::Submitted::Done(done) => {
                self.push(at_ms, task, host, EventKind::OpSubmitted { op, id: None });
                let outcome = outcome(&done.result);
                let kind = EventKind::OpCompleted {
                    op,
                    id: None,
                    outcome,
                };
                self.push(at_ms, task, host, kind);
            }
        }
    }

    /// Op `id` of `host` completed with `result`.
    #[cold]
    #[inline(never)]
    pub(crate) fn op_completed(
        &self,
        at_ms: u64,
        host: usize,
        id: u64,
        op: &'static str,
        result: &io::Result<usize>,
    ) {
        let task = self.ops.borrow_mut().remove(&id).flatten();
        let outcome = outcome(result);
        let kind = EventKind::OpCompleted {
            op,
            id: Some(id),
            outcome,
        };
        self.push(at_ms, task, host, kind);
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn op_cancel(&self, at_ms: u64, host: usize, id: u64) {
        let task = self.ops.borrow().get(&id).copied().flatten();
        self.push(at_ms, task, host, EventKind::OpCancel { id });
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn fault(&self, at_ms: u64, host: usize, what: String) {
        self.push(at_ms, None, host, EventKind::Fault { what });
    }

    /// A failure, at the moment it happened. A world may note more than one (a host fails,
    /// then its clients are canceled); [`Tracer::settle_failure`] keeps the reported one.
    #[cold]
    #[inline(never)]
    pub(crate) fn failed(&self, at_ms: u64, cause: String) {
        self.push(at_ms, None, 0, EventKind::Failed { cause });
    }

    /// The run is over and `failure` (cause, time) is what it reports: the trace keeps exactly
    /// that failure, where it was noted, or at the end when it was not (a deadlock, a run
    /// error), and no other.
    pub(crate) fn settle_failure(&self, failure: Option<&(String, u64)>) {
        let mut events = self.events.borrow_mut();
        let mut kept = false;
        events.retain(|event| match &event.kind {
            EventKind::Failed { cause } => {
                let keep = !kept && failure.is_some_and(|(reported, _)| reported == cause);
                kept |= keep;
                keep
            }
            _ => true,
        });
        drop(events);
        if let (Some((cause, at_ms)), false) = (failure, kept) {
            self.push(
                *at_ms,
                None,
                0,
                EventKind::Failed {
                    cause: cause.clone(),
                },
            );
        }
    }
}

fn outcome(result: &io::Result<usize>) -> Result<usize, String> {
    result.as_ref().copied().map_err(|e| e.to_string())
}

/// One thing on the timeline: a poll (by its index in the steps) or an event.
#[derive(Clone, Copy)]
enum Item<'a> {
    Poll(usize, &'a TraceEvent),
    Event(&'a Event),
}

/// An item placed on the timeline, in nanoseconds of laid-out time.
struct Placed<'a> {
    item: Item<'a>,
    /// The exact virtual time.
    at_ms: u64,
    ts_ns: u64,
    /// For a poll, how long its slice lasts (its inner events are inside it).
    dur_ns: u64,
}

/// Lays the steps and events out in the order they happened (see the module docs).
fn layout(trace: &RunTrace) -> Vec<Placed<'_>> {
    let mut items = Vec::with_capacity(trace.steps.len() + trace.events.len());
    let mut next_step = 0;
    for event in &trace.events {
        while next_step < event.after_steps.min(trace.steps.len()) {
            items.push(Item::Poll(next_step, &trace.steps[next_step]));
            next_step += 1;
        }
        if event.kind == EventKind::Dropped {
            // The step it happened in is shown as the drop.
            continue;
        }
        items.push(Item::Event(event));
    }
    items.extend((next_step..trace.steps.len()).map(|i| Item::Poll(i, &trace.steps[i])));
    // Virtual times, never going back (they do not; this keeps the layout monotonic anyway).
    let mut at = 0;
    let times: Vec<u64> = items
        .iter()
        .map(|item| {
            let t = match item {
                Item::Poll(_, step) => step.at_ms,
                Item::Event(event) => event.at_ms,
            };
            at = at.max(t);
            at
        })
        .collect();
    let mut placed: Vec<Placed<'_>> = Vec::with_capacity(items.len());
    let mut start = 0;
    let mut last_ns = 0;
    while start < items.len() {
        let ms = times[start];
        let end = start + times[start..].iter().take_while(|&&t| t == ms).count();
        let n = (end - start) as u64;
        let spacing = if n <= 1_000 {
            1_000
        } else {
            (1_000_000 / n).max(1)
        };
        for (k, i) in (start..end).enumerate() {
            let ts_ns = ms
                .saturating_mul(1_000_000)
                .saturating_add(k as u64 * spacing)
                .max(last_ns);
            last_ns = ts_ns;
            placed.push(Placed {
                item: items[i],
                at_ms: ms,
                ts_ns,
                dur_ns: spacing,
            });
        }
        start = end;
    }
    // A poll's slice covers the events that happened inside it.
    let mut open: Option<usize> = None;
    for i in 0..placed.len() {
        match placed[i].item {
            Item::Poll(..) => open = Some(i),
            Item::Event(event) if event.during_poll => {
                if let Some(poll) = open {
                    placed[poll].dur_ns = placed[i].ts_ns + placed[i].dur_ns - placed[poll].ts_ns;
                }
            }
            Item::Event(_) => open = None,
        }
    }
    placed
}

/// The steps that dropped a task of a crashed host rather than polled it.
fn dropped_steps(trace: &RunTrace) -> BTreeSet<usize> {
    let dropped = trace.events.iter().filter_map(|event| match event.kind {
        EventKind::Dropped if event.after_steps > 0 => Some(event.after_steps - 1),
        _ => None,
    });
    dropped.collect()
}

/// Appends `s` as a JSON string (quotes, backslashes and control characters escaped).
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Nanoseconds as the JSON's microseconds (`12000.003`).
fn micros(ns: u64) -> String {
    format!("{}.{:03}", ns / 1_000, ns % 1_000)
}

/// One trace event object of the JSON.
struct JsonEvent<'a> {
    name: Cow<'a, str>,
    ph: &'static str,
    pid: u64,
    tid: u64,
    ts_ns: u64,
    dur_ns: Option<u64>,
    /// `(key, JSON value)` pairs.
    args: Vec<(&'static str, String)>,
}

impl JsonEvent<'_> {
    fn write(&self, out: &mut String) {
        out.push_str("{\"name\":");
        json_str(out, &self.name);
        let _ = write!(
            out,
            ",\"ph\":\"{}\",\"pid\":{},\"tid\":{},\"ts\":{}",
            self.ph,
            self.pid,
            self.tid,
            micros(self.ts_ns)
        );
        if let Some(dur) = self.dur_ns {
            let _ = write!(out, ",\"dur\":{}", micros(dur));
        }
        if self.ph == "i" {
            out.push_str(",\"s\":\"t\"");
        }
        if !self.args.is_empty() {
            out.push_str(",\"args\":{");
            for (i, (key, value)) in self.args.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_str(out, key);
                out.push(':');
                out.push_str(value);
            }
            out.push('}');
        }
        out.push('}');
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::new();
    json_str(&mut out, s);
    out
}

impl RunTrace {
    fn task(&self, id: u64) -> Option<&TaskInfo> {
        self.tasks
            .binary_search_by_key(&id, |info| info.id)
            .ok()
            .map(|i| &self.tasks[i])
    }

    fn host_name(&self, host: usize) -> &str {
        self.hosts.get(host).map_or("?", String::as_str)
    }

    /// The run as Chrome/Perfetto trace-event JSON (`{"traceEvents":[...],
    /// "displayTimeUnit":"ms"}`): open it at <https://ui.perfetto.dev> or in `chrome://tracing`.
    /// One process per host, one thread per task; polls and waits are slices, the rest are
    /// instants; how one millisecond's steps are laid out is in the [module docs](self).
    ///
    /// ```
    /// use io_fiber::FiberIo;
    ///
    /// let io = FiberIo::with_seed(3).record_trace();
    /// io.run(|cx| async move {
    ///     let worker = cx.spawn(|cx| async move { cx.sleep(5).await });
    ///     worker.await
    /// })
    /// .unwrap();
    /// let json = io.run_trace().to_perfetto_json();
    /// assert!(json.starts_with("{\"traceEvents\":["));
    /// assert!(json.contains("\"name\":\"timer fired\",\"ph\":\"i\""));
    /// assert!(json.contains("\"thread_name\""));
    /// ```
    pub fn to_perfetto_json(&self) -> String {
        let placed = layout(self);
        let mut events: Vec<JsonEvent<'_>> = Vec::new();
        let pid = |host: usize| host as u64 + 1;
        let task_pid = |task: u64| pid(self.task(task).map_or(0, |info| info.host));
        // Each task's next poll, for the wait slices between polls.
        let mut next_poll: BTreeMap<u64, u64> = BTreeMap::new();
        let mut waits_until = vec![None; placed.len()];
        // One slot past the last item: a task its last poll left waiting shows that wait.
        let end_ns = placed.last().map_or(0, |p| p.ts_ns + p.dur_ns + 1_000);
        for (i, p) in placed.iter().enumerate().rev() {
            if let Item::Poll(_, step) = p.item {
                waits_until[i] = Some(next_poll.get(&step.task).copied().unwrap_or(end_ns));
                next_poll.insert(step.task, p.ts_ns);
            }
        }
        let dropped = dropped_steps(self);
        let mut used: BTreeSet<(u64, u64)> = BTreeSet::new();
        for (i, p) in placed.iter().enumerate() {
            match p.item {
                Item::Poll(index, step) => {
                    let (pid, tid) = (task_pid(step.task), step.task);
                    used.insert((pid, tid));
                    let waits = step
                        .suspended_at
                        .map_or("null".into(), |at| json_string(&at.to_string()));
                    let name = if dropped.contains(&index) {
                        "dropped"
                    } else {
                        "poll"
                    };
                    events.push(JsonEvent {
                        name: Cow::Borrowed(name),
                        ph: "X",
                        pid,
                        tid,
                        ts_ns: p.ts_ns,
                        dur_ns: Some(p.dur_ns),
                        args: vec![
                            ("step", index.to_string()),
                            ("at_ms", p.at_ms.to_string()),
                            ("waits_at", waits),
                        ],
                    });
                    let wait_from = p.ts_ns + p.dur_ns;
                    match (step.suspended_at, waits_until[i]) {
                        (Some(at), Some(until)) if until > wait_from => events.push(JsonEvent {
                            name: Cow::Owned(format!("wait {at}")),
                            ph: "X",
                            pid,
                            tid,
                            ts_ns: wait_from,
                            dur_ns: Some(until - wait_from),
                            args: Vec::new(),
                        }),
                        _ => {}
                    }
                }
                Item::Event(event) => {
                    let pid = match event.task {
                        Some(task) => task_pid(task),
                        None => pid(event.host),
                    };
                    let tid = event.task.unwrap_or(0);
                    used.insert((pid, tid));
                    let mut args = vec![
                        ("at_ms", p.at_ms.to_string()),
                        ("what", json_string(&event.kind.to_string())),
                    ];
                    if event.task.is_none() {
                        args.push(("host", json_string(self.host_name(event.host))));
                    }
                    events.push(JsonEvent {
                        name: Cow::Owned(event.kind.name()),
                        ph: "i",
                        pid,
                        tid,
                        ts_ns: p.ts_ns,
                        dur_ns: None,
                        args,
                    });
                }
            }
        }
        // In time order (a poll's wait slice was pushed before the events inside the poll).
        events.sort_by_key(|event| event.ts_ns);
        // Metadata first: every host a process, every track used a thread, named.
        let meta =
            |name: &'static str, pid: u64, tid: u64, arg: (&'static str, String)| JsonEvent {
                name: Cow::Borrowed(name),
                ph: "M",
                pid,
                tid,
                ts_ns: 0,
                dur_ns: None,
                args: vec![arg],
            };
        let mut metadata = Vec::new();
        for (host, name) in self.hosts.iter().enumerate() {
            let label = if self.hosts.len() > 1 && host == 0 {
                format!("{name} (the world's own tasks)")
            } else {
                name.clone()
            };
            metadata.push(meta(
                "process_name",
                pid(host),
                0,
                ("name", json_string(&label)),
            ));
            let order = ("sort_index", host.to_string());
            metadata.push(meta("process_sort_index", pid(host), 0, order));
        }
        for &(pid, tid) in &used {
            let name = if tid == 0 {
                "world".to_string()
            } else {
                self.task(tid)
                    .map_or_else(|| format!("task#{tid}"), |info| info.name.clone())
            };
            metadata.push(meta("thread_name", pid, tid, ("name", json_string(&name))));
            let order = ("sort_index", tid.to_string());
            metadata.push(meta("thread_sort_index", pid, tid, order));
        }
        let mut out = String::from("{\"traceEvents\":[");
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !first {
                out.push_str(",\n");
            }
            first = false;
        };
        for event in &metadata {
            sep(&mut out);
            event.write(&mut out);
        }
        for event in &events {
            sep(&mut out);
            event.write(&mut out);
        }
        out.push_str("],\n\"displayTimeUnit\":\"ms\",\"otherData\":{\"seed\":");
        let _ = write!(
            out,
            "{},\"trace_hash\":{}}}}}",
            json_string(&self.seed.to_string()),
            json_string(&format!("{:016x}", self.hash))
        );
        out
    }

    /// Writes [`RunTrace::to_perfetto_json`] to `path`.
    ///
    /// ```
    /// use io_fiber::FiberIo;
    ///
    /// let io = FiberIo::new().record_trace();
    /// io.run(|cx| async move { cx.sleep(1).await }).unwrap();
    /// let err = io.run_trace().write_perfetto("/no/such/dir/trace.json").unwrap_err();
    /// assert!(err.to_string().contains("/no/such/dir/trace.json"));
    /// ```
    pub fn write_perfetto(&self, path: impl AsRef<Path>) -> Result<(), TraceFileError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_perfetto_json()).map_err(|source| TraceFileError {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The run as text, one line per poll or event, in the order they happened:
    ///
    /// ```text
    ///      5.000 ms  task#2 "task#2"  timer fired (ends the wait at src/main.rs:7:52)
    ///      5.001 ms  task#2 "task#2"  poll  (finished, or waits on a join)
    /// ```
    ///
    /// Times are laid out as in the JSON: the part below the millisecond is order only. What a
    /// poll did (ops it submitted, tasks it spawned, the cancel it met) is indented under it. In
    /// a world, each line names the host (`[primary]`).
    ///
    /// ```
    /// use io_fiber::FiberIo;
    ///
    /// let io = FiberIo::new().record_trace();
    /// io.run(|cx| async move { cx.sleep(5).await }).unwrap();
    /// let timeline = io.run_trace().timeline();
    /// assert!(timeline.contains("     5.000 ms  task#1 \"main\"  timer fired"), "{timeline}");
    /// ```
    pub fn timeline(&self) -> String {
        let world = self.hosts.len() > 1;
        let dropped = dropped_steps(self);
        let mut out = String::new();
        for p in layout(self) {
            let ms = p.ts_ns / 1_000_000;
            let us = p.ts_ns / 1_000 % 1_000;
            let _ = write!(out, "{ms:>6}.{us:03} ms  ");
            let (task, host) = match p.item {
                Item::Poll(_, step) => {
                    (Some(step.task), self.task(step.task).map_or(0, |i| i.host))
                }
                Item::Event(event) => (event.task, event.host),
            };
            if world {
                let _ = write!(out, "[{}] ", self.host_name(host));
            }
            match task {
                Some(task) => {
                    let name = self
                        .task(task)
                        .map_or_else(|| format!("task#{task}"), |i| i.name.clone());
                    let _ = write!(out, "task#{task} {name:?}  ");
                }
                None => out.push_str("world  "),
            }
            match p.item {
                Item::Poll(index, _) if dropped.contains(&index) => {
                    out.push_str("dropped, not polled (its host crashed)");
                }
                Item::Poll(_, step) => match step.suspended_at {
                    Some(at) => {
                        let _ = write!(out, "poll  (waits at {at})");
                    }
                    None => out.push_str("poll  (finished, or waits on a join)"),
                },
                // What a poll did is indented under it.
                Item::Event(event) if event.during_poll && event.task.is_some() => {
                    let _ = write!(out, "  {}", event.kind);
                }
                Item::Event(event) => {
                    let _ = write!(out, "{}", event.kind);
                }
            }
            out.push('\n');
        }
        out
    }
}
