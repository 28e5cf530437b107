//! [`shrink`]: a failing schedule made small, by delta debugging its decisions.

use crate::decision::{Decision, DecisionLog};

/// What [`shrink`] made of a failing schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shrunk {
    /// The smallest failing schedule found: replay it with
    /// [`FiberIo::replay`](crate::FiberIo::replay).
    pub log: DecisionLog,
    /// Non-default scheduler choices in the log given.
    pub before: usize,
    /// Non-default scheduler choices in the shrunk log.
    pub after: usize,
    /// How many replays the shrinking took (the check of the original included).
    pub runs: u64,
}

/// Why [`shrink`] could not shrink.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShrinkError {
    /// The log given does not fail when replayed: record it from the failing run itself
    /// ([`FiberIo::record_decisions`](crate::FiberIo::record_decisions)) and check that the
    /// `fails` closure replays it ([`FiberIo::replay`](crate::FiberIo::replay)).
    #[error("the schedule given does not fail when replayed; record it from the failing run (FiberIo::record_decisions) and replay it with FiberIo::replay in the check")]
    DoesNotFail,
}

/// Shrinks a failing schedule: `fails` replays a candidate log (build the backend with
/// [`FiberIo::replay`](crate::FiberIo::replay)) and says whether the run still fails the same
/// way. Returns the smallest failing log found, in non-default scheduler choices.
///
/// Like Hypothesis and proptest shrink inputs, it only ever makes the schedule simpler: it
/// drops the tail of the log (a replay makes default choices once a log runs out: the first
/// enabled task, and the seed's draws), then delta-debugs (ddmin, Zeller 2002) the remaining
/// non-default task picks, trying to keep only a part of them and to reset a part to the
/// default, in ever smaller parts, keeping every change after which the run still fails. The
/// world's and the program's draws are kept as recorded. Each candidate costs one replay.
///
/// ```
/// use io_fiber::{shrink, FiberIo, Scheduler};
///
/// // Fails when task 3 runs its step before task 2 does (FIFO runs 2 first).
/// fn fails(io: &FiberIo) -> bool {
///     io.run(|cx| async move {
///         let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
///         let tasks: Vec<_> = (0..6u64)
///             .map(|i| {
///                 let order = order.clone();
///                 cx.spawn(move |cx| async move {
///                     for _ in 0..5 {
///                         cx.yield_now().await?;
///                     }
///                     order.borrow_mut().push(i);
///                     Ok(())
///                 })
///             })
///             .collect();
///         for task in tasks {
///             task.await?;
///         }
///         let order = order.borrow().clone();
///         Ok(order.iter().position(|&i| i == 1) > order.iter().position(|&i| i == 0))
///     })
///     .unwrap()
/// }
///
/// let seed = (1..).find(|&seed| fails(&FiberIo::with_scheduler(seed, Scheduler::Walk))).unwrap();
/// let io = FiberIo::with_scheduler(seed, Scheduler::Walk).record_decisions();
/// assert!(fails(&io));
/// let shrunk = shrink(io.decisions(), |log| fails(&FiberIo::replay(log.clone()))).unwrap();
/// assert!(shrunk.after <= 2 && shrunk.after < shrunk.before);
/// assert!(fails(&FiberIo::replay(shrunk.log.clone())));
/// ```
pub fn shrink<F>(log: DecisionLog, mut fails: F) -> Result<Shrunk, ShrinkError>
where
    F: FnMut(&DecisionLog) -> bool,
{
    let before = log.non_default_picks();
    let mut runs = 1;
    if !fails(&log) {
        return Err(ShrinkError::DoesNotFail);
    }
    let mut try_log = |candidate: &DecisionLog| {
        runs += 1;
        fails(candidate)
    };
    let mut best = log.trimmed();

    // The tail: the shortest failing prefix, by bisection (the full length fails).
    let (mut lo, mut hi) = (0, best.decisions.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let candidate = with_decisions(&best, best.decisions[..mid].to_vec());
        if try_log(&candidate) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    best.decisions.truncate(hi);

    // ddmin over the non-default picks, resetting to the default instead of deleting, so
    // the picks after a reset one stay where they were.
    let mut parts = 2;
    loop {
        let picks: Vec<usize> = best
            .decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_non_default_pick())
            .map(|(i, _)| i)
            .collect();
        if picks.is_empty() {
            break;
        }
        let parts_now = parts.min(picks.len());
        let size = picks.len().div_ceil(parts_now);
        let chunks: Vec<&[usize]> = picks.chunks(size).collect();
        let mut reduced = false;
        // Keep only one part (the others reset)...
        if chunks.len() > 1 {
            for chunk in &chunks {
                let (first, last) = (chunk[0], chunk[chunk.len() - 1]);
                let outside = picks.iter().filter(|&&i| i < first || i > last);
                let candidate = reset(&best, outside);
                if try_log(&candidate) {
                    best = candidate;
                    parts = 2;
                    reduced = true;
                    break;
                }
            }
        }
        // ...or reset one part.
        if !reduced {
            for chunk in &chunks {
                let candidate = reset(&best, chunk.iter());
                if try_log(&candidate) {
                    best = candidate;
                    parts = (parts_now - 1).max(2);
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced {
            if parts_now >= picks.len() {
                break;
            }
            parts = (parts_now * 2).min(picks.len());
        }
    }
    let log = best.trimmed();
    Ok(Shrunk {
        after: log.non_default_picks(),
        log,
        before,
        runs,
    })
}

fn with_decisions(log: &DecisionLog, decisions: Vec<Decision>) -> DecisionLog {
    DecisionLog {
        seed: log.seed,
        granularity: log.granularity,
        decisions,
    }
}

/// `log` with the picks at `indices` reset to the default.
fn reset<'a>(log: &DecisionLog, indices: impl Iterator<Item = &'a usize>) -> DecisionLog {
    let mut decisions = log.decisions.clone();
    for &i in indices {
        decisions[i] = Decision::First;
    }
    with_decisions(log, decisions).trimmed()
}
