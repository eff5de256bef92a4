//! One TupleMerge hash table: its tuple, its buckets, and the relax and
//! split rules that choose tuples.

use std::{collections::BTreeSet, ops::Range};

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

    /// Whether the tuple keys on nothing but the address family: no
    /// address bits beyond `::ffff:0:0/96` or `::/0`, no port, no
    /// protocol. Its table holds the rules that leave both addresses open
    /// (and whose ports and protocol never needed a split), in one bucket
    /// per family: a probe reads a line and scans a few entries, and its
    /// rules match whole swathes of traffic.
    pub(super) fn is_catch_all(self) -> bool {
        matches!(self.src, 0 | 96)
            && matches!(self.dst, 0 | 96)
            && self.sport == 0
            && self.dport == 0
            && !self.proto
    }

    /// Where the [`ShortIndex`](super::short::ShortIndex) serves the
    /// table's IPv4 keys: `Some((side, bits))` when the tuple keys on the
    /// first `bits` (8 or 16) of one IPv4 address (side 0 the source, 1
    /// the destination) and on nothing else, the other address left open
    /// (`::/0` or `0.0.0.0/0`).
    pub(super) fn short_side(self) -> Option<(usize, u8)> {
        if self.sport != 0 || self.dport != 0 || self.proto {
            return None;
        }
        let open = |len: u8| matches!(len, 0 | 96);
        match (self.src, self.dst) {
            (src @ (104 | 112), dst) if open(dst) => Some((0, src - 96)),
            (src, dst @ (104 | 112)) if open(src) => Some((1, dst - 96)),
            _ => None,
        }
    }

    /// The tuple of a new table for `rule`: TupleMerge's relaxation
    /// (`Relax` in the paper's code). When one address is longer than the
    /// other, key on that one alone; then shorten both a little so that
    /// rules of nearby lengths share the table. Lengths are relative to
    /// the family.
    ///
    /// "Longer" is by more than 1 bit for IPv4 (the paper: more than 4)
    /// and by more than 16 for IPv6: on generated sets a table that keys
    /// on one address is seldom split, and there are fewer of them than
    /// of tables that key on both (ACL 1k/10k: 5/8 tables, not 8/11, for
    /// 13%/19% fewer instructions per lookup; FW 10k: 10, not 21, 34%
    /// fewer; the same at 100k).
    ///
    /// The paper keys on the port of the side it drops, and on the
    /// protocol; here a new table keys on addresses only, and splits add
    /// the protocol and ports where collisions call for them: generated
    /// sets then need fewer tables (ACL 10k: 11, not 12; FW 10k/100k:
    /// 21/34, not 24/40) for as long buckets, and fewer instructions per
    /// lookup (ACL 10k: 7% fewer, FW 10k: 4%).
    pub(super) fn relaxed(rule: &Rule) -> Self {
        let (src_base, mut src, src_v4) = family_len(&rule.src);
        let (dst_base, mut dst, dst_v4) = family_len(&rule.dst);
        let threshold = if src_v4 && dst_v4 { 1 } else { 16 };
        if src > dst + threshold {
            dst = 0;
        } else if dst > src + threshold {
            src = 0;
        }
        Self {
            src: src_base + relax_len(src, src_v4),
            dst: dst_base + relax_len(dst, dst_v4),
            sport: 0,
            dport: 0,
            proto: false,
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

/// The per-address relaxation. IPv4 lengths drop to the octet boundary
/// below them (/32 to /24), coarser than the paper's steps of 1 to 4
/// bits: rules of more lengths share a table, so a lookup probes fewer
/// (ClassBench-like ACL sets of 1k/10k/100k rules: 11/16/11 tables with
/// the paper's steps, 8/12/7 with these, when new tables still keyed on
/// the protocol and on both addresses up to 4 bits apart; 5/8/7 now),
/// and collisions the coarser key makes are
/// split as before. IPv6 keeps the paper's steps four times wider.
fn relax_len(len: u8, v4: bool) -> u8 {
    if v4 {
        match len {
            24..=32 => 24,
            16..=23 => 16,
            8..=15 => 8,
            _ => 0,
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

/// `Entry::flags` and `Wide::flags`: the protocol must match.
const PROTO_EXACT: u8 = 1;
/// `Wide::flags`: the source prefix is IPv6 only (see [`Prefix::contains`]).
const SRC_V6_ONLY: u8 = 2;
/// `Wide::flags`: the destination prefix is IPv6 only.
const DST_V6_ONLY: u8 = 4;
/// `Wide::flags`: a port range is empty; the rule matches nothing.
const NO_PORTS: u8 = 8;

/// `Entry::proto` and `Entry::proto_mask`: above the protocol's byte, a
/// bit that no IPv4 key has, set in a rule that can match no IPv4 key.
const NEVER_V4: u16 = 0x100;

/// The `::ffff:0:0/96` bits of a v4-mapped address.
const V4_BASE: u64 = 0xffff_0000_0000;

const SEED_A: u64 = 0xa076_1d64_78bd_642f;
const SEED_B: u64 = 0xe703_7ed1_a0b4_28db;

/// The exact fields a table may key on beside the source address: the
/// source port and the protocol, in the bits above a v4-mapped address's
/// low 32 (the `::ffff` bits they overlap are the same in every IPv4 key
/// of a table, so no two IPv4 keys of a table alias).
fn extra_a(sport: u16, proto: u8) -> u64 {
    (u64::from(sport) << 48) | (u64::from(proto) << 32)
}

/// The exact field a table may key on beside the destination address.
fn extra_b(dport: u16) -> u64 {
    u64::from(dport) << 48
}

/// The 128-bit product of `a` and `b`, folded to 64 bits (wyhash's mix).
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// An address folded to the 64 bits the hash takes. A v4-mapped address
/// has nothing in its high half, so its fold is its low half: IPv4 keys
/// hash without 128-bit arithmetic.
#[inline]
fn fold_addr(a: u128) -> u64 {
    a as u64 ^ ((a >> 64) as u64).rotate_left(29)
}

/// The hash of the two halves of a cut key: one folded 64x64 multiply.
/// Cut keys are mostly zero bits, which FxHash's add-multiply spreads
/// poorly; a full product does not.
///
/// Tests keep only 11 bits (8 home groups' worth and 3 of the tag), so
/// that distinct keys of a table often share a tag and the rare path that
/// tells them apart ([`SHARED_HASH`]) runs.
#[inline]
fn hash(a: u64, b: u64) -> u32 {
    let h = (fold_mul(a, b) >> 32) as u32;
    if cfg!(test) { h & 0x0007_00ff } else { h }
}

/// A key cut to a tuple, in the form the hash takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    src: u128,
    dst: u128,
    /// [`extra_a`] of the source port and protocol.
    xa: u64,
    /// [`extra_b`] of the destination port.
    xb: u64,
}

impl Cut {
    fn of_key(k: &Key) -> Self {
        Self {
            src: k.src,
            dst: k.dst,
            xa: extra_a(k.sport, k.proto),
            xb: extra_b(k.dport),
        }
    }

    /// A rule's fields (its port ranges by their low ends).
    fn of_wide(w: &Wide) -> Self {
        Self {
            src: w.src,
            dst: w.dst,
            xa: extra_a(w.sport.0, w.proto),
            xb: extra_b(w.dport.0),
        }
    }

    fn masked(self, t: &Table) -> Self {
        Self {
            src: self.src & t.src_mask,
            dst: self.dst & t.dst_mask,
            xa: self.xa & t.xa_mask,
            xb: self.xb & t.xb_mask,
        }
    }

    fn hash(self) -> u32 {
        hash(
            fold_addr(self.src) ^ self.xa ^ SEED_A,
            fold_addr(self.dst) ^ self.xb ^ SEED_B,
        )
    }
}

/// An IPv4 key (both addresses v4-mapped) prepared once per lookup.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe4 {
    /// `src32 | extra_a(sport, proto)`: the first hash input, before the
    /// table's mask.
    a: u64,
    /// `dst32 | extra_b(dport)`.
    b: u64,
    /// `src32 << 32 | dst32`, as [`Entry::addr`].
    pub(super) addr: u64,
    sport: u16,
    dport: u16,
    proto: u16,
    /// [`Summary::key`].
    pub(super) sum: u16,
}

impl Probe4 {
    /// `key`'s addresses must be v4-mapped.
    #[inline]
    pub(super) fn new(key: &Key) -> Self {
        debug_assert!(is_v4_mapped(key.src) && is_v4_mapped(key.dst));
        let (src, dst) = (key.src as u32, key.dst as u32);
        Self {
            a: u64::from(src) | extra_a(key.sport, key.proto),
            b: u64::from(dst) | extra_b(key.dport),
            addr: (u64::from(src) << 32) | u64::from(dst),
            sport: key.sport,
            dport: key.dport,
            proto: u16::from(key.proto),
            sum: Summary::key(key.proto, key.dport),
        }
    }
}

/// Any key prepared once per lookup.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    cut: Cut,
    sport: u16,
    dport: u16,
    proto: u16,
    /// The [`Wide::flags`] an entry must not carry for this key: the
    /// `V6_ONLY` of a v4-mapped address, and `NO_PORTS`.
    refuse: u8,
    /// [`Summary::key`].
    sum: u16,
}

impl Probe {
    pub(super) fn new(key: &Key) -> Self {
        let refuse = (u8::from(is_v4_mapped(key.src)) * SRC_V6_ONLY)
            | (u8::from(is_v4_mapped(key.dst)) * DST_V6_ONLY)
            | NO_PORTS;
        Self {
            cut: Cut::of_key(key),
            sport: key.sport,
            dport: key.dport,
            proto: u16::from(key.proto),
            refuse,
            sum: Summary::key(key.proto, key.dport),
        }
    }
}

/// Slots per group: a group is one cache line.
const WAYS: usize = 4;

/// `Group::lens`: another bucket of the table with the same [`tag`] lies
/// where a lookup for either may meet it first, so a lookup must compare
/// keys. Without it a slot whose tag is the key's holds the key's bucket
/// if the key has one; if it has none, no rule of the slot's bucket can
/// match it (they cut to another key), so scanning the bucket anyway is
/// harmless.
const SHARED_HASH: u32 = 1 << 31;
/// `Group::lens[0]`: the group was full when a bucket whose home it is
/// came, which went on to the next group. Cleared only when the index is
/// rebuilt: a stale flag costs a look at the next group, nothing more.
const OVERFLOW: u32 = 1 << 30;
/// `Group::lens`: the bucket's length.
const LEN: u32 = OVERFLOW - 1;
/// Every tag has it, so that tag 0 is an empty slot.
const TAG_BIT: u16 = 1 << 15;

/// [`Group::tags`]: a 1 in the low bit of each lane.
const LANES: u64 = 0x0001_0001_0001_0001;

/// A bucket's tag: 15 bits of its hash, nonzero. The hash's low bits,
/// which give its home group, are not among them (below 2^16 groups).
fn tag(hash: u32) -> u16 {
    (hash >> 16) as u16 | TAG_BIT
}

/// Four slots of a table's index, one cache line: a bucket (the rules
/// whose fields cut to the tuple are the same) per slot, held as a run of
/// entries sorted by index. A lookup reads its key's home group and, only
/// if the group overflowed, the groups after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
struct Group {
    /// [`tag`]s of the buckets' keys, slot `w` in bits `16 w ..`; 0: the
    /// slot is empty. One word, so that a lookup finds its slot with a
    /// few word operations ([`Group::way_of`]).
    tags: u64,
    /// The buckets' smallest indices: a lookup that has a better match in
    /// hand skips a bucket without reading it.
    mins: [RuleIndex; WAYS],
    /// The buckets' first entries.
    starts: [u32; WAYS],
    /// The buckets' lengths, with [`SHARED_HASH`]; [`OVERFLOW`] in the
    /// first.
    lens: [u32; WAYS],
    /// The buckets' [`Summary`]s: a lookup whose key no rule of a bucket
    /// can match by protocol or destination port skips it unread.
    sums: [u16; WAYS],
}

impl Group {
    const EMPTY: Self = Self {
        tags: 0,
        mins: [0; WAYS],
        starts: [0; WAYS],
        lens: [0; WAYS],
        sums: [0; WAYS],
    };

    fn tag(&self, way: usize) -> u16 {
        (self.tags >> (16 * way)) as u16
    }

    fn set_tag(&mut self, way: usize, tag: u16) {
        self.tags = (self.tags & !(0xffff << (16 * way))) | (u64::from(tag) << (16 * way));
    }

    /// The first slot whose tag is `tag`, or [`WAYS`]: the lowest lane of
    /// `tags ^ tag` that is zero, found without branching (a borrow from
    /// a zero lane can only flag lanes above it).
    #[inline(always)]
    fn way_of(&self, tag: u16) -> usize {
        let x = self.tags ^ (u64::from(tag) * LANES);
        let zero = x.wrapping_sub(LANES) & !x & (LANES << 15);
        (zero.trailing_zeros() / 16) as usize
    }

    fn overflowed(&self) -> bool {
        self.lens[0] & OVERFLOW != 0
    }

    fn shared(&self, way: usize) -> bool {
        self.lens[way] & SHARED_HASH != 0
    }

    fn len(&self, way: usize) -> usize {
        (self.lens[way] & LEN) as usize
    }

    fn run(&self, way: usize) -> Range<usize> {
        let start = self.starts[way] as usize;
        start..start + self.len(way)
    }

    /// Empties slot `way`, keeping the group's [`OVERFLOW`].
    fn clear(&mut self, way: usize) {
        self.set_tag(way, 0);
        self.mins[way] = 0;
        self.starts[way] = 0;
        self.sums[way] = 0;
        self.lens[way] &= if way == 0 { OVERFLOW } else { 0 };
    }
}

/// What a bucket's rules can match, coarsely, in 16 bits: the classes
/// of their protocols (TCP, UDP, ICMP, another: bits 12 to 15) and the
/// bands their destination ports fall in (bits 0 to 11, [`port_band`]).
/// A key has one bit of each; a bucket lacking either matches no rule of
/// it, and a lookup skips it unread, on the branch that skips a bucket
/// for any other reason ([`Table::home`]). On the generated 10k ACL set,
/// 1.75 of a lookup's bucket scans found nothing; a summary rejects 41%
/// of them (each rule's protocol and port taken one by one could reject
/// 66%; a 4x4 protocol-by-band cross product rejects no more).
pub(super) struct Summary;

impl Summary {
    /// Of a bucket's rules (their other halves).
    pub(super) fn of<'a>(rules: impl IntoIterator<Item = &'a Wide>) -> u16 {
        let mut sum = 0;
        for w in rules {
            if w.flags & NO_PORTS != 0 {
                // Matches nothing.
                continue;
            }
            sum |= if w.flags & PROTO_EXACT != 0 {
                PROTO_CLASS[usize::from(w.proto)]
            } else {
                0xf000
            };
            // Bands are in the ports' order: the range covers those of
            // its ends and all between.
            let (lo, hi) = (port_band(w.dport.0), port_band(w.dport.1));
            sum |= ((2u16 << hi) - 1) & !((1u16 << lo) - 1);
        }
        sum
    }

    /// A key's two bits.
    #[inline(always)]
    fn key(proto: u8, dport: u16) -> u16 {
        PROTO_CLASS[usize::from(proto)] | (1 << PORT_BAND[usize::from(dport >> 6)])
    }

    /// 1 if summary `sum` rejects a key of [`Summary::key`] `key`, else 0,
    /// without a branch.
    #[inline(always)]
    pub(super) fn rejects(sum: u16, key: u16) -> u32 {
        u32::from(sum & key != key)
    }
}

/// [`Summary`]'s bit for a protocol.
const PROTO_CLASS: [u16; 256] = {
    let mut t = [1 << 15; 256];
    t[6] = 1 << 12;
    t[17] = 1 << 13;
    t[1] = 1 << 14;
    t
};

/// A destination port's band for [`Summary`], 0 to 11 and in the ports'
/// order: 0–63, 64–127, 128–511 and 512–1023, where services' ports
/// crowd, then eight of 8 064 ports.
const fn port_band(port: u16) -> u32 {
    match port {
        0..=63 => 0,
        64..=127 => 1,
        128..=511 => 2,
        512..=1023 => 3,
        _ => 4 + (port as u32 - 1024) / 8064,
    }
}

/// [`port_band`] by `port >> 6` (every band starts at a multiple of 64):
/// a key's band without a branch.
const PORT_BAND: [u8; 1024] = {
    let mut t = [0; 1024];
    let mut i = 0;
    while i < 1024 {
        t[i] = port_band((i as u16) << 6) as u8;
        i += 1;
    }
    t
};

/// The size class of a run of `len` entries (at least 1): runs hold
/// `len.next_power_of_two()` entries, so a full run's length is a power
/// of two.
fn class(len: usize) -> usize {
    len.next_power_of_two().trailing_zeros() as usize
}

/// What an IPv4 key needs of a rule, in half a cache line; the rest is in
/// [`Wide`], at the same position of its own arena.
#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
pub(super) struct Entry {
    /// The IPv4 parts of the prefixes, `src << 32 | dst` (0 where a
    /// prefix is `::/0`, or holds no IPv4 address).
    addr: u64,
    /// The prefixes' masks on the same layout.
    mask: u64,
    /// Port ranges as low end and width (`hi - lo`), one compare each.
    sport: u16,
    sport_span: u16,
    dport: u16,
    dport_span: u16,
    pub(super) index: RuleIndex,
    /// The protocol, and [`NEVER_V4`] when the rule matches no IPv4 key.
    proto: u16,
    /// `0xff` when the protocol must match; [`NEVER_V4`] as `proto`.
    proto_mask: u16,
}

/// The rest of a rule: what keys of other families and updates need.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wide {
    src: u128,
    dst: u128,
    sport: (u16, u16),
    dport: (u16, u16),
    src_len: u8,
    dst_len: u8,
    proto: u8,
    flags: u8,
}

