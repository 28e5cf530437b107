//! virtual-time: one simulated hour with 10,000 timer events per simulated second.
//!
//! 100 tasks each wake every 10 ms, phase-shifted so that 10 of them fire in every millisecond:
//! the clock moves 3.6 million times and 36 million sleeps end. The figure is the wall time per
//! timer event; the note gives the wall time of the whole simulated hour.

use std::time::Duration;

use ioswap::Backend;

use super::{check, why, Measurement, Size, Unit, Workload};
use crate::runner::{self, timed, Runner, TokioClock};
use crate::BenchError;

const TASKS: u64 = 100;
const PERIOD_MS: u64 = 10;

pub const WORKLOAD: Workload = Workload {
    name: "virtual-time",
    what: "one simulated hour, 10,000 timer events per simulated second (100 tasks, 10 ms period)",
    unit: Unit::NsPerOp,
    opt_in: &[],
    warm_up: false,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Fiber) | Runner::Tokio => None,
        Runner::Ioswap(_) | Runner::Smol | Runner::Monoio | Runner::Compio => {
            Some(why::REAL_CLOCK_ONLY)
        }
        Runner::AsyncTask | Runner::RawIoUring | Runner::StdPread => Some("no timers"),
        Runner::IoswapSim | Runner::Turmoil => Some(why::SIMULATOR),
    },
    note: |runner| match runner {
        Runner::Tokio => Some("paused clock (start_paused)"),
        _ => None,
    },
    counted: false,
    measure,
};

/// Events of one task: it wakes at `phase`, `phase + PERIOD_MS`, … up to `end_ms`.
fn events_of(phase: u64, end_ms: u64) -> u64 {
    if phase > end_ms {
        0
    } else {
        (end_ms - phase) / PERIOD_MS + 1
    }
}

fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let end_ms = size.simulated_ms;
    // Task i wakes at i % PERIOD_MS + 1, then every PERIOD_MS: PERIOD_MS tasks per millisecond.
    let phases: Vec<u64> = (0..TASKS).map(|i| i % PERIOD_MS + 1).collect();
    let expected: u64 = phases.iter().map(|&p| events_of(p, end_ms)).sum();
    let (events, wall) = timed(|| -> Result<u64, BenchError> {
        match runner {
            Runner::Ioswap(backend) => Ok(backend.run(move |cx| async move {
                let tasks: Vec<_> = phases
                    .into_iter()
                    .map(|phase| {
                        cx.spawn(move |cx| async move {
                            let (mut at, mut events) = (phase, 0u64);
                            while at <= end_ms {
                                cx.sleep_until(at).await?;
                                events += 1;
                                at += PERIOD_MS;
                            }
                            Ok(events)
                        })
                    })
                    .collect();
                let mut events = 0;
                for task in tasks {
                    events += task.await?;
                }
                Ok(events)
            })?),
            Runner::Tokio => runner::tokio_local(TokioClock::Paused, async move {
                let start = tokio::time::Instant::now();
                let tasks: Vec<_> = phases
                    .into_iter()
                    .map(|phase| {
                        tokio::task::spawn_local(async move {
                            let (mut at, mut events) = (phase, 0u64);
                            while at <= end_ms {
                                tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                                events += 1;
                                at += PERIOD_MS;
                            }
                            events
                        })
                    })
                    .collect();
                let mut events = 0;
                for task in tasks {
                    events += task.await.map_err(runner::tokio_join)?;
                }
                Ok(events)
            })?,
            Runner::Smol
            | Runner::AsyncTask
            | Runner::RawIoUring
            | Runner::StdPread
            | Runner::IoswapSim
            | Runner::Turmoil
            | Runner::Monoio
            | Runner::Compio => {
                unreachable!("virtual-time needs a virtual clock")
            }
        }
    });
    let events = events?;
    check(
        events == expected,
        WORKLOAD.name,
        runner,
        format!("{events} events, expected {expected}"),
    )?;
    Ok(Measurement::per_op(wall, expected as usize))
}
