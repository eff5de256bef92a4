//! First-match packet classification over 5-field rules, by **TupleMerge**.
//!
//! A rule is a source prefix, a destination prefix, a protocol (or any) and
//! two inclusive port ranges; a packet matches it when every field does.
//! Rules have priorities (their [`RuleIndex`]; lower wins) and
//! [`Classifier::classify`] returns the first match. The reference meaning
//! is [`classify_linear`], a scan in index order.
//!
//! # The algorithm
//!
//! TupleMerge (J. Daly and E. Torng, "TupleMerge: Fast Software Packet
//! Processing for Online Packet Classification", IEEE/ACM ToN 2019; ICCCN
//! 2017) refines Tuple Space Search, the scheme Open vSwitch uses:
//!
//! - Rules are kept in a few hash **tables**. A table has a **tuple**: a
//!   source and a destination prefix length, a source and a destination
//!   port prefix length (a port range keys on the leading bits its two ends
//!   share: 16 for one port, 0 for `0 : 65535`), and whether it keys on the
//!   protocol. A rule may go into any table whose tuple is no more specific
//!   than the rule's own; its hash key there is its fields cut to the tuple.
//! - Tuple Space Search makes one table per distinct rule tuple: tens to
//!   hundreds of probes per packet. TupleMerge **relaxes** a new table's
//!   tuple so that rules of nearby tuples share it: when one address is
//!   longer than the other, the table keys on that one alone; then
//!   both lengths shrink (the paper's `Relax`; here IPv4 lengths drop to
//!   the octet below, see `table::relax_len`).
//!   A packet key is cut the same way, so one probe per table finds every
//!   candidate; the bucket then checks each rule in full (prefix bits
//!   beyond the tuple, port ranges, protocol).
//! - Relaxing makes rules collide in a bucket. When a bucket grows past the
//!   **collision limit** ([`COLLISION_LIMIT`]) the colliding rules that fit
//!   a more specific tuple move to a table with that tuple (found or made):
//!   TupleMerge's split, which picks the field where the colliding rules'
//!   lengths spread the most and halves the spread.
//! - Each bucket keeps its rules sorted by index and each table knows its
//!   smallest index. Tables are probed in order of that smallest index; once
//!   a table's best cannot beat the match in hand, no later table can, and
//!   the lookup stops (TupleMerge's priority sort, from PartitionSort).
//!
//! - One exception to that order: a **catch-all** table (keyed on no
//!   address bits, port or protocol: the rules that leave both addresses
//!   open) whose smallest index is in the first quarter of the indices
//!   held is probed first. Its probe is one line and a scan of at most
//!   [`COLLISION_LIMIT`] entries, and its rules match whole swathes of
//!   traffic, so most lookups leave it with a low match in hand, and
//!   every later bucket whose smallest index is above that is skipped
//!   unread. A tier's default rule (last, matching everything) is no such
//!   bound and keeps its turn.
//!
//! The cost of a lookup is one hash probe per table plus a bucket scan
//! that stops at the first entry that cannot beat the match in hand: it
//! follows the number of tables (5 to 10 on ClassBench sets of 1k to
//! 100k rules, public or generated), not the number of rules, and a
//! table costs more than a longer bucket (see [`COLLISION_LIMIT`]). What
//! does grow with the rules is the memory the probes touch, so large sets pay in cache
//! misses (see `benches/classifier.rs`), except where an early catch-all
//! lets the lookups skip most buckets unread. On generated sets the
//! smallest index of nearly every table is near 0, so the early stop
//! seldom fires.
//!
//! # Why not the others
//!
//! - **Bit vectors** (Lakshman–Stiliadis, ABV) cost O(rules / 64) per field
//!   per packet and a rebuild of every vector on change.
//! - **Decision trees** (HiCuts, HyperCuts, EffiCuts, CutSplit) are fast but
//!   replicate rules across cuts (memory grows badly on wildcard-rich sets)
//!   and take seconds to rebuild; an update means a rebuild.
//! - **RFC** (Recursive Flow Classification) gives a fixed number of memory
//!   reads, but its cross-product tables explode in memory and must be
//!   rebuilt from scratch on any change.
//! - **TupleMerge** has O(1) expected insert and remove of one rule (hash a
//!   key, touch one bucket, occasionally split one bucket), so one changed
//!   policy does not rebuild the tier; memory is linear in the rules.
//!
//! # Choices made here
//!
//! - Addresses are `u128`; IPv4 is mapped (`::ffff:a.b.c.d`), so a v4 `/24`
//!   is length 120. A prefix shorter than `/96` other than `::/0` is IPv6
//!   and never contains a v4-mapped address ([`Prefix::contains`]); `::/0`
//!   ([`Prefix::ANY`]) matches both families. Relaxation and splits count
//!   IPv4 lengths from /96, since every mapped address shares those bits.
//! - A new table keys on addresses only (the paper adds the dropped
//!   side's port and the protocol); splits add the protocol and ports
//!   where collisions call for them. Elsewhere the bucket checks them,
//!   ports as ranges.
//! - A new rule goes into the most specific table it fits, a new table
//!   (relaxed from the rule's own tuple) only if it fits none; splits move
//!   only the colliding bucket's rules, so an update touches one bucket.
//! - A table's index is groups of four slots, one cache line each (tags,
//!   smallest indices, runs, lengths, summaries), probed linearly by
//!   group, at most half full. A key reads its home group and picks the
//!   slot whose tag (15 bits of its hash that the home group does not
//!   use, the four in one word) is its own with a few word operations,
//!   without branching; it reads the next group only if the home group
//!   once overflowed (a flag cleared when the index is rebuilt). Two
//!   buckets of one tag that a lookup may meet on one walk are flagged,
//!   so a lookup compares keys only then: otherwise a slot with the key's
//!   tag is the key's bucket if the key has one, and if it has none no
//!   rule there matches. A slot's smallest index lets a lookup with a
//!   better match in hand skip the bucket unread; "the key has no slot here" and "the slot cannot
//!   beat the match in hand" are one compare and one branch, which a
//!   lookup holding an early match nearly always takes (two branches
//!   made the first a coin toss: FW 10k 30% slower). A slot's 16-bit
//!   summary of its rules' protocols and destination port bands joins
//!   that compare: a bucket that no rule of could match by those is
//!   skipped unread too (ACL 10k 16% faster).
//! - A bucket is a run of entries sorted by index, in an arena of
//!   power-of-two runs (a run moves when it fills or half empties). An
//!   entry is what an IPv4 key needs, 32 bytes: the v4 bits and masks of
//!   both prefixes, ports as low end and width, the protocol; IPv6 keys
//!   and updates read the rest from a parallel arena.
//! - **Short-prefix indices** (`short.rs`): IPv4 keys do not probe the
//!   tables that key on the first 8 or 16 bits of one address and on
//!   nothing else. Per side, their rules sit in leaves by /16 block,
//!   found through a page per /8 block without hashing, a /16 leaf
//!   holding copies of the /8 rules that reach its block; a leaf is
//!   skipped or scanned like a bucket. A lookup's cost is mostly branches
//!   no predictor learns, one or more per table probed; one leaf asks
//!   them once for both of a side's tables (ACL 10k 112 → 95 ns, FW 10k
//!   75 → 60 ns). The tables keep every rule, for other keys and for
//!   updates, which go to both. IPv4 keys walk the probe order without
//!   those tables but the first, where they meet both indices.
//! - A key with both addresses v4-mapped is looked up without 128-bit
//!   arithmetic: the protocol and ports sit in the hash input bits a
//!   mapped address leaves free, so its hash for a table is one AND and
//!   one XOR per half and a folded 64x64 multiply, equal to the generic
//!   hash of the cut key.
//! - [`Classifier::classify`] does not allocate and follows indices into
//!   `Vec`s.