impl Entry {
    const VACANT: Self = Self {
        addr: 0,
        mask: 0,
        sport: 0,
        sport_span: 0,
        dport: 0,
        dport_span: 0,
        index: 0,
        proto: 0,
        proto_mask: 0,
    };

    pub(super) fn new(index: RuleIndex, rule: &Rule) -> (Self, Wide) {
        /// A prefix's IPv4 part and mask, `None` if it holds no IPv4
        /// address.
        fn v4_part(p: &Prefix) -> Option<(u32, u32)> {
            if p.len == 0 {
                Some((0, 0))
            } else if p.is_v4() {
                let mask = (mask(p.len) as u64) as u32;
                Some((p.addr as u32 & mask, mask))
            } else {
                None
            }
        }
        let empty_ports = rule.sport.0 > rule.sport.1 || rule.dport.0 > rule.dport.1;
        let (v4, never) = match (v4_part(&rule.src), v4_part(&rule.dst)) {
            (Some(s), Some(d)) if !empty_ports => ((s, d), 0),
            _ => (((0, 0), (0, 0)), NEVER_V4),
        };
        let ((src4, src4_mask), (dst4, dst4_mask)) = v4;
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
        if empty_ports {
            flags |= NO_PORTS;
        }
        let proto = rule.proto.unwrap_or(0);
        let entry = Self {
            addr: (u64::from(src4) << 32) | u64::from(dst4),
            mask: (u64::from(src4_mask) << 32) | u64::from(dst4_mask),
            sport: rule.sport.0,
            sport_span: rule.sport.1.wrapping_sub(rule.sport.0),
            dport: rule.dport.0,
            dport_span: rule.dport.1.wrapping_sub(rule.dport.0),
            index,
            proto: u16::from(proto) | never,
            proto_mask: if rule.proto.is_some() { 0xff } else { 0 } | never,
        };
        let wide = Wide {
            src: rule.src.addr & mask(rule.src.len),
            dst: rule.dst.addr & mask(rule.dst.len),
            sport: rule.sport,
            dport: rule.dport,
            src_len: rule.src.len,
            dst_len: rule.dst.len,
            proto,
            flags,
        };
        (entry, wide)
    }

