//! The world's ops in flight, by id.
//!
//! A hash table keyed by id with a fixed hasher (an ordered map's insert and remove were a
//! seventh of a simulated echo's time). Nothing depends on its iteration order: every walk
//! over the ops sorts them by id first, so it goes in id order as the ordered map's did.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::Pending;

#[derive(Default)]
pub(super) struct Ops {
    by_id: HashMap<u64, Pending, BuildHasherDefault<IdHasher>>,
}

impl Ops {
    pub(super) fn insert(&mut self, id: u64, pending: Pending) {
        self.by_id.insert(id, pending);
    }

    pub(super) fn get(&self, id: &u64) -> Option<&Pending> {
        self.by_id.get(id)
    }

    pub(super) fn remove(&mut self, id: &u64) -> Option<Pending> {
        self.by_id.remove(id)
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The ids of `host`'s ops, in id order.
    pub(super) fn of_host(&self, host: super::HostId) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .by_id
            .iter()
            .filter(|(_, pending)| pending.host == host)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Takes every op out, in id order.
    pub(super) fn take_all(&mut self) -> Vec<Pending> {
        let mut all: Vec<(u64, Pending)> = self.by_id.drain().collect();
        all.sort_unstable_by_key(|&(id, _)| id);
        all.into_iter().map(|(_, pending)| pending).collect()
    }
}

/// Op ids are distinct integers that count up: a multiply spreads them over the table (the
/// table takes its buckets from the high bits). Fixed, so the table's layout is the same on
/// every run (though nothing reads its order).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0 ^ id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
