//! hyper 1.x over ioswap (feature `hyper`): what hyper's `rt` module asks of a runtime, in safe
//! Rust, for code that serves (or calls) HTTP on a [`Cx`].
//!
//! - [`Io`] wraps any ioswap stream ([`TcpStream`](crate::TcpStream),
//!   [`UnixStream`](crate::net::UnixStream), …: anything `futures-io` `AsyncRead + AsyncWrite`)
//!   as hyper's `rt::Read` and `rt::Write`.
//! - [`Timer`] is hyper's `rt::Timer` on the backend's own clock: its sleeps are ioswap timers,
//!   so on the fiber backend they run on the virtual clock and a hyper server runs in the
//!   simulated world like any other ioswap code.
//! - [`Executor`] is hyper's `rt::Executor`: it spawns what hyper hands it as a task of the
//!   loop. hyper's HTTP/1 server and client need none; HTTP/2 does.
//!
//! ```no_run
//! use hyper::server::conn::http1;
//! use hyper::service::service_fn;
//! use ioswap::hyper::{Io, Timer};
//! # use std::convert::Infallible;
//! # async fn hello(_: hyper::Request<hyper::body::Incoming>)
//! #     -> Result<hyper::Response<String>, Infallible> { Ok(hyper::Response::new("hi".into())) }
//!
//! ioswap::run(|cx| async move {
//!     let listener = ioswap::TcpListener::bind(&cx, "127.0.0.1:8080").await.unwrap();
//!     let served = listener.serve(|cx, stream| async move {
//!         let _ = http1::Builder::new()
//!             .timer(Timer::new(&cx))
//!             .serve_connection(Io::new(stream.compat()), service_fn(hello))
//!             .await;
//!     });
//!     Ok(served.await)
//! });
//! ```
//!
//! # Send, and the loop's thread
//!
//! hyper asks for a `Send + Sync` timer whose sleeps are `Send + Sync` futures, and for a
//! `Send + Sync` executor, while a [`Cx`] is bound to its loop's thread. So [`Timer`] and
//! [`Executor`] hold no `Cx`: [`Timer::new`] and [`Executor::new`] register the backend (weakly)
//! with the loop's thread and keep its key, and they reach it again on that thread when hyper
//! calls them. A [`Sleep`] holds only shared state (its deadline, whether it fired, two wakers,
//! behind a mutex); its first poll spawns a small task on the loop that sleeps on an ioswap
//! timer and wakes it. Calling a `Timer` or `Executor` on another thread panics: hyper calls
//! them from the connection's future, which a single-threaded loop polls on its own thread.

use std::cell::RefCell;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use ::hyper::rt;
use futures_io::{AsyncRead, AsyncWrite};
use io_core::{Canceled, Cx, Io as Backend, SpawnError, SpawnOptions};

/// The most a read copies at once: what the stream's adapter reads ahead is kept for the next.
const READ_CHUNK: usize = 16 * 1024;

/// An ioswap stream as hyper's `rt::Read` and `rt::Write`.
///
/// Reads go through a buffer of the wrapper's own (up to 16 KiB, allocated on the first read)
/// and are copied into hyper's: filling hyper's uninitialized buffer in place takes `unsafe`.
/// Writes go straight to the stream; `poll_shutdown` is the stream's `poll_close` (a TCP
/// stream shuts its write half down).
///
/// The end of the stream is held back while a write is in flight (its `poll_write` answered
/// `Pending`), and given to the next read after that write is reported. On a completion
/// backend (uring) the peer can read a response and close before the response's write
/// completion comes back; hyper, seeing the close first, would take a finished exchange for
/// an interrupted one (`IncompleteMessage`). A readiness backend never shows that order: its
/// write has ended before `poll_write` returns.
pub struct Io<T> {
    inner: T,
    scratch: Vec<u8>,
    /// The last `poll_write` (or flush, or shutdown) answered `Pending`.
    writing: bool,
    /// The stream ended while `writing`; the next read after the write is reported says so.
    held_eof: bool,
}

