//! A task takes a waker of itself only at its first wait, so a task that ends in its first poll
//! never clones or drops one. What keeps an unfinished task's memory instead is its join handle:
//! the user's, or, once that is dropped or detached, the one its control block keeps until the
//! body ends. These tests hold the edges of that: views taken before the task ran, handles let
//! go of before it ran, a cancel that arrives inside the first poll, and a task dropped on the
//! wrong thread. (Miri runs them too: `scripts/miri`.)
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::task::{Context, Poll};

use io_core::{Canceled, Cx, RawTask, RunQueue, SpawnOptions, Suspend, TaskRef, TaskSet};

/// Keeps `view` (and so the task it reaches) for good, for the tests of tasks that are leaked on
/// purpose: memory reachable from a static is not reported as leaked by Miri, which checks these
/// tests for use after free.
fn keep_for_good(view: TaskRef) {
    static KEPT: [AtomicPtr<TaskRef>; 8] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 8];
    let view = Box::into_raw(Box::new(view));
    let kept = KEPT.iter().any(|slot| {
        slot.compare_exchange(
            std::ptr::null_mut(),
            view,
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_ok()
    });
    assert!(kept, "more views kept than slots");
}

fn run_all(queue: &RunQueue) {
    while let Some(runnable) = queue.pop() {
        runnable.run();
    }
}

/// A view taken from the join handle before the task ran holds no waker (there is none yet);
/// it still answers for the task through its run, its end and the freeing of its memory, and
/// the handle the task kept is released when the body ends: the output of the detached task is
/// dropped, so the task's memory is freed (Miri would report the leak otherwise).
#[test]
fn a_view_taken_before_the_task_ran_answers_after_the_task_is_gone() {
    let queue = RunQueue::new();
    let marker = Rc::new(());
    let output = marker.clone();
    let opts = SpawnOptions::new().name("early");
    let (raw, task) = RawTask::new(&queue, &opts, async move { Ok(output) });
    let view = task.task_ref();
    let id = task.id();
    assert!(!view.is_finished() && !view.is_cancel_requested());
    task.detach();
    assert!(
        !view.is_finished(),
        "a detached task is still alive until it runs"
    );
    raw.schedule();
    run_all(&queue);
    assert!(view.is_finished());
    assert!(!view.is_cancel_requested());
    assert_eq!((view.id(), view.name().as_ref()), (id, "early"));
    assert_eq!(view.parked_on(), None);
    assert_eq!(
        Rc::strong_count(&marker),
        1,
        "the detached task's output was dropped: its kept handle was released"
    );
    view.cancel(); // harmless: finished
    let again = view.clone();
    assert!(again.is_finished() && !again.is_cancel_requested());
}

/// Dropping the join handle of a task that has not run cancels it; the task keeps its handle,
/// so a view taken before sees the cancel, the end, and afterwards still says it was canceled.
#[test]
fn a_dropped_handle_of_a_task_that_never_ran_is_kept_until_its_body_ends() {
    let queue = RunQueue::new();
    let ran = Rc::new(std::cell::Cell::new(false));
    let flag = ran.clone();
    let (raw, task) = RawTask::new(&queue, &SpawnOptions::new(), async move {
        flag.set(true);
        Ok(())
    });
    let view = task.task_ref();
    drop(task);
    assert!(view.is_cancel_requested() && !view.is_finished());
    raw.schedule();
    run_all(&queue);
    assert!(view.is_finished() && view.is_cancel_requested());
    assert!(
        !ran.get(),
        "canceled before its first poll, the body never ran"
    );
    assert_eq!(view.name(), format!("task#{}", view.id()));
}

/// A task canceled from inside its first poll, after one of its branches has parked: it had no
/// waker of itself to be readied with when the cancel came, so it is readied as it takes one
/// (at that first `Pending`), and the parked branch then sees the cancel. Without that it would
/// wait forever on a park nobody readies.
#[test]
fn a_cancel_inside_the_first_poll_readies_the_task_as_it_waits() {
    /// Polls a suspend on a never-readied park, then cancels its own task, then stays pending
    /// until the suspend returns.
    struct ParkThenCancel {
        suspend: Pin<Box<Suspend>>,
        cx: Cx,
        canceled: bool,
    }
    impl Future for ParkThenCancel {
        type Output = Result<&'static str, Canceled>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let parked = self.suspend.as_mut().poll(cx);
            if !self.canceled {
                self.canceled = true;
                self.cx.current_task().expect("inside a task").cancel();
            }
            match parked {
                Poll::Ready(Err(Canceled)) => Poll::Ready(Ok("saw the cancel")),
                Poll::Ready(Ok(())) => Poll::Ready(Ok("readied")),
                Poll::Pending => Poll::Pending,
            }
        }
    }
    let seen = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let child = cx.spawn(|cx| {
                let park = cx.park("nobody readies this");
                ParkThenCancel {
                    suspend: Box::pin(cx.suspend(park)),
                    cx,
                    canceled: false,
                }
            });
            child.await
        })
        .unwrap();
    assert_eq!(seen, "saw the cancel");
}

