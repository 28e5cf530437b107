//! Schedules as data: [`Decision`], [`DecisionLog`], and the recorder a run writes them to and
//! replays them from.
//!
//! Every choice of a fiber run that is not fixed by the program is one of three kinds: which
//! enabled task runs next (the scheduler), a draw of the simulated world (a latency, a fault, a
//! short transfer), or a draw of the program ([`Io::random_u64`](io_core::Io::random_u64): a
//! `select`'s case, `Cx::random_below`). Recorded in order they are the schedule; fed back they
//! replay the run exactly. Each kind is replayed from its own cursor, so a decision of one kind
//! never shifts those of another, and a task pick names the task it ran (its id), not only its
//! position, so a change that wakes tasks in another order still replays the same picks.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// One choice of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The scheduler ran the first of the enabled tasks (in the order they became ready): the
    /// default choice, the one a FIFO run makes, and what a shrunk schedule falls back to.
    First,
    /// The scheduler ran task `task` (its id: 1 is the main task), which was the `index`th of
    /// the enabled tasks. Replay looks for the task by id first, then by index.
    ///
    /// In steps ([`Granularity::Steps`]) the task leaves the enabled tasks in order, like a
    /// [`Decision::First`], and index 0 is recorded as `First`. In turns
    /// ([`Granularity::Turns`]) it is the default scheduler's move, a swap-remove (the last
    /// enabled task takes its place), recorded at index 0 too: replaying does the same, so a
    /// replay sees the same order and records the same log.
    Task {
        /// The position among the enabled tasks.
        index: u32,
        /// The id of the task run.
        task: u64,
    },
    /// The simulated world drew `value` from `0..bound`.
    World {
        /// The draw.
        value: u64,
        /// The exclusive upper bound asked for.
        bound: u64,
    },
    /// The program drew `value` from its choice stream.
    Program(u64),
}

impl Decision {
    /// Whether this is a scheduler choice of another task than the default's (the first
    /// enabled): what a shrunk schedule is measured by. A turns log's `Task` at index 0 runs the
    /// task the default would (see [`Decision::Task`]), so it is not counted.
    pub fn is_non_default_pick(&self) -> bool {
        matches!(self, Decision::Task { index, .. } if *index != 0)
    }

    /// Whether this is a scheduler choice (default or not).
    pub fn is_pick(&self) -> bool {
        matches!(self, Decision::First | Decision::Task { .. })
    }
}

/// How a run's scheduler steps, which a replay must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// In turns: the tasks ready at a turn's start run once each, in the scheduler's order;
    /// tasks woken meanwhile wait for the next turn ([`Scheduler::Random`](crate::Scheduler::Random)).
    Turns,
    /// One task per step, chosen among every enabled task, including those woken by the
    /// previous step ([`Scheduler::Walk`](crate::Scheduler::Walk),
    /// [`Scheduler::Pct`](crate::Scheduler::Pct)).
    Steps,
}

/// The decisions of one run, in the order they were made: the schedule as data.
///
/// Its text form is one line, `fiber-schedule seed=7 steps 2:5 -3 w3/10 p1f …`: the seed, the
/// granularity, then one token per decision: `-` ([`Decision::First`]; `-N` for N in a row), `index:task`
/// ([`Decision::Task`]), `wvalue/bound` ([`Decision::World`]), `p` and hex
/// ([`Decision::Program`]). It parses back ([`str::parse`]) to the same log.
///
/// ```
/// use io_fiber::{Decision, DecisionLog, Granularity};
///
/// let log = DecisionLog {
///     seed: 7,
///     granularity: Granularity::Steps,
///     decisions: vec![
///         Decision::First,
///         Decision::Task { index: 2, task: 5 },
///         Decision::First,
///         Decision::First,
///         Decision::World { value: 3, bound: 10 },
///         Decision::Program(0x1f),
///     ],
/// };
/// let line = log.to_string();
/// assert_eq!(line, "fiber-schedule seed=7 steps - 2:5 -2 w3/10 p1f");
/// assert_eq!(line.parse::<DecisionLog>().unwrap(), log);
/// assert_eq!(log.non_default_picks(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecisionLog {
    /// The seed of the run (it also fixes what the log does not hold: a world's clock skews,
    /// and the draws after the log runs out).
    pub seed: u64,
    /// How the run's scheduler stepped.
    pub granularity: Granularity,
    /// The decisions, in order.
    pub decisions: Vec<Decision>,
}

