//! What differs between IPv4 and IPv6 along the walk, behind one trait, so
//! that [`Pipeline`](super::Pipeline) walks the stages once
//! (`Pipeline::walk`) for both. [`V4`] and [`V6`] are zero-sized: the walk
//! is monomorphised per family and costs what the two hand-written copies
//! it replaced cost.
//!
//! A family knows how to read and check its header ([`Family::parse`],
//! through the `wire` views), which of its addresses are martian, where
//! its routes are, what a port answers from, whether an ICMP error may be
//! sent about a packet, how an expired packet is answered and how a
//! forwarded one is rewritten. A tunnel port's decapsulated packet would
//! enter the same walk with its own offset.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{PortInfo, facts::Transport, icmp, martian};
use crate::{
    route::{Route, RouteTable},
    wire::{EthernetAddress, IpProtocol, checksum, icmpv4, ipv4, ipv6},
};

/// What the walk keeps of an IP header once its view is dropped.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ip<A> {
    /// Source address.
    pub(super) src: A,
    /// Destination address.
    pub(super) dst: A,
    /// TTL or hop limit.
    pub(super) hop_limit: u8,
    /// The protocol field (IPv4) or the upper-layer protocol (IPv6).
    pub(super) proto: IpProtocol,
    /// Where the IP packet ends in the frame (before any padding).
    pub(super) end: usize,
}

/// An IP version, as the walk sees it.
pub(super) trait Family {
    /// Its address type.
    type Addr: Copy + PartialEq + Into<IpAddr>;

