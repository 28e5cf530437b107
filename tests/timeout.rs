//! `timeout` and `timeout_at`, on every backend. A timed body is spawned with the deadline, so
//! it is cut short on blocking too, where it runs inline; blocking's real clock is checked with
//! lower bounds only.
mod support;
mod workers;

use ioswap::{timeout, timeout_at, Backend, Canceled, Cx, Elapsed};
use support::{assert_time, assert_timed, Log};
use workers::{untimed, worker};

/// Golden: a 30 ms job under a 10 ms timeout is canceled at t = 10 (its post-sleep line never
/// runs) and the caller gets `Elapsed` — on blocking too, where the job runs inline.
fn timeout_elapses_and_cancels_the_work(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let (timed, start, at) = backend
        .run(|cx| async move {
            let start = cx.now_ms();
            let timed = timeout(&cx, 10, worker(&l, "job", 30, 0, "result")).await?;
            Ok((timed, start, cx.now_ms()))
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            // The real clock may tick between `start` and the call.
            let Err(Elapsed { deadline_ms }) = timed else {
                panic!("expected Elapsed, got {timed:?}");
            };
            assert!(deadline_ms >= start + 10);
            assert!(
                at >= deadline_ms,
                "elapsed at t = {at}, before the deadline"
            );
            assert_eq!(untimed(&log), "job:start job:canceled");
        }
        _ => {
            assert_eq!(timed, Err(Elapsed { deadline_ms: 10 }));
            assert_time(backend, at, 10);
            assert_timed(backend, &log.joined(), "job:start@0 job:canceled@10");
        }
    }
}

/// Work that finishes before the deadline returns its value at its own time.
fn timeout_returns_the_value_in_time(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let (timed, at) = backend
        .run(|cx| async move {
            let timed = timeout(&cx, 30, worker(&l, "job", 10, 0, 7)).await?;
            Ok((timed, cx.now_ms()))
        })
        .unwrap();
    assert_eq!(timed, Ok(7));
    assert!(at >= 10);
    if backend == Backend::Fiber {
        assert_eq!(at, 10);
        assert_timed(backend, &log.joined(), "job:start@0 job:done@10");
    }
}

/// Work that completes in the same turn as the deadline wins, whichever timer was armed first
/// (the job's, when it is a task that ran before the timeout; the deadline's, when the timeout
/// spawns the job).
fn completion_in_the_deadline_turn_wins(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let (body, task) = backend
        .run(|cx| async move {
            let body = timeout(&cx, 10, worker(&l, "body", 10, 0, 'b')).await?;
            let job = cx.spawn(worker(&l, "task", 10, 0, 't'));
            cx.yield_now().await?; // the task arms its timer before the deadline's
            let task = timeout(&cx, 10, job).await?;
            Ok((body, task))
        })
        .unwrap();
    assert_eq!((body, task), (Ok('b'), Ok('t')));
    if backend == Backend::Fiber {
        assert_timed(
            backend,
            &log.joined(),
            "body:start@0 body:done@10 task:start@10 task:done@20",
        );
    }
}

#[cfg(feature = "fiber")]
/// The same-turn rule holds whatever order a seed runs the ready tasks in.
#[test]
fn completion_in_the_deadline_turn_wins_under_every_seed() {
    for seed in 0..32 {
        let timed = ioswap::FiberIo::with_seed(seed)
            .run(|cx| async move {
                let job = |cx: Cx| async move { cx.sleep(10).await.map(|()| cx.now_ms()) };
                timeout(&cx, 10, job).await
            })
            .unwrap();
        assert_eq!(timed, Ok(10), "seed {seed}");
    }
}

/// The caller is canceled while it waits: the job is canceled and joined (its shielded cleanup
/// runs to the end first), then timeout returns `Err(Canceled)` — not `Elapsed`.
fn canceled_caller_cancels_and_joins_the_work(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let joined = backend
        .run(|cx| async move {
            let waiting = cx.spawn({
                let l = l.clone();
                |cx| async move {
                    let timed = timeout(&cx, 100, worker(&l, "job", 50, 5, 'j')).await;
                    l.push(format!("timeout:{timed:?}@{}", cx.now_ms()));
                    timed
                }
            });
            cx.sleep(5).await?;
            waiting.cancel();
            Ok(waiting.await)
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            assert_eq!(joined, Ok(Ok('j')));
            assert_eq!(untimed(&log), "job:start job:done timeout:Ok(Ok('j'))");
        }
        _ => {
            assert_eq!(joined, Err(Canceled));
            assert_timed(
                backend,
                &log.joined(),
                "job:start@0 job:canceled@5 job:cleaned@10 timeout:Err(Canceled)@10",
            );
        }
    }
}