/// A task that never ran, whose runnable a misused queue hands to another thread to drop, while
/// a view taken before (holding no waker) and no join handle remain on the spawning thread: the
/// body refuses to drop its future there and leaks the task, and the kept join handle keeps the
/// memory, so the view still reads a live (never finished) task rather than freed memory.
#[test]
fn a_task_dropped_on_another_thread_before_it_ran_is_leaked_not_freed() {
    let queue = RunQueue::new();
    let (raw, task) = RawTask::new(&queue, &SpawnOptions::new(), async { Ok(1) });
    let view = task.task_ref();
    drop(task);
    raw.schedule();
    let runnable = queue.pop().expect("queued");
    std::thread::spawn(move || drop(runnable)).join().unwrap();
    assert!(!view.is_finished(), "leaked: its body never ended");
    assert!(view.is_cancel_requested());
    assert_eq!(view.parked_on(), None);
    keep_for_good(view);
}

/// As above, but the user keeps the join handle, joins it (async-task reports the task closed:
/// `Canceled`) and drops it: the body never ended, so the control block keeps the handle for
/// good, and a view (holding no waker) and the task set still read a live block.
#[test]
fn a_joined_handle_of_a_task_leaked_on_another_thread_does_not_free_it() {
    let queue = RunQueue::new();
    let (raw, task) = RawTask::new(&queue, &SpawnOptions::new(), async { Ok(1) });
    let view = task.task_ref();
    let mut set = TaskSet::new();
    set.insert(&view);
    raw.schedule();
    let runnable = queue.pop().expect("queued");
    std::thread::spawn(move || drop(runnable)).join().unwrap();
    assert_eq!(futures_lite::future::block_on(task), Err(Canceled));
    assert!(!view.is_finished(), "leaked: its body never ended");
    assert_eq!(set.live().len(), 1);
    keep_for_good(view);
}

/// A task names its run queue by key, not by holding it. Woken after its queue was dropped, it
/// is left alone (as when it held its queue alive in a queue nobody drained), and its key, whose
/// entry a later queue reuses, does not name that queue: the later queue gets nothing.
#[test]
fn a_task_woken_after_its_queue_is_gone_reaches_no_later_queue() {
    let queue = RunQueue::new();
    let (raw, task) = RawTask::new(&queue, &SpawnOptions::new(), async { Ok(1) });
    let view = raw.task(); // holds a waker: keeps the task's memory for the check below
    drop(queue);
    let later = RunQueue::new();
    let mut batch = std::collections::VecDeque::new();
    later.drain_into(&mut batch); // this thread owns the later queue now
    raw.schedule();
    assert!(later.is_empty(), "the stale key reached a later queue");
    drop(task); // cancels it: a wake through the task's own waker, to the same dead key
    assert!(later.is_empty(), "the stale key reached a later queue");
    assert!(!view.is_finished() && view.is_cancel_requested());
    keep_for_good(view);
}

/// A sleeping task is canceled at the cancel's time, not at its deadline: the waker of itself
/// it took at its first wait readies it.
#[test]
fn a_cancel_readies_a_sleeping_task_at_once() {
    let (woke, at) = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let sleeper = cx.spawn(|cx| async move {
                let woke = cx.sleep(1_000).await;
                Ok((woke, cx.now_ms()))
            });
            cx.sleep(5).await?;
            sleeper.cancel();
            sleeper.await
        })
        .unwrap();
    assert_eq!((woke, at), (Err(Canceled), 5));
}

/// A suspend given up inside the poll it parked in (a race whose other branch won) leaves the
/// task parked on nothing that holds its waker; the poll then ends `Pending` on a wait nobody
/// ever wakes. A cancel readies the task through the waker of itself it took at that first
/// wait, and its next suspend point sees the cancel. The report names the last park the task
/// parked on.
#[test]
fn a_cancel_readies_a_task_whose_park_was_given_up() {
    /// Poll 1: parks on a fresh park, gives the suspend and the park up, and stays pending with
    /// nothing to wake it. Poll 2 onwards: suspends on a new park (a suspend point).
    struct GiveUpThenWait {
        cx: Cx,
        then: Option<Pin<Box<Suspend>>>,
    }
    impl Future for GiveUpThenWait {
        type Output = Result<(), Canceled>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            if self.then.is_none() {
                let mut given_up = Box::pin(self.cx.suspend(self.cx.park("given up")));
                assert!(given_up.as_mut().poll(cx).is_pending());
                drop(given_up);
                let next = self.cx.suspend(self.cx.park("then"));
                self.then = Some(Box::pin(next));
                return Poll::Pending;
            }
            self.then.as_mut().expect("set above").as_mut().poll(cx)
        }
    }
    let (result, at, report) = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let child = cx.spawn(|cx| GiveUpThenWait { cx, then: None });
            let view = child.task_ref();
            cx.sleep(5).await?;
            let report = view.parked_on();
            child.cancel();
            let result = child.await;
            Ok((result, cx.now_ms(), report))
        })
        .unwrap();
    assert_eq!(result, Err(Canceled));
    assert_eq!(at, 5);
    assert_eq!(report.as_deref(), Some("given up"));
}