impl DecisionLog {
    /// The most decisions a log's text may hold (2^24, 384 MiB of them): a text with more is
    /// refused ([`ParseLogError`]) rather than allocated, since `-N` stands for `N` of them.
    pub const MAX_DECISIONS: usize = 1 << 24;

    /// How many scheduler choices the log holds.
    pub fn picks(&self) -> usize {
        self.decisions.iter().filter(|d| d.is_pick()).count()
    }

    /// How many scheduler choices differ from the default (FIFO) one: the size of a schedule.
    pub fn non_default_picks(&self) -> usize {
        self.decisions
            .iter()
            .filter(|d| d.is_non_default_pick())
            .count()
    }

    /// The log without trailing default picks (a replay makes them anyway once the log runs
    /// out).
    pub fn trimmed(mut self) -> DecisionLog {
        while let Some(Decision::First) = self.decisions.last() {
            self.decisions.pop();
        }
        self
    }
}

const HEADER: &str = "fiber-schedule";

impl fmt::Display for DecisionLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let granularity = match self.granularity {
            Granularity::Turns => "turns",
            Granularity::Steps => "steps",
        };
        write!(f, "{HEADER} seed={} {granularity}", self.seed)?;
        let mut firsts = 0;
        for (i, decision) in self.decisions.iter().enumerate() {
            // A run of default picks is one token: `-` alone, `-N` for N of them.
            if *decision == Decision::First {
                firsts += 1;
                if self.decisions.get(i + 1) == Some(&Decision::First) {
                    continue;
                }
                match firsts {
                    1 => write!(f, " -")?,
                    n => write!(f, " -{n}")?,
                }
                firsts = 0;
                continue;
            }
            match decision {
                Decision::First => {}
                Decision::Task { index, task } => write!(f, " {index}:{task}")?,
                Decision::World { value, bound } => write!(f, " w{value}/{bound}")?,
                Decision::Program(value) => write!(f, " p{value:x}")?,
            }
        }
        Ok(())
    }
}

/// A schedule's text that is not one [`DecisionLog`] wrote (or holds more than
/// [`DecisionLog::MAX_DECISIONS`]). Parsing never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a fiber schedule (at token {position}, {token:?}): {why}; expect the line `DecisionLog`'s Display writes, `fiber-schedule seed=N turns|steps TOKENS…`")]
pub struct ParseLogError {
    /// Which whitespace-separated token (0 is the header).
    pub position: usize,
    /// The token.
    pub token: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl FromStr for DecisionLog {
    type Err = ParseLogError;

    fn from_str(text: &str) -> Result<DecisionLog, ParseLogError> {
        let mut tokens = text.split_whitespace().enumerate();
        // A missing token is reported at the position it should have had.
        let mut next = |position: usize, why: &'static str| {
            tokens.next().ok_or(ParseLogError {
                position,
                token: String::new(),
                why,
            })
        };
        let err = |position: usize, token: &str, why| ParseLogError {
            position,
            token: token.to_string(),
            why,
        };
        let (at, header) = next(0, "empty")?;
        if header != HEADER {
            return Err(err(at, header, "no `fiber-schedule` header"));
        }
        let (at, seed) = next(1, "no seed")?;
        let seed = seed
            .strip_prefix("seed=")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| err(at, seed, "not `seed=N`"))?;
        let (at, granularity) = next(2, "no granularity")?;
        let granularity = match granularity {
            "turns" => Granularity::Turns,
            "steps" => Granularity::Steps,
            other => return Err(err(at, other, "not `turns` or `steps`")),
        };
        let mut decisions = Vec::new();
        for (at, token) in tokens {
            let bad = || {
                err(
                    at,
                    token,
                    "not a decision (`-`, `-N`, `I:T`, `wV/B`, `pHEX`)",
                )
            };
            let decision = if let Some(run) = token.strip_prefix('-') {
                let n: usize = if run.is_empty() {
                    1
                } else {
                    run.parse().map_err(|_| bad())?
                };
                if n > DecisionLog::MAX_DECISIONS - decisions.len() {
                    return Err(err(
                        at,
                        token,
                        "more than DecisionLog::MAX_DECISIONS decisions",
                    ));
                }
                decisions.extend(std::iter::repeat_n(Decision::First, n));
                continue;
            } else if let Some(world) = token.strip_prefix('w') {
                let (value, bound) = world.split_once('/').ok_or_else(bad)?;
                Decision::World {
                    value: value.parse().map_err(|_| bad())?,
                    bound: bound.parse().map_err(|_| bad())?,
                }
            } else if let Some(hex) = token.strip_prefix('p') {
                Decision::Program(u64::from_str_radix(hex, 16).map_err(|_| bad())?)
            } else {
                let (index, task) = token.split_once(':').ok_or_else(bad)?;
                Decision::Task {
                    index: index.parse().map_err(|_| bad())?,
                    task: task.parse().map_err(|_| bad())?,
                }
            };
            if decisions.len() == DecisionLog::MAX_DECISIONS {
                return Err(err(
                    at,
                    token,
                    "more than DecisionLog::MAX_DECISIONS decisions",
                ));
            }
            decisions.push(decision);
        }
        Ok(DecisionLog {
            seed,
            granularity,
            decisions,
        })
    }
}