impl<T> Io<T> {
    /// Wraps `stream`.
    pub fn new(stream: T) -> Io<T> {
        Io {
            inner: stream,
            scratch: Vec::new(),
            writing: false,
            held_eof: false,
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: fmt::Debug> fmt::Debug for Io<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Io").field(&self.inner).finish()
    }
}

impl<T: AsyncRead + Unpin> rt::Read for Io<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        task: &mut Context<'_>,
        mut buf: rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held_eof {
            if this.writing {
                // The write's completion wakes this task; `poll_write` wakes it again once
                // the write is reported.
                return Poll::Pending;
            }
            this.held_eof = false;
            return Poll::Ready(Ok(()));
        }
        let want = buf.remaining().min(READ_CHUNK);
        if this.scratch.len() < want {
            this.scratch.resize(want, 0);
        }
        let n = std::task::ready!(
            Pin::new(&mut this.inner).poll_read(task, &mut this.scratch[..want])
        )?;
        if n == 0 && want > 0 && this.writing {
            this.held_eof = true;
            return Poll::Pending;
        }
        buf.put_slice(&this.scratch[..n]);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> rt::Write for Io<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        task: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(task, data);
        this.wrote(task, written.is_pending());
        written
    }

    fn poll_flush(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(task);
        this.wrote(task, flushed.is_pending());
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let closed = Pin::new(&mut this.inner).poll_close(task);
        this.wrote(task, closed.is_pending());
        closed
    }
}

impl<T> Io<T> {
    /// Notes whether a write is still in flight; once none is, a held-back end of stream is
    /// due, and the task is woken to read it.
    fn wrote(&mut self, task: &Context<'_>, pending: bool) {
        self.writing = pending;
        if !pending && self.held_eof {
            task.waker().wake_by_ref();
        }
    }
}

/// Backends registered on this thread by [`Timer::new`] and [`Executor::new`], by key, held
/// weakly: a run that ended is not kept alive by a timer someone kept.
type Registry = RefCell<Vec<(u64, Weak<dyn Backend>)>>;

