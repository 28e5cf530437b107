//! Operation submission: completion-based I/O whose state the backend owns until it completes.
//!
//! An [`Op`] owns everything the kernel may touch while it runs — buffers, paths, the file or
//! socket it works on (shared through an `Rc`, so the descriptor stays open until the op ends).
//! [`Cx::submit`](crate::Cx::submit) hands it to the backend with [`Io::submit`] and waits on a
//! [`Park`]; the backend readies the park when the op completes, and the [`Completion`] gives the
//! op (with its buffers) back.
//!
//! - The blocking backend performs the op synchronously inside `submit`.
//! - The io_uring backend turns it into an SQE; the op stays in the backend until its final CQE.
//! - The fiber backend serves it from its simulated world (a disk and a network per host), at
//!   once or after a simulated latency; it never touches a real file or socket.
//!
//! Cancellation follows DESIGN.md rule 3 and the io_uring rules: a task canceled while its op is
//! in flight asks the backend to cancel the op ([`Io::cancel_op`]) and then waits — shielded —
//! for the op's final completion. If the op completed anyway, its result is returned (no lost
//! bytes, no lost connection) and `Canceled` arrives at the task's next suspend point; if it was
//! canceled, the result is an error for which [`Canceled::is_canceled`] is true, and the buffers
//! still come back. Dropping a [`Submit`] future while its op is in flight hands the op to the
//! backend for good ([`Io::discard_op`]): it is canceled, its memory stays owned by the backend
//! until its completion, and whatever it produced late (an accepted socket, an opened file) is
//! closed.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{self, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

pub use crate::handle::{Handle, Resource, WeakHandle};
use crate::task::{self, ShieldGuard};
use crate::{Canceled, Io, Park};

