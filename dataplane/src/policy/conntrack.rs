//! Connection tracking for the stateful firewall: one table per worker
//! thread, no locks, sans-IO (every call takes `now`).
//!
//! # Table layout
//!
//! A flow is stored once, in a dense array of [`Flow`]s (`flows`), with the
//! 32-bit hash of its key beside it (`hashes`). The index that finds it is a
//! separate open-addressing table of 8-byte entries (hash, slot) with linear
//! probing, kept at most half full and cleaned by backward shift (see
//! `index.rs`). The hash is direction-normalised: the two endpoints are put
//! in a canonical order before hashing, so a packet of either direction
//! probes the same chain, and the direction falls out of comparing its key
//! with the stored original key ([`FlowKey::reversed`]).
//!
//! Everything is allocated at [`Conntrack::new`] and never again: about
//! `capacity × (size_of::<Flow>() + 4) + next_pow2(2 × capacity) × 8`
//! bytes (≈ 150 MB for a million flows). Removing a flow moves the last
//! flow of the array into its place (one index entry repointed), so the
//! array stays dense: [`Conntrack::iter`] and the expiry sweep read it
//! sequentially and eviction samples it uniformly.
//!
//! # Expiry
//!
//! A flow expires when `now - last_seen >= timeout`, the timeout depending
//! on its protocol and state ([`Timeouts`]): exactly at the boundary it is
//! gone, as Linux's `nf_ct_is_expired`. Expiry is checked lazily on every
//! lookup, and [`Conntrack::expire`] sweeps the array round-robin, a few
//! flows at a time; the pipeline calls it on a clock, busy or idle (see
//! `pipeline::Filter::expire_due`), as Linux's conntrack GC worker runs
//! whatever the load.
//!
//! # Eviction
//!
//! When the table is full, [`Conntrack::insert`] first reclaims an expired
//! flow from the new key's probe chain (the neighbourhood it has just read)
//! or from [`EVICTION_SAMPLES`] flows drawn at random. Failing that it
//! evicts a live flow, half-open ones first, as Linux's `early_drop` takes
//! only entries not yet `ASSURED` (see `half_open.rs`): while any flow is
//! half-open, the one idle the longest of [`EVICTION_SAMPLES`] half-open
//! flows drawn at random is evicted (sampled LRU, as Redis does), and an
//! established flow never is. Only a table with no half-open flow left
//! evicts the one idle the longest among the chain and the sample. So a
//! flood of SYNs, scans or one-way datagrams, however fast, displaces
//! only its own kind; the table never grows, and, unlike Linux, which
//! drops the new packet when it finds nothing to drop early, no new flow
//! is refused. [`ConntrackStats`] counts the evictions by kind.
//!
//! # Protocols
//!
//! TCP follows Linux's state machine (see [`TcpState`] and `tcp.rs`); UDP
//! (and UDP-Lite) has the short `udp` timeout until a packet was seen in the
//! reply direction, then `udp_stream`; ICMP and ICMPv6 echo exchanges are
//! flows keyed by the echo identifier; any other protocol gets `other`.
#![forbid(unsafe_code)]

mod half_open;
mod index;
mod tcp;
#[cfg(test)]
mod tests;

use std::{
    collections::hash_map::RandomState,
    fmt,
    hash::BuildHasher,
    net::IpAddr,
    time::{Duration, Instant},
};

use half_open::{HalfOpen, is_half_open};
use index::{Index, Pos, Seed};
pub use tcp::TcpState;
use tcp::{Segment, Step};

/// IP protocol numbers the tracker treats specially.
mod proto {
    pub(super) const ICMP: u8 = 1;
    pub(super) const TCP: u8 = 6;
    pub(super) const UDP: u8 = 17;
    pub(super) const ICMPV6: u8 = 58;
    pub(super) const UDPLITE: u8 = 136;
}

/// How many random flows an insert into a full table compares (sampled LRU).
pub const EVICTION_SAMPLES: usize = 8;

