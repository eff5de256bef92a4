use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::wire::testdata;

const V4_A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const V4_B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const V6_A: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
const V6_B: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));

/// The TCP segment of the captured IPv4 SYN (14 + 20 bytes of headers).
fn v4_syn() -> &'static [u8] {
    &testdata::IPV4_TCP_SYN[34..]
}

/// The TCP segment of the captured IPv6 SYN (14 + 40 bytes of headers).
fn v6_syn() -> &'static [u8] {
    &testdata::IPV6_TCP_SYN[54..]
}

#[test]
fn parse_ipv4_syn() {
    let packet = Packet::new_checked(v4_syn()).unwrap();
    assert_eq!(packet.src_port(), 54216);
    assert_eq!(packet.dst_port(), 80);
    assert_eq!(packet.seq_number(), 1_465_950_974);
    assert_eq!(packet.ack_number(), 0);
    assert_eq!(packet.header_len(), 40);
    assert_eq!(packet.flags(), flags::SYN);
    assert!(packet.syn());
    assert!(!packet.ack() && !packet.fin() && !packet.rst() && !packet.psh());
    assert!(!packet.urg() && !packet.ece() && !packet.cwr());
    assert_eq!(packet.window_len(), 64240);
    assert_eq!(packet.checksum(), 0x359b);
    assert_eq!(packet.urgent_at(), 0);
    // MSS 1460, SACK permitted, timestamps, NOP, window scale 10.
    assert_eq!(packet.options()[..4], [0x02, 0x04, 0x05, 0xb4]);
    assert_eq!(packet.options().len(), 20);
    assert!(packet.payload().is_empty());
    assert!(packet.verify_checksum(V4_A, V4_B));
    // The checksum covers the addresses (but not their order).
    assert!(packet.verify_checksum(V4_B, V4_A));
    assert!(!packet.verify_checksum(V4_A, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3))));
    assert!(!packet.verify_checksum(V4_A, V6_B), "mixed families");
    assert_eq!(
        Repr::parse(&packet, V4_A, V4_B),
        Ok(Repr {
            src_port: 54216,
            dst_port: 80,
            seq_number: 1_465_950_974,
            ack_number: 0,
            flags: flags::SYN,
            window_len: 64240,
            payload_len: 0,
        })
    );
}

#[test]
fn parse_ipv6_syn() {
    let packet = Packet::new_checked(v6_syn()).unwrap();
    assert_eq!(packet.src_port(), 38784);
    assert_eq!(packet.dst_port(), 443);
    assert_eq!(packet.seq_number(), 3_736_086_314);
    assert!(packet.syn());
    assert_eq!(packet.window_len(), 64800);
    assert!(packet.verify_checksum(V6_A, V6_B));
    // The checksum covers the addresses.
    assert!(!packet.verify_checksum(V6_B, V6_B));
}

#[test]
fn bad_checksum() {
    let mut bytes = v4_syn().to_vec();
    bytes[17] ^= 0x40;
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    assert!(!packet.verify_checksum(V4_A, V4_B));
    assert_eq!(Repr::parse(&packet, V4_A, V4_B), Err(Error::Checksum));
}

#[test]
fn truncated_prefixes() {
    // Without a length field, only cuts into the header (options included)
    // can be seen.
    for len in 0..40 {
        let res = Packet::new_checked(&v4_syn()[..len]);
        assert_eq!(res, Err(Error::Truncated), "len {len}");
    }
    assert!(Packet::new_checked(v4_syn()).is_ok());
}

#[test]
fn data_offset_below_five() {
    for offset in 0..5 {
        let mut bytes = v4_syn().to_vec();
        bytes[12] = offset << 4;
        assert_eq!(
            Packet::new_checked(&bytes[..]),
            Err(Error::Malformed("TCP data offset below 5"))
        );
    }
}

