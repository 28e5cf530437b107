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
