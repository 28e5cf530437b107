//! The showcase: `examples/kv`'s primary/backup store, the same code that serves on 127.0.0.1,
//! run in the simulated world over a thousand seeds with crashes, partitions, lost packets and
//! disk faults. Its invariant: every acknowledged write is read back. The planted bug
//! (`ack_before_sync`) breaks it, and the simulator finds a seed that shows it.
#![cfg(feature = "fiber")]

#[path = "../examples/kv/service.rs"]
#[allow(dead_code)]
mod service;

use std::io;

use ioswap::sim::{sweep_with, Control, Faults, SimError, World, WorldReport};
use ioswap::{Cx, Scheduler};
use service::{backup, call, primary, Config};

/// Keys written, one every `PACE_MS`: a run lasts long enough for crashes and partitions.
const KEYS: usize = 40;
const PACE_MS: u64 = 300;

fn config(world: &Control, bug: bool) -> Config {
    Config {
        primary: world.addr("primary", 7001),
        backup: world.addr("backup", 7002),
        log: "/data/kv.log".into(),
        ack_before_sync: bug,
    }
}

/// One call with a deadline: `None` if it failed or took too long.
async fn call_within(cx: &Cx, config: &Config, request: String) -> Option<String> {
    let addr = config.primary;
    let attempt = move |cx: Cx| async move { Ok(call(&cx, addr, &request).await) };
    match ioswap::timeout(cx, 3_000, attempt).await {
        Ok(Ok(Ok(answer))) => Some(answer),
        _ => None,
    }
}

/// Writes each key once (retrying until acknowledged), then reads every acknowledged key back.
async fn workload(cx: Cx, world: Control) -> ioswap::sim::Outcome {
    let config = config(&world, false);
    let mut acked = Vec::new();
    for key in 0..KEYS {
        let request = format!("SET k{key} v{key}");
        loop {
            if call_within(&cx, &config, request.clone()).await.as_deref() == Some("OK") {
                acked.push(key);
                cx.sleep(PACE_MS).await?;
                break;
            }
            cx.sleep(200).await?;
        }
    }
    for &key in &acked {
        loop {
            match call_within(&cx, &config, format!("GET k{key}")).await {
                Some(answer) if answer == format!("VALUE v{key}") => break,
                Some(answer) if answer.starts_with("VALUE") || answer == "NONE" => {
                    return Err(
                        format!("acknowledged write k{key}=v{key} lost: read {answer}").into(),
                    )
                }
                _ => cx.sleep(200).await?,
            }
        }
    }
    Ok(())
}

/// Runs a service in a host, starting it again after an error it returns (a disk error while
/// opening its log, say), as a supervisor would.
async fn supervise(
    cx: Cx,
    world: Control,
    bug: bool,
    serve: impl AsyncFn(Cx, Config) -> io::Result<()>,
) -> ioswap::sim::Outcome {
    loop {
        let _ = serve(cx.clone(), config(&world, bug)).await;
        cx.sleep(100).await?;
    }
}

fn faults() -> Faults {
    let mut faults = Faults::default();
    faults.crash_every_ms = Some((2_000, 15_000));
    faults.restart_after_ms = Some((200, 3_000));
    faults
}

fn run(seed: u64, bug: bool, scheduler: &Scheduler) -> Result<WorldReport, SimError> {
    World::new(seed)
        .scheduler(scheduler.clone())
        .faults(faults())
        .host("primary", move |cx, world| {
            supervise(cx, world, bug, async |cx, config| primary(cx, config).await)
        })
        .host("backup", move |cx, world| {
            supervise(cx, world, bug, async |cx, config| backup(cx, config).await)
        })
        .client("client", workload)
        .time_limit_ms(4 * 3_600_000)
        .run()
}

/// The showcase's claim: 1,000 seeds (`IOSWAP_SEEDS` widens or narrows a sweep, `IOSWAP_SEED`
/// replays one, `IOSWAP_SCHEDULER` chooses the scheduler; see `ioswap::sim::sweep_with`).
const SEEDS: u64 = 1_000;

#[test]
fn no_acknowledged_write_is_lost_over_a_thousand_seeds() {
    let mut crashes = 0;
    let mut partitions = 0;
    let swept = sweep_with(SEEDS, |seed, scheduler| {
        let report = run(seed, false, scheduler)?;
        crashes += report
            .faults
            .iter()
            .filter(|l| l.contains(": crash"))
            .count();
        partitions += report
            .faults
            .iter()
            .filter(|l| l.contains("partition"))
            .count();
        Ok::<_, SimError>(())
    })
    .unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("{swept} seeds: {crashes} crashes, {partitions} partitions");
    // The sweep is only worth something if the faults happened (a one-seed replay excepted).
    if swept >= SEEDS {
        assert!(crashes >= 100, "{crashes} crashes");
        assert!(partitions >= 100, "{partitions} partitions");
    }
}

#[test]
fn the_simulator_finds_the_planted_bug() {
    let failure = sweep_with(SEEDS, |seed, scheduler| {
        run(seed, true, scheduler).map(drop)
    })
    .expect_err("some seed loses an acknowledged write");
    // The sweep names the test, the seed and the one command that replays it.
    assert!(
        failure
            .replay_command()
            .contains(&format!("IOSWAP_SEED={} cargo test ", failure.seed)),
        "{failure}"
    );
    assert!(failure.to_string().contains("faults injected"), "{failure}");
    let err = run(failure.seed, true, &failure.scheduler).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("acknowledged write"), "{text}");
    assert!(
        text.contains(&format!("World::new({})", err.seed)),
        "{text}"
    );
    // Replaying the seed fails the same way.
    let again = run(err.seed, true, &failure.scheduler).unwrap_err();
    assert_eq!((again.cause, again.at_ms), (err.cause.clone(), err.at_ms));
    eprintln!("planted bug found at seed {}:\n{text}", err.seed);
}
