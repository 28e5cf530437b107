//! The showcase: `examples/kv`'s primary/backup store, the same code that serves on 127.0.0.1,
//! run in the simulated world over a thousand seeds with crashes, partitions, lost packets and
//! disk faults. Its invariant: every acknowledged write is read back. The planted bug
//! (`ack_before_sync`) breaks it, and the simulator finds a seed that shows it.
#![cfg(feature = "fiber")]

#[path = "../examples/kv/service.rs"]
#[allow(dead_code)]
mod service;

#[path = "../examples/kv/world.rs"]
#[allow(dead_code)]
mod world;

use ioswap::sim::{check_world_determinism, sweep_with, SimError, WorldReport};
use ioswap::{shrink, DecisionLog, Scheduler};

fn run(seed: u64, bug: bool, scheduler: &Scheduler) -> Result<WorldReport, SimError> {
    world::world(seed, bug, scheduler).run()
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

/// The failing run's schedule, recorded and shrunk to the scheduler's choices the lost write
/// needs (the world's draws, its faults among them, are kept as recorded), then replayed.
#[test]
fn the_planted_bugs_schedule_shrinks_and_replays() {
    let failure = sweep_with(SEEDS, |seed, scheduler| {
        run(seed, true, scheduler).map(drop)
    })
    .expect_err("some seed loses an acknowledged write");
    let (seed, scheduler) = (failure.seed, failure.scheduler);
    let failing = world::world(seed, true, &scheduler)
        .record_decisions()
        .run()
        .expect_err("the failing seed fails again");
    let log = *failing.decisions.expect("decisions were recorded");
    let loses_a_write = |log: &DecisionLog| {
        world::world(seed, true, &Scheduler::Replay(log.clone()))
            .run()
            .is_err_and(|err| err.cause.contains("acknowledged write"))
    };
    let shrunk = shrink(log, loses_a_write).expect("the recorded schedule fails when replayed");
    assert!(shrunk.after <= shrunk.before, "{shrunk:?}");
    // The shrunk log loses a write, and its text replays that run exactly.
    let replay = |log: DecisionLog| {
        let err = world::world(seed, true, &Scheduler::Replay(log))
            .run()
            .unwrap_err();
        (err.cause, err.at_ms)
    };
    let shrunk_run = replay(shrunk.log.clone());
    assert!(
        shrunk_run.0.contains("acknowledged write"),
        "{shrunk_run:?}"
    );
    assert_eq!(replay(shrunk.log.to_string().parse().unwrap()), shrunk_run);
    eprintln!(
        "seed {seed}: {} scheduler choices shrunk to {} in {} runs; the log has {} decisions:\n{}",
        shrunk.before,
        shrunk.after,
        shrunk.runs,
        shrunk.log.decisions.len(),
        shrunk.log
    );
}

/// The store's runs are a function of the seed: each of a few seeds, run twice, takes the same
/// steps (or the first step that differs is named).
#[test]
fn the_store_is_deterministic() {
    for seed in 0..5 {
        let world = |seed| world::world(seed, false, &Scheduler::Random);
        check_world_determinism(seed, world).unwrap_or_else(|divergence| panic!("{divergence}"));
    }
}
