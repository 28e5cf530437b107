//! The per-poll operation budget on every backend: a task whose operations keep completing
//! without suspending (a full channel, finished tasks, a free lock, ops done at once) still
//! yields once per budget, so the tasks spawned beside it run, timers fire and cancels land.
//!
//! On fiber the counts are exact (seed 0 runs ready tasks in FIFO order); on uring and poll
//! they are bounds; on blocking a spawned task runs inline, to its end, before `spawn` returns,
//! so it never waits for a hot loop (and a hot loop it runs cannot be interrupted by another
//! task): each behaviour states what happens there.
mod support;

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::rc::Rc;

use ioswap::protocol::{op::Op, DEFAULT_OP_BUDGET};
use ioswap::{channel, sync, Backend, Canceled, Cx, File};
use support::{read_back, within, TempPath};

/// More operations than any hot loop here gets through before the others run, with a budget.
const TOTAL: u64 = 200_000;
const BUDGET: u64 = DEFAULT_OP_BUDGET as u64;

/// Runs `hot` as the main task, after spawning a task that records how many operations `hot`
/// had completed (it counts them in the cell it is given) when it first ran. Returns that
/// count and how many `hot` completed in all.
fn ops_before_a_spawned_task_runs<F, Fut>(backend: Backend, hot: F) -> (u64, u64)
where
    F: FnOnce(Cx, Rc<Cell<u64>>) -> Fut + 'static,
    Fut: Future<Output = Result<(), Canceled>> + 'static,
{
    backend
        .run(|cx| async move {
            let done = Rc::new(Cell::new(0));
            let seen = Rc::new(Cell::new(None));
            let marker = cx.spawn({
                let (done, seen) = (done.clone(), seen.clone());
                move |_| async move {
                    seen.set(Some(done.get()));
                    Ok(())
                }
            });
            hot(cx.clone(), done.clone()).await?;
            marker.await?;
            Ok((seen.get().expect("the marker ran"), done.get()))
        })
        .unwrap()
}

/// The marker ran within one budget of the hot loop's operations: exactly one budget on fiber,
/// at most one on uring and poll, and before the loop on blocking, which ran it inline.
fn assert_within_one_budget(backend: Backend, (seen, done): (u64, u64)) {
    assert_eq!(done, TOTAL, "the hot loop did all its operations");
    match backend {
        Backend::Blocking => assert_eq!(seen, 0, "blocking runs a spawned task inline, at once"),
        Backend::Fiber => assert_eq!(seen, BUDGET),
        _ => assert!(seen <= BUDGET, "the spawned task waited {seen} operations"),
    }
}

/// A consumer of a full channel (200,000 values already buffered) lets a newly spawned task
/// run after one budget of receives, instead of after the last value.
fn a_hot_consumer_lets_a_spawned_task_run_within_one_budget(backend: Backend) {
    let counts = ops_before_a_spawned_task_runs(backend, |cx, done| async move {
        let (tx, rx) = channel::unbounded(&cx);
        for value in 0..TOTAL {
            tx.try_send(value).unwrap();
        }
        for expected in 0..TOTAL {
            assert_eq!(rx.recv().await, Ok(expected));
            done.set(done.get() + 1);
        }
        Ok(())
    });
    assert_within_one_budget(backend, counts);
}

/// A producer that always finds room (an unbounded channel) yields too.
fn a_hot_producer_lets_a_spawned_task_run_within_one_budget(backend: Backend) {
    let counts = ops_before_a_spawned_task_runs(backend, |cx, done| async move {
        let (tx, rx) = channel::unbounded(&cx);
        for value in 0..TOTAL {
            tx.send(value).await.unwrap();
            done.set(done.get() + 1);
        }
        assert_eq!(rx.len(), TOTAL as usize);
        Ok(())
    });
    assert_within_one_budget(backend, counts);
}

