//! Who runs a workload, and how one measurement is started on each of them.

use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ioswap::Backend;
use smol::LocalExecutor;

use crate::BenchError;

/// One runtime a workload runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// An ioswap backend, through the public `Backend::run`.
    Ioswap(Backend),
    /// tokio's current-thread runtime with a `LocalSet` (`spawn_local`): its single-threaded
    /// setup, the fair peer of a single-threaded backend.
    Tokio,
    /// smol's `LocalExecutor`, driven by `smol::block_on` (which also drives its timers).
    Smol,
    /// A bare async-task loop with no runtime around it: the floor for spawn + join.
    AsyncTask,
    /// The io-uring crate used directly, no executor, in a workload's shape: the floor under
    /// uring's per-op cost and under its sockets and file reads (`uring_floor.rs`).
    RawIoUring,
    /// Plain blocking system calls in a loop on the thread (`pread`): the floor for file reads.
    StdPread,
    /// ioswap's simulated world (`ioswap::sim::World`, on the fiber backend): hosts on a
    /// simulated network, the peer of turmoil.
    IoswapSim,
    /// turmoil's `Sim`: hosts on its simulated network, each a tokio runtime on a paused clock.
    Turmoil,
    /// monoio on its io_uring driver: a thread-per-core runtime (one runtime per thread, no
    /// work stealing), completion-based like ioswap's uring backend.
    Monoio,
    /// compio's runtime: its io_uring driver where the kernel has one, its poll driver
    /// otherwise; single-threaded, completion-based.
    Compio,
}

impl Runner {
    /// The runners every workload considers: each compiled ioswap backend, then the peers.
    pub fn all() -> Vec<Runner> {
        let mut runners: Vec<Runner> = Backend::compiled()
            .into_iter()
            .map(Runner::Ioswap)
            .collect();
        runners.extend([
            Runner::Tokio,
            Runner::Smol,
            Runner::AsyncTask,
            Runner::RawIoUring,
            Runner::StdPread,
            Runner::IoswapSim,
            Runner::Turmoil,
            Runner::Monoio,
            Runner::Compio,
        ]);
        runners
    }

    /// Why this runner cannot run on this machine, if it cannot: io_uring may be missing from
    /// the kernel or forbidden (seccomp, memlock limits), and then its row says so.
    pub fn unavailable(self) -> Option<String> {
        match self {
            Runner::Ioswap(Backend::Uring) | Runner::RawIoUring | Runner::Monoio => {
                ioswap::UringIo::probe()
                    .err()
                    .map(|error| format!("io_uring unavailable here: {error}"))
            }
            _ => None,
        }
    }

    /// Whether this runner runs only the workloads that list it in their `opt_in`: the floors,
    /// the simulated worlds and the I/O peers (monoio, compio), which have no counterpart of the
    /// scheduling workloads worth a row.
    pub fn is_opt_in(self) -> bool {
        self.is_floor() || self.is_simulator() || self.is_io_peer()
    }

    /// Whether this runner is a completion-based I/O runtime measured only on the I/O
    /// workloads that list it: monoio and compio.
    pub fn is_io_peer(self) -> bool {
        matches!(self, Runner::Monoio | Runner::Compio)
    }

    /// Whether this runner is a floor (no runtime), run only by the workloads that list it.
    pub fn is_floor(self) -> bool {
        matches!(
            self,
            Runner::AsyncTask | Runner::RawIoUring | Runner::StdPread
        )
    }

    /// Whether this runner is a simulated world, run only by the workloads that list it.
    pub fn is_simulator(self) -> bool {
        matches!(self, Runner::IoswapSim | Runner::Turmoil)
    }

    /// Whether this runner is a peer (what ratios are taken against): the runtimes, and turmoil
    /// for the simulators.
    pub fn is_peer(self) -> bool {
        matches!(
            self,
            Runner::Tokio | Runner::Smol | Runner::Turmoil | Runner::Monoio | Runner::Compio
        )
    }

    /// The short name used in the table, the JSON and on the command line of the child process.
    pub fn key(self) -> String {
        match self {
            Runner::Ioswap(backend) => format!("ioswap-{}", backend.name()),
            Runner::Tokio => "tokio".to_string(),
            Runner::Smol => "smol".to_string(),
            Runner::AsyncTask => "async-task".to_string(),
            Runner::RawIoUring => "raw-io-uring".to_string(),
            Runner::StdPread => "std-pread".to_string(),
            Runner::IoswapSim => "ioswap-sim".to_string(),
            Runner::Turmoil => "turmoil".to_string(),
            Runner::Monoio => "monoio".to_string(),
            Runner::Compio => "compio".to_string(),
        }
    }

    /// The runner named by [`Runner::key`].
    pub fn from_key(key: &str) -> Result<Runner, BenchError> {
        Runner::all()
            .into_iter()
            .find(|runner| runner.key() == key)
            .ok_or_else(|| BenchError::UnknownRunner(key.to_string()))
    }
}

impl fmt::Display for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// Which clock tokio runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokioClock {
    /// The real monotonic clock.
    Real,
    /// `start_paused`: time stands still while tasks run and jumps to the next timer when the
    /// runtime would otherwise sleep, like fiber's virtual clock.
    Paused,
}

/// Runs `main` on a fresh tokio current-thread runtime inside a `LocalSet`.
pub fn tokio_local<F: Future>(clock: TokioClock, main: F) -> Result<F::Output, BenchError> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time().enable_io();
    if clock == TokioClock::Paused {
        builder.start_paused(true);
    }
    let runtime = builder.build().map_err(BenchError::TokioRuntime)?;
    let local = tokio::task::LocalSet::new();
    Ok(local.block_on(&runtime, main))
}

/// Runs the future `main` builds on a fresh smol `LocalExecutor`, which it receives to spawn on.
pub fn smol_local<F, Fut>(main: F) -> Fut::Output
where
    F: FnOnce(Rc<LocalExecutor<'static>>) -> Fut,
    Fut: Future,
{
    let executor = Rc::new(LocalExecutor::new());
    smol::block_on(executor.run(main(executor.clone())))
}

/// Runs `f` and returns its value and the wall time it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// tokio's multi-thread runtime with a worker per CPU, as `#[tokio::main]` builds it.
pub fn tokio_multi_thread() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus)
        .enable_io()
        .enable_time()
        .build()
}

/// The error a peer's join gives, as a bench error.
pub fn tokio_join(error: tokio::task::JoinError) -> BenchError {
    BenchError::Peer(format!("tokio join: {error}"))
}
