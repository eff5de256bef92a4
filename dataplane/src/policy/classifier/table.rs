//! One TupleMerge hash table: its tuple, its buckets, and the relax and
//! split rules that choose tuples.

use std::collections::BTreeSet;

use super::{Key, Prefix, Rule, RuleIndex, is_v4_mapped, mask};

/// What a table keys on: address prefix lengths (0..=128, on the mapped
/// address space), port prefix lengths (0..=16: a port range keys on the
/// bits its ends share) and whether the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Tuple {
    src: u8,
    dst: u8,
    sport: u8,
    dport: u8,
    proto: bool,
}

/// The weight of an exact protocol when tuples are compared: its width in
/// bits, as the paper counts it.
const PROTO_BITS: u32 = 8;

/// The bits the ends of a port range share, from the top: 16 for one
/// port, 0 for `0 : 65535`. Every port of the range has them.
fn port_len((lo, hi): (u16, u16)) -> u8 {
    if lo > hi {
        0
    } else {
        (lo ^ hi).leading_zeros() as u8
    }
}

/// The mask of a port prefix length.
fn port_mask(len: u8) -> u16 {
    (u32::from(u16::MAX) << (16 - u32::from(len.min(16)))) as u16
}

impl Tuple {
    /// A rule's own, most specific, tuple.
    pub(super) fn of_rule(rule: &Rule) -> Self {
        Self {
            src: rule.src.len,
            dst: rule.dst.len,
            sport: port_len(rule.sport),
            dport: port_len(rule.dport),
            proto: rule.proto.is_some(),
        }
    }

    /// Whether a rule with this tuple may go into a table with `table`.
    pub(super) fn fits(self, table: Self) -> bool {
        self.src >= table.src
            && self.dst >= table.dst
            && self.sport >= table.sport
            && self.dport >= table.dport
            && (self.proto || !table.proto)
    }

    /// How many key bits the tuple uses: more means fewer collisions.
    pub(super) fn specificity(self) -> u32 {
        u32::from(self.src)
            + u32::from(self.dst)
            + u32::from(self.sport)
            + u32::from(self.dport)
            + PROTO_BITS * u32::from(self.proto)
    }

    /// The tuple of a new table for `rule` (whose own tuple is `self`):
    /// TupleMerge's relaxation (`Relax` in the paper's code). When one
    /// address is much longer than the other, key on that one alone (the
    /// exact ports stay in the key); then shorten both a little so that
    /// rules of nearby lengths share the table. Lengths are relative to the
    /// family: IPv4 lengths as the paper has them, IPv6 scaled by four.
    pub(super) fn relaxed(self, rule: &Rule) -> Self {
        let (src_base, mut src, src_v4) = family_len(&rule.src);
        let (dst_base, mut dst, dst_v4) = family_len(&rule.dst);
        let threshold = if src_v4 && dst_v4 { 4 } else { 16 };
        if src > dst + threshold {
            dst = 0;
        } else if dst > src + threshold {
            src = 0;
        }
        // Ports and protocol join the key only where an address left it,
        // as the paper keys on the port of the side it drops.
        let dropped_src = src == 0 && self.src > src_base;
        let dropped_dst = dst == 0 && self.dst > dst_base;
        Self {
            src: src_base + relax_len(src, src_v4),
            dst: dst_base + relax_len(dst, dst_v4),
            sport: if dropped_src { self.sport } else { 0 },
            dport: if dropped_dst { self.dport } else { 0 },
            proto: self.proto && (dropped_src || dropped_dst),
        }
    }
}

/// `(base, length past the base, is IPv4)`: IPv4 prefixes count from /96.
fn family_len(p: &Prefix) -> (u8, u8, bool) {
    if p.is_v4() {
        (96, p.len - 96, true)
    } else {
        (0, p.len, false)
    }
}

/// The paper's per-address relaxation (IPv4 steps; IPv6 four times wider).
fn relax_len(len: u8, v4: bool) -> u8 {
    if v4 {
        match len {
            32 => 28,
            25..=31 => len - 3,
            17..=24 => len - 2,
            9..=16 => len - 1,
            _ => len,
        }
    } else {
        match len {
            128 => 112,
            97..=127 => len - 12,
            65..=96 => len - 8,
            33..=64 => len - 4,
            _ => len,
        }
    }
}

