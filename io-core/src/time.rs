//! User-side time: [`Sleep`], the future of [`Cx::sleep`](crate::Cx::sleep). The timers it arms
//! live in the backend's [`TimerQueue`](crate::TimerQueue); `timeout` and `interval`, written over
//! sleeps and races, are in the `race` crate, and the facade gathers all of them in
//! `ioswap::time`.

use std::fmt;
use std::future::Future;
use std::ops::{Add, Sub};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::task;
use crate::{Canceled, Io, Park, TimerId};

/// The future of [`Cx::sleep`](crate::Cx::sleep) and [`Cx::sleep_until`](crate::Cx::sleep_until).
/// Dropping it disarms its timer.
///
/// Completion wins: if the timer fired before the task observed a cancel, the sleep returns
/// `Ok(())` and the cancel arrives at the next suspend point.
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    io: Rc<dyn Io>,
    deadline_ms: u64,
    state: SleepState,
    /// Where the sleep was asked for (its park's location).
    at: &'static std::panic::Location<'static>,
}

enum SleepState {
    Unarmed,
    Armed(Park, TimerId),
    Done,
}

impl Sleep {
    #[track_caller]
    pub(crate) fn new(io: Rc<dyn Io>, deadline_ms: u64) -> Sleep {
        Sleep {
            io,
            deadline_ms,
            state: SleepState::Unarmed,
            at: std::panic::Location::caller(),
        }
    }

    /// The deadline this sleep waits for.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }
}

impl Future for Sleep {
    type Output = Result<(), Canceled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let SleepState::Unarmed = this.state {
            // Raise before arming anything: a canceled task leaves no timer behind.
            if task::cancel_pending() {
                this.state = SleepState::Done;
                return Poll::Ready(Err(Canceled));
            }
            let park = Park::new_at("sleep", this.at);
            let timer = this.io.arm_timer(this.deadline_ms, &park);
            this.state = SleepState::Armed(park, timer);
        }
        let SleepState::Armed(park, _) = &this.state else {
            return Poll::Ready(Ok(())); // polled again after it returned: still done
        };
        let result = match this.io.suspend_raw(park, cx) {
            Poll::Pending => return Poll::Pending,
            // Only the timer readies this park: if it is ready, the sleep completed before the
            // cancel was observed, and completion wins.
            Poll::Ready(Err(Canceled)) if park.is_ready() => Ok(()),
            Poll::Ready(result) => result,
        };
        // The timer fired, or `suspend_raw` evicted it on cancel: nothing is left to disarm.
        this.state = SleepState::Done;
        Poll::Ready(result)
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let SleepState::Armed(_, timer) = self.state {
            self.io.disarm_timer(timer);
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline_ms", &self.deadline_ms)
            .finish()
    }
}

/// A point on a backend's clock: milliseconds since the backend started, virtual on fiber (so
/// not `std::time::Instant`, which only a real clock has). [`Cx::now`](crate::Cx::now) reads it;
/// [`Cx::sleep_until`](crate::Cx::sleep_until) waits for it. Arithmetic with [`Duration`]
/// saturates: the far end, `Instant::NEVER`, is a deadline that never comes. Durations are
/// rounded up to whole milliseconds, so a sleep never ends early.
///
/// ```
/// use std::time::Duration;
/// use io_core::Instant;
/// let t = Instant::from_ms(1_000);
/// assert_eq!(t + Duration::from_micros(1), Instant::from_ms(1_001)); // rounded up
/// assert_eq!((t + Duration::from_secs(2)) - t, Duration::from_secs(2));
/// assert_eq!(t - (t + Duration::from_secs(1)), Duration::ZERO); // saturating
/// assert_eq!(t + Duration::MAX, Instant::NEVER);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    ms: u64,
}

impl Instant {
    /// The deadline that never comes.
    pub const NEVER: Instant = Instant { ms: u64::MAX };

    /// The instant `ms` milliseconds after the backend's start.
    pub const fn from_ms(ms: u64) -> Instant {
        Instant { ms }
    }

    /// Milliseconds since the backend's start.
    pub const fn as_ms(self) -> u64 {
        self.ms
    }

    /// How long after `earlier` this is (zero if it is not later).
    pub fn duration_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.ms.saturating_sub(earlier.ms))
    }

    /// `self + d`, or `None` past the clock's end.
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        self.ms.checked_add(ms_rounded_up(d)?).map(Instant::from_ms)
    }
}

/// A whole number of milliseconds, rounded up; `None` past `u64::MAX`.
pub(crate) fn ms_rounded_up(d: Duration) -> Option<u64> {
    let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
    u64::try_from(ms).ok()
}

/// Milliseconds on the backend's clock, as the millisecond API takes them.
impl From<u64> for Instant {
    fn from(ms: u64) -> Instant {
        Instant::from_ms(ms)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, d: Duration) -> Instant {
        self.checked_add(d).unwrap_or(Instant::NEVER)
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the backend's start.
    fn sub(self, d: Duration) -> Instant {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Instant::from_ms(self.ms.saturating_sub(ms))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    fn sub(self, earlier: Instant) -> Duration {
        self.duration_since(earlier)
    }
}
