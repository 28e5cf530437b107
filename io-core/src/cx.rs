//! [`Cx`]: the handle user code takes, and the primitives written once on top of the protocol.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

use crate::offload::{Blocking, Offload};
use crate::task::{self, ShieldGuard};
use crate::{
    BudgetUnit, Canceled, Instant, Io, Park, Sleep, SpawnError, SpawnOptions, Task, TimerId,
};

/// The handle async code takes to reach its backend: `async fn work(cx: &Cx)`.
///
/// Cheap to clone; not `Send` (a backend is single-threaded).
///
/// ```
/// use io_core::{Canceled, Cx};
///
/// async fn twice(cx: &Cx) -> Result<u64, Canceled> {
///     let a = cx.spawn(|cx| async move { cx.sleep(10).await?; Ok(1) });
///     let b = cx.spawn(|cx| async move { cx.sleep(20).await?; Ok(2) });
///     Ok(a.await? + b.await?)
/// }
///
/// let io = io_fiber::FiberIo::new();
/// let (sum, at) = io.run(|cx| async move { Ok((twice(&cx).await?, cx.now_ms())) }).unwrap();
/// assert_eq!((sum, at), (3, 20)); // the two sleeps overlapped on the virtual clock
/// ```
#[derive(Clone)]
pub struct Cx {
    io: Rc<dyn Io>,
}

static_assertions::assert_not_impl_any!(Cx: Send, Sync);

impl Cx {
    /// A handle on `io`. Backends build it; user code receives it.
    pub fn new(io: Rc<dyn Io>) -> Cx {
        Cx { io }
    }

    /// The backend behind this handle.
    pub fn io(&self) -> &Rc<dyn Io> {
        &self.io
    }

