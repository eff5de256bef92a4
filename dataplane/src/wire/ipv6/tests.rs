use super::*;
use crate::wire::testdata::{self, l3};

const A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

#[test]
fn parse_tcp_syn() {
    let packet = Packet::new_checked(l3(&testdata::IPV6_TCP_SYN)).unwrap();
    assert_eq!(packet.version(), 6);
    assert_eq!(packet.traffic_class(), 0);
    assert_eq!(packet.flow_label(), 0x1e8b1);
    assert_eq!(packet.payload_len(), 40);
    assert_eq!(packet.next_header(), IpProtocol::Tcp);
    assert_eq!(packet.hop_limit(), 64);
    assert_eq!(packet.src_addr(), A);
    assert_eq!(packet.dst_addr(), B);
    assert_eq!(packet.payload().len(), 40);
    assert_eq!(
        Repr::parse(&packet),
        Ok(Repr {
            src_addr: A,
            dst_addr: B,
            next_header: IpProtocol::Tcp,
            payload_len: 40,
            hop_limit: 64,
        })
    );
    assert_eq!(
        upper_layer(packet.into_inner()),
        Ok(UpperLayer {
            protocol: IpProtocol::Tcp,
            offset: 40,
            fragment: false,
            non_first_fragment: false,
        })
    );
}

#[test]
fn parse_neighbour_solicit() {
    let packet = Packet::new_checked(l3(&testdata::IPV6_ICMP_NEIGHBOUR_SOLICIT)).unwrap();
    assert_eq!(packet.next_header(), IpProtocol::Icmpv6);
    assert_eq!(packet.hop_limit(), 255);
    assert_eq!(
        packet.dst_addr(),
        "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap()
    );
    assert!(packet.dst_addr().is_multicast());
}

#[test]
fn hop_by_hop_is_skipped() {
    let bytes = l3(&testdata::IPV6_HOP_BY_HOP_MLD_REPORT);
    let packet = Packet::new_checked(bytes).unwrap();
    assert_eq!(packet.next_header(), IpProtocol::HopByHop);
    assert_eq!(packet.hop_limit(), 1);
    assert_eq!(
        upper_layer(bytes),
        Ok(UpperLayer {
            protocol: IpProtocol::Icmpv6,
            offset: 48,
            fragment: false,
            non_first_fragment: false,
        })
    );
    // An MLDv2 report (type 143).
    assert_eq!(bytes[48], 143);
}

#[test]
fn fragments() {
    let first = l3(testdata::IPV6_FRAGMENT_FIRST);
    assert_eq!(
        upper_layer(first),
        Ok(UpperLayer {
            protocol: IpProtocol::Icmpv6,
            offset: 48,
            fragment: true,
            non_first_fragment: false,
        })
    );
    let last = l3(&testdata::IPV6_FRAGMENT_LAST);
    assert_eq!(
        upper_layer(last),
        Ok(UpperLayer {
            protocol: IpProtocol::Icmpv6,
            offset: 48,
            fragment: true,
            non_first_fragment: true,
        })
    );
    assert_eq!(Packet::new_checked(last).unwrap().payload().len(), 21);
}

#[test]
fn every_truncated_prefix_is_an_error() {
    for frame in [
        &testdata::IPV6_TCP_SYN[..],
        &testdata::IPV6_UDP_DNS_QUERY[..],
        &testdata::IPV6_HOP_BY_HOP_MLD_REPORT[..],
        &testdata::IPV6_FRAGMENT_LAST[..],
    ] {
        let bytes = l3(frame);
        for len in 0..bytes.len() {
            assert_eq!(Packet::new_checked(&bytes[..len]), Err(Error::Truncated));
            assert_eq!(upper_layer(&bytes[..len]), Err(Error::Truncated));
        }
        assert!(Packet::new_checked(bytes).is_ok());
    }
}

#[test]
fn bad_version() {
    let mut bytes = l3(&testdata::IPV6_TCP_SYN).to_vec();
    bytes[0] = 0x40;
    assert_eq!(
        Packet::new_checked(&bytes[..]),
        Err(Error::Malformed("IPv6 version is not 6"))
    );
}

#[test]
fn payload_len_too_big() {
    let mut bytes = l3(&testdata::IPV6_TCP_SYN).to_vec();
    bytes[5] = 41;
    assert_eq!(Packet::new_checked(&bytes[..]), Err(Error::Truncated));
}

#[test]
fn payload_stops_at_payload_len() {
    let mut bytes = l3(&testdata::IPV6_FRAGMENT_LAST).to_vec();
    bytes.extend_from_slice(&[0xee; 10]);
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(packet.payload().len(), 21);
    assert_eq!(upper_layer(&bytes).unwrap().offset, 48);
}

/// An IPv6 header with the given extension headers (each as next header,
/// then the rest of its bytes) followed by `upper` as UDP.
fn with_extensions(first: u8, headers: &[&[u8]], upper: &[u8]) -> Vec<u8> {
    let payload_len: usize = headers.iter().map(|h| h.len()).sum::<usize>() + upper.len();
    let mut bytes = vec![0; HEADER_LEN];
    let repr = Repr {
        src_addr: A,
        dst_addr: B,
        next_header: IpProtocol::from(first),
        payload_len,
        hop_limit: 64,
    };
    repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
    for header in headers {
        bytes.extend_from_slice(header);
    }
    bytes.extend_from_slice(upper);
    bytes
}

const UDP: &[u8] = &[0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00];

