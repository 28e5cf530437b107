//! Erlang processes, written once over the ioswap protocol.
//!
//! - A [`Node`] holds the processes of one run. [`Node::spawn`] starts a process (a task with
//!   a mailbox) and gives its [`Pid`]; [`Node::attach`] makes the calling task a process.
//! - Messages are typed: a `Pid<M>` takes `M`s ([`Pid::send`]). The mailbox also receives the
//!   node's signals, [`Exit`] and [`Down`], so a receive gets a [`Message<M>`].
//! - [`Process::receive_where`] is a selective receive: the oldest message a pattern accepts;
//!   the others stay in the mailbox, in order. [`Process::receive_after`] adds Erlang's
//!   `after Ms`.
//! - Timers: [`Node::send_after`] (to a pid) and [`Node::send_after_named`] (to a name, looked
//!   up when the timer fires); [`Node::cancel_timer`] gives the milliseconds left, or `None`
//!   once fired. Due timers are delivered in deadline order, ties in arming order.
//! - Links and monitors: [`Process::link`], [`Process::monitor`], [`Process::trap_exit`],
//!   [`Node::kill`], with Erlang's rules for each [`ExitReason`]. A killed process is canceled:
//!   its next suspend point returns `Err(Canceled)`, and it ends with the kill's reason.
//! - Names: [`Node::register`], [`Node::unregister`], [`Node::whereis`], [`Node::send_named`];
//!   a name dies with its process.
//! - [`gen_server`]: the server loop, with calls that time out and an idle timeout.
//!
//! Nothing here knows which backend runs it: receives wait on protocol parks, timers are
//! protocol timers. Everything is single-threaded (`Rc`), like the [`Cx`](io_core::Cx).
//!
//! ```
//! use process::{ExitReason, Message, Node};
//!
//! let log = io_fiber::FiberIo::new()
//!     .run(|cx| async move {
//!         let node = Node::new(&cx);
//!         let me = node.attach::<String>();
//!         me.trap_exit(true);
//!         let reply_to = me.pid();
//!         // A worker that answers one question, then crashes.
//!         let worker = me
//!             .spawn_link::<u32, _, _>(move |p| async move {
//!                 let n = p.receive().await?.into_msg().unwrap_or(0);
//!                 reply_to.send(format!("{n} squared is {}", n * n));
//!                 Err(ExitReason::error("out of questions"))
//!             })
//!             .expect("processes need a concurrent backend");
//!         worker.send(12);
//!         let mut log = Vec::new();
//!         for _ in 0..2 {
//!             match me.receive().await? {
//!                 Message::Msg(answer) => log.push(answer),
//!                 Message::Exit(exit) => log.push(format!("{} exited: {}", exit.from, exit.reason)),
//!                 Message::Down(_) => unreachable!("nothing monitored"),
//!             }
//!         }
//!         Ok(log)
//!     })
//!     .unwrap();
//! assert_eq!(log, ["12 squared is 144", "<0.2> exited: error: out of questions"]);
//! ```
//!
//! # On the blocking backend
//!
//! Blocking runs a spawned task inline, to its end, before `spawn` returns: two processes can
//! never overlap there. [`Node::spawn`] (and `spawn_link`, `spawn_monitor`,
//! [`gen_server::start`]) say so up front with
//! [`SpawnError::ConcurrencyUnavailable`](io_core::SpawnError::ConcurrencyUnavailable). The
//! run's own task can still be a process ([`Node::attach`]): timers to itself, selective
//! receive with timeouts, names and a [`gen_server::serve`] loop all work there.
//!
//! See `DESIGN.md` for the choices (typed pids, timers on the node).
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod gen_server;
mod mailbox;
mod node;
mod process;
mod reason;

pub use node::{Node, TimerRef};
pub use process::{Pid, Process};
pub use reason::{Down, Exit, ExitReason, Message, MonitorRef, NameError, ProcId, RegisterError};

static_assertions::assert_not_impl_any!(Node: Send, Sync);
static_assertions::assert_not_impl_any!(Pid<u8>: Send, Sync);
