//! [`World`]: hosts and clients on one simulated network, with seeded faults, run to an end.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::rc::{Rc, Weak};

use futures_lite::FutureExt;
use io_core::{Canceled, Cx, SpawnOptions, Task};

use super::host::{Host, HostIo, Start};
use super::{Faults, HostId};
use crate::{DecisionLog, Divergence, Fiber, FiberIo, RunTrace, Scheduler};

/// What a host or client body returns: `Ok(())`, or an error that fails the run (an invariant
/// broken, an I/O error nobody handled). `?` works on `Canceled` and `io::Error`.
pub type Outcome = Result<(), Box<dyn Error>>;

/// A host's start function: called with the host's [`Cx`] and the world's [`Control`] when the
/// host boots, and again after each restart.
pub type HostStart = Rc<dyn Fn(Cx, Control) -> std::pin::Pin<Box<dyn Future<Output = Outcome>>>>;

type ClientStart = Box<dyn FnOnce(Cx, Control) -> std::pin::Pin<Box<dyn Future<Output = Outcome>>>>;

/// A simulated world: hosts that serve, clients that drive a workload, a network and a disk per
/// host, and the faults the seed draws. [`World::run`] returns when every client has returned.
///
/// Hosts get the addresses `10.0.0.1`, `10.0.0.2`, … in the order they are declared (servers
/// and clients alike); [`Control::ip`] resolves a name. Each host has its own disk and clock
/// offset, and its own tasks: a crash drops them all (none runs past the crash point) and a
/// restart runs its start function again on what its disk kept.
///
/// ```
/// use io_fiber::sim::{Faults, World};
/// use io_core::{TcpListener, TcpStream};
///
/// let report = World::new(7)
///     .host("echo", |cx, _world| async move {
///         let listener = TcpListener::bind(&cx, "0.0.0.0:7000".parse::<std::net::SocketAddr>()?).await?;
///         loop {
///             let (conn, _) = listener.accept().await?;
///             cx.spawn(move |_| async move {
///                 let echo = async {
///                     let (n, buf) = conn.read(Vec::with_capacity(64)).await;
///                     n?;
///                     conn.write_all(buf).await.0
///                 };
///                 let _ = echo.await; // an error ends only this connection
///                 Ok(())
///             })
///             .detach();
///         }
///     })
///     .client("test", |cx, world| async move {
///         let addr = std::net::SocketAddr::new(world.ip("echo"), 7000);
///         let conn = TcpStream::connect(&cx, addr).await?;
///         conn.write_all(b"hello".to_vec()).await.0?;
///         let (n, buf) = conn.read(Vec::with_capacity(64)).await;
///         n?;
///         assert_eq!(buf, b"hello");
///         Ok(())
///     })
///     .faults(Faults::none())
///     .run()
///     .unwrap();
/// assert_eq!(report.seed, 7);
/// assert!(report.now_ms >= 4); // two round trips of 1 ms one-way latency
/// ```
pub struct World {
    seed: u64,
    faults: Faults,
    hosts: Vec<(String, HostStart)>,
    /// The clients, and where each was declared (its task's spawn site in a trace).
    clients: Vec<(String, ClientStart, &'static std::panic::Location<'static>)>,
    time_limit_ms: u64,
    stdin: Vec<(String, Vec<u8>)>,
    scheduler: Scheduler,
    record_decisions: bool,
    record_trace: bool,
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldReport {
    /// The seed the run was drawn from.
    pub seed: u64,
    /// The virtual time when the last client returned.
    pub now_ms: u64,
    /// A hash of the whole run: the schedule and every world event. Same seed, same hash.
    pub trace_hash: u64,
    /// The faults the world injected, one line each (`"5210 ms: crash db-1"`).
    pub faults: Vec<String>,
    /// What each host or client wrote to its standard output, by name (those that wrote
    /// nothing are left out).
    pub stdout: BTreeMap<String, Vec<u8>>,
    /// What each wrote to its standard error, likewise.
    pub stderr: BTreeMap<String, Vec<u8>>,
    /// Every decision of the run, if [`World::record_decisions`] asked for them.
    pub decisions: Option<Box<DecisionLog>>,
    /// The run step by step, if [`World::record_trace`] asked for it.
    pub trace: Option<Box<RunTrace>>,
}

/// A failed run: why, with everything needed to replay it.
#[derive(Debug)]
pub struct SimError {
    /// The seed of the failing run.
    pub seed: u64,
    /// The virtual time of the failure.
    pub at_ms: u64,
    /// What failed.
    pub cause: String,
    /// The faults the world had injected by then, one line each.
    pub faults: Vec<String>,
    /// Every decision of the run, if [`World::record_decisions`] asked for them: replay the
    /// failure exactly with [`World::scheduler`]`(Scheduler::Replay(log))`, or shrink it
    /// ([`shrink`](crate::shrink)).
    pub decisions: Option<Box<DecisionLog>>,
    /// The run step by step, if [`World::record_trace`] asked for it.
    pub trace: Option<Box<RunTrace>>,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation failed with seed {} at {} ms: {}",
            self.seed, self.at_ms, self.cause
        )?;
        if self.faults.is_empty() {
            writeln!(f, "faults injected: none")?;
        } else {
            writeln!(f, "faults injected:")?;
            for line in &self.faults {
                writeln!(f, "  {line}")?;
            }
        }
        write!(
            f,
            "replay: run the same world with World::new({}) (same hosts, clients and faults)",
            self.seed
        )
    }
}

