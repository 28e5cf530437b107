//! timers: N tasks, each sleeping a random deadline of up to a second, all joined.
//!
//! Two workloads: on a virtual clock (fiber's, tokio's `start_paused`), where the figure is pure
//! timer and scheduling cost, and on the real clock for runners that do not block, where the
//! wall time is at least the longest sleep by construction, so the figure is CPU time.

use std::time::Duration;

use ioswap::{Backend, Canceled};

use super::{check, why, Measurement, Size, Unit, Workload};
use crate::runner::{self, timed, Runner, TokioClock};
use crate::BenchError;

pub const VIRTUAL: Workload = Workload {
    name: "timers-virtual",
    what: "1M tasks sleep random deadlines up to 1 s on a virtual clock, all joined",
    unit: Unit::NsPerOp,
    opt_in: &[],
    warm_up: true,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Fiber) | Runner::Tokio => None,
        Runner::Ioswap(_) | Runner::Smol | Runner::Monoio | Runner::Compio => {
            Some(why::REAL_CLOCK_ONLY)
        }
        Runner::AsyncTask | Runner::RawIoUring | Runner::StdPread => Some("no timers"),
        Runner::IoswapSim | Runner::Turmoil => Some(why::SIMULATOR),
    },
    note: |runner| match runner {
        Runner::Tokio => Some("paused clock (start_paused): time jumps to the next timer"),
        _ => None,
    },
    counted: true,
    measure: measure_virtual,
};

pub const REAL: Workload = Workload {
    name: "timers-real",
    what: "1M tasks sleep random deadlines up to 1 s on the real clock, all joined",
    unit: Unit::CpuNsPerOp,
    opt_in: &[],
    warm_up: true,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => Some(why::INLINE_SLEEPS),
        Runner::Ioswap(Backend::Fiber) => Some(why::VIRTUAL_CLOCK),
        Runner::AsyncTask | Runner::RawIoUring | Runner::StdPread => Some("no timers"),
        Runner::IoswapSim | Runner::Turmoil => Some(why::SIMULATOR),
        _ => None,
    },
    note: |_| Some("process CPU time; the wall time is at least the longest sleep"),
    counted: false,
    measure: measure_real,
};

/// The same pseudo-random deadlines (1..=max ms) for every runner, from a fixed seed.
fn deadlines(size: &Size) -> Vec<u64> {
    let rng = io_core::SplitMix64::new(0x5eed);
    (0..size.tasks)
        .map(|_| 1 + rng.below(size.max_sleep_ms))
        .collect()
}

/// Runs every deadline as a sleeping task and joins them all; returns how many woke and the
/// clock reading at the end (virtual ms on a virtual clock).
fn sleep_all(
    runner: Runner,
    clock: TokioClock,
    deadlines: Vec<u64>,
) -> Result<(usize, u64), BenchError> {
    match runner {
        Runner::Ioswap(backend) => Ok(backend.run(move |cx| async move {
            let start = cx.now_ms();
            let mut tasks = Vec::with_capacity(deadlines.len());
            for ms in deadlines {
                tasks.push(cx.spawn(move |cx| async move { cx.sleep(ms).await }));
            }
            let mut woke = 0;
            for task in tasks {
                woke += usize::from(task.await == Ok::<_, Canceled>(()));
            }
            Ok((woke, cx.now_ms() - start))
        })?),
        Runner::Tokio => runner::tokio_local(clock, async move {
            let start = tokio::time::Instant::now();
            let mut tasks = Vec::with_capacity(deadlines.len());
            for ms in deadlines {
                tasks.push(tokio::task::spawn_local(tokio::time::sleep(
                    Duration::from_millis(ms),
                )));
            }
            let mut woke = 0;
            for task in tasks {
                woke += usize::from(task.await.is_ok());
            }
            (woke, start.elapsed().as_millis() as u64)
        }),
        Runner::Smol => Ok(runner::smol_local(|executor| async move {
            let start = std::time::Instant::now();
            let mut tasks = Vec::with_capacity(deadlines.len());
            for ms in deadlines {
                tasks.push(executor.spawn(smol::Timer::after(Duration::from_millis(ms))));
            }
            for task in &mut tasks {
                task.await;
            }
            (tasks.len(), start.elapsed().as_millis() as u64)
        })),
        Runner::AsyncTask
        | Runner::RawIoUring
        | Runner::StdPread
        | Runner::IoswapSim
        | Runner::Turmoil
        | Runner::Monoio
        | Runner::Compio => {
            unreachable!("the timer workloads have no floor runner")
        }
    }
}

fn measure_virtual(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let deadlines = deadlines(size);
    let last = deadlines.iter().copied().max().unwrap_or(0);
    let (outcome, wall) = timed(|| sleep_all(runner, TokioClock::Paused, deadlines));
    let (woke, clock_ms) = outcome?;
    check(
        woke == size.tasks,
        VIRTUAL.name,
        runner,
        "not every sleep ended",
    )?;
    // The virtual clock ends at the latest deadline (tokio may round up by its 1 ms tick).
    check(
        (last..=last + 1).contains(&clock_ms),
        VIRTUAL.name,
        runner,
        format!("the clock ended at {clock_ms} ms, not at the last deadline {last} ms"),
    )?;
    Ok(Measurement::per_op(wall, size.tasks))
}

fn measure_real(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let deadlines = deadlines(size);
    let last = deadlines.iter().copied().max().unwrap_or(0);
    let cpu_before = cpu_time()?;
    let (outcome, wall) = timed(|| sleep_all(runner, TokioClock::Real, deadlines));
    let cpu = cpu_time()?.saturating_sub(cpu_before);
    let (woke, clock_ms) = outcome?;
    check(
        woke == size.tasks,
        REAL.name,
        runner,
        "not every sleep ended",
    )?;
    check(
        clock_ms >= last,
        REAL.name,
        runner,
        format!("the run ended after {clock_ms} ms, before the last deadline {last} ms"),
    )?;
    Ok(Measurement::other(
        cpu.as_nanos() as f64 / size.tasks as f64,
        wall,
    ))
}

/// CPU time (user + system) of this process so far, every thread included, from
/// `/proc/self/stat`. Its fields 14 and 15 count clock ticks of `USER_HZ`, which Linux fixes at
/// 100 per second for user space, so the resolution is 10 ms.
fn cpu_time() -> Result<Duration, BenchError> {
    const USER_HZ: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(BenchError::Proc)?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so fields 14 and 15 are at 11 and 12.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Ok(Duration::from_millis((user + system) * 1_000 / USER_HZ)),
        _ => Err(BenchError::ProcFormat("/proc/self/stat")),
    }
}