#[test]
fn routing_destination_options_and_fragment() {
    // Destination Options (16 bytes), Routing (type 4 = SRH, 24 bytes),
    // Fragment (offset 0, M set), then UDP.
    let dest_opts: &[u8] = &[43, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut routing = vec![44, 2, 4, 0, 0, 0, 0, 0];
    routing.extend_from_slice(&[0; 16]);
    let fragment: &[u8] = &[17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
    let bytes = with_extensions(60, &[dest_opts, &routing, fragment], UDP);
    assert_eq!(
        upper_layer(&bytes),
        Ok(UpperLayer {
            protocol: IpProtocol::Udp,
            offset: 40 + 16 + 24 + 8,
            fragment: true,
            non_first_fragment: false,
        })
    );
}

#[test]
fn non_first_fragment_stops_the_walk() {
    // Offset 8 (field value 1 << 3): the bytes after it are the middle of
    // the datagram, even if they look like a Destination Options header.
    let fragment: &[u8] = &[60, 0, 0x00, 0x08, 0, 0, 0, 1];
    let bytes = with_extensions(44, &[fragment], &[17, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        upper_layer(&bytes),
        Ok(UpperLayer {
            protocol: IpProtocol::Unknown(60),
            offset: 48,
            fragment: true,
            non_first_fragment: true,
        })
    );
}

#[test]
fn eight_extension_headers_pass_nine_fail() {
    let opts = |next: u8| -> [u8; 8] { [next, 0, 1, 4, 0, 0, 0, 0] };
    let eight: Vec<[u8; 8]> = (0..8).map(|i| opts(if i == 7 { 17 } else { 60 })).collect();
    let refs: Vec<&[u8]> = eight.iter().map(|h| &h[..]).collect();
    let bytes = with_extensions(60, &refs, UDP);
    assert_eq!(upper_layer(&bytes).unwrap().offset, 40 + 64);

    let nine: Vec<[u8; 8]> = (0..9).map(|i| opts(if i == 8 { 17 } else { 60 })).collect();
    let refs: Vec<&[u8]> = nine.iter().map(|h| &h[..]).collect();
    let bytes = with_extensions(60, &refs, UDP);
    assert_eq!(
        upper_layer(&bytes),
        Err(Error::Malformed("more than 8 IPv6 extension headers"))
    );
}

#[test]
fn hop_by_hop_after_another_header_is_malformed() {
    let dest_opts: &[u8] = &[0, 0, 1, 4, 0, 0, 0, 0];
    let hop_by_hop: &[u8] = &[17, 0, 1, 4, 0, 0, 0, 0];
    let bytes = with_extensions(60, &[dest_opts, hop_by_hop], UDP);
    assert_eq!(
        upper_layer(&bytes),
        Err(Error::Malformed("IPv6 Hop-by-Hop header not first"))
    );
}

#[test]
fn extension_header_past_payload_is_truncated() {
    // Hdr Ext Len 1 claims 16 bytes; only 8 are in the payload.
    let dest_opts: &[u8] = &[17, 1, 1, 4, 0, 0, 0, 0];
    let bytes = with_extensions(60, &[dest_opts], &[]);
    assert_eq!(upper_layer(&bytes), Err(Error::Truncated));
    // An extension header announced but no bytes for it.
    let bytes = with_extensions(60, &[], &[]);
    assert_eq!(upper_layer(&bytes), Err(Error::Truncated));
    // A Fragment header cut short.
    let bytes = with_extensions(44, &[&[17, 0, 0, 0]], &[]);
    assert_eq!(upper_layer(&bytes), Err(Error::Truncated));
}

#[test]
fn no_next_header_is_an_upper_layer() {
    let bytes = with_extensions(59, &[], &[]);
    assert_eq!(
        upper_layer(&bytes).unwrap(),
        UpperLayer {
            protocol: IpProtocol::Unknown(59),
            offset: 40,
            fragment: false,
            non_first_fragment: false,
        }
    );
}

#[test]
fn emit_over_junk() {
    let repr = Repr {
        src_addr: A,
        dst_addr: B,
        next_header: IpProtocol::Tcp,
        payload_len: 40,
        hop_limit: 64,
    };
    assert_eq!(repr.header_len(), 40);
    assert_eq!(repr.buffer_len(), 80);
    let mut buf = [0xa5; 80];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    // The captured SYN's header with flow label 0.
    let mut expected = l3(&testdata::IPV6_TCP_SYN)[..40].to_vec();
    expected[1..4].copy_from_slice(&[0, 0, 0]);
    assert_eq!(buf[..40], expected[..]);
    assert!(buf[40..].iter().all(|&b| b == 0xa5));
}

#[test]
fn setters_round_trip() {
    let mut bytes = l3(&testdata::IPV6_TCP_SYN).to_vec();
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.set_traffic_class(0xb9);
    packet.set_flow_label(0xfff_ffff);
    packet.set_hop_limit(7);
    packet.set_next_header(IpProtocol::Udp);
    packet.set_src_addr(B);
    packet.set_dst_addr(A);
    packet.set_payload_len(20);
    packet.payload_mut()[0] = 0x11;
    assert_eq!(packet.version(), 6);
    assert_eq!(packet.traffic_class(), 0xb9);
    assert_eq!(packet.flow_label(), 0xf_ffff);
    packet.set_version(6);
    packet.set_flow_label(0x12345);
    assert_eq!(packet.traffic_class(), 0xb9);
    assert_eq!(packet.flow_label(), 0x12345);
    assert_eq!(packet.hop_limit(), 7);
    assert_eq!(packet.next_header(), IpProtocol::Udp);
    assert_eq!(packet.src_addr(), B);
    assert_eq!(packet.dst_addr(), A);
    assert_eq!(packet.payload().len(), 20);
    assert_eq!(packet.payload()[0], 0x11);
}