/// One I/O operation with everything it owns. Output slots (`file`, `accepted`, …) start as
/// `None` and are filled by the backend when the op succeeds.
#[non_exhaustive]
#[derive(Debug)]
pub enum Op {
    /// Does nothing and completes with `Ok(0)`: the per-op overhead of a backend.
    Nop,
    /// Opens `path`; on success `file` holds the open file.
    Open {
        /// The path to open, relative to the current directory.
        path: PathBuf,
        /// How to open it.
        options: crate::OpenOptions,
        /// The opened file (output).
        file: Option<Handle>,
    },
    /// Reads into `buf` from `offset`: up to `buf.capacity()` bytes land at the start of `buf`,
    /// whose length becomes the count read.
    ReadAt {
        /// The file to read.
        file: Handle,
        /// The buffer; only its capacity matters on the way in.
        buf: Vec<u8>,
        /// The byte offset in the file.
        offset: u64,
    },
    /// Writes `buf` (all of its length) at `offset`; the result is the count written.
    WriteAt {
        /// The file to write.
        file: Handle,
        /// The bytes to write.
        buf: Vec<u8>,
        /// The byte offset in the file.
        offset: u64,
    },
    /// Flushes the file's data and metadata to the device (`fsync`).
    SyncAll {
        /// The file to flush.
        file: Handle,
    },
    /// Reads the file's length (output `len`).
    Len {
        /// The file to measure.
        file: Handle,
        /// Its length in bytes (output).
        len: u64,
    },
    /// Binds a TCP listener to `addr` and starts listening with `options`' backlog; on success
    /// `listener` holds it.
    Bind {
        /// The address to bind (port 0 picks a free port).
        addr: SocketAddr,
        /// Backlog and address reuse.
        options: SocketOptions,
        /// The bound listener (output).
        listener: Option<Handle>,
    },
    /// Accepts one connection; on success `accepted` holds the stream and the peer address.
    Accept {
        /// The listening socket.
        listener: Handle,
        /// The accepted connection and its peer (output).
        accepted: Option<(Handle, SocketAddr)>,
    },
    /// Connects a new TCP socket to `addr`; on success `stream` holds it.
    Connect {
        /// The address to connect to.
        addr: SocketAddr,
        /// The connected stream (output).
        stream: Option<Handle>,
    },
    /// Receives into `buf` (up to its capacity, at its start; its length becomes the count).
    /// Works on every connected socket: TCP, Unix stream, and a connected UDP socket (one
    /// datagram, truncated to the buffer's capacity).
    Recv {
        /// The connected socket.
        stream: Handle,
        /// The buffer; only its capacity matters on the way in.
        buf: Vec<u8>,
    },
    /// Sends `buf` (all of its length); the result is the count sent. Works on every connected
    /// socket (on a connected UDP socket, `buf` is one datagram).
    Send {
        /// The connected socket.
        stream: Handle,
        /// The bytes to send.
        buf: Vec<u8>,
    },
    /// Shuts down the read half, the write half, or both (TCP and Unix streams).
    Shutdown {
        /// The connected socket.
        stream: Handle,
        /// Which halves.
        how: net::Shutdown,
    },
    /// Binds a UDP socket to `addr` (with `options`' address reuse; the backlog is unused); on
    /// success `socket` holds it.
    BindUdp {
        /// The address to bind (port 0 picks a free port).
        addr: SocketAddr,
        /// Address reuse.
        options: SocketOptions,
        /// The bound socket (output).
        socket: Option<Handle>,
    },
    /// Connects a UDP socket to `addr`: it sends there by default ([`Op::Send`]) and receives
    /// only from there ([`Op::Recv`]).
    ConnectUdp {
        /// The UDP socket.
        socket: Handle,
        /// Its peer from now on.
        addr: SocketAddr,
    },
    /// Sends `buf` as one datagram to `addr`; the result is the count sent.
    SendTo {
        /// The UDP socket.
        socket: Handle,
        /// The datagram.
        buf: Vec<u8>,
        /// Where to.
        addr: SocketAddr,
    },
    /// Receives one datagram into `buf` (up to its capacity; the rest of a longer datagram is
    /// discarded, as `recvfrom(2)` does); `from` holds the sender's address.
    RecvFrom {
        /// The UDP socket.
        socket: Handle,
        /// The buffer; only its capacity matters on the way in.
        buf: Vec<u8>,
        /// The sender (output).
        from: Option<SocketAddr>,
    },
    /// Binds a Unix socket to the path `path`: a stream listener (listening with `backlog`) or a
    /// datagram socket, as `kind` says; on success `socket` holds it.
    BindUnix {
        /// The socket's path in the file system (it must not exist yet).
        path: PathBuf,
        /// Listener or datagram socket.
        kind: UnixKind,
        /// The listen backlog (listeners only).
        backlog: u32,
        /// The bound socket (output).
        socket: Option<Handle>,
    },
    /// Connects a new Unix stream socket to the listener bound at `path`.
    ConnectUnix {
        /// The listener's path.
        path: PathBuf,
        /// The connected stream (output).
        stream: Option<Handle>,
    },
    /// Accepts one connection on a Unix stream listener.
    AcceptUnix {
        /// The listening socket.
        listener: Handle,
        /// The accepted connection (output).
        accepted: Option<Handle>,
    },
    /// Sends `buf` as one datagram to the Unix datagram socket bound at `path`.
    SendToUnix {
        /// The Unix datagram socket.
        socket: Handle,
        /// The datagram.
        buf: Vec<u8>,
        /// The receiver's path.
        path: PathBuf,
    },
    /// Receives one datagram on a Unix datagram socket; `from` holds the sender's path when the
    /// sender is bound to one.
    RecvFromUnix {
        /// The Unix datagram socket.
        socket: Handle,
        /// The buffer; only its capacity matters on the way in.
        buf: Vec<u8>,
        /// The sender's path (output; `None` for an unbound sender).
        from: Option<PathBuf>,
    },
    /// Truncates or extends the file to `len` bytes (`ftruncate`).
    SetLen {
        /// The file.
        file: Handle,
        /// Its new length.
        len: u64,
    },
    /// Reads an open file's metadata (`fstat`).
    Stat {
        /// The file.
        file: Handle,
        /// Its metadata (output).
        metadata: Option<crate::Metadata>,
    },
    /// Work that needs nothing of the loop's thread: a file-system op by path, a name lookup, a
    /// blocking closure, a read or write of the standard streams. Real backends other than
    /// blocking run it on their [`Offloader`](crate::offload::Offloader)'s thread pool (io_uring
    /// may use an opcode instead); fiber simulates it.
    Offload(crate::offload::Offload),
    /// Closes a file or socket once no other op in flight holds it. The backend takes `handle`
    /// (it is `None` in the completion).
    Close {
        /// What to close: the I/O type's last handle of its own.
        handle: Option<Handle>,
    },
}

