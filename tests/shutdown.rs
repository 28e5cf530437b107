//! A backend after its run: nothing waits on it forever.
mod support;

use futures_lite::future::block_on;
use ioswap::channel::{self, RecvError};
use ioswap::protocol::op::Op;
use ioswap::{Backend, Canceled, Cx};

/// Every wait on a `Cx` whose backend has shut down fails at once with `Canceled` — a sleep, a
/// yield, a shielded sleep, a channel receive, an op — whether it is polled outside any task or
/// by a task of another, live backend. Before, each of them parked forever.
fn waits_after_shutdown_fail_at_once(backend: Backend) {
    let (dead, rx) = backend
        .run(|cx| async move {
            let (tx, rx) = channel::bounded::<u32>(&cx, 1);
            std::mem::forget(tx); // the channel stays open: only the shutdown ends the wait
            Ok((cx.clone(), rx))
        })
        .unwrap();
    assert_eq!(block_on(dead.sleep(10)), Err(Canceled));
    assert_eq!(block_on(dead.sleep_until(u64::MAX)), Err(Canceled));
    assert_eq!(block_on(dead.yield_now()), Err(Canceled));
    assert_eq!(block_on(dead.shield(dead.sleep(10))), Err(Canceled));
    assert_eq!(block_on(rx.recv()), Err(RecvError::Canceled));
    let nop = block_on(dead.submit(Op::Nop));
    assert!(Canceled::is_canceled(&nop.result.unwrap_err()));
    assert!(matches!(nop.op, Op::Nop), "the op comes back unrun");

    // From a task of a live backend (a new one of the same kind): the dead backend's waits
    // fail there too, and the live backend's own clock goes on.
    let (slept, took) = backend
        .run(move |cx: Cx| async move {
            let start = cx.now_ms();
            let slept = dead.sleep(10).await;
            cx.sleep(3).await?;
            Ok((slept, cx.now_ms() - start))
        })
        .unwrap();
    assert_eq!(slept, Err(Canceled));
    match backend {
        Backend::Fiber => assert_eq!(took, 3),
        _ => assert!(took >= 3, "{took}"),
    }
}

conformance!(waits_after_shutdown_fail_at_once);

/// At the end of a run the leftovers are canceled and unwind; a task one of them spawns while
/// unwinding is canceled before its first poll, so its body never runs, under every fiber
/// scheduler. (The drain passes over the live tasks again only after a spawn, not before every
/// turn: under a step scheduler, which runs one task per turn, N leftovers took N passes over N
/// tasks, 10 s for 40,000 of them.)
#[cfg(feature = "fiber")]
#[test]
fn a_task_spawned_while_unwinding_at_shutdown_never_runs() {
    use std::cell::Cell;
    use std::rc::Rc;

    use ioswap::{FiberIo, Scheduler};

    let pct = Scheduler::Pct {
        depth: 3,
        steps: 100,
    };
    for scheduler in [Scheduler::Random, Scheduler::Walk, pct] {
        for seed in 0..5 {
            // Leftovers that slept, unwound, spawned a child; children that ran.
            let counts: Rc<[Cell<u32>; 4]> = Rc::default();
            let io = FiberIo::with_scheduler(seed, scheduler.clone());
            let in_run = counts.clone();
            io.run(move |cx| async move {
                for _ in 0..50 {
                    let counts = in_run.clone();
                    cx.spawn::<(), _, _>(move |cx| async move {
                        let bump = |i: usize| counts[i].set(counts[i].get() + 1);
                        bump(0);
                        let slept = cx.sleep(u64::MAX).await;
                        bump(1);
                        let counts2 = counts.clone();
                        let child = cx.spawn::<(), _, _>(move |_| async move {
                            counts2[3].set(counts2[3].get() + 1);
                            Ok(())
                        });
                        bump(2);
                        child.detach();
                        slept
                    })
                    .detach();
                }
                // Until every leftover sleeps (one canceled before its first poll would never
                // run its body at all).
                while in_run[0].get() < 50 {
                    cx.yield_now().await?;
                }
                Ok(())
            })
            .unwrap();
            let counts = counts.iter().map(Cell::get).collect::<Vec<_>>();
            assert_eq!(counts, [50, 50, 50, 0], "{scheduler:?}, seed {seed}");
        }
    }
}
