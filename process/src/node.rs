//! The node: every process of one run, their links, monitors, names and timers.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};

use io_core::{drop_contained, Cx, Park, TaskRef};

use crate::mailbox::{Mailbox, Signals};
use crate::{Down, Exit, ExitReason, Message, MonitorRef, NameError, Pid, ProcId, RegisterError};

/// The processes of one run: their mailboxes, links, monitors, registered names and pending
/// timers. Made once with the run's [`Cx`] and cloned freely (an `Rc`); single-threaded, like
/// the `Cx`.
///
/// Processes come from [`Node::spawn`] (a new task with its own mailbox) or
/// [`Node::attach`] (the calling task becomes a process, like Erlang's shell).
///
/// ```
/// use process::{Message, Node};
///
/// let got = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let node = Node::new(&cx);
///         let me = node.attach::<String>();
///         let reply_to = me.pid();
///         let echo = node
///             .spawn(move |p| async move {
///                 if let Message::Msg(text) = p.receive().await? {
///                     reply_to.send(format!("echo: {text}"));
///                 }
///                 Ok(())
///             })
///             .expect("fiber runs processes concurrently");
///         echo.send("hi".to_string());
///         Ok(me.receive().await?.into_msg())
///     })
///     .unwrap();
/// assert_eq!(got.as_deref(), Some("echo: hi"));
/// ```
#[derive(Clone)]
pub struct Node(pub(crate) Rc<NodeInner>);

pub(crate) struct NodeInner {
    /// Unique in the process (the program): what tells the nodes of one run apart in a
    /// [`ProcId`] and a [`TimerRef`].
    pub(crate) id: u64,
    pub(crate) cx: Cx,
    state: RefCell<State>,
}

/// Numbers nodes; only an identity, never per-run state (no node is found through it).
static NEXT_NODE: AtomicU64 = AtomicU64::new(1);

#[derive(Default)]
struct State {
    next_id: u64,
    next_monitor: u64,
    next_timer: u64,
    next_wait: u64,
    procs: BTreeMap<ProcId, Entry>,
    names: BTreeMap<String, ProcId>,
    /// monitor → (watcher, target)
    monitors: BTreeMap<MonitorRef, (ProcId, ProcId)>,
    /// Timed sends by (deadline, arming order): deadline order, ties in arming order, like the
    /// protocol's timers.
    timers: BTreeMap<(u64, u64), Timed>,
    /// Timers this node's `send_after` armed on another node (the recipient's): where
    /// `cancel_timer` finds them. Pruned of past deadlines at each such arming.
    foreign: BTreeMap<TimerRef, Weak<NodeInner>>,
    /// The parks of the receives waiting anywhere on the node, by ticket: each keeps a protocol
    /// timer armed for the earliest timed send, and is nudged to re-arm when that changes.
    waiting: BTreeMap<u64, Park>,
}

type Delivery = Box<dyn FnOnce(&Node)>;

/// A pending timed send: to a process (canceled when it ends, as Erlang does), or to a name.
struct Timed {
    target: Option<ProcId>,
    delivery: Delivery,
}

struct Entry {
    /// `None` until its spawn succeeded (then the body has not run yet).
    task: Option<TaskRef>,
    mailbox: Rc<dyn Signals>,
    links: BTreeSet<ProcId>,
    monitored_by: BTreeSet<MonitorRef>,
    monitoring: BTreeSet<MonitorRef>,
    name: Option<String>,
    trap_exit: bool,
    /// The reason of the first kill delivered to it: its exit reason once it unwinds.
    killed: Option<ExitReason>,
    /// Its pending timed sends (keys of `State::timers`): canceled when it ends.
    timers: BTreeSet<(u64, u64)>,
    /// The reason given to [`Process::exit`](crate::Process::exit) by a spawned process: its
    /// exit reason, whatever its body returns after.
    exit: Option<ExitReason>,
}

/// A pending [`Node::send_after`]: what [`Node::cancel_timer`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerRef {
    node: u64,
    deadline_ms: u64,
    seq: u64,
}

