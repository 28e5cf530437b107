//! [`Racer`]: what [`race`](crate::race), [`race_all`](crate::race_all) and
//! [`timeout`](crate::timeout) accept — a task that already runs, or a task body they spawn.

use std::future::Future;

use io_core::{Canceled, Cx, SpawnOptions, Task};

mod sealed {
    pub trait Sealed {}
}

/// Something that can take part in a race: a [`Task<T>`] that already runs, or a task body
/// `|cx| async move { …; Ok(value) }` (the same shape [`Cx::spawn`] takes), which the race
/// spawns for you.
///
/// Racers are always tasks, because a losing racer is *canceled* — it gets `Err(Canceled)` at
/// its next suspend point and may clean up in a [`Cx::shield`] — rather than dropped mid-await.
/// A body is spawned only while the race is still undecided: on the blocking backend, where a
/// spawn runs the body inline to completion, the first body wins and the later ones never start.
///
/// A plain future races as the body `move |_| future` (it must be `'static` to be spawned).
///
/// Sealed: the two implementations are the whole story.
///
/// ```
/// use io_core::Cx;
/// use race::Racer;
///
/// io_fiber::FiberIo::new()
///     .run(|cx: Cx| async move {
///         let task = cx.spawn(|_| async { Ok(1) });
///         assert!(task.is_running());
///         let body = |cx: Cx| async move { cx.sleep(5).await?; Ok(2) };
///         assert!(!body.is_running());
///         let started = body.start(&cx); // spawned now
///         Ok(task.await? + started.await?)
///     })
///     .unwrap();
/// ```
pub trait Racer: sealed::Sealed + Sized {
    /// The value the racer finishes with.
    type Output: 'static;

    /// Whether the racer already runs (a task) rather than waiting to be spawned (a body).
    fn is_running(&self) -> bool;

    /// The racer as a running task: a task as it is, a body spawned on `cx`.
    fn start(self, cx: &Cx) -> Task<Self::Output> {
        self.start_until(cx, u64::MAX)
    }

    /// [`start`](Racer::start), with a body spawned with the deadline `deadline_ms`
    /// ([`SpawnOptions::deadline_ms`]): the task is canceled when the clock reaches it, on
    /// every backend. A task that already runs is returned as it is (`u64::MAX`: no deadline).
    ///
    /// ```
    /// use io_core::{Canceled, Cx};
    /// use race::Racer;
    ///
    /// let joined = io_fiber::FiberIo::new()
    ///     .run(|cx: Cx| async move {
    ///         let body = |cx: Cx| async move { cx.sleep(100).await?; Ok(1) };
    ///         Ok(body.start_until(&cx, 30).await)
    ///     })
    ///     .unwrap();
    /// assert_eq!(joined, Err(Canceled));
    /// ```
    fn start_until(self, cx: &Cx, deadline_ms: u64) -> Task<Self::Output>;
}

impl<T: 'static> sealed::Sealed for Task<T> {}

impl<T: 'static> Racer for Task<T> {
    type Output = T;

    fn is_running(&self) -> bool {
        true
    }

    fn start_until(self, _cx: &Cx, _deadline_ms: u64) -> Task<T> {
        self
    }
}

impl<T, F, Fut> sealed::Sealed for F
where
    F: FnOnce(Cx) -> Fut,
    Fut: Future<Output = Result<T, Canceled>> + 'static,
    T: 'static,
{
}

impl<T, F, Fut> Racer for F
where
    F: FnOnce(Cx) -> Fut,
    Fut: Future<Output = Result<T, Canceled>> + 'static,
    T: 'static,
{
    type Output = T;

    fn is_running(&self) -> bool {
        false
    }

    fn start_until(self, cx: &Cx, deadline_ms: u64) -> Task<T> {
        if deadline_ms == u64::MAX {
            return cx.spawn(self);
        }
        match cx.spawn_with(SpawnOptions::new().deadline_ms(deadline_ms), self) {
            Ok(task) => task,
            // Only a shut-down backend refuses a spawn that does not require concurrency; the
            // body was dropped unrun. What `Cx::spawn` gives then: a task born canceled.
            Err(_) => cx.spawn(|_| async { Err(Canceled) }),
        }
    }
}
