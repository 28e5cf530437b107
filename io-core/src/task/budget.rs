//! The per-poll operation budget: cooperative fairness, written once.
//!
//! A task whose operations keep finding their result ready (a full channel, finished tasks, a
//! free lock) never reaches a suspend point, so without a budget it would run until the supply
//! ends while every other task, timer and cancel waits. Each poll of a task gets a budget of
//! operations; an operation that completes without suspending spends one unit, and once the
//! budget is spent the next operation yields instead (tokio's `coop`, 128 per poll there too).
//! See io-core's DESIGN.md, "The operation budget".
//!
//! The units left live in one thread-local counter, like the current task: the task body sets
//! it at the start of each poll and restores the previous value afterwards (so a child that the
//! blocking backend runs inline inside its parent's poll has its own budget, and the parent
//! finds what it had left). Outside any task poll the counter reads `u64::MAX`: no budget.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use super::ctl::ParkedOn;
use super::current::{cancel_pending, set_parked_on};
use crate::Canceled;

/// How many operations a task may complete without suspending in one poll before its next one
/// yields, unless the backend was given another budget
/// ([`BackendCore::set_op_budget`](crate::BackendCore::set_op_budget)). The figure is tokio's:
/// large enough that the yield costs nothing measurable per operation, small enough that a hot
/// task lets the others run many times a millisecond.
pub const DEFAULT_OP_BUDGET: u32 = 128;

