//! Tests across the protocol modules: `parse_frame` on real captures, and
//! the property that no accessor of a view that `new_checked` accepted
//! panics, on any bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::testdata::{self, VALID_FRAMES};
use super::*;

const V4_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const V4_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const V6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const V6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const UNTAGGED: [Option<u16>; 2] = [None, None];

fn l2(ethertype: EtherType, l3_offset: usize, vlans: [Option<u16>; 2]) -> L2Info {
    L2Info {
        ethertype,
        l3_offset,
        vlans,
    }
}

fn v4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, l4_offset: usize, first: bool) -> L3 {
    L3::Ipv4 {
        src,
        dst,
        proto,
        ttl: 64,
        l4_offset,
        first_fragment: first,
    }
}

fn v6(src: Ipv6Addr, dst: Ipv6Addr, proto: IpProtocol, hop_limit: u8, l4_offset: usize) -> L3 {
    L3::Ipv6 {
        src,
        dst,
        proto,
        hop_limit,
        l4_offset,
        first_fragment: true,
    }
}

fn icmp(ty: u8, code: u8) -> L4 {
    L4::Icmp { ty, code }
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn parse_captures() {
    use IpProtocol::{Icmp, Icmpv6, Tcp, Udp};
    let ipv4 = l2(EtherType::Ipv4, 14, UNTAGGED);
    let ipv6 = l2(EtherType::Ipv6, 14, UNTAGGED);
    let link_local = ip6("fe80::5eff:fe10:1");
    let cases: Vec<(&[u8], Parsed)> = vec![
        (
            &testdata::ARP_REQUEST,
            Parsed {
                l2: l2(EtherType::Arp, 14, UNTAGGED),
                l3: L3::Other(EtherType::Arp),
                l4: L4::None,
            },
        ),
        (
            &testdata::IPV4_ICMP_ECHO_REQUEST,
            Parsed {
                l2: ipv4,
                l3: v4(V4_A, V4_B, Icmp, 34, true),
                l4: icmp(8, 0),
            },
        ),
        (
            &testdata::IPV4_TCP_SYN,
            Parsed {
                l2: ipv4,
                l3: v4(V4_A, V4_B, Tcp, 34, true),
                l4: L4::Tcp {
                    src_port: 54216,
                    dst_port: 80,
                    flags: tcp::flags::SYN,
                },
            },
        ),
        (
            &testdata::IPV4_UDP_DNS_QUERY,
            Parsed {
                l2: ipv4,
                l3: v4(V4_A, V4_B, Udp, 34, true),
                l4: L4::Udp {
                    src_port: 53124,
                    dst_port: 53,
                },
            },
        ),
        (
            &testdata::IPV4_ICMP_PORT_UNREACHABLE,
            Parsed {
                l2: ipv4,
                l3: v4(V4_B, V4_A, Icmp, 34, true),
                l4: icmp(3, 3),
            },
        ),
        (
            testdata::IPV4_FRAGMENT_FIRST,
            Parsed {
                l2: ipv4,
                l3: v4(V4_A, V4_B, Icmp, 34, true),
                l4: icmp(8, 0),
            },
        ),
        (
            &testdata::IPV4_FRAGMENT_LAST,
            Parsed {
                l2: ipv4,
                l3: v4(V4_A, V4_B, Icmp, 34, false),
                l4: L4::None,
            },
        ),
        (
            &testdata::IPV6_ICMP_ROUTER_SOLICIT,
            Parsed {
                l2: ipv6,
                l3: v6(link_local, ip6("ff02::2"), Icmpv6, 255, 54),
                l4: icmp(133, 0),
            },
        ),
        (
            &testdata::IPV6_ICMP_NEIGHBOUR_SOLICIT,
            Parsed {
                l2: ipv6,
                l3: v6(V6_A, ip6("ff02::1:ff00:2"), Icmpv6, 255, 54),
                l4: icmp(135, 0),
            },
        ),
        (
            &testdata::IPV6_ICMP_ECHO_REQUEST,
            Parsed {
                l2: ipv6,
                l3: v6(V6_A, V6_B, Icmpv6, 64, 54),
                l4: icmp(128, 0),
            },
        ),
        (
            &testdata::IPV6_TCP_SYN,
            Parsed {
                l2: ipv6,
                l3: v6(V6_A, V6_B, Tcp, 64, 54),
                l4: L4::Tcp {
                    src_port: 38784,
                    dst_port: 443,
                    flags: tcp::flags::SYN,
                },
            },
        ),
        (
            &testdata::IPV6_UDP_DNS_QUERY,
            Parsed {
                l2: ipv6,
                l3: v6(V6_A, V6_B, Udp, 64, 54),
                l4: L4::Udp {
                    src_port: 53125,
                    dst_port: 53,
                },
            },
        ),
        (
            &testdata::IPV6_ICMP_PORT_UNREACHABLE,
            Parsed {
                l2: ipv6,
                l3: v6(V6_B, V6_A, Icmpv6, 64, 54),
                l4: icmp(1, 4),
            },
        ),
        (
            &testdata::IPV6_HOP_BY_HOP_MLD_REPORT,
            Parsed {
                l2: ipv6,
                l3: v6(link_local, ip6("ff02::16"), Icmpv6, 1, 62),
                l4: icmp(143, 0),
            },
        ),
        (
            testdata::IPV6_FRAGMENT_FIRST,
            Parsed {
                l2: ipv6,
                l3: v6(V6_A, V6_B, Icmpv6, 64, 62),
                l4: icmp(128, 0),
            },
        ),
        (
            &testdata::IPV6_FRAGMENT_LAST,
            Parsed {
                l2: ipv6,
                l3: L3::Ipv6 {
                    src: V6_A,
                    dst: V6_B,
                    proto: Icmpv6,
                    hop_limit: 64,
                    l4_offset: 62,
                    first_fragment: false,
                },
                l4: L4::None,
            },
        ),
        (
            &testdata::VLAN_IPV4_ICMP_ECHO_REQUEST,
            Parsed {
                l2: l2(EtherType::Ipv4, 18, [Some(100), None]),
                l3: v4(V4_A, V4_B, Icmp, 38, true),
                l4: icmp(8, 0),
            },
        ),
        (
            &testdata::QINQ_IPV4_ICMP_ECHO_REQUEST,
            Parsed {
                l2: l2(EtherType::Ipv4, 22, [Some(200), Some(10)]),
                l3: v4(V4_A, V4_B, Icmp, 42, true),
                l4: icmp(8, 0),
            },
        ),
    ];
    assert_eq!(cases.len(), VALID_FRAMES.len());
    for (frame, expected) in cases {
        assert_eq!(parse_frame(frame), Ok(expected), "{expected:?}");
    }
}

#[test]
fn every_strict_prefix_of_an_ip_frame_is_an_error() {
    for (name, frame) in VALID_FRAMES {
        for len in 0..frame.len() {
            let res = parse_frame(&frame[..len]);
            if *name == "ARP_REQUEST" && len >= 14 {
                // ARP is not read past the EtherType.
                assert!(res.is_ok());
            } else {
                assert!(res.is_err(), "{name} cut to {len} bytes: {res:?}");
            }
        }
    }
}

#[test]
fn ethernet_padding_is_ignored() {
    // A 43-byte frame is padded to 60 on a real wire.
    let mut frame = testdata::IPV4_FRAGMENT_LAST.to_vec();
    frame.resize(60, 0);
    assert_eq!(
        parse_frame(&frame),
        parse_frame(&testdata::IPV4_FRAGMENT_LAST)
    );
}

#[test]
fn truncated_tcp_header_in_first_fragment() {
    // Cut the IPv4 total length so that only 10 bytes of TCP are inside.
    let mut frame = testdata::IPV4_TCP_SYN.to_vec();
    frame[16..18].copy_from_slice(&30u16.to_be_bytes());
    assert_eq!(parse_frame(&frame), Err(Error::Truncated));
    // The same cut in a non-first fragment is not read.
    frame[20..22].copy_from_slice(&0x00b9u16.to_be_bytes());
    assert!(matches!(
        parse_frame(&frame),
        Ok(Parsed {
            l4: L4::None,
            l3: L3::Ipv4 {
                first_fragment: false,
                ..
            },
            ..
        })
    ));
}

#[test]
fn truncated_udp_and_icmp_headers() {
    let mut udp = testdata::IPV6_UDP_DNS_QUERY.to_vec();
    udp[18..20].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(parse_frame(&udp[..61]), Err(Error::Truncated));
    let mut icmp = testdata::IPV4_ICMP_ECHO_REQUEST.to_vec();
    icmp[16..18].copy_from_slice(&27u16.to_be_bytes());
    assert_eq!(parse_frame(&icmp), Err(Error::Truncated));
}

#[test]
fn malformed_layers_are_errors() {
    let mut bad_version = testdata::IPV4_TCP_SYN.to_vec();
    bad_version[14] = 0x55;
    assert!(matches!(
        parse_frame(&bad_version),
        Err(Error::Malformed(_))
    ));

    let mut bad_ihl = testdata::IPV4_TCP_SYN.to_vec();
    bad_ihl[14] = 0x44;
    assert!(matches!(parse_frame(&bad_ihl), Err(Error::Malformed(_))));

    let mut bad_offset = testdata::IPV6_TCP_SYN.to_vec();
    bad_offset[54 + 12] = 0x40;
    assert_eq!(
        parse_frame(&bad_offset),
        Err(Error::Malformed("TCP data offset below 5"))
    );

    let mut bad_udp = testdata::IPV4_UDP_DNS_QUERY.to_vec();
    bad_udp[38..40].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(
        parse_frame(&bad_udp),
        Err(Error::Malformed("UDP length below 8"))
    );

    let qinq = &testdata::QINQ_IPV4_ICMP_ECHO_REQUEST;
    let mut three_tags = qinq[..20].to_vec();
    three_tags.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    three_tags.extend_from_slice(&qinq[20..]);
    assert_eq!(
        parse_frame(&three_tags),
        Err(Error::Malformed("more than two VLAN tags"))
    );
}

#[test]
fn icmp_of_the_other_family_is_not_read() {
    let mut frame = testdata::IPV4_ICMP_ECHO_REQUEST.to_vec();
    frame[23] = 58; // ICMPv6 over IPv4
    let parsed = parse_frame(&frame).unwrap();
    assert_eq!(parsed.l4, L4::None);
    assert!(matches!(
        parsed.l3,
        L3::Ipv4 {
            proto: IpProtocol::Icmpv6,
            ..
        }
    ));
}

#[test]
fn enums_and_addresses() {
    for n in [0x0800, 0x0806, 0x86dd, 0x8100, 0x88a8, 0x88cc, 0] {
        assert_eq!(u16::from(EtherType::from(n)), n);
    }
    assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
    assert_eq!(EtherType::from(0x88cc).to_string(), "0x88cc");
    assert_eq!(EtherType::Vlan.to_string(), "802.1Q");
    for n in 0..=255u8 {
        assert_eq!(u8::from(IpProtocol::from(n)), n);
    }
    assert_eq!(IpProtocol::from(0), IpProtocol::HopByHop);
    assert_eq!(IpProtocol::from(58), IpProtocol::Icmpv6);
    assert_eq!(IpProtocol::from(132), IpProtocol::Unknown(132));
    assert_eq!(IpProtocol::Tcp.to_string(), "TCP");
    let addr = EthernetAddress([0x02, 0x00, 0x5e, 0x10, 0x00, 0x0a]);
    assert_eq!(addr.to_string(), "02:00:5e:10:00:0a");
    assert_eq!(format!("{addr:?}"), "02:00:5e:10:00:0a");
    assert!(!addr.is_multicast() && !addr.is_broadcast());
    assert_eq!(EthernetAddress::from([0xff; 6]), EthernetAddress::BROADCAST);
    assert_eq!(addr.as_bytes(), &addr.0);
}

#[test]
fn errors_display() {
    assert_eq!(Error::Truncated.to_string(), "truncated packet");
    assert_eq!(
        Error::Malformed("IPv4 IHL below 5").to_string(),
        "malformed packet: IPv4 IHL below 5"
    );
}

/// Keeps the optimiser from dropping an accessor call whose result is
/// unused.
fn sink<T>(value: T) {
    std::hint::black_box(value);
}

/// Calls every getter of every view that `new_checked` accepts over
/// `bytes`, and every `Repr::parse`. None may panic.
fn touch_views(bytes: &[u8]) {
    let v4 = IpAddr::V4(V4_A);
    let v6 = IpAddr::V6(V6_A);
    if let Ok(f) = EthernetFrame::new_checked(bytes) {
        sink((f.dst_addr(), f.src_addr(), f.ethertype(), f.payload()));
        sink(EthernetRepr::parse(&f));
    }
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
    }
    if let Ok(upper) = upper_layer(bytes) {
        let payload_end = Ipv6Packet::new_checked(bytes)
            .map(|p| ipv6::HEADER_LEN + usize::from(p.payload_len()))
            .unwrap();
        assert!(upper.offset <= payload_end);
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
        sink((p.verify_checksum(v4, v4), p.verify_checksum(v6, v6)));
        sink((TcpRepr::parse(&p, v4, v4), TcpRepr::parse(&p, v4, v6)));
    }
    if let Ok(p) = UdpPacket::new_checked(bytes) {
        sink((p.src_port(), p.dst_port(), p.len(), p.checksum()));
        sink((
            p.payload(),
            p.verify_checksum(v4, v4),
            p.verify_checksum(v6, v6),
        ));
        sink((UdpRepr::parse(&p, v4, v4), UdpRepr::parse(&p, v6, v6)));
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
        sink(p.rest_of_header());
        sink((p.payload(), p.verify_checksum(V6_A, V6_B)));
        sink(Icmpv6Repr::parse(&p, V6_A, V6_B));
    }
}

