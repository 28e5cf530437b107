//! [`sweep`]: a test over many seeds, in a user's own test suite, that stops at the first
//! failing seed and says how to replay exactly that run.

use std::fmt;

use crate::Scheduler;

/// Replays one seed: `IOSWAP_SEED=N` runs only seed `N`.
pub const SEED_VAR: &str = "IOSWAP_SEED";

/// Widens a sweep: `IOSWAP_SEEDS=K` runs seeds `0..K` instead of the test's own count (a CI
/// job sweeping 10,000 seeds, say).
pub const SEEDS_VAR: &str = "IOSWAP_SEEDS";

/// Chooses the scheduler of a [`sweep_with`]: `random` (the default), `walk`, or `pct:D:K`
/// (see [`Scheduler::parse`]). Only the sweep harness reads it.
pub const SCHEDULER_VAR: &str = "IOSWAP_SCHEDULER";

/// The scheduler `IOSWAP_SCHEDULER` names ([`Scheduler::Random`] when unset). A value that
/// names no scheduler is an error, not silently ignored.
pub fn scheduler_from_env() -> Result<Scheduler, String> {
    match std::env::var(SCHEDULER_VAR) {
        Ok(value) => Scheduler::parse(&value).ok_or_else(|| {
            format!(
                "{SCHEDULER_VAR}={value:?} names no scheduler: use random, walk or pct:DEPTH:STEPS"
            )
        }),
        Err(std::env::VarError::NotPresent) => Ok(Scheduler::Random),
        Err(e) => Err(format!("{SCHEDULER_VAR}: {e}")),
    }
}

/// The seeds a sweep runs, as the environment and the test's default decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeds {
    /// Exactly one seed (`IOSWAP_SEED`): a replay.
    One(u64),
    /// Seeds `0..n`.
    Range(u64),
}

impl Seeds {
    /// The seeds for a sweep whose own count is `default`: `IOSWAP_SEED` if set (a replay),
    /// else `IOSWAP_SEEDS`, else `default`. A variable that is set but not a number is an
    /// error, not silently ignored.
    pub fn from_env(default: u64) -> Result<Seeds, String> {
        let read = |name: &str| -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Ok(value) => value
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}={value:?} is not a number")),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(e) => Err(format!("{name}: {e}")),
            }
        };
        Ok(match (read(SEED_VAR)?, read(SEEDS_VAR)?) {
            (Some(seed), _) => Seeds::One(seed),
            (None, Some(n)) => Seeds::Range(n),
            (None, None) => Seeds::Range(default),
        })
    }

    fn iter(self) -> impl Iterator<Item = u64> {
        let (start, end) = match self {
            Seeds::One(seed) => (seed, seed.saturating_add(1)),
            Seeds::Range(n) => (0, n),
        };
        start..end
    }
}

/// The first failing seed of a sweep, with how to replay it.
#[derive(Debug)]
pub struct SweepFailure {
    /// The test, as `cargo test` names it.
    pub test: String,
    /// The failing seed.
    pub seed: u64,
    /// The scheduler the sweep ran with.
    pub scheduler: Scheduler,
    /// How many seeds passed before it.
    pub passed: u64,
    /// What the run reported (for a [`SimError`](super::SimError): the cause, the faults it
    /// injected).
    pub report: String,
}

impl SweepFailure {
    /// The one command that replays exactly the failing run.
    pub fn replay_command(&self) -> String {
        let scheduler = match self.scheduler.env_name() {
            Some(name) if self.scheduler != Scheduler::Random => {
                format!("{SCHEDULER_VAR}={name} ")
            }
            _ => String::new(),
        };
        format!(
            "{scheduler}{SEED_VAR}={} cargo test {} -- --exact",
            self.seed, self.test
        )
    }
}

impl fmt::Display for SweepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: seed {} failed (after {} passing seeds)",
            self.test, self.seed, self.passed
        )?;
        writeln!(f, "{}", self.report.trim_end())?;
        write!(f, "replay exactly this run: {}", self.replay_command())
    }
}

impl std::error::Error for SweepFailure {}

