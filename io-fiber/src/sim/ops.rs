//! The world's ops in flight, by id.
//!
//! A hash table keyed by id with a fixed hasher ([`IdMap`]; an ordered map's insert and remove
//! were a seventh of a simulated echo's time). Nothing depends on its iteration order: every walk
//! over the ops sorts them by id first, so it goes in id order as the ordered map's did.

use io_core::IdMap;

use super::Pending;

#[derive(Default)]
pub(super) struct Ops {
    by_id: IdMap<Pending>,
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
