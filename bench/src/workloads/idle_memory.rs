//! idle-memory: the resident memory N parked tasks cost, per task.
//!
//! Each measurement runs in a fresh child process (this binary re-executed with the hidden
//! [`CHILD_COMMAND`]), so what earlier runs left in the allocator does not pollute the figure.
//! The child reads its resident set size from `/proc/self/status` once the runtime is up and
//! again once every task is parked, and prints both.
//!
//! A parked task is each runtime's cheapest honest wait: on ioswap, a suspend on a park nobody
//! readies (the protocol's one suspension point, which keeps cancellation and deadlock reports
//! working); on the peers, `std::future::pending()`. Every runner keeps the join handles in a
//! vector, as a program that means to stop its tasks later must.

use std::cell::Cell;
use std::process::Command;
use std::rc::Rc;
use std::time::Instant;

use ioswap::Backend;

use super::{check, Measurement, Size, Unit, Workload};
use crate::runner::{self, Runner, TokioClock};
use crate::BenchError;

/// The hidden subcommand the child process runs: `CHILD_COMMAND RUNNER TASKS`.
pub const CHILD_COMMAND: &str = "__idle-memory";

pub const WORKLOAD: Workload = Workload {
    name: "idle-memory",
    what: "1M tasks parked forever: resident memory per task (child process per run)",
    unit: Unit::BytesPerTask,
    has_floor: false,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => {
            Some("inline backend: a parked task blocks its spawner, so only one can park")
        }
        Runner::AsyncTask => Some("no parking"),
        _ => None,
    },
    note: |runner| match runner {
        Runner::Ioswap(_) => Some("suspended on a never-readied Park (cancelable)"),
        _ => Some("awaiting std::future::pending()"),
    },
    measure,
};

fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let start = Instant::now();
    let exe = std::env::current_exe().map_err(BenchError::Child)?;
    let output = Command::new(exe)
        .args([CHILD_COMMAND, &runner.key(), &size.tasks.to_string()])
        .output()
        .map_err(BenchError::Child)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(BenchError::ChildFailed {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let kib: Vec<u64> = stdout
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [before, after] = kib[..] else {
        return Err(BenchError::ChildFailed {
            status: format!("unexpected output {stdout:?}"),
            stderr: String::new(),
        });
    };
    check(
        after >= before,
        WORKLOAD.name,
        runner,
        "resident memory shrank",
    )?;
    Ok(Measurement {
        value: (after - before) as f64 * 1024.0 / size.tasks as f64,
        wall: start.elapsed(),
    })
}

/// The child process: parks `tasks` tasks on `runner`, prints the resident KiB before and after,
/// and exits at once (tearing a million tasks down is not what is measured).
pub fn child_main(runner: Runner, tasks: usize) -> Result<(), BenchError> {
    let parked = Rc::new(Cell::new(0usize));
    let report = |before: u64| -> Result<(), BenchError> {
        let after = resident_kib()?;
        println!("{before} {after}");
        std::process::exit(0);
    };
    match runner {
        Runner::Ioswap(backend) => {
            backend.run(move |cx| async move {
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
                if let Err(error) = before.and_then(report) {
                    eprintln!("{error}");
                    std::process::exit(1);
                }
                Ok(handles.len())
            })?;
        }
        Runner::Tokio => runner::tokio_local(TokioClock::Real, async move {
            let before = resident_kib()?;
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
            report(before)
        })??,
        Runner::Smol => runner::smol_local(|executor| async move {
            let before = resident_kib()?;
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
            report(before)
        })?,
        Runner::AsyncTask => return Err(BenchError::UnknownRunner(runner.key())),
    }
    Err(BenchError::ChildFailed {
        status: "the run returned before reporting".to_string(),
        stderr: String::new(),
    })
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
