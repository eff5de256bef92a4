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

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header from 10.1.0.2 to 10.2.0.2 of protocol `proto` (no
    /// options; the total length claims `total`, as a quoted header may).
    fn ipv4_header(proto: u8, total: u16) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend([10, 1, 0, 2, 10, 2, 0, 2]);
        h
    }

    fn mapped(a: [u8; 4]) -> u128 {
        u128::from(Ipv4Addr::from(a).to_ipv6_mapped())
    }

    fn facts_of(proto: IpProtocol, l4: &[u8]) -> PacketFacts {
        let t = Transport::parse(proto, true, l4).expect("a whole L4 header");
        of(1, 2, proto, &t, 100)
    }

    #[test]
    fn tcp_ports_and_flags_come_from_the_view() {
        let mut tcp = [0u8; 20];
        tcp[..4].copy_from_slice(&[0x30, 0x39, 0, 80]);
        tcp[12] = 5 << 4;
        tcp[13] = tcp::flags::SYN;
        let f = facts_of(IpProtocol::Tcp, &tcp);
        assert_eq!(
            (f.sport, f.dport, f.tcp_flags),
            (12345, 80, tcp::flags::SYN)
        );
        assert_eq!((f.proto, f.len, f.icmp, f.inner), (6, 100, None, None));
    }

    #[test]
    fn a_cut_short_first_fragment_header_is_an_error_and_a_later_fragment_has_no_ports() {
        assert!(Transport::parse(IpProtocol::Tcp, true, &[0; 19]).is_err());
        assert!(Transport::parse(IpProtocol::Udp, true, &[0; 7]).is_err());
        assert!(Transport::parse(IpProtocol::Icmp, true, &[8, 0, 0]).is_err());
        let t = Transport::parse(IpProtocol::Tcp, false, &[1, 2, 3, 4]).unwrap();
        let f = of(1, 2, IpProtocol::Tcp, &t, 60);
        assert_eq!((f.sport, f.dport, f.tcp_flags), (0, 0, 0));
    }

    #[test]
    fn sctp_ports_are_read_where_udp_has_them() {
        let f = facts_of(SCTP, &[0x0b, 0x59, 0x0b, 0x5a, 0, 0, 0, 0]);
        assert_eq!((f.sport, f.dport), (2905, 2906));
        let f = facts_of(SCTP, &[0x0b, 0x59, 0x0b]);
        assert_eq!((f.sport, f.dport), (0, 0));
    }

    #[test]
    fn an_icmp_error_names_the_flow_of_the_cut_short_datagram_it_quotes() {
        // Port unreachable about a 1000-byte UDP datagram: its header and
        // the first 8 bytes, as RFC 792 asks, and no more.
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend(ipv4_header(17, 1000));
        icmp.extend([0x30, 0x39, 0, 53, 0x03, 0xd4, 0, 0]);
        let f = facts_of(IpProtocol::Icmp, &icmp);
        assert_eq!(f.icmp, Some((3, 3)));
        let inner = FlowKey {
            src: mapped([10, 1, 0, 2]),
            dst: mapped([10, 2, 0, 2]),
            proto: 17,
            sport: 12345,
            dport: 53,
        };
        assert_eq!(f.inner, Some(inner));
        // Source Quench quotes as the errors do.
        icmp[0] = 4;
        assert_eq!(facts_of(IpProtocol::Icmp, &icmp).inner, Some(inner));
        // Cut shorter than the ports: no flow.
        icmp.truncate(8 + 20 + 3);
        assert_eq!(facts_of(IpProtocol::Icmp, &icmp).inner, None);
    }

    #[test]
    fn an_echo_is_keyed_by_its_identifier() {
        let f = facts_of(IpProtocol::Icmp, &[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        assert_eq!((f.icmp, f.sport, f.dport), (Some((8, 0)), 0x1234, 0x1234));
        let f = facts_of(IpProtocol::Icmpv6, &[129, 0, 0, 0, 0x12, 0x34, 0, 1]);
        assert_eq!((f.icmp, f.sport, f.dport), (Some((129, 0)), 0x1234, 0x1234));
    }
}
