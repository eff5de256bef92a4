//! What the policy stage needs of a packet ([`PacketFacts`]), read through
//! the checked `wire` views the L3 stage built, not from raw offsets.
//!
//! [`Transport::parse`] checks a first fragment's L4 header once (a TCP,
//! UDP, ICMP or ICMPv6 header cut short makes the packet malformed: policy
//! and conntrack read ports and flags from it) and keeps the view, so
//! [`of`] reads ports, flags and ICMP types through its accessors, which
//! cannot panic once `new_checked` succeeded.
//!
//! The packet an ICMP error quotes is the one place the checked views do
//! not fit: the quote is cut short by design (the IP header and 8 bytes of
//! its payload, RFC 792), shorter than the lengths its headers claim, so
//! `new_checked` refuses it. [`inner_flow`] checks the length of each
//! field it reads and reads it through an unchecked view.

use std::net::Ipv4Addr;

use super::PacketFacts;
use crate::{
    policy::conntrack::FlowKey,
    wire::{Error, IpProtocol, icmpv4, icmpv6, ipv4, ipv6, tcp, udp},
};

/// SCTP (RFC 9260) and UDP-Lite (RFC 3828): no view of their own; their
/// ports are the first four bytes, where UDP has them.
const SCTP: IpProtocol = IpProtocol::Unknown(132);
const UDP_LITE: IpProtocol = IpProtocol::Unknown(136);

/// The L4 header of a packet, through its checked view.
#[derive(Debug)]
pub(super) enum Transport<'a> {
    /// A TCP header.
    Tcp(tcp::Packet<&'a [u8]>),
    /// A UDP header.
    Udp(udp::Packet<&'a [u8]>),
    /// An ICMP header (protocol 1, whatever the IP version).
    Icmpv4(icmpv4::Packet<&'a [u8]>),
    /// An ICMPv6 header.
    Icmpv6(icmpv6::Packet<&'a [u8]>),
    /// Another protocol's first fragment: its bytes, no view.
    Other(&'a [u8]),
    /// A non-first fragment: its data, no L4 header.
    Fragment(&'a [u8]),
}

impl<'a> Transport<'a> {
    /// Reads the L4 header of a packet of protocol `proto` whose payload is
    /// `l4`.
    ///
    /// # Errors
    /// A first fragment's TCP, UDP, ICMP or ICMPv6 header is cut short (as
    /// the views' `new_checked` say).
    #[inline]
    pub(super) fn parse(
        proto: IpProtocol,
        first_fragment: bool,
        l4: &'a [u8],
    ) -> Result<Self, Error> {
        if !first_fragment {
            return Ok(Self::Fragment(l4));
        }
        Ok(match proto {
            IpProtocol::Tcp => Self::Tcp(tcp::Packet::new_checked(l4)?),
            IpProtocol::Udp => Self::Udp(udp::Packet::new_checked(l4)?),
            IpProtocol::Icmp => Self::Icmpv4(icmpv4::Packet::new_checked(l4)?),
            IpProtocol::Icmpv6 => Self::Icmpv6(icmpv6::Packet::new_checked(l4)?),
            _ => Self::Other(l4),
        })
    }
}

/// The facts of a packet from `src` to `dst` (IPv4 mapped into IPv6) of
/// protocol `proto`, whose L4 header is `l4`, in a frame of `len` bytes. A
/// non-first fragment has no ports and is judged on addresses and protocol.
pub(super) fn of(
    src: u128,
    dst: u128,
    proto: IpProtocol,
    l4: &Transport<'_>,
    len: usize,
) -> PacketFacts {
    let mut f = PacketFacts {
        src,
        dst,
        proto: u8::from(proto),
        sport: 0,
        dport: 0,
        icmp: None,
        tcp_flags: 0,
        inner: None,
        len: len as u32,
    };
    match l4 {
        Transport::Tcp(t) => {
            f.sport = t.src_port();
            f.dport = t.dst_port();
            f.tcp_flags = t.flags();
        }
        Transport::Udp(u) => {
            f.sport = u.src_port();
            f.dport = u.dst_port();
        }
        Transport::Icmpv4(p) => {
            let ty = p.msg_type();
            f.icmp = Some((u8::from(ty), p.msg_code()));
            match ty {
                icmpv4::Message::EchoRequest | icmpv4::Message::EchoReply => {
                    f.sport = p.echo_ident();
                    f.dport = f.sport;
                }
                // Source Quench (4; RFC 792, deprecated by RFC 6633) quotes
                // the datagram as the errors do.
                ty if ty.is_error() || ty == icmpv4::Message::Unknown(4) => {
                    f.inner = inner_flow(p.payload(), false);
                }
                _ => {}
            }
        }
        Transport::Icmpv6(p) => {
            let ty = p.msg_type();
            f.icmp = Some((u8::from(ty), p.msg_code()));
            match ty {
                icmpv6::Message::EchoRequest | icmpv6::Message::EchoReply => {
                    f.sport = p.echo_ident();
                    f.dport = f.sport;
                }
                ty if ty.is_error() => f.inner = inner_flow(p.payload(), true),
                _ => {}
            }
        }
        Transport::Other(l4) if matches!(proto, SCTP | UDP_LITE) => {
            if let Some((sport, dport)) = ports(l4) {
                f.sport = sport;
                f.dport = dport;
            }
        }
        Transport::Other(_) | Transport::Fragment(_) => {}
    }
    f
}

/// The ports of a header that starts with them (TCP, UDP, SCTP, UDP-Lite),
/// if its first four bytes are there.
fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    // The length is checked for the two fields read.
    let h = udp::Packet::new_unchecked(l4.get(..4)?);
    Some((h.src_port(), h.dst_port()))
}

/// The flow of the packet an ICMP error quotes, as its sender sent it;
/// `None` when the quote is too short to name it.
fn inner_flow(quoted: &[u8], v6: bool) -> Option<FlowKey> {
    // Each unchecked view below is used only for fields whose bytes were
    // checked to be there.
    let (src, dst, proto, l4) = if v6 {
        let ip = ipv6::Packet::new_unchecked(quoted.get(..ipv6::HEADER_LEN)?);
        let (src, dst) = (u128::from(ip.src_addr()), u128::from(ip.dst_addr()));
        (src, dst, ip.next_header(), &quoted[ipv6::HEADER_LEN..])
    } else {
        let ip = ipv4::Packet::new_unchecked(quoted.get(..ipv4::HEADER_LEN)?);
        let mapped = |a: Ipv4Addr| u128::from(a.to_ipv6_mapped());
        let l4 = quoted.get(ip.header_len()..)?;
        (
            mapped(ip.src_addr()),
            mapped(ip.dst_addr()),
            ip.next_header(),
            l4,
        )
    };
    let (sport, dport) = match proto {
        IpProtocol::Icmp => {
            let id = icmpv4::Packet::new_unchecked(l4.get(..6)?).echo_ident();
            (id, id)
        }
        IpProtocol::Icmpv6 => {
            let id = icmpv6::Packet::new_unchecked(l4.get(..6)?).echo_ident();
            (id, id)
        }
        IpProtocol::Tcp | IpProtocol::Udp | SCTP | UDP_LITE => ports(l4)?,
        _ => (0, 0),
    };
    Some(FlowKey {
        src,
        dst,
        proto: u8::from(proto),
        sport,
        dport,
    })
}