impl TimerRef {
    /// When the message is due, on the backend's clock ([`Cx::now_ms`]).
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<u8>();
    /// let timer = node.send_after(30, &me.pid(), 1);
    /// assert_eq!(timer.deadline_ms(), cx.now_ms() + 30);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }
}

/// How an exit signal reaches a process.
enum Signal {
    /// From a link or [`Process::exit_signal`](crate::Process::exit_signal): a message for a
    /// process trapping exits, ignored if normal, else a kill.
    Trappable,
    /// [`Node::kill`]: always a kill, with reason `Killed`.
    Kill,
}

impl Node {
    /// A node for the run `cx` belongs to. Processes of one node reach each other; a run may
    /// hold several nodes, which do not link, monitor, signal or name each other's processes
    /// (those answer as for a dead process: [`ExitReason::NoProc`]). Messages do cross: a
    /// [`Pid`] reaches its process, sent to directly or with [`send_after`](Node::send_after)
    /// from any node.
    pub fn new(cx: &Cx) -> Node {
        Node(Rc::new(NodeInner {
            id: NEXT_NODE.fetch_add(1, Ordering::Relaxed),
            cx: cx.clone(),
            state: RefCell::new(State::default()),
        }))
    }

    /// The run's handle.
    pub fn cx(&self) -> &Cx {
        &self.0.cx
    }

