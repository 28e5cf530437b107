//! The world's timed events: in time order, ties in scheduling order.
//!
//! One queue per pending virtual time (few times are pending at once: a latency or two ahead of
//! now), found through an ordered map of the times. The queues live in a slab and keep their
//! room when their time has passed, and the time scheduled last is remembered with its queue:
//! the segments a turn sends mostly arrive at one time, so most events go straight into that
//! queue without a search or an allocation. (A map of queues made and dropped per time was a
//! twentieth of a simulated echo's time; a map keyed by (time, sequence), a tenth.)

use std::collections::{BTreeMap, VecDeque};

use super::Event;

#[derive(Default)]
pub(super) struct Events {
    /// Each pending time and the index of its queue in `queues` (never empty).
    times: BTreeMap<u64, usize>,
    /// The queues; those in `free` are empty and belong to no time.
    queues: Vec<VecDeque<Event>>,
    free: Vec<usize>,
    /// The time scheduled last and its queue, while that time is pending.
    last: Option<(u64, usize)>,
}

impl Events {
    /// Queues `event` at `at`, after the events already queued there.
    #[inline]
    pub(super) fn push(&mut self, at: u64, event: Event) {
        let index = match self.last {
            Some((time, index)) if time == at => index,
            _ => self.queue_for(at),
        };
        self.queues[index].push_back(event);
    }

    /// The queue of time `at`, opened if `at` has none, remembered as the last.
    fn queue_for(&mut self, at: u64) -> usize {
        let index = match self.times.get(&at) {
            Some(&index) => index,
            None => {
                let index = self.free.pop().unwrap_or_else(|| {
                    self.queues.push(VecDeque::new());
                    self.queues.len() - 1
                });
                self.times.insert(at, index);
                index
            }
        };
        self.last = Some((at, index));
        index
    }

    /// The first time with an event, if any.
    #[inline]
    pub(super) fn first_time(&self) -> Option<u64> {
        self.times.first_key_value().map(|(&at, _)| at)
    }

    /// The first event, if it is due at `now`, taken out; and whether it was the last of its
    /// time (the first time has then changed).
    pub(super) fn pop_due(&mut self, now: u64) -> Option<(Event, bool)> {
        let (&at, &index) = self.times.first_key_value()?;
        if at > now {
            return None;
        }
        let queue = &mut self.queues[index];
        let event = queue.pop_front()?;
        let ended = queue.is_empty();
        if ended {
            self.times.pop_first();
            self.free.push(index);
            if self.last.is_some_and(|(time, _)| time == at) {
                self.last = None;
            }
        }
        Some((event, ended))
    }
}
