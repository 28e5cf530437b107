//! Side-by-side benchmarks of ioswap's backends against tokio and smol.
//!
//! ```text
//! cargo run --release -p bench -- [--quick] [--rounds N] [--tasks N] [--out DIR] [--only RUNNER]…
//!                                 [--no-count] [all | WORKLOAD…]
//! cargo run --release -p bench -- --list
//! ```
//!
//! Every workload runs on every compiled ioswap backend, on tokio (current-thread runtime with a
//! `LocalSet`) and on smol (`LocalExecutor`), in the same run on the same machine, each
//! measurement in a fresh child process. The runners take turns: each round runs every runner
//! once, starting one further along each time, so drift (thermal, other load) is spread over all
//! of them. The table gives each runner's median
//! over the rounds, the fastest and slowest round, and the ratio to the best peer; the results
//! also go to `target/bench/results.json` and `target/bench/results.svg`.
//!
//! Where valgrind is installed, the CPU-bound workloads also get an instruction count per
//! operation from callgrind ([`callgrind`]), a figure the machine's load does not move: the one
//! to compare two versions of a hot path by. `--no-count` skips it.
// `unsafe` is denied everywhere but in `uring_floor.rs`, the raw ring loop.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod callgrind;
mod chart;
mod child;
mod floor;
mod report;
mod runner;
mod uring_floor;
mod workloads;

use std::path::PathBuf;

use report::{Machine, Outcome, Report, Summary, WorkloadResult};
use runner::Runner;
use workloads::{Size, Workload};

