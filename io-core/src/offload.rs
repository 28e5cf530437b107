//! Work done off the loop's thread: [`Offload`], the part of an op that is `Send` and runs with
//! plain blocking calls, the [`Pool`] of threads that runs it on real backends, and the
//! [`Offloader`] that ties the two to a backend's op protocol.
//!
//! Which ops are offloaded, and why:
//! - file-system ops by path ([`FsOp`]): no readiness exists for a disk, and io_uring lacks an
//!   opcode for some (reading a directory);
//! - name lookups ([`Offload::Resolve`]): `getaddrinfo` blocks and has no async form;
//! - closures given to `spawn_blocking` ([`Blocking`]);
//! - the standard streams ([`Stdio`]): stdin may be a terminal, a pipe or a file, and only some
//!   of those can be polled.
//!
//! The blocking backend performs the work inline ([`Offload::perform`]); poll and io_uring hand
//! it to their [`Offloader`]; fiber simulates it (its disk, its host table, a closure run at a
//! turn the seed chooses), never on a real thread.
//!
//! # Cancellation
//! A job still queued is canceled and comes back untouched. A job already running cannot be
//! recalled: for a file-system op (or a stdout write) the cancel waits for it (completion wins,
//! as for an io_uring op the kernel has started: its effect is reported), while a blocking
//! closure and a lookup, which may run for any time and whose effect nobody needs, complete as
//! canceled at once and their result is dropped when it arrives. A stdin read waits in the
//! [`Offloader`], not on the pool, and leaves at once, taking no byte ([`Stdio`]).
//!
//! Work left running for a caller that has gone does not count against the pool's bound of
//! threads, so a closure blocked for ever never keeps a file-system op waiting.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crate::fs::{DirEntry, Metadata};
use crate::op::{OpSlot, Submitted};
use crate::{Canceled, Completion, Op, OpId};

/// A file-system op by path. Each performs one system call (see [`FsOp::perform`]); the
/// recursive helpers (`create_dir_all`, `remove_dir_all`) are written over these in
/// [`crate::fs`].
#[derive(Debug)]
#[non_exhaustive]
pub enum FsOp {
    /// `stat` (`follow`) or `lstat` of `path`.
    Metadata {
        /// The path.
        path: PathBuf,
        /// Follow a final symbolic link.
        follow: bool,
        /// The metadata (output).
        metadata: Option<Metadata>,
    },
    /// Lists a directory: `entries` holds its entries, sorted by name, without `.` and `..`.
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// Its entries (output).
        entries: Vec<DirEntry>,
    },
    /// Creates one directory (its parent must exist).
    CreateDir {
        /// The new directory.
        path: PathBuf,
    },
    /// Removes a file (or a symbolic link).
    RemoveFile {
        /// The file.
        path: PathBuf,
    },
    /// Removes an empty directory.
    RemoveDir {
        /// The directory.
        path: PathBuf,
    },
    /// Renames `from` to `to`, replacing `to` if it is a file.
    Rename {
        /// The old path.
        from: PathBuf,
        /// The new path.
        to: PathBuf,
    },
    /// Makes `link` a hard link to the file `original`.
    HardLink {
        /// The existing file.
        original: PathBuf,
        /// The new name.
        link: PathBuf,
    },
    /// Makes `link` a symbolic link whose target is `original`.
    Symlink {
        /// The link's target (not checked).
        original: PathBuf,
        /// The new link.
        link: PathBuf,
    },
    /// Removes the directory `path` and everything in it, never following a symbolic link
    /// (one inside is removed as a link; one swapped in during the removal is not followed out
    /// of the tree: std's `remove_dir_all`, which works through directory descriptors).
    RemoveDirAll {
        /// The directory.
        path: PathBuf,
    },
    /// Reads the target of the symbolic link `path`.
    ReadLink {
        /// The link.
        path: PathBuf,
        /// Its target (output).
        target: Option<PathBuf>,
    },
}