impl Op {
    /// A short name for the op, for errors and traces: `"read_at"`, `"accept"`, …
    pub fn name(&self) -> &'static str {
        match self {
            Op::Nop => "nop",
            Op::Open { .. } => "open",
            Op::ReadAt { .. } => "read_at",
            Op::WriteAt { .. } => "write_at",
            Op::SyncAll { .. } => "sync_all",
            Op::Len { .. } => "len",
            Op::Bind { .. } => "bind",
            Op::Accept { .. } => "accept",
            Op::Connect { .. } => "connect",
            Op::Recv { .. } => "recv",
            Op::Send { .. } => "send",
            Op::Shutdown { .. } => "shutdown",
            Op::BindUdp { .. } => "bind_udp",
            Op::ConnectUdp { .. } => "connect_udp",
            Op::SendTo { .. } => "send_to",
            Op::RecvFrom { .. } => "recv_from",
            Op::BindUnix { .. } => "bind_unix",
            Op::ConnectUnix { .. } => "connect_unix",
            Op::AcceptUnix { .. } => "accept_unix",
            Op::SendToUnix { .. } => "send_to_unix",
            Op::RecvFromUnix { .. } => "recv_from_unix",
            Op::SetLen { .. } => "set_len",
            Op::Stat { .. } => "stat",
            Op::Offload(work) => work.name(),
            Op::Close { .. } => "close",
        }
    }

    /// The file or socket the op works on, if it works on an open one.
    pub fn handle(&self) -> Option<&Handle> {
        match self {
            Op::ReadAt { file, .. }
            | Op::WriteAt { file, .. }
            | Op::SyncAll { file }
            | Op::Len { file, .. }
            | Op::SetLen { file, .. }
            | Op::Stat { file, .. } => Some(file),
            Op::Accept { listener, .. } | Op::AcceptUnix { listener, .. } => Some(listener),
            Op::Recv { stream, .. } | Op::Send { stream, .. } | Op::Shutdown { stream, .. } => {
                Some(stream)
            }
            Op::ConnectUdp { socket, .. }
            | Op::SendTo { socket, .. }
            | Op::RecvFrom { socket, .. }
            | Op::SendToUnix { socket, .. }
            | Op::RecvFromUnix { socket, .. } => Some(socket),
            Op::Close { handle } => handle.as_ref(),
            Op::Nop
            | Op::Open { .. }
            | Op::Bind { .. }
            | Op::Connect { .. }
            | Op::BindUdp { .. }
            | Op::BindUnix { .. }
            | Op::ConnectUnix { .. }
            | Op::Offload(_) => None,
        }
    }

    /// Gives the op's buffer back (empty for ops without one).
    pub fn into_buf(self) -> Vec<u8> {
        match self {
            Op::ReadAt { buf, .. }
            | Op::WriteAt { buf, .. }
            | Op::Recv { buf, .. }
            | Op::Send { buf, .. }
            | Op::SendTo { buf, .. }
            | Op::RecvFrom { buf, .. }
            | Op::SendToUnix { buf, .. }
            | Op::RecvFromUnix { buf, .. } => buf,
            Op::Offload(work) => work.into_buf(),
            _ => Vec::new(),
        }
    }
}

