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
/// Timers are grouped by deadline: an ordered map from each pending deadline to the bucket of
/// timers armed for it, in arming order. Arming finds (or opens) one bucket and appends; the
/// next deadline is the first key; firing takes whole buckets from the front. Disarming finds
/// the bucket by the id's deadline and the timer in it by binary search on its arming sequence
/// number (buckets are sorted by it), and leaves an empty entry that firing skips; a bucket
/// whose timers are all disarmed is removed, and one that is mostly empty entries is compacted.
/// Emptied buckets' vectors are kept for reuse. (It replaced one `BTreeMap` entry per timer,
/// whose million-entry tree made arming and firing a walk through cold memory: `bench/`'s
/// timers and cancel-storm workloads.)
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
    buckets: BTreeMap<u64, Bucket>,
    /// Timers armed for `u64::MAX`: never fire, never count as pending, but can be disarmed.
    never: BTreeSet<u64>,
    /// Timers that will fire (never-timers excluded).
    armed: usize,
    next_seq: u64,
    /// Vectors of removed buckets, for new ones.
    spare: Vec<Vec<(u64, Option<Park>)>>,
}

/// The timers of one deadline: `(arming sequence number, park)` in arming order; a disarmed
/// timer's park is `None`.
#[derive(Debug, Default)]
struct Bucket {
    timers: Vec<(u64, Option<Park>)>,
    /// Entries whose park is still there.
    armed: usize,
}

/// How many spare bucket vectors to keep, and the largest capacity worth keeping (a bucket that
/// once held a million timers gives its memory back).
const SPARE_BUCKETS: usize = 64;
const SPARE_CAPACITY: usize = 1024;

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
        if deadline_ms == u64::MAX {
            self.never.insert(seq);
        } else {
            let spare = &mut self.spare;
            let bucket = self.buckets.entry(deadline_ms).or_insert_with(|| Bucket {
                timers: spare.pop().unwrap_or_default(),
                armed: 0,
            });
            bucket.timers.push((seq, Some(park.clone())));
            bucket.armed += 1;
            self.armed += 1;
        }
        TimerId { deadline_ms, seq }
    }

    /// Disarms a timer. Returns the time it had left (`u64::MAX` for a never-timer) and its
    /// park (`None` for a never-timer), or `None` if it already fired or was disarmed.
    pub fn disarm(&mut self, id: TimerId, now_ms: u64) -> Option<(u64, Option<Park>)> {
        if id.deadline_ms == u64::MAX {
            return self.never.remove(&id.seq).then_some((u64::MAX, None));
        }
        let bucket = self.buckets.get_mut(&id.deadline_ms)?;
        let index = bucket
            .timers
            .binary_search_by_key(&id.seq, |&(seq, _)| seq)
            .ok()?;
        let park = bucket.timers[index].1.take()?;
        bucket.armed -= 1;
        self.armed -= 1;
        if bucket.armed == 0 {
            let bucket = self.buckets.remove(&id.deadline_ms).expect("found above");
            self.recycle(bucket.timers);
        } else if bucket.timers.len() > 2 * bucket.armed + 16 {
            bucket.timers.retain(|(_, park)| park.is_some());
        }
        Some((id.deadline_ms.saturating_sub(now_ms), Some(park)))
    }

    fn recycle(&mut self, mut timers: Vec<(u64, Option<Park>)>) {
        if self.spare.len() < SPARE_BUCKETS && timers.capacity() <= SPARE_CAPACITY {
            timers.clear();
            self.spare.push(timers);
        }
    }

    /// The earliest pending deadline (never-timers excluded).
    pub fn next_deadline(&self) -> Option<u64> {
        self.buckets.keys().next().copied()
    }

    /// Removes and returns, in firing order, the parks of every timer due at `now_ms`.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<Park> {
        let mut due = Vec::new();
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            let mut bucket = entry.remove();
            self.armed -= bucket.armed;
            due.reserve(bucket.armed);
            due.extend(bucket.timers.drain(..).filter_map(|(_, park)| park));
            self.recycle(bucket.timers);
        }
        due
    }

    /// How many timers will fire (never-timers excluded).
    pub fn len(&self) -> usize {
        self.armed
    }

    /// Whether no timer will fire.
    pub fn is_empty(&self) -> bool {
        self.armed == 0
    }

    /// Removes every timer, returning their parks (to drop outside any borrow).
    pub fn clear(&mut self) -> Vec<Park> {
        self.never.clear();
        self.spare.clear();
        self.armed = 0;
        std::mem::take(&mut self.buckets)
            .into_values()
            .flat_map(|bucket| bucket.timers)
            .filter_map(|(_, park)| park)
            .collect()
    }
}
