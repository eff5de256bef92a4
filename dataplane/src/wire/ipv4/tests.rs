use proptest::prelude::*;

use super::*;
use crate::wire::testdata::{self, l3};

fn echo_request() -> Vec<u8> {
    l3(&testdata::IPV4_ICMP_ECHO_REQUEST).to_vec()
}

#[test]
fn parse_icmp_echo_request() {
    let bytes = echo_request();
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(packet.version(), 4);
    assert_eq!(packet.header_len(), 20);
    assert_eq!(packet.dscp_ecn(), 0);
    assert_eq!(packet.dscp(), 0);
    assert_eq!(packet.ecn(), 0);
    assert_eq!(packet.total_len(), 84);
    assert_eq!(packet.ident(), 0x44e9);
    assert!(packet.dont_frag());
    assert!(!packet.more_frags());
    assert_eq!(packet.frag_offset(), 0);
    assert!(!packet.is_fragment());
    assert_eq!(packet.hop_limit(), 64);
    assert_eq!(packet.next_header(), IpProtocol::Icmp);
    assert_eq!(packet.checksum(), 0x71bc);
    assert_eq!(packet.src_addr(), Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(packet.dst_addr(), Ipv4Addr::new(192, 0, 2, 2));
    assert!(packet.verify_checksum());
    assert!(packet.options().is_empty());
    assert_eq!(packet.payload().len(), 64);
    assert_eq!(packet.payload()[0], 8); // ICMP echo request

    let repr = Repr::parse(&packet).unwrap();
    assert_eq!(
        repr,
        Repr {
            src_addr: Ipv4Addr::new(192, 0, 2, 1),
            dst_addr: Ipv4Addr::new(192, 0, 2, 2),
            next_header: IpProtocol::Icmp,
            payload_len: 64,
            hop_limit: 64,
        }
    );
}

#[test]
fn parse_icmp_error_with_dscp() {
    let packet = Packet::new_checked(l3(&testdata::IPV4_ICMP_PORT_UNREACHABLE)).unwrap();
    // Linux sends ICMP errors with TOS 0xc0 (CS6) and without DF.
    assert_eq!(packet.dscp_ecn(), 0xc0);
    assert_eq!(packet.dscp(), 48);
    assert!(!packet.dont_frag());
    assert!(packet.verify_checksum());
}

#[test]
fn parse_fragments() {
    let first = Packet::new_checked(l3(testdata::IPV4_FRAGMENT_FIRST)).unwrap();
    assert!(first.more_frags());
    assert_eq!(first.frag_offset(), 0);
    assert!(first.is_fragment());
    assert_eq!(first.payload().len(), 1480);
    assert!(first.verify_checksum());
    assert_eq!(
        Repr::parse(&first),
        Err(Error::Unsupported("IPv4 fragment"))
    );

    let last = Packet::new_checked(l3(&testdata::IPV4_FRAGMENT_LAST)).unwrap();
    assert!(!last.more_frags());
    assert!(!last.dont_frag());
    assert_eq!(last.frag_offset(), 1480);
    assert_eq!(last.ident(), first.ident());
    assert!(last.is_fragment());
    assert_eq!(last.payload().len(), 9);
    assert!(last.verify_checksum());
}

#[test]
fn payload_stops_at_total_len() {
    // Ethernet pads short frames to 60 bytes; the padding is not payload.
    let mut bytes = l3(&testdata::IPV4_FRAGMENT_LAST).to_vec();
    bytes.extend_from_slice(&[0; 17]);
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(packet.payload().len(), 9);
}

#[test]
fn every_truncated_prefix_is_an_error() {
    for frame in [
        &testdata::IPV4_ICMP_ECHO_REQUEST[..],
        &testdata::IPV4_TCP_SYN[..],
        &testdata::IPV4_UDP_DNS_QUERY[..],
        &testdata::IPV4_FRAGMENT_LAST[..],
    ] {
        let bytes = l3(frame);
        for len in 0..bytes.len() {
            assert_eq!(
                Packet::new_checked(&bytes[..len]),
                Err(Error::Truncated),
                "len {len}"
            );
        }
        assert!(Packet::new_checked(bytes).is_ok());
    }
}

#[test]
fn bad_version() {
    let mut bytes = echo_request();
    bytes[0] = 0x65;
    assert_eq!(
        Packet::new_checked(&bytes[..]),
        Err(Error::Malformed("IPv4 version is not 4"))
    );
}

#[test]
fn ihl_below_five() {
    for ihl in 0..5 {
        let mut bytes = echo_request();
        bytes[0] = 0x40 | ihl;
        assert_eq!(
            Packet::new_checked(&bytes[..]),
            Err(Error::Malformed("IPv4 IHL below 5"))
        );
    }
}

#[test]
fn ihl_past_buffer() {
    let bytes = echo_request();
    let mut short = bytes[..24].to_vec();
    short[0] = 0x46; // 24 bytes of header: fits
    short[3] = 24;
    assert!(Packet::new_checked(&short[..]).is_ok());
    short[0] = 0x47; // 28 bytes of header: does not
    assert_eq!(Packet::new_checked(&short[..]), Err(Error::Truncated));
}

#[test]
fn total_len_too_big() {
    let mut bytes = echo_request();
    bytes[3] = 85;
    assert_eq!(Packet::new_checked(&bytes[..]), Err(Error::Truncated));
    bytes[2] = 0xff;
    assert_eq!(Packet::new_checked(&bytes[..]), Err(Error::Truncated));
}

#[test]
fn total_len_below_header_len() {
    let mut bytes = echo_request();
    bytes[2] = 0;
    bytes[3] = 19;
    assert_eq!(
        Packet::new_checked(&bytes[..]),
        Err(Error::Malformed("IPv4 total length below header length"))
    );
    bytes[3] = 20; // an empty payload is fine
    assert_eq!(Packet::new_checked(&bytes[..]).unwrap().payload(), &[]);
}

#[test]
fn options_are_between_header_and_payload() {
    // IHL 6 with a Router Alert option (RFC 2113): 94 04 00 00.
    let mut bytes = vec![
        0x46, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0x00, 0x00, 0xc0, 0x00, 0x02,
        0x01, 0xe0, 0x00, 0x00, 0x16, 0x94, 0x04, 0x00, 0x00, 0x22, 0x00, 0xfa, 0x02,
    ];
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.fill_checksum();
    assert!(packet.verify_checksum());
    assert_eq!(packet.header_len(), 24);
    assert_eq!(packet.options(), &[0x94, 0x04, 0x00, 0x00]);
    assert_eq!(packet.payload(), &[0x22, 0x00, 0xfa, 0x02]);
    assert_eq!(packet.next_header(), IpProtocol::Unknown(2));
    let repr = Repr::parse(&packet).unwrap();
    assert_eq!(repr.payload_len, 4);
}

#[test]
fn bad_checksum() {
    let mut bytes = echo_request();
    bytes[11] ^= 1;
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    assert!(!packet.verify_checksum());
    assert_eq!(Repr::parse(&packet), Err(Error::Checksum));
}

#[test]
fn fill_checksum_reproduces_capture() {
    let mut bytes = echo_request();
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.set_checksum(0);
    packet.fill_checksum();
    assert_eq!(packet.checksum(), 0x71bc);
}

#[test]
fn emit_over_junk() {
    let repr = Repr {
        src_addr: Ipv4Addr::new(192, 0, 2, 1),
        dst_addr: Ipv4Addr::new(192, 0, 2, 2),
        next_header: IpProtocol::Icmp,
        payload_len: 64,
        hop_limit: 64,
    };
    assert_eq!(repr.header_len(), 20);
    assert_eq!(repr.buffer_len(), 84);
    let mut buf = [0xa5; 84];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    // The captured header with identification 0 (and so checksum
    // 0x71bc + 0x44e9 = 0xb6a5).
    let expected = [
        0x45, 0x00, 0x00, 0x54, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0xb6, 0xa5, 0xc0, 0x00, 0x02,
        0x01, 0xc0, 0x00, 0x02, 0x02,
    ];
    assert_eq!(buf[..20], expected);
    assert!(buf[20..].iter().all(|&b| b == 0xa5), "payload untouched");
    let packet = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(Repr::parse(&packet), Ok(repr));
}

#[test]
#[should_panic(expected = "longer than 65535")]
fn emit_too_long_panics() {
    let repr = Repr {
        src_addr: Ipv4Addr::UNSPECIFIED,
        dst_addr: Ipv4Addr::UNSPECIFIED,
        next_header: IpProtocol::Udp,
        payload_len: 65516,
        hop_limit: 1,
    };
    repr.emit(&mut Packet::new_unchecked(&mut [0; 20][..]));
}

#[test]
fn setters_round_trip() {
    let mut bytes = echo_request();
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.set_dscp_ecn(0xb8 | 0x01);
    packet.set_ident(0x1234);
    packet.set_dont_frag(false);
    packet.set_more_frags(true);
    packet.set_frag_offset(2960);
    packet.set_hop_limit(3);
    packet.set_next_header(IpProtocol::Udp);
    packet.set_src_addr(Ipv4Addr::new(203, 0, 113, 7));
    packet.set_dst_addr(Ipv4Addr::new(198, 51, 100, 9));
    packet.set_total_len(40);
    packet.payload_mut()[0] = 0x77;
    packet.fill_checksum();
    assert_eq!(packet.dscp(), 46); // EF
    assert_eq!(packet.ecn(), 1);
    assert_eq!(packet.ident(), 0x1234);
    assert!(!packet.dont_frag());
    assert!(packet.more_frags());
    assert_eq!(packet.frag_offset(), 2960);
    assert_eq!(packet.hop_limit(), 3);
    assert_eq!(packet.next_header(), IpProtocol::Udp);
    assert_eq!(packet.src_addr(), Ipv4Addr::new(203, 0, 113, 7));
    assert_eq!(packet.dst_addr(), Ipv4Addr::new(198, 51, 100, 9));
    assert_eq!(packet.payload().len(), 20);
    assert!(packet.verify_checksum());
    packet.set_more_frags(false);
    packet.set_dont_frag(true);
    assert_eq!(packet.frag_offset(), 2960);
    assert!(packet.dont_frag());
    assert_eq!(packet.into_inner()[20], 0x77);
}

/// A random IPv4 header (options included) with a correct checksum.
fn arb_header() -> impl Strategy<Value = Vec<u8>> {
    (5u8..=15).prop_flat_map(|ihl| {
        proptest::collection::vec(any::<u8>(), usize::from(ihl) * 4).prop_map(move |mut h| {
            h[0] = 0x40 | ihl;
            let mut packet = Packet::new_unchecked(&mut h[..]);
            packet.fill_checksum();
            h
        })
    })
}

proptest! {
    #[test]
    fn ttl_update_matches_recomputation(mut header in arb_header(), ttl in any::<u8>()) {
        let mut packet = Packet::new_unchecked(&mut header[..]);
        // TTL is the high byte of the TTL/protocol word (RFC 1624 section 3).
        let old_word = u16::from_be_bytes([packet.hop_limit(), u8::from(packet.next_header())]);
        let new_word = u16::from_be_bytes([ttl, u8::from(packet.next_header())]);
        let incremental = checksum::update(packet.checksum(), old_word, new_word);
        packet.set_hop_limit(ttl);
        packet.fill_checksum();
        prop_assert_eq!(incremental, packet.checksum());
        packet.set_checksum(incremental);
        prop_assert!(packet.verify_checksum());
    }

    #[test]
    fn any_word_update_matches_recomputation(
        mut header in arb_header(),
        index in any::<prop::sample::Index>(),
        new_word in any::<u16>(),
    ) {
        let words = header.len() / 2;
        // Any 16-bit word but the checksum itself (word 5).
        let mut i = index.index(words - 1);
        if i >= 5 {
            i += 1;
        }
        let at = 2 * i;
        let old_word = read_u16(&header, at);
        // Word 0 has version and IHL in its high byte: keep them, so that only
        // DSCP/ECN changes and the header stays the same IPv4 header.
        let new_word = if i == 0 { (old_word & 0xff00) | (new_word & 0x00ff) } else { new_word };
        let incremental = checksum::update(read_u16(&header, 10), old_word, new_word);
        write_u16(&mut header, at, new_word);
        let mut packet = Packet::new_unchecked(&mut header[..]);
        packet.fill_checksum();
        prop_assert_eq!(incremental, packet.checksum());
    }
}
