//! [`timeout`] and [`timeout_at`]: a race between one racer and a deadline.

use io_core::{Canceled, Cx};

use crate::lane::Slot;
use crate::settle::{settle, Outcome};
use crate::Racer;

/// The deadline passed before the racer finished; the racer was canceled and joined.
///
/// ```
/// use race::Elapsed;
/// let e = Elapsed { deadline_ms: 250 };
/// assert_eq!(e.to_string(), "the deadline (t = 250 ms) passed before the work finished; it was canceled");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("the deadline (t = {deadline_ms} ms) passed before the work finished; it was canceled")]
pub struct Elapsed {
    /// The deadline that passed, on the backend's clock.
    pub deadline_ms: u64,
}

/// Runs `racer` for at most `ms` milliseconds: `Ok(Ok(value))` if it finished in time,
/// `Ok(Err(Elapsed))` if the deadline passed first, `Err(Canceled)` if the caller was canceled
/// (or the racer ended canceled on its own). The outer `Result` is the caller's cancellation, so
/// `timeout(..).await?` propagates it and leaves the question "did it finish in time?".
///
/// This is [`race`](crate::race) between the racer and a timer, with the same guarantees:
///
/// - **Nothing outlives it.** On a timeout the racer is canceled and joined before `timeout`
///   returns; it gets `Err(Canceled)` at its suspend point and may clean up in a shield.
/// - **Completion wins.** A racer that completes in the same turn as the deadline fires — or
///   while it is being canceled — returns `Ok(Ok(value))`, never `Elapsed`.
/// - **If the caller is canceled**, the racer is canceled and joined (shielded), then `timeout`
///   returns `Err(Canceled)`, unless the racer completed. A caller canceled before `timeout`
///   never starts a body.
/// - **A panic** in the racer resumes in the caller after the racer has ended.
/// - **On every backend, blocking included.** A body is spawned with the deadline
///   ([`SpawnOptions::deadline_ms`](io_core::SpawnOptions::deadline_ms)), so it is canceled when
///   the clock reaches it even where it runs inline (blocking: its waits happen in the backend's
///   loop, which fires the deadline). A [`Task`](io_core::Task) passed in is canceled by the race
///   as before; on blocking it has finished by then.
///
/// ```
/// use io_core::Cx;
/// use race::{timeout, Elapsed};
///
/// let (fast, slow, at) = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let fast = timeout(&cx, 50, |cx: Cx| async move { cx.sleep(10).await?; Ok("fast") }).await?;
///         let slow = timeout(&cx, 50, |cx: Cx| async move { cx.sleep(90).await?; Ok("slow") }).await?;
///         Ok((fast, slow, cx.now_ms()))
///     })
///     .unwrap();
/// assert_eq!(fast, Ok("fast"));
/// assert_eq!(slow, Err(Elapsed { deadline_ms: 60 })); // 10 ms in, plus 50
/// assert_eq!(at, 60);
/// ```
pub async fn timeout<R: Racer>(
    cx: &Cx,
    ms: u64,
    racer: R,
) -> Result<Result<R::Output, Elapsed>, Canceled> {
    timeout_at(cx, cx.now_ms().saturating_add(ms), racer).await
}

/// [`timeout`] with an absolute deadline on the backend's clock ([`Cx::now_ms`]); `u64::MAX`
/// never elapses. A deadline already past still starts a body, which runs up to its first
/// suspend point and is canceled there (a task passed in gets one more turn: the race's timer
/// fires on the next turn, and the racer gets the rest of that turn).
///
/// ```
/// use io_core::Cx;
/// use race::{timeout_at, Elapsed};
///
/// let results = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let deadline = cx.now_ms() + 100;
///         let mut results = Vec::new();
///         for ms in [40, 40, 40] {
///             // Three steps share one deadline: the third would end at t = 120.
///             results.push(timeout_at(&cx, deadline, move |cx: Cx| async move {
///                 cx.sleep(ms).await?;
///                 Ok(cx.now_ms())
///             })
///             .await?);
///         }
///         Ok(results)
///     })
///     .unwrap();
/// assert_eq!(results, [Ok(40), Ok(80), Err(Elapsed { deadline_ms: 100 })]);
/// ```
pub async fn timeout_at<R: Racer>(
    cx: &Cx,
    deadline_ms: u64,
    racer: R,
) -> Result<Result<R::Output, Elapsed>, Canceled> {
    let body = !racer.is_running();
    // A body is spawned with the deadline, so it is canceled there even on a backend that runs
    // it inline (blocking), where the race below never gets to look at the clock before the
    // body has ended.
    let mut slot = Slot::with_deadline(cx, racer, deadline_ms);
    match settle(cx, &mut [&mut slot], Some(deadline_ms)).await {
        Outcome::Won(_) => Ok(Ok(slot.take().expect("the winner holds its value"))),
        Outcome::Elapsed => Ok(Err(Elapsed { deadline_ms })),
        // The body ended canceled by its deadline, not by the caller's cancellation.
        Outcome::Canceled if body && cx.check_cancel().is_ok() && cx.now_ms() >= deadline_ms => {
            Ok(Err(Elapsed { deadline_ms }))
        }
        Outcome::Canceled => Err(Canceled),
    }
}