/// A halfway length between `lo` and `hi` (`lo < hi`), strictly above
/// `lo`. Every v4-mapped address shares its first 96 bits, so when the
/// spread crosses /96 the halving happens in the IPv4 part.
fn midpoint(lo: u8, hi: u8) -> u8 {
    if lo < 96 && hi >= 96 {
        96 + (hi - 96).div_ceil(2)
    } else {
        lo + (hi - lo).div_ceil(2)
    }
}

/// A key's fields prepared once per lookup.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    src: u128,
    dst: u128,
    /// `sport << 24 | dport << 8 | proto`.
    extra: u64,
    sport: u16,
    dport: u16,
    proto: u8,
    /// The `V6_ONLY` flags an entry must not carry for this key.
    v4_flags: u8,
}

impl Probe {
    pub(super) fn new(key: &Key) -> Self {
        let v4_flags = (u8::from(is_v4_mapped(key.src)) * SRC_V6_ONLY)
            | (u8::from(is_v4_mapped(key.dst)) * DST_V6_ONLY);
        Self {
            src: key.src,
            dst: key.dst,
            extra: extra(key.sport, key.dport, key.proto),
            sport: key.sport,
            dport: key.dport,
            proto: key.proto,
            v4_flags,
        }
    }
}

fn extra(sport: u16, dport: u16, proto: u8) -> u64 {
    (u64::from(sport) << 24) | (u64::from(dport) << 8) | u64::from(proto)
}

/// The 128-bit product of `a` and `b`, folded to 64 bits (wyhash's mix).
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The hash of a key cut to a tuple: one folded multiply of the halves.
/// Cut keys are mostly zero bits, which FxHash's add-multiply spreads
/// poorly; a full 64x64 product does not.
#[inline]
fn hash(src: u128, dst: u128, extra: u64) -> u32 {
    let a = src as u64 ^ ((src >> 64) as u64).rotate_left(29) ^ 0xa076_1d64_78bd_642f;
    let b = dst as u64
        ^ ((dst >> 64) as u64).rotate_left(29)
        ^ extra.rotate_left(40)
        ^ 0xe703_7ed1_a0b4_28db;
    (fold_mul(a, b) >> 32) as u32
}

/// A slot of the open-addressing index: the bucket's hash (whose low bits
/// are its home slot) in the low half, its first entry in the high half.
type Slot = u64;
pub(super) const EMPTY: Slot = u64::MAX;
/// No entry (end of a chain, empty free list).
const NIL: u32 = u32::MAX;

fn slot(hash: u32, entry: u32) -> Slot {
    (u64::from(entry) << 32) | u64::from(hash)
}

fn slot_hash(s: Slot) -> u32 {
    s as u32
}

fn slot_entry(s: Slot) -> u32 {
    (s >> 32) as u32
}

/// `Entry::flags`: the protocol must match.
const PROTO_EXACT: u8 = 1;
/// `Entry::flags`: the source prefix is IPv6 only (see [`Prefix::contains`]).
const SRC_V6_ONLY: u8 = 2;
/// `Entry::flags`: the destination prefix is IPv6 only.
const DST_V6_ONLY: u8 = 4;

/// A rule as a bucket holds it: one cache line with everything a match
/// needs and the next rule of the bucket (by index).
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Entry {
    src: u128,
    dst: u128,
    index: RuleIndex,
    /// The next entry of the bucket (larger index), or [`NIL`]; in the
    /// free list, the next free entry.
    next: u32,
    sport: (u16, u16),
    dport: (u16, u16),
    src_len: u8,
    dst_len: u8,
    proto: u8,
    flags: u8,
}

