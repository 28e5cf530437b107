//! yield-ping: two tasks yielding to each other, N yields in all.

use std::cell::Cell;
use std::rc::Rc;

use ioswap::Backend;

use super::{check, Measurement, Size, Unit, Workload};
use crate::runner::{self, timed, Runner, TokioClock};
use crate::BenchError;

pub const WORKLOAD: Workload = Workload {
    name: "yield-ping",
    what: "two tasks yield to each other, 1M yields in all (500k each)",
    unit: Unit::NsPerOp,
    opt_in: &[],
    warm_up: true,
    skip: |_| None,
    note: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => {
            Some("inline: the tasks run one after the other; each yield re-polls the same task")
        }
        Runner::Tokio => Some("tokio::task::yield_now defers the wake to the driver"),
        _ => None,
    },
    counted: true,
    measure,
};

fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let each = size.tasks / 2;
    // Both tasks count into one cell, so the check sees every yield that returned.
    let counted = Rc::new(Cell::new(0usize));
    let yields = counted.clone();
    let (outcome, wall) = timed(|| -> Result<(), BenchError> {
        match runner {
            Runner::Ioswap(backend) => backend.run(move |cx| async move {
                let pinger = |yields: Rc<Cell<usize>>| {
                    move |cx: ioswap::Cx| async move {
                        for _ in 0..each {
                            cx.yield_now().await?;
                            yields.set(yields.get() + 1);
                        }
                        Ok(())
                    }
                };
                let a = cx.spawn(pinger(yields.clone()));
                let b = cx.spawn(pinger(yields.clone()));
                a.await?;
                b.await?;
                Ok(())
            })?,
            Runner::Tokio => runner::tokio_local(TokioClock::Real, async move {
                let pinger = |yields: Rc<Cell<usize>>| async move {
                    for _ in 0..each {
                        tokio::task::yield_now().await;
                        yields.set(yields.get() + 1);
                    }
                };
                let a = tokio::task::spawn_local(pinger(yields.clone()));
                let b = tokio::task::spawn_local(pinger(yields.clone()));
                a.await.map_err(runner::tokio_join)?;
                b.await.map_err(runner::tokio_join)
            })??,
            Runner::Smol => runner::smol_local(|executor| async move {
                let pinger = |yields: Rc<Cell<usize>>| async move {
                    for _ in 0..each {
                        futures_lite::future::yield_now().await;
                        yields.set(yields.get() + 1);
                    }
                };
                let a = executor.spawn(pinger(yields.clone()));
                let b = executor.spawn(pinger(yields.clone()));
                a.await;
                b.await;
            }),
            Runner::AsyncTask
            | Runner::RawIoUring
            | Runner::StdPread
            | Runner::IoswapSim
            | Runner::Turmoil
            | Runner::Monoio
            | Runner::Compio => {
                unreachable!("yield-ping has no floor runner")
            }
        }
        Ok(())
    });
    outcome?;
    check(
        counted.get() == 2 * each,
        WORKLOAD.name,
        runner,
        "yields lost",
    )?;
    Ok(Measurement::per_op(wall, 2 * each))
}
