//! [`interval`]: ticks every `period_ms`, with an explicit policy for ticks that were missed.

use io_core::{Canceled, Cx};

/// What an [`Interval`] does when a tick is *missed*: delivered so late that the next tick is
/// already due (the caller was busy for a period or more).
///
/// With a period of 10 ms and a caller busy from t = 10 until t = 35, the ticks are delivered
/// (scheduled time @ delivery time):
///
/// | policy | ticks |
/// |---|---|
/// | `Burst` | 0@0 10@10 20@35 30@35 40@40 50@50 |
/// | `Delay` | 0@0 10@10 20@35 45@45 55@55 |
/// | `Skip`  | 0@0 10@10 20@35 40@40 50@50 |
///
/// ```
/// use race::MissedTicks;
/// assert_ne!(MissedTicks::Burst, MissedTicks::Skip);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MissedTicks {
    /// Keep the original schedule and deliver every missed tick, back to back (one per turn),
    /// until caught up. For counting: no tick is ever lost.
    Burst,
    /// Restart the schedule from the late tick: the next one is a full period after it was
    /// delivered. For spacing: never two ticks closer than a period after a stall.
    Delay,
    /// Keep the original schedule's phase but drop the missed ticks: the next tick is the first
    /// one of the original schedule still in the future. For sampling: only fresh ticks.
    Skip,
}

/// Ticks at `start + k * period` — see [`interval`].
///
/// ```
/// use race::{interval, MissedTicks};
///
/// let ticks = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let mut every_5 = interval(&cx, 5, MissedTicks::Skip);
///         let mut ticks = Vec::new();
///         for _ in 0..3 {
///             ticks.push(every_5.tick().await?);
///         }
///         Ok(ticks)
///     })
///     .unwrap();
/// assert_eq!(ticks, [0, 5, 10]);
/// ```
#[derive(Debug, Clone)]
pub struct Interval {
    cx: Cx,
    period_ms: u64,
    missed: MissedTicks,
    next_ms: u64,
}

/// A metronome: the first [`tick`](Interval::tick) completes at once (on the next turn), then one
/// every `period_ms` on the backend's clock; `missed` says what happens when the caller falls a
/// period or more behind (see [`MissedTicks`]). Each tick is a suspend point: a canceled task gets
/// `Err(Canceled)` from it, and that tick is not consumed.
///
/// # Panics
///
/// If `period_ms` is 0.
///
/// ```
/// use race::{interval, MissedTicks};
///
/// let ticks = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let mut every_10 = interval(&cx, 10, MissedTicks::Burst);
///         let mut ticks = Vec::new();
///         for i in 0..5 {
///             let scheduled = every_10.tick().await?;
///             ticks.push(format!("{scheduled}@{}", cx.now_ms()));
///             if i == 1 {
///                 cx.sleep(25).await?; // busy: the ticks at 20 and 30 are missed
///             }
///         }
///         Ok(ticks.join(" "))
///     })
///     .unwrap();
/// assert_eq!(ticks, "0@0 10@10 20@35 30@35 40@40");
/// ```
pub fn interval(cx: &Cx, period_ms: u64, missed: MissedTicks) -> Interval {
    interval_at(cx, cx.now_ms(), period_ms, missed)
}

/// [`interval`] whose first tick is at `first_ms` on the backend's clock rather than now.
///
/// # Panics
///
/// If `period_ms` is 0.
///
/// ```
/// use race::{interval_at, MissedTicks};
///
/// let first = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let mut ticks = interval_at(&cx, 100, 10, MissedTicks::Delay);
///         Ok((ticks.tick().await?, cx.now_ms()))
///     })
///     .unwrap();
/// assert_eq!(first, (100, 100));
/// ```
pub fn interval_at(cx: &Cx, first_ms: u64, period_ms: u64, missed: MissedTicks) -> Interval {
    assert!(period_ms > 0, "an interval's period must be at least 1 ms");
    Interval {
        cx: cx.clone(),
        period_ms,
        missed,
        next_ms: first_ms,
    }
}

impl Interval {
    /// Waits for the next tick and returns the time it was scheduled for (which, for a late
    /// tick, is earlier than now). `Err(Canceled)` if the caller is canceled; the tick is then
    /// still due.
    ///
    /// ```
    /// use race::{interval, MissedTicks};
    ///
    /// let at = io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let mut ticks = interval(&cx, 7, MissedTicks::Delay);
    ///         ticks.tick().await?;
    ///         ticks.tick().await?;
    ///         Ok(cx.now_ms())
    ///     })
    ///     .unwrap();
    /// assert_eq!(at, 7);
    /// ```
    pub async fn tick(&mut self) -> Result<u64, Canceled> {
        let scheduled = self.next_ms;
        self.cx.sleep_until(scheduled).await?;
        let now = self.cx.now_ms();
        let on_schedule = scheduled.saturating_add(self.period_ms);
        self.next_ms = if now < on_schedule {
            on_schedule
        } else {
            match self.missed {
                MissedTicks::Burst => on_schedule,
                MissedTicks::Delay => now.saturating_add(self.period_ms),
                MissedTicks::Skip => {
                    let periods_behind = (now - scheduled) / self.period_ms;
                    scheduled.saturating_add(self.period_ms.saturating_mul(periods_behind + 1))
                }
            }
        };
        Ok(scheduled)
    }

    /// The period in milliseconds.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// assert_eq!(race::interval(&cx, 25, race::MissedTicks::Burst).period_ms(), 25);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// The missed-tick policy.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// use race::{interval, MissedTicks};
    /// assert_eq!(interval(&cx, 25, MissedTicks::Skip).missed_ticks(), MissedTicks::Skip);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn missed_ticks(&self) -> MissedTicks {
        self.missed
    }

    /// When the next tick is scheduled, on the backend's clock.
    ///
    /// ```
    /// # io_fiber::FiberIo::new().run(|cx| async move {
    /// let mut ticks = race::interval(&cx, 25, race::MissedTicks::Burst);
    /// assert_eq!(ticks.next_tick_ms(), 0);
    /// ticks.tick().await?;
    /// assert_eq!(ticks.next_tick_ms(), 25);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn next_tick_ms(&self) -> u64 {
        self.next_ms
    }
}
