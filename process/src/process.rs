//! A process: its typed address ([`Pid`]), its own handle ([`Process`]), spawning and ending.

use std::any::Any;
use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use io_core::{Canceled, Cx, SpawnError, SpawnOptions};

use crate::mailbox::{Mailbox, WaitOn};
use crate::node::NodeInner;
use crate::{ExitReason, Message, MonitorRef, Node, ProcId};

/// The address of a process taking messages of type `M`: send to it from anywhere in the run.
/// Cheap to clone. A send to a process that has ended is dropped, as in Erlang.
///
/// ```
/// # io_fiber::FiberIo::new().run(|cx| async move {
/// let node = process::Node::new(&cx);
/// let me = node.attach::<u32>();
/// let pid = me.pid();
/// pid.send(1);
/// pid.send(2);
/// assert_eq!(me.receive().await?.into_msg(), Some(1)); // in order
/// assert_eq!(pid.id(), me.id());
/// # Ok(()) }).unwrap();
/// ```
pub struct Pid<M> {
    /// Weak: a pending timed send holds a pid, and the node holds its timers.
    node: Weak<NodeInner>,
    mailbox: Rc<Mailbox<M>>,
}

impl<M: 'static> Pid<M> {
    pub(crate) fn new(node: Node, mailbox: Rc<Mailbox<M>>) -> Pid<M> {
        Pid {
            node: Rc::downgrade(&node.0),
            mailbox,
        }
    }

    /// The process's untyped identity (what links and monitors name).
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// assert_eq!(me.pid().id(), me.id());
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn id(&self) -> ProcId {
        self.mailbox.id
    }

    /// Appends `msg` to the process's mailbox (never waits: mailboxes are unbounded). Timed
    /// sends already due are delivered first, so arrival order follows the clock.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<&str>();
    /// node.send_after(10, &me.pid(), "timer");
    /// cx.sleep(10).await?;
    /// me.pid().send("later"); // the due timer lands first
    /// assert_eq!(me.receive().await?.into_msg(), Some("timer"));
    /// assert_eq!(me.receive().await?.into_msg(), Some("later"));
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn send(&self, msg: M) {
        if let Some(node) = self.node.upgrade() {
            Node(node).deliver_pending();
        }
        self.mailbox.push(Message::Msg(msg));
    }

    pub(crate) fn deliver(&self, message: Message<M>) {
        self.mailbox.push(message);
    }

    /// The node the process lives in, while anything holds it.
    pub(crate) fn node(&self) -> Option<Node> {
        self.node.upgrade().map(Node)
    }
}

impl<M> Clone for Pid<M> {
    fn clone(&self) -> Pid<M> {
        Pid {
            node: self.node.clone(),
            mailbox: self.mailbox.clone(),
        }
    }
}

impl<M> PartialEq for Pid<M> {
    fn eq(&self, other: &Pid<M>) -> bool {
        self.mailbox.id == other.mailbox.id
    }
}

impl<M> Eq for Pid<M> {}

impl<M> fmt::Debug for Pid<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pid{}", self.mailbox.id)
    }
}

impl<M> From<&Pid<M>> for ProcId {
    fn from(pid: &Pid<M>) -> ProcId {
        pid.mailbox.id
    }
}

impl<M> From<Pid<M>> for ProcId {
    fn from(pid: Pid<M>) -> ProcId {
        pid.mailbox.id
    }
}

/// A process's own handle, what its body receives (Erlang's `self()` and the calls a process
/// makes about itself): receive from its mailbox, link, monitor, trap exits, spawn linked.
///
/// Not `Clone`: one handle per process. For a process from [`Node::attach`], dropping the
/// handle ends the process.
pub struct Process<M> {
    node: Node,
    cx: Cx,
    mailbox: Rc<Mailbox<M>>,
    /// Only for an attached process: its end comes with the handle's drop.
    life: Option<Life>,
}

