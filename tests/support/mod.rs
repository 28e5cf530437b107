//! Shared by every conformance test file: `mod support;` then `conformance!(behaviour, …)`.
//!
//! A behaviour is a plain `fn name(backend: Backend)`, written once; the macro instantiates it
//! as one `#[test]` per compiled backend (`blocking::name`, `fiber::name`, …). A behaviour that
//! differs by design matches on `backend` and asserts each case explicitly.
#![allow(dead_code)]

use std::cell::RefCell;
use std::fmt::Display;
use std::rc::Rc;

use ioswap::protocol::Driver;
use ioswap::Backend;

/// Instantiates each named behaviour once per compiled backend.
#[macro_export]
macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {
        #[cfg(feature = "blocking")]
        mod blocking {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(ioswap::Backend::Blocking)
            })*
        }
        #[cfg(feature = "fiber")]
        mod fiber {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(ioswap::Backend::Fiber)
            })*
        }
        #[cfg(feature = "uring")]
        mod uring {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(ioswap::Backend::Uring)
            })*
        }
        #[cfg(feature = "poll")]
        mod poll {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(ioswap::Backend::Poll)
            })*
        }
    };
}

/// Inside a run body returning `Result<Result<T, SpawnError>, Canceled>`: spawns `body` with
/// `SpawnOptions::concurrent()`, or returns the refusal (blocking's `ConcurrencyUnavailable`)
/// as the run's value, for [`where_concurrent`] to check.
#[macro_export]
macro_rules! spawn_concurrent {
    ($cx:expr, $body:expr) => {
        match $cx.spawn_with(ioswap::SpawnOptions::new().concurrent(), $body) {
            Ok(task) => task,
            Err(refused) => return Ok(Err(refused)),
        }
    };
}

/// A fresh backend as a protocol object, for protocol-level behaviours.
pub fn new_io(backend: Backend) -> Rc<dyn Driver> {
    match backend {
        #[cfg(feature = "blocking")]
        Backend::Blocking => ioswap::BlockingIo::new().io(),
        #[cfg(feature = "fiber")]
        Backend::Fiber => ioswap::FiberIo::new().io(),
        #[cfg(feature = "uring")]
        Backend::Uring => ioswap::UringIo::new().expect("io_uring available").io(),
        #[cfg(feature = "poll")]
        Backend::Poll => ioswap::PollIo::new().expect("a poller").io(),
        #[allow(unreachable_patterns)]
        other => panic!("backend {other} is not compiled in"),
    }
}

/// An ordered event log shared by the tasks of one run.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    pub fn new() -> Log {
        Log::default()
    }

    pub fn push(&self, event: impl Display) {
        self.0.borrow_mut().push(event.to_string());
    }

    /// The events so far, space-separated.
    pub fn joined(&self) -> String {
        self.0.borrow().join(" ")
    }
}

/// The deadlock a run ended with; panics (showing what happened instead) if it did not.
pub fn expect_deadlock<T: std::fmt::Debug>(outcome: Result<T, ioswap::Error>) -> ioswap::Deadlock {
    match outcome {
        Err(ioswap::Error::Run(ioswap::RunError::Deadlock(deadlock))) => deadlock,
        other => panic!("expected a deadlock, got {other:?}"),
    }
}

/// For behaviours that need tasks to overlap: where the backend has concurrency, the value the
/// run gave; on blocking, asserts the concurrent spawn was refused with
/// `ConcurrencyUnavailable` (blocking runs every task inline) and gives `None`.
pub fn where_concurrent<T: std::fmt::Debug>(
    backend: Backend,
    outcome: Result<Result<T, ioswap::SpawnError>, ioswap::Error>,
) -> Option<T> {
    let outcome = outcome.expect("the run itself succeeds");
    match backend {
        Backend::Blocking => {
            assert_eq!(
                outcome.unwrap_err(),
                ioswap::SpawnError::ConcurrencyUnavailable
            );
            None
        }
        _ => Some(outcome.expect("the backend has concurrency")),
    }
}

/// Asserts a log (as [`Log::joined`] gives it) whose events carry `@time` suffixes. Exact on
/// fiber (the virtual clock). On uring (a real clock) the same events in the same order, each no
/// earlier than its virtual time: real sleeps only ever overrun.
pub fn assert_timed(backend: Backend, actual: &str, expected: &str) {
    if !is_real_clock_concurrent(backend) {
        assert_eq!(actual, expected);
        return;
    }
    let split = |events: &str| -> Vec<(String, u64)> {
        events
            .split_whitespace()
            .map(|event| match event.rsplit_once('@') {
                Some((what, at)) => (what.to_string(), at.parse().unwrap_or(0)),
                None => (event.to_string(), 0),
            })
            .collect()
    };
    let (actual_events, expected_events) = (split(actual), split(expected));
    let names = |events: &[(String, u64)]| events.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&actual_events),
        names(&expected_events),
        "events differ: {actual}"
    );
    for ((what, at), (_, virtual_at)) in actual_events.iter().zip(&expected_events) {
        assert!(
            at >= virtual_at,
            "{what} at {at} ms, before {virtual_at}: {actual}"
        );
    }
}

/// Whether `backend` runs tasks concurrently on the real clock (uring, poll): its timed events
/// come no earlier than fiber's virtual times, never exactly at them.
pub fn is_real_clock_concurrent(backend: Backend) -> bool {
    matches!(backend, Backend::Uring | Backend::Poll)
}

/// Asserts a clock reading: exact on fiber, no earlier on uring and poll (a real clock).
pub fn assert_time(backend: Backend, at: u64, expected: u64) {
    if is_real_clock_concurrent(backend) {
        assert!(
            at >= expected,
            "at {at} ms, expected no earlier than {expected}"
        );
    } else {
        assert_eq!(at, expected);
    }
}

