//! A channel's queues of waiting tasks: first come, first served, and any waiter can leave in
//! constant (amortized) time.
//!
//! A waiter leaves from the middle when its task is canceled, its future dropped, or another
//! case of its select completed. Finding it by a walk along the queue made a storm of such
//! departures quadratic (20k receivers canceled last-first took seconds), so each waiter carries
//! a ticket that says where it is: the queue is a deque of slots numbered consecutively, a
//! waiter that leaves empties its slot, and empty slots are dropped when they reach either end
//! or, once they outnumber the waiters, all at once.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use crate::wait::Waiter;

/// Where a waiter is in the queue it waits in: the ticket of its slot, `None` while it is in
/// none. A waiter is in at most one queue at a time.
#[derive(Default)]
pub(crate) struct Place(Cell<Option<u64>>);

impl Place {
    fn ticket(&self) -> Option<u64> {
        self.0.get()
    }

    fn set(&self, ticket: Option<u64>) {
        self.0.set(ticket);
    }
}

/// Below this many empty slots a queue is never compacted: small queues only trim their ends.
const COMPACT_FROM: usize = 16;

/// Waiters in arrival order; each can leave in O(1) amortized.
pub(crate) struct WaitQueue<T> {
    /// The waiters, oldest first; `None` is the slot of one that left from the middle.
    slots: VecDeque<Option<Rc<Waiter<T>>>>,
    /// The ticket of `slots[0]`: `slots[i]` has ticket `first + i`.
    first: u64,
    /// How many slots are empty (kept apart from the waiters' count so that queuing and
    /// serving, the hot path, do not touch it).
    empty: usize,
    /// Slots visited, for tests that check the work per operation is bounded.
    #[cfg(test)]
    steps: u64,
}

impl<T> WaitQueue<T> {
    pub(crate) fn new() -> WaitQueue<T> {
        WaitQueue {
            slots: VecDeque::new(),
            first: 0,
            empty: 0,
            #[cfg(test)]
            steps: 0,
        }
    }

    /// Queues `waiter` last.
    pub(crate) fn push_back(&mut self, waiter: Rc<Waiter<T>>) {
        debug_assert!(
            waiter.place.ticket().is_none(),
            "a waiter waits in one queue"
        );
        let ticket = self.first + self.slots.len() as u64;
        waiter.place.set(Some(ticket));
        self.slots.push_back(Some(waiter));
    }

    /// Takes the waiter that came first off the queue.
    pub(crate) fn pop_front(&mut self) -> Option<Rc<Waiter<T>>> {
        loop {
            let slot = self.slots.pop_front()?;
            self.first += 1;
            self.step();
            match slot {
                Some(waiter) => {
                    waiter.place.set(None);
                    return Some(waiter);
                }
                None => self.empty -= 1,
            }
        }
    }

    /// Takes `waiter` off the queue, wherever it is in it; nothing if it does not wait in it
    /// (it was served, or left already).
    #[inline]
    pub(crate) fn remove(&mut self, waiter: &Rc<Waiter<T>>) {
        // Most waiters that stop waiting were served, and left the queue then.
        if let Some(ticket) = waiter.place.ticket() {
            self.remove_queued(waiter, ticket);
        }
    }

    /// [`remove`](Self::remove) of a waiter that waits somewhere, with `ticket`: here if its
    /// ticket names a slot of this queue that holds it.
    fn remove_queued(&mut self, waiter: &Rc<Waiter<T>>, ticket: u64) {
        self.step();
        let Some(slot) = ticket
            .checked_sub(self.first)
            .and_then(|index| self.slots.get_mut(usize::try_from(index).ok()?))
        else {
            return;
        };
        if !slot.as_ref().is_some_and(|held| Rc::ptr_eq(held, waiter)) {
            return;
        }
        *slot = None;
        waiter.place.set(None);
        self.empty += 1;
        self.drop_empty_slots();
    }