impl<M: 'static> Process<M> {
    /// This process's identity.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// assert_eq!(node.processes(), [me.id()]);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn id(&self) -> ProcId {
        self.mailbox.id
    }

    /// This process's address, to hand to others.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<&str>();
    /// let pid = me.pid();
    /// pid.send("to myself");
    /// assert_eq!(me.receive().await?.into_msg(), Some("to myself"));
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn pid(&self) -> Pid<M> {
        Pid::new(self.node.clone(), self.mailbox.clone())
    }

    /// The node this process lives in.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// assert!(me.node().is_alive(me.id()));
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The run's handle: sleep, spawn plain tasks, read the clock.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// me.cx().sleep(5).await?;
    /// assert_eq!(me.cx().now_ms(), 5);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn cx(&self) -> &Cx {
        &self.cx
    }

    /// How many messages wait in the mailbox.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<u8>();
    /// me.pid().send(1);
    /// assert_eq!(me.mailbox_len(), 1);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn mailbox_len(&self) -> usize {
        self.node.deliver_pending();
        self.mailbox.len()
    }

    /// The oldest message, waiting for one if the mailbox is empty. `Err(Canceled)` once the
    /// process is killed (or its task canceled), before or while it waits — a killed process
    /// takes no more messages: return it with `?`. A receive that finds its message at once
    /// spends a unit of the task's operation budget ([`Cx::poll_budget`]), so a process whose
    /// mailbox is never empty still yields now and then.
    ///
    /// Several receives may wait on one mailbox at once (a `Process` shared by tasks): each
    /// arrival wakes them all, and each takes what its own pattern accepts.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<u8>();
    /// node.send_after(10, &me.pid(), 1);
    /// assert_eq!(me.receive().await?, process::Message::Msg(1));
    /// # Ok(()) }).unwrap();
    /// ```
    pub async fn receive(&self) -> Result<Message<M>, Canceled> {
        let got = self.receive_until(u64::MAX, &mut |_| true).await?;
        Ok(got.expect("a receive without a deadline ends only with a message"))
    }

    /// Selective receive: the oldest message `pattern` accepts, waiting for one if none does.
    /// The messages it passes over stay in the mailbox, in order, for later receives.
    ///
    /// `pattern` looks at each message; it must not use this mailbox itself.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<&str>();
    /// for m in ["x1", "a", "x2"] { me.pid().send(m); }
    /// let a = me.receive_where(|m| m.msg() == Some(&"a")).await?;
    /// assert_eq!(a.into_msg(), Some("a"));
    /// assert_eq!(me.receive().await?.into_msg(), Some("x1")); // the others, in order
    /// assert_eq!(me.receive().await?.into_msg(), Some("x2"));
    /// # Ok(()) }).unwrap();
    /// ```
    pub async fn receive_where(
        &self,
        mut pattern: impl FnMut(&Message<M>) -> bool,
    ) -> Result<Message<M>, Canceled> {
        let got = self.receive_until(u64::MAX, &mut pattern).await?;
        Ok(got.expect("a receive without a deadline ends only with a message"))
    }

    /// Erlang's `receive … after Ms`: the oldest message `pattern` accepts, or `None` if none
    /// came within `ms` milliseconds. `after 0` looks at the mailbox without waiting.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<u8>();
    /// assert_eq!(me.receive_after(50, |_| true).await?, None);
    /// assert_eq!(cx.now_ms(), 50);
    /// # Ok(()) }).unwrap();
    /// ```
    pub async fn receive_after(
        &self,
        ms: u64,
        mut pattern: impl FnMut(&Message<M>) -> bool,
    ) -> Result<Option<Message<M>>, Canceled> {
        let deadline = self.cx.now_ms().saturating_add(ms);
        self.receive_until(deadline, &mut pattern).await
    }

    /// Every receive: a kill (a pending cancel) lands before each look at the mailbox — a
    /// message there is not handed over until the receive takes it, so a killed process takes
    /// nothing more (it stays in the mailbox, dropped with it). A receive that ends without
    /// waiting (a message was there, or `after 0`) spends a unit of the task's operation
    /// budget, so a process whose mailbox is never empty still yields now and then (and a kill
    /// sent meanwhile lands there), as a channel receive does.
    async fn receive_until(
        &self,
        deadline_ms: u64,
        pattern: &mut dyn FnMut(&Message<M>) -> bool,
    ) -> Result<Option<Message<M>>, Canceled> {
        self.cx.check_cancel()?;
        let mut unit = Some(poll_fn(|task| self.cx.poll_budget(task)).await?);
        loop {
            let now = self.cx.now_ms();
            self.node.deliver_due(now);
            let got = match self.mailbox.take_first(pattern) {
                Some(message) => Some(Some(message)),
                None if now >= deadline_ms => Some(None),
                None => None,
            };
            if let Some(got) = got {
                if let Some(unit) = unit.take() {
                    unit.spend();
                }
                return Ok(got);
            }
            // It waits: the unit goes back (the wait yields anyway).
            drop(unit.take());
            let park = self.cx.park("process receive");
            let wait = Wait::start(self, &park, deadline_ms.min(self.node.next_timer()));
            let woke = self.cx.suspend(park).await;
            drop(wait);
            woke?;
            // Woken, but a kill that came since lands before the next look.
            self.cx.check_cancel()?;
        }
    }

    /// Traps exits (or stops): with `true`, an exit signal from a linked process arrives as a
    /// [`Message::Exit`] instead of killing this process ([`Node::kill`] still kills). Returns
    /// the previous setting.
    ///
    /// ```
    /// use process::{Exit, ExitReason, Message};
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// assert!(!me.trap_exit(true));
    /// let worker = me
    ///     .spawn_link::<(), _, _>(|_| async { Err(ExitReason::error("crashed")) })
    ///     .unwrap();
    /// let exit = me.receive().await?;
    /// assert_eq!(exit, Message::Exit(Exit { from: worker.id(), reason: ExitReason::error("crashed") }));
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn trap_exit(&self, trap: bool) -> bool {
        self.node.set_trap_exit(self.id(), trap)
    }

    /// Links this process with `other`: when either ends, the other gets an exit signal with
    /// its reason (see [`ExitReason`]). Linking to a process that has already ended gives this
    /// process an exit signal with [`ExitReason::NoProc`].
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let (a, b) = (node.attach::<()>(), node.attach::<()>());
    /// a.link(b.id());
    /// assert_eq!(a.links(), [b.id()]);
    /// assert_eq!(b.links(), [a.id()]); // links go both ways
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn link(&self, other: impl Into<ProcId>) {
        self.node.link(self.id(), other.into());
    }

    /// Removes the link with `other`, if any.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let (a, b) = (node.attach::<()>(), node.attach::<()>());
    /// a.link(b.id());
    /// b.unlink(a.id());
    /// assert_eq!(a.links(), []);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn unlink(&self, other: impl Into<ProcId>) {
        self.node.unlink(self.id(), other.into());
    }

    /// The processes linked with this one, in spawn order.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// assert_eq!(me.links(), []);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn links(&self) -> Vec<ProcId> {
        self.node.links(self.id())
    }

    /// Monitors `other`: when it ends, this process receives one [`Message::Down`] with its
    /// reason; at once, with [`ExitReason::NoProc`], if it has already ended.
    ///
    /// ```
    /// use process::{Down, ExitReason, Message};
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// let worker = node.spawn::<(), _, _>(|_| async { Ok(()) }).unwrap();
    /// let monitor = me.monitor(&worker);
    /// let down = Down { monitor, pid: worker.id(), reason: ExitReason::Normal };
    /// assert_eq!(me.receive().await?, Message::Down(down));
    /// // Monitoring it now that it is gone answers at once.
    /// let late = me.monitor(&worker);
    /// let down = Down { monitor: late, pid: worker.id(), reason: ExitReason::NoProc };
    /// assert_eq!(me.receive_after(0, |_| true).await?, Some(Message::Down(down)));
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn monitor(&self, other: impl Into<ProcId>) -> MonitorRef {
        self.node.monitor(self.id(), other.into())
    }

    /// Stops a monitor; its `Down`, if already delivered, is removed from the mailbox, so none
    /// is received after this. Whether the monitor was still active.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let (me, other) = (node.attach::<()>(), node.attach::<()>());
    /// let monitor = me.monitor(other.id());
    /// assert!(me.demonitor(monitor));
    /// drop(other);
    /// assert_eq!(me.mailbox_len(), 0, "no Down after a demonitor");
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn demonitor(&self, monitor: MonitorRef) -> bool {
        self.node.demonitor(self.id(), monitor)
    }

    /// Sends `to` an exit signal with `reason`, as if this process had exited with it
    /// (Erlang's `exit(Pid, Reason)`): a message if `to` traps exits; otherwise it is killed
    /// with `reason`, unless `reason` is normal (then nothing happens, unless `to` is this
    /// process).
    ///
    /// ```
    /// use process::{ExitReason, Message};
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// let worker = node
    ///     .spawn::<(), _, _>(|p| async move { p.receive().await?; Ok(()) })
    ///     .unwrap();
    /// me.monitor(&worker);
    /// me.exit_signal(&worker, ExitReason::Normal); // ignored: it does not trap exits
    /// me.exit_signal(&worker, ExitReason::error("shut down"));
    /// let Message::Down(down) = me.receive().await? else { unreachable!() };
    /// assert_eq!(down.reason, ExitReason::error("shut down"));
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn exit_signal(&self, to: impl Into<ProcId>, reason: ExitReason) {
        self.node.exit_signal(self.id(), to.into(), reason);
    }

    /// Spawns a process linked with this one from its first instant (Erlang's `spawn_link`).
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// let child = me.spawn_link::<(), _, _>(|p| async move { p.receive().await?; Ok(()) }).unwrap();
    /// assert_eq!(me.links(), [child.id()]);
    /// child.send(());
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn spawn_link<N, F, Fut>(&self, body: F) -> Result<Pid<N>, SpawnError>
    where
        N: 'static,
        F: FnOnce(Process<N>) -> Fut,
        Fut: Future<Output = Result<(), ExitReason>> + 'static,
    {
        let me = self.id();
        self.node
            .spawn_with(body, |node, child| node.link(me, child))
    }

    /// Spawns a process monitored by this one from its first instant (Erlang's
    /// `spawn_monitor`).
    ///
    /// ```
    /// use process::{ExitReason, Message};
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let me = node.attach::<()>();
    /// let (child, monitor) = me
    ///     .spawn_monitor::<(), _, _>(|_| async { panic!("oops") })
    ///     .unwrap();
    /// let Message::Down(down) = me.receive().await? else { unreachable!() };
    /// assert_eq!((down.monitor, down.pid), (monitor, child.id()));
    /// assert_eq!(down.reason, ExitReason::Panic("oops".into()));
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn spawn_monitor<N, F, Fut>(&self, body: F) -> Result<(Pid<N>, MonitorRef), SpawnError>
    where
        N: 'static,
        F: FnOnce(Process<N>) -> Fut,
        Fut: Future<Output = Result<(), ExitReason>> + 'static,
    {
        let me = self.id();
        let mut monitor = None;
        let pid = self.node.spawn_with(body, |node, child| {
            monitor = Some(node.monitor(me, child));
        })?;
        Ok((pid, monitor.expect("set before the spawn returned")))
    }

    /// Ends this process with `reason` (Erlang's `exit(Reason)`). An attached process ends now,
    /// instead of `Normal` at the drop. A spawned process ends with `reason` whatever its body
    /// returns after: its task is canceled, so the body stops at its next suspend point (its
    /// `?` unwinds it). Usually a spawned body just returns `Err(reason)`.
    ///
    /// ```
    /// use process::{ExitReason, Message};
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let (me, other) = (node.attach::<()>(), node.attach::<()>());
    /// me.monitor(other.id());
    /// other.exit(ExitReason::error("bye"));
    /// let Message::Down(down) = me.receive().await? else { unreachable!() };
    /// assert_eq!(down.reason, ExitReason::error("bye"));
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn exit(mut self, reason: ExitReason) {
        match &mut self.life {
            Some(life) => life.reason = Some(reason),
            None => self.node.exit_self(self.id(), reason),
        }
    }
}

