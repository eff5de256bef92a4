use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::wire::testdata;

const V4_A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const V4_B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const V6_A: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
const V6_B: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));

/// The UDP datagram of the captured IPv4 DNS query.
fn v4_dns() -> &'static [u8] {
    &testdata::IPV4_UDP_DNS_QUERY[34..]
}

/// The UDP datagram of the captured IPv6 DNS query.
fn v6_dns() -> &'static [u8] {
    &testdata::IPV6_UDP_DNS_QUERY[54..]
}

#[test]
fn parse_ipv4_dns_query() {
    let packet = Packet::new_checked(v4_dns()).unwrap();
    assert_eq!(packet.src_port(), 53124);
    assert_eq!(packet.dst_port(), 53);
    assert_eq!(packet.len(), 48);
    assert_eq!(packet.checksum(), 0xbb1d);
    assert_eq!(packet.payload().len(), 40);
    // DNS header: ID 0x1c2b, flags 0x0120 (RD, AD), one question.
    assert_eq!(packet.payload()[..4], [0x1c, 0x2b, 0x01, 0x20]);
    assert!(packet.verify_checksum(V4_A, V4_B));
    assert!(!packet.verify_checksum(V4_A, V4_A));
    assert!(!packet.verify_checksum(V4_A, V6_B));
    assert_eq!(
        Repr::parse(&packet, V4_A, V4_B),
        Ok(Repr {
            src_port: 53124,
            dst_port: 53,
            payload_len: 40,
        })
    );
}

#[test]
fn parse_ipv6_dns_query() {
    let packet = Packet::new_checked(v6_dns()).unwrap();
    assert_eq!(packet.src_port(), 53125);
    assert_eq!(packet.dst_port(), 53);
    assert_eq!(packet.checksum(), 0xe3ab);
    assert!(packet.verify_checksum(V6_A, V6_B));
    // Same DNS message as over IPv4.
    assert_eq!(packet.payload(), &v4_dns()[8..]);
}

#[test]
fn zero_checksum_means_none_over_ipv4_only() {
    let mut bytes = v4_dns().to_vec();
    Packet::new_unchecked(&mut bytes[..]).set_checksum(0);
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    assert!(packet.verify_checksum(V4_A, V4_B));
    assert!(!packet.verify_checksum(V6_A, V6_B));
    assert!(Repr::parse(&packet, V4_A, V4_B).is_ok());
    assert_eq!(Repr::parse(&packet, V6_A, V6_B), Err(Error::Checksum));
}

#[test]
fn computed_zero_is_sent_as_all_ones() {
    // Pick the last two data bytes so that the datagram sums to 0xffff and
    // its checksum would be 0.
    let mut bytes = v4_dns().to_vec();
    let n = bytes.len();
    bytes[n - 2..].copy_from_slice(&[0, 0]);
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.fill_checksum(V4_A, V4_B);
    let fixup = packet.checksum();
    packet.payload_mut()[38..].copy_from_slice(&fixup.to_be_bytes());
    packet.fill_checksum(V4_A, V4_B);
    assert_eq!(packet.checksum(), 0xffff);
    assert!(packet.verify_checksum(V4_A, V4_B));
}

#[test]
fn every_truncated_prefix_is_an_error() {
    for datagram in [v4_dns(), v6_dns()] {
        for len in 0..datagram.len() {
            assert_eq!(Packet::new_checked(&datagram[..len]), Err(Error::Truncated));
        }
    }
}

#[test]
fn len_below_eight_is_malformed() {
    for len in 0..8 {
        let mut bytes = v4_dns().to_vec();
        bytes[4..6].copy_from_slice(&u16::to_be_bytes(len));
        assert_eq!(
            Packet::new_checked(&bytes[..]),
            Err(Error::Malformed("UDP length below 8"))
        );
    }
}

#[test]
fn len_past_buffer_is_truncated() {
    let mut bytes = v4_dns().to_vec();
    bytes[5] = 49;
    assert_eq!(Packet::new_checked(&bytes[..]), Err(Error::Truncated));
}

#[test]
fn payload_and_checksum_stop_at_len() {
    let mut bytes = v4_dns().to_vec();
    bytes.extend_from_slice(&[0xee; 6]);
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(packet.payload().len(), 40);
    assert!(packet.verify_checksum(V4_A, V4_B));
}

#[test]
fn destination_port_zero_is_malformed() {
    let mut bytes = v4_dns().to_vec();
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.set_dst_port(0);
    packet.fill_checksum(V4_A, V4_B);
    assert_eq!(
        Repr::parse(&packet, V4_A, V4_B),
        Err(Error::Malformed("UDP destination port 0"))
    );
}

#[test]
fn emit_over_junk_reproduces_capture() {
    for (datagram, src, dst, src_port) in
        [(v4_dns(), V4_A, V4_B, 53124), (v6_dns(), V6_A, V6_B, 53125)]
    {
        let repr = Repr {
            src_port,
            dst_port: 53,
            payload_len: 40,
        };
        assert_eq!(repr.header_len(), 8);
        assert_eq!(repr.buffer_len(), 48);
        let mut buf = [0xa5; 52];
        buf[8..48].copy_from_slice(&datagram[8..]);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]), src, dst);
        assert_eq!(buf[..48], datagram[..]);
        assert_eq!(buf[48..], [0xa5; 4]);
    }
}

#[test]
#[should_panic(expected = "shorter than the datagram")]
fn emit_into_short_buffer_panics() {
    let repr = Repr {
        src_port: 1,
        dst_port: 2,
        payload_len: 40,
    };
    repr.emit(&mut Packet::new_unchecked(&mut [0; 47][..]), V4_A, V4_B);
}

#[test]
fn setters_round_trip() {
    let mut bytes = v6_dns().to_vec();
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.set_src_port(5353);
    packet.set_dst_port(5354);
    packet.set_len(10);
    packet.payload_mut().copy_from_slice(&[1, 2]);
    packet.fill_checksum(V6_A, V6_B);
    assert_eq!(packet.src_port(), 5353);
    assert_eq!(packet.dst_port(), 5354);
    assert_eq!(packet.len(), 10);
    assert_eq!(packet.payload(), &[1, 2]);
    assert!(packet.verify_checksum(V6_A, V6_B));
    assert_eq!(packet.into_inner().len(), 48);
}
