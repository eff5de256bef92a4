//! The per-packet pipeline, sans-IO: a frame, its ingress port and `now` in;
//! a verdict (transmit on a port, or drop for a reason) out. It never touches
//! a socket or a clock, so the same code runs under the AF_XDP workers, the
//! in-memory port of the tests and the benchmarks.
//!
//! The walk for one frame:
//!
//! 1. L2: Ethernet, through up to two 802.1Q/802.1ad tags; the destination
//!    MAC must be the ingress port's.
//! 2. L3: IPv4 (header checksum verified, RFC 1812 §5.2.2) or IPv6; the L4
//!    header of a first fragment must be whole (TCP, UDP, ICMP, ICMPv6).
//! 3. Addresses ([`martian`]): martian sources and destinations and
//!    directed broadcasts of connected subnets are dropped
//!    ([`DropReason::Martian`], [`DropReason::DirectedBroadcast`]).
//!    A packet to one of the appliance's own addresses leaves the walk
//!    here: the host endpoint's ingress policy judges it (the source
//!    check and conntrack included) and an allowed one is
//!    [`Verdict::Local`], for the driver to hand to the kernel; with no
//!    ingress policy for the host, or denied, it is
//!    [`DropReason::HostDenied`] (see [`crate::host`]).
//!    Source ([`source`]): the source address must be routed back through
//!    the ingress port (its [`RpFilter`]); with policy, checked once per
//!    flow direction inside the policy stage, without it per packet.
//! 4. Policy ([`filter`]): connection tracking, then the compiled policy
//!    for new flows; denied packets are dropped and counted per rule.
//! 5. TTL / hop limit: a packet that would expire is answered with ICMP time
//!    exceeded from the ingress port's address (rate limited) and dropped.
//! 6. Route: longest-prefix match → egress port and next hop.
//! 7. Neighbour: the next hop's MAC from the kernel's table; a miss asks for
//!    resolution (see [`Pipeline::take_unresolved`]) and the driver holds
//!    the frame until the neighbours change ([`Verdict::Unresolved`]).
//! 8. Rewrite: MACs, TTL − 1 with the IPv4 checksum updated incrementally
//!    (RFC 1624 eqn. 3), hop limit − 1 for IPv6. Transmit on the egress port.
//!
//! Steps 2 to 8 are one walk (`Pipeline::walk`) for IPv4 and IPv6 alike:
//! what differs between them (the header and its checks, martians,
//! broadcasts, which LPM, the ICMP error, the TTL rewrite) is the `l3`
//! module's `Family` trait, implemented by two zero-sized types, so the walk
//! is compiled once per family with nothing to dispatch at run time. The
//! policy facts are read through the checked `wire` views (`facts`).
//!
//! A VLAN-tagged frame is routed with its tags untouched (see
//! docs/ARCHITECTURE.md, "VLANs").
#![forbid(unsafe_code)]

pub mod counters;
mod facts;
pub mod filter;
mod icmp;
mod l3;
pub mod martian;
pub mod source;

pub use counters::{DropReason, PortCounters, SharedCounters};
pub use filter::{Filter, PacketFacts};
use l3::{Family, V4, V6};

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::Instant,
};

use crate::{
    policy::program::PolicyProgram,
    route::{NeighTable, RouteTable},
    topology::{PortId, RpFilter},
    wire::{EtherType, EthernetAddress, ethernet},
};

/// What the pipeline decided for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the (rewritten) frame, now `len` bytes long, on `port`.
    Tx {
        /// The egress port.
        port: PortId,
        /// The frame's length after rewriting.
        len: usize,
    },
    /// Drop the frame, counted under the reason.
    Drop(DropReason),
    /// Addressed to the appliance and allowed by the host endpoint's
    /// policy: hand the IP packet, `frame[l3..end]` (no Ethernet header,
    /// no padding), to the appliance's own kernel. Counted as delivered
    /// by the driver once it is.
    Local {
        /// Where the IP header starts.
        l3: usize,
        /// Where the IP packet ends.
        end: usize,
    },
    /// The next hop's MAC is not known yet: hold the frame (unchanged) and
    /// [`Pipeline::retry`] it when the neighbours change; resolution was
    /// requested. Not counted until the driver gives up
    /// ([`DropReason::NoNeighbour`]).
    Unresolved,
}