/// How a socket is bound: the listen backlog and address reuse (`SO_REUSEADDR`,
/// `SO_REUSEPORT`).
///
/// The default backlog is 1,024, as tokio's: with the standard library's 128, a burst of
/// connections beyond it is refused or reset by the kernel before the server sees it.
///
/// ```
/// use io_core::op::SocketOptions;
/// let opts = SocketOptions::default().backlog(4096).reuse_port(true);
/// assert_eq!((opts.backlog, opts.reuse_addr, opts.reuse_port), (4096, true, true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketOptions {
    /// The listen backlog (listeners only): how many connections the kernel completes and
    /// queues before the server accepts them.
    pub backlog: u32,
    /// `SO_REUSEADDR`: bind a port whose old connections are still in `TIME_WAIT` (on by
    /// default for listeners, as std and tokio do).
    pub reuse_addr: bool,
    /// `SO_REUSEPORT`: several sockets bind the same address and the kernel spreads the
    /// connections (or datagrams) among them.
    pub reuse_port: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            backlog: 1024,
            reuse_addr: true,
            reuse_port: false,
        }
    }
}

impl SocketOptions {
    /// The options of a UDP socket: no reuse (the backlog is unused).
    pub fn udp() -> SocketOptions {
        SocketOptions {
            reuse_addr: false,
            ..SocketOptions::default()
        }
    }

    /// Sets the listen backlog.
    pub fn backlog(mut self, backlog: u32) -> SocketOptions {
        self.backlog = backlog;
        self
    }

    /// Sets `SO_REUSEADDR`.
    pub fn reuse_addr(mut self, on: bool) -> SocketOptions {
        self.reuse_addr = on;
        self
    }

    /// Sets `SO_REUSEPORT`.
    pub fn reuse_port(mut self, on: bool) -> SocketOptions {
        self.reuse_port = on;
        self
    }
}

/// Which Unix socket [`Op::BindUnix`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixKind {
    /// A stream listener.
    Listener,
    /// A datagram socket.
    Datagram,
}

/// Reads into the spare room of `buf` from its start, up to its capacity; its length becomes the
/// count read (0 on an error). For backends performing [`Op::ReadAt`] and [`Op::Recv`] with a
/// plain `read`-like call.
///
/// ```
/// let mut buf = Vec::with_capacity(8);
/// let n = io_core::op::read_into(&mut buf, |space| {
///     space[..3].copy_from_slice(b"abc");
///     Ok(3)
/// });
/// assert_eq!((n.unwrap(), buf.as_slice()), (3, &b"abc"[..]));
/// ```
pub fn read_into(
    buf: &mut Vec<u8>,
    read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    buf.resize(buf.capacity(), 0);
    let result = read(buf);
    buf.truncate(*result.as_ref().unwrap_or(&0));
    result
}

/// Submits an op that carries a buffer and gives back its result and the buffer: what every
/// owned-buffer read and write of the I/O types is.
/// (A plain future over [`Submit`] rather than an `async fn`: no state machine of its own
/// between the caller and the op.)
#[inline]
pub(crate) fn submit_buf(cx: &crate::Cx, op: Op) -> SubmitBuf {
    SubmitBuf(cx.submit(op))
}

/// The future of [`submit_buf`]: the op's result and its buffer back.
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub(crate) struct SubmitBuf(Submit);

impl Future for SubmitBuf {
    type Output = (io::Result<usize>, Vec<u8>);

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let done = std::task::ready!(Pin::new(&mut self.0).poll(cx));
        Poll::Ready((done.result, done.op.into_buf()))
    }
}

/// Names one op in flight on a backend; what [`Io::submit`] returns for an op that has not
/// completed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(u64);

impl OpId {
    /// An id, as the backend encodes it.
    pub fn new(raw: u64) -> OpId {
        OpId(raw)
    }

