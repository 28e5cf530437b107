//! Structured task groups, on every backend. Blocking runs each child inline to completion as it
//! is spawned, so children run one after another there: asserted per backend.
mod support;
mod workers;

use ioswap::{group, Backend, Canceled, Cx, Group};
use support::{assert_time, assert_timed, Log};
use workers::{panic_message, panicking, untimed, worker};

/// A child's failure, or the group's cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JobError {
    Canceled,
    Failed(&'static str),
}

impl From<Canceled> for JobError {
    fn from(_: Canceled) -> JobError {
        JobError::Canceled
    }
}

/// The group returns when every child has ended, with the values in spawn order (not finishing
/// order).
fn values_come_back_in_spawn_order(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let (values, at) = backend
        .run(|cx| async move {
            let values = group(&cx, move |_cx, g: Group<u64, Canceled>| async move {
                for (name, ms) in [("a", 30), ("b", 10), ("c", 20)] {
                    g.spawn(worker(&l, name, ms, 0, ms))?;
                }
                Ok(())
            })
            .await?;
            Ok((values, cx.now_ms()))
        })
        .unwrap();
    assert_eq!(values, [30, 10, 20]);
    match backend {
        Backend::Blocking => {
            assert!(at >= 60, "the children ran one after another, t = {at}");
            assert_eq!(
                untimed(&log),
                "a:start a:done b:start b:done c:start c:done"
            );
        }
        _ => {
            assert_time(backend, at, 30);
            assert_timed(
                backend,
                &log.joined(),
                "a:start@0 b:start@0 c:start@0 b:done@10 c:done@20 a:done@30",
            );
        }
    }
}

/// Golden: b fails at t = 20. Its sibling c and the body are canceled at once (c's post-sleep
/// line never runs), the group waits for them, and returns b's error — not the `Canceled` the
/// others end with. On blocking a and b ran inline; the failure refuses the spawn of c.
fn first_error_cancels_the_siblings(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let (result, at) = backend
        .run(|cx| async move {
            let result = group(&cx, move |cx: Cx, g: Group<u64, JobError>| async move {
                g.spawn(worker(&l, "a", 10, 0, 1))?;
                g.spawn({
                    let l = l.clone();
                    |cx: Cx| async move {
                        cx.sleep(20).await?;
                        l.push(format!("b:fails@{}", cx.now_ms()));
                        Err(JobError::Failed("b"))
                    }
                })?;
                match g.spawn(worker(&l, "c", 30, 5, 3)) {
                    Ok(_) => {}
                    Err(Canceled) => l.push("c:refused"),
                }
                if let Err(canceled) = cx.sleep(100).await {
                    l.push(format!("body:canceled@{}", cx.now_ms()));
                    return Err(canceled.into());
                }
                Ok(())
            })
            .await;
            Ok((result, cx.now_ms()))
        })
        .unwrap();
    assert_eq!(result, Err(JobError::Failed("b")));
    match backend {
        Backend::Blocking => assert_eq!(
            untimed(&log),
            "a:start a:done b:fails c:refused body:canceled"
        ),
        _ => {
            assert_time(backend, at, 25);
            assert_timed(
                backend,
                &log.joined(),
                "a:start@0 c:start@0 a:done@10 b:fails@20 body:canceled@20 c:canceled@20 \
                 c:cleaned@25",
            );
        }
    }
}

/// The body's own error fails the group the same way: the children are canceled and joined.
fn body_error_cancels_the_children(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let result = backend
        .run(|cx| async move {
            Ok(
                group(&cx, move |cx: Cx, g: Group<u64, JobError>| async move {
                    g.spawn(worker(&l, "a", 30, 0, 1))?;
                    cx.sleep(10).await?;
                    l.push(format!("body:fails@{}", cx.now_ms()));
                    Err(JobError::Failed("body"))
                })
                .await,
            )
        })
        .unwrap();
    assert_eq!(result, Err(JobError::Failed("body")));
    match backend {
        Backend::Blocking => assert_eq!(untimed(&log), "a:start a:done body:fails"),
        _ => assert_timed(
            backend,
            &log.joined(),
            "a:start@0 body:fails@10 a:canceled@10",
        ),
    }
}

