//! Fuzzes `wire::parse_frame` and then every accessor of every view that
//! `new_checked` accepts: the wire module promises that none of them panics.

#![no_main]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use causeway_dataplane::wire::{
    self, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, L3, L4, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};
use libfuzzer_sys::fuzz_target;

const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fuzz_target!(|frame: &[u8]| {
    touch_views(frame);
    let Ok(parsed) = wire::parse_frame(frame) else {
        return;
    };
    assert!(parsed.l2.l3_offset <= frame.len());
    let l3 = &frame[parsed.l2.l3_offset..];
    touch_views(l3);
    let l4_offset = match parsed.l3 {
        L3::Ipv4 { l4_offset, .. } => {
            assert!(Ipv4Packet::new_checked(l3).is_ok());
            l4_offset
        }
        L3::Ipv6 { l4_offset, .. } => {
            assert!(Ipv6Packet::new_checked(l3).is_ok());
            l4_offset
        }
        L3::Other(_) => return,
    };
    assert!(l4_offset <= frame.len());
    let l4 = &frame[l4_offset..];
    touch_views(l4);
    match parsed.l4 {
        L4::Tcp { .. } => assert!(TcpPacket::new_checked(l4).is_ok()),
        L4::Udp { .. } => assert!(UdpPacket::new_checked(l4).is_ok()),
        L4::Icmp { .. } => assert!(Icmpv4Packet::new_checked(l4).is_ok()),
        L4::None => {}
    }
});

/// Keeps the optimiser from dropping an accessor call whose result is unused.
fn sink<T>(value: T) {
    black_box(value);
}

/// Calls every getter of every view that `new_checked` accepts over `bytes`,
/// and every `Repr::parse`.
fn touch_views(bytes: &[u8]) {
    if let Ok(f) = EthernetFrame::new_checked(bytes) {
        sink((f.dst_addr(), f.src_addr(), f.ethertype(), f.payload()));
        sink(EthernetRepr::parse(&f));
    }
    sink(wire::l2_info(bytes));
    if let Ok(p) = Ipv4Packet::new_checked(bytes) {
        sink((p.version(), p.header_len(), p.dscp_ecn(), p.dscp(), p.ecn()));
        sink((p.total_len(), p.ident(), p.dont_frag(), p.more_frags()));
        sink((p.frag_offset(), p.is_fragment(), p.hop_limit()));
        sink((p.next_header(), p.checksum(), p.src_addr(), p.dst_addr()));
        sink((p.verify_checksum(), p.options(), p.payload()));
        sink(Ipv4Repr::parse(&p));
    }
    if let Ok(p) = Ipv6Packet::new_checked(bytes) {
        sink((p.version(), p.traffic_class(), p.flow_label()));
        sink((p.payload_len(), p.next_header(), p.hop_limit()));
        sink((p.src_addr(), p.dst_addr(), p.payload()));
        sink(Ipv6Repr::parse(&p));
        if let Ok(upper) = wire::upper_layer(bytes) {
            assert!(upper.offset <= wire::ipv6::HEADER_LEN + usize::from(p.payload_len()));
        }
    }
    if let Ok(p) = TcpPacket::new_checked(bytes) {
        sink((p.src_port(), p.dst_port(), p.seq_number(), p.ack_number()));
        sink((
            p.header_len(),
            p.flags(),
            p.fin(),
            p.syn(),
            p.rst(),
            p.psh(),
        ));
        sink((p.ack(), p.urg(), p.ece(), p.cwr(), p.window_len()));
        sink((p.checksum(), p.urgent_at(), p.options(), p.payload()));
        sink((p.verify_checksum(V4, V4), p.verify_checksum(V6, V6)));
        sink((TcpRepr::parse(&p, V4, V4), TcpRepr::parse(&p, V4, V6)));
    }
    if let Ok(p) = UdpPacket::new_checked(bytes) {
        sink((p.src_port(), p.dst_port(), p.len(), p.checksum()));
        sink((
            p.payload(),
            p.verify_checksum(V4, V4),
            p.verify_checksum(V6, V6),
        ));
        sink((UdpRepr::parse(&p, V4, V4), UdpRepr::parse(&p, V6, V6)));
    }
    if let Ok(p) = Icmpv4Packet::new_checked(bytes) {
        sink((p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident()));
        sink((p.echo_seq_no(), p.next_hop_mtu(), p.rest_of_header()));
        sink((p.payload(), p.data(), p.verify_checksum()));
        sink(Icmpv4Repr::parse(&p));
    }
    if let Ok(p) = Icmpv6Packet::new_checked(bytes) {
        sink((p.msg_type(), p.is_ndp(), p.msg_code(), p.checksum()));
        sink((p.echo_ident(), p.echo_seq_no(), p.mtu(), p.pointer()));
        sink((p.rest_of_header(), p.payload()));
        sink(p.verify_checksum(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED));
        sink(Icmpv6Repr::parse(
            &p,
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::UNSPECIFIED,
        ));
    }
}