    /// The backend's encoding.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A finished op: its result and the op itself, with its buffers and outputs.
///
/// `result` is the count of bytes moved for reads and writes, `0` for the others; an error for
/// which [`Canceled::is_canceled`] holds means the op was canceled before it did anything.
#[derive(Debug)]
pub struct Completion {
    /// The op's outcome.
    pub result: io::Result<usize>,
    /// The op, with its buffer and output slots.
    pub op: Op,
}

/// What [`Io::submit`] did with an op.
#[derive(Debug)]
pub enum Submitted {
    /// The op already finished (blocking performs it inline; fiber's simulated disk may too).
    Done(Completion),
    /// The op is in flight: `id` names it for [`Io::cancel_op`] and [`Io::discard_op`], and its
    /// completion will come through `slot` (made by the backend only for ops that go in flight,
    /// so an op done inline costs no allocation).
    InFlight {
        /// The op's name in the backend.
        id: OpId,
        /// Where its completion will be delivered.
        slot: OpSlot,
    },
}

/// Where a backend delivers an op's completion: the completion's place and the park of the task
/// waiting for it, shared by the op's future and the backend, which makes it when the op goes in
/// flight ([`Submitted::InFlight`]) and keeps a clone until the op ends. The backend calls [`OpSlot::complete`]; the future takes the completion from
/// the slot itself, with no call back into the backend.
///
/// ```
/// use io_core::op::{Completion, Op, OpSlot};
/// let slot = OpSlot::new("nop");
/// assert!(!slot.park().is_ready());
/// slot.complete(Completion { result: Ok(0), op: Op::Nop });
/// assert!(slot.park().is_ready());
/// assert!(matches!(slot.take(), Some(Completion { result: Ok(0), .. })));
/// assert!(slot.take().is_none());
/// ```
#[derive(Clone)]
pub struct OpSlot(Rc<SlotState>);

struct SlotState {
    /// `None` only while the state waits in [`SPARE_SLOT`]: its park went back to the park pool
    /// when the slot's last handle dropped (reset there by its own code), and a reused slot
    /// takes a new one.
    park: Option<Park>,
    completion: Cell<Option<Completion>>,
}

thread_local! {
    /// The slot state whose last [`OpSlot`] dropped most recently on this thread, emptied, for
    /// [`OpSlot::new`] to reuse: an op in flight lives from its submission to its completion, and
    /// a task that does I/O in a loop drops one just before it submits the next, so in steady
    /// state no op allocates its slot. (One slot, as `SPARE_PARK` keeps one park.)
    ///
    /// Only a state no handle reaches is put here (its last `OpSlot` dropped, and there are no
    /// weak references), so a backend or a future holding a stale clone can never see a later
    /// op's completion.
    static SPARE_SLOT: Cell<Option<Rc<SlotState>>> = const { Cell::new(None) };
}

impl OpSlot {
    /// An empty slot with a new park; `what` names the op in deadlock reports.
    pub fn new(what: &'static str) -> OpSlot {
        let park = Park::new(what);
        let spare = SPARE_SLOT.try_with(Cell::take).ok().flatten();
        match spare {
            Some(mut state) => {
                // Emptied when it was put back (see `Drop`), and unreachable from anywhere else.
                match Rc::get_mut(&mut state) {
                    Some(fresh) => fresh.park = Some(park),
                    None => unreachable!("a spare op slot is never shared"),
                }
                OpSlot(state)
            }
            None => OpSlot(Rc::new(SlotState {
                park: Some(park),
                completion: Cell::new(None),
            })),
        }
    }

    /// The park the op's task waits on.
    pub fn park(&self) -> &Park {
        match &self.0.park {
            Some(park) => park,
            None => unreachable!("a live op slot has its park"),
        }
    }

    /// Delivers the op's completion and readies its park (the backend, once, at the end).
    pub fn complete(&self, done: Completion) {
        let replaced = self.0.completion.replace(Some(done));
        debug_assert!(replaced.is_none(), "an op completed twice");
        self.park().ready();
    }

    /// Takes the completion, once it has been delivered.
    pub fn take(&self) -> Option<Completion> {
        self.0.completion.take()
    }