    /// Drops the empty slots at both ends, and every one once they outnumber the waiters (and
    /// are more than a few): each empty slot is dropped once, and a compaction visits fewer
    /// waiters than it drops empty slots, so leaving stays O(1) amortized and the queue's
    /// memory follows the number of waiters.
    fn drop_empty_slots(&mut self) {
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.first += 1;
            self.empty -= 1;
            self.step();
        }
        while let Some(None) = self.slots.back() {
            self.slots.pop_back();
            self.empty -= 1;
            self.step();
        }
        let waiting = self.slots.len() - self.empty;
        if self.empty > waiting.max(COMPACT_FROM) {
            #[cfg(test)]
            {
                self.steps += self.slots.len() as u64;
            }
            self.slots.retain(Option::is_some);
            self.empty = 0;
            for (ticket, waiter) in (self.first..).zip(self.slots.iter().flatten()) {
                waiter.place.set(Some(ticket));
            }
        }
    }

    /// The queued waiters, first come first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Rc<Waiter<T>>> {
        self.slots.iter().flatten()
    }

    /// Takes every waiter off the queue.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Rc<Waiter<T>>> + '_ {
        for waiter in self.slots.iter().flatten() {
            waiter.place.set(None);
        }
        self.first += self.slots.len() as u64;
        self.empty = 0;
        self.slots.drain(..).flatten()
    }

    /// Counts one slot visited.
    #[inline]
    fn step(&mut self) {
        #[cfg(test)]
        {
            self.steps += 1;
        }
    }

    /// Slots visited since the queue was made.
    #[cfg(test)]
    pub(crate) fn steps(&self) -> u64 {
        self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::Wait;

    /// Waiter `i` is case `i` of its own wait, so it can be told apart.
    fn waiters(n: usize) -> Vec<Rc<Waiter<()>>> {
        (0..n)
            .map(|i| Waiter::new(Wait::new("test"), i, None))
            .collect()
    }

    fn queue_of(waiters: &[Rc<Waiter<()>>]) -> WaitQueue<()> {
        let mut queue = WaitQueue::new();
        for waiter in waiters {
            queue.push_back(waiter.clone());
        }
        queue
    }

    fn served(queue: &mut WaitQueue<()>) -> Vec<usize> {
        std::iter::from_fn(|| queue.pop_front().map(|waiter| waiter.case)).collect()
    }

    // Fewer under Miri, which interprets every step: the bound per waiter is what is checked.
    const MANY: usize = if cfg!(miri) { 500 } else { 20_000 };

    /// The storm: every waiter leaves, last come first. Each leaving costs a bounded
    /// number of steps, not a walk along the queue (which made this quadratic).
    #[test]
    fn leaving_in_reverse_order_takes_bounded_work_per_waiter() {
        let waiters = waiters(MANY);
        let mut queue = queue_of(&waiters);
        for waiter in waiters.iter().rev() {
            queue.remove(waiter);
        }
        assert_eq!(served(&mut queue), Vec::<usize>::new());
        let steps = queue.steps();
        assert!(steps <= 4 * MANY as u64, "{steps} steps for {MANY} waiters");
    }

    /// Leaving from the middle outward leaves gaps inside the queue, never at its ends.
    #[test]
    fn leaving_from_the_middle_takes_bounded_work_per_waiter() {
        let waiters = waiters(MANY);
        let mut queue = queue_of(&waiters);
        let middle = MANY / 2;
        for offset in 0..middle {
            queue.remove(&waiters[middle + offset]);
            queue.remove(&waiters[middle - 1 - offset]);
        }
        assert_eq!(served(&mut queue), Vec::<usize>::new());
        let steps = queue.steps();
        assert!(steps <= 4 * MANY as u64, "{steps} steps for {MANY} waiters");
    }

    /// Waiters that stay are served in the order they came, whatever left around them and
    /// whoever came meanwhile; leaving twice, or after being served, changes nothing.
    #[test]
    fn waiters_that_stay_are_served_first_come_first_served() {
        let waiters = waiters(1_000);
        let mut queue = queue_of(&waiters[..600]);
        // Two of every three leave, in a scrambled order (7 is prime to 600).
        for i in (0..600).map(|i| i * 7 % 600).filter(|i| i % 3 != 0) {
            queue.remove(&waiters[i]);
            queue.remove(&waiters[i]);
        }
        assert_eq!(queue.pop_front().map(|waiter| waiter.case), Some(0));
        queue.remove(&waiters[0]);
        for waiter in &waiters[600..] {
            queue.push_back(waiter.clone());
        }
        for waiter in waiters[600..].iter().step_by(2) {
            queue.remove(waiter);
        }
        let expected: Vec<usize> = (3..600).step_by(3).chain((601..1_000).step_by(2)).collect();
        assert_eq!(
            queue.iter().map(|waiter| waiter.case).collect::<Vec<_>>(),
            expected
        );
        assert_eq!(served(&mut queue), expected);
    }
}
