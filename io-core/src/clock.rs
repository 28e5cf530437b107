//! [`RealClock`]: the millisecond clock of the backends that run on real time.

use std::time::{Duration, Instant};

/// Milliseconds since a backend started, on the monotonic clock. It never reads `u64::MAX`,
/// which to timers means "never".
///
/// ```
/// use io_core::RealClock;
/// let clock = RealClock::start();
/// assert!(clock.now_ms() < 1_000);
/// assert!(clock.instant_at(10) > clock.instant_at(0));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RealClock {
    epoch: Instant,
}

impl RealClock {
    /// A clock reading 0 now.
    pub fn start() -> RealClock {
        RealClock {
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since [`RealClock::start`].
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// The instant at which the clock reads `ms`.
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }
}