#![forbid(unsafe_code)]

mod short;
mod table;
#[cfg(test)]
mod tests;

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
};

use rustc_hash::FxHashMap;

use short::ShortIndex;
use table::{Hot, Table, Tuple};

/// A rule's priority and identity: lower wins. The caller picks them.
pub type RuleIndex = u32;

/// How many rules one bucket holds before TupleMerge tries to split it.
///
/// The paper's code defaults to 10, and this was 20. Here a probe costs
/// far more than a bucket entry: a probe is a hash, a cache line that is
/// seldom in cache and branches no predictor learns, while a bucket is
/// read in order, sorted by index (a scan stops at the first entry that
/// cannot beat the match in hand) and skipped whole by its summary. And
/// each split of a long bucket tends to make a table of its own (it
/// halves the widest spread of *its* colliders, so two buckets seldom
/// pick one tuple). On the public ClassBench sets (`db_generator`'s
/// acl1, fw1, ipc1) 20 made 69 tables on acl1 10k and 26 on ipc1 10k;
/// 128 makes 8 and 10, for 4182 → 689 and 1365 → 624 instructions per
/// lookup (fw1 1k: 21 → 5 tables, 1172 → 806). Our generated sets,
/// whose buckets seldom reach 20, gain where they do (FW 100k: 34 → 8
/// tables, 702 → 482; IPC 1k: 848 → 646) and lose nowhere. 64 and 96
/// leave acl1 10k at 16 and 11 tables (1283 and 714 instructions).
pub const COLLISION_LIMIT: usize = 128;