    /// Whether two handles are the same slot (for tests of the pool).
    #[cfg(test)]
    fn same_as(&self, other: &OpSlot) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl Drop for OpSlot {
    /// The last handle of a slot empties it and puts it back for reuse.
    fn drop(&mut self) {
        let Some(state) = Rc::get_mut(&mut self.0) else {
            return; // another handle still reaches it
        };
        // A completion nobody took (the op's future went away) and the park are dropped before
        // the state is in the spare slot: dropping them can run any code (a waker's task, a
        // handle's close), including code that makes or drops op slots.
        let done = state.completion.get_mut().take();
        let park = state.park.take();
        drop(done);
        drop(park);
        let state = self.0.clone();
        // A state already in the slot is freed, outside the slot.
        let replaced = SPARE_SLOT.try_with(move |spare| spare.replace(Some(state)));
        drop(replaced);
    }
}

impl fmt::Debug for OpSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpSlot")
            .field("ready", &self.park().is_ready())
            .finish()
    }
}

/// The error of an op a backend cannot serve: one on a handle another backend issued (a real
/// descriptor on fiber, a simulated file on a kernel backend), or one it does not know. Reaches
/// the caller as an [`io::Error`] of kind
/// [`Unsupported`](io::ErrorKind::Unsupported) wrapping this value.
///
/// ```
/// use io_core::Unsupported;
/// let err = Unsupported::io_error("fiber", "open");
/// assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
/// let inner = err.get_ref().unwrap().downcast_ref::<Unsupported>().unwrap();
/// assert_eq!(inner.backend, "fiber");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {backend} backend cannot serve op `{op}` here: ops work only on the files and sockets that backend opened")]
pub struct Unsupported {
    /// The backend that refused.
    pub backend: &'static str,
    /// The op it refused.
    pub op: &'static str,
}

impl Unsupported {
    /// The [`io::Error`] carrying this refusal.
    pub fn io_error(backend: &'static str, op: &'static str) -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, Unsupported { backend, op })
    }
}

/// The future of [`Cx::submit`](crate::Cx::submit): submits the op on its first poll and
/// resolves to its [`Completion`].
///
/// - A task already canceled does not submit: the op comes back unrun, with a canceled error.
/// - Completion wins: a task canceled while the op is in flight still gets the op's result if it
///   completed; otherwise the backend cancels it and this future waits for the final completion.
/// - Dropped while in flight, it leaves the op to the backend ([`Io::discard_op`]).
#[must_use = "futures do nothing unless awaited"]
pub struct Submit {
    io: Rc<dyn Io>,
    state: SubmitState,
}

enum SubmitState {
    Unsubmitted(Op),
    /// In the backend; `canceling` once the task was canceled and the backend asked to cancel
    /// the op, whose final completion is awaited shielded.
    InFlight {
        id: OpId,
        slot: OpSlot,
        canceling: bool,
    },
    Finished,
}

impl Submit {
    pub(crate) fn new(io: Rc<dyn Io>, op: Op) -> Submit {
        Submit {
            io,
            state: SubmitState::Unsubmitted(op),
        }
    }