/// What the pipeline knows of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// The port's MAC: the source of what it transmits.
    pub mac: EthernetAddress,
    /// The port's IPv4 address: the source of the ICMP errors it sends.
    pub ipv4: Option<Ipv4Addr>,
    /// The port's IPv6 address (global, not link-local), likewise.
    pub ipv6: Option<Ipv6Addr>,
    /// How the sources of what it receives are checked.
    pub rp_filter: RpFilter,
}

/// The configuration a worker runs with: ports, routes, neighbours.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Indexed by [`PortId`].
    pub ports: Vec<PortInfo>,
    /// Connected and configured routes.
    pub routes: Arc<RouteTable>,
    /// The addresses of the appliance itself: never forwarded.
    pub local: Vec<IpAddr>,
}

/// ICMP errors a worker may send per second (Linux: net.ipv4.icmp_msgs_per_sec).
const ICMP_RATE_PER_SEC: u32 = 1000;
const ICMP_BURST: u32 = 50;

/// The pipeline of one worker.
#[derive(Debug)]
pub struct Pipeline {
    tables: Tables,
    neigh: Arc<NeighTable>,
    counters: Vec<PortCounters>,
    unresolved: Vec<(PortId, IpAddr)>,
    icmp_tokens: u32,
    icmp_refill_at: Option<Instant>,
    filter: Filter,
    /// The broadcast addresses of the connected IPv4 subnets.
    broadcasts: Vec<Ipv4Addr>,
}

/// Flows a pipeline tracks unless told otherwise.
pub const DEFAULT_CONNTRACK_CAPACITY: usize = 4096;

impl Pipeline {
    /// A pipeline over `tables`, with the neighbours known so far.
    pub fn new(tables: Tables, neigh: Arc<NeighTable>) -> Self {
        Self::with_policy(
            tables,
            neigh,
            Arc::new(PolicyProgram::allow_all(0)),
            DEFAULT_CONNTRACK_CAPACITY,
        )
    }

    /// A pipeline enforcing `policy`, tracking at most `capacity` flows.
    pub fn with_policy(
        tables: Tables,
        neigh: Arc<NeighTable>,
        policy: Arc<PolicyProgram>,
        capacity: usize,
    ) -> Self {
        let counters = vec![PortCounters::default(); tables.ports.len()];
        let broadcasts = martian::directed_broadcasts(&tables.routes);
        Self {
            broadcasts,
            tables,
            neigh,
            counters,
            unresolved: Vec::new(),
            icmp_tokens: ICMP_BURST,
            icmp_refill_at: None,
            filter: Filter::new(policy, capacity),
        }
    }

    /// Sets what becomes of traffic between addresses no endpoint claims
    /// (a pipeline made by [`Self::new`] or [`Self::with_policy`] allows it).
    pub fn set_unclaimed(&mut self, unclaimed: crate::policy::program::Unclaimed) {
        self.filter.set_unclaimed(unclaimed);
    }

    /// The policy stage (flow table, per-rule counters).
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The policy stage, mutable (policy swaps, counters, expiry).
    pub fn filter_mut(&mut self) -> &mut Filter {
        &mut self.filter
    }

    /// Adopts a newer policy: flows judged under the old one are judged
    /// again at their next packet. Returns the old policy's rule counters.
    pub fn set_policy(
        &mut self,
        policy: Arc<PolicyProgram>,
    ) -> (Arc<PolicyProgram>, Vec<(u64, u64)>) {
        self.filter.set_policy(policy)
    }

    /// Adopts a newer neighbour snapshot (cheap: an `Arc` swap).
    #[inline]
    pub fn set_neighbours(&mut self, neigh: Arc<NeighTable>) {
        self.neigh = neigh;
    }

    /// The running totals per port.
    pub fn counters(&self) -> &[PortCounters] {
        &self.counters
    }

    /// Mutable totals, for the port driver's own counts (tx, ring full).
    pub fn counters_mut(&mut self) -> &mut [PortCounters] {
        &mut self.counters
    }

    /// Next hops that were missing since the last call: the driver asks the
    /// kernel to resolve them.
    pub fn take_unresolved(&mut self) -> Vec<(PortId, IpAddr)> {
        std::mem::take(&mut self.unresolved)
    }

