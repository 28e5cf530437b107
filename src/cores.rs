//! Thread-per-core: one executor per core, each on its own thread with its own backend, and
//! the few `Send` ways across ([`Core::spawn_on`], [`RemoteTask`], `channel::shared`).
//!
//! A [`Cx`] and its [`Task`](crate::Task)s stay on their core (`!Send`); each core's loop works
//! on its own tasks without locks. What crosses cores is a `Send` closure (the future is made
//! on the target core, so it need not be `Send`), a `Send` handle to its outcome, and values
//! in `Send` channels. A core is woken for cross-core work by its backend's own cross-thread
//! wake (the run queue's idle hook: on uring a `MSG_RING` from the waking core's own ring where
//! the kernel has it, an eventfd otherwise; the poller's notify on poll). On
//! fiber the cores are simulated: tasks of one seeded run on one virtual clock (see [`Cores`]).
//! Decisions: `src/cores/DESIGN.md`.
//!
//! ```
//! use ioswap::cores::Cores;
//! # if !ioswap::Backend::Poll.is_compiled() { return; }
//! let ids = Cores::new()
//!     .count(3)
//!     .backend(ioswap::Backend::Poll)
//!     .run(|cx, core| async move {
//!         cx.sleep(1).await?;
//!         Ok(core.id().index())
//!     })
//!     .unwrap();
//! assert_eq!(ids, vec![0, 1, 2]);
//! ```

mod inbox;
mod listen;
mod remote;

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use io_core::{Canceled, Cx, RunError, SpawnOptions};

use crate::{Backend, Error};
use inbox::{Inbox, Message};
pub use remote::RemoteTask;

/// A core of a [`Cores`] run, by index: `0..count`.
///
/// ```
/// let core = ioswap::cores::CoreId::new(3);
/// assert_eq!(core.index(), 3);
/// assert_eq!(core.to_string(), "core 3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CoreId(usize);

impl CoreId {
    /// The core with this index.
    pub const fn new(index: usize) -> CoreId {
        CoreId(index)
    }

    /// Its index, `0..count`.
    pub const fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for CoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "core {}", self.0)
    }
}

/// Why a [`Cores`] run gave no values. When one core fails, every other core's main is canceled
/// (at its next suspend point) and joined; the error is the first failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoresError {
    /// The backend cannot run one executor per core.
    #[error("the {0} backend cannot run on several cores (it runs tasks inline and cannot serve): use uring or poll, or fiber to simulate cores")]
    Unsupported(Backend),
    /// A run on zero cores was asked for.
    #[error("a run needs at least one core")]
    NoCores,
    /// Choosing or making a core's backend failed, or its run failed (a deadlock, say).
    #[error("{core}: {error}")]
    Backend {
        /// The core.
        core: CoreId,
        /// What failed.
        error: Error,
    },
    /// A core's main task (or a task it joined) panicked.
    #[error("{core}: main panicked: {message}")]
    Panicked {
        /// The core.
        core: CoreId,
        /// The panic message, when it was a string.
        message: String,
    },
    /// A simulated run (fiber) failed as a whole: a deadlock across its cores, say.
    #[error("the simulated cores: {0}")]
    Simulation(Error),
    /// A core's main returned `Err(Canceled)` of its own accord.
    #[error("{core}: main was canceled")]
    Canceled {
        /// The core.
        core: CoreId,
    },
    /// The operating system would not start a core's thread, or the thread ended with a panic
    /// that escaped its run.
    #[error("{core}: its thread failed: {message}")]
    Thread {
        /// The core.
        core: CoreId,
        /// The system's reason, or the panic's message.
        message: String,
    },
}

/// What every core shares: the inboxes, how many mains are still running, the first failure.
struct Shared {
    inboxes: Vec<Inbox>,
    /// Which cores have reported their main's outcome (each counts once).
    reported: Mutex<Vec<bool>>,
    ports: Arc<listen::Ports>,
    running: AtomicUsize,
    failure: Mutex<Option<CoresError>>,
}

impl Shared {
    /// Marks `core`'s outcome reported: whether this is the first report.
    fn reported(&self, core: CoreId) -> bool {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        !std::mem::replace(&mut reported[core.0], true)
    }