impl FsOp {
    /// The op's name: `"metadata"`, `"read_dir"`, …
    pub fn name(&self) -> &'static str {
        match self {
            FsOp::Metadata { .. } => "metadata",
            FsOp::ReadDir { .. } => "read_dir",
            FsOp::CreateDir { .. } => "create_dir",
            FsOp::RemoveFile { .. } => "remove_file",
            FsOp::RemoveDir { .. } => "remove_dir",
            FsOp::Rename { .. } => "rename",
            FsOp::HardLink { .. } => "hard_link",
            FsOp::Symlink { .. } => "symlink",
            FsOp::RemoveDirAll { .. } => "remove_dir_all",
            FsOp::ReadLink { .. } => "read_link",
        }
    }

    /// Performs the op with the standard library's blocking calls, filling its outputs.
    pub fn perform(&mut self) -> io::Result<usize> {
        match self {
            FsOp::Metadata {
                path,
                follow,
                metadata,
            } => {
                let std = if *follow {
                    std::fs::metadata(path)?
                } else {
                    std::fs::symlink_metadata(path)?
                };
                *metadata = Some(Metadata::from_std(&std));
            }
            FsOp::ReadDir { path, entries } => {
                let mut listed = Vec::new();
                for entry in std::fs::read_dir(path)? {
                    let entry = entry?;
                    listed.push(DirEntry::new(
                        entry.path(),
                        crate::fs::FileType::from_std(entry.file_type()?),
                    ));
                }
                listed.sort_by(|a, b| a.path().cmp(b.path()));
                *entries = listed;
            }
            FsOp::CreateDir { path } => std::fs::create_dir(path)?,
            FsOp::RemoveFile { path } => std::fs::remove_file(path)?,
            FsOp::RemoveDir { path } => std::fs::remove_dir(path)?,
            FsOp::RemoveDirAll { path } => {
                if !std::fs::symlink_metadata(&*path)?.is_dir() {
                    return Err(not_a_directory(path));
                }
                std::fs::remove_dir_all(path)?
            }
            FsOp::Rename { from, to } => std::fs::rename(from, to)?,
            FsOp::HardLink { original, link } => std::fs::hard_link(original, link)?,
            FsOp::Symlink { original, link } => std::os::unix::fs::symlink(original, link)?,
            FsOp::ReadLink { path, target } => *target = Some(std::fs::read_link(path)?),
        }
        Ok(0)
    }
}

/// A closure's output, or its panic.
pub type BlockingOutput = thread::Result<Box<dyn Any + Send>>;

/// A closure given to `spawn_blocking`, and then its output.
pub struct Blocking {
    job: Option<Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>>,
    output: Option<BlockingOutput>,
}

impl Blocking {
    /// Wraps `f`; its output is boxed for the trip back.
    pub fn new<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Blocking {
        Blocking {
            job: Some(Box::new(move || Box::new(f()) as Box<dyn Any + Send>)),
            output: None,
        }
    }

    /// Runs the closure (once; later calls do nothing), catching its panic into the output.
    pub fn run(&mut self) {
        if let Some(job) = self.job.take() {
            self.output = Some(panic::catch_unwind(AssertUnwindSafe(job)));
        }
    }

    /// Whether the closure has not run yet.
    pub fn is_pending(&self) -> bool {
        self.job.is_some()
    }

    /// Takes the output (or the panic), once the closure has run.
    pub fn take_output(&mut self) -> Option<BlockingOutput> {
        self.output.take()
    }
}

impl fmt::Debug for Blocking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blocking")
            .field("ran", &self.job.is_none())
            .finish()
    }
}

/// One of the process's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdStream {
    /// Standard input.
    In,
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

/// A read of stdin into `buf` (up to its capacity) or a write of `buf` to stdout or stderr
/// (flushed).
///
/// Stdin is read into one queue per process, by one reader at a time, and bytes leave the
/// queue only for a caller that is still there: a read canceled while it waits (or whose future
/// was dropped) takes nothing, so no byte is lost or reordered ([`Offloader`] keeps at most one
/// pool thread per loop in `read(2)` on stdin, whatever number of reads wait).
pub struct Stdio {
    /// Which stream.
    pub stream: StdStream,
    buf: Vec<u8>,
}

/// Stdin as the process's offloaded reads share it.
struct StdinQueue {
    /// Read and not handed to a reader yet, in order.
    bytes: VecDeque<u8>,
    /// The end of input (`Ok`) or a read error, for the next reader once `bytes` is empty.
    end: Option<io::Result<()>>,
    /// A thread is in `read(2)` on stdin.
    reading: bool,
}

static STDIN: Mutex<StdinQueue> = Mutex::new(StdinQueue {
    bytes: VecDeque::new(),
    end: None,
    reading: false,
});
static STDIN_FILLED: Condvar = Condvar::new();