impl Entry {
    fn new(index: RuleIndex, rule: &Rule) -> Self {
        let mut flags = 0;
        if rule.proto.is_some() {
            flags |= PROTO_EXACT;
        }
        if rule.src.is_v6_only() {
            flags |= SRC_V6_ONLY;
        }
        if rule.dst.is_v6_only() {
            flags |= DST_V6_ONLY;
        }
        Self {
            src: rule.src.addr & mask(rule.src.len),
            dst: rule.dst.addr & mask(rule.dst.len),
            index,
            next: NIL,
            sport: rule.sport,
            dport: rule.dport,
            src_len: rule.src.len,
            dst_len: rule.dst.len,
            proto: rule.proto.unwrap_or(0),
            flags,
        }
    }

    fn rule(&self) -> Rule {
        Rule {
            src: Prefix {
                addr: self.src,
                len: self.src_len,
            },
            dst: Prefix {
                addr: self.dst,
                len: self.dst_len,
            },
            proto: (self.flags & PROTO_EXACT != 0).then_some(self.proto),
            sport: self.sport,
            dport: self.dport,
        }
    }

    fn tuple(&self) -> Tuple {
        Tuple {
            src: self.src_len,
            dst: self.dst_len,
            sport: port_len(self.sport),
            dport: port_len(self.dport),
            proto: self.flags & PROTO_EXACT != 0,
        }
    }

    /// The exact fields as a key's `extra` (meaningful where exact).
    fn extra(&self) -> u64 {
        extra(self.sport.0, self.dport.0, self.proto)
    }

    #[inline]
    fn matches(&self, p: &Probe) -> bool {
        let proto_mask = 0u8.wrapping_sub(self.flags & PROTO_EXACT);
        (p.src ^ self.src) & mask(self.src_len) == 0
            && (p.dst ^ self.dst) & mask(self.dst_len) == 0
            && (p.proto ^ self.proto) & proto_mask == 0
            && self.flags & p.v4_flags == 0
            && self.sport.0 <= p.sport
            && p.sport <= self.sport.1
            && self.dport.0 <= p.dport
            && p.dport <= self.dport.1
    }
}

/// A table as the probe order lists it: its masks and index range beside
/// its id, so that a lookup reads them from one array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hot {
    pub(super) src_mask: u128,
    pub(super) dst_mask: u128,
    pub(super) extra_mask: u64,
    /// The smallest index held.
    pub(super) min: RuleIndex,
    /// The largest index held.
    pub(super) max: RuleIndex,
    pub(super) id: u32,
}

/// One hash table of TupleMerge: an open-addressing index (linear probing,
/// at most half full) of buckets, each a chain of entries sorted by index
/// in an arena.
#[derive(Debug, Clone)]
pub(super) struct Table {
    tuple: Tuple,
    src_mask: u128,
    dst_mask: u128,
    extra_mask: u64,
    /// A power of two long, or empty when the table is.
    slots: Vec<Slot>,
    /// `slots.len() - 1`.
    slot_mask: usize,
    /// Occupied slots: buckets.
    buckets: usize,
    /// Entries; free ones are chained from `free`.
    entries: Vec<Entry>,
    free: u32,
    /// The indices held, for the smallest and largest.
    indices: BTreeSet<RuleIndex>,
    /// The largest index held (0 when empty).
    max: RuleIndex,
}

impl Table {
    pub(super) fn new(tuple: Tuple) -> Self {
        Self {
            tuple,
            src_mask: mask(tuple.src),
            dst_mask: mask(tuple.dst),
            extra_mask: extra(
                port_mask(tuple.sport),
                port_mask(tuple.dport),
                if tuple.proto { u8::MAX } else { 0 },
            ),
            slots: Vec::new(),
            slot_mask: 0,
            buckets: 0,
            entries: Vec::new(),
            free: NIL,
            indices: BTreeSet::new(),
            max: 0,
        }
    }

    pub(super) fn tuple(&self) -> Tuple {
        self.tuple
    }

