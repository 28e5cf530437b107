//! cancel-storm: spawn N tasks that sleep for an hour, wait until all of them sleep, cancel them
//! all, join them all.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use ioswap::{Backend, Canceled};

use super::{check, why, Measurement, Size, Unit, Workload};
use crate::runner::{self, timed, Runner, TokioClock};
use crate::BenchError;

/// Long enough that no sleep ends during a run.
const SLEEP: Duration = Duration::from_secs(3_600);

pub const WORKLOAD: Workload = Workload {
    name: "cancel-storm",
    what: "spawn 1M tasks that sleep 1 h, let all start sleeping, cancel all, join all",
    unit: Unit::NsPerOp,
    opt_in: &[],
    warm_up: true,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => Some(why::INLINE_SLEEPS),
        _ => None,
    },
    note: |runner| match runner {
        Runner::Tokio => Some("abort() all, then await all"),
        Runner::Smol => Some("Task::cancel().await, task by task (its cancel-and-wait)"),
        _ => None,
    },
    counted: true,
    measure,
};

fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let n = size.tasks;
    let (canceled, wall) = timed(|| -> Result<usize, BenchError> {
        // Each task counts itself in before it sleeps; the spawner yields until all have, so the
        // cancels land on sleeping tasks with armed timers, not on tasks that never ran.
        let started = Rc::new(Cell::new(0usize));
        match runner {
            Runner::Ioswap(backend) => Ok(backend.run(move |cx| async move {
                let mut tasks = Vec::with_capacity(n);
                for _ in 0..n {
                    let started = started.clone();
                    tasks.push(cx.spawn(move |cx| async move {
                        started.set(started.get() + 1);
                        cx.sleep(SLEEP.as_millis() as u64).await
                    }));
                }
                while started.get() < n {
                    cx.yield_now().await?;
                }
                for task in &tasks {
                    task.cancel();
                }
                let mut canceled = 0;
                for task in tasks {
                    canceled += usize::from(task.await == Err(Canceled));
                }
                Ok(canceled)
            })?),
            Runner::Tokio => runner::tokio_local(TokioClock::Real, async move {
                let mut tasks = Vec::with_capacity(n);
                for _ in 0..n {
                    let started = started.clone();
                    tasks.push(tokio::task::spawn_local(async move {
                        started.set(started.get() + 1);
                        tokio::time::sleep(SLEEP).await;
                    }));
                }
                while started.get() < n {
                    tokio::task::yield_now().await;
                }
                for task in &tasks {
                    task.abort();
                }
                let mut canceled = 0;
                for task in tasks {
                    canceled += usize::from(task.await.is_err_and(|e| e.is_cancelled()));
                }
                canceled
            }),
            Runner::Smol => Ok(runner::smol_local(|executor| async move {
                let mut tasks = Vec::with_capacity(n);
                for _ in 0..n {
                    let started = started.clone();
                    tasks.push(executor.spawn(async move {
                        started.set(started.get() + 1);
                        smol::Timer::after(SLEEP).await;
                    }));
                }
                while started.get() < n {
                    futures_lite::future::yield_now().await;
                }
                let mut canceled = 0;
                for task in tasks {
                    canceled += usize::from(task.cancel().await.is_none());
                }
                canceled
            })),
            Runner::AsyncTask
            | Runner::RawIoUring
            | Runner::StdPread
            | Runner::IoswapSim
            | Runner::Turmoil
            | Runner::Monoio
            | Runner::Compio => {
                unreachable!("cancel-storm has no floor runner")
            }
        }
    });
    check(
        canceled? == n,
        WORKLOAD.name,
        runner,
        "not every task was canceled",
    )?;
    Ok(Measurement::per_op(wall, n))
}
