//! [`Scheduler`]: how a fiber run chooses which enabled task runs next.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::str::FromStr;

use io_core::{Runnable, SplitMix64};

use crate::decision::{Decision, DecisionLog, Granularity, Recorder, Replayed};

/// How a fiber run picks among its enabled tasks. Every scheduler is a pure function of the
/// seed: same program, seed and scheduler, same run.
///
/// ```
/// use io_fiber::{FiberIo, Scheduler};
///
/// let io = FiberIo::with_scheduler(3, Scheduler::Pct { depth: 2, steps: 50 });
/// let order = io
///     .run(|cx| async move {
///         let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
///         let tasks: Vec<_> = (0..3)
///             .map(|i| {
///                 let log = log.clone();
///                 cx.spawn(move |cx| async move {
///                     cx.yield_now().await?;
///                     log.borrow_mut().push(i);
///                     Ok(())
///                 })
///             })
///             .collect();
///         for task in tasks {
///             task.await?;
///         }
///         let order = log.borrow().clone();
///         Ok(order)
///     })
///     .unwrap();
/// assert_eq!(order.len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Scheduler {
    /// In turns ([`Granularity::Turns`]): the tasks ready at a turn's start each run once, in
    /// FIFO order with seed 0, in a seeded shuffle otherwise. The default, and what
    /// [`FiberIo::with_seed`](crate::FiberIo::with_seed) uses.
    #[default]
    Random,
    /// A uniform random walk ([`Granularity::Steps`]): each step runs one task drawn uniformly
    /// from every enabled task, including those the previous step woke. Unlike turns, one task
    /// can run many steps ahead of another.
    Walk,
    /// Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010), in steps: each task
    /// gets a random priority when it first becomes enabled, and each step runs the enabled
    /// task of highest priority. `depth - 1` change points are drawn uniformly over `1..=steps`;
    /// at the `i`th, the task about to run drops to priority `depth - i`, below every initial
    /// one. A bug that needs `depth` ordering constraints among `n` tasks in a run of `steps`
    /// steps is found with probability at least `1 / (n · steps^(depth-1))` per run.
    ///
    /// `steps` should be about the length of a run ([`FiberIo::steps`](crate::FiberIo::steps)
    /// of a FIFO run says). PCT assumes no task spins; two guards keep a spin from hanging the
    /// run: a task that runs 1,000 consecutive steps while others are enabled (a spin on
    /// `yield_now` waiting for a lower-priority task) drops to the lowest priority, and a task
    /// enabled for 1,000 steps without running (behind two tasks that hand the turn to each
    /// other) runs next.
    Pct {
        /// The bug depth `d` looked for: `d - 1` priority change points. At most
        /// [`Scheduler::MAX_PCT_DEPTH`] counts.
        depth: u32,
        /// The expected length of a run, in steps.
        steps: u64,
    },
    /// Replays a recorded schedule ([`FiberIo::replay`](crate::FiberIo::replay)).
    Replay(DecisionLog),
}

impl Scheduler {
    /// The granularity this scheduler steps at.
    pub fn granularity(&self) -> Granularity {
        match self {
            Scheduler::Random => Granularity::Turns,
            Scheduler::Walk | Scheduler::Pct { .. } => Granularity::Steps,
            Scheduler::Replay(log) => log.granularity,
        }
    }

    /// The name [`Scheduler::parse`] reads back (`None` for a replay, which has no name).
    ///
    /// ```
    /// use io_fiber::Scheduler;
    /// let pct = Scheduler::Pct { depth: 3, steps: 500 };
    /// assert_eq!(Scheduler::parse(&pct.env_name().unwrap()), Some(pct));
    /// ```
    pub fn env_name(&self) -> Option<String> {
        match self {
            Scheduler::Random => Some("random".into()),
            Scheduler::Walk => Some("walk".into()),
            Scheduler::Pct { depth, steps } => Some(format!("pct:{depth}:{steps}")),
            Scheduler::Replay(_) => None,
        }
    }

    /// The deepest [`Scheduler::Pct`] [`Scheduler::parse`] accepts. PCT's guarantee,
    /// `1 / (n · steps^(depth-1))`, is worthless long before; a deeper `Pct` built directly
    /// runs as this deep (its change points are drawn up front, one per level).
    pub const MAX_PCT_DEPTH: u32 = 1_000;

