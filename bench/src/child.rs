//! Every measurement runs in a fresh child process: this binary, re-executed with the hidden
//! [`COMMAND`]. So no runner inherits a heap shaped (or grown, or trimmed) by the runner before
//! it, and each sample starts from the same state whatever ran earlier.
//!
//! The child runs the workload once unmeasured when the workload asks for a warm-up (unless
//! told [`COLD`]), then once measured, and prints `VALUE WALL_NS OPS` on one line (`OPS` is `-`
//! for a figure that is not per operation).
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

/// The hidden subcommand: `COMMAND WORKLOAD RUNNER SIZE [COLD]`, the size as JSON.
pub const COMMAND: &str = "__measure";

/// The child's optional last argument: skip the warm-up (an instruction count wants the
/// measured pass alone).
pub const COLD: &str = "cold";

/// Measures `workload` on `runner` in a fresh child process.
pub fn measure(
    workload: &Workload,
    runner: Runner,
    size: &Size,
) -> Result<Measurement, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::Child)?;
    let mut command = Command::new(exe);
    command.args(args(workload, runner, size)?);
    Ok(run(command)?.0)
}

/// The child's arguments for one measurement.
pub fn args(workload: &Workload, runner: Runner, size: &Size) -> Result<Vec<String>, BenchError> {
    Ok(vec![
        COMMAND.to_string(),
        workload.name.to_string(),
        runner.key(),
        serde_json::to_string(size)?,
    ])
}

/// Runs a prepared child command (with the heap settings), and returns its measurement and
/// what it wrote to stderr.
pub fn run(mut command: Command) -> Result<(Measurement, String), BenchError> {
    let output = command
        .env("GLIBC_TUNABLES", MALLOC_TUNABLES)
        .output()
        .map_err(BenchError::Child)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if !output.status.success() {
        return Err(BenchError::ChildFailed {
            status: output.status.to_string(),
            stderr,
        });
    }
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    let [value, wall_ns, ops] = fields[..] else {
        return Err(unexpected(&stdout));
    };
    let (Ok(value), Ok(wall_ns)) = (value.parse(), wall_ns.parse()) else {
        return Err(unexpected(&stdout));
    };
    let ops = match ops {
        "-" => None,
        ops => Some(ops.parse().map_err(|_| unexpected(&stdout))?),
    };
    let measurement = Measurement {
        value,
        wall: Duration::from_nanos(wall_ns),
        ops,
    };
    Ok((measurement, stderr))
}

fn unexpected(stdout: &str) -> BenchError {
    BenchError::ChildFailed {
        status: format!("unexpected output {stdout:?}"),
        stderr: String::new(),
    }
}

/// The child's side: parses the arguments after [`COMMAND`], measures, prints.
pub fn main(args: &[String]) -> Result<(), BenchError> {
    let (workload, runner, size, cold) = match args {
        [workload, runner, size] => (workload, runner, size, false),
        [workload, runner, size, cold] if cold == COLD => (workload, runner, size, true),
        _ => {
            return Err(BenchError::Usage(format!(
                "{COMMAND} WORKLOAD RUNNER SIZE_JSON [{COLD}]"
            )))
        }
    };
    let workload = workloads::all()
        .into_iter()
        .find(|w| w.name == workload)
        .ok_or_else(|| BenchError::UnknownWorkload(workload.clone()))?;
    let runner = Runner::from_key(runner)?;
    let size: Size = serde_json::from_str(size)?;
    if workload.warm_up && !cold {
        (workload.measure)(runner, &size)?;
    }
    let measurement = (workload.measure)(runner, &size)?;
    let ops = measurement
        .ops
        .map_or_else(|| "-".to_string(), |ops| ops.to_string());
    println!(
        "{} {} {ops}",
        measurement.value,
        measurement.wall.as_nanos()
    );
    Ok(())
}
