//! Longest-prefix match: one hash table per prefix length present, probed
//! from the longest length down.
//!
//! A lookup costs one hash probe per distinct prefix length in the table (at
//! most 33 for IPv4, 129 for IPv6, and a handful in practice), independent of
//! the number of routes. Edge appliances carry tens to thousands of routes,
//! not full Internet tables; a DIR-24-8 or Poptrie would trade memory and
//! update cost for a flatter worst case, and can replace this behind the same
//! API when a benchmark asks for it.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hash},
};

use rustc_hash::FxHasher;

/// An address usable as an LPM key: `u32` for IPv4, `u128` for IPv6.
pub trait Key: Copy + Eq + Hash + std::fmt::Debug {
    /// The address width in bits.
    const BITS: u8;
    /// `self` with every bit after the first `len` cleared.
    fn masked(self, len: u8) -> Self;
}

impl Key for u32 {
    const BITS: u8 = 32;
    #[inline]
    fn masked(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (Self::MAX << (32 - Self::from(len)))
        }
    }
}

impl Key for u128 {
    const BITS: u8 = 128;
    #[inline]
    fn masked(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (Self::MAX << (128 - u32::from(len)))
        }
    }
}

type Table<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A longest-prefix-match table from prefixes of `K` to values `V`.
#[derive(Debug, Clone)]
pub struct Lpm<K: Key, V> {
    /// Non-empty tables, longest prefix length first.
    levels: Vec<(u8, Table<K, V>)>,
}

impl<K: Key, V> Default for Lpm<K, V> {
    fn default() -> Self {
        Self { levels: Vec::new() }
    }
}

impl<K: Key, V> Lpm<K, V> {
    /// Inserts `value` for the prefix `key/len` (host bits are ignored),
    /// returning the value it replaces.
    ///
    /// # Panics
    /// If `len` exceeds the key width.
    pub fn insert(&mut self, key: K, len: u8, value: V) -> Option<V> {
        assert!(len <= K::BITS, "prefix length {len} > {}", K::BITS);
        let i = match self.levels.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(i, (len, Table::default()));
                i
            }
        };
        self.levels[i].1.insert(key.masked(len), value)
    }

    /// Removes the prefix `key/len`, returning its value.
    pub fn remove(&mut self, key: K, len: u8) -> Option<V> {
        let i = self.levels.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        let old = self.levels[i].1.remove(&key.masked(len));
        if self.levels[i].1.is_empty() {
            self.levels.remove(i);
        }
        old
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: K) -> Option<&V> {
        self.levels
            .iter()
            .find_map(|(len, t)| t.get(&addr.masked(*len)))
    }

    /// The number of prefixes.
    pub fn len(&self) -> usize {
        self.levels.iter().map(|(_, t)| t.len()).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Every `(prefix, length, value)`, longest lengths first.
    pub fn iter(&self) -> impl Iterator<Item = (K, u8, &V)> + '_ {
        self.levels
            .iter()
            .flat_map(|(len, t)| t.iter().map(move |(k, v)| (*k, *len, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obviously-correct oracle: scan every prefix, keep the longest.
    fn linear<K: Key, V: Copy>(prefixes: &[(K, u8, V)], addr: K) -> Option<V> {
        let mut best: Option<(u8, V)> = None;
        for &(k, len, v) in prefixes {
            if addr.masked(len) == k.masked(len) && best.is_none_or(|(l, _)| len >= l) {
                best = Some((len, v));
            }
        }
        best.map(|(_, v)| v)
    }

    /// Later inserts of the same prefix replace earlier ones in both.
    fn dedup<K: Key, V: Copy>(prefixes: &[(K, u8, V)]) -> Vec<(K, u8, V)> {
        let mut out: Vec<(K, u8, V)> = Vec::new();
        for &(k, len, v) in prefixes {
            out.retain(|&(k2, l2, _)| !(l2 == len && k2.masked(l2) == k.masked(len)));
            out.push((k, len, v));
        }
        out
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = Lpm::<u32, &str>::default();
        t.insert(0x0a00_0000, 8, "ten");
        t.insert(0x0a01_0000, 16, "ten-one");
        t.insert(0, 0, "default");
        assert_eq!(t.lookup(0x0a01_0203), Some(&"ten-one"));
        assert_eq!(t.lookup(0x0a02_0203), Some(&"ten"));
        assert_eq!(t.lookup(0x0b00_0001), Some(&"default"));
        assert_eq!(t.remove(0, 0), Some("default"));
        assert_eq!(t.lookup(0x0b00_0001), None);
        assert_eq!(t.len(), 2);
    }

    proptest! {
        #[test]
        fn v4_matches_linear_scan(
            prefixes in proptest::collection::vec((any::<u32>(), 0u8..=32, any::<u16>()), 0..64),
            probes in proptest::collection::vec(any::<u32>(), 1..64),
        ) {
            let mut t = Lpm::default();
            for &(k, len, v) in &prefixes { t.insert(k, len, v); }
            let oracle = dedup(&prefixes);
            for &(k, len, _) in &prefixes {
                // Probe inside every prefix too, not only at random.
                prop_assert_eq!(t.lookup(k.masked(len)).copied(), linear(&oracle, k.masked(len)));
            }
            for a in probes { prop_assert_eq!(t.lookup(a).copied(), linear(&oracle, a)); }
        }

        #[test]
        fn v6_matches_linear_scan(
            prefixes in proptest::collection::vec((any::<u128>(), 0u8..=128, any::<u16>()), 0..64),
            probes in proptest::collection::vec(any::<u128>(), 1..64),
        ) {
            let mut t = Lpm::default();
            for &(k, len, v) in &prefixes { t.insert(k, len, v); }
            let oracle = dedup(&prefixes);
            for &(k, len, _) in &prefixes {
                prop_assert_eq!(t.lookup(k).copied(), linear(&oracle, k));
                prop_assert_eq!(t.lookup(k.masked(len)).copied(), linear(&oracle, k.masked(len)));
            }
            for a in probes { prop_assert_eq!(t.lookup(a).copied(), linear(&oracle, a)); }
        }

        #[test]
        fn removal_matches_linear_scan(
            prefixes in proptest::collection::vec((any::<u32>(), 0u8..=32, any::<u16>()), 1..32),
            remove in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
            probes in proptest::collection::vec(any::<u32>(), 1..32),
        ) {
            let mut t = Lpm::default();
            for &(k, len, v) in &prefixes { t.insert(k, len, v); }
            let mut oracle = dedup(&prefixes);
            for i in remove {
                if oracle.is_empty() { break; }
                let (k, len, _) = oracle.remove(i.index(oracle.len()));
                t.remove(k, len);
            }
            prop_assert_eq!(t.len(), oracle.len());
            for a in probes { prop_assert_eq!(t.lookup(a).copied(), linear(&oracle, a)); }
        }
    }
}