    /// A core's main returned: the last one stops every core.
    fn main_done(&self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.stop_all(false);
        }
    }

    /// A core failed: the first failure is kept, every core stops and every main is canceled.
    fn fail(&self, error: CoresError) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            *failure = Some(error);
        }
        drop(failure);
        self.stop_all(true);
    }

    fn stop_all(&self, cancel_main: bool) {
        for inbox in &self.inboxes {
            inbox.post(Message::Stop { cancel_main });
        }
    }
}

/// A core's view of the run: its id, the number of cores, and cross-core spawning. `Send`,
/// `Sync` and cheap to clone, so it can travel into another core's task.
#[derive(Clone)]
pub struct Core {
    id: CoreId,
    shared: Arc<Shared>,
}

impl Core {
    /// This core.
    pub fn id(&self) -> CoreId {
        self.id
    }

    /// How many cores the run has.
    pub fn count(&self) -> usize {
        self.shared.inboxes.len()
    }

    /// Every core of the run, in order.
    pub fn all(&self) -> impl Iterator<Item = CoreId> {
        (0..self.count()).map(CoreId)
    }

    /// Starts `body` as a task on core `target` (which may be this one) and returns its `Send`
    /// handle. `body` is `Send`; it is called on the target core, so the future it makes need
    /// not be. The target is woken through its inbox; once its run has stopped, the task joins
    /// as `Err(Canceled)` without running.
    ///
    /// Panics if `target` is not a core of this run.
    ///
    /// ```
    /// use ioswap::cores::Cores;
    /// # if !ioswap::Backend::Poll.is_compiled() { return; }
    /// let out = Cores::new()
    ///     .count(2)
    ///     .backend(ioswap::Backend::Poll)
    ///     .run(|_cx, core| async move {
    ///         if core.id().index() != 0 {
    ///             return Ok(Vec::new());
    ///         }
    ///         let tasks: Vec<_> = core
    ///             .all()
    ///             .map(|on| core.spawn_on(on, move |_cx| async move { Ok(on.index() * 10) }))
    ///             .collect();
    ///         let mut got = Vec::new();
    ///         for task in tasks {
    ///             got.push(task.await?);
    ///         }
    ///         Ok(got)
    ///     })
    ///     .unwrap();
    /// assert_eq!(out, vec![vec![0, 10], vec![]]);
    /// ```
    pub fn spawn_on<T, F, Fut>(&self, target: CoreId, body: F) -> RemoteTask<T>
    where
        T: Send + 'static,
        F: FnOnce(Cx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Canceled>> + 'static,
    {
        let inbox =
            self.shared.inboxes.get(target.0).unwrap_or_else(|| {
                panic!("spawn_on: {target} is not one of {} cores", self.count())
            });
        let (task, start) = remote::pair();
        // Dropped unrun if the inbox is closed: `start` then joins the task as canceled.
        inbox.post(Message::Spawn(Box::new(move |cx: &Cx| {
            start.start(cx, body)
        })));
        task
    }
}

impl Core {
    /// Binds a listener on this core to `addr` with `SO_REUSEPORT` (and `options` otherwise):
    /// every core that binds the same address gets its own listener, and the kernel spreads
    /// incoming connections among them, so each core accepts and serves its own. Port 0 means
    /// one free port for all cores: the first core to bind chooses it, the others wait for it.
    /// That holds per bind: the `k`-th port-0 bind of an address on each core shares one port,
    /// so binding again (after closing the first listeners, say) gets a fresh free port.
    ///
    /// ```
    /// use ioswap::cores::Cores;
    /// use ioswap::net::SocketOptions;
    /// # if !ioswap::Backend::Poll.is_compiled() { return; }
    /// let ports = Cores::new()
    ///     .count(2)
    ///     .backend(ioswap::Backend::Poll)
    ///     .run(|cx, core| async move {
    ///         let addr = "127.0.0.1:0".parse().unwrap();
    ///         let listener = core.bind_reuse_port(&cx, addr, SocketOptions::default()).await;
    ///         Ok(listener.and_then(|l| l.local_addr()).unwrap().port())
    ///     })
    ///     .unwrap();
    /// assert_eq!(ports[0], ports[1]);
    /// ```
    pub async fn bind_reuse_port(
        &self,
        cx: &Cx,
        addr: std::net::SocketAddr,
        options: io_core::op::SocketOptions,
    ) -> std::io::Result<io_core::TcpListener> {
        listen::bind(&self.shared.ports, self.id.0, cx, addr, options).await
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.id)
            .field("count", &self.count())
            .finish()
    }
}