thread_local! {
    /// Operations the task being polled may still complete without suspending in this poll.
    /// No destructor and a const initializer, so reading it is a plain load.
    static LEFT: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// The counter's value for a poll under `budget` (`0`: unlimited).
#[inline]
pub(crate) fn refill_value(budget: u32) -> u64 {
    if budget == 0 {
        u64::MAX
    } else {
        u64::from(budget)
    }
}

/// Sets the units left for the poll that starts; returns what was left before (to restore).
#[inline]
pub(crate) fn install(left: u64) -> u64 {
    LEFT.try_with(|cell| cell.replace(left)).unwrap_or(u64::MAX)
}

/// Restores the units left saved by [`install`].
#[inline]
pub(crate) fn restore(previous: u64) {
    let _ = LEFT.try_with(|cell| cell.set(previous));
}

/// Lifts the budget until dropped (then restores what was left): for code that drives its own
/// executor inside a task's poll, such as a nested [`run`](crate::run) joining its main task
/// with `block_on`, which would spin on a spent budget's `Pending` (its polls never return to
/// the backend that would refill it).
pub(crate) struct Unbudgeted(u64);

impl Unbudgeted {
    pub(crate) fn enter() -> Unbudgeted {
        Unbudgeted(install(u64::MAX))
    }
}

impl Drop for Unbudgeted {
    fn drop(&mut self) {
        restore(self.0);
    }
}

/// The units the current poll has left (`u64::MAX` outside any task poll).
#[cfg(test)]
pub(crate) fn left() -> u64 {
    LEFT.try_with(Cell::get).unwrap_or(u64::MAX)
}

/// Takes one unit for an operation about to be attempted; see [`Cx::poll_budget`](crate::Cx::poll_budget).
#[inline]
pub(crate) fn poll_take(cx: &mut Context<'_>) -> Poll<Result<BudgetUnit, Canceled>> {
    let taken = LEFT.try_with(|cell| {
        let left = cell.get();
        if left == 0 {
            return false;
        }
        cell.set(left - 1);
        true
    });
    match taken {
        Ok(true) => Poll::Ready(Ok(BudgetUnit {
            _not_send: PhantomData,
        })),
        Ok(false) => spent(cx),
        // The thread is exiting: no task runs any more, so there is nothing to be fair to.
        Err(_) => Poll::Ready(Ok(BudgetUnit {
            _not_send: PhantomData,
        })),
    }
}

/// The budget is spent: a pending cancel is delivered here, as at any suspend point; otherwise
/// the task yields (it readies itself and the operation answers `Pending`). Its next poll gets
/// a new budget.
#[cold]
#[inline(never)]
fn spent(cx: &mut Context<'_>) -> Poll<Result<BudgetUnit, Canceled>> {
    if cancel_pending() {
        return Poll::Ready(Err(Canceled));
    }
    set_parked_on(ParkedOn::Park("op budget"));
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// One unit of the current task's operation budget, taken by
/// [`Cx::poll_budget`](crate::Cx::poll_budget) for an operation about to be attempted.
///
/// [`spend`](BudgetUnit::spend) it when the operation completes without suspending; dropping it
/// instead (the operation has to wait) gives the unit back, so a task that only registers waits
/// (a select over many quiet channels) never runs out of budget and spins. It belongs to the
/// poll that took it: keep it no longer than that.
#[must_use = "spend the unit when the operation completed; dropping it gives it back"]
pub struct BudgetUnit {
    _not_send: PhantomData<*const ()>,
}

impl BudgetUnit {
    /// [`Cx::poll_budget`](crate::Cx::poll_budget) for a future that holds no `Cx` (a `Send`
    /// handle awaited on whatever task polls it): one unit of the polling task's budget.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::task::Poll;
    /// use io_core::BudgetUnit;
    ///
    /// let done = io_fiber::FiberIo::new()
    ///     .run(|_| async move {
    ///         poll_fn(|task| BudgetUnit::poll_take(task).map(|unit| unit.map(BudgetUnit::spend)))
    ///             .await?;
    ///         Ok(true)
    ///     })
    ///     .unwrap();
    /// assert!(done);
    /// ```
    #[inline]
    pub fn poll_take(cx: &mut Context<'_>) -> Poll<Result<BudgetUnit, Canceled>> {
        poll_take(cx)
    }

    /// The operation completed without suspending: the unit stays spent.
    #[inline]
    pub fn spend(self) {
        std::mem::forget(self);
    }
}

impl Drop for BudgetUnit {
    fn drop(&mut self) {
        let _ = LEFT.try_with(|cell| cell.set(cell.get().saturating_add(1)));
    }
}

impl fmt::Debug for BudgetUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetUnit").finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::{poll_fn, Future};
    use std::rc::Rc;
    use std::task::Poll;

    use super::*;
    use crate::task::current_task;
    use crate::{RawTask, RunQueue, SpawnOptions, Task};

    /// One operation that is always ready, budgeted as the primitives are.
    async fn ready_op() -> Result<(), Canceled> {
        poll_fn(|task| match poll_take(task) {
            Poll::Ready(Ok(unit)) => {
                unit.spend();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(canceled)) => Poll::Ready(Err(canceled)),
            Poll::Pending => Poll::Pending,
        })
        .await
    }

    /// Yields once (readies itself, answers `Pending`): a new poll follows.
    async fn yield_once() {
        let mut yielded = false;
        poll_fn(|task| {
            if std::mem::replace(&mut yielded, true) {
                Poll::Ready(())
            } else {
                task.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await
    }

    /// Queues a task with `op_budget` operations per poll.
    fn spawn<T: 'static>(
        queue: &RunQueue,
        op_budget: u32,
        future: impl Future<Output = Result<T, Canceled>> + 'static,
    ) -> Task<T> {
        queue.set_op_budget(op_budget);
        let (raw, task) = RawTask::new(queue, &SpawnOptions::new(), future);
        raw.schedule();
        task
    }

    /// Runs what is queued, in order, until nothing is (a FIFO loop, as fiber's seed 0).
    fn run_queued(queue: &RunQueue) {
        while let Some(runnable) = queue.pop() {
            runnable.run();
        }
    }

    /// Ready operations a looping task completed before a task queued behind it ran.
    fn ops_before_the_next_task_runs(op_budget: u32) -> u64 {
        let queue = RunQueue::new();
        let done = Rc::new(Cell::new(0u64));
        let seen = Rc::new(Cell::new(None));
        let hot = spawn(&queue, op_budget, {
            let done = done.clone();
            async move {
                for _ in 0..10_000 {
                    ready_op().await?;
                    done.set(done.get() + 1);
                }
                Ok(())
            }
        });
        let other = spawn(&queue, op_budget, {
            let (done, seen) = (done.clone(), seen.clone());
            async move {
                seen.set(Some(done.get()));
                Ok(())
            }
        });
        run_queued(&queue);
        assert!(hot.is_finished() && other.is_finished());
        seen.get().expect("the other task ran")
    }

    #[test]
    fn a_queued_task_runs_after_one_budget_of_ready_operations() {
        assert_eq!(
            ops_before_the_next_task_runs(DEFAULT_OP_BUDGET),
            u64::from(DEFAULT_OP_BUDGET)
        );
        assert_eq!(ops_before_the_next_task_runs(5), 5);
        assert_eq!(ops_before_the_next_task_runs(1), 1);
    }

    #[test]
    fn a_budget_of_zero_is_unlimited() {
        assert_eq!(ops_before_the_next_task_runs(0), 10_000);
    }

    #[test]
    fn outside_any_task_there_is_no_budget() {
        assert_eq!(left(), u64::MAX);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..1_000 {
            match poll_take(&mut cx) {
                Poll::Ready(Ok(unit)) => unit.spend(),
                other => panic!("outside a task: {other:?}"),
            }
        }
        assert_eq!(left(), u64::MAX - 1_000);
        install(u64::MAX);
    }

    #[test]
    fn each_poll_starts_with_a_full_budget_and_a_dropped_unit_is_given_back() {
        let queue = RunQueue::new();
        let task = spawn(&queue, 10, async {
            let mut seen = vec![left()];
            ready_op().await?;
            ready_op().await?;
            seen.push(left());
            // A unit taken for an operation that then waits comes back when dropped.
            poll_fn(|task| {
                let unit = poll_take(task);
                seen.push(left());
                drop(unit);
                Poll::Ready(())
            })
            .await;
            seen.push(left());
            yield_once().await; // a new poll
            seen.push(left());
            Ok(seen)
        });
        run_queued(&queue);
        assert_eq!(left(), u64::MAX, "no budget again after the polls");
        assert_eq!(
            futures_lite::future::block_on(task),
            Ok(vec![10, 8, 7, 8, 10])
        );
    }

    #[test]
    fn a_spent_budget_yields_once_by_readying_the_task() {
        let queue = RunQueue::new();
        let polls = Rc::new(Cell::new(0));
        let task = spawn(&queue, 3, {
            let polls = polls.clone();
            async move {
                poll_fn(|_| {
                    polls.set(polls.get() + 1);
                    Poll::Ready(())
                })
                .await;
                for _ in 0..7 {
                    ready_op().await?;
                }
                Ok(())
            }
        });
        let mut runs = 0;
        while let Some(runnable) = queue.pop() {
            runnable.run();
            runs += 1;
        }
        assert!(task.is_finished());
        // 3 + 3 + 1 operations: three polls, each after the task readied itself.
        assert_eq!((runs, polls.get()), (3, 1));
    }

    /// The yield of a spent budget is a suspend point: a pending cancel lands there.
    #[test]
    fn a_cancel_lands_where_the_budget_is_spent() {
        let queue = RunQueue::new();
        let done = Rc::new(Cell::new(0u32));
        let hot = spawn(&queue, 4, {
            let done = done.clone();
            async move {
                current_task().expect("a task").cancel(); // pending, and sticky
                loop {
                    ready_op().await?;
                    done.set(done.get() + 1);
                }
            }
        });
        run_queued(&queue);
        assert_eq!(futures_lite::future::block_on(hot), Err::<(), _>(Canceled));
        assert_eq!(done.get(), 4, "the budget's operations, then the cancel");
    }

    /// A child run inline inside its parent's poll (as the blocking backend does) has its own
    /// budget; the parent finds what it had left.
    #[test]
    fn an_inline_child_has_its_own_budget_and_the_parent_keeps_its_own() {
        let queue = RunQueue::new();
        let outer = spawn(&queue, 10, {
            let queue = queue.clone();
            async move {
                ready_op().await?;
                ready_op().await?;
                queue.set_op_budget(6);
                let (raw, child) = RawTask::new(&queue, &SpawnOptions::new(), async {
                    ready_op().await?;
                    Ok(left())
                });
                let (runnable, _) = raw.into_parts();
                runnable.run(); // inline, inside this poll
                let parent = left();
                Ok((child.await?, parent))
            }
        });
        run_queued(&queue);
        assert_eq!(futures_lite::future::block_on(outer), Ok((5, 8)));
    }
}