/// How closely a replay followed its log ([`FiberIo::replay_report`](crate::FiberIo::replay_report)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ReplayReport {
    /// Decisions taken from the log.
    pub followed: u64,
    /// Decisions made after the log ran out of that kind: the default (the first enabled
    /// task) for picks, the seed's generator for draws.
    pub defaulted: u64,
    /// Decisions the log had but the run could not follow (a task id not enabled, a draw out
    /// of range): the code changed under the log. The run went on with the log's index, else
    /// the default.
    pub mismatched: u64,
}

/// The log a replay reads, one cursor per kind.
#[derive(Debug, Default)]
struct Cursors {
    picks: VecDeque<Decision>,
    world: VecDeque<(u64, u64)>,
    program: VecDeque<u64>,
}

/// What a run records to and replays from: shared by the scheduler and the simulated world.
/// Off (neither recording nor replaying), every draw costs one `Cell` read.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    /// Recording or replaying.
    active: Cell<bool>,
    recording: Cell<bool>,
    log: RefCell<Vec<Decision>>,
    replay: RefCell<Option<Cursors>>,
    report: Cell<ReplayReport>,
}

/// A replayed pick: where to find the task to run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Replayed {
    /// The log ran out, or said [`Decision::First`].
    First,
    /// The task with this id, else the `index`th.
    Task { index: u32, task: u64 },
}

impl Recorder {
    /// Whether decisions are being written down.
    #[inline]
    pub(crate) fn is_recording(&self) -> bool {
        self.recording.get()
    }

    pub(crate) fn record(&self) {
        self.recording.set(true);
        self.active.set(true);
    }

    pub(crate) fn replay(&self, log: &DecisionLog) {
        let mut cursors = Cursors::default();
        for decision in &log.decisions {
            match *decision {
                Decision::First | Decision::Task { .. } => cursors.picks.push_back(*decision),
                Decision::World { value, bound } => cursors.world.push_back((value, bound)),
                Decision::Program(value) => cursors.program.push_back(value),
            }
        }
        *self.replay.borrow_mut() = Some(cursors);
        self.active.set(true);
    }

    #[inline]
    pub(crate) fn push(&self, decision: Decision) {
        if self.recording.get() {
            self.log.borrow_mut().push(decision);
        }
    }

    pub(crate) fn decisions(&self) -> Vec<Decision> {
        self.log.borrow().clone()
    }