    /// Reads and checks the header at `frame[off..]`: the walk's facts of
    /// it and the L4 header's view.
    ///
    /// # Errors
    /// Malformed: the header or the lengths in it do not fit the frame,
    /// the IPv4 header checksum is wrong (RFC 1812 §5.2.2), the IPv6
    /// extension headers do not walk, or a first fragment's L4 header is
    /// cut short.
    fn parse(frame: &[u8], off: usize) -> Result<(Ip<Self::Addr>, Transport<'_>), ()>;

    /// Whether an ICMP error may be sent about a packet whose L4 header is
    /// `l4`: not about an ICMP error, nor, for IPv4, a non-first fragment.
    /// Asked only of expired packets (the walk parses them again), so the
    /// forwarding path does not pay for it.
    fn answerable(ip: &Ip<Self::Addr>, l4: &Transport<'_>) -> bool;

    /// The address as the policy stage keys it (IPv4 mapped into IPv6).
    fn mapped(addr: Self::Addr) -> u128;

    /// Whether a packet from `src` to `dst` is martian ([`martian`]).
    fn martian(src: Self::Addr, dst: Self::Addr) -> bool;

    /// Whether `dst` is the broadcast address of a connected subnet.
    fn directed_broadcast(broadcasts: &[Ipv4Addr], dst: Self::Addr) -> bool;

    /// The longest-prefix route to `dst`.
    fn lookup(routes: &RouteTable, dst: Self::Addr) -> Option<&Route>;

    /// The address a port sends its ICMP errors from.
    fn port_addr(port: &PortInfo) -> Option<Self::Addr>;

    /// Turns the packet at `buf[off..len]` into a time exceeded error from
    /// `src`, sent back; the new frame length, or `None` without room.
    fn time_exceeded(
        buf: &mut [u8],
        len: usize,
        off: usize,
        mac: EthernetAddress,
        src: Self::Addr,
    ) -> Option<usize>;

    /// Rewrites the IP header of a forwarded packet (`packet` starts at
    /// it): TTL or hop limit − 1, and what depends on it.
    fn forward(packet: &mut [u8], ip: &Ip<Self::Addr>);
}

/// IPv4.
#[derive(Debug)]
pub(super) struct V4;

/// IPv6.
#[derive(Debug)]
pub(super) struct V6;

impl Family for V4 {
    type Addr = Ipv4Addr;

    #[inline]
    fn parse(frame: &[u8], off: usize) -> Result<(Ip<Ipv4Addr>, Transport<'_>), ()> {
        let ip = ipv4::Packet::new_checked(&frame[off..]).map_err(drop)?;
        if !ip.verify_checksum() {
            return Err(());
        }
        let first = ip.frag_offset() == 0;
        let proto = ip.next_header();
        // The payload as `ip.payload()` has it, borrowed from the frame
        // rather than from the view.
        let payload = &frame[off..][ip.header_len()..usize::from(ip.total_len())];
        let l4 = Transport::parse(proto, first, payload).map_err(drop)?;
        let ip = Ip {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            hop_limit: ip.hop_limit(),
            proto,
            end: off + usize::from(ip.total_len()),
        };
        Ok((ip, l4))
    }

    fn answerable(_: &Ip<Ipv4Addr>, l4: &Transport<'_>) -> bool {
        // RFC 1812 §4.3.2.7: no ICMP error about an ICMP error or a
        // non-first fragment (any ICMP message but an echo counts).
        match l4 {
            Transport::Fragment(_) => false,
            Transport::Icmpv4(p) => matches!(
                p.msg_type(),
                icmpv4::Message::EchoRequest | icmpv4::Message::EchoReply
            ),
            _ => true,
        }
    }

    #[inline]
    fn mapped(addr: Ipv4Addr) -> u128 {
        u128::from(addr.to_ipv6_mapped())
    }

    #[inline]
    fn martian(src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        martian::v4(src, dst)
    }

    #[inline]
    fn directed_broadcast(broadcasts: &[Ipv4Addr], dst: Ipv4Addr) -> bool {
        // Sorted (martian::directed_broadcasts): every route without a
        // next hop has one, so there may be thousands.
        broadcasts.binary_search(&dst).is_ok()
    }

    #[inline]
    fn lookup(routes: &RouteTable, dst: Ipv4Addr) -> Option<&Route> {
        routes.lookup_v4(dst)
    }

    #[inline]
    fn port_addr(port: &PortInfo) -> Option<Ipv4Addr> {
        port.ipv4
    }

    fn time_exceeded(
        buf: &mut [u8],
        len: usize,
        off: usize,
        mac: EthernetAddress,
        src: Ipv4Addr,
    ) -> Option<usize> {
        icmp::time_exceeded_v4(buf, len, off, mac, src)
    }

    #[inline]
    fn forward(packet: &mut [u8], ip: &Ip<Ipv4Addr>) {
        let mut packet = ipv4::Packet::new_unchecked(packet);
        let ttl = ip.hop_limit;
        // RFC 1624 §3, eqn. 3: TTL shares a 16-bit word with the protocol.
        let old_word = u16::from_be_bytes([ttl, u8::from(ip.proto)]);
        let new_word = u16::from_be_bytes([ttl - 1, u8::from(ip.proto)]);
        let sum = checksum::update(packet.checksum(), old_word, new_word);
        packet.set_hop_limit(ttl - 1);
        packet.set_checksum(sum);
    }
}

impl Family for V6 {
    type Addr = Ipv6Addr;

    #[inline]
    fn parse(frame: &[u8], off: usize) -> Result<(Ip<Ipv6Addr>, Transport<'_>), ()> {
        let ip = ipv6::Packet::new_checked(&frame[off..]).map_err(drop)?;
        let packet = &frame[off..off + ipv6::HEADER_LEN + usize::from(ip.payload_len())];
        let upper = ipv6::upper_layer(packet).map_err(drop)?;
        let first = !upper.non_first_fragment;
        let l4 = Transport::parse(upper.protocol, first, &packet[upper.offset..]).map_err(drop)?;
        let ip = Ip {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            hop_limit: ip.hop_limit(),
            proto: upper.protocol,
            end: off + packet.len(),
        };
        Ok((ip, l4))
    }

    fn answerable(ip: &Ip<Ipv6Addr>, l4: &Transport<'_>) -> bool {
        // RFC 4443 §2.4 (e): no ICMPv6 error about an ICMPv6 error. Of a
        // non-first fragment the first byte of its data is taken for the
        // type, as Linux's is_ineligible() does.
        match l4 {
            Transport::Icmpv6(p) => !p.msg_type().is_error(),
            Transport::Fragment(data) if ip.proto == IpProtocol::Icmpv6 => {
                data.first().is_none_or(|t| *t >= 128)
            }
            _ => true,
        }
    }

    #[inline]
    fn mapped(addr: Ipv6Addr) -> u128 {
        u128::from(addr)
    }

    #[inline]
    fn martian(src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        martian::v6(src, dst)
    }

    #[inline]
    fn directed_broadcast(_: &[Ipv4Addr], _: Ipv6Addr) -> bool {
        // IPv6 has no broadcast (RFC 4291 §2).
        false
    }

    #[inline]
    fn lookup(routes: &RouteTable, dst: Ipv6Addr) -> Option<&Route> {
        routes.lookup_v6(dst)
    }

    #[inline]
    fn port_addr(port: &PortInfo) -> Option<Ipv6Addr> {
        port.ipv6
    }

    fn time_exceeded(
        buf: &mut [u8],
        len: usize,
        off: usize,
        mac: EthernetAddress,
        src: Ipv6Addr,
    ) -> Option<usize> {
        icmp::time_exceeded_v6(buf, len, off, mac, src)
    }

    #[inline]
    fn forward(packet: &mut [u8], ip: &Ip<Ipv6Addr>) {
        ipv6::Packet::new_unchecked(packet).set_hop_limit(ip.hop_limit - 1);
    }
}
