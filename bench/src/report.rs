//! The results of a run: summary figures, ratios to the best peer, the targets, the
//! table printed to the terminal and the JSON written beside it.

use std::fmt::Write as _;

use ioswap::Backend;
use serde::Serialize;

use crate::runner::Runner;
use crate::workloads::{Measurement, Size, Unit, Workload, HOUR_MS};

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The machine it ran on.
    pub machine: Machine,
    /// Measurements per runner and workload.
    pub rounds: usize,
    /// The sizes used.
    pub size: Size,
    /// Whether this was the `--quick` smoke run (small sizes: figures not comparable).
    pub quick: bool,
    /// One entry per workload, in run order.
    pub workloads: Vec<WorkloadResult>,
    /// The targets, checked against this run.
    pub targets: Vec<TargetResult>,
}

/// The results of one workload.
#[derive(Debug, Serialize)]
pub struct WorkloadResult {
    /// Its name.
    pub name: &'static str,
    /// What it does.
    pub what: &'static str,
    /// The unit of every figure in it.
    pub unit: Unit,
    /// One row per runner.
    pub rows: Vec<Row>,
}

/// One runner's result on one workload.
#[derive(Debug, Serialize)]
pub struct Row {
    /// The runner's key (`ioswap-fiber`, `tokio`, …).
    pub runner: String,
    /// The figures, or why there are none.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The median over the best peer's median (`None` without a measured peer or figure).
    pub ratio_to_best_peer: Option<f64>,
    /// What to know when reading the figure.
    pub note: Option<&'static str>,
}

/// Figures, or the reason for their absence.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Measured in every round.
    Measured(Summary),
    /// Not run on this runner, for this reason.
    Skipped {
        /// Why.
        reason: String,
    },
    /// A run failed (its error); no figure is reported.
    Failed {
        /// The error.
        error: String,
    },
}

/// The rounds of one runner on one workload.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Median over the rounds.
    pub median: f64,
    /// Smallest round.
    pub min: f64,
    /// Largest round.
    pub max: f64,
    /// Every round, in run order.
    pub samples: Vec<f64>,
    /// Median wall time of a round, in seconds.
    pub median_wall_s: f64,
    /// Instructions per operation under callgrind, for the counted workloads where valgrind is
    /// installed: a figure the machine's load does not move.
    pub instructions_per_op: Option<f64>,
}