    /// The smallest index held.
    pub(super) fn min(&self) -> Option<RuleIndex> {
        self.indices.first().copied()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    fn hash_of(&self, e: &Entry) -> u32 {
        hash(
            e.src & self.src_mask,
            e.dst & self.dst_mask,
            e.extra() & self.extra_mask,
        )
    }

    /// Whether entries `a` and `b` hash to the same bucket here.
    fn same_bucket(&self, a: &Entry, b: &Entry) -> bool {
        (a.src ^ b.src) & self.src_mask == 0
            && (a.dst ^ b.dst) & self.dst_mask == 0
            && (a.extra() ^ b.extra()) & self.extra_mask == 0
    }

    /// The slot of the bucket `e` belongs to.
    fn find(&self, hash: u32, e: &Entry) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut pos = hash as usize & self.slot_mask;
        loop {
            let s = self.slots[pos];
            if s == EMPTY {
                return None;
            }
            if slot_hash(s) == hash && self.same_bucket(&self.entries[slot_entry(s) as usize], e) {
                return Some(pos);
            }
            pos = (pos + 1) & self.slot_mask;
        }
    }

    fn alloc(&mut self, e: Entry) -> u32 {
        if self.free == NIL {
            self.entries.push(e);
            u32::try_from(self.entries.len() - 1).expect("fewer than u32::MAX entries")
        } else {
            let id = self.free;
            self.free = self.entries[id as usize].next;
            self.entries[id as usize] = e;
            id
        }
    }

    fn release(&mut self, id: u32) {
        self.entries[id as usize].next = self.free;
        self.free = id;
    }

    fn put_slot(&mut self, s: Slot) {
        let mut pos = slot_hash(s) as usize & self.slot_mask;
        while self.slots[pos] != EMPTY {
            pos = (pos + 1) & self.slot_mask;
        }
        self.slots[pos] = s;
    }