/// Reads stdin once into the queue, unless it already holds something; if another thread is
/// reading, waits for that read instead.
fn stdin_fill(want: usize) {
    let mut queue = lock(&STDIN);
    loop {
        if !queue.bytes.is_empty() || queue.end.is_some() {
            return;
        }
        if !queue.reading {
            break;
        }
        queue = STDIN_FILLED
            .wait(queue)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    queue.reading = true;
    drop(queue);
    let mut buf = vec![0; want.clamp(1, 64 * 1024)];
    let read = loop {
        match io::stdin().lock().read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    let mut queue = lock(&STDIN);
    queue.reading = false;
    match read {
        Ok(0) => queue.end = Some(Ok(())),
        Ok(n) => queue.bytes.extend(&buf[..n]),
        Err(e) => queue.end = Some(Err(e)),
    }
    drop(queue);
    STDIN_FILLED.notify_all();
}

/// Hands queued stdin to a reader, into `buf` up to its capacity: `None` if nothing is queued.
/// The end of input (or an error) goes to one reader, once.
fn stdin_take(buf: &mut Vec<u8>) -> Option<io::Result<usize>> {
    let mut queue = lock(&STDIN);
    if !queue.bytes.is_empty() {
        let n = queue.bytes.len().min(buf.capacity().max(1));
        buf.clear();
        buf.extend(queue.bytes.drain(..n));
        return Some(Ok(n));
    }
    buf.clear();
    queue.end.take().map(|end| end.map(|()| 0))
}

impl Stdio {
    /// A read of `stream` (stdin) into `buf`, or a write of `buf` to it (stdout, stderr).
    pub fn new(stream: StdStream, buf: Vec<u8>) -> Stdio {
        Stdio { stream, buf }
    }

    /// The buffer: for a read, what it holds so far.
    pub fn buf(&self) -> &[u8] {
        &self.buf
    }

    /// The buffer, to fill or drain (a simulated stream's way in).
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Takes the buffer out.
    pub fn take_buf(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    fn is_stdin(&self) -> bool {
        self.stream == StdStream::In
    }

    /// Reads or writes with the standard library's blocking calls (a read waits for input).
    pub fn perform(&mut self) -> io::Result<usize> {
        match self.stream {
            StdStream::In => loop {
                if let Some(result) = stdin_take(&mut self.buf) {
                    return result;
                }
                stdin_fill(self.buf.capacity());
            },
            StdStream::Out => write_flushed(&mut io::stdout().lock(), &self.buf),
            StdStream::Err => write_flushed(&mut io::stderr().lock(), &self.buf),
        }
    }
}

fn write_flushed(out: &mut impl Write, buf: &[u8]) -> io::Result<usize> {
    let n = out.write(buf)?;
    out.flush()?;
    Ok(n)
}

impl fmt::Debug for Stdio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stdio")
            .field("stream", &self.stream)
            .field("len", &self.buf.len())
            .finish()
    }
}

/// Work that needs nothing of the loop's thread (see the module docs): `Send`, performed with
/// blocking calls by [`Offload::perform`] on any thread.
#[derive(Debug)]
#[non_exhaustive]
pub enum Offload {
    /// A file-system op by path.
    Fs(FsOp),
    /// Looks `host` up (a name or an address literal) and pairs each address with `port`.
    Resolve {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
        /// The addresses found, in the resolver's order (output).
        addrs: Vec<SocketAddr>,
    },
    /// A closure given to `spawn_blocking`.
    Blocking(Blocking),
    /// A read or write of a standard stream.
    Stdio(Stdio),
    /// Reads stdin once into the process's queue (an [`Offloader`]'s own job, never submitted
    /// by a caller): the bytes go to the stdin reads waiting on the loop.
    #[doc(hidden)]
    StdinFill(usize),
}

impl Offload {
    /// The op's name, for errors and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Offload::Fs(op) => op.name(),
            Offload::Resolve { .. } => "resolve",
            Offload::Blocking(_) => "spawn_blocking",
            Offload::Stdio(Stdio {
                stream: StdStream::In,
                ..
            }) => "stdin_read",
            Offload::Stdio(_) => "stdout_write",
            Offload::StdinFill(_) => "stdin_fill",
        }
    }

    /// Performs the work with blocking calls, filling its outputs: what the blocking backend
    /// does inline and the [`Pool`]'s threads do elsewhere.
    pub fn perform(&mut self) -> io::Result<usize> {
        match self {
            Offload::Fs(op) => op.perform(),
            Offload::Resolve { host, port, addrs } => {
                *addrs = (host.as_str(), *port).to_socket_addrs()?.collect();
                if addrs.is_empty() {
                    return Err(no_address(host));
                }
                Ok(0)
            }
            Offload::Blocking(job) => {
                job.run();
                Ok(0)
            }
            Offload::Stdio(stdio) => stdio.perform(),
            Offload::StdinFill(want) => {
                stdin_fill(*want);
                Ok(0)
            }
        }
    }

    /// Whether a cancel lets the caller go at once while the work runs on (its result dropped
    /// when it arrives): a closure may run for any time, and a lookup (which changes nothing)
    /// may wait for a slow resolver for tens of seconds. Other work is waited for: its effect
    /// is reported (completion wins).
    pub fn detaches_on_cancel(&self) -> bool {
        matches!(self, Offload::Blocking(_) | Offload::Resolve { .. })
    }

    /// What stays of the work for its canceled caller once it detached: an empty shell of the
    /// same kind.
    fn detached_shell(&self) -> Offload {
        match self {
            Offload::Resolve { host, port, .. } => Offload::Resolve {
                host: host.clone(),
                port: *port,
                addrs: Vec::new(),
            },
            _ => Offload::Blocking(Blocking {
                job: None,
                output: None,
            }),
        }
    }

    /// Gives the buffer back (a standard stream's; empty for the others).
    pub fn into_buf(self) -> Vec<u8> {
        match self {
            Offload::Stdio(mut stdio) => stdio.take_buf(),
            _ => Vec::new(),
        }
    }
}

