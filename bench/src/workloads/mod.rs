//! The workloads: what is measured, once per runner, with the same sizes for everyone.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runner::Runner;
use crate::BenchError;

mod cancel_storm;
mod echo_peers;
mod http_hello;
mod http_hello_cores;
mod idle_memory;
mod op_overhead;
mod ping_pong;
mod random_read;
mod sim;
mod spawn_join;
mod tcp_echo;
mod tcp_echo_cores;
mod timers;
mod virtual_time;
mod yield_ping;

/// One simulated hour, in ms: what virtual-time and sim-hour simulate in a full run.
pub const HOUR_MS: u64 = 3_600_000;

/// How big the workloads are.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Size {
    /// Tasks (or yields) per measurement: 1,000,000 in a full run.
    pub tasks: usize,
    /// The longest random sleep of the timer workloads, in ms: 1,000 in a full run.
    pub max_sleep_ms: u64,
    /// How long virtual-time and sim-hour simulate, in ms: one hour in a full run.
    pub simulated_ms: u64,
    /// Round trips of ping-pong: 100,000 in a full run.
    pub round_trips: usize,
    /// Ops of op-overhead: 1,000,000 in a full run.
    pub ops: usize,
    /// Messages per connection of tcp-echo and sim-echo, requests per connection of
    /// http-hello: 2,000 in a full run.
    pub messages: usize,
    /// Reads of random-read: 200,000 in a full run.
    pub reads: usize,
    /// Size of random-read's file, in MiB: 64 in a full run.
    pub file_mib: u64,
}

impl Size {
    /// The sizes the issue asks for.
    pub const FULL: Size = Size {
        tasks: 1_000_000,
        max_sleep_ms: 1_000,
        simulated_ms: HOUR_MS,
        round_trips: 100_000,
        ops: 1_000_000,
        messages: 2_000,
        reads: 200_000,
        file_mib: 64,
    };

    /// Small sizes for the CI smoke run: every code path, a few seconds in all.
    pub const QUICK: Size = Size {
        tasks: 10_000,
        max_sleep_ms: 20,
        simulated_ms: 10_000,
        round_trips: 2_000,
        ops: 10_000,
        messages: 20,
        reads: 4_000,
        file_mib: 4,
    };
}

/// What a workload's number means. Lower is better for every unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// Wall-clock nanoseconds per operation.
    #[serde(rename = "ns/op")]
    NsPerOp,
    /// Process CPU nanoseconds (user + system, all threads) per operation.
    #[serde(rename = "cpu ns/op")]
    CpuNsPerOp,
    /// Resident bytes per task.
    #[serde(rename = "B/task")]
    BytesPerTask,
    /// Wall seconds per simulated hour (a shorter simulated span is scaled up to the hour).
    #[serde(rename = "wall s/simulated h")]
    WallSecondsPerSimulatedHour,
}

impl Unit {
    /// The unit as printed.
    pub fn label(self) -> &'static str {
        match self {
            Unit::NsPerOp => "ns/op",
            Unit::CpuNsPerOp => "cpu ns/op",
            Unit::BytesPerTask => "B/task",
            Unit::WallSecondsPerSimulatedHour => "wall s/simulated h",
        }
    }
}

/// One measurement of one workload on one runner.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    /// The figure, in the workload's unit.
    pub value: f64,
    /// The wall time the measurement took.
    pub wall: Duration,
    /// How many operations it made, for a per-operation figure (`None` for the others).
    pub ops: Option<u64>,
}

impl Measurement {
    /// Wall time per operation.
    pub fn per_op(wall: Duration, ops: usize) -> Measurement {
        Measurement {
            value: wall.as_nanos() as f64 / ops as f64,
            wall,
            ops: Some(ops as u64),
        }
    }

    /// A figure that is not per operation (memory, CPU time, simulated hours).
    pub fn other(value: f64, wall: Duration) -> Measurement {
        Measurement {
            value,
            wall,
            ops: None,
        }
    }
}