    /// Whether the rule matches an IPv4 key.
    #[inline]
    pub(super) fn matches_v4(&self, p: &Probe4) -> bool {
        // LLVM compiles this to a branch per field, address first (as
        // `&&` would); the mismatches ORed into one word and tested once,
        // which stays branch-free, measured slower: FW 10k +7%, ACL 1k
        // +5%, ACL 10k -2% (the address test fails first and predictably
        // in most scans that find nothing).
        ((p.addr ^ self.addr) & self.mask == 0)
            & ((p.proto ^ self.proto) & self.proto_mask == 0)
            & (p.sport.wrapping_sub(self.sport) <= self.sport_span)
            & (p.dport.wrapping_sub(self.dport) <= self.dport_span)
    }

    /// The IPv4 address of the rule's prefix on the side [`Probe4::addr`]
    /// shifted right by `shift` leaves (32 the source, 0 the
    /// destination), if the rule can match an IPv4 key at all.
    pub(super) fn v4_address(&self, shift: u32) -> Option<u32> {
        (self.proto & NEVER_V4 == 0).then_some((self.addr >> shift) as u32)
    }

    /// Whether the rule's IPv4 prefix on the side of `shift` (as
    /// [`Entry::v4_address`]) holds addresses of /16 block `block`.
    pub(super) fn covers_v4(&self, shift: u32, block: u32) -> bool {
        let (addr, mask) = ((self.addr >> shift) as u32, (self.mask >> shift) as u32);
        (addr ^ (block << 16)) & mask & 0xffff_0000 == 0
    }