/// The match in hand before any: above every [`RuleIndex`].
pub(crate) const NO_MATCH: u64 = 1 << 32;

/// The IPv4-mapped block `::ffff:0:0/96` as a bare address.
const V4_MAPPED_BASE: u128 = 0xffff_0000_0000;

/// `a.b.c.d` as `::ffff:a.b.c.d`.
pub const fn map_v4(addr: u32) -> u128 {
    V4_MAPPED_BASE | addr as u128
}

/// Whether `addr` is v4-mapped (`::ffff:0:0/96`).
pub const fn is_v4_mapped(addr: u128) -> bool {
    addr >> 32 == 0xffff
}

/// The network mask of a prefix length (0..=128).
pub(crate) const fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len as u32)
    }
}

/// An address prefix.
///
/// Addresses are u128: IPv6 as is, IPv4 mapped (`::ffff:a.b.c.d`), so an
/// IPv4 /24 is prefix length 96+24. Host bits are clear when built with
/// [`Prefix::new`], [`Prefix::v4`] or [`Prefix::v6`]; a literal with host
/// bits set matches as if they were clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// The network address (host bits clear).
    pub addr: u128,
    /// The length in bits, 0..=128.
    pub len: u8,
}

impl Prefix {
    /// `::/0`: every address, IPv4 and IPv6.
    pub const ANY: Self = Self { addr: 0, len: 0 };

    /// The prefix of `len` bits containing `addr` (host bits cleared).
    ///
    /// # Panics
    /// If `len` > 128.
    pub const fn new(addr: u128, len: u8) -> Self {
        assert!(len <= 128, "prefix length > 128");
        Self {
            addr: addr & mask(len),
            len,
        }
    }

    /// An IPv4 prefix, mapped: `v4(0x0a000000, 8)` is `::ffff:10.0.0.0/104`.
    ///
    /// # Panics
    /// If `len` > 32.
    pub const fn v4(addr: u32, len: u8) -> Self {
        assert!(len <= 32, "IPv4 prefix length > 32");
        Self::new(map_v4(addr), 96 + len)
    }

    /// An IPv6 prefix (the same as [`Prefix::new`]).
    ///
    /// # Panics
    /// If `len` > 128.
    pub const fn v6(addr: u128, len: u8) -> Self {
        Self::new(addr, len)
    }

    /// Whether this is an IPv6 prefix shorter than `/96` other than `::/0`:
    /// such a prefix never contains a v4-mapped address.
    pub const fn is_v6_only(&self) -> bool {
        self.len > 0 && self.len < 96
    }

    /// Whether this is an IPv4 (mapped) prefix.
    pub const fn is_v4(&self) -> bool {
        self.len >= 96 && is_v4_mapped(self.addr)
    }