    pub(crate) fn new_process<M: 'static>(
        &self,
        task: Option<TaskRef>,
    ) -> (ProcId, Rc<Mailbox<M>>) {
        let mut state = self.0.state.borrow_mut();
        state.next_id += 1;
        let id = ProcId {
            node: self.0.id,
            number: state.next_id,
        };
        let mailbox = Rc::new(Mailbox::new(id, &self.0.cx));
        state.procs.insert(
            id,
            Entry {
                task,
                mailbox: mailbox.clone(),
                links: BTreeSet::new(),
                monitored_by: BTreeSet::new(),
                monitoring: BTreeSet::new(),
                name: None,
                trap_exit: false,
                killed: None,
                timers: BTreeSet::new(),
                exit: None,
            },
        );
        (id, mailbox)
    }

    pub(crate) fn set_task(&self, id: ProcId, task: TaskRef) {
        if let Some(entry) = self.0.state.borrow_mut().procs.get_mut(&id) {
            entry.task = Some(task);
        }
    }

    /// Whether `pid` is alive: spawned (or attached) and not yet ended.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// let id = me.id();
    /// assert!(node.is_alive(id));
    /// drop(me); // an attached process ends when its handle is dropped
    /// assert!(!node.is_alive(id));
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn is_alive(&self, pid: impl Into<ProcId>) -> bool {
        self.0.state.borrow().procs.contains_key(&pid.into())
    }

    /// The live processes, in spawn order.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let (a, b) = (node.attach::<()>(), node.attach::<()>());
    /// assert_eq!(node.processes(), [a.id(), b.id()]);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn processes(&self) -> Vec<ProcId> {
        self.0.state.borrow().procs.keys().copied().collect()
    }

    /// Gives `pid` the name `name`: [`whereis`](Node::whereis), [`send_named`](Node::send_named)
    /// and [`send_after_named`](Node::send_after_named) then reach it. The name dies with the
    /// process. A name is held by one process at a time, and a process holds one name.
    ///
    /// ```
    /// use process::RegisterError;
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let (a, b) = (node.attach::<()>(), node.attach::<()>());
    /// node.register("db", a.id()).unwrap();
    /// assert_eq!(node.register("db", b.id()), Err(RegisterError::NameTaken("db".into())));
    /// assert_eq!(node.whereis("db"), Some(a.id()));
    /// drop(a);
    /// assert_eq!(node.whereis("db"), None); // the name died with its process
    /// node.register("db", b.id()).unwrap();
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn register(&self, name: &str, pid: impl Into<ProcId>) -> Result<(), RegisterError> {
        let pid = pid.into();
        // A named timer due before this resolves without the new name.
        self.deliver_pending();
        let mut state = self.0.state.borrow_mut();
        if state.names.contains_key(name) {
            return Err(RegisterError::NameTaken(name.to_string()));
        }
        let Some(entry) = state.procs.get_mut(&pid) else {
            return Err(RegisterError::NoProc(pid));
        };
        if let Some(held) = &entry.name {
            return Err(RegisterError::AlreadyNamed(pid, held.clone()));
        }
        entry.name = Some(name.to_string());
        state.names.insert(name.to_string(), pid);
        Ok(())
    }

    /// Removes the name; whether it was registered.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// node.register("me", me.id()).unwrap();
    /// assert!(node.unregister("me"));
    /// assert!(!node.unregister("me"));
    /// assert_eq!(node.whereis("me"), None);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn unregister(&self, name: &str) -> bool {
        // A named timer due before this still finds the name.
        self.deliver_pending();
        let mut state = self.0.state.borrow_mut();
        let Some(pid) = state.names.remove(name) else {
            return false;
        };
        if let Some(entry) = state.procs.get_mut(&pid) {
            entry.name = None;
        }
        true
    }

    /// The live process registered as `name`.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// assert_eq!(node.whereis("nobody"), None);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn whereis(&self, name: &str) -> Option<ProcId> {
        self.0.state.borrow().names.get(name).copied()
    }

    /// The registered names and their processes, by name.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// node.register("me", me.id()).unwrap();
    /// assert_eq!(node.registered(), [("me".to_string(), me.id())]);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn registered(&self) -> Vec<(String, ProcId)> {
        let state = self.0.state.borrow();
        state.names.iter().map(|(n, p)| (n.clone(), *p)).collect()
    }

    /// The typed pid of the process registered as `name`, if it takes messages of type `M`.
    ///
    /// ```
    /// use process::NameError;
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<u32>();
    /// node.register("counter", me.id()).unwrap();
    /// assert_eq!(node.pid_of::<u32>("counter").unwrap(), me.pid());
    /// assert!(matches!(node.pid_of::<String>("counter"), Err(NameError::WrongType { .. })));
    /// assert!(matches!(node.pid_of::<u32>("gone"), Err(NameError::NotRegistered(_))));
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn pid_of<M: 'static>(&self, name: &str) -> Result<Pid<M>, NameError> {
        let mailbox = {
            let state = self.0.state.borrow();
            let entry = state
                .names
                .get(name)
                .and_then(|pid| state.procs.get(pid))
                .ok_or_else(|| NameError::NotRegistered(name.to_string()))?;
            entry.mailbox.clone()
        };
        match mailbox.any().downcast::<Mailbox<M>>() {
            Ok(mailbox) => Ok(Pid::new(self.clone(), mailbox)),
            Err(_) => Err(NameError::WrongType {
                name: name.to_string(),
                wanted: std::any::type_name::<M>(),
            }),
        }
    }

    /// Sends `msg` to the process registered as `name` (Erlang's `Name ! Msg`), or says why
    /// it cannot: no such name, or a process of another message type.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<&str>();
    /// node.register("inbox", me.id()).unwrap();
    /// node.send_named("inbox", "hello").unwrap();
    /// assert_eq!(me.receive().await?.into_msg(), Some("hello"));
    /// assert!(node.send_named("outbox", "lost").is_err());
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn send_named<M: 'static>(&self, name: &str, msg: M) -> Result<(), NameError> {
        self.pid_of::<M>(name)?.send(msg);
        Ok(())
    }

    /// Sends `msg` to `pid` after `ms` milliseconds (Erlang's `erlang:send_after/3`). The
    /// message is delivered as if sent at its deadline; timers fall due in deadline order,
    /// ties in arming order. The timer dies with the process, as in Erlang: when it ends (or
    /// if it has ended already) the message is dropped and [`cancel_timer`](Node::cancel_timer)
    /// says `None`. `pid` may be of another node: the timer lives on the recipient's node.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<&str>();
    /// node.send_after(40, &me.pid(), "tick");
    /// assert_eq!(me.receive().await?.into_msg(), Some("tick"));
    /// assert_eq!(cx.now_ms(), 40); // exact on the virtual clock
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn send_after<M: 'static>(&self, ms: u64, pid: &Pid<M>, msg: M) -> TimerRef {
        // The timer lives on the recipient's node, whose receives keep its timers moving.
        let Some(target) = pid.node() else {
            // Its node is gone, and the process with it.
            drop_contained(msg);
            return self.dead_timer(ms);
        };
        let id = pid.id();
        let pid = pid.clone();
        let timer = target.arm(
            ms,
            Some(id),
            Box::new(move |_| pid.deliver(Message::Msg(msg))),
        );
        if target.0.id != self.0.id {
            let now = self.0.cx.now_ms();
            let mut state = self.0.state.borrow_mut();
            state
                .foreign
                .retain(|t, node| t.deadline_ms > now && node.strong_count() > 0);
            state.foreign.insert(timer, Rc::downgrade(&target.0));
        }
        timer
    }

    /// A timer that was never armed (its process is gone): `cancel_timer` says `None`.
    fn dead_timer(&self, ms: u64) -> TimerRef {
        TimerRef {
            node: self.0.id,
            deadline_ms: self.0.cx.now_ms().saturating_add(ms),
            seq: 0,
        }
    }

    /// Sends `msg` after `ms` milliseconds to the process registered as `name` *when the
    /// timer fires* (as Erlang does); if no process of message type `M` holds the name then,
    /// the message is dropped.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// node.send_after_named(25, "logger", "flush"); // nobody has the name yet
    /// let logger = node.attach::<&str>();
    /// node.register("logger", logger.id()).unwrap();
    /// assert_eq!(logger.receive().await?.into_msg(), Some("flush"));
    /// assert_eq!(cx.now_ms(), 25);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn send_after_named<M: 'static>(&self, ms: u64, name: &str, msg: M) -> TimerRef {
        let name = name.to_string();
        self.arm(
            ms,
            None,
            Box::new(move |node| {
                if let Ok(pid) = node.pid_of::<M>(&name) {
                    pid.deliver(Message::Msg(msg));
                }
            }),
        )
    }

    /// Arms a timed send on this node; to `target`, it is canceled when `target` ends (and
    /// dropped now if it has ended already).
    fn arm(&self, ms: u64, target: Option<ProcId>, delivery: Delivery) -> TimerRef {
        let deadline_ms = self.0.cx.now_ms().saturating_add(ms);
        let (timer, nudge) = {
            let mut state = self.0.state.borrow_mut();
            state.next_timer += 1;
            let timer = TimerRef {
                node: self.0.id,
                deadline_ms,
                seq: state.next_timer,
            };
            let key = (deadline_ms, timer.seq);
            if let Some(target) = target {
                match state.procs.get_mut(&target) {
                    Some(entry) => {
                        entry.timers.insert(key);
                    }
                    None => {
                        drop(state);
                        drop_contained(delivery);
                        return self.dead_timer(ms);
                    }
                }
            }
            let earliest = state.timers.keys().next().map_or(u64::MAX, |k| k.0);
            state.timers.insert(key, Timed { target, delivery });
            let nudge = if deadline_ms < earliest {
                state.waiting.values().cloned().collect()
            } else {
                Vec::new()
            };
            (timer, nudge)
        };
        self.ready_all(nudge);
        timer
    }

    /// Removes a pending timer from the node (and from its target's list).
    fn remove_timer(state: &mut State, key: (u64, u64)) -> Option<Timed> {
        let timed = state.timers.remove(&key)?;
        if let Some(entry) = timed.target.and_then(|t| state.procs.get_mut(&t)) {
            entry.timers.remove(&key);
        }
        Some(timed)
    }

    /// Cancels a [`send_after`](Node::send_after): the milliseconds that were left, and the
    /// message is never delivered; or `None` if the timer had already fired (its message is
    /// delivered) or was canceled before.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<u8>();
    /// let timer = node.send_after(100, &me.pid(), 1);
    /// cx.sleep(30).await?;
    /// assert_eq!(node.cancel_timer(timer), Some(70));
    /// assert_eq!(node.cancel_timer(timer), None);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn cancel_timer(&self, timer: TimerRef) -> Option<u64> {
        if timer.node != self.0.id {
            // Armed on the recipient's node by this node's `send_after`.
            let node = self.0.state.borrow_mut().foreign.remove(&timer);
            return node
                .and_then(|node| node.upgrade())
                .and_then(|node| Node(node).cancel_timer(timer));
        }
        let now = self.0.cx.now_ms();
        self.deliver_due(now);
        let (removed, nudge) = {
            let mut state = self.0.state.borrow_mut();
            let was_earliest = state.timers.keys().next() == Some(&(timer.deadline_ms, timer.seq));
            let removed = Node::remove_timer(&mut state, (timer.deadline_ms, timer.seq));
            // Waiting receives re-arm, so no stale protocol timer moves fiber's clock.
            let nudge: Vec<Park> = if was_earliest {
                state.waiting.values().cloned().collect()
            } else {
                Vec::new()
            };
            (removed, nudge)
        };
        self.ready_all(nudge);
        // Dropped outside the borrow: the message's drop may run any code.
        drop_contained(removed?);
        Some(timer.deadline_ms.saturating_sub(now))
    }

    /// Delivers the timed sends due at `now`, in deadline order.
    pub(crate) fn deliver_due(&self, now: u64) {
        loop {
            let due = {
                let mut state = self.0.state.borrow_mut();
                match state.timers.first_key_value() {
                    Some((&key, _)) if key.0 <= now => Node::remove_timer(&mut state, key),
                    _ => None,
                }
            };
            match due {
                Some(timed) => (timed.delivery)(self),
                None => return,
            }
        }
    }

    /// Delivers what is due, if any timed send is pending (reading the clock only then).
    pub(crate) fn deliver_pending(&self) {
        if !self.0.state.borrow().timers.is_empty() {
            self.deliver_due(self.0.cx.now_ms());
        }
    }

    pub(crate) fn next_timer(&self) -> u64 {
        let state = self.0.state.borrow();
        state.timers.keys().next().map_or(u64::MAX, |k| k.0)
    }

    pub(crate) fn start_wait(&self, park: &Park) -> u64 {
        let mut state = self.0.state.borrow_mut();
        state.next_wait += 1;
        let ticket = state.next_wait;
        state.waiting.insert(ticket, park.clone());
        ticket
    }

    pub(crate) fn end_wait(&self, ticket: u64) {
        self.0.state.borrow_mut().waiting.remove(&ticket);
    }

    fn ready_all(&self, parks: Vec<Park>) {
        for park in parks {
            self.0.cx.ready(&park);
        }
    }

    pub(crate) fn set_trap_exit(&self, pid: ProcId, trap: bool) -> bool {
        let mut state = self.0.state.borrow_mut();
        match state.procs.get_mut(&pid) {
            Some(entry) => std::mem::replace(&mut entry.trap_exit, trap),
            None => false,
        }
    }

    /// Links `a` and `b`. If `b` is gone, `a` gets an exit signal with reason `NoProc`.
    pub(crate) fn link(&self, a: ProcId, b: ProcId) {
        let linked = {
            let mut state = self.0.state.borrow_mut();
            if a == b || !state.procs.contains_key(&a) {
                return;
            }
            match state.procs.get_mut(&b) {
                Some(entry) => {
                    entry.links.insert(a);
                    state.procs.get_mut(&a).map(|e| e.links.insert(b));
                    true
                }
                None => false,
            }
        };
        if !linked {
            self.signal(b, a, ExitReason::NoProc, Signal::Trappable);
        }
    }

    pub(crate) fn unlink(&self, a: ProcId, b: ProcId) {
        let mut state = self.0.state.borrow_mut();
        if let Some(entry) = state.procs.get_mut(&a) {
            entry.links.remove(&b);
        }
        if let Some(entry) = state.procs.get_mut(&b) {
            entry.links.remove(&a);
        }
    }

    pub(crate) fn links(&self, pid: ProcId) -> Vec<ProcId> {
        let state = self.0.state.borrow();
        state
            .procs
            .get(&pid)
            .map_or_else(Vec::new, |e| e.links.iter().copied().collect())
    }

    /// `watcher` monitors `target`; a `Down` with `NoProc` at once if `target` is gone.
    pub(crate) fn monitor(&self, watcher: ProcId, target: ProcId) -> MonitorRef {
        self.deliver_pending();
        let (monitor, down_now) = {
            let mut state = self.0.state.borrow_mut();
            state.next_monitor += 1;
            let monitor = MonitorRef(state.next_monitor);
            let down_now = if !state.procs.contains_key(&watcher) {
                None // a dead watcher gets nothing
            } else if let Some(entry) = state.procs.get_mut(&target) {
                entry.monitored_by.insert(monitor);
                state.monitors.insert(monitor, (watcher, target));
                state
                    .procs
                    .get_mut(&watcher)
                    .map(|e| e.monitoring.insert(monitor));
                None
            } else {
                state.procs.get(&watcher).map(|e| e.mailbox.clone())
            };
            (monitor, down_now)
        };
        if let Some(mailbox) = down_now {
            mailbox.push_down(Down {
                monitor,
                pid: target,
                reason: ExitReason::NoProc,
            });
        }
        monitor
    }

    /// Removes the monitor and any `Down` of it already delivered; whether it was active.
    pub(crate) fn demonitor(&self, watcher: ProcId, monitor: MonitorRef) -> bool {
        let (active, mailbox) = {
            let mut state = self.0.state.borrow_mut();
            let active = match state.monitors.get(&monitor) {
                Some(&(w, target)) if w == watcher => {
                    state.monitors.remove(&monitor);
                    if let Some(entry) = state.procs.get_mut(&target) {
                        entry.monitored_by.remove(&monitor);
                    }
                    true
                }
                _ => false,
            };
            let entry = state.procs.get_mut(&watcher);
            let mailbox = entry.map(|e| {
                e.monitoring.remove(&monitor);
                e.mailbox.clone()
            });
            (active, mailbox)
        };
        if let Some(mailbox) = mailbox {
            mailbox.flush_down(monitor);
        }
        active
    }

    /// Sends an exit signal from `from` to `to` with `reason`; see [`Signal`].
    fn signal(&self, from: ProcId, to: ProcId, reason: ExitReason, how: Signal) {
        enum Act {
            Message(Rc<dyn Signals>),
            Kill(Option<TaskRef>),
        }
        // A timed send due before the signal arrives before it.
        self.deliver_pending();
        let act = {
            let mut state = self.0.state.borrow_mut();
            let Some(entry) = state.procs.get_mut(&to) else {
                return;
            };
            match how {
                Signal::Trappable if entry.trap_exit => Act::Message(entry.mailbox.clone()),
                // A normal exit signal from another process is ignored (Erlang's rule); one a
                // process sends itself ends it.
                Signal::Trappable if reason.is_normal() && from != to => return,
                _ => {
                    let reason = match how {
                        Signal::Kill => ExitReason::Killed,
                        Signal::Trappable => reason.clone(),
                    };
                    entry.killed.get_or_insert(reason);
                    Act::Kill(entry.task.clone())
                }
            }
        };
        match act {
            Act::Message(mailbox) => mailbox.push_exit(Exit { from, reason }),
            Act::Kill(Some(task)) => task.cancel(),
            Act::Kill(None) => {}
        }
    }

    /// Sends `to` an exit signal from `from` (Erlang's `exit(Pid, Reason)`).
    pub(crate) fn exit_signal(&self, from: ProcId, to: ProcId, reason: ExitReason) {
        self.signal(from, to, reason, Signal::Trappable);
    }

    /// Kills `pid`: a cancel delivered at its next suspend point, which no trap turns into a
    /// message; it ends with reason [`Killed`](ExitReason::Killed), and its links are told
    /// `Killed` (a trappable signal). Killing a process that has ended does nothing.
    ///
    /// ```
    /// use process::{ExitReason, Message};
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// let sleeper = node
    ///     .spawn::<(), _, _>(|p| async move {
    ///         p.cx().sleep(1_000).await?;
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// me.monitor(sleeper.id());
    /// node.kill(sleeper.id());
    /// let Message::Down(down) = me.receive().await? else { panic!() };
    /// assert_eq!(down.reason, ExitReason::Killed);
    /// assert!(cx.now_ms() < 1_000);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn kill(&self, pid: impl Into<ProcId>) {
        let pid = pid.into();
        self.signal(pid, pid, ExitReason::Killed, Signal::Kill);
    }

    /// A spawned process ends itself with `reason` (its `Process::exit`): the reason is kept,
    /// and its task is canceled, so its body stops at its next suspend point.
    pub(crate) fn exit_self(&self, pid: ProcId, reason: ExitReason) {
        let task = {
            let mut state = self.0.state.borrow_mut();
            let Some(entry) = state.procs.get_mut(&pid) else {
                return;
            };
            entry.exit.get_or_insert(reason);
            entry.task.clone()
        };
        if let Some(task) = task {
            task.cancel();
        }
    }

    /// The reason a spawned process gave [`Process::exit`](crate::Process::exit), if any.
    pub(crate) fn exit_reason(&self, pid: ProcId) -> Option<ExitReason> {
        let state = self.0.state.borrow();
        state.procs.get(&pid).and_then(|e| e.exit.clone())
    }

    /// The reason a kill left for `pid`, if any: its exit reason once it unwinds.
    pub(crate) fn kill_reason(&self, pid: ProcId) -> Option<ExitReason> {
        let state = self.0.state.borrow();
        state.procs.get(&pid).and_then(|e| e.killed.clone())
    }

    /// Whether `pid`'s spawn never completed (its task was refused): it ends without a word.
    pub(crate) fn never_started(&self, pid: ProcId) -> bool {
        let state = self.0.state.borrow();
        state.procs.get(&pid).is_some_and(|e| e.task.is_none())
    }

    /// Removes `pid` silently (a refused spawn).
    pub(crate) fn forget(&self, pid: ProcId) {
        let removed = self.0.state.borrow_mut().procs.remove(&pid);
        drop(removed);
    }

    /// `pid` ended with `reason`: what was due for it arrives first; its name goes, its
    /// pending timers are canceled, its monitors get `Down`, its links the exit signal; then
    /// its mailbox's messages are dropped (a panicking drop contained).
    pub(crate) fn finish(&self, pid: ProcId, reason: ExitReason) {
        self.deliver_pending();
        let (entry, downs, timers, nudge) = {
            let mut state = self.0.state.borrow_mut();
            let Some(entry) = state.procs.remove(&pid) else {
                return;
            };
            if let Some(name) = &entry.name {
                state.names.remove(name);
            }
            for monitor in &entry.monitoring {
                if let Some((_, target)) = state.monitors.remove(monitor) {
                    if let Some(t) = state.procs.get_mut(&target) {
                        t.monitored_by.remove(monitor);
                    }
                }
            }
            let mut downs = Vec::new();
            for monitor in &entry.monitored_by {
                if let Some((watcher, _)) = state.monitors.remove(monitor) {
                    if let Some(w) = state.procs.get_mut(&watcher) {
                        w.monitoring.remove(monitor);
                        downs.push((w.mailbox.clone(), *monitor));
                    }
                }
            }
            for link in &entry.links {
                if let Some(l) = state.procs.get_mut(link) {
                    l.links.remove(&pid);
                }
            }
            // Erlang cancels a timer to a pid when the process exits.
            let earliest = state.timers.keys().next().copied();
            let timers: Vec<Timed> = entry
                .timers
                .iter()
                .filter_map(|key| state.timers.remove(key))
                .collect();
            // Waiting receives re-arm, so no stale protocol timer moves fiber's clock.
            let nudge: Vec<Park> = if state.timers.keys().next().copied() != earliest {
                state.waiting.values().cloned().collect()
            } else {
                Vec::new()
            };
            (entry, downs, timers, nudge)
        };
        entry.mailbox.close();
        self.ready_all(nudge);
        for (mailbox, monitor) in downs {
            mailbox.push_down(Down {
                monitor,
                pid,
                reason: reason.clone(),
            });
        }
        for link in &entry.links {
            self.signal(pid, *link, reason.clone(), Signal::Trappable);
        }
        // Dropped last, outside the borrow, contained: a message's drop may run any code
        // (close a reply slot, send) or panic, and the signals above are already out.
        entry.mailbox.clear();
        for timed in timers {
            drop_contained(timed);
        }
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.0.state.borrow();
        f.debug_struct("Node")
            .field("processes", &state.procs.len())
            .field("names", &state.names.len())
            .field("monitors", &state.monitors.len())
            .field("timers", &state.timers.len())
            .finish()
    }
}
