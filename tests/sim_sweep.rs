//! `ioswap::sim::sweep` as a user's test suite meets it: the seeds come from the test or from
//! the environment (`IOSWAP_SEEDS` for a CI sweep, `IOSWAP_SEED` to replay one run), and the
//! first failure names its seed, the faults injected and the command that replays it. The
//! environment is read by a child process (this test binary run again), so tests running in
//! parallel never share it.
#![cfg(feature = "fiber")]

use std::process::Command;

use ioswap::sim::{sweep, sweep_with, Faults, World};

/// The child: a sweep of 10 seeds by default, over a world with faults, whose client fails on
/// seed 4; it prints the seeds it ran, then the failure, if any.
#[test]
#[ignore = "the child of the tests below, which run it with its environment"]
fn child_sweep() {
    let mut ran = Vec::new();
    let outcome = sweep(10, |seed| {
        ran.push(seed);
        World::new(seed)
            .faults(Faults::default())
            .client("check", move |cx, _world| async move {
                cx.sleep(10).await?;
                assert!(seed != 4, "seed 4 breaks the invariant");
                Ok(())
            })
            .run()
            .map(drop)
    });
    println!("ran: {ran:?}");
    match outcome {
        Ok(passed) => println!("passed: {passed}"),
        Err(failure) => println!("failure: {failure}"),
    }
}

/// The child with a scheduler: the same sweep, its worlds run by `IOSWAP_SCHEDULER`'s choice.
#[test]
#[ignore = "the child of the tests below, which run it with its environment"]
fn child_sweep_with() {
    let outcome = sweep_with(10, |seed, scheduler| {
        World::new(seed)
            .scheduler(scheduler.clone())
            .client("check", move |cx, _world| async move {
                cx.sleep(10).await?;
                assert!(seed != 4, "seed 4 breaks the invariant");
                Ok(())
            })
            .run()
            .map(drop)
    });
    match outcome {
        Ok(passed) => println!("passed: {passed}"),
        Err(failure) => println!("failure: {failure}"),
    }
}

/// Runs the child with `env` and gives its standard output.
fn child(env: &[(&str, &str)]) -> String {
    child_named("child_sweep", env)
}

fn child_named(name: &str, env: &[(&str, &str)]) -> String {
    let me = std::env::current_exe().expect("the test binary");
    let mut command = Command::new(me);
    command.args(["--exact", name, "--include-ignored", "--nocapture"]);
    command
        .env_remove("IOSWAP_SEED")
        .env_remove("IOSWAP_SEEDS")
        .env_remove("IOSWAP_SCHEDULER");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("the child runs");
    assert!(output.status.success(), "the child failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Without the environment: the test's own seeds, stopping at the first failure (seed 4), whose
/// report names the faults and the one command that replays it.
#[test]
fn a_sweep_stops_at_the_first_failing_seed_and_says_how_to_replay_it() {
    let out = child(&[]);
    assert!(out.contains("ran: [0, 1, 2, 3, 4]"), "{out}");
    assert!(
        out.contains("failure: child_sweep: seed 4 failed (after 4 passing seeds)"),
        "{out}"
    );
    assert!(out.contains("faults injected"), "{out}");
    assert!(out.contains("seed 4 breaks the invariant"), "{out}");
    assert!(
        out.contains("replay exactly this run: IOSWAP_SEED=4 cargo test child_sweep -- --exact"),
        "{out}"
    );
}

/// `IOSWAP_SEED` replays that one seed and nothing else.
#[test]
fn ioswap_seed_replays_one_run() {
    let out = child(&[("IOSWAP_SEED", "4")]);
    assert!(out.contains("ran: [4]"), "{out}");
    assert!(out.contains("failure: child_sweep: seed 4 failed"), "{out}");
    let passing = child(&[("IOSWAP_SEED", "6")]);
    assert!(
        passing.contains("ran: [6]") && passing.contains("passed: 1"),
        "{passing}"
    );
}

/// `IOSWAP_SEEDS` sets the sweep's width; a value that is not a number is a failure, not
/// silently the default.
#[test]
fn ioswap_seeds_sets_the_width() {
    let out = child(&[("IOSWAP_SEEDS", "3")]);
    assert!(
        out.contains("ran: [0, 1, 2]") && out.contains("passed: 3"),
        "{out}"
    );
    let bad = child(&[("IOSWAP_SEEDS", "lots")]);
    assert!(bad.contains("ran: []"), "{bad}");
    assert!(
        bad.contains("IOSWAP_SEEDS=\"lots\" is not a number"),
        "{bad}"
    );
}

/// `IOSWAP_SCHEDULER` chooses the scheduler of a sweep that takes one, and its replay command
/// names it; a sweep that runs its own scheduler refuses it rather than ignore it.
#[test]
fn ioswap_scheduler_chooses_the_scheduler() {
    let out = child_named("child_sweep_with", &[("IOSWAP_SCHEDULER", "pct:2:100")]);
    assert!(
        out.contains(
            "replay exactly this run: IOSWAP_SCHEDULER=pct:2:100 IOSWAP_SEED=4 cargo test child_sweep_with -- --exact"
        ),
        "{out}"
    );
    let plain = child_named("child_sweep_with", &[]);
    assert!(
        plain.contains("replay exactly this run: IOSWAP_SEED=4 cargo test"),
        "{plain}"
    );
    let refused = child(&[("IOSWAP_SCHEDULER", "walk")]);
    assert!(refused.contains("ran: []"), "{refused}");
    assert!(
        refused.contains("IOSWAP_SCHEDULER=\"walk\" is set, but this sweep runs its own scheduler"),
        "{refused}"
    );
    let bad = child_named("child_sweep_with", &[("IOSWAP_SCHEDULER", "dfs")]);
    assert!(
        bad.contains("IOSWAP_SCHEDULER=\"dfs\" names no scheduler"),
        "{bad}"
    );
}
