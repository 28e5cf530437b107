//! User-side time: [`Sleep`], the future of [`Cx::sleep`](crate::Cx::sleep). The timers it arms
//! live in the backend's [`TimerQueue`](crate::TimerQueue); `timeout` and `interval`, written over
//! sleeps and races, are in the `race` crate, and the facade gathers all of them in
//! `ioswap::time`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

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
}

enum SleepState {
    Unarmed,
    Armed(Park, TimerId),
    Done,
}

impl Sleep {
    pub(crate) fn new(io: Rc<dyn Io>, deadline_ms: u64) -> Sleep {
        Sleep {
            io,
            deadline_ms,
            state: SleepState::Unarmed,
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
            let park = Park::new("sleep");
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
