//! The typed errors of the protocol.

use std::fmt;

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
    #[error("this backend runs tasks inline and cannot give the required concurrency; use the fiber or uring backend")]
    ConcurrencyUnavailable,
    /// The backend's `run` has returned; nothing will ever poll a task spawned now.
    #[error("the backend has shut down (its run returned); spawn inside a running backend")]
    ShutDown,
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