/// Joining tasks that have finished spends the budget: one unit per join.
fn joining_finished_tasks_spends_the_budget(backend: Backend) {
    let joins = joins_before_a_spawned_task_runs(backend);
    match backend {
        Backend::Blocking => assert_eq!(joins, 0, "blocking runs a spawned task inline"),
        Backend::Fiber => assert_eq!(joins, BUDGET),
        _ => assert!(joins <= BUDGET, "the spawned task waited {joins} joins"),
    }
}

/// Joins of finished tasks completed before a task spawned after them ran.
fn joins_before_a_spawned_task_runs(backend: Backend) -> u64 {
    backend
        .run(|cx| async move {
            let tasks: Vec<_> = (0..2_000u64)
                .map(|i| cx.spawn(move |_| async move { Ok(i) }))
                .collect();
            cx.yield_now().await?;
            assert!(tasks.iter().all(|task| task.is_finished()));
            let joined = Rc::new(Cell::new(0));
            let seen = Rc::new(Cell::new(None));
            let marker = cx.spawn({
                let (joined, seen) = (joined.clone(), seen.clone());
                move |_| async move {
                    seen.set(Some(joined.get()));
                    Ok(())
                }
            });
            for (i, task) in (0..).zip(tasks) {
                assert_eq!(task.await?, i);
                joined.set(joined.get() + 1);
            }
            marker.await?;
            Ok(seen.get().expect("the marker ran"))
        })
        .unwrap()
}

/// Locking a free mutex and taking free permits spend the budget.
fn ready_locks_and_permits_spend_the_budget(backend: Backend) {
    let counts = ops_before_a_spawned_task_runs(backend, |cx, done| async move {
        let mutex = sync::Mutex::new(&cx, 0u64);
        for _ in 0..TOTAL {
            *mutex.lock().await? += 1;
            done.set(done.get() + 1);
        }
        assert_eq!(*mutex.lock().await?, TOTAL);
        Ok(())
    });
    assert_within_one_budget(backend, counts);
    let counts = ops_before_a_spawned_task_runs(backend, |cx, done| async move {
        let permits = sync::Semaphore::new(&cx, 1);
        for _ in 0..TOTAL {
            let permit = permits.acquire(1).await.map_err(|_| Canceled)?;
            drop(permit);
            done.set(done.get() + 1);
        }
        Ok(())
    });
    assert_within_one_budget(backend, counts);
}

/// A broadcast receiver working through a backlog spends the budget.
fn a_broadcast_backlog_spends_the_budget(backend: Backend) {
    let counts = ops_before_a_spawned_task_runs(backend, |cx, done| async move {
        let (tx, mut rx) = sync::broadcast::channel(&cx, TOTAL as usize);
        for value in 0..TOTAL {
            tx.send(value).unwrap();
        }
        for expected in 0..TOTAL {
            assert_eq!(rx.recv().await, Ok(expected));
            done.set(done.get() + 1);
        }
        Ok(())
    });
    assert_within_one_budget(backend, counts);
}

/// A `select` with a ready case completes at once and spends the budget.
fn a_ready_select_spends_the_budget(backend: Backend) {
    let counts = ops_before_a_spawned_task_runs(backend, |cx, done| async move {
        let (tx, rx) = channel::unbounded(&cx);
        let (_quiet_tx, quiet_rx) = channel::unbounded::<u64>(&cx);
        for value in 0..TOTAL {
            tx.try_send(value).unwrap();
        }
        for expected in 0..TOTAL {
            let got = channel::select(&cx)
                .recv(&quiet_rx, |_| None)
                .recv(&rx, |value| value)
                .await?;
            assert_eq!(got, Some(expected));
            done.set(done.get() + 1);
        }
        Ok(())
    });
    assert_within_one_budget(backend, counts);
}

/// An op whose result is there at once (blocking performs it inline, fiber answers it from
/// its world) spends the budget; one that goes in flight (io_uring) suspends anyway.
fn ops_done_at_once_spend_the_budget(backend: Backend) {
    let counts = ops_before_a_spawned_task_runs(backend, |cx, done| async move {
        for _ in 0..TOTAL {
            cx.submit(Op::Nop).await.result.expect("a nop succeeds");
            done.set(done.get() + 1);
        }
        Ok(())
    });
    assert_within_one_budget(backend, counts);
}

