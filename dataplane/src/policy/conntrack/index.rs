//! The index from a flow's direction-normalised hash to its slot: open
//! addressing with linear probing, at most half full, deletion by backward
//! shift (no tombstones, so churn does not lengthen probes).
//!
//! An entry is 8 bytes (32-bit hash, 32-bit slot), eight to a cache line:
//! a probe reads one line and compares hashes before it touches a flow.

use super::FlowKey;

/// The slot of an empty entry.
const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Entry {
    hash: u32,
    slot: u32,
}

impl Entry {
    const VACANT: Self = Self {
        hash: 0,
        slot: EMPTY,
    };
}

/// Positions of entries in the index.
pub(super) type Pos = usize;

pub(super) struct Index {
    entries: Box<[Entry]>,
    mask: usize,
}

impl Index {
    /// The most flows an index can hold (slots are `u32`, the index is
    /// twice as long and addressed by a 32-bit hash).
    pub(super) const MAX_FLOWS: usize = 1 << 30;

    /// An index for up to `flows` flows, allocated now and never again.
    pub(super) fn new(flows: usize) -> Self {
        debug_assert!(flows <= Self::MAX_FLOWS);
        let len = (flows * 2).next_power_of_two().max(8);
        Self {
            entries: vec![Entry::VACANT; len].into_boxed_slice(),
            mask: len - 1,
        }
    }

    /// Bytes of memory held.
    pub(super) fn bytes(&self) -> usize {
        self.entries.len() * size_of::<Entry>()
    }

    #[inline]
    fn home(&self, hash: u32) -> Pos {
        hash as usize & self.mask
    }

    #[inline]
    fn next(&self, pos: Pos) -> Pos {
        (pos + 1) & self.mask
    }

    /// The first entry of `hash`'s probe chain whose slot `matches` accepts,
    /// with its position, slot and what `matches` said.
    #[inline]
    pub(super) fn find<T>(
        &self,
        hash: u32,
        mut matches: impl FnMut(usize) -> Option<T>,
    ) -> Option<(Pos, usize, T)> {
        let mut pos = self.home(hash);
        loop {
            let e = self.entries[pos];
            if e.slot == EMPTY {
                return None;
            }
            if e.hash == hash
                && let Some(t) = matches(e.slot as usize)
            {
                return Some((pos, e.slot as usize, t));
            }
            pos = self.next(pos);
        }
    }

    /// Up to `n` slots of `hash`'s probe chain, with their positions: the
    /// neighbourhood an insert into a full table looks at first.
    pub(super) fn chain(&self, hash: u32, n: usize) -> impl Iterator<Item = (Pos, usize)> + '_ {
        let mut pos = self.home(hash);
        (0..n).map_while(move |_| {
            let e = self.entries[pos];
            let here = pos;
            pos = self.next(pos);
            (e.slot != EMPTY).then_some((here, e.slot as usize))
        })
    }

    /// The position of the entry for `slot`, whose hash is `hash`.
    ///
    /// # Panics
    /// If there is none: the index and the slots disagree (a bug here).
    pub(super) fn position_of(&self, hash: u32, slot: usize) -> Pos {
        let pos = self.find(hash, |s| (s == slot).then_some(()));
        pos.expect("conntrack: a stored flow is missing from the index")
            .0
    }

    /// Adds an entry; the caller guarantees the index is not full.
    pub(super) fn insert(&mut self, hash: u32, slot: usize) {
        debug_assert!(slot < EMPTY as usize);
        let mut pos = self.home(hash);
        while self.entries[pos].slot != EMPTY {
            pos = self.next(pos);
        }
        self.entries[pos] = Entry {
            hash,
            slot: slot as u32,
        };
    }

    /// Points the entry at `pos` to another slot (a flow that moved).
    pub(super) fn set_slot(&mut self, pos: Pos, slot: usize) {
        self.entries[pos].slot = slot as u32;
    }

    /// Removes the entry at `pos`, shifting later entries of the cluster
    /// back into the hole when their home allows (Knuth 6.4, Algorithm R).
    pub(super) fn remove(&mut self, pos: Pos) {
        let mut hole = pos;
        let mut j = pos;
        loop {
            j = self.next(j);
            let e = self.entries[j];
            if e.slot == EMPTY {
                break;
            }
            // `e` may fill the hole if the hole lies on its probe path, i.e.
            // cyclically within [home, j].
            let home = self.home(e.hash);
            if j.wrapping_sub(home) & self.mask >= j.wrapping_sub(hole) & self.mask {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = Entry::VACANT;
    }
}

/// The keys of the hash, drawn once per table so that a remote sender who
/// chooses addresses and ports cannot aim its flows at one probe chain.
#[derive(Clone, Copy)]
pub(super) struct Seed([u64; 4]);

impl Seed {
    pub(super) fn new(seed: u64) -> Self {
        let mut s = seed;
        Self([0; 4].map(|_| splitmix64(&mut s) | 1))
    }
}

/// SplitMix64: spreads one seed into several independent-looking words.
pub(super) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// The hash of a flow, the same for both directions: the endpoints are put
/// in a canonical order first. A keyed folded multiply (as foldhash and
/// ahash's fallback): fast, and unpredictable without the seed, though not
/// a cryptographic MAC.
#[inline]
pub(super) fn hash(seed: &Seed, key: &FlowKey) -> u32 {
    let (a, pa, b, pb) = if (key.src, key.sport) <= (key.dst, key.dport) {
        (key.src, key.sport, key.dst, key.dport)
    } else {
        (key.dst, key.dport, key.src, key.sport)
    };
    let ports = u64::from(key.proto) << 32 | u64::from(pa) << 16 | u64::from(pb);
    let s = &seed.0;
    let ha = folded_multiply(a as u64 ^ s[0], (a >> 64) as u64 ^ s[1]);
    let hb = folded_multiply(b as u64 ^ s[2], (b >> 64) as u64 ^ s[3]);
    let h = folded_multiply(ha ^ ports, hb ^ s[0].rotate_left(32));
    (h ^ (h >> 32)) as u32
}