    /// Doubles the index when it would pass half full.
    fn reserve_slot(&mut self) {
        if (self.buckets + 1) * 2 <= self.slots.len() {
            return;
        }
        let len = (self.slots.len() * 2).max(8);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; len]);
        self.slot_mask = len - 1;
        for s in old.into_iter().filter(|&s| s != EMPTY) {
            self.put_slot(s);
        }
    }

    /// Empties slot `pos` and shifts back the entries probing past it
    /// (deletion without tombstones under linear probing).
    fn delete_slot(&mut self, pos: usize) {
        let mut hole = pos;
        let mut j = pos;
        loop {
            j = (j + 1) & self.slot_mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = slot_hash(s) as usize & self.slot_mask;
            // `s` may fill the hole unless its home lies after the hole.
            if j.wrapping_sub(home) & self.slot_mask >= j.wrapping_sub(hole) & self.slot_mask {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
    }

    /// The entries of the bucket starting at entry `head`, by index.
    fn chain(&self, head: u32) -> impl Iterator<Item = &Entry> {
        std::iter::successors(Some(&self.entries[head as usize]), |e| {
            (e.next != NIL).then(|| &self.entries[e.next as usize])
        })
    }

    /// The bucket `rule` belongs to, as its first entry.
    fn bucket_of(&self, rule: &Rule) -> Option<u32> {
        let e = Entry::new(0, rule);
        let pos = self.find(self.hash_of(&e), &e)?;
        Some(slot_entry(self.slots[pos]))
    }

    /// Adds a rule that fits the tuple; returns its bucket's new length.
    pub(super) fn insert(&mut self, index: RuleIndex, rule: &Rule) -> usize {
        debug_assert!(Tuple::of_rule(rule).fits(self.tuple));
        let e = Entry::new(index, rule);
        let hash = self.hash_of(&e);
        self.indices.insert(index);
        self.max = self.max.max(index);
        let found = self.find(hash, &e);
        let id = self.alloc(e);
        let Some(pos) = found else {
            self.reserve_slot();
            self.put_slot(slot(hash, id));
            self.buckets += 1;
            return 1;
        };
        let head = slot_entry(self.slots[pos]);
        if index < self.entries[head as usize].index {
            self.entries[id as usize].next = head;
            self.slots[pos] = slot(hash, id);
        } else {
            let mut prev = head;
            loop {
                let next = self.entries[prev as usize].next;
                if next == NIL || self.entries[next as usize].index > index {
                    break;
                }
                prev = next;
            }
            self.entries[id as usize].next = self.entries[prev as usize].next;
            self.entries[prev as usize].next = id;
        }
        self.chain(slot_entry(self.slots[pos])).count()
    }

    /// Removes the rule at `index`, which this table holds as `rule`.
    pub(super) fn remove(&mut self, index: RuleIndex, rule: &Rule) {
        let e = Entry::new(index, rule);
        if let Some(pos) = self.find(self.hash_of(&e), &e) {
            let s = self.slots[pos];
            let head = slot_entry(s);
            if self.entries[head as usize].index == index {
                let next = self.entries[head as usize].next;
                self.release(head);
                if next == NIL {
                    self.delete_slot(pos);
                    self.buckets -= 1;
                } else {
                    self.slots[pos] = slot(slot_hash(s), next);
                }
            } else {
                let mut prev = head;
                loop {
                    let next = self.entries[prev as usize].next;
                    if next == NIL {
                        break;
                    }
                    if self.entries[next as usize].index == index {
                        self.entries[prev as usize].next = self.entries[next as usize].next;
                        self.release(next);
                        break;
                    }
                    prev = next;
                }
            }
        }
        self.indices.remove(&index);
        self.max = self.indices.last().copied().unwrap_or(0);
        if self.indices.is_empty() {
            // Give the memory back; the table stays to be found by tuple.
            *self = Self::new(self.tuple);
        }
    }

    /// Lookup, first half: the hash of `p` cut to the tuple and the
    /// content of its home slot. Independent of other tables, so a caller
    /// can start every table's load before waiting on any.
    #[inline]
    pub(super) fn first_slot(&self, hot: &Hot, p: &Probe) -> (u32, Slot) {
        let hash = hash(
            p.src & hot.src_mask,
            p.dst & hot.dst_mask,
            p.extra & hot.extra_mask,
        );
        let s = self
            .slots
            .get(hash as usize & self.slot_mask)
            .copied()
            .unwrap_or(EMPTY);
        (hash, s)
    }

    /// What a lookup needs of this table before touching it.
    pub(super) fn hot(&self, id: u32) -> Hot {
        Hot {
            src_mask: self.src_mask,
            dst_mask: self.dst_mask,
            extra_mask: self.extra_mask,
            min: self.min().unwrap_or(0),
            max: self.max,
            id,
        }
    }

    /// Lookup, second half: from the home slot `s` [`Table::first_slot`]
    /// read, the first rule of `p`'s bucket that matches, has an index of at
    /// least `min`, and is below `best`.
    #[inline]
    pub(super) fn resolve(
        &self,
        p: &Probe,
        hash: u32,
        mut s: Slot,
        min: RuleIndex,
        best: u64,
    ) -> Option<RuleIndex> {
        let mut pos = hash as usize & self.slot_mask;
        loop {
            if s == EMPTY {
                return None;
            }
            if slot_hash(s) == hash {
                let head = &self.entries[slot_entry(s) as usize];
                if (p.src ^ head.src) & self.src_mask == 0
                    && (p.dst ^ head.dst) & self.dst_mask == 0
                    && (p.extra ^ head.extra()) & self.extra_mask == 0
                {
                    return self.scan(head, p, min, best);
                }
            }
            pos = (pos + 1) & self.slot_mask;
            s = self.slots[pos];
        }
    }

    #[inline]
    fn scan<'a>(
        &'a self,
        mut e: &'a Entry,
        p: &Probe,
        min: RuleIndex,
        best: u64,
    ) -> Option<RuleIndex> {
        loop {
            if u64::from(e.index) >= best {
                return None;
            }
            if e.index >= min && e.matches(p) {
                return Some(e.index);
            }
            if e.next == NIL {
                return None;
            }
            e = &self.entries[e.next as usize];
        }
    }

    /// The tuple to move the rules colliding with `rule` to, if one is more
    /// specific than this table's: the colliding rules' common tuple, with
    /// the field where their lengths spread the most raised halfway (the
    /// paper's split).
    pub(super) fn split_tuple(&self, rule: &Rule) -> Option<Tuple> {
        let head = self.bucket_of(rule)?;
        let mut tuples = self.chain(head).map(Entry::tuple);
        let first = tuples.next()?;
        let (mut lo, hi) = tuples.fold((first, first), |(lo, hi), t| {
            (
                Tuple {
                    src: lo.src.min(t.src),
                    dst: lo.dst.min(t.dst),
                    sport: lo.sport.min(t.sport),
                    dport: lo.dport.min(t.dport),
                    proto: lo.proto && t.proto,
                },
                Tuple {
                    src: hi.src.max(t.src),
                    dst: hi.dst.max(t.dst),
                    sport: hi.sport.max(t.sport),
                    dport: hi.dport.max(t.dport),
                    proto: hi.proto || t.proto,
                },
            )
        });
        let spreads = [
            u32::from(hi.src - lo.src),
            u32::from(hi.dst - lo.dst),
            u32::from(hi.sport - lo.sport),
            u32::from(hi.dport - lo.dport),
            if hi.proto && !lo.proto { PROTO_BITS } else { 0 },
        ];
        // The first of the widest spreads, as the paper picks.
        let (field, spread) =
            spreads.iter().enumerate().fold(
                (0, 0),
                |best, (i, &s)| if s > best.1 { (i, s) } else { best },
            );
        if spread > 0 {
            match field {
                0 => lo.src = midpoint(lo.src, hi.src),
                1 => lo.dst = midpoint(lo.dst, hi.dst),
                2 => lo.sport = lo.sport + (hi.sport - lo.sport).div_ceil(2),
                3 => lo.dport = lo.dport + (hi.dport - lo.dport).div_ceil(2),
                _ => lo.proto = true,
            }
        }
        (lo != self.tuple).then_some(lo)
    }

    /// The rules in `rule`'s bucket that fit `target`.
    pub(super) fn colliders_fitting(&self, rule: &Rule, target: Tuple) -> Vec<(RuleIndex, Rule)> {
        self.bucket_of(rule)
            .map(|head| {
                self.chain(head)
                    .filter(|e| e.tuple().fits(target))
                    .map(|e| (e.index, e.rule()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn buckets(&self) -> usize {
        self.buckets
    }

    pub(super) fn max_bucket(&self) -> usize {
        self.slots
            .iter()
            .filter(|&&s| s != EMPTY)
            .map(|&s| self.chain(slot_entry(s)).count())
            .max()
            .unwrap_or(0)
    }

    /// Heap bytes, estimated: slots, entries and about 8 bytes per index
    /// in the B-tree.
    pub(super) fn memory_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
            + self.entries.capacity() * size_of::<Entry>()
            + self.indices.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_compact() {
        assert_eq!(size_of::<Entry>(), 64);
    }

    #[test]
    fn port_ranges_key_on_their_common_bits() {
        assert_eq!(port_len((80, 80)), 16);
        assert_eq!(port_len((0, 65535)), 0);
        assert_eq!(port_len((1024, 65535)), 0);
        assert_eq!(port_len((0, 1023)), 6);
        assert_eq!(port_len((6000, 6015)), 12);
        assert_eq!(port_mask(0), 0);
        assert_eq!(port_mask(6), 0xfc00);
        assert_eq!(port_mask(16), 0xffff);
    }

    #[test]
    fn midpoint_moves_up_and_into_the_v4_part() {
        assert_eq!(midpoint(0, 128), 112);
        assert_eq!(midpoint(0, 96), 96);
        assert_eq!(midpoint(96, 128), 112);
        assert_eq!(midpoint(120, 121), 121);
        assert_eq!(midpoint(10, 20), 15);
    }

    #[test]
    fn relaxed_tuple_fits_its_rule() {
        let rule = Rule {
            src: Prefix::v4(0x0a00_0000, 8),
            dst: Prefix::v4(0xc0a8_0101, 32),
            proto: Some(6),
            sport: (1234, 1234),
            dport: (80, 80),
        };
        let own = Tuple::of_rule(&rule);
        let relaxed = own.relaxed(&rule);
        assert!(own.fits(relaxed));
        // The destination is much longer: the source is dropped to v4 /0.
        assert_eq!(relaxed.src, 96);
        assert_eq!(relaxed.dst, 96 + 28);
        // In its place, the port of the side dropped, and the protocol.
        assert_eq!((relaxed.sport, relaxed.dport, relaxed.proto), (16, 0, true));
    }
}