/// A timer that comes due while a task consumes a full channel fires then, not after the last
/// value: the sleeper wakes long before the consumer is done.
fn a_timer_due_meanwhile_fires_within_the_bound(backend: Backend) {
    const SLEEP_MS: u64 = 2;
    let (woke_after, woke_at, started) = backend
        .run(|cx| async move {
            let received = Rc::new(Cell::new(0u64));
            let woke = Rc::new(Cell::new(None));
            let started = cx.now_ms();
            let sleeper = cx.spawn({
                let (received, woke) = (received.clone(), woke.clone());
                move |cx| async move {
                    cx.sleep(SLEEP_MS).await?;
                    woke.set(Some((received.get(), cx.now_ms())));
                    Ok(())
                }
            });
            let (tx, rx) = channel::unbounded(&cx);
            for value in 0..TOTAL {
                tx.try_send(value).unwrap();
            }
            for _ in 0..TOTAL {
                rx.recv().await.unwrap();
                received.set(received.get() + 1);
            }
            sleeper.await?;
            let (after, at) = woke.get().expect("the sleeper woke");
            Ok((after, at, started))
        })
        .unwrap();
    assert!(woke_at >= started + SLEEP_MS, "woke early, at {woke_at}");
    match backend {
        // The sleeper ran inline, before the channel was even filled.
        Backend::Blocking => assert_eq!(woke_after, 0),
        // The virtual clock moves only when nothing is runnable, and the consumer always is:
        // the timer comes due when the consumer is done, as it always has.
        Backend::Fiber => assert_eq!((woke_after, woke_at), (TOTAL, SLEEP_MS)),
        // Real clocks: the timer fired while the consumer was still at it.
        _ => assert!(
            woke_after < TOTAL,
            "the timer waited for all {TOTAL} receives"
        ),
    }
}

/// On fiber a timer already due (a deadline reached) fires at the first turn after the hot task
/// yields: the sleeper's first poll comes at the consumer's first yield, its timer fires the
/// turn after, and it runs after the consumer's third budget.
fn a_due_timer_fires_within_a_few_budgets(backend: Backend) {
    let woke_after = backend
        .run(|cx| async move {
            let received = Rc::new(Cell::new(0u64));
            let woke = Rc::new(Cell::new(None));
            let sleeper = cx.spawn({
                let (received, woke) = (received.clone(), woke.clone());
                move |cx| async move {
                    cx.sleep(0).await?;
                    woke.set(Some(received.get()));
                    Ok(())
                }
            });
            let (tx, rx) = channel::unbounded(&cx);
            for value in 0..TOTAL {
                tx.try_send(value).unwrap();
            }
            for _ in 0..TOTAL {
                rx.recv().await.unwrap();
                received.set(received.get() + 1);
            }
            sleeper.await?;
            Ok(woke.get().expect("the sleeper woke"))
        })
        .unwrap();
    match backend {
        Backend::Blocking => assert_eq!(woke_after, 0, "the sleeper ran inline"),
        Backend::Fiber => assert_eq!(woke_after, 3 * BUDGET),
        _ => assert!(
            woke_after < TOTAL,
            "the timer waited for all {TOTAL} receives"
        ),
    }
}

/// Spawns `hot` (a loop of `TOTAL` ready operations, counted in the cell it is given), lets it
/// start, cancels it, and joins it: how it ended, and how many operations it completed.
fn cancel_a_hot_loop<F, Fut>(backend: Backend, hot: F) -> (Result<(), Canceled>, u64)
where
    F: FnOnce(Cx, Rc<Cell<u64>>) -> Fut + 'static,
    Fut: Future<Output = Result<(), Canceled>> + 'static,
{
    backend
        .run(|cx| async move {
            let done = Rc::new(Cell::new(0u64));
            let task = cx.spawn({
                let done = done.clone();
                move |cx| hot(cx, done)
            });
            cx.yield_now().await?; // the hot task starts
            task.cancel();
            Ok((task.await, done.get()))
        })
        .unwrap()
}

