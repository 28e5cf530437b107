//! A gen_server loop, written once: calls with a reply and a timeout, casts, other messages,
//! and an idle timeout.
//!
//! A server is a [`Server`] value (its state and its handlers). [`start`] spawns a process
//! running [`serve`] on it and gives a [`ServerRef`] to [`call`](ServerRef::call) and
//! [`cast`](ServerRef::cast) it. Each handler says what comes next, as Erlang's tuples do:
//! reply (or not) and the idle timeout until the next message ([`Timeout`]), or stop.
//!
//! ```
//! use process::gen_server::{self, CallReturn, Return, Server, Timeout};
//! use process::{Node, Process};
//!
//! struct Counter(u64);
//!
//! impl Server for Counter {
//!     type Call = ();
//!     type Reply = u64;
//!     type Cast = u64;
//!
//!     fn handle_call(&mut self, _: (), _: &gen_server::ReplyTo<u64>, _: &gen_server::Me<Self>) -> CallReturn<u64> {
//!         CallReturn::Reply(self.0, Timeout::Infinity)
//!     }
//!
//!     fn handle_cast(&mut self, n: u64, _: &gen_server::Me<Self>) -> Return {
//!         self.0 += n;
//!         Return::NoReply(Timeout::Infinity)
//!     }
//! }
//!
//! let total = io_fiber::FiberIo::new()
//!     .run(|cx| async move {
//!         let node = Node::new(&cx);
//!         let counter = gen_server::start(&node, Counter(0)).unwrap();
//!         counter.cast(2);
//!         counter.cast(3);
//!         Ok(counter.call((), 100).await)
//!     })
//!     .unwrap();
//! assert_eq!(total, Ok(5));
//! ```

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use io_core::{Canceled, Cx, SpawnError};

use crate::{Down, Exit, ExitReason, Message, Node, Pid, Process};

/// The process handle a server's handlers receive.
pub type Me<S> = Process<Request<S>>;

/// A server's state and handlers. Handlers are plain functions of the state: what they start
/// that takes time (a timer, a task) reports back as a message.
pub trait Server: Sized + 'static {
    /// What a [`call`](ServerRef::call) asks.
    type Call: 'static;
    /// What a call is answered with.
    type Reply: 'static;
    /// What a [`cast`](ServerRef::cast) tells.
    type Cast: 'static;

    /// Runs once before the first message; gives the first idle timeout.
    fn init(&mut self, me: &Me<Self>) -> Timeout {
        let _ = me;
        Timeout::Infinity
    }

    /// Answers a call: [`CallReturn::Reply`] now, or [`CallReturn::NoReply`] keeping `from`
    /// (a clone) to [`reply`](ReplyTo::reply) later, or stop.
    fn handle_call(
        &mut self,
        request: Self::Call,
        from: &ReplyTo<Self::Reply>,
        me: &Me<Self>,
    ) -> CallReturn<Self::Reply>;

    /// Handles a cast.
    fn handle_cast(&mut self, msg: Self::Cast, me: &Me<Self>) -> Return;

    /// Handles an exit signal (the server traps exits) or a monitor's `Down`. Ignores it by
    /// default, with no idle timeout.
    fn handle_info(&mut self, info: Info, me: &Me<Self>) -> Return {
        let _ = (info, me);
        Return::NoReply(Timeout::Infinity)
    }

    /// No message came within the idle timeout the last handler gave.
    fn handle_timeout(&mut self, me: &Me<Self>) -> Return {
        let _ = me;
        Return::NoReply(Timeout::Infinity)
    }

    /// Runs when a handler stops the server, with the reason it ends with.
    fn terminate(&mut self, reason: &ExitReason) {
        let _ = reason;
    }
}

/// How long the server waits for its next message before [`Server::handle_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Wait for the next message however long it takes.
    Infinity,
    /// At most this many milliseconds; every message starts the count again.
    Ms(u64),
}

/// What [`Server::handle_call`] does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallReturn<R> {
    /// Replies, then waits for the next message.
    Reply(R, Timeout),
    /// Does not reply now (a kept [`ReplyTo`] replies later), waits for the next message.
    NoReply(Timeout),
    /// Replies (if given a reply), then ends with the reason.
    Stop(ExitReason, Option<R>),
}

