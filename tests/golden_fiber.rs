//! Golden runs on the fiber backend: exact logs, exact virtual times.
#![cfg(feature = "fiber")]
mod support;

use std::future::poll_fn;

use ioswap::protocol::{Park, RawTask};
use ioswap::{Backend, Canceled, Error, FiberIo, RunError, SpawnOptions};
use support::Log;

/// (a) spawn → arm → suspend → ready → resume, entirely through the `Io` trait, driven turn by
/// turn by hand.
#[test]
fn protocol_round_trip() {
    let fiber = FiberIo::new();
    let io = fiber.io();
    let log = Log::new();
    let (timer_park, signal) = (Park::new("timer"), Park::new("signal"));
    let opts = SpawnOptions::new().name("worker");
    let body = {
        let (io, log, timer_park, signal) =
            (io.clone(), log.clone(), timer_park.clone(), signal.clone());
        async move {
            log.push(format!("run@{}", io.now_ms()));
            io.arm_timer(io.now_ms() + 10, &timer_park);
            log.push("armed");
            poll_fn(|cx| io.suspend_raw(&timer_park, cx)).await?;
            log.push(format!("timer-resumed@{}", io.now_ms()));
            poll_fn(|cx| io.suspend_raw(&signal, cx)).await?;
            log.push(format!("ready-resumed@{}", io.now_ms()));
            Ok::<_, Canceled>(7)
        }
    };
    let (raw, task) = RawTask::new(io.core().queue(), &opts, body);
    io.spawn_raw(raw, &opts).unwrap();
    log.push("spawned");
    let mut turn = 0;
    while !task.is_finished() {
        turn += 1;
        let next = io.poll(u64::MAX);
        log.push(format!("turn{turn}:{next:?}@{}", io.now_ms()));
        if turn == 4 {
            io.ready(&signal);
            log.push("ready(signal)");
        }
        assert!(turn < 10, "stuck: {}", log.joined());
    }
    assert_eq!(
        log.joined(),
        "spawned run@0 armed turn1:Timer(10)@0 turn2:Run@10 timer-resumed@10 turn3:Idle@10 \
         turn4:Idle@10 ready(signal) ready-resumed@10 turn5:Idle@10"
    );
    assert_eq!(futures_lite::future::block_on(task), Ok(7));
}

/// (b) Fiber defers spawned tasks: main logs 1 and 2 before the children's 10 and 20. Blocking
/// runs them inline, so their lines come first.
#[test]
fn spawn_deferral_order() {
    let run = |backend: Backend| {
        let log = Log::new();
        let l = log.clone();
        backend
            .run(|cx| async move {
                let spawn_logger = |n: u32| {
                    let l = l.clone();
                    cx.spawn(move |_| async move {
                        l.push(n);
                        Ok(n)
                    })
                };
                let (a, b) = (spawn_logger(10), spawn_logger(20));
                l.push(1);
                l.push(2);
                let sum = a.await? + b.await?;
                l.push(sum);
                Ok(())
            })
            .unwrap();
        log.joined()
    };
    assert_eq!(run(Backend::Fiber), "1 2 10 20 30");
    #[cfg(feature = "blocking")]
    assert_eq!(run(Backend::Blocking), "10 20 1 2 30");
}

/// (c) A worker logs 1, sleeps, would log 2; main cancels it mid-sleep and logs -99.
#[test]
fn cancel_mid_sleep() {
    let log = Log::new();
    let l = log.clone();
    let (joined, at) = ioswap::sim(0, |cx| async move {
        let worker = cx.spawn({
            let l = l.clone();
            move |cx| async move {
                l.push(1);
                cx.sleep(100).await?;
                l.push(2);
                Ok(())
            }
        });
        cx.sleep(10).await?;
        worker.cancel();
        let joined = worker.await;
        l.push(-99);
        Ok((joined, cx.now_ms()))
    })
    .unwrap();
    assert_eq!(log.joined(), "1 -99");
    assert_eq!((joined, at), (Err(Canceled), 10));
}

/// (d) Two tasks each waiting for the other: a deadlock error naming both, and main.
#[test]
fn mutual_wait_is_a_deadlock() {
    let err = Backend::Fiber
        .run(|cx| async move {
            let (from_a, from_b) = (cx.park("signal from a"), cx.park("signal from b"));
            let a = cx
                .spawn_with(SpawnOptions::new().name("a"), {
                    let (from_a, from_b) = (from_a.clone(), from_b.clone());
                    move |cx| async move {
                        cx.suspend(from_b).await?;
                        cx.ready(&from_a);
                        Ok(())
                    }
                })
                .unwrap();
            let b = cx
                .spawn_with(SpawnOptions::new().name("b"), move |cx| async move {
                    cx.suspend(from_a).await?;
                    cx.ready(&from_b);
                    Ok(())
                })
                .unwrap();
            a.await?;
            b.await
        })
        .unwrap_err();
    let Error::Run(RunError::Deadlock(deadlock)) = &err else {
        panic!("expected a deadlock, got {err:?}");
    };
    assert_eq!(
        deadlock.to_string(),
        "deadlock at t=0ms: 'main' (#1) parked on join 'a' (#2); \
         'a' (#2) parked on signal from b; 'b' (#3) parked on signal from a"
    );
}

/// Completion wins for a sleep: the worker's timer fires in the same turn in which main cancels
/// it, before the worker runs. The sleep returns `Ok`, the worker finishes, the join is `Ok`.
#[test]
fn sleep_completion_wins_over_a_same_turn_cancel() {
    let log = Log::new();
    let l = log.clone();
    let joined = ioswap::sim(0, |cx| async move {
        let worker = cx.spawn(move |cx| async move {
            let slept = cx.sleep(10).await;
            l.push(format!("worker slept {slept:?}@{}", cx.now_ms()));
            slept
        });
        // Main's timer is armed before the worker's (the worker has not run yet), so at t=10
        // main runs first and cancels a worker whose timer has already fired.
        cx.sleep(10).await?;
        worker.cancel();
        Ok(worker.await)
    })
    .unwrap();
    assert_eq!(log.joined(), "worker slept Ok(())@10");
    assert_eq!(joined, Ok(()));
}