/// The cancel landed at the hot loop's first yield: after one budget of operations.
fn assert_canceled_within_one_budget(
    backend: Backend,
    (joined, done): (Result<(), Canceled>, u64),
) {
    match backend {
        // The hot task ran inline, to its end, inside `spawn`: nothing could cancel it.
        Backend::Blocking => assert_eq!((joined, done), (Ok(()), TOTAL)),
        Backend::Fiber => assert_eq!((joined, done), (Err(Canceled), BUDGET)),
        _ => {
            assert_eq!(joined, Err(Canceled));
            assert!(done <= BUDGET, "{done} operations before the cancel landed");
        }
    }
}

/// A cancel lands in a hot loop of ready sends: the loop yields once per budget, the canceling
/// task runs then, and the loop's next send returns `Err(Canceled)`. No value is lost.
fn a_cancel_lands_in_a_hot_loop_of_ready_sends(backend: Backend) {
    let buffered = Rc::new(Cell::new(0));
    let outcome = cancel_a_hot_loop(backend, {
        let buffered = buffered.clone();
        move |cx, done| async move {
            let (tx, rx) = channel::unbounded(&cx);
            // However the loop ends, what is buffered is counted.
            let _count = Finally(move || buffered.set(rx.len() as u64));
            for value in 0..TOTAL {
                tx.send(value).await.map_err(|_| Canceled)?;
                done.set(done.get() + 1);
            }
            Ok(())
        }
    });
    assert_eq!(
        buffered.get(),
        outcome.1,
        "every value sent is in the channel"
    );
    assert_canceled_within_one_budget(backend, outcome);
}

/// Runs its closure when dropped.
struct Finally<F: FnMut()>(F);

impl<F: FnMut()> Drop for Finally<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// A cancel lands in a hot loop of ready locks and ops done at once, the same way.
fn a_cancel_lands_in_a_hot_loop_of_locks_and_ops(backend: Backend) {
    let outcome = cancel_a_hot_loop(backend, |cx, done| async move {
        let mutex = sync::Mutex::new(&cx, ());
        for _ in 0..TOTAL {
            drop(mutex.lock().await?);
            done.set(done.get() + 1);
        }
        Ok(())
    });
    assert_canceled_within_one_budget(backend, outcome);
    let (joined, done) = cancel_a_hot_loop(backend, |cx, done| async move {
        for _ in 0..TOTAL {
            let nop = cx.submit(Op::Nop).await;
            nop.result.map_err(|_| Canceled)?;
            done.set(done.get() + 1);
        }
        Ok(())
    });
    match backend {
        // io_uring puts every op in flight: its loop suspends at each op, where the cancel
        // lands at once.
        Backend::Uring => assert_eq!(joined, Err(Canceled)),
        _ => assert_canceled_within_one_budget(backend, (joined, done)),
    }
}

/// Joining finished tasks is where completion wins: the join gives the task's result even to
/// a canceled joiner (the result would be lost otherwise), so a hot loop of joins is not
/// interrupted by a cancel — but it still yields once per budget, so the canceling task ran
/// while it was at it rather than after it.
fn a_hot_loop_of_joins_yields_to_a_canceler_and_loses_no_result(backend: Backend) {
    let (joined, joins, joins_at_cancel) = backend
        .run(|cx| async move {
            let joins = Rc::new(Cell::new(0u64));
            let hot = cx.spawn({
                let joins = joins.clone();
                move |cx| async move {
                    let tasks: Vec<_> = (0..2_000u64)
                        .map(|i| cx.spawn(move |_| async move { Ok(i) }))
                        .collect();
                    cx.yield_now().await?;
                    for (i, task) in (0..).zip(tasks) {
                        assert_eq!(task.await?, i);
                        joins.set(joins.get() + 1);
                    }
                    Ok(())
                }
            });
            // Until the hot task is at its joins (it yields once before them).
            while joins.get() == 0 && !hot.is_finished() {
                cx.yield_now().await?;
            }
            let at_cancel = joins.get();
            hot.cancel();
            Ok((hot.await, joins.get(), at_cancel))
        })
        .unwrap();
    assert_eq!((joined, joins), (Ok(()), 2_000));
    match backend {
        Backend::Blocking => assert_eq!(joins_at_cancel, 2_000, "the hot task ran inline"),
        Backend::Fiber => assert_eq!(joins_at_cancel, BUDGET),
        _ => assert!(joins_at_cancel <= BUDGET, "{joins_at_cancel} joins first"),
    }
}