/// How many entries of the new key's probe chain an insert into a full
/// table checks for an expired flow before sampling.
const NEIGHBOURHOOD: usize = 8;

/// How many flows [`Conntrack::expire`] may look at per flow it may remove.
const EXPIRE_SCAN_PER_REMOVAL: usize = 16;

/// The addresses, protocol and ports of a packet, in the direction it
/// travels.
///
/// Addresses are `u128`, IPv4 as mapped addresses (`::ffff:a.b.c.d`, see
/// [`FlowKey::ip`]), so one table serves both families. For ICMP and ICMPv6
/// echo request and reply, both ports are the echo identifier; for other
/// ICMP messages and protocols without ports, both are 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlowKey {
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// IP protocol number.
    pub proto: u8,
    /// Source port (ICMP echo: the identifier).
    pub sport: u16,
    /// Destination port (ICMP echo: the identifier).
    pub dport: u16,
}

impl FlowKey {
    /// The key of a packet travelling the other way.
    #[inline]
    pub fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            sport: self.dport,
            dport: self.sport,
        }
    }

    /// An address as a key holds it: IPv6 as is, IPv4 mapped.
    pub fn ip(addr: IpAddr) -> u128 {
        match addr {
            IpAddr::V4(a) => a.to_ipv6_mapped().to_bits(),
            IpAddr::V6(a) => a.to_bits(),
        }
    }
}

/// Which way a packet travels relative to its flow's first packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// As the packet that created the flow.
    Original,
    /// The other way.
    Reply,
}

impl Direction {
    /// 0 for [`Direction::Original`], 1 for [`Direction::Reply`]: the index
    /// into [`Flow::packets`] and [`Flow::bytes`].
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// A tracked flow.
///
/// Callers may change `verdict` and `generation`; they must not change
/// `key` (the flow would no longer be found under it; it would still expire).
///
/// 128 bytes, aligned to 64 so that a flow spans exactly two cache lines.
#[derive(Clone, PartialEq, Eq, Debug)]
#[repr(align(64))]
pub struct Flow {
    /// The key of the packet that created the flow (the original direction).
    pub key: FlowKey,
    /// What the policy decided (a rule id); opaque to the tracker, set by the
    /// caller.
    pub verdict: u32,
    /// The policy generation that judged the flow.
    pub generation: u64,
    /// The TCP state; `None` for other protocols.
    pub tcp: Option<TcpState>,
    /// Packets counted per [`Direction::index`].
    pub packets: [u64; 2],
    /// Bytes counted per [`Direction::index`].
    pub bytes: [u64; 2],
    /// When the flow was created (or restarted by a SYN after closing).
    pub created: Instant,
    /// When the last counted packet was seen: the expiry clock.
    pub last_seen: Instant,
    /// Per [`Direction::index`], the port (a caller's index) that
    /// direction's packets were seen arriving on, or [`NO_PORT`]. Set by the
    /// caller after it validated a packet's source on that port (see
    /// [`Conntrack::lookup_on`]); like Calico's eBPF conntrack, which keeps
    /// each leg's ingress interface for its reverse-path check.
    pub ingress: [u8; 2],
}

/// [`Flow::ingress`] of a direction not yet seen on any port.
pub const NO_PORT: u8 = u8::MAX;

impl Flow {
    /// Whether a packet was counted in the reply direction.
    #[inline]
    pub fn seen_reply(&self) -> bool {
        self.packets[1] > 0
    }
}

/// How long a flow may stay idle, per protocol and state. The defaults are
/// Linux's (the `net.netfilter.nf_conntrack_*` sysctls named on each field).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timeouts {
    /// `nf_conntrack_tcp_timeout_syn_sent` (120 s; also `_syn_sent2`).
    pub tcp_syn_sent: Duration,
    /// `nf_conntrack_tcp_timeout_syn_recv` (60 s).
    pub tcp_syn_recv: Duration,
    /// `nf_conntrack_tcp_timeout_established` (432000 s, 5 days).
    pub tcp_established: Duration,
    /// `nf_conntrack_tcp_timeout_fin_wait` (120 s).
    pub tcp_fin_wait: Duration,
    /// `nf_conntrack_tcp_timeout_close_wait` (60 s).
    pub tcp_close_wait: Duration,
    /// `nf_conntrack_tcp_timeout_last_ack` (30 s).
    pub tcp_last_ack: Duration,
    /// `nf_conntrack_tcp_timeout_time_wait` (120 s).
    pub tcp_time_wait: Duration,
    /// `nf_conntrack_tcp_timeout_close` (10 s).
    pub tcp_close: Duration,
    /// `nf_conntrack_udp_timeout` (30 s): UDP seen one way only.
    pub udp: Duration,
    /// `nf_conntrack_udp_timeout_stream` (120 s): UDP seen both ways.
    pub udp_stream: Duration,
    /// `nf_conntrack_icmp_timeout` and `nf_conntrack_icmpv6_timeout` (30 s).
    pub icmp: Duration,
    /// `nf_conntrack_generic_timeout` (600 s): any other protocol.
    pub other: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Self {
            tcp_syn_sent: s(120),
            tcp_syn_recv: s(60),
            tcp_established: s(432_000),
            tcp_fin_wait: s(120),
            tcp_close_wait: s(60),
            tcp_last_ack: s(30),
            tcp_time_wait: s(120),
            tcp_close: s(10),
            udp: s(30),
            udp_stream: s(120),
            icmp: s(30),
            other: s(600),
        }
    }
}

