//! Per-port packet counters and drop reasons.
//!
//! A worker counts into plain integers on its hot path and publishes them to
//! shared atomics once per batch ([`SharedCounters::publish`]); readers sum
//! the workers' published values. One writer per cell, so publishing is a
//! plain store, never a locked read-modify-write.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was dropped. Indexes [`PortCounters::drops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// A header was truncated or inconsistent (lengths, version, checksum).
    Malformed = 0,
    /// Not IPv4 or IPv6 (the XDP program passes ARP and the like to the kernel).
    NotIp = 1,
    /// The destination MAC is neither the port's nor multicast.
    NotForUs = 2,
    /// Addressed to the appliance itself and allowed by the host
    /// endpoint's policy, but there was no way into its kernel: the worker
    /// has no local stack (tests, benchmarks) or the TUN device's queue was
    /// full (see [`crate::host`]).
    Local = 3,
    /// No route to the destination.
    NoRoute = 4,
    /// The next hop's MAC stayed unresolved (the frame was held
    /// [`crate::port::HOLD_FOR`], or the hold queue was full).
    NoNeighbour = 5,
    /// TTL or hop limit would reach zero.
    TtlExpired = 6,
    /// The egress port's transmit ring was full.
    TxRingFull = 7,
    /// The frame spans several buffers (AF_XDP multi-buffer), not supported.
    Fragmented = 8,
    /// Denied by network policy (counted under the rule as well).
    Policy = 9,
    /// An ICMP error quoting a tracked flow but not addressed to the quoted
    /// packet's source (Linux's conntrack finds it invalid: an error only
    /// ever travels back to the sender of what it quotes).
    IcmpMisdirected = 10,
    /// The source address fails the ingress port's reverse-path check
    /// ([`crate::topology::RpFilter`]): the route back to it leaves by
    /// another port (strict), there is none, or it is the appliance's own.
    Spoofed = 11,
    /// A TCP segment with a flag combination no connection sends (SYN+FIN,
    /// SYN+RST, no flags, FIN without ACK, ...), or not valid in its
    /// tracked flow's state (an ACK before the SYN/ACK, a SYN/ACK from the
    /// client, ...): Linux's conntrack marks it INVALID and Calico drops
    /// it.
    TcpInvalid = 12,
    /// A TCP segment that is not a SYN and belongs to no tracked flow (a
    /// mid-stream packet of a connection never seen, or one whose flow was
    /// evicted or expired): it cannot open a connection, so policy is not
    /// asked, as Calico's eBPF dataplane drops a mid-flow conntrack miss.
    TcpNoFlow = 13,
    /// A martian address, which no router forwards (RFC 1812 §5.3.7,
    /// RFC 4291): an IPv4 source or destination in 0.0.0.0/8, 127.0.0.0/8,
    /// 224.0.0.0/4 (a multicast source; multicast is not routed) or
    /// 240.0.0.0/4 (limited broadcast included); an IPv6 source that is
    /// unspecified, loopback, multicast or IPv4-mapped, or a destination
    /// that is unspecified, loopback, multicast, link-local or IPv4-mapped.
    /// Linux drops these too (`ip_route_input_slow`, `ip6_rcv_core`).
    Martian = 14,
    /// Addressed to the broadcast address of a connected IPv4 subnet
    /// (a directed broadcast: RFC 2644 says a router must not forward it
    /// by default, as Linux does not).
    DirectedBroadcast = 15,
    /// Neither address is claimed by an endpoint and `policy.unclaimed`
    /// is `deny` (the default): no policy can allow it, so it is dropped.
    Unclaimed = 16,
    /// Addressed to the appliance itself and denied by the host endpoint's
    /// ingress policy, or no policy selects the host endpoint for ingress
    /// (a Calico host endpoint with no policy denies; see [`crate::host`]).
    HostDenied = 17,
}

impl DropReason {
    /// The number of reasons: the length of a counter array.
    pub const COUNT: usize = 18;

    /// Every reason, in index order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::Malformed,
        Self::NotIp,
        Self::NotForUs,
        Self::Local,
        Self::NoRoute,
        Self::NoNeighbour,
        Self::TtlExpired,
        Self::TxRingFull,
        Self::Fragmented,
        Self::Policy,
        Self::IcmpMisdirected,
        Self::Spoofed,
        Self::TcpInvalid,
        Self::TcpNoFlow,
        Self::Martian,
        Self::DirectedBroadcast,
        Self::Unclaimed,
        Self::HostDenied,
    ];

    /// The label used in metrics and `causeway stats`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::NotIp => "not_ip",
            Self::NotForUs => "not_for_us",
            Self::Local => "local",
            Self::NoRoute => "no_route",
            Self::NoNeighbour => "no_neighbour",
            Self::TtlExpired => "ttl_expired",
            Self::TxRingFull => "tx_ring_full",
            Self::Fragmented => "fragmented",
            Self::Policy => "policy",
            Self::IcmpMisdirected => "icmp_misdirected",
            Self::Spoofed => "spoofed",
            Self::TcpInvalid => "tcp_invalid",
            Self::TcpNoFlow => "tcp_no_flow",
            Self::Martian => "martian",
            Self::DirectedBroadcast => "directed_broadcast",
            Self::Unclaimed => "unclaimed",
            Self::HostDenied => "host_denied",
        }
    }
}

/// What one port saw, from one worker or summed over all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortCounters {
    /// Frames received from the port's AF_XDP sockets.
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames transmitted on the port.
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// ICMP errors (time exceeded) the appliance sent out of this port.
    pub icmp_errors_sent: u64,
    /// Packets that arrived on this port addressed to the appliance,
    /// allowed by the host endpoint's policy and handed to its kernel.
    pub host_delivered: u64,
    /// Frames dropped after arriving on this port, by [`DropReason`].
    pub drops: [u64; DropReason::COUNT],
}

impl PortCounters {
    /// Counts a drop.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// Every drop, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Self) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.icmp_errors_sent += other.icmp_errors_sent;
        self.host_delivered += other.host_delivered;
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a += b;
        }
    }
}

const CELLS: usize = 6 + DropReason::COUNT;

/// One worker's published counters, one row of cells per port.
#[derive(Debug)]
pub struct SharedCounters {
    cells: Box<[[AtomicU64; CELLS]]>,
}

impl SharedCounters {
    /// Zeroed counters for `ports` ports.
    pub fn new(ports: usize) -> Self {
        Self {
            cells: (0..ports)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Publishes a worker's running totals. Only that worker may call this.
    pub fn publish(&self, totals: &[PortCounters]) {
        for (row, c) in self.cells.iter().zip(totals) {
            let values = [
                c.rx_packets,
                c.rx_bytes,
                c.tx_packets,
                c.tx_bytes,
                c.icmp_errors_sent,
                c.host_delivered,
            ];
            for (cell, v) in row.iter().zip(values.iter().chain(c.drops.iter())) {
                cell.store(*v, Ordering::Relaxed);
            }
        }
    }

    /// The last published totals.
    pub fn read(&self) -> Vec<PortCounters> {
        self.cells
            .iter()
            .map(|row| {
                let v = |i: usize| row[i].load(Ordering::Relaxed);
                PortCounters {
                    rx_packets: v(0),
                    rx_bytes: v(1),
                    tx_packets: v(2),
                    tx_bytes: v(3),
                    icmp_errors_sent: v(4),
                    host_delivered: v(5),
                    drops: std::array::from_fn(|i| v(6 + i)),
                }
            })
            .collect()
    }
}
