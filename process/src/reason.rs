//! Identities, exit reasons, the signals a mailbox receives, and the errors.

use std::fmt;

use io_core::Canceled;

/// A process's identity, whatever its message type: what links, monitors, [`Exit`] and
/// [`Down`] name. Numbered 1, 2, 3, … in spawn order within its [`Node`](crate::Node), never
/// reused; shown the Erlang way, `<0.7>`. It also names its node, so the processes numbered 7
/// of two nodes of one run are two identities (shown alike: the node is not part of the text,
/// which stays the same from run to run).
///
/// ```
/// # io_fiber::FiberIo::new().run(|cx| async move {
/// let node = process::Node::new(&cx);
/// let me = node.attach::<()>();
/// assert_eq!(me.id().to_string(), "<0.1>");
/// assert_eq!(me.id().number(), 1);
/// let other_node = process::Node::new(&cx);
/// let namesake = other_node.attach::<()>();
/// assert_eq!(namesake.id().number(), 1);
/// assert_ne!(namesake.id(), me.id());
/// # Ok(()) }).unwrap();
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId {
    pub(crate) node: u64,
    pub(crate) number: u64,
}

impl ProcId {
    /// The number of the process within its node.
    pub fn number(self) -> u64 {
        self.number
    }
}

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<0.{}>", self.number)
    }
}

impl fmt::Debug for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcId<0.{}>", self.number)
    }
}

/// One monitor, as [`Process::monitor`](crate::Process::monitor) made it: what its [`Down`]
/// message carries and what [`Process::demonitor`](crate::Process::demonitor) takes.
///
/// ```
/// # io_fiber::FiberIo::new().run(|cx| async move {
/// let node = process::Node::new(&cx);
/// let me = node.attach::<()>();
/// let other = node.attach::<()>(); // another process (here: the same task)
/// let first = me.monitor(other.id());
/// let second = me.monitor(other.id());
/// assert_ne!(first, second); // each monitor is its own
/// # Ok(()) }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonitorRef(pub(crate) u64);

/// Why a process ended: what its links and monitors are told.
///
/// A process body returns `Result<(), ExitReason>`: `Ok(())` is [`Normal`](ExitReason::Normal),
/// `Err(reason)` that reason, and `?` on a suspend point's [`Canceled`] gives
/// [`Canceled`](ExitReason::Canceled) (or the reason of the kill that canceled it).
///
/// ```
/// use process::ExitReason;
/// assert_eq!(ExitReason::from(io_core::Canceled), ExitReason::Canceled);
/// assert_eq!(ExitReason::error("disk full"), ExitReason::Error("disk full".into()));
/// assert!(ExitReason::Normal.is_normal());
/// assert_eq!(ExitReason::error("disk full").to_string(), "error: disk full");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExitReason {
    /// The body returned `Ok(())` (or the process was told to exit normally). Links of a
    /// process that ends normally are not killed.
    #[error("normal")]
    Normal,
    /// The body returned an error.
    #[error("error: {0}")]
    Error(String),
    /// The body panicked; the panic is contained, the node and the backend run on.
    #[error("panic: {0}")]
    Panic(String),
    /// The process's task was canceled (its handle's run ended, a race lost, a timeout) and it
    /// unwound with `Err(Canceled)`.
    #[error("canceled")]
    Canceled,
    /// Killed with [`Node::kill`](crate::Node::kill), which even a process trapping exits
    /// cannot turn into a message.
    #[error("killed")]
    Killed,
    /// The process did not exist: what a monitor or a link on a dead process reports.
    #[error("no such process")]
    NoProc,
}

impl ExitReason {
    /// An [`Error`](ExitReason::Error) reason from anything displayable.
    pub fn error(what: impl fmt::Display) -> ExitReason {
        ExitReason::Error(what.to_string())
    }

    /// Whether this is [`Normal`](ExitReason::Normal): the one reason that does not kill links.
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal)
    }
}

impl From<Canceled> for ExitReason {
    fn from(_: Canceled) -> ExitReason {
        ExitReason::Canceled
    }
}

/// The exit signal of a linked process, received as a message by a process that traps exits
/// ([`Process::trap_exit`](crate::Process::trap_exit)); a process that does not trap exits is
/// killed by it instead (unless the reason is [`Normal`](ExitReason::Normal)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The process that exited (or sent the signal with
    /// [`Process::exit_signal`](crate::Process::exit_signal)).
    pub from: ProcId,
    /// Why.
    pub reason: ExitReason,
}

/// A monitored process ended: sent exactly once per monitor, to the process that monitors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    /// The monitor this is the answer of.
    pub monitor: MonitorRef,
    /// The process that ended.
    pub pid: ProcId,
    /// Why; [`NoProc`](ExitReason::NoProc) if it was already gone when monitored.
    pub reason: ExitReason,
}

/// What a mailbox holds: the process's own messages and the signals of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<M> {
    /// A message sent to the process.
    Msg(M),
    /// A linked process exited (only for a process trapping exits).
    Exit(Exit),
    /// A monitored process ended.
    Down(Down),
}

impl<M> Message<M> {
    /// The process's own message, if this is one.
    ///
    /// ```
    /// use process::Message;
    /// assert_eq!(Message::Msg(7).into_msg(), Some(7));
    /// ```
    pub fn into_msg(self) -> Option<M> {
        match self {
            Message::Msg(msg) => Some(msg),
            _ => None,
        }
    }

    /// A reference to the process's own message, if this is one: handy in a selective
    /// receive's pattern.
    ///
    /// ```
    /// use process::Message;
    /// assert_eq!(Message::Msg("a").msg(), Some(&"a"));
    /// ```
    pub fn msg(&self) -> Option<&M> {
        match self {
            Message::Msg(msg) => Some(msg),
            _ => None,
        }
    }
}

/// Why [`Node::register`](crate::Node::register) refused a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Another live process holds the name: pick another, or `unregister` it first.
    #[error("the name {0:?} is taken by a live process; unregister it first or pick another")]
    NameTaken(String),
    /// The process has already ended (a name dies with its process).
    #[error("process {0} is not alive; register a live process")]
    NoProc(ProcId),
    /// The process already has a name; a process has at most one.
    #[error("process {0} is already registered as {1:?}; unregister that name first")]
    AlreadyNamed(ProcId, String),
}

/// Why a send to a name failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// No live process has the name (it never did, or its process ended).
    #[error("no live process is registered as {0:?}; check whereis first or register it")]
    NotRegistered(String),
    /// The name's process takes messages of another type.
    #[error("the process registered as {name:?} takes messages of another type, not {wanted}")]
    WrongType {
        /// The name.
        name: String,
        /// The message type asked for.
        wanted: &'static str,
    },
}