impl Summary {
    /// Summarizes the rounds (at least one).
    pub fn of(measurements: &[Measurement]) -> Summary {
        let samples: Vec<f64> = measurements.iter().map(|m| m.value).collect();
        let walls: Vec<f64> = measurements.iter().map(|m| m.wall.as_secs_f64()).collect();
        Summary {
            median: median(&samples),
            min: samples.iter().copied().fold(f64::INFINITY, f64::min),
            max: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            samples,
            median_wall_s: median(&walls),
            instructions_per_op: None,
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

impl WorkloadResult {
    /// Builds a workload's rows from each runner's rounds, and their ratios to the best peer.
    pub fn new(workload: &Workload, results: Vec<(Runner, Outcome)>) -> WorkloadResult {
        let best_peer = results
            .iter()
            .filter(|(runner, _)| runner.is_peer())
            .filter_map(|(_, outcome)| outcome.median())
            .fold(None, |best: Option<f64>, m| {
                Some(best.map_or(m, |b| b.min(m)))
            });
        let rows = results
            .into_iter()
            .map(|(runner, outcome)| Row {
                runner: runner.key(),
                ratio_to_best_peer: outcome.median().zip(best_peer).map(|(m, b)| m / b),
                note: (workload.note)(runner),
                outcome,
            })
            .collect();
        WorkloadResult {
            name: workload.name,
            what: workload.what,
            unit: workload.unit,
            rows,
        }
    }

    /// The median of a runner's row, if it was measured.
    pub fn median_of(&self, runner: Runner) -> Option<f64> {
        let key = runner.key();
        self.rows
            .iter()
            .find(|row| row.runner == key)?
            .outcome
            .median()
    }
}

impl Outcome {
    /// The median, if measured.
    pub fn median(&self) -> Option<f64> {
        match self {
            Outcome::Measured(summary) => Some(summary.median),
            _ => None,
        }
    }
}

/// A target from the issue: `runner`'s median ≤ `at_most` × `peer`'s, on `workload`.
#[derive(Debug, Clone, Copy)]
struct Target {
    workload: &'static str,
    runner: Runner,
    peer: Runner,
    at_most: f64,
    /// Whether the issue states it as throughput (the text then shows both).
    throughput: bool,
}

const FIBER: Runner = Runner::Ioswap(Backend::Fiber);
const URING: Runner = Runner::Ioswap(Backend::Uring);
const POLL: Runner = Runner::Ioswap(Backend::Poll);

/// The targets for this 2-core machine: the scheduler's for fiber (issue 3), the I/O ones for
/// uring (issue 5; monoio as the peer of tcp-echo from issue 15), poll (issue 12) and the
/// simulator (issue 11). "≥ k× the throughput" is
/// "≤ 1/k × the time per op".
const TARGETS: [Target; 15] = [
    Target {
        runner: FIBER,
        workload: "spawn-join",
        peer: Runner::Smol,
        at_most: 0.8,
        throughput: false,
    },
    Target {
        runner: FIBER,
        workload: "spawn-join",
        peer: Runner::Tokio,
        at_most: 0.5,
        throughput: false,
    },
    Target {
        runner: FIBER,
        workload: "yield-ping",
        peer: Runner::Smol,
        at_most: 0.8,
        throughput: false,
    },
    Target {
        runner: FIBER,
        workload: "timers-virtual",
        peer: Runner::Tokio,
        at_most: 0.5,
        throughput: false,
    },
    Target {
        runner: FIBER,
        workload: "cancel-storm",
        peer: Runner::Tokio,
        at_most: 1.0,
        throughput: false,
    },
    Target {
        runner: FIBER,
        workload: "idle-memory",
        peer: Runner::Smol,
        at_most: 1.0,
        throughput: false,
    },
    Target {
        runner: URING,
        workload: "op-overhead",
        peer: Runner::RawIoUring,
        at_most: 1.3,
        throughput: false,
    },
    Target {
        runner: URING,
        workload: "tcp-echo",
        peer: Runner::Tokio,
        at_most: 1.0 / 1.3,
        throughput: true,
    },
    Target {
        runner: URING,
        workload: "tcp-echo",
        peer: Runner::Monoio,
        at_most: 1.0 / 1.3,
        throughput: true,
    },
    Target {
        runner: URING,
        workload: "random-read",
        peer: Runner::Tokio,
        at_most: 1.0 / 3.0,
        throughput: true,
    },
    Target {
        runner: URING,
        workload: "random-read",
        peer: Runner::StdPread,
        at_most: 1.0,
        throughput: false,
    },
    Target {
        runner: POLL,
        workload: "tcp-echo",
        peer: Runner::Tokio,
        at_most: 1.0,
        throughput: true,
    },
    Target {
        runner: POLL,
        workload: "tcp-echo",
        peer: URING,
        at_most: 1.2,
        throughput: false,
    },
    Target {
        runner: URING,
        workload: "http-hello",
        peer: Runner::Tokio,
        at_most: 1.0 / 1.1,
        throughput: true,
    },
    Target {
        runner: Runner::IoswapSim,
        workload: "sim-echo",
        peer: Runner::Turmoil,
        at_most: 1.0 / 5.0,
        throughput: true,
    },
];

/// One target, checked.
#[derive(Debug, Serialize)]
pub struct TargetResult {
    /// The workload.
    pub workload: &'static str,
    /// The runner held to it.
    pub runner: String,
    /// The peer it is compared with.
    pub peer: String,
    /// The largest ratio that meets it.
    pub at_most: f64,
    /// The measured ratio (`None` if either side was not measured).
    pub ratio: Option<f64>,
    /// Whether the measured ratio meets it.
    pub met: bool,
    /// Whether the issue states it as throughput (≥ 1/`at_most` × the peer's).
    pub throughput: bool,
}

/// Checks every target whose workload was run.
pub fn check_targets(workloads: &[WorkloadResult]) -> Vec<TargetResult> {
    TARGETS
        .iter()
        .filter_map(|target| {
            let result = workloads.iter().find(|w| w.name == target.workload)?;
            let ratio = result
                .median_of(target.runner)
                .zip(result.median_of(target.peer))
                .map(|(ours, theirs)| ours / theirs);
            Some(TargetResult {
                workload: target.workload,
                runner: target.runner.key(),
                peer: target.peer.key(),
                at_most: target.at_most,
                ratio,
                met: ratio.is_some_and(|r| r <= target.at_most),
                throughput: target.throughput,
            })
        })
        .collect()
}

/// The machine a run was on, as far as `/proc` tells.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// rustc's target triple this bench was built for.
    pub target: String,
}

impl Machine {
    /// Reads the machine's description; unknown parts say so.
    pub fn current() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, name)| name.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".to_string());
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        }
    }
}

