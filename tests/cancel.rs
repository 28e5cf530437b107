//! Cancellation at suspend points, on every backend.
mod support;

use ioswap::protocol::Next;
use ioswap::{Backend, Canceled, Cx, SpawnOptions};
use support::{new_io, Log};

/// Canceled before it first runs: the body never runs and the join says Canceled. Blocking has
/// already run the task inline by the time `spawn` returns, so there the join is `Ok`.
fn cancel_before_start(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let joined = backend
        .run(|cx| async move {
            let task = cx.spawn(move |_| async move {
                l.push("body ran");
                Ok(5)
            });
            task.cancel();
            Ok(task.await)
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            assert_eq!(joined, Ok(5));
            assert_eq!(log.joined(), "body ran");
        }
        _ => {
            assert_eq!(joined, Err(Canceled));
            assert_eq!(log.joined(), "");
        }
    }
}

/// Canceled while sleeping: the line after the sleep never runs. On blocking the worker slept
/// and finished inline before the cancel could be made.
fn cancel_while_sleeping(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let joined = backend
        .run(|cx| async move {
            let worker = cx.spawn(move |cx| async move {
                l.push("before");
                cx.sleep(50).await?;
                l.push("after");
                Ok(())
            });
            cx.sleep(10).await?;
            worker.cancel();
            Ok(worker.await)
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            assert_eq!(joined, Ok(()));
            assert_eq!(log.joined(), "before after");
        }
        _ => {
            assert_eq!(joined, Err(Canceled));
            assert_eq!(log.joined(), "before");
        }
    }
}

/// A task that finished before the cancel landed joins as `Ok`: completion wins.
fn cancel_after_completion(backend: Backend) {
    let joined = backend
        .run(|cx| async move {
            let task = cx.spawn(|_| async { Ok("done") });
            cx.sleep(5).await?;
            assert!(task.is_finished());
            task.cancel();
            Ok(task.await)
        })
        .unwrap();
    assert_eq!(joined, Ok("done"));
}

/// A task may cancel itself; the request is sticky: every later suspend point fails, except
/// inside a shield, where cleanup can still sleep; after the shield it fails again.
fn sticky_cancel_with_shielded_cleanup(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let joined = backend
        .run(|cx| async move {
            let task = cx.spawn(move |cx| async move {
                cx.current_task().unwrap().cancel();
                if let Err(Canceled) = cx.sleep(10).await {
                    l.push("first sleep canceled");
                }
                if let Err(Canceled) = cx.yield_now().await {
                    l.push("still canceled");
                }
                let start = cx.now_ms();
                let cleanup = cx
                    .shield(async {
                        cx.sleep(5).await?;
                        cx.yield_now().await?;
                        Ok::<_, Canceled>(cx.now_ms() - start)
                    })
                    .await;
                l.push(format!("cleanup {:?}", cleanup.map(|ms| ms >= 5)));
                cx.check_cancel()?;
                l.push("never");
                Ok(())
            });
            Ok(task.await)
        })
        .unwrap();
    assert_eq!(joined, Err(Canceled));
    assert_eq!(
        log.joined(),
        "first sleep canceled still canceled cleanup Ok(true)"
    );
}

/// A CPU loop with no suspend point stops at `check_cancel`.
fn check_cancel_in_a_loop(backend: Backend) {
    let (joined, iterations) = backend
        .run(|cx| async move {
            let task = cx.spawn(|cx| async move {
                let me = cx.current_task().unwrap();
                let mut i = 0u64;
                loop {
                    if i == 500 {
                        me.cancel();
                    }
                    if cx.check_cancel().is_err() {
                        return Ok(i);
                    }
                    i += 1;
                }
            });
            let stopped_at = task.await?;
            let again = cx.spawn(|cx| async move {
                cx.current_task().unwrap().cancel();
                for _ in 0..10 {
                    cx.check_cancel()?;
                }
                Ok(())
            });
            Ok((again.await, stopped_at))
        })
        .unwrap();
    assert_eq!(iterations, 500);
    assert_eq!(joined, Err(Canceled));
}

