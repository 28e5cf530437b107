//! Every measurement runs in a fresh child process: this binary, re-executed with the hidden
//! [`COMMAND`]. So no runner inherits a heap shaped (or grown, or trimmed) by the runner before
//! it, and each sample starts from the same state whatever ran earlier.
//!
//! The child runs the workload once unmeasured when the workload asks for a warm-up, then once
//! measured, and prints `VALUE WALL_NS` on one line.
//!
//! The child runs with glibc's heap trimming off ([`MALLOC_TUNABLES`]), so the memory the
//! warm-up pass freed stays mapped and the measured pass reuses it, as a long-running program
//! does. Without it, glibc hands the pages back to the kernel at the end of the warm-up and the
//! measured pass spends a third of its time in page faults zeroing them again: a figure of the
//! kernel and of each runtime's footprint (which idle-memory measures), not of the runtime.

use std::process::Command;
use std::time::Duration;

use crate::runner::Runner;
use crate::workloads::{self, Measurement, Size, Workload};
use crate::BenchError;

/// glibc settings for the child: never trim the heap, and serve allocations up to 32 MiB (the
/// vectors of a million task handles) from it rather than from fresh mappings.
pub const MALLOC_TUNABLES: &str =
    "glibc.malloc.trim_threshold=17179869184:glibc.malloc.mmap_threshold=33554432";

/// The hidden subcommand: `COMMAND WORKLOAD RUNNER SIZE`, the size as JSON.
pub const COMMAND: &str = "__measure";

/// Measures `workload` on `runner` in a fresh child process.
pub fn measure(
    workload: &Workload,
    runner: Runner,
    size: &Size,
) -> Result<Measurement, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::Child)?;
    let output = Command::new(exe)
        .arg(COMMAND)
        .arg(workload.name)
        .arg(runner.key())
        .arg(serde_json::to_string(size)?)
        .env("GLIBC_TUNABLES", MALLOC_TUNABLES)
        .output()
        .map_err(BenchError::Child)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(BenchError::ChildFailed {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    match fields[..] {
        [value, wall_ns] => match (value.parse(), wall_ns.parse()) {
            (Ok(value), Ok(wall_ns)) => Ok(Measurement {
                value,
                wall: Duration::from_nanos(wall_ns),
            }),
            _ => Err(unexpected(&stdout)),
        },
        _ => Err(unexpected(&stdout)),
    }
}

fn unexpected(stdout: &str) -> BenchError {
    BenchError::ChildFailed {
        status: format!("unexpected output {stdout:?}"),
        stderr: String::new(),
    }
}

/// The child's side: parses the arguments after [`COMMAND`], measures, prints.
pub fn main(args: &[String]) -> Result<(), BenchError> {
    let [workload, runner, size] = args else {
        return Err(BenchError::Usage(format!(
            "{COMMAND} WORKLOAD RUNNER SIZE_JSON"
        )));
    };
    let workload = workloads::all()
        .into_iter()
        .find(|w| w.name == workload)
        .ok_or_else(|| BenchError::UnknownWorkload(workload.clone()))?;
    let runner = Runner::from_key(runner)?;
    let size: Size = serde_json::from_str(size)?;
    if workload.warm_up {
        (workload.measure)(runner, &size)?;
    }
    let measurement = (workload.measure)(runner, &size)?;
    println!("{} {}", measurement.value, measurement.wall.as_nanos());
    Ok(())
}
