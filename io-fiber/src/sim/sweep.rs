//! [`sweep`]: a test over many seeds, in a user's own test suite, that stops at the first
//! failing seed and says how to replay exactly that run.

use std::fmt;

/// Replays one seed: `IOSWAP_SEED=N` runs only seed `N`.
pub const SEED_VAR: &str = "IOSWAP_SEED";

/// Widens a sweep: `IOSWAP_SEEDS=K` runs seeds `0..K` instead of the test's own count (a CI
/// job sweeping 10,000 seeds, say).
pub const SEEDS_VAR: &str = "IOSWAP_SEEDS";

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
    /// How many seeds passed before it.
    pub passed: u64,
    /// What the run reported (for a [`SimError`](super::SimError): the cause, the faults it
    /// injected).
    pub report: String,
}

impl SweepFailure {
    /// The one command that replays exactly the failing run.
    pub fn replay_command(&self) -> String {
        format!(
            "{SEED_VAR}={} cargo test {} -- --exact",
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
    let name = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or("THE_TEST")
        .to_string();
    sweep_named(&name, default_seeds, run)
}

/// [`sweep`] with the test's name given (for the replay command).
pub fn sweep_named<E, F>(test: &str, default_seeds: u64, mut run: F) -> Result<u64, SweepFailure>
where
    E: fmt::Display,
    F: FnMut(u64) -> Result<(), E>,
{
    let seeds = Seeds::from_env(default_seeds).map_err(|report| SweepFailure {
        test: test.to_string(),
        seed: 0,
        passed: 0,
        report,
    })?;
    let mut passed = 0;
    for seed in seeds.iter() {
        if let Err(e) = run(seed) {
            return Err(SweepFailure {
                test: test.to_string(),
                seed,
                passed,
                report: e.to_string(),
            });
        }
        passed += 1;
    }
    Ok(passed)
}