/// Runs `run` once per seed — `0..default_seeds`, or what `IOSWAP_SEEDS` / `IOSWAP_SEED` say —
/// and stops at the first seed whose run fails, with that seed, the run's report (a
/// [`SimError`](super::SimError) names the faults it injected) and the one command that replays
/// exactly that run. Returns how many seeds passed.
///
/// The test's name for the replay command is taken from the thread `cargo test` runs it on
/// (libtest names each test's thread after the test); outside a test, pass the name with
/// [`sweep_named`].
///
/// ```
/// use io_fiber::sim::{sweep_named, World};
///
/// // A workload that fails on seeds divisible by 7.
/// let outcome = sweep_named("doc_sweep", 20, |seed| {
///     World::new(seed)
///         .client("check", move |_cx, _world| async move {
///             assert!(seed % 7 != 0 || seed == 0, "seed {seed} breaks the invariant");
///             Ok(())
///         })
///         .run()
///         .map(drop)
/// });
/// let failure = outcome.unwrap_err();
/// assert_eq!((failure.seed, failure.passed), (7, 7));
/// assert_eq!(failure.replay_command(), "IOSWAP_SEED=7 cargo test doc_sweep -- --exact");
/// ```
pub fn sweep<E, F>(default_seeds: u64, run: F) -> Result<u64, SweepFailure>
where
    E: fmt::Display,
    F: FnMut(u64) -> Result<(), E>,
{
    sweep_named(&test_name(), default_seeds, run)
}

/// [`sweep`] with the test's name given (for the replay command).
///
/// `IOSWAP_SCHEDULER` is for sweeps that take a scheduler ([`sweep_with`]): set to anything
/// but `random` here, it fails the sweep rather than being ignored.
pub fn sweep_named<E, F>(test: &str, default_seeds: u64, mut run: F) -> Result<u64, SweepFailure>
where
    E: fmt::Display,
    F: FnMut(u64) -> Result<(), E>,
{
    if let Ok(value) = std::env::var(SCHEDULER_VAR) {
        if Scheduler::parse(&value) != Some(Scheduler::Random) {
            return Err(SweepFailure {
                test: test.to_string(),
                seed: 0,
                scheduler: Scheduler::Random,
                passed: 0,
                report: format!(
                    "{SCHEDULER_VAR}={value:?} is set, but this sweep runs its own scheduler: \
                     take the scheduler with sim::sweep_with and pass it to the world"
                ),
            });
        }
    }
    sweep_named_with(test, default_seeds, |seed, _| run(seed))
}

/// A [`sweep`] whose runs take a scheduler: `IOSWAP_SCHEDULER`'s ([`scheduler_from_env`]),
/// [`Scheduler::Random`] when unset, for the run to pass on
/// ([`World::scheduler`](super::World::scheduler),
/// [`FiberIo::with_scheduler`](crate::FiberIo::with_scheduler)). A failure's replay command
/// names it.
///
/// ```
/// use io_fiber::sim::{sweep_named_with, World};
///
/// let passed = sweep_named_with("doc_sweep_with", 5, |seed, scheduler| {
///     World::new(seed)
///         .scheduler(scheduler.clone())
///         .client("check", |cx, _world| async move {
///             cx.yield_now().await?;
///             Ok(())
///         })
///         .run()
///         .map(drop)
/// });
/// assert_eq!(passed.unwrap(), 5);
/// ```
pub fn sweep_with<E, F>(default_seeds: u64, run: F) -> Result<u64, SweepFailure>
where
    E: fmt::Display,
    F: FnMut(u64, &Scheduler) -> Result<(), E>,
{
    sweep_named_with(&test_name(), default_seeds, run)
}

/// [`sweep_with`] with the test's name given (for the replay command).
pub fn sweep_named_with<E, F>(
    test: &str,
    default_seeds: u64,
    mut run: F,
) -> Result<u64, SweepFailure>
where
    E: fmt::Display,
    F: FnMut(u64, &Scheduler) -> Result<(), E>,
{
    let failure = |seed, scheduler: &Scheduler, passed, report| SweepFailure {
        test: test.to_string(),
        seed,
        scheduler: scheduler.clone(),
        passed,
        report,
    };
    let scheduler = scheduler_from_env().map_err(|r| failure(0, &Scheduler::Random, 0, r))?;
    let seeds = Seeds::from_env(default_seeds).map_err(|r| failure(0, &scheduler, 0, r))?;
    let mut passed = 0;
    for seed in seeds.iter() {
        if let Err(e) = run(seed, &scheduler) {
            return Err(failure(seed, &scheduler, passed, e.to_string()));
        }
        passed += 1;
    }
    Ok(passed)
}

/// The running test's name, as libtest names its thread.
fn test_name() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or("THE_TEST")
        .to_string()
}