/// A deadline that has already passed still lets work that is ready at once complete; work that
/// must wait is canceled at its first suspend point — on every backend.
fn past_deadline_cancels_at_the_first_suspend(backend: Backend) {
    let (ready, waiting) = backend
        .run(|cx| async move {
            cx.sleep(5).await?;
            let ready = timeout_at(&cx, 0, |_cx: Cx| async { Ok("ready") }).await?;
            let waiting = timeout_at(&cx, 0, |cx: Cx| async move {
                cx.sleep(1).await?;
                Ok("waited")
            })
            .await?;
            Ok((ready, waiting))
        })
        .unwrap();
    assert_eq!(ready, Ok("ready"));
    assert_eq!(waiting, Err(Elapsed { deadline_ms: 0 }));
}

/// A task passed in (already spawned) is not given the deadline: the race cancels it as before.
/// On blocking it ran inline to its end when it was spawned, so its value comes back however
/// long it took; elsewhere it is canceled at the deadline.
fn timed_task_passed_in_is_raced_as_before(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let (timed, start) = backend
        .run(|cx| async move {
            let start = cx.now_ms();
            let job = cx.spawn(worker(&l, "job", 30, 0, 't'));
            Ok((timeout_at(&cx, start + 10, job).await?, start))
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            assert_eq!(timed, Ok('t'));
            assert_eq!(untimed(&log), "job:start job:done");
        }
        _ => {
            assert_eq!(
                timed,
                Err(Elapsed {
                    deadline_ms: start + 10
                })
            );
            assert_eq!(untimed(&log), "job:start job:canceled");
        }
    }
}

/// A timed job that ends canceled on its own (here it cancels itself) gives `Err(Canceled)` at
/// once, not `Elapsed` at the deadline.
fn job_canceled_on_its_own_is_canceled(backend: Backend) {
    let (timed, at) = backend
        .run(|cx| async move {
            let timed = timeout(&cx, 1_000, |cx: Cx| async move {
                cx.current_task().expect("in a task").cancel();
                cx.sleep(10).await?;
                Ok(())
            })
            .await;
            Ok((timed, cx.now_ms()))
        })
        .unwrap();
    assert_eq!(timed, Err(Canceled));
    if backend == Backend::Fiber {
        assert_eq!(at, 0);
    }
}

/// A caller that is canceled before `timeout` never starts the body.
fn canceled_caller_starts_no_work(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let timed = backend
        .run(|cx| async move {
            cx.current_task().expect("main is a task").cancel();
            Ok(timeout(&cx, 10, worker(&l, "job", 5, 0, 1)).await)
        })
        .unwrap();
    assert_eq!(timed, Err(Canceled));
    assert_eq!(log.joined(), "");
}

/// Nested timeouts: the outer, earlier deadline wins on every backend. A task's deadline bounds
/// the tasks it spawns, so on blocking, where the outer body is not polled while the inner one
/// runs inline, the inner body is still cut at the outer deadline.
fn nested_timeouts_the_earlier_deadline_wins(backend: Backend) {
    let (outcome, at) = backend
        .run(|cx| async move {
            let start = cx.now_ms();
            let outcome = timeout(&cx, 50, |cx: Cx| async move {
                let inner = timeout(&cx, 150, |cx: Cx| async move {
                    cx.sleep(300).await?;
                    Ok("slept")
                })
                .await?;
                Ok(inner)
            })
            .await?;
            Ok((outcome, cx.now_ms() - start))
        })
        .unwrap();
    assert!(
        matches!(outcome, Err(Elapsed { .. })),
        "the outer timeout elapsed: {outcome:?}"
    );
    assert_time(backend, at, 50);
    assert!(
        at < 150,
        "cut at the outer deadline, not the inner one: {at}"
    );
}

conformance!(
    nested_timeouts_the_earlier_deadline_wins,
    timeout_elapses_and_cancels_the_work,
    canceled_caller_starts_no_work,
    timeout_returns_the_value_in_time,
    completion_in_the_deadline_turn_wins,
    canceled_caller_cancels_and_joins_the_work,
    past_deadline_cancels_at_the_first_suspend,
    timed_task_passed_in_is_raced_as_before,
    job_canceled_on_its_own_is_canceled,
);