    /// The op, if it has not been handed to the backend yet (its first poll yielded to the
    /// operation budget): this future is then finished and the op never runs.
    pub(crate) fn take_unsubmitted(&mut self) -> Option<Op> {
        match std::mem::replace(&mut self.state, SubmitState::Finished) {
            SubmitState::Unsubmitted(op) => Some(op),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// The op back, unrun, with a canceled error (the future is finished).
    #[cold]
    fn refuse(&mut self) -> Poll<Completion> {
        let op = self
            .take_unsubmitted()
            .expect("only an unsubmitted op is refused");
        Poll::Ready(Completion {
            result: Err(Canceled.into()),
            op,
        })
    }

    /// Hands the op to the backend (the state is `Unsubmitted`); its completion if it is done
    /// at once. The op moves straight from the state into the backend.
    #[inline]
    fn start(&mut self, unit: task::BudgetUnit) -> Option<Completion> {
        let SubmitState::Unsubmitted(op) =
            std::mem::replace(&mut self.state, SubmitState::Finished)
        else {
            unreachable!("only an unsubmitted op starts")
        };
        match self.io.submit(op) {
            Submitted::Done(done) => {
                unit.spend();
                Some(done)
            }
            Submitted::InFlight { id, slot } => {
                let finished = std::mem::replace(
                    &mut self.state,
                    SubmitState::InFlight {
                        id,
                        slot,
                        canceling: false,
                    },
                );
                // Set just above: nothing to drop, and no drop glue to run for it.
                debug_assert!(matches!(finished, SubmitState::Finished));
                std::mem::forget(finished);
                None
            }
        }
    }
}

impl Future for Submit {
    type Output = Completion;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion> {
        let this = &mut *self;
        // Whether the op went in flight in this poll: its first wait always suspends.
        let mut submitted_now = false;
        loop {
            match &mut this.state {
                SubmitState::Unsubmitted(_) => {
                    // A canceled task starts nothing, and neither does a backend that has shut
                    // down (nothing would ever complete the op): it comes back as it went in.
                    if task::cancel_pending() || this.io.core().is_shut_down() {
                        return this.refuse();
                    }
                    // An op done at once (blocking, fiber, a ready socket) spends a unit of the
                    // task's budget; one put in flight gives it back, it will suspend.
                    let unit = match task::poll_budget(cx) {
                        Poll::Ready(Ok(unit)) => unit,
                        Poll::Ready(Err(Canceled)) => return this.refuse(),
                        Poll::Pending => return Poll::Pending,
                    };
                    if let Some(done) = this.start(unit) {
                        return Poll::Ready(done);
                    }
                    submitted_now = true;
                }
                SubmitState::InFlight {
                    id,
                    slot,
                    canceling: false,
                } => {
                    // The completion is what readied the task, most often: it is taken without
                    // the suspend's round trip, which would give it too (only the completion
                    // readies this park, and a completion wins over a cancel, as below).
                    if !submitted_now {
                        if let Some(done) = slot.take() {
                            this.state = SubmitState::Finished;
                            return Poll::Ready(done);
                        }
                    }
                    match this.io.suspend_raw(slot.park(), cx) {
                        Poll::Pending => return Poll::Pending,
                        // Only the completion readies this park; wait again if it was early.
                        Poll::Ready(Ok(())) => {
                            if let Some(done) = slot.take() {
                                this.state = SubmitState::Finished;
                                return Poll::Ready(done);
                            }
                        }
                        Poll::Ready(Err(Canceled)) => {
                            // Completion wins: a result already there is returned.
                            if let Some(done) = slot.take() {
                                this.state = SubmitState::Finished;
                                return Poll::Ready(done);
                            }
                            this.io.cancel_op(*id);
                            // A cancel can complete the op at once; the loop then takes it.
                            if let SubmitState::InFlight { canceling, .. } = &mut this.state {
                                *canceling = true;
                            }
                        }
                    }
                }
                SubmitState::InFlight {
                    slot,
                    canceling: true,
                    ..
                } => {
                    // The op's memory is the kernel's until its final completion: wait for it
                    // even though the task is canceled.
                    let polled = {
                        let _shielded = ShieldGuard::enter();
                        this.io.suspend_raw(slot.park(), cx)
                    };
                    if let Some(done) = slot.take() {
                        this.state = SubmitState::Finished;
                        return Poll::Ready(done);
                    }
                    // A shielded suspend is ready without a completion only on a backend that
                    // has shut down (every suspend fails there): its drain delivered every op it
                    // could, and this one will never come. Waiting is all that is left; looping
                    // would spin.
                    if polled.is_pending() || this.io.core().is_shut_down() {
                        return Poll::Pending;
                    }
                }
                SubmitState::Finished => panic!("a Submit future was polled after it completed"),
            }
        }
    }
}

impl Drop for Submit {
    fn drop(&mut self) {
        // (Looked at in place: a finished future, the common case, costs one test.)
        if let SubmitState::InFlight { id, slot, .. } = &self.state {
            // A completion already delivered is dropped first (closing what it produced and
            // releasing its handles), so the backend sees the op's handles gone. The slot itself
            // goes after the discard, with the state.
            drop(slot.take());
            self.io.discard_op(*id);
        }
    }
}

impl fmt::Debug for Submit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            SubmitState::Unsubmitted(op) => op.name(),
            SubmitState::InFlight {
                canceling: false, ..
            } => "in flight",
            SubmitState::InFlight {
                canceling: true, ..
            } => "canceling",
            SubmitState::Finished => "finished",
        };
        f.debug_struct("Submit").field("state", &state).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resource that notes when it is dropped (the op that held it was dropped).
    struct Tracked(Rc<Cell<bool>>);

