//! spawn-join: spawn N trivial tasks, then join them all, in spawn order.

use ioswap::{Backend, Canceled};

use super::{check, Measurement, Size, Unit, Workload};
use crate::runner::{self, timed, Runner, TokioClock};
use crate::{floor, BenchError};

pub const WORKLOAD: Workload = Workload {
    name: "spawn-join",
    what: "spawn 1M trivial tasks (each returns its index), then join them all",
    unit: Unit::NsPerOp,
    opt_in: &[Runner::AsyncTask],
    warm_up: true,
    skip: |_| None,
    note: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => Some("inline: each task runs inside its spawn"),
        Runner::AsyncTask => Some("floor: bare async-task loop, no runtime"),
        _ => None,
    },
    counted: true,
    measure,
};

fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let n = size.tasks as u64;
    let (sum, wall) = timed(|| -> Result<u64, BenchError> {
        match runner {
            Runner::Ioswap(backend) => Ok(backend.run(move |cx| async move {
                let mut tasks = Vec::with_capacity(n as usize);
                for i in 0..n {
                    tasks.push(cx.spawn(move |_| async move { Ok::<_, Canceled>(i) }));
                }
                let mut sum = 0;
                for task in tasks {
                    sum += task.await?;
                }
                Ok(sum)
            })?),
            Runner::Tokio => runner::tokio_local(TokioClock::Real, async move {
                let mut tasks = Vec::with_capacity(n as usize);
                for i in 0..n {
                    tasks.push(tokio::task::spawn_local(async move { i }));
                }
                let mut sum = 0;
                for task in tasks {
                    sum += task.await.map_err(runner::tokio_join)?;
                }
                Ok(sum)
            })?,
            Runner::Smol => Ok(runner::smol_local(|executor| async move {
                let mut tasks = Vec::with_capacity(n as usize);
                for i in 0..n {
                    tasks.push(executor.spawn(async move { i }));
                }
                let mut sum = 0;
                for task in tasks {
                    sum += task.await;
                }
                sum
            })),
            Runner::AsyncTask => Ok(floor::block_on(async move {
                let mut tasks = Vec::with_capacity(n as usize);
                for i in 0..n {
                    tasks.push(floor::spawn(async move { i }));
                }
                let mut sum = 0;
                for task in tasks {
                    sum += task.await;
                }
                sum
            })),
            Runner::RawIoUring
            | Runner::StdPread
            | Runner::IoswapSim
            | Runner::Turmoil
            | Runner::Monoio
            | Runner::Compio => {
                unreachable!("spawn-join's floor is async-task")
            }
        }
    });
    let sum = sum?;
    check(
        sum == n * n.saturating_sub(1) / 2,
        WORKLOAD.name,
        runner,
        "wrong sum of results",
    )?;
    Ok(Measurement::per_op(wall, size.tasks))
}