/// Why a benchmark run could not give a figure.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An ioswap run failed.
    #[error("ioswap: {0}")]
    Ioswap(#[from] ioswap::Error),
    /// An ioswap backend's run failed.
    #[error("ioswap: {0}")]
    Run(#[from] ioswap::RunError),
    /// tokio's runtime could not be built.
    #[error("building the tokio runtime: {0}")]
    TokioRuntime(std::io::Error),
    /// A peer runtime reported an error.
    #[error("{0}")]
    Peer(String),
    /// A run finished without doing the work it had to (so it gives no figure).
    #[error("{workload} on {runner}: {what}")]
    WrongResult {
        /// The workload.
        workload: String,
        /// The runner.
        runner: String,
        /// What was wrong.
        what: String,
    },
    /// No runner of that name is compiled in.
    #[error("unknown runner {0:?}")]
    UnknownRunner(String),
    /// No workload of that name; `--list` shows them.
    #[error("unknown workload {0:?}: run with --list to see them")]
    UnknownWorkload(String),
    /// The command line could not be understood.
    #[error("{0}\nusage: bench [--quick] [--rounds N] [--tasks N] [--out DIR] [--only RUNNER]... [--no-count] [all | WORKLOAD...] | --list")]
    Usage(String),
    /// Reading `/proc` failed (the bench needs Linux).
    #[error("reading /proc (the bench needs Linux): {0}")]
    Proc(std::io::Error),
    /// A `/proc` file did not look as expected.
    #[error("unexpected format of {0}")]
    ProcFormat(&'static str),
    /// The child process of a measurement could not be started.
    #[error("starting the measuring child process: {0}")]
    Child(std::io::Error),
    /// The child process of a measurement failed.
    #[error("the measuring child process failed ({status}): {stderr}")]
    ChildFailed {
        /// Its exit status, or what was wrong with its output.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// Drawing the chart failed.
    #[error("drawing the chart: {0}")]
    Chart(String),
    /// Writing a result file failed.
    #[error("writing {path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Serializing the results failed.
    #[error("serializing the results: {0}")]
    Json(#[from] serde_json::Error),
}

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    size: Size,
    quick: bool,
    rounds: usize,
    out: PathBuf,
    workloads: Vec<Workload>,
    /// Runners to measure (`--only`); empty: all of them.
    only: Vec<Runner>,
    /// Whether to count instructions per operation under callgrind (not `--no-count`, and
    /// valgrind is installed).
    count: bool,
}

fn parse_options(args: Vec<String>) -> Result<Option<Options>, BenchError> {
    let mut quick = false;
    let mut rounds = None;
    let mut tasks = None;
    let mut out = None;
    let mut names = Vec::new();
    let mut only = Vec::new();
    let mut count = true;
    let mut args = args.into_iter();
    let number = |flag: &str, value: Option<String>| -> Result<usize, BenchError> {
        value
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| BenchError::Usage(format!("{flag} needs a positive number")))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--no-count" => count = false,
            "--rounds" => rounds = Some(number("--rounds", args.next())?),
            "--tasks" => tasks = Some(number("--tasks", args.next())?),
            "--out" => {
                out = Some(PathBuf::from(args.next().ok_or_else(|| {
                    BenchError::Usage("--out needs a directory".to_string())
                })?))
            }
            "--only" => {
                only.push(Runner::from_key(&args.next().ok_or_else(|| {
                    BenchError::Usage("--only needs a runner".to_string())
                })?)?)
            }
            "--list" => {
                for workload in workloads::all() {
                    println!("{:16} {}", workload.name, workload.what);
                }
                return Ok(None);
            }
            "-h" | "--help" => {
                return Err(BenchError::Usage(
                    "benchmarks against tokio and smol".into(),
                ))
            }
            flag if flag.starts_with('-') => {
                return Err(BenchError::Usage(format!("unknown flag {flag}")))
            }
            _ => names.push(arg),
        }
    }
    let all = workloads::all();
    let workloads = if names.is_empty() || names.iter().any(|n| n == "all") {
        all
    } else {
        names
            .iter()
            .map(|name| {
                all.iter()
                    .find(|w| w.name == name)
                    .copied()
                    .ok_or_else(|| BenchError::UnknownWorkload(name.clone()))
            })
            .collect::<Result<_, _>>()?
    };
    let mut size = if quick { Size::QUICK } else { Size::FULL };
    if let Some(tasks) = tasks {
        size.tasks = tasks;
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let default_out = target_dir.join(if quick { "bench/quick" } else { "bench" });
    Ok(Some(Options {
        size,
        quick,
        rounds: rounds.unwrap_or(if quick { 2 } else { 5 }),
        out: out.unwrap_or(default_out),
        workloads,
        only,
        count,
    }))
}

/// Runs one workload on every runner, the runners taking turns round after round.
fn run_workload(workload: &Workload, options: &Options) -> WorkloadResult {
    let runners: Vec<Runner> = workload
        .runners()
        .into_iter()
        .filter(|r| options.only.is_empty() || options.only.contains(r))
        .collect();
    let skipped = |runner: Runner| -> Option<String> {
        (workload.skip)(runner)
            .map(str::to_string)
            .or_else(|| runner.unavailable())
    };
    let active: Vec<Runner> = runners
        .iter()
        .copied()
        .filter(|r| skipped(*r).is_none())
        .collect();
    let mut measured: Vec<Vec<workloads::Measurement>> = vec![Vec::new(); active.len()];
    let mut failed: Vec<Option<String>> = vec![None; active.len()];
    for round in 0..options.rounds {
        for turn in 0..active.len() {
            let index = (turn + round) % active.len();
            if failed[index].is_some() {
                continue;
            }
            let runner = active[index];
            match child::measure(workload, runner, &options.size) {
                Ok(m) => {
                    eprintln!(
                        "{} round {}/{} {:16} {:>10.1} {} ({:.2} s)",
                        workload.name,
                        round + 1,
                        options.rounds,
                        runner.key(),
                        m.value,
                        workload.unit.label(),
                        m.wall.as_secs_f64()
                    );
                    measured[index].push(m);
                }
                Err(error) => {
                    eprintln!("{} on {}: FAILED: {error}", workload.name, runner.key());
                    failed[index] = Some(error.to_string());
                }
            }
        }
    }
    let mut instructions: Vec<Option<f64>> = vec![None; active.len()];
    if workload.counted && options.count {
        for (index, runner) in active.iter().enumerate() {
            if failed[index].is_some() {
                continue;
            }
            match callgrind::per_op(workload, *runner) {
                Ok(count) => {
                    eprintln!(
                        "{} {:16} {count:>10.0} instructions/op (callgrind)",
                        workload.name,
                        runner.key()
                    );
                    instructions[index] = Some(count);
                }
                Err(error) => {
                    eprintln!(
                        "{} on {}: callgrind FAILED: {error}",
                        workload.name,
                        runner.key()
                    );
                    failed[index] = Some(format!("counting instructions: {error}"));
                }
            }
        }
    }
    let results = runners
        .into_iter()
        .map(|runner| {
            let outcome = match active.iter().position(|r| *r == runner) {
                None => Outcome::Skipped {
                    reason: skipped(runner).unwrap_or_else(|| "skipped".to_string()),
                },
                Some(i) => match failed[i].take() {
                    Some(error) => Outcome::Failed { error },
                    None => Outcome::Measured(Summary {
                        instructions_per_op: instructions[i],
                        ..Summary::of(&measured[i])
                    }),
                },
            };
            (runner, outcome)
        })
        .collect();
    WorkloadResult::new(workload, results)
}

fn write_file(path: PathBuf, contents: &[u8]) -> Result<(), BenchError> {
    std::fs::write(&path, contents).map_err(|source| BenchError::Output { path, source })
}

fn run(mut options: Options) -> Result<bool, BenchError> {
    let machine = Machine::current();
    if options.count && !callgrind::available() {
        eprintln!("valgrind is not installed: no instruction counts, wall times only");
        options.count = false;
    }
    eprintln!(
        "{} rounds, {} tasks; {} ({} cores, {} GiB, Linux {})",
        options.rounds,
        options.size.tasks,
        machine.cpu,
        machine.cores,
        machine.memory_gib,
        machine.kernel
    );
    let results: Vec<WorkloadResult> = options
        .workloads
        .iter()
        .map(|w| run_workload(w, &options))
        .collect();
    let report = Report {
        machine,
        rounds: options.rounds,
        size: options.size,
        quick: options.quick,
        targets: report::check_targets(&results),
        workloads: results,
    };
    println!("{}", report.table());
    if !report.targets.is_empty() {
        let heading = if options.quick {
            "targets (--quick sizes are too small to judge them):"
        } else {
            "targets (same run):"
        };
        println!("{heading}\n{}", report.targets_text());
    }
    std::fs::create_dir_all(&options.out).map_err(|source| BenchError::Output {
        path: options.out.clone(),
        source,
    })?;
    write_file(
        options.out.join("results.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    chart::write(&report, &options.out.join("results.svg"))?;
    println!(
        "wrote {}/results.json and results.svg",
        options.out.display()
    );
    let all_ran = report
        .workloads
        .iter()
        .flat_map(|w| &w.rows)
        .all(|row| !matches!(row.outcome, Outcome::Failed { .. }));
    Ok(all_ran)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = if args.first().map(String::as_str) == Some(child::COMMAND) {
        child::main(&args[1..]).map(|()| true)
    } else {
        parse_options(args).and_then(|options| match options {
            Some(options) => run(options),
            None => Ok(true),
        })
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("some runs failed: see the table");
            std::process::exit(1);
        }
        Err(error) => {
            eprintln!("bench: {error}");
            std::process::exit(2);
        }
    }
}