#[test]
fn data_offset_past_buffer() {
    let mut bytes = v4_syn().to_vec();
    bytes[12] = 0xb0; // 44 bytes of header in a 40-byte segment
    assert_eq!(Packet::new_checked(&bytes[..]), Err(Error::Truncated));
}

#[test]
fn port_zero_is_malformed() {
    let mut bytes = v4_syn().to_vec();
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.set_dst_port(0);
    packet.fill_checksum(V4_A, V4_B);
    assert_eq!(
        Repr::parse(&packet, V4_A, V4_B),
        Err(Error::Malformed("TCP port 0"))
    );
}

#[test]
fn emit_over_junk() {
    let repr = Repr {
        src_port: 54216,
        dst_port: 80,
        seq_number: 1_465_950_974,
        ack_number: 0,
        flags: flags::SYN,
        window_len: 64240,
        payload_len: 0,
    };
    assert_eq!(repr.header_len(), 20);
    let mut buf = [0xa5; 24];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]), V4_A, V4_B);
    // The captured SYN without its options (checksum from an independent
    // computation).
    let expected = [
        0xd3, 0xc8, 0x00, 0x50, 0x57, 0x60, 0xa2, 0xfe, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xfa,
        0xf0, 0x62, 0x76, 0x00, 0x00,
    ];
    assert_eq!(buf[..20], expected);
    assert_eq!(buf[20..], [0xa5; 4], "bytes past buffer_len untouched");
}

#[test]
fn emit_with_payload() {
    let repr = Repr {
        src_port: 80,
        dst_port: 54216,
        seq_number: 1000,
        ack_number: 1_465_950_975,
        flags: flags::ACK | flags::PSH,
        window_len: 512,
        payload_len: 5,
    };
    let mut buf = [0xa5; 25];
    buf[20..].copy_from_slice(b"hello");
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]), V4_B, V4_A);
    let expected = [
        0x00, 0x50, 0xd3, 0xc8, 0x00, 0x00, 0x03, 0xe8, 0x57, 0x60, 0xa2, 0xff, 0x50, 0x18, 0x02,
        0x00, 0x13, 0x91, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];
    assert_eq!(buf, expected);
    let packet = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(Repr::parse(&packet, V4_B, V4_A), Ok(repr));
    assert_eq!(packet.payload(), b"hello");
}

#[test]
fn setters_round_trip() {
    let mut bytes = v6_syn().to_vec();
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.set_src_port(1);
    packet.set_dst_port(2);
    packet.set_seq_number(3);
    packet.set_ack_number(4);
    packet.set_flags(0);
    packet.set_fin(true);
    packet.set_syn(true);
    packet.set_rst(true);
    packet.set_psh(true);
    packet.set_ack(true);
    packet.set_urg(true);
    packet.set_ece(true);
    packet.set_cwr(true);
    assert_eq!(packet.flags(), 0xff);
    packet.set_syn(false);
    packet.set_cwr(false);
    assert_eq!(packet.flags(), !flags::SYN & !flags::CWR);
    packet.set_window_len(5);
    packet.set_urgent_at(6);
    packet.set_header_len(20);
    packet.payload_mut()[0] = 0x99;
    packet.fill_checksum(V6_A, V6_B);
    assert_eq!(packet.src_port(), 1);
    assert_eq!(packet.dst_port(), 2);
    assert_eq!(packet.seq_number(), 3);
    assert_eq!(packet.ack_number(), 4);
    assert_eq!(packet.window_len(), 5);
    assert_eq!(packet.urgent_at(), 6);
    assert_eq!(packet.header_len(), 20);
    assert_eq!(packet.payload().len(), 20);
    assert!(packet.verify_checksum(V6_A, V6_B));
    assert_eq!(packet.into_inner()[20], 0x99);
}

#[test]
#[should_panic(expected = "different families")]
fn fill_checksum_mixed_families_panics() {
    let mut bytes = v4_syn().to_vec();
    Packet::new_unchecked(&mut bytes[..]).fill_checksum(V4_A, V6_B);
}