    impl Resource for Tracked {}

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    fn done() -> Completion {
        Completion {
            result: Ok(3),
            op: Op::Nop,
        }
    }

    /// Empties the spare slot, so each test starts from a known pool.
    fn fresh() {
        drop(SPARE_SLOT.with(Cell::take));
    }

    fn address(slot: &OpSlot) -> *const SlotState {
        Rc::as_ptr(&slot.0)
    }

    #[test]
    fn a_completed_slot_is_reused_empty_with_a_new_park() {
        fresh();
        let slot = OpSlot::new("recv");
        let backend = slot.clone();
        backend.complete(done());
        drop(backend);
        let first = address(&slot);
        assert!(slot.park().is_ready());
        assert!(slot.take().is_some());
        drop(slot);
        let next = OpSlot::new("send");
        assert_eq!(address(&next), first, "the state is reused");
        assert!(!next.park().is_ready(), "its park starts unreadied");
        assert_eq!(next.park().what(), "send");
        assert!(next.take().is_none(), "no completion carried over");
    }

    #[test]
    fn a_slot_readied_but_never_taken_is_reused_clean() {
        fresh();
        let slot = OpSlot::new("recv");
        slot.complete(done());
        let first = address(&slot);
        drop(slot); // the future went away with the completion unread
        let next = OpSlot::new("recv");
        assert_eq!(address(&next), first);
        assert!(!next.park().is_ready());
        assert!(next.take().is_none());
    }

    #[test]
    fn a_slot_dropped_in_flight_is_reused_only_after_the_backend_lets_go() {
        fresh();
        let closed = Rc::new(Cell::new(false));
        let slot = OpSlot::new("accept");
        let backend = slot.clone();
        let first = address(&slot);
        drop(slot); // the op's future is dropped while the op is in flight
        let meanwhile = OpSlot::new("accept");
        assert_ne!(address(&meanwhile), first, "the backend still holds it");
        // The op completes late, producing a socket nobody will take.
        backend.complete(Completion {
            result: Ok(0),
            op: Op::Close {
                handle: Some(Handle::new(Tracked(closed.clone()))),
            },
        });
        assert!(!closed.get());
        drop(backend);
        assert!(
            closed.get(),
            "the untaken completion is dropped with the last handle"
        );
        let next = OpSlot::new("accept");
        assert_eq!(address(&next), first);
        assert!(next.take().is_none() && !next.park().is_ready());
        drop(meanwhile);
    }

    #[test]
    fn a_canceled_op_slot_is_reused_clean() {
        fresh();
        let slot = OpSlot::new("recv");
        let backend = slot.clone();
        backend.complete(Completion {
            result: Err(Canceled.into()),
            op: Op::Nop,
        });
        drop(backend);
        let canceled = slot.take().expect("the canceled completion");
        assert!(canceled.result.is_err_and(|e| Canceled::is_canceled(&e)));
        let first = address(&slot);
        drop(slot);
        let next = OpSlot::new("send");
        assert_eq!(address(&next), first);
        assert!(next.take().is_none() && !next.park().is_ready());
    }

    #[test]
    fn a_stale_clone_never_sees_a_later_ops_completion() {
        fresh();
        let slot = OpSlot::new("recv");
        let stale = slot.clone();
        drop(slot); // not the last handle: not put back
        let later = OpSlot::new("send");
        assert!(!later.same_as(&stale));
        later.complete(done());
        assert!(!stale.park().is_ready());
        assert!(stale.take().is_none());
        assert!(later.take().is_some());
        // Once the stale handle goes too, its state is reused, empty.
        let first = address(&stale);
        drop(stale);
        let next = OpSlot::new("recv");
        assert_eq!(address(&next), first);
        assert!(next.take().is_none() && !next.park().is_ready());
    }
}
