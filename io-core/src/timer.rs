//! The timer queue every backend keeps: deadline order, ties in arming order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Park;

/// Names one armed timer, for [`Io::disarm_timer`](crate::Io::disarm_timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId {
    deadline_ms: u64,
    seq: u64,
    /// Which queue armed it: an id from another backend disarms nothing here.
    queue: u64,
}

impl TimerId {
    /// No timer: what a park without armed timers holds (no timer gets this sequence number).
    pub(crate) const NONE: TimerId = TimerId {
        deadline_ms: u64::MAX,
        seq: u64::MAX,
        queue: u64::MAX,
    };

    /// No timer, as a park keeps it: all zeros, so that a new park is cheap to write (no queue
    /// has the stamp 0).
    pub(crate) const EMPTY: TimerId = TimerId {
        deadline_ms: 0,
        seq: 0,
        queue: 0,
    };

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
/// Buckets live in a slab, reused with their capacity; a small direct-mapped table of recently
/// used deadlines finds a deadline's bucket without walking the map, which is the common case
/// (many timers share a millisecond). (It replaced one `BTreeMap` entry per timer, whose
/// million-entry tree made arming and firing a walk through cold memory: `bench/`'s timers,
/// cancel-storm and virtual-time workloads.)
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
#[derive(Debug)]
pub struct TimerQueue {
    /// Each pending deadline and the index of its bucket in `buckets`.
    deadlines: BTreeMap<u64, u32>,
    /// The buckets; those listed in `free` are empty and unused.
    buckets: Vec<Bucket>,
    free: Vec<u32>,
    /// `(deadline, bucket)` of recently used deadlines, at `deadline % RECENT`; `u64::MAX`
    /// (never a bucket's deadline) marks an empty entry. Allocated on first use.
    recent: Vec<(u64, u32)>,
    /// Timers armed for `u64::MAX`: never fire, never count as pending, but can be disarmed.
    never: BTreeSet<u64>,
    /// Timers that will fire (never-timers excluded).
    armed: usize,
    next_seq: u64,
    /// This queue's stamp in the ids it hands out (process-unique; never part of a schedule).
    stamp: u64,
}

/// The timers of one deadline: `(arming sequence number, park)` in arming order; a disarmed
/// timer's park is `None`.
#[derive(Debug, Default)]
struct Bucket {
    timers: Vec<(u64, Option<Park>)>,
    /// Entries whose park is still there.
    armed: usize,
}

/// Entries of the recent-deadlines table (a power of two: a second of distinct milliseconds).
const RECENT: usize = 1024;

/// The largest capacity a freed bucket keeps (one that once held a million timers gives its
/// memory back).
const BUCKET_KEEP: usize = 1024;

/// Where the timer with sequence number `seq` is in a bucket (sorted by sequence number), if it
/// is there. Sequence numbers in a bucket are often consecutive (timers armed together for one
/// deadline, disarmed in the same order), so the guess by interpolation usually hits, touching
/// one entry where a binary search over a big bucket walks through cold memory (cancel-storm in
/// `bench/`); otherwise it falls back to a binary search.
fn position(timers: &[(u64, Option<Park>)], seq: u64) -> Option<usize> {
    let (first, last) = (timers.first()?.0, timers.last()?.0);
    if seq < first || seq > last {
        return None;
    }
    let span = u128::from((last - first).max(1));
    let guess = (u128::from(seq - first) * (timers.len() as u128 - 1) / span) as usize;
    if timers.get(guess).is_some_and(|&(at, _)| at == seq) {
        return Some(guess);
    }
    timers.binary_search_by_key(&seq, |&(at, _)| at).ok()
}

impl TimerQueue {
    /// An empty queue.
    pub fn new() -> TimerQueue {
        // From 1: the stamp 0 is `TimerId::EMPTY`'s.
        static STAMPS: AtomicU64 = AtomicU64::new(1);
        TimerQueue {
            deadlines: BTreeMap::new(),
            buckets: Vec::new(),
            free: Vec::new(),
            recent: Vec::new(),
            never: BTreeSet::new(),
            armed: 0,
            next_seq: 0,
            stamp: STAMPS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Arms a timer that readies `park` once the clock reaches `deadline_ms`. A deadline at or
    /// before now fires on the next turn; `u64::MAX` never fires.
    pub fn arm(&mut self, deadline_ms: u64, park: &Park) -> TimerId {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = TimerId {
            deadline_ms,
            seq,
            queue: self.stamp,
        };
        if deadline_ms == u64::MAX {
            self.never.insert(seq);
            // Noted too, so that a canceled suspend evicts it like any other timer.
            park.note_timer(id);
        } else {
            let index = self.bucket_for(deadline_ms);
            let bucket = &mut self.buckets[index as usize];
            bucket.timers.push((seq, Some(park.clone())));
            bucket.armed += 1;
            self.armed += 1;
            park.note_timer(id);
        }
        id
    }

    /// The bucket of `deadline_ms`, opened if there is none.
    fn bucket_for(&mut self, deadline_ms: u64) -> u32 {
        if let Some(index) = self.recent_bucket(deadline_ms) {
            return index;
        }
        let index = match self.deadlines.get(&deadline_ms) {
            Some(&index) => index,
            None => {
                let index = match self.free.pop() {
                    Some(index) => index,
                    None => {
                        self.buckets.push(Bucket::default());
                        u32::try_from(self.buckets.len() - 1).expect("2^32 distinct deadlines")
                    }
                };
                self.deadlines.insert(deadline_ms, index);
                index
            }
        };
        if self.recent.is_empty() {
            self.recent = vec![(u64::MAX, 0); RECENT];
        }
        self.recent[deadline_ms as usize % RECENT] = (deadline_ms, index);
        index
    }

    fn recent_bucket(&self, deadline_ms: u64) -> Option<u32> {
        match self.recent.get(deadline_ms as usize % RECENT) {
            Some(&(deadline, index)) if deadline == deadline_ms => Some(index),
            _ => None,
        }
    }

    /// Removes an empty (or emptied) bucket from the map and the table, for reuse.
    fn free_bucket(&mut self, deadline_ms: u64, index: u32) {
        self.deadlines.remove(&deadline_ms);
        if self.recent_bucket(deadline_ms).is_some() {
            self.recent[deadline_ms as usize % RECENT] = (u64::MAX, 0);
        }
        let bucket = &mut self.buckets[index as usize];
        bucket.timers.clear();
        bucket.timers.shrink_to(BUCKET_KEEP);
        bucket.armed = 0;
        self.free.push(index);
    }

    /// Disarms a timer. Returns the time it had left (`u64::MAX` for a never-timer) and its
    /// park (`None` for a never-timer), or `None` if it already fired or was disarmed.
    pub fn disarm(&mut self, id: TimerId, now_ms: u64) -> Option<(u64, Option<Park>)> {
        if id.queue != self.stamp {
            return None;
        }
        if id.deadline_ms == u64::MAX {
            return self.never.remove(&id.seq).then_some((u64::MAX, None));
        }
        let index = match self.recent_bucket(id.deadline_ms) {
            Some(index) => index,
            None => *self.deadlines.get(&id.deadline_ms)?,
        };
        let bucket = &mut self.buckets[index as usize];
        let at = position(&bucket.timers, id.seq)?;
        let park = bucket.timers[at].1.take()?;
        park.forget_timer(id);
        bucket.armed -= 1;
        self.armed -= 1;
        if bucket.armed == 0 {
            self.free_bucket(id.deadline_ms, index);
        } else if bucket.timers.len() > 2 * bucket.armed + 16 {
            bucket.timers.retain(|(_, park)| park.is_some());
        }
        Some((id.deadline_ms.saturating_sub(now_ms), Some(park)))
    }

    /// The earliest pending deadline (never-timers excluded).
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.keys().next().copied()
    }

    /// Removes and returns, in firing order, the parks of every timer due at `now_ms`.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<Park> {
        let mut due = Vec::new();
        let stamp = self.stamp;
        while let Some((&deadline, &index)) = self.deadlines.first_key_value() {
            if deadline > now_ms {
                break;
            }
            let bucket = &mut self.buckets[index as usize];
            self.armed -= bucket.armed;
            due.reserve(bucket.armed);
            due.extend(bucket.timers.drain(..).filter_map(|(seq, park)| {
                let park = park?;
                park.forget_timer(TimerId {
                    deadline_ms: deadline,
                    seq,
                    queue: stamp,
                });
                Some(park)
            }));
            self.free_bucket(deadline, index);
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
        let buckets = std::mem::take(&mut self.buckets);
        *self = TimerQueue {
            next_seq: self.next_seq,
            stamp: self.stamp,
            ..TimerQueue::new()
        };
        buckets
            .into_iter()
            .flat_map(|bucket| bucket.timers)
            .filter_map(|(_, park)| park)
            .collect()
    }
}

impl Default for TimerQueue {
    fn default() -> Self {
        TimerQueue::new()
    }
}
