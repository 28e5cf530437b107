//! [`Scheduler`]: how a fiber run chooses which enabled task runs next.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};

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
    /// of a FIFO run says). A task that keeps running while others are enabled (a spin on
    /// `yield_now` waiting for a lower-priority task) drops to the lowest priority after
    /// 1,000 consecutive steps, so a spin cannot hang the run.
    Pct {
        /// The bug depth `d` looked for: `d - 1` priority change points.
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

    /// The scheduler named by `IOSWAP_SCHEDULER`'s syntax: `random`, `walk`, `pct:D:K` (depth
    /// `D`, expected steps `K`).
    ///
    /// ```
    /// use io_fiber::Scheduler;
    /// assert_eq!(Scheduler::parse("pct:3:500"), Some(Scheduler::Pct { depth: 3, steps: 500 }));
    /// assert_eq!(Scheduler::parse("walk"), Some(Scheduler::Walk));
    /// assert_eq!(Scheduler::parse("dfs"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Scheduler> {
        let mut parts = text.trim().split(':');
        match parts.next()? {
            "random" => Some(Scheduler::Random),
            "walk" => Some(Scheduler::Walk),
            "pct" => {
                let depth = parts.next()?.parse().ok()?;
                let steps = parts.next()?.parse().ok()?;
                (depth >= 1 && steps >= 1).then_some(Scheduler::Pct { depth, steps })
            }
            _ => None,
        }
    }
}

/// A task picked this many times in a row while others were enabled drops to the lowest
/// priority under PCT.
const SPIN_LIMIT: u32 = 1_000;

/// A PCT priority: the band (1 for initial priorities, 0 after a change point) then the key.
type Priority = (u8, u64);

/// The scheduler's running state.
#[derive(Debug)]
pub(crate) enum Picker {
    Fifo,
    Shuffle,
    Walk,
    Pct(Pct),
    Replay,
}

#[derive(Debug)]
pub(crate) struct Pct {
    depth: u32,
    /// The steps (1-based) at which priorities change, ascending.
    change_at: Vec<u64>,
    next_change: Cell<usize>,
    priorities: RefCell<BTreeMap<u64, Priority>>,
    /// The last task picked, and how many times in a row.
    streak: Cell<(u64, u32)>,
}

impl Picker {
    pub(crate) fn new(seed: u64, scheduler: &Scheduler, rng: &SplitMix64) -> Picker {
        match scheduler {
            Scheduler::Random if seed == 0 => Picker::Fifo,
            Scheduler::Random => Picker::Shuffle,
            Scheduler::Walk => Picker::Walk,
            Scheduler::Replay(_) => Picker::Replay,
            Scheduler::Pct { depth, steps } => {
                let mut change_at: Vec<u64> = (1..*depth)
                    .map(|_| 1 + rng.below((*steps).max(1)))
                    .collect();
                change_at.sort_unstable();
                Picker::Pct(Pct {
                    depth: *depth,
                    change_at,
                    next_change: Cell::new(0),
                    priorities: RefCell::new(BTreeMap::new()),
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
                    task: *runnable.metadata(),
                });
                return runnable;
            }
            Picker::Walk => rng.below(batch.len() as u64) as usize,
            Picker::Pct(pct) => pct.pick(batch, step, rng),
            Picker::Replay => match recorder.next_pick() {
                Replayed::First => 0,
                Replayed::Task { index, task } => batch
                    .iter()
                    .position(|r| *r.metadata() == task)
                    .unwrap_or_else(|| {
                        recorder.mismatched();
                        if (index as usize) < batch.len() {
                            index as usize
                        } else {
                            0
                        }
                    }),
            },
        };
        let runnable = batch.remove(index).expect("the index is in range");
        recorder.push(if index == 0 {
            Decision::First
        } else {
            Decision::Task {
                index: index as u32,
                task: *runnable.metadata(),
            }
        });
        runnable
    }
}

impl Pct {
    fn pick(&self, batch: &VecDeque<Runnable>, step: u64, rng: &SplitMix64) -> usize {
        let mut priorities = self.priorities.borrow_mut();
        let best = |priorities: &mut BTreeMap<u64, Priority>| {
            let mut best = (0, (0, 0));
            for (index, runnable) in batch.iter().enumerate() {
                let priority = *priorities
                    .entry(*runnable.metadata())
                    .or_insert_with(|| (1, rng.next_u64()));
                if index == 0 || priority > best.1 {
                    best = (index, priority);
                }
            }
            best.0
        };
        let mut index = best(&mut priorities);
        // Several change points may fall on one step: each lowers the task about to run.
        while let Some(&at) = self.change_at.get(self.next_change.get()) {
            if at > step {
                break;
            }
            let i = self.next_change.get() + 1;
            self.next_change.set(i);
            let task = *batch[index].metadata();
            priorities.insert(task, (0, u64::from(self.depth) - i as u64));
            index = best(&mut priorities);
        }
        let task = *batch[index].metadata();
        let (last, count) = self.streak.get();
        let count = if last == task { count + 1 } else { 1 };
        if count > SPIN_LIMIT {
            priorities.insert(task, (0, 0));
            index = best(&mut priorities);
            self.streak.set((*batch[index].metadata(), 1));
        } else {
            self.streak.set((task, count));
        }
        index
    }
}
