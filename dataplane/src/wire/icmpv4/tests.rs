use super::*;
use crate::wire::{Ipv4Packet, testdata};

/// The ICMP message of the captured echo request.
fn echo_request() -> &'static [u8] {
    &testdata::IPV4_ICMP_ECHO_REQUEST[34..]
}

#[test]
fn parse_echo_request() {
    let packet = Packet::new_checked(echo_request()).unwrap();
    assert_eq!(packet.msg_type(), Message::EchoRequest);
    assert!(!packet.msg_type().is_error());
    assert_eq!(packet.msg_code(), 0);
    assert_eq!(packet.checksum(), 0xe1c0);
    assert_eq!(packet.echo_ident(), 8196);
    assert_eq!(packet.echo_seq_no(), 1);
    assert_eq!(packet.rest_of_header(), [0x20, 0x04, 0x00, 0x01]);
    assert_eq!(packet.payload().len(), 56);
    assert_eq!(packet.data(), packet.payload());
    // ping(8) data: a timestamp, then 0x10, 0x11, ...
    assert_eq!(packet.payload()[16..20], [0x10, 0x11, 0x12, 0x13]);
    assert!(packet.verify_checksum());
    assert_eq!(
        Repr::parse(&packet),
        Ok(Repr::EchoRequest {
            ident: 8196,
            seq_no: 1,
            data: &echo_request()[8..],
        })
    );
}

#[test]
fn parse_port_unreachable() {
    let ip = Ipv4Packet::new_checked(&testdata::IPV4_ICMP_PORT_UNREACHABLE[14..]).unwrap();
    let packet = Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(packet.msg_type(), Message::DstUnreachable);
    assert!(packet.msg_type().is_error());
    assert_eq!(packet.msg_code(), dst_unreachable::PORT);
    assert!(packet.verify_checksum());
    // The quoted datagram is the whole DNS query.
    let query = &testdata::IPV4_UDP_DNS_QUERY[14..];
    assert_eq!(packet.payload(), query);
    assert_eq!(
        Repr::parse(&packet),
        Ok(Repr::DstUnreachable {
            code: dst_unreachable::PORT,
            next_hop_mtu: 0,
            datagram: query,
        })
    );
}

#[test]
fn unknown_types_read_but_have_no_repr() {
    let mut bytes = echo_request().to_vec();
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.set_msg_type(Message::from(13)); // timestamp
    packet.fill_checksum();
    assert_eq!(packet.msg_type(), Message::Unknown(13));
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(
        Repr::parse(&packet),
        Err(Error::Unsupported("ICMPv4 message type"))
    );
}

#[test]
fn message_numbers_round_trip() {
    for n in 0..=255u8 {
        assert_eq!(u8::from(Message::from(n)), n);
    }
    assert_eq!(Message::from(11), Message::TimeExceeded);
    assert_eq!(Message::from(12), Message::ParamProblem);
    assert_eq!(Message::from(5), Message::Redirect);
}

#[test]
fn bad_checksum() {
    let mut bytes = echo_request().to_vec();
    bytes[40] ^= 0xff;
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    assert!(!packet.verify_checksum());
    assert_eq!(Repr::parse(&packet), Err(Error::Checksum));
}

#[test]
fn truncated_prefixes() {
    for len in 0..HEADER_LEN {
        assert_eq!(
            Packet::new_checked(&echo_request()[..len]),
            Err(Error::Truncated)
        );
    }
    let packet = Packet::new_checked(&echo_request()[..HEADER_LEN]).unwrap();
    assert!(packet.payload().is_empty());
}

#[test]
fn emit_echo_reply_over_junk() {
    let data = &echo_request()[8..];
    let repr = Repr::EchoReply {
        ident: 8196,
        seq_no: 1,
        data,
    };
    assert_eq!(repr.header_len(), 8);
    assert_eq!(repr.buffer_len(), 64);
    let mut buf = [0xa5; 70];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    // What the peer's kernel answered: the request with type 0, and the
    // checksum up by the 0x0800 the type word lost (RFC 1624).
    let mut expected = echo_request().to_vec();
    expected[0] = 0;
    expected[2..4].copy_from_slice(&[0xe9, 0xc0]);
    assert_eq!(buf[..64], expected[..]);
    assert_eq!(buf[64..], [0xa5; 6]);
}

#[test]
fn emit_echo_request_reproduces_capture() {
    let repr = Repr::EchoRequest {
        ident: 8196,
        seq_no: 1,
        data: &echo_request()[8..],
    };
    let mut buf = [0xa5; 64];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    assert_eq!(buf[..], echo_request()[..]);
}

#[test]
fn emit_port_unreachable_reproduces_capture() {
    let repr = Repr::DstUnreachable {
        code: dst_unreachable::PORT,
        next_hop_mtu: 0,
        datagram: &testdata::IPV4_UDP_DNS_QUERY[14..],
    };
    let mut buf = [0xa5; 76];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    assert_eq!(buf[..], testdata::IPV4_ICMP_PORT_UNREACHABLE[34..]);
}

#[test]
fn emit_time_exceeded_over_junk() {
    // TTL exceeded for the DNS query: its IP header and 8 bytes of UDP.
    let quoted = &testdata::IPV4_UDP_DNS_QUERY[14..14 + 28];
    let repr = Repr::TimeExceeded {
        code: time_exceeded::TTL,
        datagram: quoted,
    };
    assert_eq!(repr.buffer_len(), 36);
    let mut buf = [0xa5; 40];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    // Checksum from an independent computation.
    assert_eq!(buf[..8], [0x0b, 0x00, 0x69, 0xf8, 0x00, 0x00, 0x00, 0x00]);
    assert_eq!(buf[8..36], quoted[..]);
    assert_eq!(buf[36..], [0xa5; 4]);
    let packet = Packet::new_checked(&buf[..36]).unwrap();
    assert_eq!(Repr::parse(&packet), Ok(repr));
}

#[test]
fn emit_frag_needed() {
    let quoted = &testdata::IPV4_UDP_DNS_QUERY[14..14 + 28];
    let repr = Repr::DstUnreachable {
        code: dst_unreachable::FRAG_NEEDED,
        next_hop_mtu: 1400,
        datagram: quoted,
    };
    let mut buf = [0xa5; 36];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    let packet = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(packet.rest_of_header(), [0, 0, 0x05, 0x78]);
    assert_eq!(packet.next_hop_mtu(), 1400);
    assert_eq!(Repr::parse(&packet), Ok(repr));
}

#[test]
fn setters_round_trip() {
    let mut bytes = echo_request().to_vec();
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.set_msg_type(Message::EchoReply);
    packet.set_msg_code(1);
    packet.set_echo_ident(7);
    packet.set_echo_seq_no(9);
    packet.data_mut()[0] = 0x42;
    packet.fill_checksum();
    assert_eq!(packet.msg_type(), Message::EchoReply);
    assert_eq!(packet.msg_code(), 1);
    assert_eq!(packet.echo_ident(), 7);
    assert_eq!(packet.echo_seq_no(), 9);
    assert!(packet.verify_checksum());
    packet.set_rest_of_header([1, 2, 3, 4]);
    assert_eq!(packet.rest_of_header(), [1, 2, 3, 4]);
    assert_eq!(packet.into_inner()[8], 0x42);
}