/// A thread-per-core run: `count` cores (default: [`std::thread::available_parallelism`]), each
/// an executor on its own thread, pinned to the `index`-th CPU the process may run on (its
/// affinity mask: `taskset`, a cpuset; wrapping when there are more cores than CPUs) where the OS
/// allows (a refusal leaves it unpinned), with its own instance of `backend` (default:
/// [`Backend::from_env`]).
///
/// [`run`](Cores::run) calls `main` once per core and returns every core's value, in core order,
/// when every main has returned. Cores keep serving cross-core spawns until then.
///
/// On [`Backend::Fiber`] the cores are simulated: all of them are tasks of one fiber run on the
/// calling thread, on one virtual clock, and the [`seed`](Cores::seed) chooses the interleaving
/// (which core's ready task runs next), so a run is a function of its seed. There the default
/// count is 4, whatever the machine, so that a run does not depend on it.
///
/// ```
/// use ioswap::cores::Cores;
/// # if !ioswap::Backend::Fiber.is_compiled() { return; }
/// let run = |seed| {
///     Cores::new()
///         .count(3)
///         .backend(ioswap::Backend::Fiber)
///         .seed(seed)
///         .run(|cx, core| async move {
///             cx.sleep(1_000).await?; // virtual: no time passes
///             Ok((core.id().index(), cx.now_ms()))
///         })
///         .unwrap()
/// };
/// assert_eq!(run(7), vec![(0, 1_000), (1, 1_000), (2, 1_000)]);
/// ```
#[derive(Debug, Clone)]
pub struct Cores {
    count: Option<usize>,
    backend: Option<Backend>,
    pin: bool,
    seed: u64,
}

impl Default for Cores {
    fn default() -> Cores {
        Cores::new()
    }
}

impl Cores {
    /// One core per available CPU, the backend [`run`](crate::run) would pick, threads pinned.
    pub fn new() -> Cores {
        Cores {
            count: None,
            backend: None,
            pin: true,
            seed: 0,
        }
    }

    /// The number of cores.
    pub fn count(mut self, count: usize) -> Cores {
        self.count = Some(count);
        self
    }

    /// The backend every core runs (uring or poll; fiber simulates the cores on one thread).
    pub fn backend(mut self, backend: Backend) -> Cores {
        self.backend = Some(backend);
        self
    }

    /// Whether to pin each core's thread to its CPU, the `index`-th of the process's allowed set
    /// (default: yes).
    pub fn pin(mut self, pin: bool) -> Cores {
        self.pin = pin;
        self
    }

    /// The seed of a simulated run on fiber (default 0: plain FIFO); ignored elsewhere.
    pub fn seed(mut self, seed: u64) -> Cores {
        self.seed = seed;
        self
    }