/// Parses `frame`; when that succeeds, checks that every view it implies
/// is accepted by `new_checked` and touches all of them.
fn parse_and_touch(frame: &[u8]) {
    touch_views(frame);
    let Ok(parsed) = parse_frame(frame) else {
        return;
    };
    assert!(parsed.l2.l3_offset <= frame.len());
    let l3 = &frame[parsed.l2.l3_offset..];
    touch_views(l3);
    let l4_offset = match parsed.l3 {
        L3::Ipv4 { l4_offset, .. } => {
            Ipv4Packet::new_checked(l3).expect("parse_frame accepted this IPv4 packet");
            l4_offset
        }
        L3::Ipv6 { l4_offset, .. } => {
            Ipv6Packet::new_checked(l3).expect("parse_frame accepted this IPv6 packet");
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
}

/// A valid frame with a few bytes overwritten, some cut off the end, or
/// some inserted.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        0..VALID_FRAMES.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(which, edits, cut, do_cut)| {
            let mut frame = VALID_FRAMES[which].1.to_vec();
            for (at, value) in edits {
                let i = at.index(frame.len());
                frame[i] = value;
            }
            if do_cut {
                frame.truncate(cut.index(frame.len() + 1));
            }
            frame
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        parse_and_touch(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_real_header_never_panic(
        which in 0..VALID_FRAMES.len(),
        keep in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let valid = VALID_FRAMES[which].1;
        let mut frame = valid[..keep.index(valid.len().min(80))].to_vec();
        frame.extend_from_slice(&tail);
        parse_and_touch(&frame);
    }

    #[test]
    fn mutated_frames_never_panic(frame in mutated_frame()) {
        parse_and_touch(&frame);
    }

    #[test]
    fn mutated_frames_at_header_fields_never_panic(
        which in 0..VALID_FRAMES.len(),
        at in 0usize..70,
        value in prop_oneof![Just(0u8), Just(0xff), Just(0x45), Just(0x60), any::<u8>()],
    ) {
        let mut frame = VALID_FRAMES[which].1.to_vec();
        if at < frame.len() {
            frame[at] = value;
        }
        parse_and_touch(&frame);
    }
}
