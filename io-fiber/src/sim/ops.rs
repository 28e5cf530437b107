//! The world's ops in flight, by id, in id order.
//!
//! Ids count up and are never reused, so the table is a queue sorted by id: a new op goes at
//! the back, a lookup is a binary search, and an op that ends leaves a hole that is trimmed
//! from either end at once (most ops end in about the order they began) or swept out when
//! holes are most of the queue. (An ordered map's insert and remove were a fifth of a
//! simulated echo's time.) Every walk goes in id order, as the map's did.

use std::collections::VecDeque;

use super::Pending;

#[derive(Default)]
pub(super) struct Ops {
    /// Ids in increasing order; `None`: an op that ended.
    entries: VecDeque<(u64, Option<Pending>)>,
    /// How many entries hold an op.
    live: usize,
}

impl Ops {
    /// Adds op `id`, greater than every id added before.
    pub(super) fn insert(&mut self, id: u64, pending: Pending) {
        debug_assert!(self.entries.back().is_none_or(|&(last, _)| last < id));
        self.entries.push_back((id, Some(pending)));
        self.live += 1;
    }

    fn index(&self, id: u64) -> Option<usize> {
        // The newest ops are looked up most: check the back first.
        let len = self.entries.len();
        if len > 0 && self.entries[len - 1].0 == id {
            return Some(len - 1);
        }
        self.entries.binary_search_by_key(&id, |&(id, _)| id).ok()
    }

    pub(super) fn get(&self, id: &u64) -> Option<&Pending> {
        self.entries[self.index(*id)?].1.as_ref()
    }

    pub(super) fn remove(&mut self, id: &u64) -> Option<Pending> {
        let index = self.index(*id)?;
        let pending = self.entries[index].1.take()?;
        self.live -= 1;
        while self.entries.front().is_some_and(|(_, p)| p.is_none()) {
            self.entries.pop_front();
        }
        while self.entries.back().is_some_and(|(_, p)| p.is_none()) {
            self.entries.pop_back();
        }
        if self.entries.len() > 64 && self.live * 2 < self.entries.len() {
            self.entries.retain(|(_, p)| p.is_some());
        }
        Some(pending)
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The ops, in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &Pending)> {
        self.entries
            .iter()
            .filter_map(|(id, pending)| Some((*id, pending.as_ref()?)))
    }

    /// Takes every op out, in id order.
    pub(super) fn take_all(&mut self) -> Vec<Pending> {
        self.live = 0;
        std::mem::take(&mut self.entries)
            .into_iter()
            .filter_map(|(_, pending)| pending)
            .collect()
    }
}