/// The error of a directory op on something that is not a directory.
pub fn not_a_directory(path: &std::path::Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!("`{}` is not a directory", path.display()),
    )
}

/// The error of a lookup that found no address for `host`.
pub fn no_address(host: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no address found for host `{host}`"),
    )
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Jobs run outside the lock and catch their panics: a poisoned lock holds consistent data.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A finished job: its key, the work (with its outputs) and its result.
pub type Finished = (u64, Offload, io::Result<usize>);

/// A bounded pool of threads running [`Offload`] work: threads start on demand up to a limit,
/// and one idle for [`Pool::IDLE`] exits. Finished jobs wait in the pool until the owner takes
/// them ([`Pool::take_finished`]); after each one the pool calls the owner's `notify`, which
/// wakes the owner's loop.
///
/// Dropping the pool lets its threads go: queued jobs are dropped, running ones finish and their
/// results are dropped (a thread blocked in a stdin read is never joined).
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
/// use io_core::offload::{FsOp, Offload, Pool};
///
/// let notified = Arc::new(AtomicUsize::new(0));
/// let seen = notified.clone();
/// let pool = Pool::new(2, move || { seen.fetch_add(1, Ordering::SeqCst); });
/// pool.submit(7, Offload::Fs(FsOp::Metadata { path: ".".into(), follow: true, metadata: None }));
/// let mut done = Vec::new();
/// // The owner is notified just after a job's result is published: wait for both (bounded).
/// let start = std::time::Instant::now();
/// while (done.is_empty() || notified.load(Ordering::SeqCst) == 0)
///     && start.elapsed() < std::time::Duration::from_secs(30)
/// {
///     pool.take_finished(&mut done);
///     std::thread::yield_now();
/// }
/// assert!(notified.load(Ordering::SeqCst) >= 1, "the owner was notified");
/// let (key, work, result) = done.pop().expect("the job finished");
/// assert_eq!((key, result.unwrap()), (7, 0));
/// assert!(matches!(work, Offload::Fs(FsOp::Metadata { metadata: Some(m), .. }) if m.is_dir()));
/// ```
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<PoolState>,
    work: Condvar,
    notify: Box<dyn Fn() + Send + Sync>,
    max_threads: usize,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<(u64, Offload)>,
    running: Vec<u64>,
    finished: Vec<Finished>,
    threads: usize,
    idle: usize,
    /// Threads held by work whose caller left ([`Pool::set_aside`]): not counted against the
    /// bound.
    set_aside: usize,
    closed: bool,
}

impl Pool {
    /// How long a thread waits for work before it exits.
    pub const IDLE: Duration = Duration::from_secs(10);