    /// Whether `a` lies inside the prefix. IPv4 and IPv6 never cross: only
    /// `::/0` holds both.
    pub const fn contains(&self, a: u128) -> bool {
        (a ^ self.addr) & mask(self.len) == 0 && !(self.is_v6_only() && is_v4_mapped(a))
    }
}

impl fmt::Display for Prefix {
    /// `10.0.0.0/8` for IPv4 prefixes, `fd00::/64` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_v4() {
            write!(f, "{}/{}", Ipv4Addr::from(self.addr as u32), self.len - 96)
        } else {
            write!(f, "{}/{}", Ipv6Addr::from(self.addr), self.len)
        }
    }
}

/// A 5-field rule: prefixes, protocol and inclusive port ranges. A range
/// with `lo > hi` matches nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Source prefix.
    pub src: Prefix,
    /// Destination prefix.
    pub dst: Prefix,
    /// IP protocol number; `None` is any.
    pub proto: Option<u8>,
    /// Source ports, inclusive.
    pub sport: (u16, u16),
    /// Destination ports, inclusive.
    pub dport: (u16, u16),
}

impl Rule {
    /// The rule that matches every packet.
    pub const ANY: Self = Self {
        src: Prefix::ANY,
        dst: Prefix::ANY,
        proto: None,
        sport: (0, u16::MAX),
        dport: (0, u16::MAX),
    };

    /// Whether `key` matches every field.
    pub const fn matches(&self, key: &Key) -> bool {
        self.src.contains(key.src)
            && self.dst.contains(key.dst)
            && match self.proto {
                Some(p) => p == key.proto,
                None => true,
            }
            && self.sport.0 <= key.sport
            && key.sport <= self.sport.1
            && self.dport.0 <= key.dport
            && key.dport <= self.dport.1
    }
}

/// What a packet shows the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Key {
    /// Source address (IPv4 mapped).
    pub src: u128,
    /// Destination address (IPv4 mapped).
    pub dst: u128,
    /// IP protocol number.
    pub proto: u8,
    /// Source port (0 where the protocol has none).
    pub sport: u16,
    /// Destination port (0 where the protocol has none).
    pub dport: u16,
}

impl Key {
    /// An IPv4 key (addresses mapped).
    pub const fn v4(src: u32, dst: u32, proto: u8, sport: u16, dport: u16) -> Self {
        Self {
            src: map_v4(src),
            dst: map_v4(dst),
            proto,
            sport,
            dport,
        }
    }
}

/// Shape and size of a [`Classifier`], for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassifierStats {
    /// Rules held.
    pub rules: usize,
    /// Non-empty hash tables: the most probes one lookup can make.
    pub tables: usize,
    /// Non-empty buckets over all tables.
    pub buckets: usize,
    /// Rules in the largest bucket.
    pub max_bucket: usize,
    /// Estimated heap bytes (tables, buckets, the rule index).
    pub memory_bytes: usize,
}