    /// The scheduler named by `IOSWAP_SCHEDULER`'s syntax: `random`, `walk`, `pct:D:K` (depth
    /// `D` in `1..=`[`MAX_PCT_DEPTH`](Scheduler::MAX_PCT_DEPTH), expected steps `K ≥ 1`);
    /// `None` for anything else, trailing text included. [`str::parse`] says why
    /// ([`ParseSchedulerError`]).
    ///
    /// ```
    /// use io_fiber::Scheduler;
    /// assert_eq!(Scheduler::parse("pct:3:500"), Some(Scheduler::Pct { depth: 3, steps: 500 }));
    /// assert_eq!(Scheduler::parse("walk"), Some(Scheduler::Walk));
    /// assert_eq!(Scheduler::parse("dfs"), None);
    /// assert_eq!(Scheduler::parse("walk:3"), None);
    /// let error = "pct:4294967295:10".parse::<Scheduler>().unwrap_err();
    /// assert_eq!(error.why, "the depth is not in 1..=1000");
    /// ```
    pub fn parse(text: &str) -> Option<Scheduler> {
        text.parse().ok()
    }
}

/// A scheduler name that is not `IOSWAP_SCHEDULER`'s syntax ([`Scheduler::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} names no scheduler ({why}): use random, walk or pct:DEPTH:STEPS (DEPTH in 1..={max}, STEPS at least 1)", max = Scheduler::MAX_PCT_DEPTH)]
pub struct ParseSchedulerError {
    /// The text refused.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl FromStr for Scheduler {
    type Err = ParseSchedulerError;

    fn from_str(text: &str) -> Result<Scheduler, ParseSchedulerError> {
        let err = |why| ParseSchedulerError {
            text: text.to_string(),
            why,
        };
        let mut parts = text.trim().split(':');
        let scheduler = match parts.next().unwrap_or_default() {
            "random" => Scheduler::Random,
            "walk" => Scheduler::Walk,
            "pct" => {
                let depth: u32 = parts
                    .next()
                    .ok_or_else(|| err("no depth"))?
                    .parse()
                    .map_err(|_| err("the depth is not in 1..=1000"))?;
                let steps: u64 = parts
                    .next()
                    .ok_or_else(|| err("no steps"))?
                    .parse()
                    .map_err(|_| err("the steps are not a number"))?;
                if !(1..=Scheduler::MAX_PCT_DEPTH).contains(&depth) {
                    return Err(err("the depth is not in 1..=1000"));
                }
                if steps == 0 {
                    return Err(err("the steps are 0"));
                }
                Scheduler::Pct { depth, steps }
            }
            _ => return Err(err("an unknown name")),
        };
        if parts.next().is_some() {
            return Err(err("text after the scheduler"));
        }
        Ok(scheduler)
    }
}

/// A task picked this many times in a row while others were enabled drops to the lowest
/// priority under PCT.
const SPIN_LIMIT: u32 = 1_000;

/// A task enabled this many steps without running runs next under PCT, whatever its priority.
const STARVE_LIMIT: u64 = 1_000;

/// A PCT priority: the band (1 for initial priorities, 0 after a change point) then the key.
type Priority = (u8, u64);

/// The scheduler's running state.
#[derive(Debug)]
pub(crate) enum Picker {
    Fifo,
    Shuffle,
    Walk,
    Pct(Pct),
    /// Replaying a log of this granularity.
    Replay(Granularity),
}

#[derive(Debug)]
pub(crate) struct Pct {
    depth: u32,
    /// The steps (1-based) at which priorities change, ascending.
    change_at: Vec<u64>,
    next_change: Cell<usize>,
    state: RefCell<PctState>,
    /// The last task picked, and how many times in a row.
    streak: Cell<(u64, u32)>,
}

/// What PCT knows of the tasks.
#[derive(Debug, Default)]
struct PctState {
    /// Every task's priority, from when it was first seen enabled.
    priorities: BTreeMap<u64, Priority>,
    /// The enabled tasks (the batch): id to the order they were enabled in and the step.
    enabled: BTreeMap<u64, (u64, u64)>,
    /// The enabled tasks in the order they were enabled (the batch's order).
    by_seq: BTreeMap<u64, u64>,
    /// The enabled tasks by priority: the last runs (of those tied, the one enabled first).
    ranked: BTreeMap<(Priority, Reverse<u64>), u64>,
    /// The next task enabled is the `seq`th.
    seq: u64,
    /// The step of the last pick.
    last_step: u64,
}

impl Picker {
    /// Seed 0's FIFO with no log being recorded: the pick is a `pop_front`, with nothing to
    /// note (the fiber hot path checks this first).
    #[inline]
    pub(crate) fn is_plain_fifo(&self, recorder: &Recorder) -> bool {
        matches!(self, Picker::Fifo) && !recorder.is_recording()
    }

