//! Deadlocks are reported, never hung on, and stuck tasks do not outlive `run`.
mod support;

use ioswap::{Backend, Error, RunError};
use support::{Log, OnDrop};

fn deadlock_of(outcome: Result<impl std::fmt::Debug, Error>) -> ioswap::Deadlock {
    match outcome {
        Err(Error::Run(RunError::Deadlock(deadlock))) => deadlock,
        other => panic!("expected a deadlock, got {other:?}"),
    }
}

/// A wait that nothing will end, inside a shield (so canceling cannot end it either), is a
/// reported deadlock on every backend — not a panic out of `run`, not a hang.
fn shielded_wait_forever(backend: Backend) {
    let deadlock = deadlock_of(backend.run(|cx| async move {
        let never = cx.park("never readied");
        cx.shield(cx.suspend(never)).await
    }));
    assert_eq!(deadlock.blocked[0].name, "main");
    assert_eq!(deadlock.blocked[0].parked_on, "never readied");
}

/// The same one level down: a child stuck in a shield, its parent joining it.
fn shielded_child_wait_forever(backend: Backend) {
    let deadlock = deadlock_of(backend.run(|cx| async move {
        let child = cx.spawn(|cx| async move {
            let never = cx.park("never readied");
            cx.shield(cx.suspend(never)).await
        });
        child.await
    }));
    let child = deadlock
        .blocked
        .iter()
        .find(|t| t.id == 2)
        .expect("the child is named");
    assert_eq!(child.parked_on, "never readied");
}

/// A leftover task stuck in a shield when main returns has its future dropped at shutdown
/// (its drop code runs) instead of leaking. On blocking the stuck child is found at its spawn.
fn stuck_leftover_is_dropped(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let outcome = backend.run(|cx| async move {
        cx.spawn(move |cx| async move {
            let _guard = OnDrop(l, "dropped");
            let never = cx.park("never readied");
            cx.shield(cx.suspend(never)).await
        })
        .detach();
        cx.sleep(5).await?;
        Ok("main done")
    });
    assert_eq!(log.joined(), "dropped");
    match backend {
        Backend::Blocking => {
            deadlock_of(outcome);
        }
        _ => assert_eq!(outcome, Ok("main done")),
    }
}

/// A detached leftover awaiting a future outside the protocol that ignores its cancel
/// (`std::future::pending`) is stuck like any other: `run` returns and the leftover's future is
/// dropped, on every backend that has leftovers. Before, uring waited forever for a foreign
/// wake. Blocking would run such a task inline and block its spawner on it for good (a foreign
/// future may be woken by another thread), so there it cannot be spawned concurrently: a typed
/// refusal.
fn leftover_on_a_foreign_future_is_dropped(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let outcome = backend.run(|cx| async move {
        let spawned = cx.spawn_with(ioswap::SpawnOptions::new().concurrent(), move |_| {
            let guard = OnDrop(l, "dropped");
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        match spawned {
            Ok(task) => task.detach(),
            Err(refused) => return Ok(Err(refused)),
        }
        cx.sleep(5).await?;
        Ok(Ok("main done"))
    });
    match backend {
        Backend::Blocking => {
            assert_eq!(outcome, Ok(Err(ioswap::SpawnError::ConcurrencyUnavailable)));
            assert_eq!(log.joined(), "dropped", "the refused future is dropped");
        }
        _ => {
            assert_eq!(outcome, Ok(Ok("main done")));
            assert_eq!(log.joined(), "dropped");
        }
    }
}

conformance!(
    shielded_wait_forever,
    shielded_child_wait_forever,
    stuck_leftover_is_dropped,
    leftover_on_a_foreign_future_is_dropped,
);

/// A leftover task that, on its cancel, spawns more work (spawn is not a suspend point): that
/// work is canceled too, and `run` returns. (Fiber only: blocking has no leftovers, it runs
/// every task inline to its end.)
#[cfg(feature = "fiber")]
#[test]
fn work_spawned_while_draining_is_canceled() {
    let log = Log::new();
    let l = log.clone();
    let value = Backend::Fiber
        .run(|cx| async move {
            cx.spawn(move |cx| async move {
                if let Err(ioswap::Canceled) = cx.sleep(10_000).await {
                    l.push("leftover canceled");
                    cx.spawn(|cx| async move {
                        while cx.sleep(1_000).await.is_ok() {}
                        Ok(())
                    })
                    .detach();
                }
                Ok(())
            })
            .detach();
            cx.sleep(5).await?;
            Ok(7)
        })
        .unwrap();
    assert_eq!((value, log.joined().as_str()), (7, "leftover canceled"));
}

/// Runs `run` under the watchdog and gives its debug output.
#[cfg(feature = "blocking")]
fn within_10s<T: std::fmt::Debug>(run: impl FnOnce() -> T + Send + 'static) -> String {
    support::within(10, "the run", move || format!("{:?}", run()))
}

/// Blocking: an inline child parked on a park (no timer) and racing a foreign future that
/// another thread wakes during the deadlock grace period finishes with the foreign result, and
/// its spawner goes on. (A turn of the loop once ran the child's runnable behind the spawn's
/// back, then waited forever for it.)
#[cfg(feature = "blocking")]
#[test]
fn blocking_child_woken_from_another_thread_in_the_grace_period_finishes() {
    let out = within_10s(|| {
        ioswap::BlockingIo::new().run(|cx| async move {
            let child = cx.spawn(|cx| async move {
                let park = cx.park("never readied");
                futures_lite::future::or(async { cx.suspend(park).await.map(|()| "park") }, async {
                    support::woken_from_another_thread(50).await;
                    Ok("foreign")
                })
                .await
            });
            child.await
        })
    });
    assert_eq!(out, "Ok(\"foreign\")");
}

/// Blocking: a main task given up on as deadlocked, joining a child that then waits on a
/// foreign future nothing will wake, is a reported deadlock, not a loop spinning forever.
#[cfg(feature = "blocking")]
#[test]
fn blocking_given_up_main_joining_a_child_on_a_foreign_future_is_a_deadlock() {
    let out = within_10s(|| {
        ioswap::BlockingIo::new().run(|cx| async move {
            let signal = cx.park("signal");
            let to_child = signal.clone();
            let child = cx.spawn(move |cx| async move {
                cx.shield(cx.suspend(to_child)).await?;
                std::future::pending::<()>().await;
                Ok(())
            });
            cx.shield(async {
                cx.ready(&signal);
                child.await
            })
            .await
        })
    });
    assert!(out.contains("Deadlock"), "{out}");
}
