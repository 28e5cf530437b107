//! The timer queue every backend keeps: deadline order, ties in arming order.

use std::collections::{BTreeMap, BTreeSet};

use crate::Park;

/// Names one armed timer, for [`Io::disarm_timer`](crate::Io::disarm_timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId {
    deadline_ms: u64,
    seq: u64,
}

impl TimerId {
    /// The deadline the timer was armed for (`u64::MAX`: never).
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }
}

/// Armed timers, ordered by `(deadline, arming order)`.
///
/// Firing hands the parks back to the caller instead of readying them here, so the backend can
/// release its borrow of the queue before any waker (and whatever its drop runs) is touched.
///
/// ```
/// use io_core::{Park, TimerQueue};
/// let mut timers = TimerQueue::new();
/// let (a, b) = (Park::new("a"), Park::new("b"));
/// let id_a = timers.arm(20, &a);
/// timers.arm(10, &b);
/// assert_eq!(timers.next_deadline(), Some(10));
/// assert_eq!(timers.disarm(id_a, 5).map(|(left, _)| left), Some(15));
/// let fired = timers.take_due(10);
/// assert!(fired[0].same_as(&b));
/// ```
#[derive(Debug, Default)]
pub struct TimerQueue {
    armed: BTreeMap<(u64, u64), Park>,
    /// Timers armed for `u64::MAX`: never fire, never count as pending, but can be disarmed.
    never: BTreeSet<u64>,
    next_seq: u64,
}

impl TimerQueue {
    /// An empty queue.
    pub fn new() -> TimerQueue {
        TimerQueue::default()
    }

    /// Arms a timer that readies `park` once the clock reaches `deadline_ms`. A deadline at or
    /// before now fires on the next turn; `u64::MAX` never fires.
    pub fn arm(&mut self, deadline_ms: u64, park: &Park) -> TimerId {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = TimerId { deadline_ms, seq };
        if deadline_ms == u64::MAX {
            self.never.insert(seq);
        } else {
            self.armed.insert((deadline_ms, seq), park.clone());
            park.note_timer(id);
        }
        id
    }

    /// Disarms a timer. Returns the time it had left (`u64::MAX` for a never-timer) and its
    /// park (`None` for a never-timer), or `None` if it already fired or was disarmed.
    pub fn disarm(&mut self, id: TimerId, now_ms: u64) -> Option<(u64, Option<Park>)> {
        if id.deadline_ms == u64::MAX {
            return self.never.remove(&id.seq).then_some((u64::MAX, None));
        }
        let park = self.armed.remove(&(id.deadline_ms, id.seq))?;
        park.forget_timer(id);
        Some((id.deadline_ms.saturating_sub(now_ms), Some(park)))
    }

    /// The earliest pending deadline (never-timers excluded).
    pub fn next_deadline(&self) -> Option<u64> {
        self.armed.keys().next().map(|&(deadline, _)| deadline)
    }

    /// Removes and returns, in firing order, the parks of every timer due at `now_ms`.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<Park> {
        let mut due = Vec::new();
        while let Some(entry) = self.armed.first_entry() {
            let (deadline_ms, seq) = *entry.key();
            if deadline_ms > now_ms {
                break;
            }
            let park = entry.remove();
            park.forget_timer(TimerId { deadline_ms, seq });
            due.push(park);
        }
        due
    }

    /// How many timers will fire (never-timers excluded).
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    /// Whether no timer will fire.
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// Removes every timer, returning their parks (to drop outside any borrow).
    pub fn clear(&mut self) -> Vec<Park> {
        self.never.clear();
        std::mem::take(&mut self.armed).into_values().collect()
    }
}
