//! The typed errors of the protocol.

use std::fmt;
use std::net::SocketAddr;

/// The current task was canceled.
///
/// Returned by every suspend point (`sleep`, `yield_now`, joining a task, …) of a task whose
/// cancellation was requested, and by joining a task that was canceled before it finished.
/// Propagate it with `?`: the code after the suspend point never runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("the task was canceled")]
pub struct Canceled;

impl Canceled {
    /// Whether an I/O error means "canceled": an op whose task was canceled before it could
    /// complete. I/O methods return `io::Result`, and this is how such an error is recognized.
    ///
    /// ```
    /// use io_core::Canceled;
    /// let err: std::io::Error = Canceled.into();
    /// assert!(Canceled::is_canceled(&err));
    /// assert!(!Canceled::is_canceled(&std::io::Error::other("disk on fire")));
    /// ```
    pub fn is_canceled(err: &std::io::Error) -> bool {
        err.get_ref().is_some_and(|inner| inner.is::<Canceled>())
    }
}

/// An I/O op that did not complete because its task was canceled. The kind is `Other`, never
/// `Interrupted`: retry loops must not spin on a cancellation.
impl From<Canceled> for std::io::Error {
    fn from(canceled: Canceled) -> std::io::Error {
        std::io::Error::other(canceled)
    }
}

/// Why a spawn was refused. The future was dropped without being polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// The spawn required real concurrency (`SpawnOptions::concurrent`) and this backend runs
    /// every task inline. Pick the fiber or io_uring backend, or drop the requirement.
    #[error("this backend runs tasks inline and cannot give the required concurrency; use a backend that has it (uring or poll; fiber for simulations)")]
    ConcurrencyUnavailable,
    /// The backend's `run` has returned; nothing will ever poll a task spawned now.
    #[error("the backend has shut down (its run returned); spawn inside a running backend")]
    ShutDown,
}

/// A refused spawn as an I/O error, for I/O code that spawns (such as
/// [`TcpListener::serve`](crate::TcpListener::serve)): `ConcurrencyUnavailable` is of kind
/// [`Unsupported`](std::io::ErrorKind::Unsupported) (this backend cannot do it, whatever the
/// retry), `ShutDown` of kind `Other`. The `SpawnError` is inside, for a downcast:
///
/// ```
/// use io_core::SpawnError;
/// let err = std::io::Error::from(SpawnError::ConcurrencyUnavailable);
/// assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
/// let inner = err.get_ref().and_then(|e| e.downcast_ref::<SpawnError>());
/// assert_eq!(inner, Some(&SpawnError::ConcurrencyUnavailable));
/// ```
impl From<SpawnError> for std::io::Error {
    fn from(refused: SpawnError) -> std::io::Error {
        let kind = match refused {
            SpawnError::ConcurrencyUnavailable => std::io::ErrorKind::Unsupported,
            SpawnError::ShutDown => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, refused)
    }
}

/// An I/O op that could only ever complete through work the waiting thread itself would have to
/// do, reported instead of waiting forever.
///
/// The blocking backend gives it for a read whose peer is a socket of the same backend — the
/// client and the server of one connection in one run — when nothing has arrived: the only code
/// that could write to that peer runs on this thread, which the read would block. (It waits a
/// short grace first, for bytes the peer's kernel still holds back, such as a Nagle-delayed
/// segment.) The program needs tasks that run at the same time: spawn the other side with
/// `SpawnOptions::concurrent()` on a backend that has it (uring, poll), or run it on another
/// thread.
///
/// In an `io::Error` of kind [`Other`](std::io::ErrorKind::Other): the kernel's would-block
/// kind would send retry loops spinning, nothing timed out, and `ErrorKind::Deadlock` is not
/// stable. [`WouldDeadlock::of`] finds it.
///
/// ```
/// use io_core::WouldDeadlock;
/// use io_core::PeerAddr;
/// let peer = PeerAddr::Ip("127.0.0.1:80".parse().unwrap());
/// let err: std::io::Error = WouldDeadlock { op: "recv", peer }.into();
/// assert_eq!(err.kind(), std::io::ErrorKind::Other);
/// assert_eq!(WouldDeadlock::of(&err).map(|d| d.op), Some("recv"));
/// assert!(WouldDeadlock::of(&std::io::Error::other("disk on fire")).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} would wait forever: its peer {peer} is a socket of this same blocking run, and only this thread, blocked in the {op}, could make it send; run the peer on another thread, or spawn it with SpawnOptions::concurrent() on a backend that has concurrency (uring, poll)")]
pub struct WouldDeadlock {
    /// The op that would have blocked: `"recv"`.
    pub op: &'static str,
    /// The peer that would have had to act.
    pub peer: PeerAddr,
}

/// The other end of a connection, as a [`WouldDeadlock`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddr {
    /// A TCP or UDP socket's address.
    Ip(SocketAddr),
    /// A Unix socket: its path, or `None` for an unnamed one (a connecting client).
    Unix(Option<std::path::PathBuf>),
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(addr) => write!(f, "{addr}"),
            PeerAddr::Unix(Some(path)) => write!(f, "at {}", path.display()),
            PeerAddr::Unix(None) => f.write_str("(an unnamed Unix socket)"),
        }
    }
}

impl WouldDeadlock {
    /// The report inside `err`, if `err` is one.
    pub fn of(err: &std::io::Error) -> Option<&WouldDeadlock> {
        err.get_ref()?.downcast_ref()
    }
}

impl From<WouldDeadlock> for std::io::Error {
    fn from(report: WouldDeadlock) -> std::io::Error {
        std::io::Error::other(report)
    }
}

/// A task that can never make progress, as seen in a deadlock report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedTask {
    /// The task's id, unique within its backend, in spawn order (the main task is 1).
    pub id: u64,
    /// The task's name (`SpawnOptions::name`, or `task#<id>`).
    pub name: String,
    /// What the task is parked on (the park's description, e.g. `sleep` or `join task#3`).
    pub parked_on: String,
}

impl fmt::Display for BlockedTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' (#{}) parked on {}",
            self.name, self.id, self.parked_on
        )
    }
}

/// Nothing is runnable, no timer is armed, no I/O is pending, and the main task is unfinished.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Deadlock {
    /// The backend's clock when the deadlock was found.
    pub at_ms: u64,
    /// Every live task that is parked, in id order.
    pub blocked: Vec<BlockedTask>,
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadlock at t={}ms: ", self.at_ms)?;
        for (i, task) in self.blocked.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{task}")?;
        }
        Ok(())
    }
}

/// Why a backend's `run` did not return the main task's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The main task returned `Err(Canceled)`.
    #[error(transparent)]
    Canceled(#[from] Canceled),
    /// The main task can never finish; the report names every blocked task.
    #[error(transparent)]
    Deadlock(#[from] Deadlock),
    /// The main task panicked. The backend caught the panic and shut down cleanly.
    #[error("task '{task}' panicked: {message}")]
    Panicked {
        /// The panicking task's name.
        task: String,
        /// The panic message, when it was a string.
        message: String,
    },
    /// This backend already ran once; build a new one.
    #[error("this backend already ran; construct a new one for another run")]
    ShutDown,
}

/// Turns a panic payload into its message, or a placeholder when it is not a string.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}