impl Timeouts {
    /// The timeout of a TCP state.
    pub fn tcp(&self, state: TcpState) -> Duration {
        match state {
            TcpState::SynSent => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
        }
    }

    /// How long `flow` may stay idle in its present state.
    #[inline]
    pub fn of(&self, flow: &Flow) -> Duration {
        match (flow.tcp, flow.key.proto) {
            (Some(state), _) => self.tcp(state),
            (None, proto::UDP | proto::UDPLITE) if flow.seen_reply() => self.udp_stream,
            (None, proto::UDP | proto::UDPLITE) => self.udp,
            (None, proto::ICMP | proto::ICMPV6) => self.icmp,
            (None, _) => self.other,
        }
    }
}

/// The flow of a packet, if tracked.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The packet belongs to `flow`, travelling in `dir`.
    Hit {
        /// The flow, updated by the packet.
        flow: &'a mut Flow,
        /// The packet's direction within it.
        dir: Direction,
    },
    /// The packet belongs to `flow` but is a TCP segment with an invalid
    /// flag combination or invalid in the flow's state (Linux's `sIV`,
    /// which conntrack marks INVALID and Calico drops). It changed
    /// nothing and is counted in [`ConntrackStats::invalid`].
    Invalid {
        /// The flow, unchanged.
        flow: &'a Flow,
        /// The packet's direction within it.
        dir: Direction,
    },
    /// No live flow has this packet's key in either direction.
    Miss,
    /// The packet's flow is tracked, but its direction was not seen on
    /// the packet's port: see [`Conntrack::lookup_on`].
    Unbound,
}

/// What a table holds and has done, for `causeway stats`.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug, serde::Serialize)]
pub struct ConntrackStats {
    /// Flows held now.
    pub entries: usize,
    /// The most flows the table holds.
    pub capacity: usize,
    /// Flows created (including ones that replaced a flow with the same key).
    pub inserted: u64,
    /// Flows removed because their timeout passed: at lookup, by
    /// [`Conntrack::expire`], or reclaimed by an insert into a full table.
    pub expired: u64,
    /// Flows held now that are half-open: TCP before its handshake
    /// completed (or after a RST), others not yet answered (Linux: not
    /// `ASSURED`).
    pub half_open: usize,
    /// Live half-open flows evicted to make room (Linux's `early_drop`):
    /// what a SYN flood or a scan costs the table.
    pub evicted_half_open: u64,
    /// Live established flows (answered; TCP past its handshake) evicted to
    /// make room: only ever when no flow was half-open.
    pub evicted_established: u64,
    /// Inserts that found the table full (each then reclaimed an expired
    /// flow or evicted a live one, half-open first; none is refused).
    pub table_full: u64,
    /// TCP segments with an invalid flag combination or invalid in the
    /// flow's state (Linux's `sIV`); they change nothing.
    pub invalid: u64,
}