/// First-match classifier over [`Rule`]s by TupleMerge (see the module
/// docs). Lookups take `&self` and do not allocate; updates take `&mut
/// self` (publish a clone behind an `ArcSwap` to update under traffic).
#[derive(Debug, Clone)]
pub struct Classifier {
    /// Every table ever made, empty ones included (found again by tuple).
    tables: Vec<Table>,
    /// Non-empty tables in probe order: those probed first whatever
    /// their smallest index ([`Hot::first`], see `pick_first`), then the
    /// others, each part by smallest index, ascending.
    order: Vec<Hot>,
    /// How many tables at the head of `order` are probed first.
    first: usize,
    /// `order` past its first tables as IPv4 keys walk it: the tables the
    /// short-prefix indices serve ([`Hot::short`]) left out but the first
    /// of them, which stands for both indices (no rule of theirs is below
    /// its smallest index).
    walk4: Vec<Hot>,
    /// Each rule and the table holding it.
    rules: FxHashMap<RuleIndex, (Rule, u32)>,
    /// Bucket size that triggers a split.
    limit: usize,
    /// For IPv4 keys, the rules of the tables keyed on a source /8 or /16
    /// alone, and of those keyed on a destination /8 or /16 alone
    /// ([`Hot::short`]).
    short: [ShortIndex; 2],
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Classifier {
    /// An empty classifier.
    pub fn new() -> Self {
        Self::with_collision_limit(COLLISION_LIMIT)
    }

    /// An empty classifier splitting buckets past `limit` rules (at least
    /// 1). Smaller limits mean shorter bucket scans and more tables.
    pub fn with_collision_limit(limit: usize) -> Self {
        Self {
            tables: Vec::new(),
            order: Vec::new(),
            first: 0,
            walk4: Vec::new(),
            rules: FxHashMap::default(),
            limit: limit.max(1),
            short: [ShortIndex::new(0), ShortIndex::new(1)],
        }
    }

    /// A classifier over `rules`, rule `i` at index (priority) `i`.
    ///
    /// # Panics
    /// If there are more than `u32::MAX` rules.
    pub fn build(rules: &[Rule]) -> Self {
        let mut c = Self::new();
        c.rules.reserve(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let index = RuleIndex::try_from(i).expect("more than u32::MAX rules");
            c.insert(index, *rule);
        }
        c
    }

    /// Adds `rule` at priority `index`. An existing rule at `index` is
    /// replaced.
    pub fn insert(&mut self, index: RuleIndex, rule: Rule) {
        self.remove(index);
        let tuple = Tuple::of_rule(&rule);
        let table = match self.most_specific_fit(tuple) {
            Some(t) => t,
            None => self.find_or_make(Tuple::relaxed(&rule)),
        };
        self.place(table, index, rule);
    }

    /// Removes the rule at `index`; whether there was one.
    pub fn remove(&mut self, index: RuleIndex) -> bool {
        let Some((rule, id)) = self.rules.remove(&index) else {
            return false;
        };
        let table = &mut self.tables[id as usize];
        table.remove(index, &rule);
        if let Some((side, bits)) = table.tuple().short_side() {
            self.short[side].remove(bits, index, &rule);
        }
        self.refresh(id);
        true
    }

    /// The first (lowest index) rule matching `key`.
    #[inline]
    pub fn classify(&self, key: &Key) -> Option<RuleIndex> {
        self.classify_from(key, 0)
    }

    /// The first rule matching `key` whose index is at least `min`: the
    /// next match after `min - 1`, for walks that go on past a rule.
    #[inline]
    pub fn classify_from(&self, key: &Key, min: RuleIndex) -> Option<RuleIndex> {
        // Most walks stop at their first match: theirs is a loop that does
        // not look at `min`.
        if min == 0 {
            self.first_match::<false>(key, 0)
        } else {
            self.first_match::<true>(key, min)
        }
    }

    /// [`Classifier::classify_from`]; `min` is 0 unless `FROM`.
    fn first_match<const FROM: bool>(&self, key: &Key, min: RuleIndex) -> Option<RuleIndex> {
        let min = if FROM { min } else { 0 };
        // No match yet: above every index, so that u32::MAX stays a valid
        // index, and no higher than `Table::home` takes it to be.
        let mut best = NO_MATCH;
        // The tables probed first (see `pick_first`), then the others in
        // order while their smallest index can beat the match in hand;
        // IPv4 keys meet the short-prefix indices in the place of the
        // tables they serve (`walk4`). Written out for each kind of key:
        // one walk taking the table lookup as a closure was 10-20% slower
        // per lookup.
        let (first, rest) = self.order.split_at(self.first);
        if is_v4_mapped(key.src) && is_v4_mapped(key.dst) {
            let probe = table::Probe4::new(key);
            for hot in first {
                best = self.probe_v4::<FROM>(hot, &probe, key, min, best);
            }
            for hot in &self.walk4 {
                if u64::from(hot.min) >= best {
                    break;
                }
                if hot.short {
                    // Both indices, for every table they serve.
                    for index in &self.short {
                        best = index.lookup_v4(&probe, min, best);
                    }
                } else {
                    best = self.probe_v4::<FROM>(hot, &probe, key, min, best);
                }
            }
        } else {
            let probe = table::Probe::new(key);
            for hot in first {
                best = self.probe::<FROM>(hot, &probe, key, min, best);
            }
            for hot in rest {
                if u64::from(hot.min) >= best {
                    break;
                }
                best = self.probe::<FROM>(hot, &probe, key, min, best);
            }
        }
        RuleIndex::try_from(best).ok()
    }

    /// The best match in hand after probing the table of `hot` for an
    /// IPv4 key.
    #[inline(always)]
    fn probe_v4<const FROM: bool>(
        &self,
        hot: &Hot,
        probe: &table::Probe4,
        key: &Key,
        min: RuleIndex,
        best: u64,
    ) -> u64 {
        if FROM && hot.max < min {
            return best;
        }
        self.tables[hot.id as usize]
            .lookup_v4(hot.hash_v4(probe), probe, key, min, best)
            .map_or(best, u64::from)
    }

    /// [`Classifier::probe_v4`] for any key.
    #[inline(always)]
    fn probe<const FROM: bool>(
        &self,
        hot: &Hot,
        probe: &table::Probe,
        key: &Key,
        min: RuleIndex,
        best: u64,
    ) -> u64 {
        if FROM && hot.max < min {
            return best;
        }
        self.tables[hot.id as usize]
            .lookup(probe, key, min, best)
            .map_or(best, u64::from)
    }

    /// Number of rules held.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule is held.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule at `index`, if any.
    pub fn get(&self, index: RuleIndex) -> Option<&Rule> {
        self.rules.get(&index).map(|(r, _)| r)
    }

    /// Tables, buckets and an estimate of the heap in use.
    pub fn stats(&self) -> ClassifierStats {
        let mut stats = ClassifierStats {
            rules: self.rules.len(),
            tables: self.order.len(),
            ..ClassifierStats::default()
        };
        for t in &self.tables {
            stats.buckets += t.buckets();
            stats.max_bucket = stats.max_bucket.max(t.max_bucket());
            stats.memory_bytes += t.memory_bytes();
        }
        stats.memory_bytes += self.rules.capacity()
            * (size_of::<RuleIndex>() + size_of::<(Rule, u32)>() + 1)
            + self.order.capacity() * size_of::<Hot>()
            + self
                .short
                .iter()
                .map(ShortIndex::memory_bytes)
                .sum::<usize>()
            + self.tables.capacity() * size_of::<Table>();
        stats
    }

    /// The table whose tuple `tuple` fits with the most specific tuple.
    fn most_specific_fit(&self, tuple: Tuple) -> Option<u32> {
        self.order
            .iter()
            .map(|hot| hot.id)
            .filter(|&id| tuple.fits(self.tables[id as usize].tuple()))
            .max_by_key(|&id| {
                (
                    self.tables[id as usize].tuple().specificity(),
                    u32::MAX - id,
                )
            })
    }

    /// The table with exactly `tuple`, made if there is none.
    fn find_or_make(&mut self, tuple: Tuple) -> u32 {
        let id = match self.tables.iter().position(|t| t.tuple() == tuple) {
            Some(id) => id,
            None => {
                self.tables.push(Table::new(tuple));
                self.tables.len() - 1
            }
        };
        u32::try_from(id).expect("tuples are far fewer than u32::MAX")
    }

    /// Puts a rule into table `id` and splits the bucket if it overflows.
    fn place(&mut self, id: u32, index: RuleIndex, rule: Rule) {
        let table = &mut self.tables[id as usize];
        let bucket_len = table.insert(index, &rule);
        if let Some((side, bits)) = table.tuple().short_side() {
            self.short[side].insert(bits, index, &rule);
        }
        self.rules.insert(index, (rule, id));
        self.refresh(id);
        if bucket_len > self.limit {
            self.split(id, &rule);
        }
    }

    /// TupleMerge's split of the bucket of table `id` that `rule` hashes
    /// to: the colliding rules that fit a more specific tuple move to the
    /// table with that tuple.
    ///
    /// The tuple starts from the colliders' common one, so two buckets
    /// seldom pick the same: at a limit of 20, acl1 10k's overflowing
    /// buckets made 61 of its 69 tables, most of a few dozen rules
    /// (tuples such as /31 by /30, destination port /13, protocol), the
    /// other 8 being those relaxation makes. Tried and not
    /// kept (see `docs/benchmarks.md`): tuples from a fixed menu of
    /// lengths, raised from the table's own tuple (14 tables at 20, but
    /// no fewer instructions per lookup than the limit of 128); splits
    /// at a lower limit into existing tables only (none fits on these
    /// sets); a bound on the tables splits may make (15 to 26 tables,
    /// 1.7x the instructions of the limit of 128).
    fn split(&mut self, id: u32, rule: &Rule) {
        let table = &self.tables[id as usize];
        let Some(target) = table.split_tuple(rule) else {
            // Every colliding rule has the table's own tuple: nothing to
            // split on; the bucket stays long.
            return;
        };
        let moving = table.colliders_fitting(rule, target);
        let target_id = self.find_or_make(target);
        for (index, r) in moving {
            self.remove(index);
            // `place` may split again in the target table, whose tuple is
            // strictly more specific: this ends.
            self.place(target_id, index, r);
        }
    }

    /// Brings table `id`'s entry in `order` up to date (index range,
    /// place; in or out as it is empty or not).
    fn refresh(&mut self, id: u32) {
        let table = &self.tables[id as usize];
        let pos = self.order.iter().position(|h| h.id == id);
        let mut in_place = None;
        if table.is_empty() {
            if let Some(pos) = pos {
                self.order.remove(pos);
            }
        } else {
            let mut hot = table.hot(id);
            match pos {
                Some(pos) if self.order[pos].min == hot.min => {
                    hot.first = self.order[pos].first;
                    self.order[pos] = hot;
                    in_place = Some(hot);
                }
                Some(pos) => {
                    self.order.remove(pos);
                    self.insert_ordered(hot);
                }
                None => self.insert_ordered(hot),
            }
        }
        let moved = self.pick_first();
        match in_place {
            // Nothing moved: the IPv4 walk's copy, if it has one, is
            // brought up to date in place (most updates end here, and
            // making the walk again was a fifth of one).
            Some(hot) if !moved => {
                if let Some(w) = self.walk4.iter_mut().find(|h| h.id == id) {
                    *w = hot;
                }
            }
            _ => self.rebuild_walk4(),
        }
    }

    fn insert_ordered(&mut self, hot: Hot) {
        let pos = self.order.partition_point(|h| rank(h) < rank(&hot));
        self.order.insert(pos, hot);
    }

    /// Marks the tables to probe before the others: the catch-all tables
    /// ([`Tuple::is_catch_all`]) whose smallest index is in the first
    /// quarter of the indices held. A match there bounds the rest of the
    /// lookup: a later table or bucket whose smallest index is above it
    /// is skipped unread. The bound is worth a probe only when it is low;
    /// a tier's default rule, last and matching everything, is no bound.
    /// Returns whether that moved any table.
    fn pick_first(&mut self) -> bool {
        let last = self
            .order
            .iter()
            .map(|h| u64::from(h.max))
            .max()
            .unwrap_or(0);
        let mut changed = false;
        for hot in &mut self.order {
            let first = hot.catch_all && u64::from(hot.min) < last / 4;
            changed |= first != hot.first;
            hot.first = first;
        }
        if changed {
            self.order.sort_unstable_by_key(rank);
        }
        self.first = self.order.partition_point(|h| h.first);
        changed
    }

    /// Makes `walk4` again from `order`.
    fn rebuild_walk4(&mut self) {
        let mut short = false;
        self.walk4.clear();
        self.walk4.extend(
            self.order[self.first..]
                .iter()
                .filter(|h| !h.short || !std::mem::replace(&mut short, true)),
        );
    }
}

/// A table's place in the probe order.
fn rank(h: &Hot) -> (bool, RuleIndex, u32) {
    (!h.first, h.min, h.id)
}

/// The reference first match: scans `rules` and returns the lowest index
/// whose rule matches `key` (the rules need not be in order).
pub fn classify_linear(rules: &[(RuleIndex, Rule)], key: &Key) -> Option<RuleIndex> {
    rules
        .iter()
        .filter(|(_, r)| r.matches(key))
        .map(|(i, _)| *i)
        .min()
}
