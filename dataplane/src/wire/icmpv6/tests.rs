use super::*;
use crate::wire::{Ipv6Packet, testdata};

const A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// The ICMPv6 message of the captured echo request (A to B).
fn echo_request() -> &'static [u8] {
    &testdata::IPV6_ICMP_ECHO_REQUEST[54..]
}

#[test]
fn parse_echo_request() {
    let packet = Packet::new_checked(echo_request()).unwrap();
    assert_eq!(packet.msg_type(), Message::EchoRequest);
    assert!(!packet.is_ndp());
    assert!(!packet.msg_type().is_error());
    assert_eq!(packet.msg_code(), 0);
    assert_eq!(packet.checksum(), 0x17ba);
    assert_eq!(packet.echo_ident(), 8197);
    assert_eq!(packet.echo_seq_no(), 1);
    assert_eq!(packet.payload().len(), 56);
    assert!(packet.verify_checksum(A, B));
    assert!(!packet.verify_checksum(A, A));
    assert_eq!(
        Repr::parse(&packet, A, B),
        Ok(Repr::EchoRequest {
            ident: 8197,
            seq_no: 1,
            data: &echo_request()[8..],
        })
    );
}

#[test]
fn parse_neighbour_solicit() {
    let ip = Ipv6Packet::new_checked(&testdata::IPV6_ICMP_NEIGHBOUR_SOLICIT[14..]).unwrap();
    let packet = Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(packet.msg_type(), Message::NeighbourSolicit);
    assert!(packet.msg_type().is_ndp());
    assert!(packet.is_ndp());
    assert!(!packet.msg_type().is_error());
    assert!(packet.verify_checksum(ip.src_addr(), ip.dst_addr()));
    // The target address follows the reserved word.
    assert_eq!(packet.payload()[..16], B.octets());
    assert_eq!(
        Repr::parse(&packet, ip.src_addr(), ip.dst_addr()),
        Err(Error::Unsupported("ICMPv6 message type"))
    );
}

#[test]
fn parse_router_solicit() {
    let ip = Ipv6Packet::new_checked(&testdata::IPV6_ICMP_ROUTER_SOLICIT[14..]).unwrap();
    let packet = Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(packet.msg_type(), Message::RouterSolicit);
    assert!(packet.msg_type().is_ndp());
    assert_eq!(
        ip.src_addr(),
        "fe80::5eff:fe10:1".parse::<Ipv6Addr>().unwrap()
    );
    assert!(packet.verify_checksum(ip.src_addr(), ip.dst_addr()));
}

#[test]
fn parse_port_unreachable() {
    let ip = Ipv6Packet::new_checked(&testdata::IPV6_ICMP_PORT_UNREACHABLE[14..]).unwrap();
    let packet = Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(packet.msg_type(), Message::DstUnreachable);
    assert!(packet.msg_type().is_error());
    assert_eq!(packet.msg_code(), dst_unreachable::PORT);
    let query = &testdata::IPV6_UDP_DNS_QUERY[14..];
    assert_eq!(
        Repr::parse(&packet, B, A),
        Ok(Repr::DstUnreachable {
            code: dst_unreachable::PORT,
            datagram: query,
        })
    );
}

#[test]
fn message_numbers() {
    for n in 0..=255u8 {
        let message = Message::from(n);
        assert_eq!(u8::from(message), n);
        assert_eq!(message.is_ndp(), (133..=137).contains(&n));
        assert_eq!(message.is_error(), n < 128);
    }
    assert_eq!(Message::from(143), Message::Unknown(143)); // MLDv2 report
    assert_eq!(Message::from(136), Message::NeighbourAdvert);
}

#[test]
fn truncated_prefixes() {
    for len in 0..HEADER_LEN {
        assert_eq!(
            Packet::new_checked(&echo_request()[..len]),
            Err(Error::Truncated)
        );
    }
}

#[test]
fn bad_checksum() {
    let mut bytes = echo_request().to_vec();
    bytes[9] ^= 1;
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(Repr::parse(&packet, A, B), Err(Error::Checksum));
}

#[test]
fn emit_echo_reply_over_junk() {
    let repr = Repr::EchoReply {
        ident: 8197,
        seq_no: 1,
        data: &echo_request()[8..],
    };
    assert_eq!(repr.header_len(), 8);
    assert_eq!(repr.buffer_len(), 64);
    let mut buf = [0xa5; 66];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]), B, A);
    // What the peer's kernel answered: type 129, and the checksum down by
    // the 0x0100 the type word gained.
    let mut expected = echo_request().to_vec();
    expected[0] = 129;
    expected[2..4].copy_from_slice(&[0x16, 0xba]);
    assert_eq!(buf[..64], expected[..]);
    assert_eq!(buf[64..], [0xa5; 2]);
}

#[test]
fn emit_port_unreachable_reproduces_capture() {
    let repr = Repr::DstUnreachable {
        code: dst_unreachable::PORT,
        datagram: &testdata::IPV6_UDP_DNS_QUERY[14..],
    };
    let mut buf = [0xa5; 96];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]), B, A);
    assert_eq!(buf[..], testdata::IPV6_ICMP_PORT_UNREACHABLE[54..]);
}

#[test]
fn emit_packet_too_big_and_time_exceeded() {
    let quoted = &testdata::IPV6_TCP_SYN[14..];
    for repr in [
        Repr::PacketTooBig {
            mtu: 1280,
            datagram: quoted,
        },
        Repr::TimeExceeded {
            code: time_exceeded::HOP_LIMIT,
            datagram: quoted,
        },
    ] {
        let mut buf = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]), B, A);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.verify_checksum(B, A));
        assert_eq!(Repr::parse(&packet, B, A), Ok(repr));
        if let Repr::PacketTooBig { .. } = repr {
            assert_eq!(packet.mtu(), 1280);
            assert_eq!(buf[..8], [2, 0, buf[2], buf[3], 0, 0, 0x05, 0x00]);
        } else {
            assert_eq!(buf[..8], [3, 0, buf[2], buf[3], 0, 0, 0, 0]);
        }
    }
}

#[test]
fn setters_round_trip() {
    let mut bytes = echo_request().to_vec();
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.set_msg_type(Message::ParamProblem);
    packet.set_msg_code(1);
    packet.set_pointer(40);
    assert_eq!(packet.pointer(), 40);
    packet.set_mtu(1500);
    assert_eq!(packet.mtu(), 1500);
    assert_eq!(packet.rest_of_header(), [0, 0, 0x05, 0xdc]);
    packet.set_echo_ident(3);
    packet.set_echo_seq_no(4);
    packet.payload_mut()[0] = 0x42;
    packet.fill_checksum(A, B);
    assert_eq!(packet.msg_type(), Message::ParamProblem);
    assert_eq!(packet.msg_code(), 1);
    assert_eq!(packet.echo_ident(), 3);
    assert_eq!(packet.echo_seq_no(), 4);
    assert!(packet.verify_checksum(A, B));
    assert_eq!(packet.into_inner()[8], 0x42);
}