impl Error for SimError {}

/// The world, as its hosts and clients see it: names, and the test's own faults.
#[derive(Clone)]
pub struct Control {
    sim: Weak<Fiber>,
    names: Rc<Vec<(String, IpAddr)>>,
    /// The first `servers` names are hosts; the rest are clients.
    servers: usize,
}

impl Control {
    /// The address of the host named `name`. Panics on a name the world does not have (a typo
    /// in a test).
    pub fn ip(&self, name: &str) -> IpAddr {
        self.lookup(name)
            .unwrap_or_else(|| panic!("no host named {name:?} in this world"))
    }

    /// The address of the host named `name`, if there is one.
    pub fn lookup(&self, name: &str) -> Option<IpAddr> {
        self.names
            .iter()
            .find(|(host, _)| host == name)
            .map(|&(_, ip)| ip)
    }

    /// `ip(name)` with a port.
    pub fn addr(&self, name: &str, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip(name), port)
    }

    /// Crashes the host named `name` now (see [`World`]). It boots again after the faults'
    /// restart delay, or when [`Control::restart`] says so.
    pub fn crash(&self, name: &str) {
        if let (Some(fiber), Some(host)) = (self.sim.upgrade(), self.host(name)) {
            fiber.sim.crash_now(host);
        }
    }

    /// Boots the crashed host named `name` now.
    pub fn restart(&self, name: &str) {
        if let (Some(fiber), Some(host)) = (self.sim.upgrade(), self.host(name)) {
            fiber.sim.restart_now(host);
        }
    }

    /// Cuts the network from `from` to `to` (one way) until [`Control::heal`].
    pub fn partition(&self, from: &str, to: &str) {
        if let (Some(fiber), Some(from), Some(to)) =
            (self.sim.upgrade(), self.member(from), self.member(to))
        {
            fiber.sim.cut_now(from, to);
        }
    }

    /// Heals a cut made by [`Control::partition`].
    pub fn heal(&self, from: &str, to: &str) {
        if let (Some(fiber), Some(from), Some(to)) =
            (self.sim.upgrade(), self.member(from), self.member(to))
        {
            fiber.sim.heal_now(from, to);
        }
    }

    /// A host or client by name.
    fn member(&self, name: &str) -> Option<HostId> {
        self.names
            .iter()
            .position(|(host, _)| host == name)
            .map(|index| index + 1)
    }

    /// A host (not a client: clients are never crashed) by name.
    fn host(&self, name: &str) -> Option<HostId> {
        self.names
            .iter()
            .take(self.servers)
            .position(|(host, _)| host == name)
            .map(|index| index + 1)
    }
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("hosts", &self.names)
            .finish()
    }
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("seed", &self.seed)
            .field(
                "hosts",
                &self.hosts.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field(
                "clients",
                &self.clients.iter().map(|(n, _, _)| n).collect::<Vec<_>>(),
            )
            .field("faults", &self.faults)
            .finish()
    }
}

impl World {
    /// An empty world whose every choice is drawn from `seed`, with no faults and a time limit
    /// of one simulated day.
    pub fn new(seed: u64) -> World {
        World {
            seed,
            faults: Faults::none(),
            hosts: Vec::new(),
            clients: Vec::new(),
            time_limit_ms: 24 * 3_600_000,
            stdin: Vec::new(),
            scheduler: Scheduler::Random,
            record_decisions: false,
            record_trace: false,
        }
    }

    /// Records the run step by step (which task ran when, where it waited, the tasks' names
    /// and spawn sites), into [`WorldReport::trace`] or [`SimError::trace`]: what
    /// [`check_world_determinism`] compares.
    pub fn record_trace(mut self) -> World {
        self.record_trace = true;
        self
    }

    /// How the run picks among enabled tasks ([`Scheduler::Random`] unless set);
    /// `Scheduler::Replay(log)` replays a recorded run of this world. The log drives the
    /// replay: the world's seed matters only for what the log does not hold (hosts' clock
    /// skews, and the draws made after the log runs out), so keep the recording's seed.
    pub fn scheduler(mut self, scheduler: Scheduler) -> World {
        self.scheduler = scheduler;
        self
    }