/// With the budget off (`0`: unlimited), a hot loop runs as it did before budgets: the task
/// spawned beside it waits for the whole loop. (The other half of every behaviour above: what
/// the budget changes.)
fn a_budget_of_zero_lets_a_hot_loop_run_to_its_end(backend: Backend) {
    let seen = backend
        .run(|cx| async move {
            cx.io().core().set_op_budget(0);
            let done = Rc::new(Cell::new(0u64));
            let seen = Rc::new(Cell::new(None));
            // Spawned after the setting, so it has no budget (main keeps the default).
            let hot = cx.spawn({
                let done = done.clone();
                move |cx| async move {
                    let (tx, rx) = channel::unbounded(&cx);
                    for value in 0..TOTAL {
                        tx.try_send(value).unwrap();
                    }
                    for _ in 0..TOTAL {
                        rx.recv().await.unwrap();
                        done.set(done.get() + 1);
                    }
                    Ok(())
                }
            });
            let marker = cx.spawn({
                let (done, seen) = (done.clone(), seen.clone());
                move |_| async move {
                    seen.set(Some(done.get()));
                    Ok(())
                }
            });
            hot.await?;
            marker.await?;
            Ok(seen.get().expect("the marker ran"))
        })
        .unwrap();
    // Spawned after the hot task, the marker runs after it everywhere.
    assert_eq!(seen, TOTAL);
}

/// Spends the rest of the current poll's budget exactly: a fresh poll (after a yield), then
/// `DEFAULT_OP_BUDGET` ops done at once (blocking and fiber answer a nop inline). The next
/// budgeted operation of this poll yields.
async fn spend_the_budget(cx: &ioswap::Cx) -> Result<(), ioswap::Canceled> {
    cx.yield_now().await?;
    for _ in 0..DEFAULT_OP_BUDGET {
        cx.submit(Op::Nop).await.result.expect("a nop succeeds");
    }
    Ok(())
}

/// A backend run from inside a task (a nested `run`) after the outer poll spent its budget
/// returns: the nested run drives its own tasks and joins its main task with `block_on`, which
/// would spin on a spent budget's `Pending` if the outer poll's budget applied to it.
fn a_nested_run_after_a_spent_budget_returns(backend: Backend) {
    let returned = within(10, "the nested run (spinning in block_on)", move || {
        backend
            .run(|cx| async move {
                spend_the_budget(&cx).await?;
                let inner = backend.run(|_| async { Ok(7) });
                Ok(inner.expect("the nested run"))
            })
            .expect("the outer run")
    });
    assert_eq!(returned, 7);
}

/// The same nested run, with budget left: it returns (the control for the test above).
fn a_nested_run_with_budget_left_returns(backend: Backend) {
    let returned = within(10, "the nested run", move || {
        backend
            .run(|cx| async move {
                cx.yield_now().await?;
                let inner = backend.run(|_| async { Ok(7) });
                Ok(inner.expect("the nested run"))
            })
            .expect("the outer run")
    });
    assert_eq!(returned, 7);
}