    /// The backend's name: `"blocking"`, `"fiber"`, `"uring"`.
    pub fn backend(&self) -> &'static str {
        self.io.core().name()
    }

    /// Spawns a task; `body` receives its own `Cx`. On the blocking backend the task runs inline
    /// to completion before `spawn` returns; elsewhere it is queued.
    ///
    /// After the backend has shut down the task is born canceled (its body never runs and
    /// joining gives `Err(Canceled)`); use [`Cx::spawn_with`] to get the typed error instead.
    #[track_caller]
    pub fn spawn<T, F, Fut>(&self, body: F) -> Task<T>
    where
        T: 'static,
        F: FnOnce(Cx) -> Fut,
        Fut: Future<Output = Result<T, Canceled>> + 'static,
    {
        let opts = SpawnOptions::new().spawned_at(std::panic::Location::caller());
        let (task, spawned) = task::spawn_on(&self.io, &opts, body(self.clone()));
        if spawned.is_err() {
            // Only ShutDown can happen without `concurrent`; the RawTask was dropped unpolled.
            task.cancel();
        }
        task
    }

    /// Whether the fault point `site` fires here: FoundationDB's `BUGGIFY`. Put it where a rare
    /// but legal behaviour (a slow path, an early timeout, a retry) should be exercised:
    /// `if cx.buggify("flush-early") { ... }`. Real backends never fire it. The fiber backend's
    /// simulated world decides per run, from the seed, whether each site is enabled at all, and
    /// an enabled site fires on a seeded share of the times it is reached, so one run explores
    /// some sites hard and leaves the others alone.
    pub fn buggify(&self, site: &'static str) -> bool {
        self.io.buggify(site)
    }

    /// Spawns a task with options (a name; required concurrency), reporting refusals as typed
    /// errors: [`SpawnError::ConcurrencyUnavailable`] on an inline backend when concurrency is
    /// required, [`SpawnError::ShutDown`] after the backend's run returned.
    #[track_caller]
    pub fn spawn_with<T, F, Fut>(&self, opts: SpawnOptions, body: F) -> Result<Task<T>, SpawnError>
    where
        T: 'static,
        F: FnOnce(Cx) -> Fut,
        Fut: Future<Output = Result<T, Canceled>> + 'static,
    {
        let opts = match opts.location() {
            Some(_) => opts,
            None => opts.spawned_at(std::panic::Location::caller()),
        };
        let (task, spawned) = task::spawn_on(&self.io, &opts, body(self.clone()));
        spawned.map(|()| task)
    }

    /// The backend's clock in milliseconds (virtual on fiber).
    pub fn now_ms(&self) -> u64 {
        self.io.now_ms()
    }

    /// Sleeps for `ms` milliseconds (saturating: a huge `ms` sleeps forever).
    #[inline]
    #[track_caller]
    pub fn sleep(&self, ms: u64) -> Sleep {
        self.sleep_until(self.now_ms().saturating_add(ms))
    }

    /// Sleeps for `duration`, rounded up to whole milliseconds (never shorter than asked;
    /// saturating like [`Cx::sleep`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let slept = io_fiber::FiberIo::with_seed(1)
    ///     .run(|cx| async move {
    ///         let start = cx.now();
    ///         cx.sleep_for(Duration::from_micros(1_500)).await?;
    ///         Ok(cx.now() - start)
    ///     })
    ///     .unwrap();
    /// assert_eq!(slept, Duration::from_millis(2)); // exact on the virtual clock
    /// ```
    #[inline]
    #[track_caller]
    pub fn sleep_for(&self, duration: Duration) -> Sleep {
        self.sleep_until(self.now() + duration)
    }

    /// Sleeps until the clock reads `deadline`: an [`Instant`] or milliseconds (`u64`). A
    /// deadline in the past returns on the next turn; [`Instant::NEVER`] (`u64::MAX`) never
    /// returns (except with `Err(Canceled)`).
    #[inline]
    #[track_caller]
    pub fn sleep_until(&self, deadline: impl Into<Instant>) -> Sleep {
        Sleep::new(self.io.clone(), deadline.into().as_ms())
    }

    /// The backend's clock now (virtual on fiber).
    pub fn now(&self) -> Instant {
        Instant::from_ms(self.io.now_ms())
    }

    /// Runs `f` off the loop's thread and gives its result as a task: on poll and io_uring, on
    /// the backend's bounded thread pool; on blocking, inline; on fiber, inline at a later
    /// turn the seed chooses (never on a real thread, so a run stays deterministic).
    ///
    /// Canceling the task (or dropping its handle) does not interrupt `f`, which cannot be
    /// interrupted: the task ends at once with `Err(Canceled)` and `f`'s result is dropped
    /// when it comes. A panic in `f` is the task's panic (joining resumes it).
    ///
    /// **`f` must not wait for the async side** (a message a task sends, a socket a task
    /// serves, a lock a task holds). On blocking and fiber it runs on the loop's own thread,
    /// so nothing else runs until it returns: such a wait never ends (or ends only at its own
    /// timeout), and fiber cannot report it as a deadlock, since it cannot see into `f`. On
    /// poll and io_uring it also holds one of the pool's bounded threads meanwhile. Hand `f`
    /// what it needs before spawning it.
    ///
    /// ```
    /// let sum = io_blocking::BlockingIo::new()
    ///     .run(|cx| async move { cx.spawn_blocking(|| (1..=10u64).sum::<u64>()).await })
    ///     .unwrap();
    /// assert_eq!(sum, 55);
    /// ```
    #[track_caller]
    pub fn spawn_blocking<T, F>(&self, f: F) -> Task<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let opts = SpawnOptions::new()
            .name("spawn_blocking")
            .spawned_at(std::panic::Location::caller());
        let (task, spawned) = task::spawn_on(&self.io, &opts, run_blocking(self.clone(), f));
        if spawned.is_err() {
            task.cancel();
        }
        task
    }

    /// The task this code runs in (`None` outside any task). A task may cancel itself through
    /// it: the request is sticky and its next suspend point returns `Err(Canceled)`.
    pub fn current_task(&self) -> Option<crate::TaskRef> {
        task::current_task()
    }

    /// How many tasks of this backend are alive (spawned and not finished), this one included.
    pub fn live_tasks(&self) -> usize {
        self.io.core().live_count()
    }

    /// A number in `0..n` (`0` when `n` is 0) from the backend's choice stream: seeded on fiber,
    /// so a program's random choices are part of the reproducible run.
    ///
    /// ```
    /// let draws = io_fiber::FiberIo::with_seed(3)
    ///     .run(|cx| async move { Ok((0..5).map(|_| cx.random_below(6)).collect::<Vec<_>>()) })
    ///     .unwrap();
    /// assert!(draws.iter().all(|d| *d < 6));
    /// ```
    pub fn random_below(&self, n: u64) -> u64 {
        ((u128::from(self.io.random_u64()) * u128::from(n)) >> 64) as u64
    }

    /// One poll of the suspension point on `park` ([`Io::suspend_raw`]), for leaf futures that
    /// wait in their own `poll` (a channel receive, a select): `Pending` until the park is
    /// readied, `Err(Canceled)` when the current task's cancel is due.
    #[inline]
    pub fn poll_suspend(&self, park: &Park, cx: &mut Context<'_>) -> Poll<Result<(), Canceled>> {
        self.io.suspend_raw(park, cx)
    }

    /// Takes one unit of the current task's operation budget for an operation about to be
    /// attempted: what every primitive written once calls first, so that a task whose
    /// operations keep completing without suspending still yields now and then. Spend the unit
    /// ([`BudgetUnit::spend`]) if the operation completes without suspending; drop it if the
    /// operation has to wait (a wait yields anyway).
    ///
    /// Each poll of a task has a budget of operations
    /// ([`BackendCore::set_op_budget`](crate::BackendCore::set_op_budget),
    /// [`DEFAULT_OP_BUDGET`](crate::DEFAULT_OP_BUDGET) by default). Once it is spent, this
    /// answers `Err(Canceled)` if the task has a pending cancel (outside a shield) — the yield is
    /// a suspend point like any other — and otherwise readies the task and answers `Pending`:
    /// the task yields, and its next poll has a new budget. Outside any task poll (code driven
    /// by a plain `block_on`) there is no budget. A nested executor inside a task's poll sees
    /// that poll's budget: it must return to the task, not spin on `Pending`.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::task::Poll;
    /// use io_core::DEFAULT_OP_BUDGET;
    ///
    /// let ready_ops = io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         // An operation that is always ready, as a full channel's receive is.
    ///         let ready_op = || poll_fn(|task| match cx.poll_budget(task) {
    ///             Poll::Ready(Ok(unit)) => { unit.spend(); Poll::Ready(Ok(())) }
    ///             Poll::Ready(Err(canceled)) => Poll::Ready(Err(canceled)),
    ///             Poll::Pending => Poll::Pending,
    ///         });
    ///         let other = cx.spawn(|_| async { Ok(()) });
    ///         let mut ops = 0;
    ///         while !other.is_finished() {
    ///             ready_op().await?;
    ///             ops += 1;
    ///         }
    ///         Ok(ops)
    ///     })
    ///     .unwrap();
    /// // A full budget of ready operations, then one that yielded: the other task ran.
    /// assert_eq!(ready_ops, DEFAULT_OP_BUDGET + 1);
    /// ```
    #[inline]
    pub fn poll_budget(&self, cx: &mut Context<'_>) -> Poll<Result<BudgetUnit, Canceled>> {
        task::poll_budget(cx)
    }

    /// Lets every other ready task run once before this one continues.
    #[inline]
    #[track_caller]
    pub fn yield_now(&self) -> Suspend {
        let park = Park::new("yield");
        park.ready();
        self.suspend(park)
    }

    /// `Err(Canceled)` if the current task has been canceled (and is not inside a
    /// [`shield`](Cx::shield)). A pure check for CPU loops, which have no suspend point.
    pub fn check_cancel(&self) -> Result<(), Canceled> {
        if task::cancel_pending() {
            Err(Canceled)
        } else {
            Ok(())
        }
    }

    /// Makes a foreign future (one from another crate, that waits on its own wakers rather than
    /// the protocol: an `async-channel` receive, a `oneshot`, a hyper future) a suspend point:
    /// it resolves to the future's output, or — once the current task is canceled (outside a
    /// [`shield`](Cx::shield)) — to `Err(Canceled)`, dropping the future. So a `timeout` or a
    /// `race` around it stops at its deadline.
    ///
    /// Why a bare foreign future cannot be interrupted: a cancel is delivered at the task's
    /// suspend points, and the protocol's suspend points are the waits it knows (parks, ops,
    /// joins). A foreign future is one opaque `poll`: the task re-polls it when canceled, and it
    /// just says `Pending` again; nothing but its own completion ends it. Wrapping it here puts
    /// a check of the cancel around that `poll`. Completion wins: a future that is ready when
    /// polled gives its output even if the cancel has come; one never polled before the cancel
    /// is dropped unpolled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use io_core::Canceled;
    ///
    /// let got = io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let task = cx.spawn(|cx| async move {
    ///             // A future no protocol wake ever readies.
    ///             cx.cancelable(std::future::pending::<()>()).await
    ///         });
    ///         cx.sleep(5).await?;
    ///         task.cancel();
    ///         Ok(task.await)
    ///     })
    ///     .unwrap();
    /// assert_eq!(got, Err(Canceled));
    /// ```
    pub fn cancelable<F: Future>(&self, future: F) -> Cancelable<F> {
        Cancelable {
            future: Some(future),
            polled: false,
        }
    }

    /// Spawns a task whose body returns `Result<T, E>` for its own error type — `io::Error`,
    /// say, or any `E: From<Canceled>` — so it can use `?` on its I/O and on the protocol's
    /// waits alike; joining gives `Result<T, E>`, the error typed. A task canceled before it
    /// could return joins as `Err(E::from(Canceled))`. (Bodies returning `Result<T, Canceled>`
    /// use [`Cx::spawn`].)
    ///
    /// ```
    /// use std::io;
    /// let joined = io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let task = cx.spawn_try(|cx| async move {
    ///             cx.sleep(1).await?; // Canceled → io::Error
    ///             let bad: io::Result<u32> = Err(io::ErrorKind::NotFound.into());
    ///             let n = bad?; // io::Error as it is
    ///             Ok::<_, io::Error>(n)
    ///         });
    ///         Ok(task.await.map_err(|e| e.kind()))
    ///     })
    ///     .unwrap();
    /// assert_eq!(joined, Err(io::ErrorKind::NotFound));
    /// ```
    #[track_caller]
    pub fn spawn_try<T, E, F, Fut>(&self, body: F) -> TryTask<T, E>
    where
        T: 'static,
        E: From<Canceled> + 'static,
        F: FnOnce(Cx) -> Fut,
        Fut: Future<Output = Result<T, E>> + 'static,
    {
        let body = body(self.clone());
        TryTask {
            task: self.spawn(move |_| async move { Ok(body.await) }),
        }
    }

    /// Runs `future` with the current task's cancellation held off: its suspend points do not
    /// return `Canceled`. For cleanup (flush, close, say goodbye) after a cancel; the
    /// cancellation is still pending afterwards and the next unshielded suspend point gets it.
    pub fn shield<F: Future>(&self, future: F) -> Shield<F> {
        Shield { future }
    }

    /// A new park for [`Cx::suspend`] (protocol-level; primitives use it).
    #[track_caller]
    pub fn park(&self, what: &'static str) -> Park {
        Park::new(what)
    }

    /// Suspends the current task on `park` until it is readied ([`Io::suspend_raw`]).
    #[inline]
    pub fn suspend(&self, park: Park) -> Suspend {
        Suspend {
            io: self.io.clone(),
            park,
        }
    }

    /// Readies a park ([`Io::ready`]).
    pub fn ready(&self, park: &Park) {
        self.io.ready(park);
    }

    /// Arms a timer that readies `park` at `deadline_ms` ([`Io::arm_timer`]).
    pub fn arm_timer(&self, deadline_ms: u64, park: &Park) -> TimerId {
        self.io.arm_timer(deadline_ms, park)
    }

    /// Disarms a timer: its remaining milliseconds, or `None` once fired ([`Io::disarm_timer`]).
    pub fn disarm_timer(&self, id: TimerId) -> Option<u64> {
        self.io.disarm_timer(id)
    }

    /// Submits an I/O op ([`Io::submit`]) and resolves to its [`Completion`](crate::Completion), which gives the
    /// op and its buffers back. The I/O types ([`File`](crate::File),
    /// [`TcpStream`](crate::TcpStream), …) are written on this; see [`crate::op`] for the
    /// cancellation rules.
    ///
    /// ```
    /// use io_core::Op;
    /// let result = io_fiber::FiberIo::new()
    ///     .run(|cx| async move { Ok(cx.submit(Op::Nop).await.result.unwrap()) })
    ///     .unwrap();
    /// assert_eq!(result, 0);
    /// ```
    pub fn submit(&self, op: crate::Op) -> crate::Submit {
        crate::Submit::new(self.io.clone(), op)
    }
}