    /// A pool of at most `max_threads` threads (at least one); `notify` runs on a pool thread
    /// after each job finishes.
    pub fn new(max_threads: usize, notify: impl Fn() + Send + Sync + 'static) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(PoolState::default()),
                work: Condvar::new(),
                notify: Box::new(notify),
                max_threads: max_threads.max(1),
            }),
        }
    }

    /// Queues `work` under `key`, starting a thread if none is idle and the limit allows.
    pub fn submit(&self, key: u64, work: Offload) {
        let mut state = lock(&self.shared.state);
        state.queue.push_back((key, work));
        self.start_thread_if_needed(state);
    }

    /// Frees a place under the bound for as long as the running job it names holds its thread
    /// for nobody (its caller left, and it may run for any time): a thread blocked for ever in
    /// a closure never keeps other work waiting. [`Pool::put_back`] ends it.
    pub fn set_aside(&self) {
        let mut state = lock(&self.shared.state);
        state.set_aside += 1;
        self.start_thread_if_needed(state);
    }

    /// The job set aside has finished: its place counts against the bound again.
    pub fn put_back(&self) {
        let mut state = lock(&self.shared.state);
        state.set_aside = state.set_aside.saturating_sub(1);
    }

    /// Wakes an idle thread for the queued work, or starts one if none is idle and the bound
    /// allows.
    fn start_thread_if_needed(&self, mut state: MutexGuard<'_, PoolState>) {
        let bound = self.shared.max_threads + state.set_aside;
        if state.queue.is_empty() {
            return;
        }
        if state.idle >= state.queue.len() || state.threads >= bound {
            self.shared.work.notify_one();
            return;
        }
        state.threads += 1;
        drop(state);
        let shared = self.shared.clone();
        let started = thread::Builder::new()
            .name("ioswap-pool".into())
            .spawn(move || work_loop(&shared));
        if started.is_err() {
            // No thread: the job waits for a running one (there is at least one unless the
            // first ever failed, which then fails every job rather than hanging it).
            let mut state = lock(&self.shared.state);
            state.threads -= 1;
            if state.threads == 0 {
                let failed: Vec<_> = state.queue.drain(..).collect();
                for (key, work) in failed {
                    let err = io::Error::other("ioswap: the pool could not start a thread");
                    state.finished.push((key, work, Err(err)));
                }
                drop(state);
                (self.shared.notify)();
            }
        }
    }

    /// Takes a job back if no thread has started it.
    pub fn unqueue(&self, key: u64) -> Option<Offload> {
        let mut state = lock(&self.shared.state);
        let at = state.queue.iter().position(|(k, _)| *k == key)?;
        state.queue.remove(at).map(|(_, work)| work)
    }

    /// Moves the finished jobs into `into`.
    pub fn take_finished(&self, into: &mut Vec<Finished>) {
        into.append(&mut lock(&self.shared.state).finished);
    }
}

fn work_loop(shared: &Shared) {
    let mut state = lock(&shared.state);
    loop {
        if state.closed {
            break;
        }
        if let Some((key, mut work)) = state.queue.pop_front() {
            state.running.push(key);
            drop(state);
            // `Blocking` catches its closure's panic itself; nothing else should panic, but a
            // panic must not kill the thread with its job unanswered.
            let result = panic::catch_unwind(AssertUnwindSafe(|| work.perform()))
                .unwrap_or_else(|_| Err(io::Error::other("an offloaded op panicked")));
            state = lock(&shared.state);
            state.running.retain(|k| *k != key);
            if state.closed {
                drop(state);
                drop(work);
                return;
            }
            state.finished.push((key, work, result));
            drop(state);
            let _ = panic::catch_unwind(AssertUnwindSafe(|| (shared.notify)()));
            state = lock(&shared.state);
            continue;
        }
        state.idle += 1;
        let (next, timeout) = shared
            .work
            .wait_timeout(state, Pool::IDLE)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state = next;
        state.idle -= 1;
        if timeout.timed_out() && state.queue.is_empty() {
            break;
        }
    }
    state.threads -= 1;
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.closed = true;
        let queued: Vec<_> = state.queue.drain(..).collect();
        let finished = std::mem::take(&mut state.finished);
        drop(state);
        self.shared.work.notify_all();
        drop((queued, finished));
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.shared.state);
        f.debug_struct("Pool")
            .field("queued", &state.queue.len())
            .field("running", &state.running.len())
            .field("threads", &state.threads)
            .finish()
    }
}