    pub(crate) fn report(&self) -> ReplayReport {
        self.report.get()
    }

    fn count(&self, what: impl FnOnce(&mut ReplayReport)) {
        let mut report = self.report.get();
        what(&mut report);
        self.report.set(report);
    }

    pub(crate) fn mismatched(&self) {
        self.count(|r| r.mismatched += 1);
    }

    /// The next pick of a replay.
    pub(crate) fn next_pick(&self) -> Replayed {
        let next = self
            .replay
            .borrow_mut()
            .as_mut()
            .and_then(|c| c.picks.pop_front());
        match next {
            None => {
                self.count(|r| r.defaulted += 1);
                Replayed::First
            }
            Some(Decision::Task { index, task }) => {
                self.count(|r| r.followed += 1);
                Replayed::Task { index, task }
            }
            Some(_) => {
                self.count(|r| r.followed += 1);
                Replayed::First
            }
        }
    }

    /// A world draw in `0..bound`: `fresh` (the seed's) unless a replay says otherwise.
    #[inline]
    pub(crate) fn world(&self, fresh: u64, bound: u64) -> u64 {
        if !self.active.get() {
            return fresh;
        }
        self.world_slow(fresh, bound)
    }

    fn world_slow(&self, fresh: u64, bound: u64) -> u64 {
        let mut value = fresh;
        let replayed = self
            .replay
            .borrow_mut()
            .as_mut()
            .map(|c| c.world.pop_front());
        match replayed {
            None => {}
            Some(None) => self.count(|r| r.defaulted += 1),
            Some(Some((logged, _))) if logged < bound => {
                self.count(|r| r.followed += 1);
                value = logged;
            }
            Some(Some(_)) => self.mismatched(),
        }
        self.push(Decision::World { value, bound });
        value
    }

    /// A program draw: `fresh` (the seed's) unless a replay says otherwise.
    #[inline]
    pub(crate) fn program(&self, fresh: u64) -> u64 {
        if !self.active.get() {
            return fresh;
        }
        let replayed = self
            .replay
            .borrow_mut()
            .as_mut()
            .map(|c| c.program.pop_front());
        let value = match replayed {
            None => fresh,
            Some(None) => {
                self.count(|r| r.defaulted += 1);
                fresh
            }
            Some(Some(logged)) => {
                self.count(|r| r.followed += 1);
                logged
            }
        };
        self.push(Decision::Program(value));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DecisionLog, ParseLogError> {
        text.parse()
    }

    /// `-N` stands for `N` default picks: an `N` past `DecisionLog::MAX_DECISIONS` is a typed
    /// error, never a capacity-overflow panic (`usize::MAX`) or an abort allocating (10^12).
    #[test]
    fn a_huge_run_of_default_picks_is_an_error_not_a_panic() {
        for n in [usize::MAX.to_string(), "1000000000000".into()] {
            let error = parse(&format!("fiber-schedule seed=1 turns - 2:3 -{n}")).unwrap_err();
            assert_eq!(
                (error.position, error.why),
                (5, "more than DecisionLog::MAX_DECISIONS decisions")
            );
        }
        // The cap is on the whole log, not on one token.
        let max = DecisionLog::MAX_DECISIONS;
        let error = parse(&format!("fiber-schedule seed=1 steps -2 -{}", max - 1)).unwrap_err();
        assert_eq!(error.position, 4);
        let log = parse(&format!("fiber-schedule seed=1 steps -2 -{}", 1000)).unwrap();
        assert_eq!(log.decisions.len(), 1002);
    }

    /// A missing token is reported where it should have been (it said `usize::MAX`).
    #[test]
    fn a_missing_token_is_reported_at_its_position() {
        let at = |text: &str| parse(text).unwrap_err().position;
        assert_eq!(at(""), 0);
        assert_eq!(at("fiber-schedule"), 1);
        assert_eq!(at("fiber-schedule seed=3"), 2);
        assert_eq!(at("fiber-schedule seed=3 sideways"), 2);
        assert_eq!(at("fiber-schedule seed=3 steps - x"), 4);
    }
}
