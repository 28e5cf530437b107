//! A primary/backup replicated key-value store over TCP with synced logs, written once: here
//! it serves on 127.0.0.1 on the default backend; with `--sim SEED` the same code runs in the
//! fiber backend's simulated world (crashes, partitions, disk faults drawn from the seed), and
//! `tests/sim_kv.rs` sweeps that world over a thousand seeds and finds the planted bug
//! (`Config::ack_before_sync`, `--bug` here).
//!
//! ```sh
//! cargo run --example kv                                # on a real backend, on 127.0.0.1
//! cargo run --example kv -- --sim 7                     # one seed of the simulated world
//! cargo run --example kv -- --sim 7 --trace kv.json     # ... recorded for ui.perfetto.dev
//! cargo run --example kv -- --sim 7 --timeline          # ... printed as a text timeline
//! cargo run --example kv -- --sim 7 --bug               # with the planted bug
//! ```
//!
//! In a simulated run, `IOSWAP_SCHEDULER` chooses the scheduler (`random`, `walk`,
//! `pct:DEPTH:STEPS`), as in a sweep.

mod service;
#[cfg(feature = "fiber")]
mod world;

use std::io;
use std::path::PathBuf;

use ioswap::Cx;
use service::{backup, call, primary, Config};

async fn demo(cx: Cx) -> io::Result<()> {
    let dir = std::env::temp_dir().join(format!("ioswap-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = |log: &str| Config {
        primary: "127.0.0.1:47401".parse().unwrap(),
        backup: "127.0.0.1:47402".parse().unwrap(),
        log: dir.join(log),
        ack_before_sync: false,
    };
    let (primary_config, backup_config) = (config("primary.log"), config("backup.log"));
    let addr = primary_config.primary;
    let backup_task = cx.spawn(move |cx| async move { Ok(backup(cx, backup_config).await) });
    let primary_task = cx.spawn(move |cx| async move { Ok(primary(cx, primary_config).await) });
    // The primary serves once it has caught up with the backup.
    let mut answer = Err(io::Error::from(io::ErrorKind::NotConnected));
    for _ in 0..50 {
        answer = call(&cx, addr, "SET greeting hello").await;
        if answer.is_ok() {
            break;
        }
        cx.sleep(20).await?;
    }
    println!("SET greeting hello -> {}", answer?);
    println!(
        "SET answer 42 -> {}",
        call(&cx, addr, "SET answer 42").await?
    );
    println!("GET greeting -> {}", call(&cx, addr, "GET greeting").await?);
    println!("GET missing -> {}", call(&cx, addr, "GET missing").await?);
    drop((primary_task, backup_task));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// What the command line asks for.
#[derive(Debug, Default)]
struct Args {
    /// Run this seed of the simulated world instead of serving on 127.0.0.1.
    sim: Option<u64>,
    /// With the planted bug.
    bug: bool,
    /// Write the simulated run as Perfetto trace-event JSON here.
    trace: Option<PathBuf>,
    /// Print the simulated run as a text timeline.
    timeline: bool,
}

/// A command line this example does not take.
#[derive(Debug, thiserror::Error)]
enum UsageError {
    #[error("{0} needs a value")]
    Missing(&'static str),
    #[error("--sim takes a seed (a number), not {0:?}")]
    Seed(String),
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error(
        "{flag} needs {what}, not the flag {value:?} (for a file of that name, write ./{value})"
    )]
    FlagAsValue {
        flag: &'static str,
        what: &'static str,
        value: String,
    },
    #[error(
        "{0} records a simulated run: add --sim SEED (a real backend's run has no virtual \
         timeline to record)"
    )]
    NeedsSim(&'static str),
    #[error(
        "--bug plants the bug in the simulated world: add --sim SEED (the run on 127.0.0.1 \
         has no planted bug)"
    )]
    BugNeedsSim,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, UsageError> {
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sim" => {
                let seed = args.next().ok_or(UsageError::Missing("--sim"))?;
                parsed.sim = Some(seed.parse().map_err(|_| UsageError::Seed(seed))?);
            }
            "--trace" => {
                let file = args.next().ok_or(UsageError::Missing("--trace"))?;
                if file.starts_with("--") {
                    // `--trace --timeline` forgot the file: it would write one named `--timeline`.
                    let (flag, what) = ("--trace", "a file name");
                    return Err(UsageError::FlagAsValue {
                        flag,
                        what,
                        value: file,
                    });
                }
                parsed.trace = Some(file.into());
            }
            "--timeline" => parsed.timeline = true,
            "--bug" => parsed.bug = true,
            _ => return Err(UsageError::Unknown(arg)),
        }
    }
    if parsed.sim.is_none() {
        // Refused rather than ignored: a user who asked for a trace would get none.
        for (asked, flag) in [
            (parsed.trace.is_some(), "--trace"),
            (parsed.timeline, "--timeline"),
        ] {
            if asked {
                return Err(UsageError::NeedsSim(flag));
            }
        }
        if parsed.bug {
            return Err(UsageError::BugNeedsSim);
        }
    }
    Ok(parsed)
}