/// A backend's side of the [`Pool`]: it takes [`Op::Offload`] ops, gives each an [`OpId`] with
/// [`Offloader::TAG`] set (so the backend tells them from its own), delivers their completions
/// when the backend calls [`Offloader::reap`], and cancels them under the rules of the module
/// docs. Everything but the pool stays on the loop's thread.
///
/// Stdin reads never go to the pool themselves: they wait here, in order, while one job of the
/// offloader's own at a time reads stdin into the process's queue; `reap` hands the queued
/// bytes to the reads still waiting, the oldest first. A canceled stdin read leaves at once and
/// takes nothing.
///
/// The backend must call `submit`, `cancel` and `discard` where completing an op's slot is
/// allowed (they may complete one: a canceled job that had not started), and `reap` after each
/// `notify` and before it waits again.
pub struct Offloader {
    pool: Pool,
    waiting: Vec<Waiting>,
    free: Vec<u32>,
    /// Entries in flight (stdin reads waiting here included).
    total: usize,
    /// Of those, entries whose caller left (`Waiting::gone`).
    left: usize,
    /// Of those, work that detaches on cancel (a blocking closure, a lookup).
    detached: usize,
    finished: Vec<Finished>,
    /// Stdin reads waiting for bytes, oldest first.
    stdin_readers: VecDeque<u64>,
    /// A `StdinFill` job is on the pool.
    stdin_filling: bool,
}

#[derive(Default)]
struct Waiting {
    generation: u32,
    slot: Option<OpSlot>,
    /// The caller left (canceled a detaching job, or dropped its future): the result, when it
    /// comes, is dropped.
    gone: bool,
    /// For work that detaches on cancel: what its canceled caller gets back.
    shell: Option<Offload>,
    /// A stdin read waiting here (not on the pool).
    stdin: Option<Stdio>,
    /// The work detaches on cancel: once its caller has gone, nobody waits for it.
    detaches: bool,
}

impl Offloader {
    /// The bit set in every [`OpId`] this offloader issues.
    pub const TAG: u64 = 1 << 63;

    /// The key of the offloader's own stdin job (no entry has it: index `u32::MAX`).
    const STDIN_FILL: u64 = Self::TAG | 0xffff_ffff;

    /// The default bound on the pool's threads.
    pub const MAX_THREADS: usize = 64;

    /// An offloader whose pool calls `notify` (from a pool thread) when a job finishes: it must
    /// wake the backend's loop, which then calls [`Offloader::reap`].
    pub fn new(notify: impl Fn() + Send + Sync + 'static) -> Offloader {
        Offloader {
            pool: Pool::new(Self::MAX_THREADS, notify),
            waiting: Vec::new(),
            free: Vec::new(),
            total: 0,
            left: 0,
            detached: 0,
            finished: Vec::new(),
            stdin_readers: VecDeque::new(),
            stdin_filling: false,
        }
    }

    /// Whether `id` is one of this offloader's.
    pub fn owns(id: OpId) -> bool {
        id.get() & Self::TAG != 0
    }

    /// Every job in flight, including ones whose caller left.
    pub fn in_flight(&self) -> usize {
        self.total
    }

    /// Jobs whose caller still waits for them: [`in_flight`](Offloader::in_flight) without the
    /// ones whose caller left (canceled a detaching job, or dropped its future), whose results
    /// wake nobody. A backend deciding whether a deadlock is possible counts these: a job whose
    /// caller left (a detached closure that may run forever) can never make a task runnable.
    pub fn awaited(&self) -> usize {
        self.total - self.left
    }

    /// Jobs in flight the backend waits for: all but work that detached (a blocking closure or
    /// a lookup whose caller has gone), which may run for any time and whose end wakes nobody.
    /// Unlike [`awaited`](Offloader::awaited), a file-system op whose caller left is counted:
    /// it ends in bounded time, and a backend that waits for its kernel ops to end at tear-down
    /// waits for these too (after [`cancel_all`](Offloader::cancel_all)), so no effect lands
    /// after it returned. (The offloader's own stdin job is never counted: nobody waits for
    /// it once its readers are gone.)
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use io_core::offload::{Blocking, Offload, Offloader};
    /// use io_core::Submitted;
    ///
    /// let (release, released) = mpsc::channel::<()>();
    /// let (running, started) = mpsc::channel::<()>();
    /// let mut offloader = Offloader::new(|| {});
    /// let job = Blocking::new(move || {
    ///     running.send(()).unwrap();
    ///     let _ = released.recv();
    /// });
    /// let Submitted::InFlight { id, slot } = offloader.submit(Offload::Blocking(job)) else {
    ///     unreachable!("offloaded work is always in flight")
    /// };
    /// started.recv().unwrap();
    /// assert_eq!((offloader.in_flight(), offloader.outstanding()), (1, 1));
    /// offloader.cancel(id); // a running closure detaches: its caller goes at once
    /// assert!(slot.take().unwrap().result.is_err());
    /// assert_eq!((offloader.in_flight(), offloader.outstanding()), (1, 0));
    /// release.send(()).unwrap();
    /// ```
    pub fn outstanding(&self) -> usize {
        self.total - self.detached
    }

