//! idle-memory: the resident memory N parked tasks cost, per task.
//!
//! Like every measurement it runs in a fresh child process (see [`crate::child`]), here without a
//! warm-up pass, so nothing earlier runs left in the allocator pollutes the figure. It reads the
//! resident set size from `/proc/self/status` once the runtime is up and again once every task
//! is parked. Tearing the parked tasks down afterwards is not measured.
//!
//! A parked task is each runtime's cheapest honest wait: on ioswap, a suspend on a park nobody
//! readies (the protocol's one suspension point, which keeps cancellation and deadlock reports
//! working); on the peers, `std::future::pending()`. Every runner keeps the join handles in a
//! vector, as a program that means to stop its tasks later must.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use ioswap::Backend;

use super::{check, why, Measurement, Size, Unit, Workload};
use crate::runner::{self, Runner, TokioClock};
use crate::BenchError;

pub const WORKLOAD: Workload = Workload {
    name: "idle-memory",
    what: "1M tasks parked forever: resident memory per task (child process per run)",
    unit: Unit::BytesPerTask,
    opt_in: &[],
    warm_up: false,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => {
            Some("inline backend: a parked task blocks its spawner, so only one can park")
        }
        Runner::AsyncTask | Runner::RawIoUring | Runner::StdPread => Some("no parking"),
        Runner::IoswapSim | Runner::Turmoil => Some(why::SIMULATOR),
        _ => None,
    },
    note: |runner| match runner {
        Runner::Ioswap(_) => Some("suspended on a never-readied Park (cancelable)"),
        _ => Some("awaiting std::future::pending()"),
    },
    counted: false,
    measure,
};

/// Parks `size.tasks` tasks on `runner` and returns the resident memory they added, per task.
/// Always runs in a fresh child process (see the module docs).
fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let tasks = size.tasks;
    let parked = Rc::new(Cell::new(0usize));
    let start = Instant::now();
    let (before, after) = match runner {
        Runner::Ioswap(backend) => backend.run(move |cx| async move {
            let before = resident_kib();
            let mut handles = Vec::with_capacity(tasks);
            for _ in 0..tasks {
                let parked = parked.clone();
                handles.push(cx.spawn(move |cx| async move {
                    parked.set(parked.get() + 1);
                    let park = cx.park("idle");
                    cx.suspend(park).await
                }));
            }
            while parked.get() < tasks {
                cx.yield_now().await?;
            }
            Ok((before, resident_kib()))
        })?,
        Runner::Tokio => runner::tokio_local(TokioClock::Real, async move {
            let before = resident_kib();
            let mut handles = Vec::with_capacity(tasks);
            for _ in 0..tasks {
                let parked = parked.clone();
                handles.push(tokio::task::spawn_local(async move {
                    parked.set(parked.get() + 1);
                    std::future::pending::<()>().await;
                }));
            }
            while parked.get() < tasks {
                tokio::task::yield_now().await;
            }
            (before, resident_kib())
        })?,
        Runner::Smol => runner::smol_local(|executor| async move {
            let before = resident_kib();
            let mut handles = Vec::with_capacity(tasks);
            for _ in 0..tasks {
                let parked = parked.clone();
                handles.push(executor.spawn(async move {
                    parked.set(parked.get() + 1);
                    std::future::pending::<()>().await;
                }));
            }
            while parked.get() < tasks {
                futures_lite::future::yield_now().await;
            }
            (before, resident_kib())
        }),
        Runner::AsyncTask
        | Runner::RawIoUring
        | Runner::StdPread
        | Runner::IoswapSim
        | Runner::Turmoil
        | Runner::Monoio
        | Runner::Compio => {
            unreachable!("idle-memory has no floor runner")
        }
    };
    let (before, after) = (before?, after?);
    check(
        after >= before,
        WORKLOAD.name,
        runner,
        "resident memory shrank",
    )?;
    Ok(Measurement::other(
        (after - before) as f64 * 1024.0 / tasks as f64,
        start.elapsed(),
    ))
}

/// This process's resident set size in KiB (`VmRSS` in `/proc/self/status`).
fn resident_kib() -> Result<u64, BenchError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(BenchError::Proc)?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or(BenchError::ProcFormat("/proc/self/status"))
}