    /// Whether the rule (with `w`, its other half) matches any key.
    #[inline]
    fn matches(&self, w: &Wide, p: &Probe) -> bool {
        (p.cut.src ^ w.src) & mask(w.src_len) == 0
            && (p.cut.dst ^ w.dst) & mask(w.dst_len) == 0
            && w.flags & p.refuse == 0
            && (p.proto ^ self.proto) & self.proto_mask & 0xff == 0
            && p.sport.wrapping_sub(self.sport) <= self.sport_span
            && p.dport.wrapping_sub(self.dport) <= self.dport_span
    }
}

impl Wide {
    const VACANT: Self = Self {
        src: 0,
        dst: 0,
        sport: (0, 0),
        dport: (0, 0),
        src_len: 0,
        dst_len: 0,
        proto: 0,
        flags: 0,
    };

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
}

/// A table as the probe order lists it: what an IPv4 lookup needs to
/// hash its key for the table, and the table's index range, beside its
/// id, so that a lookup reads them from one array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hot {
    /// An IPv4 key's hash inputs are `(a & ma) ^ ka` and `(b & mb) ^ kb`
    /// ([`Probe4`]): the masks of the low 32 address bits and of the
    /// exact fields, and the table's constant `::ffff` bits and seeds.
    ma: u64,
    mb: u64,
    ka: u64,
    kb: u64,
    /// The smallest index held.
    pub(super) min: RuleIndex,
    /// The largest index held.
    pub(super) max: RuleIndex,
    pub(super) id: u32,
    /// The tuple is a catch-all ([`Tuple::is_catch_all`]).
    pub(super) catch_all: bool,
    /// Probed before the tables that are not, whatever its smallest
    /// index (set by the classifier).
    pub(super) first: bool,
    /// IPv4 keys find the table's rules in a
    /// [`ShortIndex`](super::short::ShortIndex) instead
    /// ([`Tuple::short_side`]).
    pub(super) short: bool,
}

impl Hot {
    /// The hash of an IPv4 key cut to the table's tuple: the same as
    /// [`Cut::hash`] of the key cut, without 128-bit arithmetic.
    #[inline]
    pub(super) fn hash_v4(&self, p: &Probe4) -> u32 {
        hash((p.a & self.ma) ^ self.ka, (p.b & self.mb) ^ self.kb)
    }
}