/// A workload: a name, what it does, and how to measure it on a runner.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// The name used on the command line and in the table.
    pub name: &'static str,
    /// What one measurement does, in a line.
    pub what: &'static str,
    /// The unit of its figure.
    pub unit: Unit,
    /// The runners this workload also runs on that run only where named: the floors (no
    /// runtime: a bare async-task loop, raw io-uring, std system calls), the simulated
    /// worlds (ioswap-sim, turmoil) and the I/O peers (monoio, compio). tokio, smol and
    /// ioswap's backends always run it.
    pub opt_in: &'static [Runner],
    /// Whether the child process runs the workload once, unmeasured, before the measured run,
    /// so the measured run finds a warm heap (its pages already faulted in) as a long-running
    /// program would.
    pub warm_up: bool,
    /// Why this workload means nothing on a runner, if it does not (the table prints the reason
    /// instead of a number).
    pub skip: fn(Runner) -> Option<&'static str>,
    /// What to know when reading this runner's figure, if anything.
    pub note: fn(Runner) -> Option<&'static str>,
    /// Whether the bench also counts this workload's instructions per operation under
    /// callgrind (see [`crate::callgrind`]): the CPU-bound workloads, whose count is a figure
    /// of the code alone.
    pub counted: bool,
    /// One measurement.
    pub measure: fn(Runner, &Size) -> Result<Measurement, BenchError>,
}

impl Workload {
    /// The runners this workload is reported for (skipped ones included, with their reason).
    pub fn runners(&self) -> Vec<Runner> {
        Runner::all()
            .into_iter()
            .filter(|runner| !runner.is_opt_in() || self.opt_in.contains(runner))
            .collect()
    }
}

/// Every workload, in the order of the table.
pub fn all() -> Vec<Workload> {
    vec![
        spawn_join::WORKLOAD,
        yield_ping::WORKLOAD,
        cancel_storm::WORKLOAD,
        timers::VIRTUAL,
        timers::REAL,
        idle_memory::WORKLOAD,
        virtual_time::WORKLOAD,
        ping_pong::BOUNDED,
        ping_pong::RENDEZVOUS,
        op_overhead::WORKLOAD,
        tcp_echo::WORKLOAD,
        tcp_echo_cores::WORKLOAD,
        http_hello::WORKLOAD,
        http_hello_cores::WORKLOAD,
        random_read::WORKLOAD,
        sim::ECHO,
        sim::HOUR,
    ]
}

/// `Err` naming the workload when a run's result is not what it must be: a figure is only
/// reported for a run that did the work.
pub fn check(
    ok: bool,
    workload: &str,
    runner: Runner,
    what: impl Into<String>,
) -> Result<(), BenchError> {
    if ok {
        Ok(())
    } else {
        Err(BenchError::WrongResult {
            workload: workload.to_string(),
            runner: runner.key(),
            what: what.into(),
        })
    }
}

/// The usual skip reasons.
pub mod why {
    /// Blocking runs every spawned task inline; sleeping tasks serialize.
    pub const INLINE_SLEEPS: &str =
        "inline backend: each task's sleep blocks the spawner, so the sleeps run one after another";
    /// Fiber's clock is virtual: real-clock workloads do not apply.
    pub const VIRTUAL_CLOCK: &str = "virtual clock: see the virtual-clock workloads";
    /// Fiber serves I/O from its simulated world, not from the kernel.
    pub const SIMULATED_IO: &str =
        "simulated I/O: fiber serves ops from its simulated network and disk, not the kernel's, so its time is not comparable";
    /// Blocking runs every spawned task inline, so tasks that wait on each other never meet.
    pub const INLINE_NO_CONCURRENCY: &str =
        "inline backend: a spawned task runs to its end inside spawn, so tasks that wait on each other deadlock";
    /// Only the simulated worlds run the simulator workloads.
    pub const NOT_A_SIMULATOR: &str =
        "not a simulated world: these workloads compare ioswap-sim with turmoil";
    /// A simulated world runs only the simulator workloads.
    pub const SIMULATOR: &str = "a simulated world: see sim-echo and sim-hour";
    /// The runner has no virtual clock.
    pub const REAL_CLOCK_ONLY: &str = "real clock only: no virtual or paused clock";
}