/// What a handler other than `handle_call` does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Return {
    /// Waits for the next message.
    NoReply(Timeout),
    /// Ends with the reason.
    Stop(ExitReason),
}

/// A message that is neither a call nor a cast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Info {
    /// A linked process exited (the server traps exits).
    Exit(Exit),
    /// A monitored process ended.
    Down(Down),
}

/// What a server's mailbox holds.
pub enum Request<S: Server> {
    /// A call and where its reply goes.
    Call(S::Call, ReplyTo<S::Reply>),
    /// A cast.
    Cast(S::Cast),
}

impl<S: Server> fmt::Debug for Request<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Request::Call(..) => "Call",
            Request::Cast(..) => "Cast",
        })
    }
}

/// Where a call's reply goes; clone it to reply after [`CallReturn::NoReply`]. If every clone
/// is dropped without a reply (the server ended), the caller gets [`CallError::ServerDown`].
///
/// A server that answers a call only when the next cast comes:
///
/// ```
/// use process::gen_server::{self, CallReturn, Me, ReplyTo, Return, Server, Timeout};
///
/// #[derive(Default)]
/// struct NextCast(Vec<ReplyTo<String>>);
///
/// impl Server for NextCast {
///     type Call = ();
///     type Reply = String;
///     type Cast = String;
///     fn handle_call(&mut self, _: (), from: &ReplyTo<String>, _: &Me<Self>) -> CallReturn<String> {
///         self.0.push(from.clone());
///         CallReturn::NoReply(Timeout::Infinity)
///     }
///     fn handle_cast(&mut self, text: String, _: &Me<Self>) -> Return {
///         for from in self.0.drain(..) {
///             assert!(from.reply(text.clone()));
///         }
///         Return::NoReply(Timeout::Infinity)
///     }
/// }
///
/// let got = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let node = process::Node::new(&cx);
///         let server = gen_server::start(&node, NextCast::default()).unwrap();
///         let caster = server.clone();
///         cx.spawn(move |cx| async move {
///             cx.sleep(30).await?;
///             caster.cast("news".to_string());
///             Ok(())
///         })
///         .detach();
///         let reply = server.call((), 100).await;
///         Ok((reply, cx.now_ms()))
///     })
///     .unwrap();
/// assert_eq!(got, (Ok("news".to_string()), 30));
/// ```
pub struct ReplyTo<R>(Rc<RefCell<Option<sync::oneshot::Sender<R>>>>);

impl<R> ReplyTo<R> {
    /// Replies; `false` if already replied or the caller stopped waiting (timed out).
    pub fn reply(&self, reply: R) -> bool {
        let sender = self.0.borrow_mut().take();
        sender.is_some_and(|sender| sender.send(reply).is_ok())
    }
}

impl<R> Clone for ReplyTo<R> {
    fn clone(&self) -> ReplyTo<R> {
        ReplyTo(self.0.clone())
    }
}

impl<R> fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending = self.0.borrow().is_some();
        f.debug_struct("ReplyTo")
            .field("pending", &pending)
            .finish()
    }
}

/// Why a [`call`](ServerRef::call) gave no reply.
///
/// ```
/// use process::gen_server::CallError;
/// assert_eq!(
///     CallError::Timeout { ms: 50 }.to_string(),
///     "no reply within 50 ms; the server is busy or stuck, retry with a longer timeout"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The server had ended before the call: start it again (or a supervisor does).
    #[error("the server is not running; start it (again) before calling")]
    NoProc,
    /// The server ended before replying (it crashed, was killed, or stopped), or dropped the
    /// call's [`ReplyTo`] without replying.
    #[error(
        "the server ended (or dropped the call) before replying; its monitors and links tell why"
    )]
    ServerDown,
    /// No reply within the timeout; the server may still be working on it (a late reply is
    /// dropped). Retry with a longer timeout, or check the server.
    #[error("no reply within {ms} ms; the server is busy or stuck, retry with a longer timeout")]
    Timeout {
        /// The timeout that passed.
        ms: u64,
    },
    /// The calling task was canceled while it waited.
    #[error("the caller was canceled while waiting for the reply")]
    Canceled,
}

impl From<Canceled> for CallError {
    fn from(_: Canceled) -> CallError {
        CallError::Canceled
    }
}

