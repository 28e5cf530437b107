//! The ioswap protocol: write async code once, run it on any backend.
//!
//! User code takes a [`Cx`] and uses what it offers — [`spawn`](Cx::spawn), [`sleep`](Cx::sleep),
//! [`yield_now`](Cx::yield_now), [`shield`](Cx::shield), [`check_cancel`](Cx::check_cancel) — and
//! never learns which backend runs it. A backend implements two small object-safe traits over
//! one [`BackendCore`] (its run queue, timers, live tasks, clock and choices):
//!
//! - [`Io`], what code written once calls: `spawn_raw`, `suspend_raw`, `ready`, `now_ms`,
//!   `arm_timer`/`disarm_timer`, `random_u64`, and op submission (`submit`, `cancel_op`,
//!   `discard_op`; see [`op`]). All but `submit` have defaults written once over the core.
//! - [`Driver`], what a loop calls: `poll` (one turn, answering with a [`Next`]) and
//!   `shut_down`. [`run`] is the loop every backend's `run` is.
//!
//! # The story of a task
//!
//! 1. [`Cx::spawn`] wraps the future in a task (async-task) whose wakers push it onto the
//!    backend's [`RunQueue`], and hands it to [`Io::spawn_raw`]. The blocking backend runs it
//!    inline; the others queue it.
//! 2. The backend's [`Driver::poll`] runs queued tasks. While a task is polled it is the thread's
//!    *current task*, so suspend points can see its cancel flag.
//! 3. Every wait goes through one suspension point, [`Io::suspend_raw`] on a [`Park`]: a sleep
//!    arms a timer that readies its park; joining waits for the task's completion.
//! 4. [`Task::cancel`] (or dropping the [`Task`]) marks the task and readies it; its next
//!    suspend point returns `Err(Canceled)`, and `?` unwinds the body.
//! 5. A task whose operations keep completing without suspending (a full channel, finished
//!    joins) yields once per poll's operation budget ([`Cx::poll_budget`],
//!    [`DEFAULT_OP_BUDGET`]), so the others run, timers fire and a cancel lands there too.
//!
//! # Cancellation, in plain words
//!
//! - A cancel is a request, delivered at the task's next suspend point as `Err(Canceled)`. Code
//!   after that point does not run. A task canceled before it starts never runs at all.
//! - It is sticky: every later suspend fails too, except inside [`Cx::shield`] (for cleanup).
//! - Completion wins: a task that finished before the cancel landed is joined as `Ok`.
//! - Dropping a task handle cancels the task; [`Task::detach`] lets it run on.
//!
//! ```
//! use io_core::{Canceled, Cx};
//!
//! async fn worker(cx: Cx, log: std::rc::Rc<std::cell::RefCell<Vec<i32>>>) -> Result<(), Canceled> {
//!     log.borrow_mut().push(1);
//!     cx.sleep(1_000).await?; // canceled here...
//!     log.borrow_mut().push(2); // ...so this never runs
//!     Ok(())
//! }
//!
//! let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
//! let io = io_fiber::FiberIo::new();
//! let joined = io
//!     .run({
//!         let log = log.clone();
//!         |cx| async move {
//!             let task = cx.spawn(|cx| worker(cx, log.clone()));
//!             cx.sleep(10).await?;
//!             task.cancel();
//!             Ok(task.await)
//!         }
//!     })
//!     .unwrap();
//! assert_eq!(joined, Err(Canceled));
//! assert_eq!(*log.borrow(), vec![1]);
//! ```
// `unsafe` is denied everywhere but in `task/body.rs`, the task body (see its module docs), and
// `affinity.rs`, pinning a thread to a CPU.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod adapter;
pub mod addr;
mod affinity;
mod backend;
mod clock;
mod cx;
mod error;
pub mod fs;
mod handle;
mod id_map;
mod io;
mod net;
pub mod offload;
pub mod op;
mod random;
mod run;
mod run_queue;
pub mod stdio;
mod task;
mod time;
mod timer;
mod udp;
mod unix;

pub use adapter::{AbandonedWrite, Compat, CompatRead, CompatSource, CompatWrite};
pub use addr::{lookup_host, ToAddrs};
pub use affinity::{allowed_cpus, pin_current_thread};
pub use backend::BackendCore;
pub use clock::RealClock;
pub use cx::{cancel_pending, Cancelable, Cx, Shield, Suspend, TryTask};
pub use error::{BlockedTask, Canceled, Deadlock, PeerAddr, RunError, SpawnError, WouldDeadlock};
pub use fs::{DirEntry, File, FileType, Metadata, OpenOptions};
pub use id_map::{IdHasher, IdMap};
pub use io::{suspend_on, Driver, Io, Next};
pub use net::{TcpListener, TcpReadHalf, TcpStream, TcpWriteHalf};
pub use op::{
    Completion, Handle, Op, OpId, OpSlot, Resource, Submit, Submitted, Unsupported, WeakHandle,
};
pub use random::SplitMix64;
pub use run::run;
pub use run_queue::{RunQueue, Runnable};
pub use task::{
    drop_contained, BudgetUnit, Park, RawTask, SpawnOptions, Task, TaskCtl, TaskRef, TaskSet,
    DEFAULT_OP_BUDGET,
};
pub use time::{Instant, Sleep};
pub use timer::{TimerId, TimerQueue};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};

static_assertions::assert_not_impl_any!(Task<()>: Send, Sync);
static_assertions::assert_not_impl_any!(Park: Send, Sync);