/// A task canceled by another while it spins (yielding now and then) stops at its next check.
fn cancel_a_spinning_task(backend: Backend) {
    let joined = backend
        .run(|cx| async move {
            let spinner = cx.spawn(|cx| async move {
                let mut rounds = 0u32;
                loop {
                    for _ in 0..100 {
                        cx.check_cancel()?;
                    }
                    rounds += 1;
                    if rounds == 50 {
                        return Ok(rounds);
                    }
                    cx.yield_now().await?;
                }
            });
            cx.yield_now().await?;
            spinner.cancel();
            Ok(spinner.await)
        })
        .unwrap();
    match backend {
        Backend::Blocking => assert_eq!(joined, Ok(50)),
        _ => assert_eq!(joined, Err(Canceled)),
    }
}

/// Dropping a handle requests cancellation; the task stops at its next suspend point. (Dropped
/// before it started, it would never run at all: see `cancel_before_start`.)
fn dropping_a_handle_cancels(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    backend
        .run(|cx| async move {
            let task = cx.spawn(move |cx| async move {
                l.push(1);
                cx.sleep(20).await?;
                l.push(2);
                Ok(())
            });
            cx.sleep(5).await?; // the task has started and is sleeping
            drop(task);
            cx.sleep(50).await?;
            Ok(())
        })
        .unwrap();
    match backend {
        Backend::Blocking => assert_eq!(log.joined(), "1 2"),
        _ => assert_eq!(log.joined(), "1"),
    }
}

/// A joiner canceled while its child is unfinished gets `Canceled` from the join, and the
/// dropped handle cancels the child in turn: cancellation flows down.
fn cancel_flows_to_children(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let joined = backend
        .run(|cx| async move {
            let parent = cx.spawn(move |cx| async move {
                let child = cx.spawn(move |cx| async move {
                    let slept = cx.sleep(100).await;
                    l.push(format!("child {slept:?}"));
                    slept
                });
                child.await
            });
            cx.sleep(10).await?;
            parent.cancel();
            let joined = parent.await;
            cx.sleep(10).await?; // let the child unwind
            Ok(joined)
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            assert_eq!(joined, Ok(()));
            assert_eq!(log.joined(), "child Ok(())");
        }
        _ => {
            assert_eq!(joined, Err(Canceled));
            assert_eq!(log.joined(), "child Err(Canceled)");
        }
    }
}

/// When main returns, tasks still alive are canceled and unwind before `run` returns, running
/// their shielded cleanup: nothing outlives `run`.
fn run_cancels_leftover_tasks(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    backend
        .run(|cx| async move {
            cx.spawn(move |cx| async move {
                let slept = cx.sleep(100).await;
                l.push(format!("leftover {slept:?}"));
                cx.shield(cx.sleep(1)).await?;
                l.push("cleaned up");
                slept
            })
            .detach();
            cx.sleep(5).await?; // the leftover has started and is sleeping
            Ok(())
        })
        .unwrap();
    match backend {
        Backend::Blocking => assert_eq!(log.joined(), "leftover Ok(()) cleaned up"),
        _ => assert_eq!(log.joined(), "leftover Err(Canceled) cleaned up"),
    }
}

/// A canceled suspend evicts the timers armed for its park: nothing is left to fire.
fn canceled_suspend_evicts_its_timers(backend: Backend) {
    let (raised, left, never_left) = backend
        .run(|cx| async move {
            let park = cx.park("with timers");
            let timer = cx.arm_timer(cx.now_ms() + 10_000, &park);
            let never = cx.arm_timer(u64::MAX, &park);
            cx.current_task().unwrap().cancel();
            let raised = cx.suspend(park).await;
            Ok((raised, cx.disarm_timer(timer), cx.disarm_timer(never)))
        })
        .unwrap();
    assert_eq!((raised, left, never_left), (Err(Canceled), None, None));
}

/// A joiner canceled after its child finished still gets the child's value (completion wins);
/// inside a shield, a join waits for an unfinished child even though the joiner is canceled.
fn joins_under_the_joiners_cancel(backend: Backend) {
    let (finished, shielded) = backend
        .run(|cx| async move {
            let quick = cx.spawn(|_| async { Ok(7) });
            let slow = cx.spawn(|cx| async move {
                cx.sleep(20).await?;
                Ok(8)
            });
            cx.sleep(5).await?;
            cx.current_task().unwrap().cancel();
            let finished = quick.await;
            let shielded = cx.shield(slow).await;
            Ok((finished, shielded))
        })
        .unwrap();
    assert_eq!((finished, shielded), (Ok(7), Ok(8)));
}