/// Whether a bucket of smallest index `min` is skipped unread with a
/// match of index `best` in hand: when `min` cannot beat it, or when `out`
/// is 1 (no slot of the key's tag, or a [`Summary`] that rejects the
/// key), which lifts `min` above every `best` (at most
/// [`NO_MATCH`](super::NO_MATCH), 2^32): one compare for all, where LLVM
/// splits `a || b` into two branches.
#[inline(always)]
pub(super) fn cannot_beat(min: RuleIndex, out: u32, best: u64) -> bool {
    (u64::from(min) | (u64::from(out) << 33)) >= best
}

/// The first entry of `run` (sorted by index; its first at arena
/// position `start`) that `matches` (given the entry's position), has an
/// index of at least `min` and is below `best`.
#[inline(always)]
pub(super) fn first_in(
    run: &[Entry],
    start: usize,
    min: RuleIndex,
    best: u64,
    matches: impl Fn(usize, &Entry) -> bool,
) -> Option<RuleIndex> {
    for (i, e) in run.iter().enumerate() {
        if u64::from(e.index) >= best {
            return None;
        }
        if e.index >= min && matches(start + i, e) {
            return Some(e.index);
        }
    }
    None
}

/// What a key's home group says of its bucket ([`Table::home`]).
enum Home<'a> {
    /// No rule here can beat the match in hand: the key has no bucket,
    /// or the bucket's smallest index is too large.
    Skip,
    /// Scan slot `.1` of this group.
    Scan(&'a Group, usize),
    /// The home group does not settle it: a shared tag, or no slot of the
    /// tag in a group that overflowed.
    Far,
}

/// One hash table of TupleMerge: an open-addressing index of groups of
/// four slots (linear probing over groups, at most half full) of buckets,
/// each a run of entries sorted by index in an arena of power-of-two runs.
#[derive(Debug, Clone)]
pub(super) struct Table {
    tuple: Tuple,
    src_mask: u128,
    dst_mask: u128,
    xa_mask: u64,
    xb_mask: u64,
    /// A power of two long, or empty when the table is.
    groups: Vec<Group>,
    /// Occupied slots: buckets.
    buckets: usize,
    /// Buckets removed since the index was last rebuilt.
    removed: usize,
    /// Runs of entries, and their other halves at the same positions.
    entries: Vec<Entry>,
    wide: Vec<Wide>,
    /// Free runs by size class: `free[k]` starts runs of `2^k` entries.
    free: Vec<Vec<u32>>,
    /// The indices held, for the smallest and largest.
    indices: BTreeSet<RuleIndex>,
    /// The largest index held (0 when empty).
    max: RuleIndex,
}