impl Report {
    /// The table, as printed to the terminal and pasted into the README.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| workload | runner | median | min–max | vs best peer | instr/op | note |\n|---|---|---:|---:|---:|---:|---|"
        );
        for workload in &self.workloads {
            for row in &workload.rows {
                let unit = workload.unit.label();
                let (median, range, instructions) = match &row.outcome {
                    Outcome::Measured(s) => (
                        format!("{} {unit}", figure(s.median)),
                        format!("{}–{}", figure(s.min), figure(s.max)),
                        s.instructions_per_op
                            .map(|n| format!("{n:.0}"))
                            .unwrap_or_default(),
                    ),
                    Outcome::Skipped { reason } => {
                        (format!("skipped: {reason}"), String::new(), String::new())
                    }
                    Outcome::Failed { error } => {
                        (format!("FAILED: {error}"), String::new(), String::new())
                    }
                };
                let ratio = row
                    .ratio_to_best_peer
                    .map(|r| format!("{r:.2}×"))
                    .unwrap_or_default();
                let mut note = row.note.unwrap_or("").to_string();
                match (&row.outcome, workload.name) {
                    (Outcome::Measured(s), "virtual-time") => {
                        note =
                            join_note(&note, &format!("wall {} per run", seconds(s.median_wall_s)));
                    }
                    (Outcome::Measured(s), "sim-echo") => {
                        let per_second = 1e9 / s.median / 1e6;
                        note = join_note(
                            &note,
                            &format!("{per_second:.2} M simulated messages per wall second"),
                        );
                    }
                    (Outcome::Measured(_), "sim-hour") if self.size.simulated_ms != HOUR_MS => {
                        note = join_note(
                            &note,
                            &format!(
                                "{} s simulated, scaled to the hour",
                                self.size.simulated_ms / 1000
                            ),
                        );
                    }
                    _ => {}
                }
                let _ = writeln!(
                    out,
                    "| {} | {} | {median} | {range} | {ratio} | {instructions} | {note} |",
                    workload.name, row.runner
                );
            }
        }
        out
    }

    /// The targets, one line each.
    pub fn targets_text(&self) -> String {
        let mut out = String::new();
        for t in &self.targets {
            let measured = t
                .ratio
                .map_or("not measured".to_string(), |r| format!("{r:.2}×"));
            let verdict = if t.met { "met" } else { "MISSED" };
            let _ = write!(
                out,
                "{} {}: ≤ {:.2}× {} → {measured} {verdict}",
                t.workload, t.runner, t.at_most, t.peer
            );
            if t.throughput {
                let _ = write!(
                    out,
                    " (throughput ≥ {:.1}×: {})",
                    1.0 / t.at_most,
                    t.ratio
                        .map_or("not measured".to_string(), |r| format!("{:.2}×", 1.0 / r))
                );
            }
            out.push('\n');
        }
        out
    }
}

fn join_note(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}; {b}")
    }
}

/// A figure with sensible precision: 3 significant digits below 100, integers above.
fn figure(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn seconds(s: f64) -> String {
    format!("{s:.2} s")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::workloads;

    fn rounds(values: &[f64]) -> Vec<Measurement> {
        values
            .iter()
            .map(|&value| Measurement::other(value, Duration::from_millis(1)))
            .collect()
    }

    fn spawn_join() -> Workload {
        workloads::all()
            .into_iter()
            .find(|w| w.name == "spawn-join")
            .expect("spawn-join is a workload")
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let summary = Summary::of(&rounds(&[4.0, 1.0, 3.0, 2.0]));
        assert_eq!(summary.median, 2.5);
        assert_eq!((summary.min, summary.max), (1.0, 4.0));
    }

    #[test]
    fn ratios_are_taken_against_the_fastest_peer_and_skips_have_none() {
        let fiber = Runner::Ioswap(Backend::Fiber);
        let result = WorkloadResult::new(
            &spawn_join(),
            vec![
                (fiber, Outcome::Measured(Summary::of(&rounds(&[90.0])))),
                (
                    Runner::Tokio,
                    Outcome::Measured(Summary::of(&rounds(&[300.0]))),
                ),
                (
                    Runner::Smol,
                    Outcome::Measured(Summary::of(&rounds(&[120.0]))),
                ),
                (
                    Runner::AsyncTask,
                    Outcome::Skipped {
                        reason: "test".into(),
                    },
                ),
            ],
        );
        let ratios: Vec<Option<f64>> = result.rows.iter().map(|r| r.ratio_to_best_peer).collect();
        assert_eq!(ratios, vec![Some(0.75), Some(2.5), Some(1.0), None]);
        let targets = check_targets(&[result]);
        let met: Vec<(&str, bool)> = targets.iter().map(|t| (t.peer.as_str(), t.met)).collect();
        assert_eq!(met, vec![("smol", true), ("tokio", true)]);
    }

    #[test]
    fn a_target_without_a_measured_peer_is_not_met() {
        let fiber = Runner::Ioswap(Backend::Fiber);
        let result = WorkloadResult::new(
            &spawn_join(),
            vec![
                (fiber, Outcome::Measured(Summary::of(&rounds(&[90.0])))),
                (
                    Runner::Smol,
                    Outcome::Failed {
                        error: "test".into(),
                    },
                ),
            ],
        );
        let targets = check_targets(&[result]);
        assert!(targets.iter().all(|t| t.ratio.is_none() && !t.met));
    }
}
