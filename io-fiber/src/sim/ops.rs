//! The world's ops in flight, by id.
//!
//! Ids count up from 1, and most ops live for a few ids (a read waiting for the next segment, a
//! file op waiting out the disk's latency), so an op goes in the slot its id names in a table of
//! `2^k` slots (`id mod 2^k`): finding it is an index and a compare, with no hashing. An op whose
//! slot is taken (by an op that has lived `2^k` ids or more: an accept waiting for a client, a
//! read on a quiet connection) goes into a hash map instead ([`IdMap`], a fixed hasher). The
//! table doubles when more ops are live than half its slots, so the slots stay mostly free.
//! (A hash map alone was an eighth of a simulated echo's time; an ordered map before it, a
//! seventh.)
//!
//! Nothing depends on where an op is kept: every walk over the ops sorts them by id first, so
//! it goes in id order as it always did.

use io_core::IdMap;

use super::Pending;

/// Slots in a new table.
const FIRST_SLOTS: usize = 64;

pub(super) struct Ops {
    /// `slots[id mod slots.len()]`: the op with that id, if it is kept there. The length is a
    /// power of two.
    slots: Vec<Option<(u64, Pending)>>,
    /// The ops whose slot was taken when they came.
    overflow: IdMap<Pending>,
    /// Ops in `slots`.
    in_slots: usize,
}

impl Default for Ops {
    fn default() -> Ops {
        Ops {
            slots: std::iter::repeat_with(|| None).take(FIRST_SLOTS).collect(),
            overflow: IdMap::default(),
            in_slots: 0,
        }
    }
}

impl Ops {
    #[inline]
    fn slot_of(&self, id: u64) -> usize {
        (id as usize) & (self.slots.len() - 1)
    }

    /// Keeps `pending` as op `id` (a new id: no op has it).
    pub(super) fn insert(&mut self, id: u64, pending: Pending) {
        if 2 * (self.in_slots + self.overflow.len()) >= self.slots.len() {
            self.grow();
        }
        let index = self.slot_of(id);
        match &mut self.slots[index] {
            slot @ None => {
                *slot = Some((id, pending));
                self.in_slots += 1;
            }
            Some(_) => {
                self.overflow.insert(id, pending);
            }
        }
    }

    /// Doubles the table and puts every op in its slot there, or in the overflow map.
    #[cold]
    fn grow(&mut self) {
        let ops = self.take_all_with_ids();
        let slots = 2 * self.slots.len();
        self.slots = std::iter::repeat_with(|| None).take(slots).collect();
        for (id, pending) in ops {
            self.insert(id, pending);
        }
    }

    pub(super) fn get(&self, id: &u64) -> Option<&Pending> {
        match &self.slots[self.slot_of(*id)] {
            Some((at, pending)) if at == id => Some(pending),
            _ => self.overflow.get(id),
        }
    }

    pub(super) fn remove(&mut self, id: &u64) -> Option<Pending> {
        let index = self.slot_of(*id);
        if matches!(&self.slots[index], Some((at, _)) if at == id) {
            self.in_slots -= 1;
            return self.slots[index].take().map(|(_, pending)| pending);
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.remove(id)
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.in_slots == 0 && self.overflow.is_empty()
    }

    /// The ids of `host`'s ops, in id order.
    pub(super) fn of_host(&self, host: super::HostId) -> Vec<u64> {
        let in_slots = self
            .slots
            .iter()
            .flatten()
            .map(|(id, pending)| (*id, pending));
        let overflow = self.overflow.iter().map(|(id, pending)| (*id, pending));
        let mut ids: Vec<u64> = in_slots
            .chain(overflow)
            .filter(|(_, pending)| pending.host == host)
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Takes every op out, in id order.
    pub(super) fn take_all(&mut self) -> Vec<Pending> {
        let all = self.take_all_with_ids();
        all.into_iter().map(|(_, pending)| pending).collect()
    }

    /// Takes every op out, with its id, in id order.
    fn take_all_with_ids(&mut self) -> Vec<(u64, Pending)> {
        let mut all: Vec<(u64, Pending)> = self.slots.iter_mut().filter_map(Option::take).collect();
        all.extend(self.overflow.drain());
        self.in_slots = 0;
        all.sort_unstable_by_key(|&(id, _)| id);
        all
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use io_core::op::{Op, OpSlot};
    use io_core::SplitMix64;

    use super::{Ops, Pending, FIRST_SLOTS};

    fn pending(host: usize) -> Pending {
        Pending {
            host,
            op: Op::Nop,
            slot: OpSlot::new("test"),
            done: false,
            parked: None,
        }
    }

    /// Against an ordered map: ops that live long (kept in the overflow map once their slot is
    /// wanted) and short, through several doublings of the table; every op is found by id until
    /// it is removed, never after, and the walks go in id order.
    #[test]
    fn ops_are_found_by_id_wherever_they_are_kept() {
        let rng = SplitMix64::new(7);
        let mut ops = Ops::default();
        let mut model: BTreeMap<u64, usize> = BTreeMap::new();
        let mut next = 1u64;
        for step in 0..20_000u64 {
            // The live count swings up past several doublings and back down.
            let target = if (step / 2_000) % 2 == 0 { 600 } else { 20 };
            if model.len() < target && rng.below(3) != 0 {
                let host = rng.below(3) as usize;
                ops.insert(next, pending(host));
                model.insert(next, host);
                next += 1;
            } else if !model.is_empty() {
                // Mostly the oldest few (short-lived ops), sometimes any.
                let pick = if rng.below(4) == 0 {
                    rng.below(model.len() as u64) as usize
                } else {
                    rng.below(model.len().min(4) as u64) as usize
                };
                let id = *model.keys().nth(pick).expect("in range");
                let host = model.remove(&id).expect("picked from the model");
                let removed = ops.remove(&id).expect("a live op is found");
                assert_eq!(removed.host, host);
                assert!(ops.remove(&id).is_none(), "removed once");
                assert!(ops.get(&id).is_none());
            }
            if step % 997 == 0 {
                for (&id, &host) in &model {
                    assert_eq!(ops.get(&id).map(|p| p.host), Some(host), "op {id}");
                }
                let of_host: Vec<u64> = model
                    .iter()
                    .filter(|(_, &host)| host == 1)
                    .map(|(&id, _)| id)
                    .collect();
                assert_eq!(ops.of_host(1), of_host);
            }
        }
        assert!(ops.slots.len() > FIRST_SLOTS, "the table grew");
        let hosts: Vec<usize> = ops.take_all().iter().map(|p| p.host).collect();
        assert_eq!(hosts, model.values().copied().collect::<Vec<_>>());
        assert!(ops.is_empty());
    }

    /// An op that outlives its slot's turn leaves the next op with its slot to the overflow map,
    /// and both are found.
    #[test]
    fn an_op_whose_slot_is_taken_goes_to_the_overflow_map() {
        let mut ops = Ops::default();
        let old = 5;
        let new = old + FIRST_SLOTS as u64;
        ops.insert(old, pending(1));
        ops.insert(new, pending(2));
        assert_eq!(ops.overflow.len(), 1);
        assert_eq!(ops.get(&old).map(|p| p.host), Some(1));
        assert_eq!(ops.get(&new).map(|p| p.host), Some(2));
        assert_eq!(ops.remove(&new).map(|p| p.host), Some(2));
        assert_eq!(ops.remove(&old).map(|p| p.host), Some(1));
        assert!(ops.is_empty());
    }
}
