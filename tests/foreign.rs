//! Futures from other crates, on every backend: made cancelable with `Cx::cancelable` (so a
//! timeout around one stops at its deadline), woken from std threads, and combined with
//! `futures-lite`'s combinators. Fiber, single-threaded and deterministic, never waits for the
//! outside world: a wake from another thread is reported as a deadlock on "a future outside the
//! protocol", and a timeout around a cancelable one ends at its deadline, exactly.
mod support;

use std::time::{Duration, Instant};

use futures_lite::{future, StreamExt};
use ioswap::{channel, timeout, Backend, Error, RunError};
use support::woken_from_another_thread;

/// `timeout(100 ms)` around a foreign future a thread completes after 600 ms, made cancelable:
/// the timeout wins at its deadline — on blocking too, whose inline body waits for the
/// foreign wake only until the deadline the timeout gave it.
fn timeout_stops_a_cancelable_foreign_future(backend: Backend) {
    let started = Instant::now();
    let (elapsed, at) = backend
        .run(|cx| async move {
            let timed = timeout(&cx, 100, |cx: ioswap::Cx| async move {
                cx.cancelable(woken_from_another_thread(600)).await
            })
            .await?;
            Ok((timed.is_err(), cx.now_ms()))
        })
        .unwrap();
    let took = started.elapsed();
    match backend {
        Backend::Fiber => {
            assert!(elapsed, "the timeout won");
            assert_eq!(at, 100, "exactly at the deadline on the virtual clock");
        }
        _ => {
            assert!(elapsed, "the timeout won");
            assert!(
                took < Duration::from_millis(500),
                "the timeout waited for the foreign future: {took:?}"
            );
        }
    }
}

/// An `async-channel` receive woken by a std thread's send: real backends wait for it; fiber
/// reports the task as parked on a future outside the protocol.
fn async_channel_woken_from_a_thread(backend: Backend) {
    let (tx, rx) = async_channel::bounded::<u32>(1);
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        let _ = tx.send_blocking(7);
    });
    let outcome = backend.run(move |_| async move { Ok(rx.recv().await) });
    sender.join().unwrap();
    match backend {
        Backend::Fiber => {
            let Err(Error::Run(RunError::Deadlock(deadlock))) = outcome else {
                panic!("fiber should report a deadlock, got {outcome:?}");
            };
            assert!(
                deadlock
                    .to_string()
                    .contains("a future outside the protocol"),
                "{deadlock}"
            );
        }
        _ => assert_eq!(outcome.unwrap(), Ok(7)),
    }
}

/// `futures-lite` combinators over tasks and receivers: `zip` of two tasks, `or` of a task and
/// a sleep, a receiver as a `Stream` with `take` and `collect`.
fn futures_lite_combinators_on_tasks_and_receivers(backend: Backend) {
    let (pair, first, taken) = backend
        .run(|cx| async move {
            let a = cx.spawn(|_| async move { Ok(1) });
            let b = cx.spawn(|_| async move { Ok(2) });
            let (a, b) = future::zip(a, b).await;
            let quick = cx.spawn(|_| async move { Ok("task") });
            let slow = async {
                cx.sleep(1_000).await?;
                Ok("sleep")
            };
            let first = future::or(quick, slow).await?;
            let (tx, rx) = channel::unbounded(&cx);
            for n in 0..5 {
                tx.try_send(n).unwrap();
            }
            let taken: Vec<u32> = rx.take(3).collect().await;
            Ok(((a?, b?), first, taken))
        })
        .unwrap();
    assert_eq!(pair, (1, 2));
    assert_eq!(first, "task");
    assert_eq!(taken, vec![0, 1, 2]);
}

conformance!(
    timeout_stops_a_cancelable_foreign_future,
    async_channel_woken_from_a_thread,
    futures_lite_combinators_on_tasks_and_receivers,
);
