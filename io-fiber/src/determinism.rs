//! [`check_determinism`]: run a seed twice and name the first step where the runs differ.

use std::fmt;
use std::panic::Location;

use crate::{FiberIo, TaskInfo, TraceEvent};

/// One step of a run, as a [`Divergence`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The virtual time of the step.
    pub at_ms: u64,
    /// The task polled.
    pub task: u64,
    /// Its name.
    pub name: String,
    /// Where it was spawned.
    pub spawned_at: Option<&'static Location<'static>>,
    /// Where the step left it waiting (`None`: it finished, or waits at no known place).
    pub suspended_at: Option<&'static Location<'static>>,
}

impl StepReport {
    fn new(event: &TraceEvent, tasks: &[TaskInfo]) -> StepReport {
        let info = tasks.iter().find(|info| info.id == event.task);
        StepReport {
            at_ms: event.at_ms,
            task: event.task,
            name: info.map_or_else(|| format!("task#{}", event.task), |i| i.name.clone()),
            spawned_at: info.and_then(|info| info.spawned_at),
            suspended_at: event.suspended_at,
        }
    }
}

impl fmt::Display for StepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} {:?}", self.task, self.name)?;
        if let Some(at) = self.spawned_at {
            write!(f, " (spawned at {at})")?;
        }
        write!(f, " at {} ms", self.at_ms)?;
        match self.suspended_at {
            Some(at) => write!(f, ", then waited at {at}"),
            None => write!(f, ", then finished (or waited at no known place)"),
        }
    }
}

/// Two runs of one seed that differ ([`check_determinism`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The seed run twice.
    pub seed: u64,
    /// The index (from 0) of the first step that differs. Equal to both runs' length when
    /// every step agrees but the simulated world's events differ.
    pub step: usize,
    /// That step in the first run (`None`: the run had ended).
    pub first: Option<Box<StepReport>>,
    /// That step in the second run.
    pub second: Option<Box<StepReport>>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (seed, step) = (self.seed, self.step);
        if self.first.is_none() && self.second.is_none() {
            return write!(
                f,
                "seed {seed} is not deterministic: the {step} steps agree, but the simulated \
                 world's events differ (a choice made outside the seed: a wall clock, a thread, \
                 a hash map's order)"
            );
        }
        writeln!(f, "seed {seed} is not deterministic: step {step} differs")?;
        let show = |run: &Option<Box<StepReport>>| match run {
            Some(step) => step.to_string(),
            None => "the run had ended".to_string(),
        };
        writeln!(f, "  first run:  {}", show(&self.first))?;
        write!(f, "  second run: {}", show(&self.second))?;
        if let Some(step) = self.first.as_ref().or(self.second.as_ref()) {
            write!(
                f,
                "\nlook for what the task did differently before it waited: a read of the wall \
                 clock, a global counter, a thread id, a hash map's order ({})",
                step.name
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Divergence {}

/// Runs `body` twice on a fiber backend with `seed` ([`FiberIo::with_seed`], tracing), and
/// checks that the two runs are the same: same steps, same tasks, same suspend points, same
/// virtual times, same world events. If not, the first step that differs, with the task's
/// name, the line that spawned it and the line where each run's step left it waiting.
///
/// `body` runs the program under test on the backend it is given (`io.run(...)`).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use io_core::SpawnOptions;
///
/// static RUNS: AtomicU64 = AtomicU64::new(0);
///
/// let deterministic = io_fiber::check_determinism(7, |io| {
///     io.run(|cx| async move { cx.sleep(5).await }).unwrap();
/// });
/// assert!(deterministic.is_ok());
///
/// let divergence = io_fiber::check_determinism(7, |io| {
///     let first_time = RUNS.fetch_add(1, Ordering::Relaxed) == 0; // state outside the seed
///     io.run(move |cx| async move {
///         let task = cx.spawn_with(SpawnOptions::new().name("flaky"), move |cx| async move {
///             if first_time {
///                 cx.sleep(1).await
///             } else {
///                 cx.yield_now().await
///             }
///         });
///         task.unwrap().await
///     })
///     .unwrap();
/// })
/// .unwrap_err();
/// assert_eq!(divergence.first.unwrap().name, "flaky");
/// ```
pub fn check_determinism<F>(seed: u64, mut body: F) -> Result<(), Divergence>
where
    F: FnMut(&FiberIo),
{
    let mut run = || {
        let io = FiberIo::with_seed(seed).record_trace();
        body(&io);
        io.run_trace()
    };
    let (first, second) = (run(), run());
    first.compare(&second)
}

/// Everything a traced run did, step by step ([`FiberIo::run_trace`], a world's
/// [`WorldReport::trace`](crate::sim::WorldReport::trace)): what two runs are compared by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTrace {
    /// The seed of the run.
    pub seed: u64,
    /// Every step ([`FiberIo::trace`]).
    pub steps: Vec<TraceEvent>,
    /// Every task spawned ([`FiberIo::tasks`]).
    pub tasks: Vec<TaskInfo>,
    /// The run's [`FiberIo::trace_hash`]: its steps and its world's events.
    pub hash: u64,
    /// What happened besides the steps, in order ([`trace::Event`](crate::trace::Event)):
    /// spawns, timers, ops, cancels, faults. (Not compared: the hash covers the world.)
    pub events: Vec<crate::trace::Event>,
    /// The hosts' names, by host number (0 is the runner, `localhost`).
    pub hosts: Vec<String>,
}

impl RunTrace {
    /// The first step where `other` differs from this run, if any ([`check_determinism`]
    /// compares two runs of one seed with it).
    pub fn compare(&self, other: &RunTrace) -> Result<(), Divergence> {
        let report = |trace: &RunTrace, i: usize| {
            trace
                .steps
                .get(i)
                .map(|e| Box::new(StepReport::new(e, &trace.tasks)))
        };
        let steps = self.steps.len().max(other.steps.len());
        for step in 0..steps {
            let (a, b) = (report(self, step), report(other, step));
            if a != b {
                return Err(Divergence {
                    seed: self.seed,
                    step,
                    first: a,
                    second: b,
                });
            }
        }
        if self.hash != other.hash {
            return Err(Divergence {
                seed: self.seed,
                step: steps,
                first: None,
                second: None,
            });
        }
        Ok(())
    }
}
