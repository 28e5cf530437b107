//! ioswap: write async code once, against one small Io protocol, and run it unchanged on
//! interchangeable backends.
//!
//! | backend | clock | for |
//! |---|---|---|
//! | [`BlockingIo`] (feature `blocking`) | real | scripts, CLIs, tests of sequential code: tasks run inline, waits block; no servers |
//! | [`FiberIo`] (feature `fiber`) | virtual | tests and simulation: seeded, deterministic, no hangs |
//! | [`UringIo`] (feature `uring`) | real | production on Linux: one thread driven by io_uring |
//! | [`PollIo`] (feature `poll`) | real | where io_uring is refused, and off Linux: readiness through epoll/kqueue |
//!
//! Code takes a [`Cx`] and never learns which backend runs it. [`run`] picks a backend at run
//! time (see [`Backend::from_env`]); [`sim`] runs on the fiber backend with a seed.
//!
//! ```
//! use ioswap::{Canceled, Cx};
//!
//! async fn greet(cx: &Cx) -> Result<String, Canceled> {
//!     let name = cx.spawn(|cx| async move {
//!         cx.sleep(50).await?;
//!         Ok("world")
//!     });
//!     Ok(format!("hello, {}", name.await?))
//! }
//!
//! // On the default backend (uring if the kernel allows it, else poll; IOSWAP_BACKEND
//! // overrides)...
//! assert_eq!(ioswap::run(|cx| async move { greet(&cx).await }).unwrap(), "hello, world");
//! // ...and on the virtual clock, where the 50 ms pass in no time.
//! # #[cfg(feature = "fiber")]
//! assert_eq!(ioswap::sim(7, |cx| async move { greet(&cx).await }).unwrap(), "hello, world");
//! ```
//!
//! Cancellation, in plain words: a cancel is a *request*, delivered as `Err(Canceled)` at the
//! task's next suspend point (a sleep, a join, a yield); `?` then unwinds the task, so the code
//! after that point never runs. It is sticky, except inside [`Cx::shield`] for cleanup. A task
//! that finished before the cancel landed is joined as `Ok`. Dropping a [`Task`] cancels it;
//! [`Task::detach`] lets it run on.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod backend;
pub mod cores;

#[cfg(feature = "hyper")]
pub mod hyper;

/// Channels, `select` and Erlang-style `send_after`, written once over the protocol: the
/// `channel` crate.
pub use channel;

/// Mutex, RwLock, Semaphore, Notify, Barrier, oneshot, watch and broadcast, written once over
/// the protocol: the `sync` crate.
pub use sync;

/// Erlang processes: mailboxes with selective receive, `send_after`, links, monitors, a
/// registry and a gen_server loop, written once over the protocol: the `process` crate.
pub use process;

#[cfg(feature = "fiber")]
pub use backend::sim;

/// The simulated world the fiber backend serves I/O from: [`World`](sim::World) (hosts,
/// clients, a network and a disk per host), [`Faults`](sim::Faults) drawn from the seed, and
/// the [`Control`](sim::Control) a workload crashes and partitions hosts with. (The function
/// [`sim()`] runs one program on the fiber backend: one host, no faults.)
#[cfg(feature = "fiber")]
pub mod sim {
    pub use io_fiber::sim::*;
}
pub use backend::{run, Backend, Error, BACKEND_VAR};
pub use cores::run_cores;
pub use io_core::{AbandonedWrite, Compat};
pub use io_core::{
    BlockedTask, Cancelable, Canceled, Cx, Deadlock, File, Instant, OpenOptions, PeerAddr,
    RunError, Shield, Sleep, SpawnError, SpawnOptions, Task, TaskRef, TcpListener, TcpStream,
    TryTask, Unsupported, WouldDeadlock,
};

/// Networking: TCP (with a listener's [`SocketOptions`](net::SocketOptions) and a stream's
/// owned halves), UDP, Unix domain sockets, and name lookup ([`lookup_host`](net::lookup_host);
/// connect, bind and send-to take any [`ToAddrs`](net::ToAddrs), such as `"db-1:5432"`).
pub mod net {
    pub use io_core::addr::Target;
    pub use io_core::op::SocketOptions;
    pub use io_core::{
        lookup_host, TcpListener, TcpReadHalf, TcpStream, TcpWriteHalf, ToAddrs, UdpSocket,
        UnixDatagram, UnixListener, UnixStream,
    };
}

/// The file system: [`File`](fs::File) and the operations by path (metadata, directories,
/// renames, links, whole-file [`read`](fs::read) and [`write`](fs::write)).
pub mod fs {
    pub use io_core::fs::*;
}

/// The standard streams: [`stdin`](stdio::stdin), [`stdout`](stdio::stdout),
/// [`stderr`](stdio::stderr).
pub mod stdio {
    pub use io_core::stdio::*;
}

/// Time, in one place: [`Instant`](time::Instant) (a point on the backend's clock, virtual on
/// fiber), [`Sleep`] (the future of [`Cx::sleep`], [`Cx::sleep_for`] and [`Cx::sleep_until`]),
/// [`timeout`] and [`interval`]. (Also re-exported at the crate root.)
pub mod time {
    pub use io_core::{Instant, Sleep};
    pub use race::{interval, interval_at, timeout, timeout_at, Elapsed, Interval, MissedTicks};
    pub use std::time::Duration;
}

/// For backend authors and protocol-level code: the [`Io`](protocol::Io) protocol and its
/// [`Driver`](protocol::Driver) side, the bookkeeping a backend is built from
/// ([`BackendCore`](protocol::BackendCore)), and the pieces primitives are written with (parks,
/// raw tasks, op submission). Application code needs none of it: it takes a [`Cx`].
pub mod protocol {
    pub use io_core::{offload, op};
    pub use io_core::{
        run, BackendCore, BudgetUnit, Driver, Io, Next, Park, RawTask, RealClock, RunQueue,
        Runnable, SplitMix64, Suspend, TaskSet, TimerId, TimerQueue, DEFAULT_OP_BUDGET,
    };
}

pub use race::{
    group, interval, interval_at, race, race_all, timeout, timeout_at, Elapsed, Group, Interval,
    MissedTicks, RaceResult, Racer, Racers, Winner2, Winner3, Winner4, Winner5, Winner6, Winner7,
    Winner8, Won,
};

#[cfg(feature = "blocking")]
pub use io_blocking::BlockingIo;
/// A traced fiber run for people to look at: its events, the Perfetto JSON, the text timeline.
#[cfg(feature = "fiber")]
pub use io_fiber::trace;
#[cfg(feature = "fiber")]
pub use io_fiber::{
    check_determinism, shrink, Decision, DecisionLog, Divergence, FiberIo, Granularity,
    ParseLogError, ParseSchedulerError, ReplayReport, RunTrace, Scheduler, ShrinkError, Shrunk,
    StepReport, TaskInfo, TraceEvent,
};
#[cfg(feature = "poll")]
pub use io_poll::PollIo;
#[cfg(feature = "uring")]
pub use io_uring_backend::{UringError, UringIo};