    pub(crate) fn new(seed: u64, scheduler: &Scheduler, rng: &SplitMix64) -> Picker {
        match scheduler {
            Scheduler::Random if seed == 0 => Picker::Fifo,
            Scheduler::Random => Picker::Shuffle,
            Scheduler::Walk => Picker::Walk,
            Scheduler::Replay(log) => Picker::Replay(log.granularity),
            Scheduler::Pct { depth, steps } => {
                let depth = (*depth).min(Scheduler::MAX_PCT_DEPTH);
                let mut change_at: Vec<u64> =
                    (1..depth).map(|_| 1 + rng.below((*steps).max(1))).collect();
                change_at.sort_unstable();
                Picker::Pct(Pct {
                    depth,
                    change_at,
                    next_change: Cell::new(0),
                    state: RefCell::new(PctState::default()),
                    streak: Cell::new((0, 0)),
                })
            }
        }
    }

    /// Picks the next task among `batch` (two or more), as step `step` (1-based), recording
    /// the decision. Removes it from `batch`.
    pub(crate) fn pick(
        &self,
        batch: &mut VecDeque<Runnable>,
        step: u64,
        rng: &SplitMix64,
        recorder: &Recorder,
    ) -> Runnable {
        let index = match self {
            Picker::Fifo => {
                recorder.push(Decision::First);
                return batch.pop_front().expect("two or more tasks");
            }
            Picker::Shuffle => {
                // Today's choice, unchanged for every existing seed: a swap-remove.
                let index = rng.below(batch.len() as u64) as usize;
                let runnable = batch
                    .swap_remove_back(index)
                    .expect("the index is in range");
                recorder.push(Decision::Task {
                    index: index as u32,
                    task: runnable.metadata().id(),
                });
                return runnable;
            }
            Picker::Walk => rng.below(batch.len() as u64) as usize,
            Picker::Pct(pct) => pct.pick(batch, step, rng),
            Picker::Replay(granularity) => {
                let (index, task) = match recorder.next_pick() {
                    Replayed::First => (0, None),
                    Replayed::Task { index, task } => {
                        match batch.iter().position(|r| r.metadata().id() == task) {
                            Some(position) => (position, Some(task)),
                            None if (index as usize) < batch.len() => {
                                recorder.mismatched();
                                (index as usize, Some(task))
                            }
                            None => {
                                recorder.mismatched();
                                (0, None)
                            }
                        }
                    }
                };
                if task.is_some() && *granularity == Granularity::Turns {
                    // The shuffle's own move, a swap-remove (recorded at index 0 too): the
                    // batch keeps the order the recording saw, so the replay's indices and
                    // its own log are the recording's.
                    let runnable = batch
                        .swap_remove_back(index)
                        .expect("the index is in range");
                    recorder.push(Decision::Task {
                        index: index as u32,
                        task: runnable.metadata().id(),
                    });
                    return runnable;
                }
                index
            }
        };
        let runnable = batch.remove(index).expect("the index is in range");
        recorder.push(if index == 0 {
            Decision::First
        } else {
            Decision::Task {
                index: index as u32,
                task: runnable.metadata().id(),
            }
        });
        runnable
    }
}

impl Pct {
    /// Picks among `batch` (two or more enabled tasks) as step `step`: the index to run.
    ///
    /// The enabled set is kept as the batch is, by priority: the batch only grows at its back
    /// between picks, and loses the task picked here, except when a step ran without a pick (a
    /// lone enabled task, which emptied it). So only the tasks appended since the last pick
    /// are new, and a pick costs O(log n) plus the new tasks, not a scan of every enabled one.
    fn pick(&self, batch: &VecDeque<Runnable>, step: u64, rng: &SplitMix64) -> usize {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        if step != state.last_step + 1 || !state.holds_front_of(batch) {
            // A step ran without a pick: what was left of the batch then ran alone, and every
            // task in it now is new (as its first entry does not tell apart from a task that ran
            // alone and came back, the enabled set is rebuilt from the batch).
            state.enabled.clear();
            state.by_seq.clear();
            state.ranked.clear();
        }
        for runnable in batch.iter().skip(state.enabled.len()) {
            let task = runnable.metadata().id();
            let priority = *state
                .priorities
                .entry(task)
                .or_insert_with(|| (1, rng.next_u64()));
            let seq = state.seq;
            state.seq += 1;
            state.enabled.insert(task, (seq, step));
            state.by_seq.insert(seq, task);
            state.ranked.insert((priority, Reverse(seq)), task);
        }
        let mut task = state.top();
        // Several change points may fall on one step: each lowers the task about to run.
        while let Some(&at) = self.change_at.get(self.next_change.get()) {
            if at > step {
                break;
            }
            let i = self.next_change.get() + 1;
            self.next_change.set(i);
            state.set_priority(task, (0, u64::from(self.depth) - i as u64));
            task = state.top();
        }
        let (last, count) = self.streak.get();
        let count = if last == task { count + 1 } else { 1 };
        if count > SPIN_LIMIT {
            state.set_priority(task, (0, 0));
            task = state.top();
            self.streak.set((task, 1));
        } else {
            self.streak.set((task, count));
        }
        // The starvation guard: the task enabled longest (the batch's first) runs once it has
        // waited `STARVE_LIMIT` steps, whatever the priorities say.
        let first = batch[0].metadata().id();
        let waited = state
            .enabled
            .get(&first)
            .map_or(0, |&(_, since)| step - since);
        if first != task && waited >= STARVE_LIMIT {
            task = first;
            self.streak.set((task, 1));
        }
        let seq = state.enabled[&task].0;
        let index = batch
            .binary_search_by_key(&seq, |r| {
                state
                    .enabled
                    .get(&r.metadata().id())
                    .map_or(u64::MAX, |e| e.0)
            })
            // The batch is in the order its tasks were enabled; were it not, a scan finds it.
            .or_else(|_| {
                batch
                    .iter()
                    .position(|r| r.metadata().id() == task)
                    .ok_or(())
            })
            .expect("the task picked is in the batch");
        state.enabled.remove(&task);
        state.by_seq.remove(&seq);
        state
            .ranked
            .remove(&(state.priorities[&task], Reverse(seq)));
        state.last_step = step;
        index
    }
}