    /// Records every decision of the run, into [`WorldReport::decisions`] or
    /// [`SimError::decisions`].
    pub fn record_decisions(mut self) -> World {
        self.record_decisions = true;
        self
    }

    /// Adds a host that runs `start` when it boots (and again after each restart). It serves
    /// until it returns (its sockets stay open) or the run ends.
    pub fn host<F, Fut>(mut self, name: &str, start: F) -> World
    where
        F: Fn(Cx, Control) -> Fut + 'static,
        Fut: Future<Output = Outcome> + 'static,
    {
        let start: HostStart = Rc::new(move |cx, world| Box::pin(start(cx, world)));
        self.hosts.push((name.to_string(), start));
        self
    }

    /// Adds a client: a host that runs `body` once and is never crashed. The run ends when
    /// every client has returned; a client's error fails it.
    #[track_caller]
    pub fn client<F, Fut>(mut self, name: &str, body: F) -> World
    where
        F: FnOnce(Cx, Control) -> Fut + 'static,
        Fut: Future<Output = Outcome> + 'static,
    {
        let body: ClientStart = Box::new(move |cx, world| Box::pin(body(cx, world)));
        let at = std::panic::Location::caller();
        self.clients.push((name.to_string(), body, at));
        self
    }

    /// The faults to inject ([`Faults::none`] unless set).
    pub fn faults(mut self, faults: Faults) -> World {
        self.faults = faults;
        self
    }

    /// A run still going at this virtual time fails (a workload stuck behind faults that keep
    /// coming would otherwise never end).
    pub fn time_limit_ms(mut self, ms: u64) -> World {
        self.time_limit_ms = ms;
        self
    }

    /// Gives the host or client `name` `bytes` as its standard input: its stdin reads give
    /// them, then end of file (a member without input reads end of file at once).
    pub fn stdin(mut self, name: &str, bytes: impl Into<Vec<u8>>) -> World {
        self.stdin.push((name.to_string(), bytes.into()));
        self
    }

