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
        "{0} records a simulated run: add --sim SEED (a real backend's run has no virtual \
         timeline to record)"
    )]
    NeedsSim(&'static str),
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
            (parsed.bug, "--bug"),
        ] {
            if asked {
                return Err(UsageError::NeedsSim(flag));
            }
        }
    }
    Ok(parsed)
}

/// Runs one seed of the simulated world; `Err` with what to print if it fails.
#[cfg(feature = "fiber")]
fn simulate(seed: u64, args: &Args) -> Result<(), String> {
    let scheduler = ioswap::sim::scheduler_from_env()?;
    let mut world = world::world(seed, args.bug, &scheduler);
    if args.trace.is_some() || args.timeline {
        world = world.record_trace();
    }
    let outcome = world.run();
    let trace = match &outcome {
        Ok(report) => report.trace.as_deref(),
        Err(error) => error.trace.as_deref(),
    };
    if let Some(trace) = trace {
        if args.timeline {
            print!("{}", trace.timeline());
        }
        if let Some(path) = &args.trace {
            trace.write_perfetto(path).map_err(|e| e.to_string())?;
            println!(
                "trace of {} steps and {} events written to {}: open it at \
                 https://ui.perfetto.dev (Open trace file) or in chrome://tracing",
                trace.steps.len(),
                trace.events.len(),
                path.display()
            );
        }
    }
    match outcome {
        Ok(report) => {
            println!(
                "seed {seed}: {} keys written and read back by {} ms of virtual time, {} \
                 faults injected",
                world::KEYS,
                report.now_ms,
                report.faults.len()
            );
            Ok(())
        }
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(not(feature = "fiber"))]
fn simulate(_seed: u64, _args: &Args) -> Result<(), String> {
    Err("--sim needs the fiber backend: build with the `fiber` feature".into())
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
        if let Err(err) = simulate(seed, &args) {
            eprintln!("kv: {err}");
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