/// A future outside the protocol that a std thread completes, and wakes, after `ms`: what a
/// foreign channel or a blocking pool looks like to a task.
pub fn woken_from_another_thread(ms: u64) -> impl std::future::Future<Output = ()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::Poll;
    let done = Arc::new(AtomicBool::new(false));
    let mut started = false;
    std::future::poll_fn(move |cx| {
        if done.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !started {
            started = true;
            let (done, waker) = (done.clone(), cx.waker().clone());
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                done.store(true, Ordering::Release);
                waker.wake();
            });
        }
        Poll::Pending
    })
}

/// Pushes `what` onto `log` when dropped: shows that a future was dropped.
pub struct OnDrop(pub Log, pub &'static str);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.push(self.1);
    }
}

/// Runs `f` on a thread of its own and gives its value (or resumes its panic here), or fails
/// the test after `secs` (a hang) instead of hanging the suite.
pub fn within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("hung: {what} did not end within {secs} s"),
    }
}

/// `err` is the typed `Unsupported` refusal. Fiber's simulated network never touches a real
/// socket, so a std socket handed to it (`TcpStream::from_std`) is refused this way, by design.
pub fn assert_unsupported(err: &std::io::Error) {
    assert_eq!(err.kind(), std::io::ErrorKind::Unsupported, "{err}");
    assert!(
        err.get_ref().is_some_and(|e| e.is::<ioswap::Unsupported>()),
        "{err}"
    );
}

/// The differential test: runs `body` on every compiled backend and asserts each observed the
/// same value as the first, so a behaviour written once is checked against the kernel's answer
/// (blocking, uring, poll) and the simulator's (fiber) in one place. `body` gets the backend
/// it runs on, for what must differ (a temporary path, say), and should observe only what is
/// the same everywhere (bytes, lengths, error kinds; not ports or addresses).
pub fn same_on_every_backend<T, F, Fut>(what: &str, body: F) -> T
where
    T: PartialEq + std::fmt::Debug + 'static,
    F: Fn(ioswap::Cx, Backend) -> Fut,
    Fut: std::future::Future<Output = Result<T, ioswap::Canceled>> + 'static,
{
    let mut seen = Backend::compiled().into_iter().map(|backend| {
        let value = backend
            .run(|cx| body(cx, backend))
            .unwrap_or_else(|err| panic!("{what} on {backend}: {err}"));
        (backend, value)
    });
    let (first, expected) = seen.next().expect("a backend is compiled in");
    for (backend, value) in seen {
        assert_eq!(value, expected, "{what}: {backend} differs from {first}");
    }
    expected
}

thread_local! {
    /// What a [`Probe`] waker of this thread runs when woken (see [`on_wake`]).
    static ON_WAKE: RefCell<Option<Rc<dyn Fn()>>> = RefCell::new(None);
}

/// Sets what every [`Probe`] waker of this thread runs when woken (`None`: nothing). A probe is
/// `Send + Sync`, as a `Waker` must be, so what it runs on the test's `!Send` values lives here.
pub fn on_wake(run: Option<Rc<dyn Fn()>>) {
    ON_WAKE.with(|slot| *slot.borrow_mut() = run);
}

/// A waker as a foreign combinator makes one (`std::task::Wake` on an `Arc`): each wake is
/// counted, then runs what [`on_wake`] set, which may use the primitive that woke it. With
/// `panics`, the wake then panics.
#[derive(Default)]
pub struct Probe {
    wakes: std::sync::atomic::AtomicUsize,
    panics: bool,
}

impl Probe {
    /// A probe and a waker on it.
    pub fn new() -> (std::sync::Arc<Probe>, std::task::Waker) {
        Probe::make(false)
    }

    /// A probe whose wakes panic, and a waker on it.
    pub fn panicking() -> (std::sync::Arc<Probe>, std::task::Waker) {
        Probe::make(true)
    }

    fn make(panics: bool) -> (std::sync::Arc<Probe>, std::task::Waker) {
        let probe = std::sync::Arc::new(Probe {
            panics,
            ..Probe::default()
        });
        let waker = std::task::Waker::from(probe.clone());
        (probe, waker)
    }

    /// How many times it was woken.
    pub fn wakes(&self) -> usize {
        self.wakes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl std::task::Wake for Probe {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.wakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let run = ON_WAKE.with(|slot| slot.borrow().clone());
        if let Some(run) = run {
            run();
        }
        if self.panics {
            panic!("a waker that panics");
        }
    }
}

/// One poll of `fut` with `waker`.
pub fn poll_with<F: std::future::Future + ?Sized>(
    fut: std::pin::Pin<&mut F>,
    waker: &std::task::Waker,
) -> std::task::Poll<F::Output> {
    fut.poll(&mut std::task::Context::from_waker(waker))
}

/// The message `f` panicked with, or `None` if it returned.
pub fn panic_of(f: impl FnOnce()) -> Option<String> {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).err()?;
    Some(match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => message.to_string(),
            Err(_) => "<non-string panic payload>".to_string(),
        },
    })
}

/// A fresh path in the temp dir, unique per test and backend; removed on drop.
pub struct TempPath(pub std::path::PathBuf);

impl TempPath {
    pub fn new(test: &str, backend: Backend) -> TempPath {
        TempPath(
            std::env::temp_dir().join(format!("ioswap-{test}-{backend}-{}", std::process::id())),
        )
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The whole file at `path`, read back through the backend (fiber's files live on its simulated
/// disk, which `std::fs` cannot see).
pub async fn read_back(cx: &ioswap::Cx, path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let file = ioswap::File::open(cx, path).await?;
    let data = file.read_to_end().await?;
    file.close().await?;
    Ok(data)
}