    /// Runs the world until every client has returned.
    pub fn run(self) -> Result<WorldReport, SimError> {
        let World {
            seed,
            faults,
            hosts,
            clients,
            time_limit_ms,
            stdin,
            scheduler,
            record_decisions,
            record_trace,
        } = self;
        let names: Vec<(String, IpAddr)> = hosts
            .iter()
            .map(|(name, _)| name.clone())
            .chain(clients.iter().map(|(name, _, _)| name.clone()))
            .enumerate()
            .map(|(index, name)| (name, ip_of(index)))
            .collect();
        let skew = faults.clock_skew_ms;
        let skews = super::SplitMix64::new(seed ^ SKEW_STREAM);
        let members = names
            .iter()
            .map(|(name, ip)| {
                let offset = if skew == 0 {
                    0
                } else {
                    skews.below(skew.saturating_add(1))
                };
                Host::new(name.clone(), *ip, None, offset)
            })
            .collect();
        let servers = hosts.len();
        let mut io = FiberIo::world(seed, scheduler, faults.clone(), members);
        if record_decisions {
            io = io.record_decisions();
        }
        if record_trace {
            io = io.record_trace();
        }
        let fiber = io.fiber();
        for (name, bytes) in stdin {
            let member = names.iter().position(|(host, _)| *host == name);
            let member = member.unwrap_or_else(|| panic!("no host named {name:?} in this world"));
            fiber.sim.set_stdin(member + 1, bytes);
        }
        let control = Control {
            sim: Rc::downgrade(&fiber),
            names: Rc::new(names),
            servers: hosts.len(),
        };
        // Host starts, wrapped to report their failures.
        for (index, (name, start)) in hosts.into_iter().enumerate() {
            let host = index + 1;
            let control = control.clone();
            let weak = Rc::downgrade(&fiber);
            let wrapped: Start = Rc::new(move |cx: Cx| {
                let (start, control) = (start.clone(), control.clone());
                let weak = weak.clone();
                let name = name.clone();
                Box::pin(async move {
                    // Inside the catch: a start function that panics is the run's failure too.
                    let body = async move { start(cx, control).await };
                    let cause = match AssertUnwindSafe(body).catch_unwind().await {
                        Ok(Ok(())) => return Ok(()),
                        Ok(Err(err)) => format!("host {name:?} failed: {err}"),
                        Err(panic) => format!("host {name:?} {}", panic_text(&*panic)),
                    };
                    if let Some(fiber) = weak.upgrade() {
                        fiber.sim.fail(cause);
                    }
                    Ok(())
                }) as std::pin::Pin<Box<dyn Future<Output = Result<(), Canceled>>>>
            });
            fiber.sim.set_start(host, wrapped);
        }
        fiber.sim.plan(&faults, servers);
        let run = io.run(move |cx| async move {
            for host in 1..=servers {
                fiber.sim.boot(host);
            }
            let mut tasks: Vec<(String, Task<Outcome>)> = Vec::new();
            for (index, (name, body, at)) in clients.into_iter().enumerate() {
                let host = servers + 1 + index;
                let io: Rc<dyn io_core::Io> = Rc::new(HostIo::new(fiber.clone(), host));
                let client_cx = Cx::new(io);
                let control = control.clone();
                let opts = SpawnOptions::new().name(name.clone()).spawned_at(at);
                let task = client_cx.spawn_with(opts, move |cx| async move {
                    match AssertUnwindSafe(body(cx, control)).catch_unwind().await {
                        Ok(outcome) => Ok(outcome),
                        Err(panic) => Ok(Err(panic_text(&*panic).into())),
                    }
                });
                // The world is running: nothing refuses a spawn yet.
                let task = task.expect("a client spawns while the world runs");
                fiber.sim.add_client(task.task_ref());
                tasks.push((name, task));
            }
            let limit = fiber.clone();
            let watchdog = cx.spawn(move |cx| async move {
                cx.sleep_until(time_limit_ms).await?;
                limit.sim.fail(format!(
                    "still running at the time limit ({time_limit_ms} ms)"
                ));
                Ok(())
            });
            let mut failure = None;
            for (name, task) in tasks {
                let cause = match task.await {
                    Ok(Ok(())) => continue,
                    Ok(Err(err)) => format!("client {name:?} failed: {err}"),
                    Err(Canceled) => format!("client {name:?} was canceled"),
                };
                if failure.is_none() && fiber.tracer.is_on() {
                    fiber.tracer.failed(cx.now_ms(), cause.clone());
                }
                failure.get_or_insert((cause, cx.now_ms()));
            }
            drop(watchdog);
            // What hosts do while the run winds down is not the run's failure.
            fiber.sim.end();
            Ok((failure, cx.now_ms()))
        });
        let fiber = io.fiber();
        let faults_log = fiber.sim.log();
        let now = fiber.core.now_ms();
        // A host's failure comes first: the clients were canceled because of it.
        let failure = fiber.sim.failure().or_else(|| match &run {
            Ok((failure, _)) => failure.clone(),
            Err(err) => Some((err.to_string(), now)),
        });
        if record_trace {
            fiber.tracer.settle_failure(failure.as_ref());
        }
        let decisions = record_decisions.then(|| Box::new(io.decisions()));
        let trace = record_trace.then(|| Box::new(io.run_trace()));
        if let Some((cause, at_ms)) = failure {
            return Err(SimError {
                seed,
                at_ms,
                cause,
                faults: faults_log,
                decisions,
                trace,
            });
        }
        // No failure: the run returned.
        let now_ms = run.map_or(now, |(_, now_ms)| now_ms);
        let (mut stdout, mut stderr) = (BTreeMap::new(), BTreeMap::new());
        for (name, out, err) in fiber.sim.output() {
            if !out.is_empty() {
                stdout.insert(name.clone(), out);
            }
            if !err.is_empty() {
                stderr.insert(name, err);
            }
        }
        Ok(WorldReport {
            seed,
            now_ms,
            trace_hash: io.trace_hash(),
            faults: faults_log,
            stdout,
            stderr,
            decisions,
            trace,
        })
    }
}

/// Runs the world `build` makes for `seed` twice, tracing ([`World::record_trace`]), and
/// checks that the two runs are the same step for step; if not, the first step that differs
/// ([`check_determinism`](crate::check_determinism) does it for a plain fiber run).
///
/// ```
/// use io_fiber::sim::{check_world_determinism, World};
///
/// let world = |seed| {
///     World::new(seed).client("c", |cx, _world| async move {
///         cx.sleep(cx.random_below(10)).await?;
///         Ok(())
///     })
/// };
/// assert_eq!(check_world_determinism(3, world), Ok(()));
/// ```
pub fn check_world_determinism<F>(seed: u64, mut build: F) -> Result<(), Divergence>
where
    F: FnMut(u64) -> World,
{
    let mut run = || {
        let world = build(seed).record_trace();
        match world.run() {
            Ok(report) => report.trace,
            Err(error) => error.trace,
        }
        .expect("a world asked to record its trace has one")
    };
    let (first, second) = (run(), run());
    first.compare(&second)
}

/// Host `index` (0-based, in declaration order) is `10.0.0.{index + 1}`.
fn ip_of(index: usize) -> IpAddr {
    let n = index as u32 + 1;
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n))
}

const SKEW_STREAM: u64 = 0x736b_6577_0000_0001;

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}