    /// Runs `main` on every core; see [`Cores`]. A panic, a failed run or a canceled main on
    /// one core is returned with that core's id, after every other core's main was canceled and
    /// every core joined.
    pub fn run<T, F, Fut>(self, main: F) -> Result<Vec<T>, CoresError>
    where
        T: Send + 'static,
        F: Fn(Cx, Core) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Canceled>> + 'static,
    {
        let backend = match self.backend {
            Some(backend) => backend,
            None => Backend::from_env().map_err(|error| CoresError::Backend {
                core: CoreId(0),
                error,
            })?,
        };
        if backend == Backend::Blocking {
            return Err(CoresError::Unsupported(backend));
        }
        let count = self.count.unwrap_or_else(|| match backend {
            Backend::Fiber => SIMULATED_CORES,
            _ => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        });
        if count == 0 {
            return Err(CoresError::NoCores);
        }
        let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| Inbox::new()).unzip();
        let shared = Arc::new(Shared {
            reported: Mutex::new(vec![false; count]),
            inboxes,
            ports: Arc::new(listen::Ports::new(count)),
            running: AtomicUsize::new(count),
            failure: Mutex::new(None),
        });
        let main = Arc::new(main);
        let values = if backend == Backend::Fiber {
            simulate(self.seed, &shared, receivers, main)?
        } else {
            self.threads(backend, &shared, receivers, main)
        };
        let failure = shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match failure {
            Some(error) => Err(error),
            None => Ok(values
                .into_iter()
                .map(|value| value.expect("a core without a failure has its value"))
                .collect()),
        }
    }

    /// A thread per core; each core's value, `None` where it failed.
    fn threads<T, F, Fut>(
        &self,
        backend: Backend,
        shared: &Arc<Shared>,
        receivers: Vec<inbox::Receiver>,
        main: Arc<F>,
    ) -> Vec<Option<T>>
    where
        T: Send + 'static,
        F: Fn(Cx, Core) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Canceled>> + 'static,
    {
        // Core `i` is pinned to the `i`-th CPU the process may run on (wrapping when there are
        // more cores than CPUs), never outside that set; unknown (another OS), none is pinned.
        let cpus = if self.pin {
            io_core::allowed_cpus().ok().filter(|cpus| !cpus.is_empty())
        } else {
            None
        };
        let mut threads = Vec::with_capacity(receivers.len());
        for (index, receiver) in receivers.into_iter().enumerate() {
            let core = Core {
                id: CoreId(index),
                shared: shared.clone(),
            };
            let main = main.clone();
            let cpu = cpus.as_ref().map(|cpus| cpus[index % cpus.len()]);
            let started = std::thread::Builder::new()
                .name(format!("ioswap-core-{index}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        // Pinning is best effort: a refusal (a cgroup) runs unpinned.
                        let _ = io_core::pin_current_thread(cpu);
                    }
                    run_thread(backend, core, receiver, main)
                });
            match started {
                Ok(thread) => threads.push(Some(thread)),
                Err(err) => {
                    // This core never runs: its main counts as failed, the others stop.
                    threads.push(None);
                    shared.fail(CoresError::Thread {
                        core: CoreId(index),
                        message: format!("it could not be started: {err}"),
                    });
                }
            }
        }
        threads
            .into_iter()
            .enumerate()
            .map(|(index, thread)| match thread?.join() {
                Ok(value) => value,
                // A panic that escaped the core's own catch (its failure report, say): the core
                // failed, typed, rather than a panic of `run`.
                Err(payload) => {
                    shared.fail(CoresError::Thread {
                        core: CoreId(index),
                        message: format!("it panicked: {}", panic_message(&*payload)),
                    });
                    None
                }
            })
            .collect()
    }
}

/// The default number of simulated cores: fixed, so a simulated run does not depend on the
/// machine it runs on.
const SIMULATED_CORES: usize = 4;

/// Runs `count` cores of the backend [`run`](crate::run) picks; see [`Cores`].
///
/// ```
/// # if !ioswap::Backend::Poll.is_compiled() { return; }
/// # std::env::set_var(ioswap::BACKEND_VAR, "poll");
/// let ids = ioswap::run_cores(2, |_cx, core| async move { Ok(core.id().index()) }).unwrap();
/// assert_eq!(ids, vec![0, 1]);
/// ```
pub fn run_cores<T, F, Fut>(count: usize, main: F) -> Result<Vec<T>, CoresError>
where
    T: Send + 'static,
    F: Fn(Cx, Core) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, Canceled>> + 'static,
{
    Cores::new().count(count).run(main)
}

/// What a core runs, on its own thread or as a task of a simulated run: the user's main beside
/// the inbox's server, until every core's main has returned (or one failed). Its value, or
/// `None` after it reported its failure.
async fn core_main<T, F, Fut>(
    cx: Cx,
    core: Core,
    receiver: inbox::Receiver,
    main: Arc<F>,
) -> Option<T>
where
    F: Fn(Cx, Core) -> Fut + 'static,
    Fut: Future<Output = Result<T, Canceled>> + 'static,
    T: 'static,
{
    let id = core.id;
    let shared = core.shared.clone();
    let joined = match catch_unwind(AssertUnwindSafe(|| main(cx.clone(), core))) {
        Err(payload) => Ok(Err(panic_message(&*payload))),
        Ok(future) => {
            let user = cx.spawn_with(SpawnOptions::new().name("core main"), move |_| async move {
                Ok(CatchPanic(Box::pin(future)).await)
            });
            match user {
                Err(_) => Err(Canceled),
                Ok(user) => {
                    let server = cx.spawn_with(SpawnOptions::new().name("core inbox"), {
                        let main = user.task_ref();
                        move |cx| inbox::serve(cx, receiver, main)
                    });
                    let joined = user.await;
                    if let Ok(server) = server {
                        // Serves cross-core spawns until every core's main has returned (or one
                        // failed): the outcome is reported first, which may be what stops it.
                        report(&shared, id, &joined);
                        let _ = server.await;
                    }
                    joined
                }
            }
        }
    };
    report(&shared, id, &joined);
    match joined {
        Ok(Ok(Ok(value))) => Some(value),
        _ => None,
    }
}