impl<M> fmt::Debug for Process<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("id", &self.mailbox.id)
            .field("messages", &self.mailbox.len())
            .finish()
    }
}

/// A receive's wait, undone however the receive ends (returned, canceled, dropped mid-wait).
struct Wait<'a> {
    node: &'a Node,
    cx: &'a Cx,
    mailbox: &'a dyn WaitOn,
    ticket: u64,
    timer: Option<io_core::TimerId>,
}

impl<'a> Wait<'a> {
    fn start<M: 'static>(process: &'a Process<M>, park: &io_core::Park, wake_at: u64) -> Self {
        let ticket = process.node.start_wait(park);
        process.mailbox.wait_on(ticket, park);
        let timer = (wake_at != u64::MAX).then(|| process.cx.arm_timer(wake_at, park));
        Wait {
            node: &process.node,
            cx: &process.cx,
            mailbox: &*process.mailbox,
            ticket,
            timer,
        }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        self.mailbox.stop_waiting(self.ticket);
        self.node.end_wait(self.ticket);
        if let Some(timer) = self.timer.take() {
            self.cx.disarm_timer(timer);
        }
    }
}

/// A process's end, reported to the node exactly once: when the spawned body's future ends
/// (or is dropped unfinished: canceled before it ran, abandoned at shutdown), or when an
/// attached process's handle is dropped.
struct Life {
    node: Node,
    id: ProcId,
    /// Set when the body ended; `None` when dropped unfinished.
    reason: Option<ExitReason>,
    /// The reason when dropped unfinished and not killed: `Canceled` for a spawned body,
    /// `Normal` for an attached handle (whose task is alive and well).
    unfinished: ExitReason,
}

