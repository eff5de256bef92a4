//! A small seeded PRNG (wyrand) so balancing and jitter are reproducible.
//!
//! Not cryptographic and not meant to be: it only has to spread picks and
//! backoffs, and a seed given at construction makes every test and every
//! simulation replayable. wyrand passes BigCrush and PractRand and is one
//! add and one 64×64→128 multiply per draw.

/// wyrand (Wang Yi): a 64-bit counter mixed by a wide multiply.
#[derive(Debug, Clone)]
pub(super) struct WyRand {
    state: u64,
}

impl WyRand {
    pub(super) const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    /// Uniform on `0..n` (Lemire's multiply-shift; the bias is below 2^-32
    /// for the small `n` used here). `n` must be non-zero.
    pub(super) fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0, "below(0) has no answer");
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform on `[0, 1)` with 53 bits of precision.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::WyRand;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (WyRand::new(7), WyRand::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(WyRand::new(1).next_u64(), WyRand::new(2).next_u64());
    }

    #[test]
    fn below_and_unit_stay_in_range_and_spread() {
        let mut rng = WyRand::new(42);
        let mut counts = [0u32; 5];
        for _ in 0..50_000 {
            counts[rng.below(5)] += 1;
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
