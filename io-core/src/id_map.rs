//! A hash map keyed by ids that a counter hands out ([`IdMap`]), with a fixed hasher.
//!
//! The std map's default hasher (SipHash, randomly keyed) guards against keys an attacker
//! chooses, and costs about 140 instructions per lookup. Ids from a counter are chosen by
//! nobody: a multiply spreads them over the table (which takes its buckets from the high bits),
//! and being fixed, it lays the table out the same way on every run. A walk over the map still
//! goes in no useful order: code that needs one (determinism) sorts the ids first.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by `u64` ids, with [`IdHasher`].
///
/// ```
/// let mut map = io_core::IdMap::default();
/// map.insert(7u64, "seven");
/// assert_eq!(map.remove(&7), Some("seven"));
/// ```
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`]: one multiply per `u64` key.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

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

#[cfg(test)]
mod tests {
    use super::IdMap;

    /// Counting ids spread over the table's buckets: a thousand of them all go in and come back.
    #[test]
    fn counting_ids_go_in_and_come_back() {
        let mut map = IdMap::default();
        for id in 0..1000u64 {
            assert!(map.insert(id << 20, id).is_none());
        }
        assert_eq!(map.len(), 1000);
        for id in 0..1000u64 {
            assert_eq!(map.remove(&(id << 20)), Some(id));
        }
        assert!(map.is_empty());
    }
}