impl Drop for Life {
    fn drop(&mut self) {
        if self.node.never_started(self.id) {
            self.node.forget(self.id);
            return;
        }
        let reason = match self.reason.take() {
            _ if self.node.exit_reason(self.id).is_some() => {
                self.node.exit_reason(self.id).expect("checked")
            }
            Some(ExitReason::Canceled) | None if self.node.kill_reason(self.id).is_some() => {
                self.node.kill_reason(self.id).expect("checked")
            }
            Some(reason) => reason,
            None if std::thread::panicking() => ExitReason::Panic("panicked".into()),
            None if self.node.cx().check_cancel().is_err() => ExitReason::Canceled,
            None => self.unfinished.clone(),
        };
        self.node.finish(self.id, reason);
    }
}

impl Node {
    /// Spawns a process: a new task with a mailbox of messages of type `M`, running `body`
    /// with its [`Process`] handle. The body returns `Ok(())` to end normally or
    /// `Err(reason)`; a panic in it ends the process with [`ExitReason::Panic`] (the node and
    /// the backend run on).
    ///
    /// Processes run concurrently, so the task is spawned with
    /// [`SpawnOptions::concurrent`]: on the blocking backend, which runs tasks inline, the
    /// spawn is refused with [`SpawnError::ConcurrencyUnavailable`] (there, make the run's own
    /// task a process with [`Node::attach`]).
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let pid = node
    ///     .spawn::<u32, _, _>(|p| async move {
    ///         let n = p.receive().await?.into_msg().unwrap();
    ///         assert_eq!(n, 7);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// pid.send(7);
    /// # Ok(()) }).unwrap();
    /// let refused = io_blocking::BlockingIo::new()
    ///     .run(|cx| async move {
    ///         let node = process::Node::new(&cx);
    ///         Ok(node.spawn::<(), _, _>(|_| async { Ok(()) }).map(|_| ()))
    ///     })
    ///     .unwrap();
    /// assert_eq!(refused, Err(io_core::SpawnError::ConcurrencyUnavailable));
    /// ```
    pub fn spawn<M, F, Fut>(&self, body: F) -> Result<Pid<M>, SpawnError>
    where
        M: 'static,
        F: FnOnce(Process<M>) -> Fut,
        Fut: Future<Output = Result<(), ExitReason>> + 'static,
    {
        self.spawn_with(body, |_, _| {})
    }

