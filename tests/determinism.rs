//! The fiber backend is a pure function of the program and the seed.
#![cfg(feature = "fiber")]
use std::cell::RefCell;
use std::rc::Rc;

use ioswap::FiberIo;

/// The workload's own randomness (sleep lengths, yields), fixed for every run: only the
/// scheduler's seed varies between runs.
fn workload_random(task: u64, step: u64) -> u64 {
    let mut z = (task << 32 | step).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Outcome {
    log: Vec<(u64, u64, u64)>,
    trace: Vec<ioswap::TraceEvent>,
    trace_hash: u64,
    end_ms: u64,
}

/// 1,000 tasks, each doing five steps of a random short sleep or a yield, logging
/// (task, step, virtual time) as it goes.
fn run_workload(seed: u64) -> Outcome {
    let fiber = FiberIo::with_seed(seed).record_trace();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let end_ms = fiber
        .run(|cx| async move {
            let tasks: Vec<_> = (0..1_000u64)
                .map(|task| {
                    let l = l.clone();
                    cx.spawn(move |cx| async move {
                        for step in 0..5 {
                            let r = workload_random(task, step);
                            if r % 3 == 0 {
                                cx.yield_now().await?;
                            } else {
                                cx.sleep(r % 7).await?;
                            }
                            l.borrow_mut().push((task, step, cx.now_ms()));
                        }
                        Ok(())
                    })
                })
                .collect();
            for task in tasks {
                task.await?;
            }
            Ok(cx.now_ms())
        })
        .unwrap();
    let log = log.take();
    Outcome {
        log,
        trace: fiber.trace(),
        trace_hash: fiber.trace_hash(),
        end_ms,
    }
}

#[test]
fn same_seed_same_run() {
    for seed in [0, 1, 7, 0xdead_beef] {
        let (first, second) = (run_workload(seed), run_workload(seed));
        assert_eq!(first.log.len(), 5_000);
        assert_eq!(first.log, second.log, "seed {seed}: logs differ");
        assert_eq!(first.trace, second.trace, "seed {seed}: traces differ");
        assert_eq!(first.trace_hash, second.trace_hash);
        assert_eq!(first.end_ms, second.end_ms);
    }
}

#[test]
fn different_seeds_interleave_differently() {
    let runs: Vec<Outcome> = [0, 1, 2, 3].into_iter().map(run_workload).collect();
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            assert_ne!(a.log, b.log, "two seeds gave the same interleaving");
            assert_ne!(a.trace_hash, b.trace_hash);
        }
    }
    // The program is the same, so what each task did and when is the same; only the order
    // among tasks ready at the same instant differs.
    let sorted = |o: &Outcome| {
        let mut log = o.log.clone();
        log.sort();
        log
    };
    assert!(runs.iter().all(|o| sorted(o) == sorted(&runs[0])));
}

#[test]
fn seed_zero_is_fifo() {
    let fiber = FiberIo::new().record_trace();
    fiber
        .run(|cx| async move {
            let tasks: Vec<_> = (0..5).map(|_| cx.spawn(|_| async { Ok(()) })).collect();
            for task in tasks {
                task.await?;
            }
            Ok(())
        })
        .unwrap();
    let order: Vec<u64> = fiber.trace().iter().map(|e| e.task).collect();
    // main runs, then its five children in spawn order, then main again to join them.
    assert_eq!(order, [1, 2, 3, 4, 5, 6, 1]);
}

/// State outside the seed: how many times the flaky task has run, across runs.
static FLAKY_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// The lines of the flaky task's two waits, as each run saw them.
    static WAIT_LINES: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, 0)) };
}

/// A task whose second step waits somewhere else the second time the program runs.
async fn flaky(cx: ioswap::Cx) -> Result<(), ioswap::Canceled> {
    cx.yield_now().await?;
    if FLAKY_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
        let (sleep, line) = (cx.sleep(1), line!());
        WAIT_LINES.with(|w| w.set((line, w.get().1)));
        sleep.await?;
    } else {
        let (yielded, line) = (cx.yield_now(), line!());
        WAIT_LINES.with(|w| w.set((w.get().0, line)));
        yielded.await?;
    }
    cx.yield_now().await
}