impl fmt::Debug for Cx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cx")
            .field("backend", &self.io.core().name())
            .field("now_ms", &self.io.now_ms())
            .finish()
    }
}

/// The future of [`Cx::suspend`] and [`Cx::yield_now`].
#[must_use = "futures do nothing unless awaited"]
pub struct Suspend {
    io: Rc<dyn Io>,
    park: Park,
}

impl Future for Suspend {
    type Output = Result<(), Canceled>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.io.suspend_raw(&self.park, cx)
    }
}

impl Drop for Suspend {
    fn drop(&mut self) {
        self.park.abandon();
    }
}

impl fmt::Debug for Suspend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suspend").field("park", &self.park).finish()
    }
}

pin_project! {
    /// The future of [`Cx::shield`].
    #[must_use = "futures do nothing unless awaited"]
    #[derive(Debug)]
    pub struct Shield<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Shield<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _shielded = ShieldGuard::enter();
        self.project().future.poll(cx)
    }
}

/// The body of a [`Cx::spawn_blocking`] task: submits the closure and unpacks its output.
async fn run_blocking<T, F>(cx: Cx, f: F) -> Result<T, Canceled>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let done = cx
        .submit(crate::Op::Offload(Offload::Blocking(Blocking::new(f))))
        .await;
    if let Err(e) = done.result {
        if Canceled::is_canceled(&e) {
            return Err(Canceled);
        }
        // A backend that could not run it (a pool with no thread): the task panics with why,
        // which its joiner sees.
        panic!("spawn_blocking: the backend could not run the closure: {e}");
    }
    let output = match done.op {
        crate::Op::Offload(Offload::Blocking(mut job)) => job.take_output(),
        _ => None,
    };
    match output {
        Some(Ok(value)) => Ok(*value
            .downcast::<T>()
            .expect("spawn_blocking's output has the closure's type")),
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => panic!("spawn_blocking: the backend completed the closure without running it"),
    }
}