/// A task given a deadline at spawn and sleeping past it is canceled when the clock reaches the
/// deadline: the join says Canceled, the line after its sleep never runs. On blocking too, where
/// the task runs inline: its sleep waits inside the backend's loop, which fires the deadline.
fn deadline_cancels_a_task(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let (joined, start, at) = backend
        .run(|cx| async move {
            let start = cx.now_ms();
            let opts = SpawnOptions::new().deadline_ms(start + 30);
            let task = cx
                .spawn_with(opts, move |cx| async move {
                    l.push("sleeping");
                    cx.sleep(200).await?;
                    l.push("woke");
                    Ok(1)
                })
                .expect("spawned");
            let joined = task.await;
            Ok((joined, start, cx.now_ms()))
        })
        .unwrap();
    assert_eq!(joined, Err(Canceled));
    assert_eq!(log.joined(), "sleeping");
    assert!(
        at >= start + 30,
        "canceled at {at}, before the deadline {}",
        start + 30
    );
    if backend == Backend::Fiber {
        assert_eq!(at, 30);
    }
}

/// A task that ends before its deadline is `Ok` and leaves no timer armed: the backend reports
/// no pending deadline afterwards (on fiber the clock stays at the finish time).
fn task_done_before_its_deadline_leaves_no_timer(backend: Backend) {
    let io = new_io(backend);
    let cx = Cx::new(io.clone());
    let opts = SpawnOptions::new().deadline_ms(io.now_ms() + 60_000);
    let task = cx
        .spawn_with(opts, |cx| async move {
            cx.sleep(5).await?;
            Ok(7)
        })
        .expect("spawned");
    while !task.is_finished() {
        io.poll(u64::MAX);
    }
    assert_eq!(io.poll(0), Next::Idle, "the deadline's timer was disarmed");
    assert_eq!(futures_lite::future::block_on(task), Ok(7));
    if backend == Backend::Fiber {
        assert_eq!(io.now_ms(), 5);
    }
}

/// A deadline already past when the task starts cancels it at its first suspend point, even
/// one that would not wait (a yield); the code before it runs.
fn past_deadline_cancels_at_the_first_suspend(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let joined = backend
        .run(|cx| async move {
            cx.sleep(5).await?;
            let opts = SpawnOptions::new().deadline_ms(cx.now_ms() - 5);
            let task = cx
                .spawn_with(opts, move |cx| async move {
                    l.push("before");
                    cx.yield_now().await?;
                    l.push("after");
                    Ok(1)
                })
                .expect("spawned");
            Ok(task.await)
        })
        .unwrap();
    assert_eq!(joined, Err(Canceled));
    assert_eq!(log.joined(), "before");
}

/// `u64::MAX` is no deadline: the task runs to its end however long it takes.
fn max_deadline_is_no_deadline(backend: Backend) {
    let joined = backend
        .run(|cx| async move {
            let opts = SpawnOptions::new().deadline_ms(u64::MAX);
            assert_eq!(opts.task_deadline_ms(), u64::MAX);
            let task = cx
                .spawn_with(opts, |cx| async move {
                    cx.sleep(20).await?;
                    Ok(3)
                })
                .expect("spawned");
            Ok(task.await)
        })
        .unwrap();
    assert_eq!(joined, Ok(3));
}

conformance!(
    deadline_cancels_a_task,
    task_done_before_its_deadline_leaves_no_timer,
    past_deadline_cancels_at_the_first_suspend,
    max_deadline_is_no_deadline,
    canceled_suspend_evicts_its_timers,
    joins_under_the_joiners_cancel,
    cancel_before_start,
    cancel_while_sleeping,
    cancel_after_completion,
    sticky_cancel_with_shielded_cleanup,
    check_cancel_in_a_loop,
    cancel_a_spinning_task,
    dropping_a_handle_cancels,
    cancel_flows_to_children,
    run_cancels_leftover_tasks,
);
