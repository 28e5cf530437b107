//! The seedable generator behind [`Io::random_u64`](crate::Io::random_u64).

use std::cell::Cell;

/// splitmix64: a tiny, portable, seedable generator — the same sequence on every machine.
///
/// Backends use it for choices that must be reproducible on fiber (which ready task runs next,
/// which ready `select` case wins). It is not for cryptography.
///
/// ```
/// use io_core::SplitMix64;
/// let (a, b) = (SplitMix64::new(7), SplitMix64::new(7));
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert_ne!(a.next_u64(), SplitMix64::new(8).next_u64());
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: Cell<u64>,
}

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 {
            state: Cell::new(seed),
        }
    }

    /// The next number of the sequence.
    pub fn next_u64(&self) -> u64 {
        let state = self.state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.state.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number uniformly drawn from `0..n` (`n > 0`), by multiply-shift (no modulo bias worth
    /// the name for the small `n` a scheduler or a select draws from).
    ///
    /// ```
    /// use io_core::SplitMix64;
    /// let rng = SplitMix64::new(1);
    /// assert!((0..100).all(|_| rng.below(3) < 3));
    /// ```
    pub fn below(&self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}
