//! Instructions per operation, counted by callgrind: the bench's regression guard.
//!
//! A wall-clock figure moves with the machine's load; an instruction count does not. So for the
//! CPU-bound workloads ([`Workload::counted`]) the bench also runs each runner's child process
//! under `valgrind --tool=callgrind`, twice, at two fixed sizes (the second doubles every count of
//! [`COUNTED`]), and reports
//!
//! ```text
//! (instructions at 2n - instructions at n) / (ops at 2n - ops at n)
//! ```
//!
//! The difference cancels what does not scale with the work (process start, runtime set-up and
//! teardown), so the figure is the marginal cost of one operation, the same on every run of the
//! same binary. The sizes are fixed, whatever `--quick` or `--tasks` say, so figures from
//! different runs compare. Only user-space instructions are counted: the kernel's share of a
//! system call is not in them.
//!
//! Without valgrind on the machine, the bench says so once and reports wall times alone.

use std::process::Command;

use crate::child;
use crate::runner::Runner;
use crate::workloads::{Size, Workload};
use crate::BenchError;

/// The smaller of the two counted sizes (the larger doubles its counts): big enough that the
/// per-operation part dominates, small enough that callgrind's ~50× slowdown stays in seconds.
pub const COUNTED: Size = Size {
    tasks: 10_000,
    max_sleep_ms: 20,
    simulated_ms: 10_000,
    round_trips: 5_000,
    ops: 10_000,
    messages: 20,
    reads: 4_000,
    file_mib: 4,
};

/// The larger counted size: every count of [`COUNTED`] doubled, the spans kept.
fn doubled(size: Size) -> Size {
    Size {
        tasks: size.tasks * 2,
        round_trips: size.round_trips * 2,
        ops: size.ops * 2,
        messages: size.messages * 2,
        reads: size.reads * 2,
        ..size
    }
}

/// Whether `valgrind` can be run here.
pub fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Instructions per operation of `workload` on `runner` (see the module docs).
pub fn per_op(workload: &Workload, runner: Runner) -> Result<f64, BenchError> {
    let (small_ir, small_ops) = count(workload, runner, &COUNTED)?;
    let (large_ir, large_ops) = count(workload, runner, &doubled(COUNTED))?;
    if large_ops <= small_ops || large_ir < small_ir {
        return Err(callgrind_failed(format!(
            "the larger run was not larger: {small_ops} ops in {small_ir} instructions, then {large_ops} ops in {large_ir}"
        )));
    }
    Ok((large_ir - small_ir) as f64 / (large_ops - small_ops) as f64)
}

/// One cold run under callgrind: the instructions it executed and the operations it made.
fn count(workload: &Workload, runner: Runner, size: &Size) -> Result<(u64, u64), BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::Child)?;
    let mut command = Command::new("valgrind");
    command
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args(child::args(workload, runner, size)?)
        .arg(child::COLD);
    let (measurement, stderr) = child::run(command)?;
    let ops = measurement
        .ops
        .ok_or_else(|| callgrind_failed(format!("{} gives no operation count", workload.name)))?;
    Ok((collected(&stderr)?, ops))
}

/// The total from callgrind's closing summary (`==PID== Collected : N`).
fn collected(stderr: &str) -> Result<u64, BenchError> {
    stderr
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("Collected :")?;
            rest.trim().parse().ok()
        })
        .ok_or_else(|| callgrind_failed(format!("no instruction total in its output: {stderr}")))
}

fn callgrind_failed(what: String) -> BenchError {
    BenchError::ChildFailed {
        status: "callgrind".to_string(),
        stderr: what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_read_from_the_closing_summary() {
        let stderr = "==41== Callgrind, a call-graph generating cache profiler\n\
                      ==41== Events    : Ir\n==41== Collected : 1234567\n==41==\n==41== I   refs:      1,234,567";
        assert_eq!(collected(stderr).unwrap(), 1_234_567);
        assert!(collected("==41== Events    : Ir").is_err());
    }

    #[test]
    fn the_larger_size_doubles_counts_and_keeps_spans() {
        let large = doubled(COUNTED);
        assert_eq!(large.tasks, 2 * COUNTED.tasks);
        assert_eq!(large.round_trips, 2 * COUNTED.round_trips);
        assert_eq!(large.max_sleep_ms, COUNTED.max_sleep_ms);
        assert_eq!(large.simulated_ms, COUNTED.simulated_ms);
    }
}
