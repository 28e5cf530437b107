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
//! calls them. A [`Sleep`] holds only plain data (its deadline, whether it fired, a key); its
//! first poll arms an ioswap timer for the polling task, kept in a table of the loop's thread
//! under that key, so a sleep costs no task of its own (hyper makes one per request, for its
//! header-read timeout). Calling a `Timer` or `Executor` on another thread panics: hyper calls
//! them from the connection's future, which a single-threaded loop polls on its own thread.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use ::hyper::rt;
use futures_io::{AsyncRead, AsyncWrite};
use io_core::{Canceled, Cx, IdMap, Io as Backend, Park, SpawnError, SpawnOptions, TimerId};

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
        // Found in this thread's registry: this is the loop's thread (keys are unique, and
        // registered on the loop's thread only). Reading the thread's id costs more.
        if let Some(cx) = self.cx_here() {
            return Some(cx);
        }
        assert!(
            self.on_its_thread(),
            "ioswap::hyper::{what} used on a thread other than its loop's: a Cx is bound to \
             its loop's thread; make one {what} per loop, with {what}::new(&cx) there"
        );
        None
    }

    fn on_its_thread(&self) -> bool {
        thread::current().id() == self.thread
    }

    /// The backend's `Cx` if this is the loop's thread and its run has not ended.
    fn cx_here(&self) -> Option<Cx> {
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
            deadline_ms,
            fired: false,
            key: None,
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

/// The future of [`Timer`]'s sleeps. Its first poll arms an ioswap timer for the task that polls
/// it; the timer (its park and id, which are bound to the loop's thread) is kept in a table of
/// that thread, so the `Sleep` itself holds only plain data and is `Send + Sync`. No task is
/// spawned: the sleeper's own task is woken at the deadline. Dropping it disarms the timer.
///
/// A `Sleep` dropped on another thread than its loop's cannot reach that table: its timer then
/// fires unheeded at its deadline, and its entry (a park and an id) stays until the thread ends.
pub struct Sleep {
    at: Loop,
    /// On the backend's clock.
    deadline_ms: u64,
    fired: bool,
    /// Its entry in [`ARMED`], once polled.
    key: Option<u64>,
}

/// A timer armed for a [`Sleep`]: the park it readies and the deadline it was armed for (which
/// may be earlier than the sleep's: it is armed again when it fires).
struct Armed {
    park: Park,
    timer: TimerId,
    armed_ms: u64,
}

thread_local! {
    /// The timers of the `Sleep`s polled on this thread, by key.
    static ARMED: RefCell<IdMap<Armed>> = RefCell::new(IdMap::default());
    static NEXT_SLEEP: Cell<u64> = const { Cell::new(0) };
}

impl Sleep {
    fn reset(&mut self, deadline_ms: u64) {
        self.deadline_ms = deadline_ms;
        self.fired = false;
        // Earlier than the armed timer: arm it again now (for the waker the park holds), if
        // this is the loop's thread; otherwise the next poll does.
        let Some(key) = self.key else { return };
        let Some(cx) = self.at.cx_here() else {
            return;
        };
        let _ = ARMED.try_with(|armed| {
            if let Some(entry) = armed.borrow_mut().get_mut(&key) {
                if deadline_ms < entry.armed_ms {
                    cx.disarm_timer(entry.timer);
                    entry.timer = cx.arm_timer(deadline_ms, &entry.park);
                    entry.armed_ms = deadline_ms;
                }
            }
        });
    }

    /// Removes the entry of its timer, disarming it.
    fn disarm(&mut self, cx: Option<&Cx>) {
        let Some(key) = self.key.take() else { return };
        let entry = ARMED
            .try_with(|armed| armed.borrow_mut().remove(&key))
            .ok()
            .flatten();
        if let (Some(entry), Some(cx)) = (entry, cx) {
            cx.disarm_timer(entry.timer);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.fired {
            return Poll::Ready(());
        }
        let Some(cx) = this.at.cx("Timer") else {
            // The run has ended: no timer will ever fire, and nothing is left to time.
            this.disarm(None);
            this.fired = true;
            return Poll::Ready(());
        };
        loop {
            // The park to wait on, armed for the deadline or earlier.
            let park = ARMED.with(|armed| {
                let mut armed = armed.borrow_mut();
                let key = *this.key.get_or_insert_with(|| {
                    NEXT_SLEEP.with(|next| {
                        let key = next.get();
                        next.set(key.wrapping_add(1));
                        key
                    })
                });
                let deadline_ms = this.deadline_ms;
                let entry = armed.entry(key).or_insert_with(|| {
                    let park = Park::new("hyper sleep");
                    Armed {
                        timer: cx.arm_timer(deadline_ms, &park),
                        park,
                        armed_ms: deadline_ms,
                    }
                });
                if deadline_ms < entry.armed_ms {
                    // Moved earlier off the loop's thread: arm it again.
                    cx.disarm_timer(entry.timer);
                    entry.timer = cx.arm_timer(deadline_ms, &entry.park);
                    entry.armed_ms = deadline_ms;
                }
                entry.park.clone()
            });
            match cx.io().suspend_raw(&park, task) {
                Poll::Pending => return Poll::Pending,
                // The timer fired (completion wins over a cancel that came with it).
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(Canceled)) if park.is_ready() => {}
                Poll::Ready(Err(Canceled)) => {
                    // The sleeper's task is canceled (its timers were evicted): the sleep
                    // ends, and the task meets the cancel at its next ioswap suspend point.
                    this.disarm(None);
                    this.fired = true;
                    return Poll::Ready(());
                }
            }
            // The armed timer fired: done if the deadline has come, else armed again for it.
            this.disarm(None);
            if this.deadline_ms <= cx.now_ms() {
                this.fired = true;
                return Poll::Ready(());
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if self.key.is_none() {
            return;
        }
        match self.at.cx_here() {
            Some(cx) => self.disarm(Some(&cx)),
            // The run has ended: its timers are gone, the entry goes.
            None if self.at.on_its_thread() => self.disarm(None),
            // Another thread: the table is out of reach (see the type's docs).
            None => {}
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline_ms", &self.deadline_ms)
            .field("fired", &self.fired)
            .finish()
    }
}

impl rt::Sleep for Sleep {}

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