/// The address of a running server. It holds its node only weakly, as a [`Pid`] does: a
/// `ServerRef` kept in a message or a timer does not keep the node alive.
pub struct ServerRef<S: Server> {
    pid: Pid<Request<S>>,
}

impl<S: Server> ServerRef<S> {
    /// The server from its pid (one found with [`Node::pid_of`], say).
    ///
    /// ```
    /// # use process::gen_server::{self, CallReturn, Me, ReplyTo, Request, Return, Server, ServerRef, Timeout};
    /// # struct Echo;
    /// # impl Server for Echo {
    /// #     type Call = u8; type Reply = u8; type Cast = ();
    /// #     fn handle_call(&mut self, n: u8, _: &ReplyTo<u8>, _: &Me<Self>) -> CallReturn<u8> { CallReturn::Reply(n, Timeout::Infinity) }
    /// #     fn handle_cast(&mut self, _: (), _: &Me<Self>) -> Return { Return::NoReply(Timeout::Infinity) }
    /// # }
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let echo = gen_server::start(&node, Echo).unwrap();
    /// node.register("echo", echo.pid()).unwrap();
    /// let found: ServerRef<Echo> = ServerRef::from_pid(&node, node.pid_of::<Request<Echo>>("echo").unwrap());
    /// assert_eq!(found.call(7, 10).await, Ok(7));
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn from_pid(node: &Node, pid: Pid<Request<S>>) -> ServerRef<S> {
        // The pid knows its node; `node` stays in the signature for the callers' sake.
        let _ = node;
        ServerRef { pid }
    }

    /// The server's pid: monitor it, link to it, register it (see
    /// [`from_pid`](ServerRef::from_pid)).
    pub fn pid(&self) -> &Pid<Request<S>> {
        &self.pid
    }

    /// Asks and waits at most `timeout_ms` for the reply. Calls from any task, process or not.
    ///
    /// ```
    /// use process::gen_server::{self, CallError, CallReturn, Me, ReplyTo, Return, Server, Timeout};
    /// use process::ExitReason;
    ///
    /// /// Replies to `true`; stops without replying on `false`.
    /// struct Picky;
    /// impl Server for Picky {
    ///     type Call = bool;
    ///     type Reply = ();
    ///     type Cast = ();
    ///     fn handle_call(&mut self, ok: bool, _: &ReplyTo<()>, _: &Me<Self>) -> CallReturn<()> {
    ///         if ok { CallReturn::Reply((), Timeout::Infinity) } else { CallReturn::Stop(ExitReason::error("no"), None) }
    ///     }
    ///     fn handle_cast(&mut self, _: (), _: &Me<Self>) -> Return { Return::NoReply(Timeout::Infinity) }
    /// }
    ///
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let node = process::Node::new(&cx);
    /// let picky = gen_server::start(&node, Picky).unwrap();
    /// assert_eq!(picky.call(true, 10).await, Ok(()));
    /// assert_eq!(picky.call(false, 10).await, Err(CallError::ServerDown));
    /// assert_eq!(picky.call(true, 10).await, Err(CallError::NoProc));
    /// # Ok(()) }).unwrap();
    /// ```
    pub async fn call(&self, request: S::Call, timeout_ms: u64) -> Result<S::Reply, CallError> {
        let Some(node) = self.pid.node().filter(|node| node.is_alive(&self.pid)) else {
            return Err(CallError::NoProc);
        };
        let (tx, mut rx) = sync::oneshot::channel(node.cx());
        self.pid.send(Request::Call(
            request,
            ReplyTo(Rc::new(RefCell::new(Some(tx)))),
        ));
        // The wait is canceled at the deadline: it must end `Err(Canceled)` then, not with a
        // value, or the timeout would take it for an answer.
        let wait = move |_: Cx| async move {
            match rx.recv().await {
                Ok(reply) => Ok(Some(reply)),
                Err(sync::oneshot::RecvError::Closed) => Ok(None),
                Err(sync::oneshot::RecvError::Canceled) => Err(Canceled),
            }
        };
        match race::timeout(node.cx(), timeout_ms, wait).await? {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(CallError::ServerDown),
            Err(_) => Err(CallError::Timeout { ms: timeout_ms }),
        }
    }