/// Reports a core main's outcome to the run, once (a second report of the same outcome is
/// ignored: `main_done` only counts once per core through `Reported`).
fn report<T>(shared: &Shared, id: CoreId, joined: &Joined<T>) {
    if !shared.reported(id) {
        return;
    }
    match joined {
        Ok(Ok(Ok(_))) => shared.main_done(),
        Ok(Ok(Err(Canceled))) | Err(Canceled) => shared.fail(CoresError::Canceled { core: id }),
        Ok(Err(message)) => shared.fail(CoresError::Panicked {
            core: id,
            message: message.clone(),
        }),
    }
}

/// A core main, joined: its own result, inside a caught panic's message, inside the join.
type Joined<T> = Result<Result<Result<T, Canceled>, String>, Canceled>;

/// A future whose panic is caught and turned into its message.
struct CatchPanic<Fut>(Pin<Box<Fut>>);

impl<Fut: Future> Future for CatchPanic<Fut> {
    type Output = Result<Fut::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    }
}

/// One core's thread: its own backend runs [`core_main`]. Its value, or `None` after it
/// reported a failure.
fn run_thread<T, F, Fut>(
    backend: Backend,
    core: Core,
    receiver: inbox::Receiver,
    main: Arc<F>,
) -> Option<T>
where
    T: Send + 'static,
    F: Fn(Cx, Core) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, Canceled>> + 'static,
{
    let id = core.id;
    let shared = core.shared.clone();
    let ran = catch_unwind(AssertUnwindSafe(|| {
        backend.run(move |cx| async move { Ok(core_main(cx, core, receiver, main).await) })
    }));
    let failure = match ran {
        Ok(Ok(value)) => return value,
        Ok(Err(Error::Run(RunError::Panicked { message, .. }))) => {
            CoresError::Panicked { core: id, message }
        }
        Ok(Err(error)) => CoresError::Backend { core: id, error },
        Err(payload) => CoresError::Panicked {
            core: id,
            message: panic_message(&*payload),
        },
    };
    shared.reported(id);
    shared.fail(failure);
    None
}

/// Every core as a task of one fiber run with `seed`: one thread, one virtual clock, the seed
/// choosing among the ready tasks of every core. Each core's value, `None` where it failed.
#[cfg(feature = "fiber")]
fn simulate<T, F, Fut>(
    seed: u64,
    shared: &Arc<Shared>,
    receivers: Vec<inbox::Receiver>,
    main: Arc<F>,
) -> Result<Vec<Option<T>>, CoresError>
where
    T: Send + 'static,
    F: Fn(Cx, Core) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, Canceled>> + 'static,
{
    let shared = shared.clone();
    io_fiber::FiberIo::with_seed(seed)
        .run(move |cx| async move {
            let cores: Vec<_> = receivers
                .into_iter()
                .enumerate()
                .map(|(index, receiver)| {
                    let core = Core {
                        id: CoreId(index),
                        shared: shared.clone(),
                    };
                    let main = main.clone();
                    cx.spawn(move |cx| async move { Ok(core_main(cx, core, receiver, main).await) })
                })
                .collect();
            let mut values = Vec::with_capacity(cores.len());
            for core in cores {
                values.push(core.await?);
            }
            Ok(values)
        })
        .map_err(|error| CoresError::Simulation(Error::Run(error)))
}

#[cfg(not(feature = "fiber"))]
fn simulate<T, F>(
    _seed: u64,
    _shared: &Arc<Shared>,
    _receivers: Vec<inbox::Receiver>,
    _main: Arc<F>,
) -> Result<Vec<Option<T>>, CoresError> {
    Err(CoresError::Backend {
        core: CoreId(0),
        error: Error::NotCompiled("fiber"),
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_string())
}
