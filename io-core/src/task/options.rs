//! [`SpawnOptions`]: how a task is spawned.

use std::borrow::Cow;
use std::panic::Location;

/// How to spawn a task.
///
/// ```
/// use io_core::SpawnOptions;
/// let opts = SpawnOptions::new().name("reader").concurrent();
/// assert_eq!(opts.task_name(), Some("reader"));
/// assert!(opts.requires_concurrency());
/// ```
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    pub(super) name: Option<Cow<'static, str>>,
    pub(super) concurrent: bool,
    /// `None`: no deadline.
    pub(super) deadline_ms: Option<u64>,
    /// Where the task was spawned (`Cx::spawn`'s caller).
    pub(super) at: Option<&'static Location<'static>>,
}

impl SpawnOptions {
    /// Default options: unnamed (`task#<id>`), concurrency not required.
    pub fn new() -> SpawnOptions {
        SpawnOptions::default()
    }

    /// Names the task; the name shows in deadlock reports and panic errors.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> SpawnOptions {
        self.name = Some(name.into());
        self
    }

    /// Requires real concurrency: the spawn fails with
    /// [`SpawnError::ConcurrencyUnavailable`](crate::SpawnError::ConcurrencyUnavailable) on a
    /// backend that would run the task inline (Zig's `io.concurrent` as opposed to `io.async`).
    pub fn concurrent(mut self) -> SpawnOptions {
        self.concurrent = true;
        self
    }

    /// Gives the task a deadline on the backend's clock ([`Cx::now_ms`](crate::Cx::now_ms)):
    /// when the clock reaches `deadline_ms`, the task is canceled, exactly as by
    /// [`Task::cancel`](crate::Task::cancel) — it gets `Err(Canceled)` at its next suspend point (at once if it is
    /// waiting), and completion wins as usual. A deadline already past when the task starts
    /// cancels it at its first suspend point; `u64::MAX` (the default) is no deadline. A task
    /// that ends before its deadline leaves no timer behind. A task's deadline bounds every task
    /// it spawns (detached ones included): a child gets the earlier of its own and its
    /// spawner's, as with nested timeouts.
    ///
    /// Written once in io-core, so it holds on every backend — on blocking too, where the task
    /// runs inline: its waits happen inside the backend's loop, which fires the deadline.
    /// Applies to tasks spawned through [`Cx::spawn_with`](crate::Cx::spawn_with).
    ///
    /// ```
    /// use io_core::{Canceled, Cx, SpawnOptions};
    ///
    /// let (late, early, at) = io_fiber::FiberIo::new()
    ///     .run(|cx: Cx| async move {
    ///         let opts = SpawnOptions::new().deadline_ms(cx.now_ms() + 50);
    ///         let late = cx.spawn_with(opts.clone(), |cx| async move {
    ///             cx.sleep(90).await?;
    ///             Ok("slept") // never reached: canceled at t = 50
    ///         });
    ///         let late = late.unwrap().await;
    ///         let at = cx.now_ms();
    ///         let early = cx.spawn_with(opts.deadline_ms(at + 50), |cx| async move {
    ///             cx.sleep(10).await?;
    ///             Ok("in time")
    ///         });
    ///         Ok((late, early.unwrap().await, at))
    ///     })
    ///     .unwrap();
    /// assert_eq!(late, Err(Canceled));
    /// assert_eq!(at, 50);
    /// assert_eq!(early, Ok("in time"));
    /// ```
    pub fn deadline_ms(mut self, deadline_ms: u64) -> SpawnOptions {
        self.deadline_ms = (deadline_ms != u64::MAX).then_some(deadline_ms);
        self
    }

    /// Records where the task is spawned from; [`Cx::spawn`](crate::Cx::spawn) and
    /// [`Cx::spawn_with`](crate::Cx::spawn_with) set their caller's location (a backend's
    /// determinism report names it).
    ///
    /// ```
    /// use io_core::SpawnOptions;
    /// let opts = SpawnOptions::new().spawned_at(std::panic::Location::caller());
    /// assert_eq!(opts.location().unwrap().file(), file!());
    /// ```
    pub fn spawned_at(mut self, at: &'static Location<'static>) -> SpawnOptions {
        self.at = Some(at);
        self
    }

    /// Where the task was spawned from, if known.
    pub fn location(&self) -> Option<&'static Location<'static>> {
        self.at
    }

    /// The deadline given, or `u64::MAX` for none.
    pub fn task_deadline_ms(&self) -> u64 {
        self.deadline_ms.unwrap_or(u64::MAX)
    }

    /// The name given, if any.
    pub fn task_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether the spawn requires real concurrency.
    pub fn requires_concurrency(&self) -> bool {
        self.concurrent
    }
}