pin_project! {
    /// The future of [`Cx::cancelable`]: a foreign future made a suspend point.
    #[must_use = "futures do nothing unless awaited"]
    pub struct Cancelable<F> {
        #[pin]
        future: Option<F>,
        polled: bool,
    }
}

impl<F: Future> Cancelable<F> {
    /// [`Cx::cancelable`] for code that holds no `Cx`: a `Send` handle's future (a task on
    /// another core, a cross-thread channel) checks the cancel of whichever task polls it.
    ///
    /// ```
    /// use io_core::{Cancelable, Canceled};
    ///
    /// let got = io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let task = cx.spawn(|_| Cancelable::new(std::future::pending::<()>()));
    ///         cx.sleep(5).await?;
    ///         task.cancel();
    ///         Ok(task.await)
    ///     })
    ///     .unwrap();
    /// assert_eq!(got, Err(Canceled));
    /// ```
    pub fn new(future: F) -> Cancelable<F> {
        Cancelable {
            future: Some(future),
            polled: false,
        }
    }
}

impl<F: Future> Future for Cancelable<F> {
    type Output = Result<F::Output, Canceled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // A canceled task starts nothing: a future not polled yet is dropped unpolled.
        if !*this.polled && task::cancel_pending() {
            this.future.set(None);
            return Poll::Ready(Err(Canceled));
        }
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            panic!("a Cancelable was polled after it returned");
        };
        *this.polled = true;
        match future.poll(cx) {
            // Completion wins.
            Poll::Ready(output) => {
                this.future.set(None);
                Poll::Ready(Ok(output))
            }
            Poll::Pending if task::cancel_pending() => {
                this.future.set(None);
                Poll::Ready(Err(Canceled))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Whether the task being polled on this thread has a cancel it must observe now (requested, not
/// shielded); `false` outside any task. For a `Send` handle's future that holds no `Cx` and must
/// look at its own outcome before the cancel (completion wins, as a [`Task`] join does), where
/// [`Cancelable`] refuses before looking.
///
/// ```
/// let seen = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let before = io_core::cancel_pending();
///         cx.current_task().unwrap().cancel();
///         let after = io_core::cancel_pending();
///         let shielded = cx.shield(async { io_core::cancel_pending() }).await;
///         Ok((before, after, shielded))
///     })
///     .unwrap();
/// assert_eq!(seen, (false, true, false));
/// assert!(!io_core::cancel_pending());
/// ```
pub fn cancel_pending() -> bool {
    task::cancel_pending()
}

impl<F> fmt::Debug for Cancelable<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelable")
            .field("done", &self.future.is_none())
            .finish()
    }
}

/// A task whose body returns `Result<T, E>` ([`Cx::spawn_try`]): joining gives `Result<T, E>`,
/// a cancel before the body returned `Err(E::from(Canceled))`. Dropping it cancels the task, as
/// for [`Task`].
#[must_use = "tasks get canceled when dropped, use .detach() to run them in the background"]
pub struct TryTask<T, E> {
    task: Task<Result<T, E>>,
}

impl<T, E> TryTask<T, E> {
    /// Requests the task's cancellation ([`Task::cancel`]).
    pub fn cancel(&self) {
        self.task.cancel();
    }

    /// Lets the task run on unjoined ([`Task::detach`]).
    pub fn detach(self) {
        self.task.detach();
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The task itself, whose output is the body's `Result<T, E>`.
    pub fn into_task(self) -> Task<Result<T, E>> {
        self.task
    }
}

impl<T, E: From<Canceled>> Future for TryTask<T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| joined.unwrap_or_else(|canceled| Err(E::from(canceled))))
    }
}

impl<T, E> fmt::Debug for TryTask<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TryTask").field(&self.task).finish()
    }
}