    /// Tells, without waiting (dropped if the server has ended). See the
    /// [module example](self).
    pub fn cast(&self, msg: S::Cast) {
        self.pid.send(Request::Cast(msg));
    }
}

impl<S: Server> Clone for ServerRef<S> {
    fn clone(&self) -> ServerRef<S> {
        ServerRef {
            pid: self.pid.clone(),
        }
    }
}

impl<S: Server> fmt::Debug for ServerRef<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServerRef").field(&self.pid).finish()
    }
}

/// Spawns a process serving `server` ([`serve`]). Refused on the blocking backend like every
/// [`Node::spawn`]; there, run [`serve`] in an attached process. See the
/// [module example](self).
pub fn start<S: Server>(node: &Node, server: S) -> Result<ServerRef<S>, SpawnError> {
    let pid = node.spawn(move |me| serve(me, server))?;
    Ok(ServerRef::from_pid(node, pid))
}

/// The server loop, in the process `me`: receives with the idle timeout the last handler
/// gave, dispatches, replies; ends when a handler stops (`Ok(())` for a normal stop, else the
/// reason) or the process is killed (`Err` with `Canceled`). An attached `me` ends with the
/// stop reason (its monitors and links see it), as a spawned server does.
///
/// ```
/// use process::gen_server::{self, CallReturn, Me, ReplyTo, Return, Server, Timeout};
///
/// /// Stops after three idle periods of 10 ms.
/// struct Idle(u32);
/// impl Server for Idle {
///     type Call = ();
///     type Reply = ();
///     type Cast = ();
///     fn init(&mut self, _: &Me<Self>) -> Timeout { Timeout::Ms(10) }
///     fn handle_call(&mut self, _: (), _: &ReplyTo<()>, _: &Me<Self>) -> CallReturn<()> {
///         CallReturn::Reply((), Timeout::Ms(10))
///     }
///     fn handle_cast(&mut self, _: (), _: &Me<Self>) -> Return { Return::NoReply(Timeout::Ms(10)) }
///     fn handle_timeout(&mut self, _: &Me<Self>) -> Return {
///         self.0 += 1;
///         if self.0 == 3 { Return::Stop(process::ExitReason::Normal) } else { Return::NoReply(Timeout::Ms(10)) }
///     }
/// }
///
/// // On blocking too: the run's own task is the server.
/// let at = io_blocking::BlockingIo::new()
///     .run(|cx| async move {
///         let node = process::Node::new(&cx);
///         let start = cx.now_ms();
///         gen_server::serve(node.attach(), Idle(0)).await.unwrap();
///         Ok(cx.now_ms() - start)
///     })
///     .unwrap();
/// assert!(at >= 30);
/// ```
pub async fn serve<S: Server>(me: Me<S>, mut server: S) -> Result<(), ExitReason> {
    let mut timeout = server.init(&me);
    loop {
        let got = match timeout {
            Timeout::Infinity => Some(me.receive().await?),
            Timeout::Ms(ms) => me.receive_after(ms, |_| true).await?,
        };
        let next = match got {
            None => server.handle_timeout(&me),
            Some(Message::Msg(Request::Call(request, from))) => {
                match server.handle_call(request, &from, &me) {
                    CallReturn::Reply(reply, timeout) => {
                        from.reply(reply);
                        Return::NoReply(timeout)
                    }
                    CallReturn::NoReply(timeout) => Return::NoReply(timeout),
                    CallReturn::Stop(reason, reply) => {
                        if let Some(reply) = reply {
                            from.reply(reply);
                        }
                        Return::Stop(reason)
                    }
                }
            }
            Some(Message::Msg(Request::Cast(msg))) => server.handle_cast(msg, &me),
            Some(Message::Exit(exit)) => server.handle_info(Info::Exit(exit), &me),
            Some(Message::Down(down)) => server.handle_info(Info::Down(down), &me),
        };
        match next {
            Return::NoReply(next) => timeout = next,
            Return::Stop(reason) => {
                server.terminate(&reason);
                // An attached process ends when `me` drops, here: with this reason.
                me.exit(reason.clone());
                return match reason {
                    ExitReason::Normal => Ok(()),
                    reason => Err(reason),
                };
            }
        }
    }
}