    /// Spawns, running `before` (a link, a monitor) once the process exists and before its
    /// task can run.
    fn spawn_with<M, F, Fut>(
        &self,
        body: F,
        before: impl FnOnce(&Node, ProcId),
    ) -> Result<Pid<M>, SpawnError>
    where
        M: 'static,
        F: FnOnce(Process<M>) -> Fut,
        Fut: Future<Output = Result<(), ExitReason>> + 'static,
    {
        let (id, mailbox) = self.new_process::<M>(None);
        let process = Process {
            node: self.clone(),
            cx: self.cx().clone(),
            mailbox: mailbox.clone(),
            life: None,
        };
        let mut life = Life {
            node: self.clone(),
            id,
            reason: None,
            unfinished: ExitReason::Canceled,
        };
        let body = Box::pin(body(process));
        let opts = SpawnOptions::new()
            .concurrent()
            .name(format!("process {id}"));
        let task = self.cx().spawn_with(opts, move |_| async move {
            let ended = CatchPanic(body).await;
            life.reason = Some(match ended {
                Ok(Ok(())) => ExitReason::Normal,
                Ok(Err(reason)) => reason,
                Err(panic) => ExitReason::Panic(panic_message(&*panic)),
            });
            drop(life);
            Ok::<(), Canceled>(())
        })?;
        self.set_task(id, task.task_ref());
        before(self, id);
        task.detach();
        Ok(Pid::new(self.clone(), mailbox))
    }