/// Canceling the group's caller cancels every child; the group still waits for their shielded
/// cleanup, then returns `Canceled`.
fn canceled_parent_cancels_every_child(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let joined = backend
        .run(|cx| async move {
            let parent = cx.spawn({
                let l = l.clone();
                |cx| async move {
                    let (a, b) = (worker(&l, "a", 30, 5, 1), worker(&l, "b", 40, 5, 2));
                    let result = group(&cx, move |_cx, g: Group<u64, Canceled>| async move {
                        g.spawn(a)?;
                        g.spawn(b)?;
                        Ok(())
                    })
                    .await;
                    let alive = cx.live_tasks();
                    l.push(format!("group:{result:?}:alive={alive}@{}", cx.now_ms()));
                    result
                }
            });
            cx.sleep(10).await?;
            parent.cancel();
            Ok(parent.await)
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            assert_eq!(joined, Ok(vec![1, 2]));
            assert_eq!(
                untimed(&log),
                "a:start a:done b:start b:done group:Ok([1, 2]):alive=2"
            );
        }
        _ => {
            assert_eq!(joined, Err(Canceled));
            assert_timed(
                backend,
                &log.joined(),
                "a:start@0 b:start@0 a:canceled@10 b:canceled@10 a:cleaned@15 b:cleaned@15 \
                 group:Err(Canceled):alive=2@15",
            );
        }
    }
}

/// Children spawned by children belong to the group too: it waits for them, and afterwards
/// nothing is alive and a handle that escaped can no longer spawn.
fn no_child_outlives_the_group(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let (values, alive, late) = backend
        .run(|cx| async move {
            let escaped = std::rc::Rc::new(std::cell::RefCell::new(None));
            let keep = escaped.clone();
            let values = group(&cx, move |_cx, g: Group<u64, Canceled>| async move {
                *keep.borrow_mut() = Some(g.clone());
                let inner = g.clone();
                let l2 = l.clone();
                g.spawn(move |cx| async move {
                    inner.spawn(worker(&l2, "grandchild", 20, 0, 2))?;
                    cx.sleep(5).await?;
                    Ok(1)
                })?;
                Ok(()) // the body ends at once; the group still waits
            })
            .await?;
            let alive = cx.live_tasks();
            let g = escaped.borrow_mut().take().expect("kept");
            let late = g.spawn(|_| async { Ok(3) });
            Ok((values, alive, late))
        })
        .unwrap();
    assert_eq!(values, [1, 2]);
    assert_eq!(alive, 1, "only main is left");
    assert_eq!(late, Err(Canceled));
    if backend == Backend::Fiber {
        assert_timed(
            backend,
            &log.joined(),
            "grandchild:start@0 grandchild:done@20",
        );
    }
}

/// A child panics: its siblings are canceled and joined first, then the panic reaches the
/// group's caller.
fn panicking_child_resumes_after_cleanup(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    backend
        .run(|cx| async move {
            // b's sleep is long so that, on a real clock, printing the panic (a backtrace, say)
            // cannot outlast it; it never finishes on any backend.
            let b = worker(&l, "b", 1_000, 5, 2);
            let grouped = group(&cx, move |_cx, g: Group<u64, Canceled>| async move {
                g.spawn(panicking(10, "child broke"))?;
                g.spawn(b)?;
                Ok(())
            });
            let message = panic_message(grouped).await;
            l.push(format!("caught:{message}@{}", cx.now_ms()));
            Ok(())
        })
        .unwrap();
    match backend {
        // The panicking child ran inline first; its failure refused b's spawn.
        Backend::Blocking => assert_eq!(untimed(&log), "caught:child_broke"),
        _ => assert_timed(
            backend,
            &log.joined(),
            "b:start@0 b:canceled@10 b:cleaned@15 caught:child_broke@15",
        ),
    }
}

/// A caller that is canceled before `group` starts neither the body nor any child.
fn canceled_caller_starts_nothing(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let result = backend
        .run(|cx| async move {
            cx.current_task().expect("main is a task").cancel();
            Ok(group(&cx, move |_cx, g: Group<u64, Canceled>| async move {
                l.push("body");
                g.spawn(worker(&l, "a", 5, 0, 1))?;
                Ok(())
            })
            .await)
        })
        .unwrap();
    assert_eq!(result, Err(Canceled));
    assert_eq!(log.joined(), "");
}

conformance!(
    values_come_back_in_spawn_order,
    canceled_caller_starts_nothing,
    first_error_cancels_the_siblings,
    body_error_cancels_the_children,
    canceled_parent_cancels_every_child,
    no_child_outlives_the_group,
    panicking_child_resumes_after_cleanup,
);