/// Runs one seed of the simulated world (printing its timeline if asked for) and returns its
/// report, in order: the run's outcome, then the trace file's; `Err` lines go to stderr.
#[cfg(feature = "fiber")]
fn simulate(seed: u64, args: &Args) -> Vec<Result<String, String>> {
    let scheduler = match ioswap::sim::scheduler_from_env() {
        Ok(scheduler) => scheduler,
        Err(err) => return vec![Err(err.to_string())],
    };
    let mut world = world::world(seed, args.bug, &scheduler);
    if args.trace.is_some() || args.timeline {
        world = world.record_trace();
    }
    let outcome = world.run();
    let trace = match &outcome {
        Ok(report) => report.trace.as_deref(),
        Err(error) => error.trace.as_deref(),
    };
    if let (Some(trace), true) = (trace, args.timeline) {
        print!("{}", trace.timeline());
    }
    // The outcome first: a trace that cannot be written must not hide the seed's failure.
    let mut report = vec![match &outcome {
        Ok(report) => Ok(format!(
            "seed {seed}: {} keys written and read back by {} ms of virtual time, {} faults \
             injected",
            world::KEYS,
            report.now_ms,
            report.faults.len()
        )),
        Err(error) => Err(error.to_string()),
    }];
    if let (Some(trace), Some(path)) = (trace, &args.trace) {
        report.push(match trace.write_perfetto(path) {
            Ok(()) => Ok(format!(
                "trace of {} steps and {} events written to {}: open it at \
                 https://ui.perfetto.dev (Open trace file) or in chrome://tracing",
                trace.steps.len(),
                trace.events.len(),
                path.display()
            )),
            Err(err) => Err(err.to_string()),
        });
    }
    report
}

#[cfg(not(feature = "fiber"))]
fn simulate(_seed: u64, _args: &Args) -> Vec<Result<String, String>> {
    let needs = "--sim needs the fiber backend: build with the `fiber` feature";
    vec![Err(needs.into())]
}

fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("kv: {err}");
            eprintln!("usage: kv [--sim SEED [--bug] [--trace FILE] [--timeline]]");
            std::process::exit(2);
        }
    };
    if let Some(seed) = args.sim {
        let report = simulate(seed, &args);
        for line in &report {
            match line {
                Ok(line) => println!("{line}"),
                Err(err) => eprintln!("kv: {err}"),
            }
        }
        if report.iter().any(Result::is_err) {
            std::process::exit(1);
        }
        return;
    }
    match ioswap::run(|cx| async move { Ok(demo(cx).await) }) {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            eprintln!("kv: {err}");
            std::process::exit(1);
        }
        Err(err) => {
            eprintln!("kv: {err}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Args, String> {
        parse(line.split_whitespace().map(String::from)).map_err(|e| e.to_string())
    }

    #[test]
    fn bug_without_sim_says_the_bug_is_the_simulated_worlds() {
        let err = parse_line("--bug").unwrap_err();
        assert!(err.starts_with("--bug plants the bug"), "{err}");
        assert!(!err.contains("records"), "{err}");
    }

    #[test]
    fn a_flag_is_not_taken_as_the_trace_file() {
        let err = parse_line("--sim 1 --trace --timeline").unwrap_err();
        assert!(err.contains("not the flag \"--timeline\""), "{err}");
        let args = parse_line("--sim 1 --trace ./--timeline").unwrap();
        assert_eq!(args.trace, Some(PathBuf::from("./--timeline")));
    }

    /// Seed 0 with the bug fails; the trace's directory does not exist: both are reported,
    /// the run's failure first.
    #[cfg(feature = "fiber")]
    #[test]
    fn a_trace_that_cannot_be_written_does_not_hide_the_runs_failure() {
        let args = parse_line("--sim 0 --bug --trace /nonexistent-ioswap-dir/kv.json").unwrap();
        let report = simulate(0, &args);
        let [Err(failure), Err(trace)] = &report[..] else {
            panic!("two errors, the run's first: {report:?}");
        };
        assert!(failure.contains("seed 0"), "{failure}");
        assert!(failure.contains("faults injected"), "{failure}");
        assert!(trace.contains("could not write the trace"), "{trace}");
    }
}
