//! [`parse_frame`]: the whole header stack of an Ethernet frame in one call.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Error, EtherType, IpProtocol, L2Info, icmpv4, icmpv6, ipv4, ipv6, l2_info, tcp, udp};

/// What [`parse_frame`] found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Parsed {
    /// The Ethernet header and VLAN tags.
    pub l2: L2Info,
    /// The network layer.
    pub l3: L3,
    /// The transport layer, when there is one to read.
    pub l4: L4,
}

/// The network layer of a frame. Offsets are from the start of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L3 {
    /// An IPv4 packet whose lengths are consistent (the header checksum is
    /// not checked).
    Ipv4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
        /// The protocol field.
        proto: IpProtocol,
        /// Time to live.
        ttl: u8,
        /// Offset of the IPv4 payload, past any options.
        l4_offset: usize,
        /// The fragment offset is 0: an unfragmented packet or the first
        /// fragment, so the transport header is here.
        first_fragment: bool,
    },
    /// An IPv6 packet, walked past its extension headers.
    Ipv6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
        /// The upper-layer protocol (see [`ipv6::UpperLayer::protocol`]).
        proto: IpProtocol,
        /// Hop limit.
        hop_limit: u8,
        /// Offset of the upper-layer header (or, for a non-first fragment,
        /// of the fragment data).
        l4_offset: usize,
        /// Not a non-first fragment: the transport header is here.
        first_fragment: bool,
    },
    /// A protocol other than IPv4 and IPv6 (ARP, LLDP, ...), not read.
    Other(EtherType),
}

/// The transport layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4 {
    /// A TCP header.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Control bits (see [`tcp::flags`]).
        flags: u8,
    },
    /// A UDP header.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// An ICMP header: ICMPv4 over IPv4, ICMPv6 over IPv6.
    Icmp {
        /// Raw message type (see [`icmpv4::Message`] and
        /// [`icmpv6::Message`]).
        ty: u8,
        /// Message code.
        code: u8,
    },
    /// No transport header was read: a non-first fragment, another
    /// protocol, or not IP at all.
    None,
}

/// Parses the headers of the Ethernet frame `frame`: Ethernet and up to two
/// VLAN tags, then IPv4 or IPv6 (with extension headers), then for packets
/// that carry the start of their transport payload, the TCP, UDP or ICMP
/// header. Every view is built with `new_checked`; no checksum is checked.
///
/// Lengths are bounded by the IP header's own length fields, so Ethernet
/// padding after the packet is ignored. ICMPv4 over IPv6, and ICMPv6 over
/// IPv4, are not read (`L4::None`).
///
/// # Errors
///
/// The first error of [`l2_info`], [`ipv4::Packet::new_checked`],
/// [`ipv6::upper_layer`], or the `new_checked` of the transport header; in
/// particular [`Error::Truncated`] for a transport header cut short in a
/// first fragment.
pub fn parse_frame(frame: &[u8]) -> Result<Parsed, Error> {
    let l2 = l2_info(frame)?;
    // `l2_info` returns an offset within the frame.
    let l3_bytes = &frame[l2.l3_offset..];
    let (l3, l4) = match l2.ethertype {
        EtherType::Ipv4 => {
            let ip = ipv4::Packet::new_checked(l3_bytes)?;
            let first_fragment = ip.frag_offset() == 0;
            let proto = ip.next_header();
            let l4 = if first_fragment {
                transport(proto, ip.payload(), false)?
            } else {
                L4::None
            };
            let l3 = L3::Ipv4 {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
                proto,
                ttl: ip.hop_limit(),
                l4_offset: l2.l3_offset + ip.header_len(),
                first_fragment,
            };
            (l3, l4)
        }
        EtherType::Ipv6 => {
            let ip = ipv6::Packet::new_checked(l3_bytes)?;
            let upper = ipv6::upper_layer(l3_bytes)?;
            let first_fragment = !upper.non_first_fragment;
            // `upper_layer` bounds the offset by the payload length, which
            // `new_checked` bounds by the buffer.
            let end = ipv6::HEADER_LEN + usize::from(ip.payload_len());
            let l4 = if first_fragment {
                transport(upper.protocol, &l3_bytes[upper.offset..end], true)?
            } else {
                L4::None
            };
            let l3 = L3::Ipv6 {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
                proto: upper.protocol,
                hop_limit: ip.hop_limit(),
                l4_offset: l2.l3_offset + upper.offset,
                first_fragment,
            };
            (l3, l4)
        }
        other => (L3::Other(other), L4::None),
    };
    Ok(Parsed { l2, l3, l4 })
}

/// Reads the transport header of `proto` at the start of `bytes`.
fn transport(proto: IpProtocol, bytes: &[u8], over_ipv6: bool) -> Result<L4, Error> {
    Ok(match proto {
        IpProtocol::Tcp => {
            let tcp = tcp::Packet::new_checked(bytes)?;
            L4::Tcp {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                flags: tcp.flags(),
            }
        }
        IpProtocol::Udp => {
            let udp = udp::Packet::new_checked(bytes)?;
            L4::Udp {
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
            }
        }
        IpProtocol::Icmp if !over_ipv6 => {
            let icmp = icmpv4::Packet::new_checked(bytes)?;
            L4::Icmp {
                ty: icmp.msg_type().into(),
                code: icmp.msg_code(),
            }
        }
        IpProtocol::Icmpv6 if over_ipv6 => {
            let icmp = icmpv6::Packet::new_checked(bytes)?;
            L4::Icmp {
                ty: icmp.msg_type().into(),
                code: icmp.msg_code(),
            }
        }
        _ => L4::None,
    })
}