    /// Decides the fate of one frame. `buf` is the whole frame buffer (the
    /// frame's bytes first, then spare room an ICMP error may use); `len` is
    /// the frame's length. Counts rx and drops for the ingress port; the
    /// driver counts tx once the frame is on a ring.
    #[inline]
    pub fn process(
        &mut self,
        ingress: PortId,
        buf: &mut [u8],
        len: usize,
        now: Instant,
    ) -> Verdict {
        let c = &mut self.counters[ingress.index()];
        c.rx_packets += 1;
        c.rx_bytes += len as u64;
        self.retry(ingress, buf, len, now)
    }

    /// Decides again for a frame that was [`Verdict::Unresolved`]: as
    /// [`Self::process`], without counting it as received a second time.
    #[inline]
    pub fn retry(&mut self, ingress: PortId, buf: &mut [u8], len: usize, now: Instant) -> Verdict {
        let verdict = self.route(ingress, buf, len, now);
        if let Verdict::Drop(reason) = verdict {
            self.counters[ingress.index()].drop(reason);
        }
        verdict
    }

    fn route(&mut self, ingress: PortId, buf: &mut [u8], len: usize, now: Instant) -> Verdict {
        let Some(frame) = buf.get(..len) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let Ok(l2) = ethernet::l2_info(frame) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let eth = ethernet::Frame::new_unchecked(frame);
        let dst_mac = eth.dst_addr();
        if dst_mac != self.tables.ports[ingress.index()].mac {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let off = l2.l3_offset;
        match l2.ethertype {
            EtherType::Ipv4 => self.walk::<V4>(ingress, buf, len, off, now),
            EtherType::Ipv6 => self.walk::<V6>(ingress, buf, len, off, now),
            _ => Verdict::Drop(DropReason::NotIp),
        }
    }

    /// The L3 walk of one IP packet at `buf[off..len]`, for either family
    /// (see the module documentation for the stages).
    #[inline]
    fn walk<F: Family>(
        &mut self,
        ingress: PortId,
        buf: &mut [u8],
        len: usize,
        off: usize,
        now: Instant,
    ) -> Verdict {
        // 2. The header, checked through its view; the policy facts while
        //    the L4 view is at hand.
        let (ip, local, facts) = {
            let Ok((ip, l4)) = F::parse(&buf[..len], off) else {
                return Verdict::Drop(DropReason::Malformed);
            };
            let local = self.is_local(ip.dst.into());
            let facts = (local || self.filter.active())
                .then(|| facts::of(F::mapped(ip.src), F::mapped(ip.dst), ip.proto, &l4, len));
            (ip, local, facts)
        };
        // 3. Addresses: martians, the appliance's own, directed broadcasts.
        if F::martian(ip.src, ip.dst) {
            return Verdict::Drop(DropReason::Martian);
        }
        if local {
            return self.judge_host(ingress, ip.src.into(), facts.as_ref(), off..ip.end, now);
        }
        if F::directed_broadcast(&self.broadcasts, ip.dst) {
            return Verdict::Drop(DropReason::DirectedBroadcast);
        }
        // 4. The source check and policy.
        if let Err(reason) = self.admit(ingress, ip.src.into(), facts.as_ref(), now) {
            return Verdict::Drop(reason);
        }
        // 5. TTL / hop limit.
        if ip.hop_limit <= 1 {
            return self.time_exceeded::<F>(ingress, buf, len, off, now);
        }
        // 6. Route.
        let Some(route) = F::lookup(&self.tables.routes, ip.dst).copied() else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        // 7. Neighbour.
        let next_hop = route.via.unwrap_or(ip.dst.into());
        let Some(mac) = self.neighbour(route.port, next_hop) else {
            return Verdict::Unresolved;
        };
        // 8. Rewrite.
        self.rewrite_l2(buf, route.port, mac);
        F::forward(&mut buf[off..len], &ip);
        Verdict::Tx {
            port: route.port,
            len,
        }
    }

    /// The source check and the policy stage. With policy the filter asks
    /// for the source check only when conntrack has not yet seen this flow
    /// direction arrive on this port; without, it is made for every packet.
    #[inline]
    fn admit(
        &mut self,
        ingress: PortId,
        src: IpAddr,
        facts: Option<&PacketFacts>,
        now: Instant,
    ) -> Result<(), DropReason> {
        let tables = &self.tables;
        let source_valid = || tables.source_valid(ingress, src);
        match facts {
            Some(f) => self.filter.check(f, ingress, source_valid, now),
            None if source_valid() => Ok(()),
            None => Err(DropReason::Spoofed),
        }
    }

    /// A packet to the appliance's own address: judged by the host
    /// endpoint's ingress policy (see [`crate::host`]). The host has a
    /// program only when some policy selects it for ingress; without one
    /// nothing is allowed, as a Calico host endpoint with no policy denies.
    #[cold]
    fn judge_host(
        &mut self,
        ingress: PortId,
        src: IpAddr,
        facts: Option<&PacketFacts>,
        ip: std::ops::Range<usize>,
        now: Instant,
    ) -> Verdict {
        let Some(f) = facts else {
            return Verdict::Drop(DropReason::HostDenied);
        };
        let has_policy = self
            .filter
            .policy()
            .endpoints
            .get(&f.dst)
            .is_some_and(|e| e.ingress.is_some());
        if !has_policy {
            return Verdict::Drop(DropReason::HostDenied);
        }
        match self.admit(ingress, src, Some(f), now) {
            Ok(()) => Verdict::Local {
                l3: ip.start,
                end: ip.end,
            },
            Err(DropReason::Policy | DropReason::Unclaimed) => {
                Verdict::Drop(DropReason::HostDenied)
            }
            Err(reason) => Verdict::Drop(reason),
        }
    }

    #[inline]
    fn is_local(&self, dst: IpAddr) -> bool {
        self.tables.local.contains(&dst)
    }

    #[inline]
    fn neighbour(&mut self, port: PortId, next_hop: IpAddr) -> Option<EthernetAddress> {
        let mac = self.neigh.get(port, next_hop);
        if mac.is_none() && !self.unresolved.contains(&(port, next_hop)) {
            self.unresolved.push((port, next_hop));
        }
        mac
    }

    #[inline]
    fn rewrite_l2(&self, buf: &mut [u8], egress: PortId, dst: EthernetAddress) {
        let mut eth = ethernet::Frame::new_unchecked(buf);
        eth.set_dst_addr(dst);
        eth.set_src_addr(self.tables.ports[egress.index()].mac);
    }

    /// Takes a token of the ICMP error rate limit (a token bucket refilled
    /// continuously at [`ICMP_RATE_PER_SEC`]).
    fn icmp_allowed(&mut self, now: Instant) -> bool {
        let last = *self.icmp_refill_at.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last);
        let earned = (elapsed.as_micros() * u128::from(ICMP_RATE_PER_SEC) / 1_000_000) as u32;
        if earned > 0 {
            self.icmp_tokens = (self.icmp_tokens + earned).min(ICMP_BURST);
            self.icmp_refill_at = Some(now);
        }
        if self.icmp_tokens == 0 {
            return false;
        }
        self.icmp_tokens -= 1;
        true
    }