    /// Cancels every job whose caller still waits, as [`cancel`](Offloader::cancel) does each:
    /// for a backend shutting down. Afterwards the only jobs still awaited are running ones that
    /// do not detach on cancel (file-system ops, writes of stdout); their completions come
    /// through [`reap`](Offloader::reap).
    pub fn cancel_all(&mut self) {
        let keys: Vec<u64> = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.slot.is_some() && !entry.gone)
            .map(|(index, entry)| Self::TAG | (u64::from(entry.generation) << 32) | index as u64)
            .collect();
        for key in keys {
            self.cancel(OpId::new(key));
        }
    }

    /// Takes `work`; its completion comes through the returned slot.
    pub fn submit(&mut self, work: Offload) -> Submitted {
        let slot = OpSlot::new(work.name());
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.waiting.push(Waiting::default());
                u32::try_from(self.waiting.len() - 1)
                    .ok()
                    .filter(|index| *index < u32::MAX)
                    .expect("fewer than 2^32 - 1 offloaded ops at once")
            }
        };
        let entry = &mut self.waiting[index as usize];
        entry.slot = Some(slot.clone());
        entry.gone = false;
        entry.detaches = work.detaches_on_cancel();
        entry.shell = entry.detaches.then(|| work.detached_shell());
        let key = Self::TAG | (u64::from(entry.generation) << 32) | u64::from(index);
        self.total += 1;
        match work {
            Offload::Stdio(stdio) if stdio.is_stdin() => {
                let want = stdio.buf.capacity();
                entry.stdin = Some(stdio);
                self.stdin_readers.push_back(key);
                self.fill_stdin(want);
            }
            work => self.pool.submit(key, work),
        }
        Submitted::InFlight {
            id: OpId::new(key),
            slot,
        }
    }

    /// Starts the stdin job unless one runs (it returns at once if bytes are queued already).
    fn fill_stdin(&mut self, want: usize) {
        if !self.stdin_filling {
            self.stdin_filling = true;
            self.pool.submit(Self::STDIN_FILL, Offload::StdinFill(want));
        }
    }

    fn entry(&mut self, key: u64) -> Option<&mut Waiting> {
        if key == Self::STDIN_FILL {
            return None;
        }
        let entry = self.waiting.get_mut((key & 0xffff_ffff) as usize)?;
        (u64::from(entry.generation) == (key >> 32) & 0x7fff_ffff && entry.slot.is_some())
            .then_some(entry)
    }

    /// Frees an entry: its slot, and whether its caller had gone.
    fn release(&mut self, key: u64) -> Option<(OpSlot, bool)> {
        let index = (key & 0xffff_ffff) as u32;
        let entry = self.entry(key)?;
        let slot = entry.slot.take()?;
        let gone = entry.gone;
        let detached = gone && entry.detaches;
        entry.shell = None;
        entry.stdin = None;
        entry.generation = (entry.generation + 1) & 0x7fff_ffff;
        self.free.push(index);
        self.total -= 1;
        self.left -= usize::from(gone);
        self.detached -= usize::from(detached);
        if detached {
            self.pool.put_back();
        }
        Some((slot, gone))
    }

    /// Marks an entry's caller gone (it no longer counts as awaited; work that detaches no
    /// longer counts as outstanding either).
    fn leave(&mut self, key: u64) {
        let newly_gone = self
            .entry(key)
            .map(|entry| (!std::mem::replace(&mut entry.gone, true), entry.detaches));
        if let Some((true, detaches)) = newly_gone {
            self.left += 1;
            self.detached += usize::from(detaches);
            if detaches {
                // Running for nobody, maybe for ever: its thread no longer counts.
                self.pool.set_aside();
            }
        }
    }

    /// Cancels a job: one still queued completes as canceled at once, with its work back, and
    /// so does a stdin read (it waits here, not on the pool); a job that finished and waits to
    /// be reaped is delivered by the next `reap` (completion wins); a running one that detaches
    /// on cancel completes as canceled at once and runs on; any other is waited for (its
    /// completion, when it comes, says what it did).
    pub fn cancel(&mut self, id: OpId) {
        let key = id.get();
        if self.entry(key).is_none_or(|entry| entry.gone) {
            return;
        }
        if let Some(at) = self.stdin_readers.iter().position(|k| *k == key) {
            self.stdin_readers.remove(at);
            let stdin = self.entry(key).and_then(|entry| entry.stdin.take());
            if let (Some((slot, _)), Some(stdin)) = (self.release(key), stdin) {
                slot.complete(canceled(Op::Offload(Offload::Stdio(stdin))));
            }
            return;
        }
        if let Some(work) = self.pool.unqueue(key) {
            if let Some((slot, _)) = self.release(key) {
                slot.complete(canceled(Op::Offload(work)));
            }
            return;
        }
        self.pool.take_finished(&mut self.finished);
        if self.finished.iter().any(|(k, _, _)| *k == key) {
            // Done already: `reap` delivers the real completion (the pool's notify has woken
            // the loop for it).
            return;
        }
        // Running: only work that detaches lets its caller go now.
        let Some(entry) = self.entry(key) else { return };
        if let Some(shell) = entry.shell.take() {
            let slot = entry.slot.clone().expect("checked: in flight");
            self.leave(key);
            slot.complete(canceled(Op::Offload(shell)));
        }
    }

    /// The caller's future was dropped: the job runs on (or is unqueued) and its result is
    /// dropped; a stdin read stops waiting.
    pub fn discard(&mut self, id: OpId) {
        let key = id.get();
        if self.entry(key).is_none() {
            return;
        }
        if let Some(at) = self.stdin_readers.iter().position(|k| *k == key) {
            self.stdin_readers.remove(at);
            self.release(key);
            return;
        }
        if let Some(work) = self.pool.unqueue(key) {
            self.release(key);
            drop(work);
            return;
        }
        self.leave(key);
    }

    /// Delivers the completions of the jobs that finished since the last call, and hands
    /// queued stdin to the stdin reads waiting; returns how many completions it delivered.
    /// Call it on the loop's thread after `notify` woke the loop (and before it waits again).
    pub fn reap(&mut self) -> usize {
        self.pool.take_finished(&mut self.finished);
        let mut delivered = 0;
        let finished = std::mem::take(&mut self.finished);
        for (key, work, result) in finished {
            if key == Self::STDIN_FILL {
                self.stdin_filling = false;
                continue;
            }
            let Some((slot, gone)) = self.release(key) else {
                continue;
            };
            if gone {
                // The caller has gone: the work is dropped here, and nobody is woken.
                drop(work);
                continue;
            }
            slot.complete(Completion {
                result,
                op: Op::Offload(work),
            });
            delivered += 1;
        }
        delivered + self.serve_stdin()
    }

    /// Hands queued stdin to the waiting reads, oldest first; starts another fill if some
    /// still wait.
    fn serve_stdin(&mut self) -> usize {
        let mut delivered = 0;
        while let Some(&key) = self.stdin_readers.front() {
            let Some(entry) = self.entry(key) else {
                self.stdin_readers.pop_front();
                continue;
            };
            let Some(mut stdin) = entry.stdin.take() else {
                self.stdin_readers.pop_front();
                continue;
            };
            match stdin_take(&mut stdin.buf) {
                Some(result) => {
                    self.stdin_readers.pop_front();
                    if let Some((slot, _)) = self.release(key) {
                        slot.complete(Completion {
                            result,
                            op: Op::Offload(Offload::Stdio(stdin)),
                        });
                        delivered += 1;
                    }
                }
                None => {
                    let want = stdin.buf.capacity();
                    if let Some(entry) = self.entry(key) {
                        entry.stdin = Some(stdin);
                    }
                    self.fill_stdin(want);
                    break;
                }
            }
        }
        delivered
    }
}

fn canceled(op: Op) -> Completion {
    Completion {
        result: Err(Canceled.into()),
        op,
    }
}

impl fmt::Debug for Offloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offloader")
            .field("in_flight", &self.total)
            .field("left", &self.left)
            .field("pool", &self.pool)
            .finish()
    }
}