    /// Makes the calling task a process with a mailbox of type `M`, like Erlang's shell: it
    /// can receive, link, monitor and be sent to. A kill cancels the calling task. The process
    /// ends when the handle is dropped: normally, or with the reason of a kill, or `Canceled`
    /// if the task was canceled, or `Panic` while unwinding; [`Process::exit`] gives another.
    ///
    /// This works on every backend, blocking included: it is how a run's main task takes part.
    ///
    /// ```
    /// let at = io_blocking::BlockingIo::new()
    ///     .run(|cx| async move {
    ///         let node = process::Node::new(&cx);
    ///         let me = node.attach::<&str>();
    ///         node.send_after(20, &me.pid(), "wake up");
    ///         assert_eq!(me.receive().await?.into_msg(), Some("wake up"));
    ///         Ok(cx.now_ms())
    ///     })
    ///     .unwrap();
    /// # let _ = at;
    /// ```
    pub fn attach<M: 'static>(&self) -> Process<M> {
        let (id, mailbox) = self.new_process::<M>(self.cx().current_task());
        Process {
            node: self.clone(),
            cx: self.cx().clone(),
            mailbox,
            life: Some(Life {
                node: self.clone(),
                id,
                reason: None,
                unfinished: ExitReason::Normal,
            }),
        }
    }
}

/// The body's future with its panic caught: a panicking process ends with `Panic`.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let body = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| body.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message.to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
