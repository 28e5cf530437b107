//! A cancel must reach a waiting task whatever it waits on, and a task's memory must outlive
//! every handle of its own park. These hold the cases a review of a cheaper cancel path (waking
//! a task through its own park's waker instead of a waker of itself, since reverted) found
//! broken: a wake spent on a suspend the task keeps but no longer polls, a suspend handed to
//! another task, a kept sleep that fired, and a body dropped unpolled while its own park is
//! held outside it. Each passes with the task's own waker taken at its first wait.
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::pin::{pin, Pin};
use std::rc::Rc;

use io_core::{Canceled, Park, RawTask, RunQueue, SpawnOptions, Suspend};

/// A suspend on the task's own park, polled once and kept, while the task waits on a park apart
/// that nobody readies. The kept park is readied (the task is woken, polls only its current
/// wait, and parks again): a later cancel still reaches it.
#[test]
fn a_cancel_reaches_a_task_after_a_kept_suspends_park_was_readied() {
    let (result, at) = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let shared: Rc<RefCell<Option<Park>>> = Rc::default();
            let theirs = shared.clone();
            let child = cx.spawn(move |cx| async move {
                let park = cx.park("kept");
                *theirs.borrow_mut() = Some(park.clone());
                let mut kept = pin!(cx.suspend(park));
                assert!(futures_lite::future::poll_once(kept.as_mut())
                    .await
                    .is_none());
                cx.suspend(cx.park("other")).await?;
                kept.await
            });
            cx.sleep(5).await?;
            let park = shared.borrow_mut().take().expect("parked by now");
            cx.ready(&park);
            drop(park);
            cx.sleep(5).await?;
            child.cancel();
            let result = child.await;
            Ok((result, cx.now_ms()))
        })
        .unwrap();
    assert_eq!((result, at), (Err(Canceled), 10));
}

/// A task parks a suspend on its own park, hands the suspend to another task (which then waits
/// on it), and waits on a park apart: a cancel of the first task still reaches it.
#[test]
fn a_cancel_reaches_a_task_whose_parked_suspend_moved_to_another_task() {
    let (result, at) = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let slot: Rc<RefCell<Option<Pin<Box<Suspend>>>>> = Rc::default();
            let theirs = slot.clone();
            let a = cx.spawn(move |cx| async move {
                let mut suspend = Box::pin(cx.suspend(cx.park("moved")));
                assert!(futures_lite::future::poll_once(suspend.as_mut())
                    .await
                    .is_none());
                *theirs.borrow_mut() = Some(suspend);
                cx.suspend(cx.park("other")).await?;
                Ok(())
            });
            let ours = slot.clone();
            let b = cx.spawn(move |cx| async move {
                cx.sleep(1).await?;
                let suspend = ours.borrow_mut().take().expect("handed over");
                let _ = suspend.await;
                Ok(())
            });
            cx.sleep(5).await?;
            a.cancel();
            let result = a.await;
            b.cancel();
            let _ = b.await;
            Ok((result, cx.now_ms()))
        })
        .unwrap();
    assert_eq!((result, at), (Err(Canceled), 5));
}

/// A sleep kept across a race it lost fires while the task handles what won: a cancel during
/// that handling is delivered at once, not when the handling ends.
#[test]
fn a_cancel_reaches_a_task_whose_kept_sleep_fired() {
    let (result, at) = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let child = cx.spawn(|cx| async move {
                let mut tick = pin!(cx.sleep(10));
                let first = futures_lite::future::or(
                    async {
                        let _ = tick.as_mut().await;
                        "tick"
                    },
                    async {
                        let _ = cx.sleep(5).await;
                        "message"
                    },
                )
                .await;
                assert_eq!(first, "message");
                cx.sleep(1_000).await?;
                tick.await
            });
            cx.sleep(20).await?;
            child.cancel();
            let result = child.await;
            Ok((result, cx.now_ms()))
        })
        .unwrap();
    assert_eq!((result, at), (Err(Canceled), 20));
}

/// At the end of a run every live task is abandoned and dropped, including one whose kept
/// sleep fired while it waited on something else.
#[test]
fn a_task_with_a_fired_kept_sleep_is_dropped_at_the_end_of_the_run() {
    struct Guard(Rc<Cell<bool>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let dropped = Rc::new(Cell::new(false));
    let flag = dropped.clone();
    io_fiber::FiberIo::new()
        .run(move |cx| async move {
            cx.spawn(move |cx| async move {
                let _guard = Guard(flag);
                let mut tick = pin!(cx.sleep(10));
                assert!(futures_lite::future::poll_once(tick.as_mut())
                    .await
                    .is_none());
                cx.sleep_until(u64::MAX).await?;
                tick.await
            })
            .detach();
            cx.sleep(20).await?;
            Ok(())
        })
        .unwrap();
    assert!(dropped.get(), "the abandoned task's future was dropped");
}

/// A task's body dropped unpolled (its runnable dropped from a cleared queue) while a handle of
/// its own park is held outside it: the handle still reads a live park, and dropping it frees
/// the task (Miri checks both).
#[test]
fn a_park_held_outside_a_body_dropped_unpolled_stays_readable() {
    let queue = RunQueue::new();
    let stash: Rc<RefCell<Option<Park>>> = Rc::default();
    let inside = stash.clone();
    let (raw, task) = RawTask::new(&queue, &SpawnOptions::new(), async move {
        let park = Park::new("held outside");
        *inside.borrow_mut() = Some(park.clone());
        poll_fn(|cx| park.poll_suspend(cx)).await?;
        Ok(())
    });
    raw.schedule();
    while let Some(runnable) = queue.pop() {
        runnable.run();
    }
    let park = stash.borrow_mut().take().expect("parked by now");
    park.ready();
    queue.clear();
    assert!(task.is_finished());
    drop(task);
    assert_eq!(park.what(), "held outside");
    drop(park);
}