impl Table {
    pub(super) fn new(tuple: Tuple) -> Self {
        let proto_mask = if tuple.proto { u8::MAX } else { 0 };
        Self {
            tuple,
            src_mask: mask(tuple.src),
            dst_mask: mask(tuple.dst),
            xa_mask: extra_a(port_mask(tuple.sport), proto_mask),
            xb_mask: extra_b(port_mask(tuple.dport)),
            groups: Vec::new(),
            buckets: 0,
            removed: 0,
            entries: Vec::new(),
            wide: Vec::new(),
            free: Vec::new(),
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

    /// What a lookup needs of this table before touching it.
    pub(super) fn hot(&self, id: u32) -> Hot {
        let src_lo = self.src_mask as u64;
        let dst_lo = self.dst_mask as u64;
        Hot {
            ma: (src_lo & 0xffff_ffff) | self.xa_mask,
            mb: (dst_lo & 0xffff_ffff) | self.xb_mask,
            ka: (V4_BASE & src_lo) ^ SEED_A,
            kb: (V4_BASE & dst_lo) ^ SEED_B,
            min: self.min().unwrap_or(0),
            max: self.max,
            id,
            catch_all: self.tuple.is_catch_all(),
            first: false,
            short: self.tuple.short_side().is_some(),
        }
    }

    /// The key of the bucket whose run starts at `start`.
    fn bucket_key(&self, start: u32) -> Cut {
        Cut::of_wide(&self.wide[start as usize]).masked(self)
    }

    fn group_mask(&self) -> usize {
        self.groups.len().wrapping_sub(1)
    }

    /// The slot (group, way) of the bucket whose key, cut to the tuple,
    /// hashes to `hash` and is `cut` if `cut` is given, else is `key`'s
    /// cut (see [`SHARED_HASH`] for when a slot with the tag is enough).
    fn search(&self, hash: u32, cut: Option<Cut>, key: Option<&Key>) -> Option<(usize, usize)> {
        let tag = tag(hash);
        let mut g = hash as usize & self.group_mask();
        // Every group at most once, should every one have overflowed.
        for _ in 0..self.groups.len() {
            let group = &self.groups[g];
            for way in 0..WAYS {
                if group.tag(way) != tag {
                    continue;
                }
                let ours = match (cut, key) {
                    (Some(cut), _) => self.bucket_key(group.starts[way]) == cut,
                    (None, Some(key)) => !group.shared(way) || self.holds(group.starts[way], key),
                    (None, None) => true,
                };
                if ours {
                    return Some((g, way));
                }
            }
            if !group.overflowed() {
                return None;
            }
            g = (g + 1) & self.group_mask();
        }
        None
    }

    /// The slot of the bucket of a rule (its other half `wide`), cut and
    /// hashed.
    fn bucket_of(&self, wide: &Wide) -> (u32, Option<(usize, usize)>) {
        let cut = Cut::of_wide(wide).masked(self);
        let hash = cut.hash();
        (hash, self.search(hash, Some(cut), None))
    }

    /// A free run of `2^class` entries.
    fn alloc_run(&mut self, class: usize) -> u32 {
        if let Some(start) = self.free.get_mut(class).and_then(Vec::pop) {
            return start;
        }
        let start = self.entries.len();
        let end = start + (1 << class);
        self.entries.resize(end, Entry::VACANT);
        self.wide.resize(end, Wide::VACANT);
        u32::try_from(start).expect("fewer than u32::MAX entries")
    }

    fn free_run(&mut self, start: u32, class: usize) {
        if self.free.len() <= class {
            self.free.resize_with(class + 1, Vec::new);
        }
        self.free[class].push(start);
    }

    /// Moves the first `len` entries of the run at `from` to a new run of
    /// size class `class`; frees the old one (of class `old`).
    fn move_run(&mut self, from: u32, len: usize, old: usize, class: usize) -> u32 {
        let to = self.alloc_run(class);
        let (f, t) = (from as usize, to as usize);
        self.entries.copy_within(f..f + len, t);
        self.wide.copy_within(f..f + len, t);
        self.free_run(from, old);
        to
    }

    /// Puts a bucket (whose key hashes to `hash`) in the first free slot
    /// from its home group, marking the full groups it passes, then flags
    /// it [`SHARED_HASH`] with every slot of the same tag a lookup of its
    /// key may pass.
    ///
    /// That walk, made after the placing, covers the home group through
    /// the slot and on through every group that overflowed. So of any two
    /// slots with one tag, the one placed later has seen the other if
    /// the other lies where a lookup for either could meet it first (two
    /// buckets of one tag may have different home groups: a tag is only
    /// part of the hash).
    fn place(&mut self, hash: u32, min: RuleIndex, start: u32, len: u32, sum: u16) {
        let tag = tag(hash);
        let home = hash as usize & self.group_mask();
        let mut g = home;
        loop {
            let group = &mut self.groups[g];
            let way = group.way_of(0);
            if way < WAYS {
                group.set_tag(way, tag);
                group.mins[way] = min;
                group.starts[way] = start;
                group.lens[way] = (group.lens[way] & OVERFLOW) | len;
                group.sums[way] = sum;
                break;
            }
            group.lens[0] |= OVERFLOW;
            g = (g + 1) & self.group_mask();
        }
        // Counted first, gathered only if there are two: most tags are
        // alone in their walk.
        let of_tag = |&(g, w): &(usize, usize)| self.groups[g].tag(w) == tag;
        if self.walk(home).filter(of_tag).count() > 1 {
            for (g, w) in self.walk(home).filter(of_tag).collect::<Vec<_>>() {
                self.groups[g].lens[w] |= SHARED_HASH;
            }
        }
    }

    /// The slots a lookup whose home is group `home` may read, in order:
    /// the home group's and those of every group after it while the one
    /// before overflowed.
    fn walk(&self, home: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mask = self.group_mask();
        let mut more = true;
        (0..self.groups.len())
            .map(move |i| (home + i) & mask)
            .take_while(move |&g| std::mem::replace(&mut more, self.groups[g].overflowed()))
            .flat_map(|g| (0..WAYS).map(move |w| (g, w)))
    }

    /// Rebuilds the index with `groups` groups (which clears stale
    /// [`OVERFLOW`] and [`SHARED_HASH`] flags).
    fn rebuild(&mut self, groups: usize) {
        let old = std::mem::replace(&mut self.groups, vec![Group::EMPTY; groups]);
        for group in &old {
            for way in 0..WAYS {
                if group.tag(way) != 0 {
                    let start = group.starts[way];
                    let hash = self.bucket_key(start).hash();
                    let len = group.lens[way] & LEN;
                    self.place(hash, group.mins[way], start, len, group.sums[way]);
                }
            }
        }
        self.removed = 0;
    }

    /// Adds a rule that fits the tuple; returns its bucket's new length.
    pub(super) fn insert(&mut self, index: RuleIndex, rule: &Rule) -> usize {
        debug_assert!(Tuple::of_rule(rule).fits(self.tuple));
        let (entry, wide) = Entry::new(index, rule);
        let (hash, found) = self.bucket_of(&wide);
        self.indices.insert(index);
        self.max = self.max.max(index);
        let Some((g, way)) = found else {
            if (self.buckets + 1) * 2 > self.groups.len() * WAYS {
                self.rebuild((self.groups.len() * 2).max(1));
            }
            let start = self.alloc_run(0);
            self.entries[start as usize] = entry;
            self.wide[start as usize] = wide;
            self.place(hash, index, start, 1, Summary::of([&wide]));
            self.buckets += 1;
            return 1;
        };
        let group = self.groups[g];
        let len = group.len(way);
        assert!(len < LEN as usize, "a bucket of 2^30 rules");
        let mut start = group.starts[way];
        if len.is_power_of_two() {
            // The run is full.
            start = self.move_run(start, len, class(len), class(len + 1));
        }
        let run = start as usize..start as usize + len;
        let at = run.start + self.entries[run.clone()].partition_point(|e| e.index < index);
        self.entries.copy_within(at..run.end, at + 1);
        self.wide.copy_within(at..run.end, at + 1);
        self.entries[at] = entry;
        self.wide[at] = wide;
        let group = &mut self.groups[g];
        group.mins[way] = self.entries[run.start].index;
        group.starts[way] = start;
        group.lens[way] += 1;
        group.sums[way] |= Summary::of([&wide]);
        len + 1
    }

    /// Removes the rule at `index`, which this table holds as `rule`.
    pub(super) fn remove(&mut self, index: RuleIndex, rule: &Rule) {
        let (_, wide) = Entry::new(index, rule);
        if let (_, Some((g, way))) = self.bucket_of(&wide) {
            let group = self.groups[g];
            let (run, len) = (group.run(way), group.len(way));
            let at = run.start + self.entries[run.clone()].partition_point(|e| e.index < index);
            if at < run.end && self.entries[at].index == index {
                if len == 1 {
                    self.free_run(group.starts[way], 0);
                    self.groups[g].clear(way);
                    self.buckets -= 1;
                    self.removed += 1;
                    if self.removed * 4 > self.groups.len() * WAYS {
                        self.rebuild(self.groups.len());
                    }
                } else {
                    self.entries.copy_within(at + 1..run.end, at);
                    self.wide.copy_within(at + 1..run.end, at);
                    let mut start = group.starts[way];
                    if class(len - 1) < class(len) {
                        // Half the run is empty now.
                        start = self.move_run(start, len - 1, class(len), class(len - 1));
                    }
                    let group = &mut self.groups[g];
                    group.mins[way] = self.entries[start as usize].index;
                    group.starts[way] = start;
                    group.lens[way] -= 1;
                    let run = start as usize..start as usize + len - 1;
                    group.sums[way] = Summary::of(&self.wide[run]);
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

    /// Whether the bucket whose run starts at `start` is that of `key`
    /// cut to the tuple: seldom asked (see [`SHARED_HASH`]), so kept out
    /// of the lookup loop.
    #[cold]
    #[inline(never)]
    fn holds(&self, start: u32, key: &Key) -> bool {
        self.bucket_key(start) == Cut::of_key(key).masked(self)
    }

    /// What a key's home group says of its bucket, with a match of index
    /// `best` in hand; `hash` is the key's hash for the table, `key` its
    /// [`Summary::key`].
    ///
    /// Whether the key has a slot here and whether the slot's smallest
    /// index can beat `best` are one branch, not two: a lookup that holds
    /// a good match already (as after a catch-all table) then skips most
    /// tables on a branch it nearly always takes, where asking the two in
    /// turn made the first a coin toss. Always inlined: it is most of a
    /// lookup's work per table.
    #[inline(always)]
    fn home(&self, hash: u32, best: u64, key: u16) -> Home<'_> {
        let Some(group) = self.groups.get(hash as usize & self.group_mask()) else {
            return Home::Skip;
        };
        let way = group.way_of(tag(hash));
        // 1 when the group has no slot of the key's tag (`way` is WAYS);
        // then slot 0 is read, whose lengths word holds the group's
        // OVERFLOW, the bit below SHARED_HASH.
        let miss = (way / WAYS) as u32;
        let w = way & (WAYS - 1);
        if group.lens[w] & (SHARED_HASH - (miss << 30)) != 0 {
            return Home::Far;
        }
        // A miss, a summary that rejects the key and a smallest index too
        // large: one compare for all three.
        if cannot_beat(
            group.mins[w],
            miss | Summary::rejects(group.sums[w], key),
            best,
        ) {
            return Home::Skip;
        }
        Home::Scan(group, w)
    }

    /// The first rule of the bucket in slot `way` of `group` that matches
    /// (by `matches`, given an entry's position), has an index of at least
    /// `min` and is below `best`. [`Table::home`] has already skipped the
    /// bucket if its smallest index cannot beat `best`; from the far path
    /// the first entry's index tells the same.
    #[inline(always)]
    fn scan(
        &self,
        (group, way): (&Group, usize),
        min: RuleIndex,
        best: u64,
        matches: impl Fn(usize, &Entry) -> bool,
    ) -> Option<RuleIndex> {
        let run = group.run(way);
        first_in(
            self.entries.get(run.clone())?,
            run.start,
            min,
            best,
            matches,
        )
    }

    /// The first rule matching IPv4 key `p` (`key` as given) whose index
    /// is at least `min` and below `best`; `hash` is [`Hot::hash_v4`].
    #[inline(always)]
    pub(super) fn lookup_v4(
        &self,
        hash: u32,
        p: &Probe4,
        key: &Key,
        min: RuleIndex,
        best: u64,
    ) -> Option<RuleIndex> {
        match self.home(hash, best, p.sum) {
            Home::Skip => None,
            Home::Scan(group, w) => self.scan((group, w), min, best, |_, e| e.matches_v4(p)),
            Home::Far => self.lookup_v4_far(hash, p, key, min, best),
        }
    }

    /// [`Table::lookup_v4`] when the home group does not settle it: out of
    /// the lookup loop, which then keeps its registers.
    #[cold]
    #[inline(never)]
    fn lookup_v4_far(
        &self,
        hash: u32,
        p: &Probe4,
        key: &Key,
        min: RuleIndex,
        best: u64,
    ) -> Option<RuleIndex> {
        let (g, way) = self.search(hash, None, Some(key))?;
        self.scan((&self.groups[g], way), min, best, |_, e| e.matches_v4(p))
    }

    /// [`Table::lookup_v4`] for any key.
    pub(super) fn lookup(
        &self,
        p: &Probe,
        key: &Key,
        min: RuleIndex,
        best: u64,
    ) -> Option<RuleIndex> {
        let hash = p.cut.masked(self).hash();
        let slot = match self.home(hash, best, p.sum) {
            Home::Skip => return None,
            Home::Scan(group, w) => (group, w),
            Home::Far => {
                let (g, way) = self.search(hash, None, Some(key))?;
                (&self.groups[g], way)
            }
        };
        let wide = &self.wide;
        self.scan(slot, min, best, |i, e| e.matches(&wide[i], p))
    }

    /// The tuple to move the rules colliding with `rule` to, if one is more
    /// specific than this table's: the colliding rules' common tuple, with
    /// the field where their lengths spread the most raised halfway (the
    /// paper's split).
    pub(super) fn split_tuple(&self, rule: &Rule) -> Option<Tuple> {
        let (_, wide) = Entry::new(0, rule);
        let (g, way) = self.bucket_of(&wide).1?;
        let mut tuples = self.wide[self.groups[g].run(way)].iter().map(Wide::tuple);
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
        let (_, wide) = Entry::new(0, rule);
        let Some((g, way)) = self.bucket_of(&wide).1 else {
            return Vec::new();
        };
        let run = self.groups[g].run(way);
        self.entries[run.clone()]
            .iter()
            .zip(&self.wide[run])
            .filter(|(_, w)| w.tuple().fits(target))
            .map(|(e, w)| (e.index, w.rule()))
            .collect()
    }

    pub(super) fn buckets(&self) -> usize {
        self.buckets
    }

    pub(super) fn max_bucket(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| (0..WAYS).map(|way| g.len(way)))
            .max()
            .unwrap_or(0)
    }

    /// Heap bytes, estimated: slots, entries and about 8 bytes per index
    /// in the B-tree.
    pub(super) fn memory_bytes(&self) -> usize {
        self.groups.capacity() * size_of::<Group>()
            + self.entries.capacity() * size_of::<Entry>()
            + self.wide.capacity() * size_of::<Wide>()
            + self.free.iter().map(Vec::capacity).sum::<usize>() * size_of::<u32>()
            + self.indices.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::{super::NO_MATCH, *};

    #[test]
    fn entry_is_compact() {
        assert_eq!(size_of::<Entry>(), 32);
        assert_eq!(size_of::<Group>(), 64);
        for port in [0, 63, 64, 127, 128, 511, 512, 1023, 1024, 9087, 9088, 65535] {
            assert_eq!(
                u32::from(PORT_BAND[usize::from(port >> 6)]),
                port_band(port),
                "{port}"
            );
        }
        assert_eq!(port_band(u16::MAX), 11);
    }

    /// A summary never rejects a key that one of its rules matches by
    /// protocol and destination port, and does reject one that none can.
    #[test]
    fn summaries_reject_only_keys_no_rule_matches() {
        use proptest::prelude::*;
        let rule = |proto: Option<u8>, dport: (u16, u16)| Rule {
            proto,
            dport,
            ..Rule::ANY
        };
        let wide = |r: &Rule| Entry::new(0, r).1;
        let ports = (any::<u16>(), any::<u16>()).prop_map(|(a, b)| (a.min(b), a.max(b)));
        let proto = prop_oneof![
            Just(None),
            Just(Some(6)),
            Just(Some(17)),
            Just(Some(1)),
            any::<u8>().prop_map(Some)
        ];
        let rules = proptest::collection::vec((proto, ports), 1..6);
        proptest!(|(rules in rules, key_proto in any::<u8>(), dport in any::<u16>())| {
            let rules: Vec<Rule> = rules.into_iter().map(|(p, d)| rule(p, d)).collect();
            let wides: Vec<Wide> = rules.iter().map(wide).collect();
            let sum = Summary::of(&wides);
            let key = Key::v4(1, 2, key_proto, 0, dport);
            if rules.iter().any(|r| r.matches(&key)) {
                prop_assert_eq!(Summary::rejects(sum, Summary::key(key_proto, dport)), 0);
            }
        });
        // TCP to port 80 and UDP to 53 only: ICMP and TCP to 8080 are out.
        let sum = Summary::of(&[
            wide(&rule(Some(6), (80, 80))),
            wide(&rule(Some(17), (53, 53))),
        ]);
        assert_eq!(Summary::rejects(sum, Summary::key(6, 80)), 0);
        assert_eq!(Summary::rejects(sum, Summary::key(1, 0)), 1);
        assert_eq!(Summary::rejects(sum, Summary::key(6, 8080)), 1);
        // A rule of an empty port range matches nothing.
        assert_eq!(Summary::of(&[wide(&rule(None, (9, 8)))]), 0);
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
        let relaxed = Tuple::relaxed(&rule);
        assert!(Tuple::of_rule(&rule).fits(relaxed));
        // The destination is longer: the source is dropped to v4 /0.
        assert_eq!(relaxed.src, 96);
        assert_eq!(relaxed.dst, 96 + 24);
        // Ports and protocol are left to splits.
        assert_eq!((relaxed.sport, relaxed.dport, relaxed.proto), (0, 0, false));
    }

    /// Two buckets of one tag with different home groups, the second
    /// placed after the first by overflowing into the first's group, a
    /// slot below it: a lookup for the second's key passes the first's
    /// slot on its way, so both must be flagged shared. (A walk made
    /// before placing, as when a tag was the whole hash, misses this.)
    #[test]
    fn a_tag_met_in_an_overflowed_group_is_flagged_shared() {
        let exact = |src: u32| Rule {
            src: Prefix::v4(src, 32),
            dst: Prefix::v4(0x0a00_0001, 32),
            proto: None,
            sport: (0, u16::MAX),
            dport: (0, u16::MAX),
        };
        let mut table = Table::new(Tuple::of_rule(&exact(0)));
        let key = |src: u32| Key::v4(src, 0x0a00_0001, 6, 1000, 80);
        let hash = |t: &Table, src: u32| Cut::of_key(&key(src)).masked(t).hash();
        // Eight groups from the start: nine buckets homed in groups 4 to
        // 6, two or three to a group.
        let mut next = 1u32;
        let mut pick = |t: &Table, want: &dyn Fn(u32) -> bool| loop {
            next += 1;
            if want(hash(t, next)) {
                return next;
            }
        };
        let mut index = 0;
        for home in [4, 4, 5, 5, 5, 6, 6, 6, 4] {
            let src = pick(&table, &|h| h as usize & 7 == home);
            table.insert(index, &exact(src));
            index += 1;
        }
        assert_eq!(table.groups.len(), 8);
        // B: home group 1, some tag T. Then four buckets of other tags
        // fill group 0, and A (home 0, tag T) overflows into group 1.
        let b = pick(&table, &|h| h & 7 == 1);
        let t = tag(hash(&table, b));
        table.insert(100, &exact(b));
        for _ in 0..4 {
            let src = pick(&table, &|h| h & 7 == 0 && tag(h) != t);
            table.insert(index, &exact(src));
            index += 1;
        }
        let a = pick(&table, &|h| h & 7 == 0 && tag(h) == t);
        table.insert(200, &exact(a));
        assert_eq!(table.groups.len(), 8, "no rebuild reordered the slots");
        assert!(table.groups[0].overflowed());
        assert_eq!(
            table.groups[1].way_of(t),
            0,
            "B is the first slot of tag T in group 1"
        );
        let hot = table.hot(0);
        for (src, want) in [(a, 200), (b, 100)] {
            let k = key(src);
            let p = Probe4::new(&k);
            let h = hot.hash_v4(&p);
            assert_eq!(h, hash(&table, src));
            assert_eq!(table.lookup_v4(h, &p, &k, 0, NO_MATCH), Some(want));
            assert_eq!(table.lookup(&Probe::new(&k), &k, 0, NO_MATCH), Some(want));
        }
    }
}