/// A counter outside the seed steers one task: the check names the first step that differs,
/// the task, the line that spawned it and the line where each run's step left it waiting.
#[test]
fn a_nondeterministic_branch_is_named_at_its_first_step() {
    FLAKY_RUNS.store(0, std::sync::atomic::Ordering::Relaxed);
    let spawn_line = std::rc::Rc::new(std::cell::Cell::new(0));
    let line = spawn_line.clone();
    let program = move |io: &FiberIo| {
        let line = line.clone();
        io.run(move |cx| async move {
            let steady: Vec<_> = (0..4)
                .map(|_| {
                    cx.spawn(|cx| async move {
                        for _ in 0..3 {
                            cx.yield_now().await?;
                        }
                        Ok(())
                    })
                })
                .collect();
            let named = ioswap::SpawnOptions::new().name("flaky");
            let (at, task) = (line!(), cx.spawn_with(named, flaky));
            line.set(at);
            task.unwrap().await?;
            for task in steady {
                task.await?;
            }
            Ok(())
        })
        .unwrap();
    };
    let divergence = ioswap::check_determinism(7, program.clone()).unwrap_err();
    println!("{divergence}");

    // Where the flaky task took its second step, on a run that takes the first branch.
    FLAKY_RUNS.store(0, std::sync::atomic::Ordering::Relaxed);
    let io = FiberIo::with_seed(7).record_trace();
    program(&io);
    let flaky_id = io.tasks().iter().find(|t| t.name == "flaky").unwrap().id;
    let second_step = io
        .trace()
        .iter()
        .enumerate()
        .filter(|(_, event)| event.task == flaky_id)
        .nth(1)
        .unwrap()
        .0;

    let (sleep_line, yield_line) = WAIT_LINES.with(|w| w.get());
    assert_eq!(divergence.step, second_step);
    let (first, second) = (
        divergence.first.clone().unwrap(),
        divergence.second.clone().unwrap(),
    );
    for step in [&first, &second] {
        assert_eq!((step.task, step.name.as_str()), (flaky_id, "flaky"));
        let spawned = step.spawned_at.unwrap();
        assert_eq!(
            (spawned.file(), spawned.line()),
            (file!(), spawn_line.get())
        );
    }
    let waited = |step: &ioswap::StepReport| {
        let at = step.suspended_at.unwrap();
        (at.file(), at.line())
    };
    assert_eq!(waited(&first), (file!(), sleep_line));
    assert_eq!(waited(&second), (file!(), yield_line));
    assert_ne!(sleep_line, yield_line);
    assert!(divergence
        .to_string()
        .contains(&format!("{}:{sleep_line}", file!())));

    // Without the counter, the same program is deterministic.
    let steady = ioswap::check_determinism(7, |io| {
        FLAKY_RUNS.store(0, std::sync::atomic::Ordering::Relaxed);
        program(io)
    });
    assert_eq!(steady, Ok(()));
}

/// State outside the seed, read by a simulated world's client.
static WORLD_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A world's two runs are compared the same way: the client named, the line that declared it,
/// the line of each run's wait.
#[test]
fn a_nondeterministic_world_is_named_at_its_first_step() {
    let lines = Rc::new(std::cell::Cell::new((0, 0, 0)));
    let seen = lines.clone();
    let world = move |seed| {
        let seen = seen.clone();
        let declared = line!() + 1;
        ioswap::sim::World::new(seed).client("poller", move |cx, _world| async move {
            cx.sleep(5).await?;
            if WORLD_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                let (sleep, line) = (cx.sleep(3), line!());
                seen.set((declared, line, seen.get().2));
                sleep.await?;
            } else {
                let (sleep, line) = (cx.sleep(4), line!());
                seen.set((seen.get().0, seen.get().1, line));
                sleep.await?;
            }
            Ok(())
        })
    };
    let divergence = ioswap::sim::check_world_determinism(11, &world).unwrap_err();
    println!("{divergence}");
    let (declared, first_wait, second_wait) = lines.get();
    let (first, second) = (divergence.first.unwrap(), divergence.second.unwrap());
    assert_eq!(
        (first.name.as_str(), second.name.as_str()),
        ("poller", "poller")
    );
    assert_eq!(first.spawned_at.unwrap().line(), declared);
    assert_eq!(first.suspended_at.unwrap().line(), first_wait);
    assert_eq!(second.suspended_at.unwrap().line(), second_wait);
    assert_eq!(first.at_ms, 5);

    // Reset before each run, the same world is deterministic.
    let steady = ioswap::sim::check_world_determinism(11, |seed| {
        WORLD_RUNS.store(0, std::sync::atomic::Ordering::Relaxed);
        world(seed)
    });
    assert_eq!(steady, Ok(()));
}