/// `tests/fs.rs::a_given_up_trait_write_is_never_credited_to_other_bytes`, with the budget
/// spent when the first write is polled: the write yields before it reaches the backend, and
/// once its caller gives it up it is never sent (the next write, of other bytes, writes those
/// alone). On uring a write in flight in the kernel cannot be recalled: the documented
/// `AbandonedWrite`, whatever the budget.
fn a_write_given_up_before_it_was_submitted_is_not_written_later(backend: Backend) {
    use futures_lite::io::AsyncWriteExt;
    let path = TempPath::new("unsubmitted-write", backend);
    let p = path.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let mut file = File::create(&cx, &p).await?.compat();
                spend_the_budget(&cx).await.map_err(io::Error::other)?;
                let first = futures_lite::future::poll_once(file.write(b"AAAA"))
                    .await
                    .transpose()?;
                let then = file.write_all(b"BBBBBBBB").await;
                file.close().await?;
                Ok::<_, io::Error>((first, then, read_back(&cx, &p).await?))
            }
            .await)
        })
        .unwrap();
    let (first, then, on_disk) = result.unwrap();
    let on_disk = String::from_utf8_lossy(&on_disk).into_owned();
    if backend == Backend::Uring {
        // A write in flight in the kernel cannot be recalled: the documented `AbandonedWrite`
        // (tests/fs.rs), whatever the budget.
        assert_eq!((first, on_disk.as_str()), (None, "AAAA"));
        assert!(then.is_err());
        return;
    }
    match first {
        // Written inline (what the existing fs test states for blocking and fiber).
        Some(4) => assert_eq!((then.ok(), on_disk.as_str()), (Some(()), "AAAABBBBBBBB")),
        // Given up before any byte was submitted: nothing of it may reach the file, and the
        // next write must not fail because of it.
        _ => assert_eq!(
            (then.map_err(|e| e.to_string()), on_disk.as_str()),
            (Ok(()), "BBBBBBBB"),
            "first write: {first:?}"
        ),
    }
}

/// A panicking task leaves the thread's budget as it found it: a later run on the same thread
/// still yields to a spawned task after one budget (checked on fiber, where it is exact).
fn a_panicking_task_does_not_poison_the_threads_budget(backend: Backend) {
    let _ = backend.run(|cx| async move {
        cx.submit(Op::Nop).await.result.unwrap();
        if cx.now_ms() < u64::MAX {
            panic!("boom");
        }
        Ok(())
    });
    // The next run, on the same thread, a hot loop of nops vs. a spawned marker: on fiber,
    // where the count is exact (a build without fiber has nothing exact to compare with).
    if !Backend::Fiber.is_compiled() {
        return;
    }
    let seen = ioswap::Backend::Fiber
        .run(|cx| async move {
            let other = cx.spawn(|_| async { Ok(()) });
            let mut done = 0u64;
            while !other.is_finished() {
                cx.submit(Op::Nop).await.result.unwrap();
                done += 1;
            }
            Ok(done)
        })
        .unwrap();
    assert_eq!(seen, u64::from(DEFAULT_OP_BUDGET) + 1);
}

/// Inside a shield a spent budget yields; it never delivers the pending cancel.
fn a_spent_budget_inside_a_shield_does_not_cancel(backend: Backend) {
    let out = backend
        .run(|cx| async move {
            let me = cx.spawn(|cx| async move {
                let (tx, rx) = ioswap::channel::unbounded(&cx);
                for v in 0..1_000u32 {
                    tx.try_send(v).unwrap();
                }
                cx.current_task().expect("a task").cancel(); // pending, sticky
                let got = cx
                    .shield(async {
                        let mut got = 0;
                        for _ in 0..1_000 {
                            rx.recv().await.map_err(|_| ioswap::Canceled)?;
                            got += 1;
                        }
                        Ok::<_, ioswap::Canceled>(got)
                    })
                    .await;
                Ok(got)
            });
            Ok(me.await)
        })
        .unwrap();
    assert_eq!(out, Ok(Ok(1_000)));
}

