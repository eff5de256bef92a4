//! The short-prefix index: for IPv4 keys, the rules of the tables that key
//! on the first 8 or 16 bits of one address and on nothing else, found by
//! that address's first 16 bits instead of by hash.
//!
//! A lookup's cost is mostly its branches that no predictor learns, one
//! or more per table probed: does the table hold a bucket for the key,
//! can that bucket beat the match in hand, does an entry match. On
//! ClassBench-like sets TupleMerge keeps up to four small tables of that
//! shape (source /8 and /16, destination /8 and /16): ACL 10k has all
//! four among its eight, and each cost a lookup 6 to 22 ns, most of it
//! in those branches, though few keys find a rule there. A side's index
//! asks the question once for both of the side's tables: two reads of
//! small arrays by the key's /8 and /16 blocks, one leaf, one branch,
//! one scan.
//!
//! - The leaf of a /16 block with /16 rules of its own holds those and
//!   the rules of the side's /8 tables that hold addresses of the block,
//!   sorted by index, with their smallest index and [`Summary`], so that
//!   a leaf is skipped or scanned like a bucket. A block without rules of
//!   its own points at the leaf of its /8 block's rules; one without
//!   either at the empty leaf, which every key's summary rejects.
//! - Leaf ids are found through a page of 256 per /8 block that holds
//!   rules (`pages[top[a >> 24]][a >> 16 & 255]`), so that a classifier
//!   with one such rule pays 1 KiB, not the 256 KiB of a flat array (which
//!   was about 1 ns faster at ACL 10k).
//! - An /8 rule is thus copied into the /16 leaves of blocks it reaches:
//!   at most 256 copies; an /8 rule's insert or remove walks its page.
//!   /24 tables stay hash tables: copying their /16 and /8 rules into
//!   every /24 leaf made 5 to 13 entries per rule at 100k and lookups
//!   there up to 60% slower.
//! - The tables keep every rule: an update goes to its table as before
//!   and is mirrored here; keys that are not IPv4 probe the tables.

#![forbid(unsafe_code)]

use super::{
    Rule, RuleIndex,
    table::{Entry, Probe4, Summary, Wide, cannot_beat, first_in},
};

/// The rules of one side's /8 and /16 single-address tables, by /16 block.
#[derive(Debug, Clone)]
pub(super) struct ShortIndex {
    /// The shift of [`Probe4::addr`] that leaves the side's address: 32
    /// for the source, 0 for the destination.
    shift: u32,
    /// The page of each /8 block: `pages[top[a >> 24]][a >> 16 & 255]`
    /// is the leaf of the /16 block of address `a`. Inline: a lookup
    /// reads it without a bounds check.
    top: [u32; 256],
    /// Page 0, all zeros, is every /8 block's without a rule.
    pages: Vec<[u32; 256]>,
    /// Pages to reuse.
    free_pages: Vec<u32>,
    /// Leaf 0 is the empty leaf.
    leaves: Vec<Leaf>,
    /// The rest of each leaf.
    cold: Vec<Cold>,
    /// Leaves to reuse.
    free: Vec<u32>,
    /// The leaf of each /8 block's /8 rules, 0 if none. A page's entry
    /// that is neither 0 nor its block's is the leaf of a /16 block's
    /// own rules (with copies of the /8 ones).
    eight: [u32; 256],
    /// Rules held (not counting copies).
    rules: usize,
}

/// The rules a key of one /16 block may match here, as a bucket: what a
/// lookup reads, in 32 bytes.
#[derive(Debug, Clone, Default)]
struct Leaf {
    /// Sorted by index.
    entries: Vec<Entry>,
    /// The smallest index held.
    min: RuleIndex,
    /// [`Summary`] of the rules; 0 (rejecting every key) when empty.
    sum: u16,
}

/// The rest of a leaf: what updates need.
#[derive(Debug, Clone, Default)]
struct Cold {
    /// The entries' other halves, for the summary.
    wides: Vec<Wide>,
    /// Rules of the block's own /16 tables (the rest are /8 copies).
    own: u32,
}

impl ShortIndex {
    /// An empty index of `side` (0 the source, 1 the destination).
    pub(super) fn new(side: usize) -> Self {
        Self::with_shift(if side == 0 { 32 } else { 0 })
    }