    /// Answers an expired packet (at `buf[off..len]`, parsed once already)
    /// with ICMP time exceeded from the ingress port's address, when it has
    /// one of the family, the packet may be answered and the rate limit
    /// allows. The original is counted as expired either way.
    #[cold]
    fn time_exceeded<F: Family>(
        &mut self,
        ingress: PortId,
        buf: &mut [u8],
        len: usize,
        off: usize,
        now: Instant,
    ) -> Verdict {
        let port = self.tables.ports[ingress.index()];
        let Some(src) = F::port_addr(&port) else {
            return Verdict::Drop(DropReason::TtlExpired);
        };
        let answerable = F::parse(&buf[..len], off).is_ok_and(|(ip, l4)| F::answerable(&ip, &l4));
        if !answerable || !self.icmp_allowed(now) {
            return Verdict::Drop(DropReason::TtlExpired);
        }
        match F::time_exceeded(buf, len, off, port.mac, src) {
            Some(new_len) => {
                self.counters[ingress.index()].icmp_errors_sent += 1;
                // The ICMP error replaces the frame; the original is still counted as expired.
                self.counters[ingress.index()].drop(DropReason::TtlExpired);
                Verdict::Tx {
                    port: ingress,
                    len: new_len,
                }
            }
            None => Verdict::Drop(DropReason::TtlExpired),
        }
    }
}

#[cfg(test)]
mod tests;