/// A hot loop raced against a timeout: its budget yields are suspend points, so the deadline's
/// cancel (the body is spawned with the deadline) lands at one of them once the clock reaches
/// it. On blocking the body runs inline and its yields go through blocking's loop, which fires
/// timers only when the queue is empty: the yielding body is always queued, so the deadline
/// never fires and the loop runs to its end. (Fiber's virtual clock does not move while a task
/// is runnable, by design: not asserted there.)
fn a_hot_loop_under_a_timeout_is_cut_at_the_deadline(backend: Backend) {
    const DEADLINE_MS: u64 = 20;
    const RUN_AT_MOST_MS: u64 = 1_500;
    let (outcome, ran_ms) = backend
        .run(|cx| async move {
            let start = cx.now_ms();
            let outcome =
                ioswap::time::timeout(&cx, DEADLINE_MS, move |cx: ioswap::Cx| async move {
                    let (tx, rx) = ioswap::channel::unbounded(&cx);
                    let mut n = 0u64;
                    while n < 20_000_000 && cx.now_ms() < start + RUN_AT_MOST_MS {
                        tx.try_send(n).unwrap();
                        rx.recv().await.map_err(|_| ioswap::Canceled)?;
                        n += 1;
                    }
                    Ok(n)
                })
                .await?;
            Ok((outcome.is_ok(), cx.now_ms() - start))
        })
        .unwrap();
    if backend == Backend::Fiber {
        return;
    }
    assert!(
        !outcome && ran_ms < RUN_AT_MOST_MS,
        "the body ran {ran_ms} ms past its {DEADLINE_MS} ms deadline (completed: {outcome})"
    );
}

conformance!(
    a_hot_consumer_lets_a_spawned_task_run_within_one_budget,
    a_hot_producer_lets_a_spawned_task_run_within_one_budget,
    joining_finished_tasks_spends_the_budget,
    ready_locks_and_permits_spend_the_budget,
    a_ready_select_spends_the_budget,
    a_broadcast_backlog_spends_the_budget,
    ops_done_at_once_spend_the_budget,
    a_timer_due_meanwhile_fires_within_the_bound,
    a_due_timer_fires_within_a_few_budgets,
    a_cancel_lands_in_a_hot_loop_of_ready_sends,
    a_cancel_lands_in_a_hot_loop_of_locks_and_ops,
    a_hot_loop_of_joins_yields_to_a_canceler_and_loses_no_result,
    a_budget_of_zero_lets_a_hot_loop_run_to_its_end,
    a_hot_loop_under_a_timeout_is_cut_at_the_deadline,
    a_nested_run_after_a_spent_budget_returns,
    a_nested_run_with_budget_left_returns,
    a_write_given_up_before_it_was_submitted_is_not_written_later,
    a_panicking_task_does_not_poison_the_threads_budget,
    a_spent_budget_inside_a_shield_does_not_cancel,
);

/// `BackendCore::set_op_budget(0)` means "unlimited" for every task built on that backend from
/// then on, those built with the public `RawTask::new` (what `Io::spawn_raw` takes) included.
#[cfg(feature = "fiber")]
#[test]
fn a_raw_task_spawned_on_a_backend_with_no_budget_has_no_budget() {
    use ioswap::protocol::RawTask;
    let fiber = ioswap::FiberIo::new();
    let io = fiber.io();
    io.core().set_op_budget(0);
    let cx = ioswap::Cx::new(io.clone());
    let polls = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let body = {
        let (cx, polls) = (cx.clone(), polls.clone());
        async move {
            // Counts the polls it takes: one, with no budget.
            let counted = CountPolls(
                polls,
                Box::pin(async move {
                    for _ in 0..1_000 {
                        cx.submit(Op::Nop).await.result.expect("a nop");
                    }
                }),
            );
            counted.await;
            Ok::<_, ioswap::Canceled>(())
        }
    };
    let opts = ioswap::SpawnOptions::new();
    let (raw, task) = RawTask::new(io.core().queue(), &opts, body);
    io.spawn_raw(raw, &opts).unwrap();
    while !task.is_finished() {
        io.poll(u64::MAX);
    }
    assert_eq!(
        polls.get(),
        1,
        "the task yielded: it had a budget of {DEFAULT_OP_BUDGET}"
    );
}

/// Counts the polls of the future it wraps.
#[cfg(feature = "fiber")]
struct CountPolls(
    std::rc::Rc<std::cell::Cell<u32>>,
    std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
);

#[cfg(feature = "fiber")]
impl std::future::Future for CountPolls {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        self.0.set(self.0.get() + 1);
        self.1.as_mut().poll(cx)
    }
}