impl ConntrackStats {
    /// Live flows evicted, of either kind.
    pub fn evicted(&self) -> u64 {
        self.evicted_half_open + self.evicted_established
    }

    /// Adds `other` into `self` (the tables of several workers).
    pub fn add(&mut self, other: &Self) {
        self.entries += other.entries;
        self.capacity += other.capacity;
        self.half_open += other.half_open;
        self.inserted += other.inserted;
        self.expired += other.expired;
        self.evicted_half_open += other.evicted_half_open;
        self.evicted_established += other.evicted_established;
        self.table_full += other.table_full;
        self.invalid += other.invalid;
    }
}

/// The connection table of one worker.
pub struct Conntrack {
    timeouts: Timeouts,
    capacity: usize,
    /// The flows, densely packed.
    flows: Vec<Flow>,
    /// `hashes[i]` is the index hash of `flows[i]`.
    hashes: Vec<u32>,
    index: Index,
    /// The half-open flows, evicted first.
    half_open: HalfOpen,
    seed: Seed,
    /// xorshift64* state for eviction sampling.
    rng: u64,
    /// Where the next [`Conntrack::expire`] sweep resumes.
    cursor: usize,
    stats: ConntrackStats,
}

impl fmt::Debug for Conntrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conntrack")
            .field("timeouts", &self.timeouts)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Conntrack {
    /// An empty table for at most `capacity` flows, with all its memory
    /// allocated now. The hash is keyed from the process's random source
    /// ([`RandomState`]); [`Conntrack::with_seed`] is the deterministic form.
    ///
    /// # Panics
    /// If `capacity` is 0 or above 2³⁰.
    pub fn new(capacity: usize, timeouts: Timeouts) -> Self {
        let seed = RandomState::new().hash_one(0x6361_7573_6577_6179_u64);
        Self::with_seed(capacity, timeouts, seed)
    }

    /// As [`Conntrack::new`], with the hash key and the eviction sampling
    /// derived from `seed`: the same calls give the same results.
    ///
    /// # Panics
    /// If `capacity` is 0 or above 2³⁰.
    pub fn with_seed(capacity: usize, timeouts: Timeouts, seed: u64) -> Self {
        assert!(
            (1..=Index::MAX_FLOWS).contains(&capacity),
            "conntrack capacity {capacity} is outside 1..={}",
            Index::MAX_FLOWS
        );
        let mut s = seed;
        let rng = index::splitmix64(&mut s) | 1;
        Self {
            timeouts,
            capacity,
            flows: Vec::with_capacity(capacity),
            hashes: Vec::with_capacity(capacity),
            index: Index::new(capacity),
            half_open: HalfOpen::new(capacity),
            seed: Seed::new(index::splitmix64(&mut s)),
            rng,
            cursor: 0,
            stats: ConntrackStats {
                capacity,
                ..ConntrackStats::default()
            },
        }
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Changes the timeouts; they apply to every flow from now on, measured
    /// from its `last_seen`.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// When `flow` expires if no packet refreshes it.
    pub fn deadline(&self, flow: &Flow) -> Instant {
        flow.last_seen + self.timeouts.of(flow)
    }

    /// Bytes of memory the table holds (allocated at creation).
    pub fn memory(&self) -> usize {
        self.flows.capacity() * size_of::<Flow>()
            + self.hashes.capacity() * size_of::<u32>()
            + self.index.bytes()
            + self.half_open.bytes()
    }

    /// Finds the flow of a packet in either direction and accounts the
    /// packet to it: TCP state from `tcp_flags` (the raw flags byte; ignored
    /// for other protocols), the direction's packet and byte counters
    /// (`len` bytes) and `last_seen = now`.
    ///
    /// An expired flow is removed and reported as [`Lookup::Miss`].
    ///
    /// A TCP segment with an invalid flag combination, or invalid in the
    /// flow's state (e.g. an ACK from the client before the SYN/ACK), is
    /// counted in [`ConntrackStats::invalid`] and answered
    /// [`Lookup::Invalid`]; one that Linux ignores (e.g. a SYN on an
    /// established flow) is not counted and is answered [`Lookup::Hit`], as
    /// Linux accepts it. Neither changes the flow (state, counters,
    /// `last_seen`).
    ///
    /// A SYN from the original side on a `TimeWait` or `Close` flow starts
    /// it again (state `SynSent`, counters from this packet, `created =
    /// now`, verdict kept). A SYN from the reply side on a `TimeWait` flow
    /// removes it and reports [`Lookup::Miss`]: the packet opens a new
    /// connection the other way, which the policy must judge.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, tcp_flags: u8, len: u32, now: Instant) -> Lookup<'_> {
        self.lookup_at(key, None, tcp_flags, len, now)
    }

    /// As [`Conntrack::lookup`], for a packet that arrived on port `port`
    /// (the caller's index; [`NO_PORT`] for one it cannot name, which is
    /// never bound).
    ///
    /// If the flow's direction of this packet was seen on another port, or
    /// on none yet ([`Flow::ingress`]), nothing is accounted or changed and
    /// the answer is [`Lookup::Unbound`]: the caller checks the packet's
    /// source for that port (a route lookup) and, if it may come from
    /// there, calls again with `verified`, which records the port and
    /// looks up as usual. So a packet with a spoofed source cannot touch a
    /// flow's state (a forged RST cannot close it), and the source check
    /// costs one route lookup per flow direction, not per packet.
    #[inline]
    pub fn lookup_on(
        &mut self,
        key: &FlowKey,
        port: u8,
        verified: bool,
        tcp_flags: u8,
        len: u32,
        now: Instant,
    ) -> Lookup<'_> {
        self.lookup_at(key, Some((port, verified)), tcp_flags, len, now)
    }

    #[inline]
    fn lookup_at(
        &mut self,
        key: &FlowKey,
        arrival: Option<(u8, bool)>,
        tcp_flags: u8,
        len: u32,
        now: Instant,
    ) -> Lookup<'_> {
        let Some((pos, slot, dir)) = self.find(key) else {
            return Lookup::Miss;
        };
        if self.expired(slot, now) {
            self.remove_at(pos, slot);
            self.stats.expired += 1;
            return Lookup::Miss;
        }
        if let Some((port, verified)) = arrival {
            let seen = &mut self.flows[slot].ingress[dir.index()];
            if *seen != port || port == NO_PORT {
                if !verified {
                    return Lookup::Unbound;
                }
                if port != NO_PORT {
                    *seen = port;
                }
            }
        }
        let flow = &self.flows[slot];
        if let Some(state) = flow.tcp {
            let step = match Segment::classify(tcp_flags) {
                Some(segment) => tcp::step(state, dir, segment, flow.seen_reply()),
                None => Step::Invalid,
            };
            match step {
                Step::To(next) => self.flows[slot].tcp = Some(next),
                Step::Ignore => {
                    return Lookup::Hit {
                        flow: &mut self.flows[slot],
                        dir,
                    };
                }
                Step::Invalid => {
                    self.stats.invalid += 1;
                    return Lookup::Invalid {
                        flow: &self.flows[slot],
                        dir,
                    };
                }
                Step::Restart => {
                    let flow = &mut self.flows[slot];
                    flow.tcp = Some(TcpState::SynSent);
                    flow.packets = [0; 2];
                    flow.bytes = [0; 2];
                    flow.created = now;
                }
                Step::Reopen => {
                    self.remove_at(pos, slot);
                    return Lookup::Miss;
                }
            }
        }
        let flow = &mut self.flows[slot];
        flow.packets[dir.index()] += 1;
        flow.bytes[dir.index()] += u64::from(len);
        flow.last_seen = now;
        self.half_open.set(slot, is_half_open(flow));
        Lookup::Hit {
            flow: &mut self.flows[slot],
            dir,
        }
    }

    /// Creates the flow of a packet the policy allowed: this packet is its
    /// original direction and is counted. `verdict` and `generation` are
    /// stored for the caller.
    ///
    /// A TCP flow starts in `SynSent` from a SYN and in `Established` from an
    /// ACK (mid-stream pickup, as Linux's `nf_conntrack_tcp_loose`); any
    /// other segment (SYN/ACK, FIN, RST, invalid flags) cannot start a
    /// connection: it is counted `invalid` and the flow starts in `Close`,
    /// with its short timeout.
    ///
    /// A flow already tracked under this key (either direction) is replaced.
    /// When the table is full, room is made first (see the module docs:
    /// an expired flow, else a half-open one, else the least recently seen
    /// of a random sample); it never grows.
    pub fn insert(
        &mut self,
        key: FlowKey,
        tcp_flags: u8,
        len: u32,
        verdict: u32,
        generation: u64,
        now: Instant,
    ) -> &mut Flow {
        let tcp = (key.proto == proto::TCP).then(|| {
            Segment::classify(tcp_flags)
                .and_then(tcp::initial)
                .unwrap_or_else(|| {
                    self.stats.invalid += 1;
                    TcpState::Close
                })
        });
        let flow = Flow {
            key,
            verdict,
            generation,
            tcp,
            packets: [1, 0],
            bytes: [u64::from(len), 0],
            created: now,
            last_seen: now,
            ingress: [NO_PORT; 2],
        };
        self.stats.inserted += 1;
        let hash = self.hash(&key);
        let half_open = is_half_open(&flow);
        let slot = if let Some((_, slot, _)) = self.find_hashed(&key, hash) {
            self.flows[slot] = flow;
            self.half_open.set(slot, half_open);
            slot
        } else {
            if self.flows.len() == self.capacity {
                self.make_room(hash, now);
            }
            let slot = self.flows.len();
            self.flows.push(flow);
            self.hashes.push(hash);
            self.half_open.push(half_open);
            self.index.insert(hash, slot);
            slot
        };
        &mut self.flows[slot]
    }

    /// The flow an ICMP error is about, if tracked: `inner` is the key of the
    /// packet the error quotes, as its sender sent it (so reversed relative
    /// to the error, which travels back to that sender); either direction of
    /// the flow matches. Nothing is counted or refreshed (as Linux, a
    /// related packet does not extend its flow); an expired flow is removed.
    ///
    /// The caller decides which messages are errors ([`is_icmp_error`]) and
    /// should check that the error travels towards the quoted packet's
    /// source (outer destination = `inner.src`).
    ///
    /// It is also a lookup that accounts nothing, for callers that need a
    /// flow again after [`Conntrack::lookup`] counted the packet.
    pub fn related(&mut self, inner: &FlowKey, now: Instant) -> Option<&mut Flow> {
        let (pos, slot, _) = self.find(inner)?;
        if self.expired(slot, now) {
            self.remove_at(pos, slot);
            self.stats.expired += 1;
            return None;
        }
        Some(&mut self.flows[slot])
    }

    /// Forgets the flow of `key` (either direction); whether there was one.
    pub fn remove(&mut self, key: &FlowKey) -> bool {
        match self.find(key) {
            Some((pos, slot, _)) => {
                self.remove_at(pos, slot);
                true
            }
            None => false,
        }
    }

    /// Removes expired flows, at most `budget` of them, and returns how many
    /// it removed. It looks at no more than `16 × budget` flows and at most
    /// one round of the table, resuming where the previous call stopped: a
    /// worker calls it with a small budget when idle, and a call with a
    /// budget of at least the number of flows sweeps the whole table.
    pub fn expire(&mut self, now: Instant, budget: usize) -> usize {
        let limit = budget.saturating_mul(EXPIRE_SCAN_PER_REMOVAL);
        let start = self.cursor.min(self.flows.len());
        let mut i = start;
        let mut wrapped = false;
        let (mut looked, mut removed) = (0, 0);
        while removed < budget && looked < limit {
            if i >= self.flows.len() {
                if wrapped {
                    break;
                }
                (i, wrapped) = (0, true);
            }
            if wrapped && i >= start {
                break;
            }
            looked += 1;
            if self.expired(i, now) {
                // The last flow moves into `i`: look at it next. (After
                // wrapping it may be one already looked at; that costs a
                // look, not a miss.)
                let pos = self.index.position_of(self.hashes[i], i);
                self.remove_at(pos, i);
                removed += 1;
            } else {
                i += 1;
            }
        }
        self.cursor = i;
        self.stats.expired += removed as u64;
        removed
    }

    /// The number of flows held.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The table's counters.
    pub fn stats(&self) -> ConntrackStats {
        ConntrackStats {
            entries: self.flows.len(),
            half_open: self.half_open.len(),
            ..self.stats
        }
    }

    /// Every flow held, in no particular order, including flows whose
    /// timeout has passed but that no lookup or sweep has removed yet
    /// (compare [`Conntrack::deadline`] with `now`).
    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.flows.iter()
    }

    #[inline]
    fn hash(&self, key: &FlowKey) -> u32 {
        index::hash(&self.seed, key)
    }

    #[inline]
    fn find(&self, key: &FlowKey) -> Option<(Pos, usize, Direction)> {
        self.find_hashed(key, self.hash(key))
    }

    #[inline]
    fn find_hashed(&self, key: &FlowKey, hash: u32) -> Option<(Pos, usize, Direction)> {
        let reversed = key.reversed();
        self.index.find(hash, |slot| {
            let stored = &self.flows[slot].key;
            if *stored == *key {
                Some(Direction::Original)
            } else if *stored == reversed {
                Some(Direction::Reply)
            } else {
                None
            }
        })
    }

    #[inline]
    fn expired(&self, slot: usize, now: Instant) -> bool {
        let flow = &self.flows[slot];
        now.saturating_duration_since(flow.last_seen) >= self.timeouts.of(flow)
    }

    /// Removes the flow in `slot`, whose index entry is at `pos`, moving the
    /// last flow into its place.
    fn remove_at(&mut self, pos: Pos, slot: usize) {
        self.index.remove(pos);
        let last = self.flows.len() - 1;
        if slot != last {
            let moved = self.index.position_of(self.hashes[last], last);
            self.index.set_slot(moved, slot);
        }
        self.flows.swap_remove(slot);
        self.hashes.swap_remove(slot);
        self.half_open.swap_remove(slot);
    }

    /// Frees one slot of a full table for a flow hashing to `hash`: an
    /// expired flow of the probe chain or of a random sample, else the
    /// least recently seen of a random sample of half-open flows, else (no
    /// flow is half-open) the least recently seen of the chain and the
    /// sample.
    fn make_room(&mut self, hash: u32, now: Instant) {
        self.stats.table_full += 1;
        // Candidates: (index position if known, slot). The probe chain the
        // insert walks anyway comes first, so its expired flows win.
        let mut candidates = [(None, 0); NEIGHBOURHOOD + EVICTION_SAMPLES];
        let mut n = 0;
        for (pos, slot) in self.index.chain(hash, NEIGHBOURHOOD) {
            candidates[n] = (Some(pos), slot);
            n += 1;
        }
        for _ in 0..EVICTION_SAMPLES {
            candidates[n] = (None, self.random_slot(self.flows.len()));
            n += 1;
        }
        let candidates = &candidates[..n];
        // Read every candidate before deciding anything: the loads are
        // independent, so their cache misses can overlap.
        let mut seen = [now; NEIGHBOURHOOD + EVICTION_SAMPLES];
        for (seen, &(_, slot)) in seen.iter_mut().zip(candidates) {
            *seen = self.flows[slot].last_seen;
        }
        if let Some(&(pos, slot)) = candidates
            .iter()
            .find(|&&(_, slot)| self.expired(slot, now))
        {
            self.evict(pos, slot);
            self.stats.expired += 1;
            return;
        }
        let (pos, slot) = if self.half_open.len() > 0 {
            // Linux's early_drop: never an established flow while a
            // half-open one is left.
            let n = self.half_open.len();
            let first = self.random_slot(n);
            let mut oldest = self.half_open.get(first);
            for _ in 1..EVICTION_SAMPLES {
                let i = self.random_slot(n);
                let slot = self.half_open.get(i);
                if self.flows[slot].last_seen < self.flows[oldest].last_seen {
                    oldest = slot;
                }
            }
            (None, oldest)
        } else {
            let oldest = (0..n)
                .min_by_key(|&i| seen[i])
                .expect("a full table has flows");
            candidates[oldest]
        };
        if is_half_open(&self.flows[slot]) {
            self.stats.evicted_half_open += 1;
        } else {
            self.stats.evicted_established += 1;
        }
        self.evict(pos, slot);
    }

    /// Removes the flow in `slot`, whose index entry is at `pos` if known.
    fn evict(&mut self, pos: Option<Pos>, slot: usize) {
        let pos = pos.unwrap_or_else(|| self.index.position_of(self.hashes[slot], slot));
        self.remove_at(pos, slot);
    }

    /// A number drawn uniformly from `0..n` (xorshift64*, multiply-shift
    /// range).
    fn random_slot(&mut self, n: usize) -> usize {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((u128::from(r) * n as u128) >> 64) as usize
    }
}