impl PctState {
    /// The enabled task of highest priority (of those tied, the one enabled first).
    fn top(&self) -> u64 {
        *self.ranked.last_key_value().expect("two or more tasks").1
    }

    /// Whether the enabled set starts as the batch does: a check that they are in step.
    fn holds_front_of(&self, batch: &VecDeque<Runnable>) -> bool {
        match self.by_seq.first_key_value() {
            None => true,
            Some((_, task)) => {
                batch.len() >= self.by_seq.len()
                    && batch.front().map(|r| r.metadata().id()) == Some(*task)
            }
        }
    }

    fn set_priority(&mut self, task: u64, priority: Priority) {
        let seq = self.enabled[&task].0;
        let old = self
            .priorities
            .insert(task, priority)
            .expect("a known task");
        self.ranked.remove(&(old, Reverse(seq)));
        self.ranked.insert((priority, Reverse(seq)), task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `IOSWAP_SCHEDULER`'s syntax: a value that names no scheduler is an error, trailing text
    /// included (`pct:3:500:9` was PCT, `walk:3` the walk, `random:pct` the default).
    #[test]
    fn scheduler_names_with_trailing_text_are_refused() {
        for text in [
            "pct:3:500:9",
            "walk:3",
            "random:pct",
            "pct:3:500:",
            "random:",
        ] {
            let error = text.parse::<Scheduler>().unwrap_err();
            assert_eq!(error.why, "text after the scheduler", "{text:?}");
            assert_eq!(Scheduler::parse(text), None);
        }
        assert_eq!(
            Scheduler::parse(" pct:3:500\n"),
            Some(Scheduler::Pct {
                depth: 3,
                steps: 500
            })
        );
    }

    #[test]
    fn a_bad_scheduler_name_says_why() {
        let why = |text: &str| text.parse::<Scheduler>().unwrap_err().why;
        assert_eq!(why("dfs"), "an unknown name");
        assert_eq!(why(""), "an unknown name");
        assert_eq!(why("pct"), "no depth");
        assert_eq!(why("pct:2"), "no steps");
        assert_eq!(why("pct:0:10"), "the depth is not in 1..=1000");
        assert_eq!(why("pct:1001:10"), "the depth is not in 1..=1000");
        assert_eq!(why("pct:4294967296:10"), "the depth is not in 1..=1000");
        assert_eq!(why("pct:2:0"), "the steps are 0");
        assert_eq!(why("pct:2:x"), "the steps are not a number");
        let error = "pct:4294967295:10".parse::<Scheduler>().unwrap_err();
        assert!(error.to_string().contains("pct:DEPTH:STEPS"), "{error}");
        let deepest = Scheduler::Pct {
            depth: Scheduler::MAX_PCT_DEPTH,
            steps: 10,
        };
        assert_eq!(
            Scheduler::parse(&deepest.env_name().unwrap()),
            Some(deepest)
        );
    }

    /// A `Pct` built directly deeper than `MAX_PCT_DEPTH` draws that many change points, not
    /// `depth - 1` (34 GB for `u32::MAX`: the process aborted).
    #[test]
    fn a_huge_pct_depth_is_bounded() {
        let rng = SplitMix64::new(1);
        let huge = Scheduler::Pct {
            depth: u32::MAX,
            steps: 10,
        };
        match Picker::new(1, &huge, &rng) {
            Picker::Pct(pct) => {
                assert_eq!(pct.change_at.len(), Scheduler::MAX_PCT_DEPTH as usize - 1);
                assert_eq!(pct.depth, Scheduler::MAX_PCT_DEPTH);
            }
            other => panic!("{other:?}"),
        }
    }
}