thread_local! {
    static LOOPS: Registry = const { RefCell::new(Vec::new()) };
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A backend reached again on its loop's thread, and the clock's origin: a `std` instant and
/// the backend's millisecond clock read together (they differ on fiber's virtual clock).
#[derive(Clone, Debug)]
struct Loop {
    key: u64,
    thread: ThreadId,
    origin: Instant,
    origin_ms: u64,
}

impl Loop {
    fn register(cx: &Cx) -> Loop {
        let key = LOOPS.with(|loops| {
            let mut loops = loops.borrow_mut();
            loops.retain(|(_, backend)| backend.strong_count() > 0);
            let this = Rc::downgrade(cx.io());
            match loops.iter().find(|(_, backend)| backend.ptr_eq(&this)) {
                Some((key, _)) => *key,
                None => {
                    let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
                    loops.push((key, this));
                    key
                }
            }
        });
        Loop {
            key,
            thread: thread::current().id(),
            origin: Instant::now(),
            origin_ms: cx.now_ms(),
        }
    }

    /// The backend's `Cx`, if its run has not ended. Panics off the loop's thread.
    fn cx(&self, what: &str) -> Option<Cx> {
        assert!(
            thread::current().id() == self.thread,
            "ioswap::hyper::{what} used on a thread other than its loop's: a Cx is bound to \
             its loop's thread; make one {what} per loop, with {what}::new(&cx) there"
        );
        LOOPS
            .try_with(|loops| {
                let loops = loops.borrow();
                let (_, backend) = loops.iter().find(|(key, _)| *key == self.key)?;
                backend.upgrade()
            })
            .ok()
            .flatten()
            .map(Cx::new)
    }

    /// The backend's clock in milliseconds (the real one, from the origin, once its run ended).
    fn now_ms(&self) -> u64 {
        match self.cx("Timer") {
            Some(cx) => cx.now_ms(),
            None => self
                .origin_ms
                .saturating_add(ceil_ms(self.origin.elapsed())),
        }
    }

    /// `deadline` on the backend's clock, rounded up: a sleep never ends before it.
    fn deadline_ms(&self, deadline: Instant) -> u64 {
        self.origin_ms
            .saturating_add(ceil_ms(deadline.saturating_duration_since(self.origin)))
    }
}

/// Whole milliseconds in `d`, rounded up, saturating.
fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// hyper's `rt::Timer` on the backend's clock; pass it to hyper's builders
/// (`http1::Builder::timer`). Its sleeps are ioswap timers: real time on uring and poll,
/// virtual time on fiber. [`now`](rt::Timer::now) reads the backend's clock (in whole
/// milliseconds), so hyper's deadlines are on it too.
///
/// Make it on the loop's thread ([`Timer::new`]) and use it there (see the [module](self)
/// docs).
#[derive(Clone, Debug)]
pub struct Timer {
    at: Loop,
}

impl Timer {
    /// A timer on `cx`'s backend.
    pub fn new(cx: &Cx) -> Timer {
        Timer {
            at: Loop::register(cx),
        }
    }

    fn sleep_until_ms(&self, deadline_ms: u64) -> Pin<Box<dyn rt::Sleep>> {
        Box::pin(Sleep {
            at: self.at.clone(),
            shared: Arc::new(Mutex::new(SleepState {
                deadline_ms,
                fired: false,
                gone: false,
                sleeper: None,
                timer_task: TimerTask::NotStarted,
            })),
        })
    }
}

impl rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn rt::Sleep>> {
        self.sleep_until_ms(self.at.now_ms().saturating_add(ceil_ms(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn rt::Sleep>> {
        self.sleep_until_ms(self.at.deadline_ms(deadline))
    }

    fn now(&self) -> Instant {
        let ms = self.at.now_ms().saturating_sub(self.at.origin_ms);
        self.at.origin + Duration::from_millis(ms)
    }

    /// Moves the deadline of a sleep of this module in place: a later deadline costs nothing
    /// until the armed timer fires (it is armed again then), an earlier one re-arms it now.
    fn reset(&self, sleep: &mut Pin<Box<dyn rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Sleep>() {
            Some(ours) => ours.get_mut().reset(self.at.deadline_ms(new_deadline)),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// The future of [`Timer`]'s sleeps: `Send + Sync` shared state, and a task on the loop (spawned
/// at its first poll) that waits on an ioswap timer and wakes it. Dropping it ends that task
/// and disarms the timer.
pub struct Sleep {
    at: Loop,
    shared: Arc<Mutex<SleepState>>,
}

struct SleepState {
    /// On the backend's clock.
    deadline_ms: u64,
    fired: bool,
    /// The `Sleep` was dropped: its timer task ends.
    gone: bool,
    /// The task awaiting the `Sleep`.
    sleeper: Option<Waker>,
    timer_task: TimerTask,
}

enum TimerTask {
    NotStarted,
    /// Waiting for `armed_ms` (which may be earlier than the deadline: it re-arms when it fires).
    Running {
        armed_ms: u64,
        waker: Option<Waker>,
    },
    Ended,
}

fn lock(shared: &Mutex<SleepState>) -> MutexGuard<'_, SleepState> {
    // Nothing panics while holding it; a poisoned state is still consistent.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sleep {
    fn reset(&mut self, deadline_ms: u64) {
        let mut state = lock(&self.shared);
        state.deadline_ms = deadline_ms;
        state.fired = false;
        match &mut state.timer_task {
            // Armed for later than the new deadline: wake the task to arm it again.
            TimerTask::Running { armed_ms, waker } if deadline_ms < *armed_ms => {
                if let Some(waker) = waker.take() {
                    waker.wake();
                }
            }
            TimerTask::Running { .. } => {}
            // The next poll starts a task for the new deadline.
            TimerTask::Ended => state.timer_task = TimerTask::NotStarted,
            TimerTask::NotStarted => {}
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.shared);
        if state.fired {
            return Poll::Ready(());
        }
        match &state.sleeper {
            Some(waker) if waker.will_wake(task.waker()) => {}
            _ => state.sleeper = Some(task.waker().clone()),
        }
        if !matches!(state.timer_task, TimerTask::NotStarted) {
            return Poll::Pending;
        }
        state.timer_task = TimerTask::Running {
            armed_ms: state.deadline_ms,
            waker: None,
        };
        // Unlocked while spawning: a backend that runs the task inline would take the lock.
        drop(state);
        let Some(cx) = self.at.cx("Timer") else {
            // The run has ended: no timer will ever fire, and nothing is left to time.
            return Poll::Ready(());
        };
        let shared = self.shared.clone();
        let opts = SpawnOptions::new().name("hyper timer").concurrent();
        match cx.spawn_with(opts, |cx| run_timer(cx, shared)) {
            Ok(timer) => timer.detach(),
            Err(SpawnError::ShutDown) => return Poll::Ready(()),
            Err(refused) => panic!(
                "ioswap::hyper::Timer needs a backend that runs tasks concurrently \
                 (uring, poll, fiber): {refused}"
            ),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        let mut state = lock(&self.shared);
        state.gone = true;
        if let TimerTask::Running { waker, .. } = &mut state.timer_task {
            if let Some(waker) = waker.take() {
                waker.wake();
            }
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.shared);
        f.debug_struct("Sleep")
            .field("deadline_ms", &state.deadline_ms)
            .field("fired", &state.fired)
            .finish()
    }
}

impl rt::Sleep for Sleep {}

/// The task behind a [`Sleep`]: sleeps on an ioswap timer until the deadline, arming it again
/// when the deadline moved (later: once the armed one fires; earlier: when woken), and wakes
/// the sleeper. Ends when the `Sleep` fired or was dropped.
async fn run_timer(cx: Cx, shared: Arc<Mutex<SleepState>>) -> Result<(), Canceled> {
    let ended = |state: &mut SleepState| state.timer_task = TimerTask::Ended;
    loop {
        let armed_ms = {
            let mut state = lock(&shared);
            if state.gone {
                ended(&mut state);
                return Ok(());
            }
            state.timer_task = TimerTask::Running {
                armed_ms: state.deadline_ms,
                waker: None,
            };
            state.deadline_ms
        };
        let mut sleep = cx.sleep_until(armed_ms);
        let rang = poll_fn(|task| {
            {
                let mut state = lock(&shared);
                if state.gone || state.deadline_ms < armed_ms {
                    return Poll::Ready(Ok(false));
                }
                if let TimerTask::Running { waker, .. } = &mut state.timer_task {
                    match waker {
                        Some(w) if w.will_wake(task.waker()) => {}
                        _ => *waker = Some(task.waker().clone()),
                    }
                }
            }
            Pin::new(&mut sleep).poll(task).map_ok(|()| true)
        })
        .await;
        let mut state = lock(&shared);
        match rang {
            Ok(true) if state.deadline_ms <= cx.now_ms() => {
                state.fired = true;
                ended(&mut state);
                if let Some(sleeper) = state.sleeper.take() {
                    sleeper.wake();
                }
                return Ok(());
            }
            // Moved later, moved earlier, or dropped: the loop sees which.
            Ok(_) => {}
            Err(canceled) => {
                // The run is shutting down; a later poll of the `Sleep` finds no backend.
                ended(&mut state);
                return Err(canceled);
            }
        }
    }
}

/// hyper's `rt::Executor`: spawns each future hyper hands it as a detached task on the loop
/// (with [`SpawnOptions::concurrent`]: on the blocking backend it panics, as nothing there
/// could run it beside the connection). The futures need not be `Send`: they stay on the
/// loop's thread. hyper's HTTP/1 server and client need no executor; HTTP/2 does.
///
/// Make it on the loop's thread ([`Executor::new`]) and use it there (see the
/// [module](self) docs). Once the run has ended, a future handed to it is dropped.
#[derive(Clone, Debug)]
pub struct Executor {
    at: Loop,
}

impl Executor {
    /// An executor on `cx`'s backend.
    pub fn new(cx: &Cx) -> Executor {
        Executor {
            at: Loop::register(cx),
        }
    }
}

impl<Fut> rt::Executor<Fut> for Executor
where
    Fut: Future + 'static,
{
    fn execute(&self, future: Fut) {
        let Some(cx) = self.at.cx("Executor") else {
            return;
        };
        let opts = SpawnOptions::new().name("hyper").concurrent();
        match cx.spawn_with(opts, |_| async move {
            future.await;
            Ok(())
        }) {
            Ok(task) => task.detach(),
            Err(SpawnError::ShutDown) => {}
            Err(refused) => panic!("ioswap::hyper::Executor: {refused}"),
        }
    }
}