/// What a TCP segment that matches no tracked flow can be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TcpFirst {
    /// A SYN (PSH, URG, ECE and CWR aside): it may open a connection.
    Syn,
    /// Valid flags, but not a SYN (an ACK, a SYN/ACK, a FIN, a RST): it
    /// belongs to a connection this table does not know.
    NotSyn,
    /// A flag combination no connection ever sends (SYN+FIN, SYN+RST, no
    /// flags, FIN without ACK, ...; Linux's `tcp_valid_flags`).
    BadFlags,
}

impl TcpFirst {
    /// The kind of a TCP segment with the raw flags byte `tcp_flags`.
    pub fn of(tcp_flags: u8) -> Self {
        match Segment::classify(tcp_flags) {
            Some(Segment::Syn) => Self::Syn,
            Some(_) => Self::NotSyn,
            None => Self::BadFlags,
        }
    }
}

/// Whether an ICMP (`proto` 1) or ICMPv6 (58) message of type `icmp_type`
/// is an error that quotes a packet, for [`Conntrack::related`]: destination
/// unreachable (ICMPv4 fragmentation needed included), time exceeded and
/// parameter problem, and ICMPv6 packet too big. Redirect and source quench
/// (deprecated, RFC 6633) are not.
pub fn is_icmp_error(proto: u8, icmp_type: u8) -> bool {
    match proto {
        // RFC 792: 3 destination unreachable, 11 time exceeded,
        // 12 parameter problem.
        proto::ICMP => matches!(icmp_type, 3 | 11 | 12),
        // RFC 4443 §3: 1 destination unreachable, 2 packet too big,
        // 3 time exceeded, 4 parameter problem.
        proto::ICMPV6 => matches!(icmp_type, 1..=4),
        _ => false,
    }
}