    fn with_shift(shift: u32) -> Self {
        Self {
            shift,
            top: [0; 256],
            pages: vec![[0; 256]],
            free_pages: Vec::new(),
            leaves: vec![Leaf::default()],
            cold: vec![Cold::default()],
            free: Vec::new(),
            eight: [0; 256],
            rules: 0,
        }
    }

    fn alloc(&mut self, leaf: Leaf, cold: Cold) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.leaves[id as usize] = leaf;
                self.cold[id as usize] = cold;
                id
            }
            None => {
                self.leaves.push(leaf);
                self.cold.push(cold);
                u32::try_from(self.leaves.len() - 1).expect("at most 2^16 + 2^8 leaves")
            }
        }
    }

    /// The leaf of /16 block `block`.
    #[cfg(test)]
    fn block(&self, block: u32) -> u32 {
        self.top
            .get((block >> 8) as usize)
            .map_or(0, |&page| self.pages[page as usize][(block & 255) as usize])
    }

    fn release(&mut self, id: u32) {
        self.leaves[id as usize] = Leaf::default();
        self.cold[id as usize] = Cold::default();
        self.free.push(id);
    }

    /// Adds a rule to leaf `id`, in index order.
    fn add(&mut self, id: u32, entry: Entry, wide: Wide) {
        let (leaf, cold) = (&mut self.leaves[id as usize], &mut self.cold[id as usize]);
        let at = leaf.entries.partition_point(|e| e.index < entry.index);
        leaf.entries.insert(at, entry);
        cold.wides.insert(at, wide);
        leaf.min = leaf.entries[0].index;
        leaf.sum |= Summary::of([&wide]);
    }

    /// Takes the rule at `index` out of leaf `id`, if there.
    fn take(&mut self, id: u32, index: RuleIndex) {
        let (leaf, cold) = (&mut self.leaves[id as usize], &mut self.cold[id as usize]);
        let at = leaf.entries.partition_point(|e| e.index < index);
        if leaf.entries.get(at).is_some_and(|e| e.index == index) {
            leaf.entries.remove(at);
            cold.wides.remove(at);
        }
        leaf.min = leaf.entries.first().map_or(0, |e| e.index);
        leaf.sum = Summary::of(&cold.wides);
    }

    /// The page of /8 block `b`, made if there is none.
    fn page(&mut self, b: usize) -> usize {
        if self.top[b] == 0 {
            self.top[b] = match self.free_pages.pop() {
                Some(page) => page,
                None => {
                    self.pages.push([0; 256]);
                    u32::try_from(self.pages.len() - 1).expect("at most 257 pages")
                }
            };
        }
        self.top[b] as usize
    }

    /// Adds the rule at `index`, which a table keyed on the first `bits`
    /// (8 or 16) of this side's address has taken.
    /// Rules that can match no IPv4 key (an IPv6 prefix, an empty port
    /// range) are left to the tables.
    pub(super) fn insert(&mut self, bits: u8, index: RuleIndex, rule: &Rule) {
        let (entry, wide) = Entry::new(index, rule);
        let Some(addr) = entry.v4_address(self.shift) else {
            return;
        };
        self.rules += 1;
        let b = (addr >> 24) as usize;
        let page = self.page(b);
        let eight = self.eight[b];
        if bits == 16 {
            let slot = (addr >> 16 & 255) as usize;
            let mut id = self.pages[page][slot];
            if id == 0 || id == eight {
                // A new /16 leaf starts with its /8 block's rules that
                // hold addresses of the block (in index order, as there).
                let block = addr >> 16;
                let (leaf, cold) = (&self.leaves[eight as usize], &self.cold[eight as usize]);
                let (entries, wides): (Vec<Entry>, Vec<Wide>) = leaf
                    .entries
                    .iter()
                    .zip(&cold.wides)
                    .filter(|(e, _)| e.covers_v4(self.shift, block))
                    .unzip();
                let leaf = Leaf {
                    min: entries.first().map_or(0, |e| e.index),
                    sum: Summary::of(&wides),
                    entries,
                };
                id = self.alloc(leaf, Cold { wides, own: 0 });
                self.pages[page][slot] = id;
            }
            self.add(id, entry, wide);
            self.cold[id as usize].own += 1;
        } else {
            let eight = if eight == 0 {
                let id = self.alloc(Leaf::default(), Cold::default());
                self.eight[b] = id;
                id
            } else {
                eight
            };
            self.add(eight, entry, wide);
            // Blocks without a leaf of their own take the /8 leaf; those
            // with one take a copy of the rule if it holds addresses of
            // theirs.
            for slot in 0..256 {
                match self.pages[page][slot] {
                    0 => self.pages[page][slot] = eight,
                    id if id == eight => {}
                    id if entry.covers_v4(self.shift, (b as u32) << 8 | slot as u32) => {
                        self.add(id, entry, wide);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Removes the rule at `index`, as [`ShortIndex::insert`] took it.
    pub(super) fn remove(&mut self, bits: u8, index: RuleIndex, rule: &Rule) {
        let Some(addr) = Entry::new(index, rule).0.v4_address(self.shift) else {
            return;
        };
        let b = (addr >> 24) as usize;
        let page = match self.top[b] {
            0 => return,
            page => page as usize,
        };
        let eight = self.eight[b];
        if bits == 16 {
            let slot = (addr >> 16 & 255) as usize;
            let id = self.pages[page][slot];
            if id == 0 || id == eight {
                return;
            }
            self.take(id, index);
            self.cold[id as usize].own -= 1;
            if self.cold[id as usize].own == 0 {
                // Only /8 copies left: the block falls back to its /8 leaf.
                self.release(id);
                self.pages[page][slot] = eight;
            }
        } else {
            if eight == 0 {
                return;
            }
            self.take(eight, index);
            for slot in 0..256 {
                match self.pages[page][slot] {
                    0 => {}
                    id if id == eight => {}
                    id => self.take(id, index),
                }
            }
            if self.leaves[eight as usize].entries.is_empty() {
                self.release(eight);
                self.eight[b] = 0;
                for id in &mut self.pages[page] {
                    if *id == eight {
                        *id = 0;
                    }
                }
            }
        }
        if self.pages[page].iter().all(|&id| id == 0) {
            self.top[b] = 0;
            self.free_pages.push(page as u32);
        }
        self.rules -= 1;
        if self.rules == 0 {
            // Give the memory back.
            *self = Self::with_shift(self.shift);
        }
    }

    /// The first rule matching IPv4 key `p` whose index is at least `min`
    /// and below `best`, or `best`.
    #[inline(always)]
    pub(super) fn lookup_v4(&self, p: &Probe4, min: RuleIndex, best: u64) -> u64 {
        let addr = (p.addr >> self.shift) as u32;
        let page = self.top[(addr >> 24) as usize];
        let Some(&id) = self
            .pages
            .get(page as usize)
            .and_then(|p| p.get((addr >> 16 & 255) as usize))
        else {
            return best;
        };
        let Some(leaf) = self.leaves.get(id as usize) else {
            return best;
        };
        if cannot_beat(leaf.min, Summary::rejects(leaf.sum, p.sum), best) {
            return best;
        }
        first_in(&leaf.entries, 0, min, best, |_, e| e.matches_v4(p)).map_or(best, u64::from)
    }

    /// Whether the index holds no rule.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.rules == 0
    }

    /// Estimated heap bytes.
    pub(super) fn memory_bytes(&self) -> usize {
        self.pages.capacity() * size_of::<[u32; 256]>()
            + self.leaves.capacity() * size_of::<Leaf>()
            + self.cold.capacity() * size_of::<Cold>()
            + self
                .leaves
                .iter()
                .zip(&self.cold)
                .map(|(l, c)| {
                    l.entries.capacity() * size_of::<Entry>()
                        + c.wides.capacity() * size_of::<Wide>()
                })
                .sum::<usize>()
    }

    /// The /16 blocks whose keys reach a leaf other than the empty one.
    #[cfg(test)]
    pub(super) fn occupied(&self) -> Vec<u32> {
        (0..1 << 16)
            .filter(|&block| self.block(block) != 0)
            .collect()
    }

    /// The indices a key of /16 block `block` reaches, in leaf order.
    #[cfg(test)]
    pub(super) fn reachable(&self, block: u32) -> Vec<RuleIndex> {
        let leaf = &self.leaves[self.block(block) as usize];
        leaf.entries.iter().map(|e| e.index).collect()
    }

    /// Whether every page in use points at a leaf (the others are given
    /// back).
    #[cfg(test)]
    pub(super) fn pages_in_use_are_needed(&self) -> bool {
        self.top
            .iter()
            .all(|&page| page == 0 || self.pages[page as usize].iter().any(|&l| l != 0))
    }
}
