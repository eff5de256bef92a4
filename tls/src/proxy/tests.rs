//! The v2 codec: what it emits reads back, and every malformed header is
//! refused with the error that names its fault.

use super::*;

fn emitted(h: &Header) -> Vec<u8> {
    // Junk first, so a field left unwritten would show.
    let mut out = vec![0xAA; 3];
    h.emit(&mut out);
    out.split_off(3)
}

fn v4() -> Header {
    Header::proxy(
        "198.51.100.7:40000".parse().unwrap(),
        "10.2.0.2:443".parse().unwrap(),
    )
    .with(tlv::ALPN, b"h2".to_vec())
    .with(tlv::SPIFFE_ID, b"spiffe://lab/ns/a/sa/client".to_vec())
}

#[test]
fn an_ipv4_header_is_the_spec_bytes_and_reads_back() {
    let h = v4();
    let b = emitted(&h);
    assert_eq!(&b[..12], &SIGNATURE);
    assert_eq!(b[12], 0x21, "version 2, PROXY");
    assert_eq!(b[13], 0x11, "AF_INET, STREAM");
    let len = usize::from(u16::from_be_bytes([b[14], b[15]]));
    assert_eq!(b.len(), FIXED_LEN + len);
    assert_eq!(&b[16..20], &[198, 51, 100, 7], "source first");
    assert_eq!(&b[20..24], &[10, 2, 0, 2]);
    assert_eq!(&b[24..26], &40000u16.to_be_bytes());
    assert_eq!(&b[26..28], &443u16.to_be_bytes());
    assert_eq!(&b[28..31], &[tlv::ALPN, 0, 2]);
    assert_eq!(decode(&b, false), Ok(Decoded::Header(h, b.len())));
}

#[test]
fn ipv6_and_mixed_families_read_back_as_the_addresses_written() {
    let h = Header::proxy(
        "[2001:db8::7]:40000".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    );
    let b = emitted(&h);
    assert_eq!(b[13], 0x21, "AF_INET6, STREAM");
    assert_eq!(decode(&b, true), Ok(Decoded::Header(h, b.len())));
    // A v4 client of a v6 listener: both written as v6, the v4 one mapped.
    let mixed = Header::proxy(
        "198.51.100.7:40000".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    );
    let b = emitted(&mixed);
    assert_eq!(b[13], 0x21);
    assert_eq!(decode(&b, true), Ok(Decoded::Header(mixed, b.len())));
}

#[test]
fn local_and_unspec_keep_the_sockets_addresses() {
    let local = Header {
        command: Command::Local,
        addresses: None,
        tlvs: Vec::new(),
    };
    let b = emitted(&local);
    assert_eq!(b, [&SIGNATURE[..], &[0x20, 0x00, 0, 0]].concat());
    assert_eq!(decode(&b, true), Ok(Decoded::Header(local, 16)));
    // LOCAL with addresses: they are discarded (section 2.2).
    let mut b = emitted(&v4());
    b[12] = 0x20;
    let Ok(Decoded::Header(h, _)) = decode(&b, true) else {
        panic!("a LOCAL header")
    };
    assert_eq!((h.command, h.addresses), (Command::Local, None));
}

#[test]
fn ssl_tlv_carries_flags_verify_and_sub_tlvs() {
    let v = ssl_value(
        tlv::CLIENT_SSL | tlv::CLIENT_CERT_CONN,
        true,
        &[(tlv::SSL_VERSION, b"TLSv1.3"), (tlv::SSL_CIPHER, b"")],
    );
    assert_eq!(v[0], 0x03);
    assert_eq!(&v[1..5], &[0, 0, 0, 0], "verified: 0");
    let subs = decode_tlvs(&v[5..], 0).unwrap();
    assert_eq!(
        subs,
        [Tlv {
            kind: tlv::SSL_VERSION,
            value: b"TLSv1.3".to_vec()
        }],
        "an empty value is left out"
    );
    assert_eq!(&ssl_value(tlv::CLIENT_SSL, false, &[])[1..5], &[0, 0, 0, 1]);
}

#[test]
fn every_strict_prefix_wants_more_and_is_truncated_at_the_end() {
    let b = emitted(&v4());
    for cut in 0..b.len() {
        let need = if cut < FIXED_LEN { FIXED_LEN } else { b.len() };
        assert_eq!(decode(&b[..cut], false), Ok(Decoded::Need(need)), "{cut}");
        assert_eq!(
            decode(&b[..cut], true),
            Err(ProxyError::Truncated { have: cut, need }),
            "{cut}"
        );
    }
    // Bytes after the header are the client's, not the header's.
    let mut more = b.clone();
    more.extend_from_slice(b"\x16\x03\x01");
    assert!(matches!(decode(&more, false), Ok(Decoded::Header(_, n)) if n == b.len()));
}

#[test]
fn malformed_headers_are_refused_each_with_its_reason() {
    let good = emitted(&v4());
    let with = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        b
    };
    let cases: Vec<(Vec<u8>, ProxyError)> = vec![
        (with(5, b'X'), ProxyError::BadSignature),
        (b"\x16\x03\x01\x02\x00".to_vec(), ProxyError::BadSignature),
        (
            b"PROXY TCP4 198.51.100.7 10.2.0.2 40000 443\r\n".to_vec(),
            ProxyError::Version1,
        ),
        (with(12, 0x11), ProxyError::BadVersion(1)),
        (with(12, 0x23), ProxyError::BadCommand(3)),
        (with(13, 0x41), ProxyError::UnknownFamily(4)),
        (with(13, 0x12), ProxyError::NotStream(2)),
        (
            with(13, 0x31),
            ProxyError::ShortAddresses {
                len: good.len() - 16,
                need: 216,
            },
        ),
        (
            {
                let mut b = emitted(&Header::proxy(
                    "198.51.100.7:1".parse().unwrap(),
                    "10.2.0.2:443".parse().unwrap(),
                ));
                b[13] = 0x21;
                b
            },
            ProxyError::ShortAddresses { len: 12, need: 36 },
        ),
        (
            [&SIGNATURE[..], &[0x21, 0x11, 0, 4], &[1, 2, 3, 4]].concat(),
            ProxyError::ShortAddresses { len: 4, need: 12 },
        ),
        (
            [&SIGNATURE[..], &[0x21, 0x11, 0x10, 0x00]].concat(),
            ProxyError::TooLong {
                len: 4096,
                max: MAX_HEADER,
            },
        ),
        // The first TLV (ALPN, at byte 28) claims 200 bytes.
        (
            {
                let mut b = with(30, 200);
                b[29] = 0;
                b
            },
            ProxyError::BadTlv {
                at: 28,
                kind: tlv::ALPN,
                len: 200,
                left: good.len() - 31,
            },
        ),
    ];
    for (bytes, want) in cases {
        let got = decode(&bytes, true);
        assert_eq!(got, Err(want.clone()), "{bytes:02x?}");
        assert!(!want.to_string().is_empty());
    }
    // A UNIX-family header that is whole is refused for its family.
    let mut unix = [&SIGNATURE[..], &[0x21, 0x31, 0, 216]].concat();
    unix.extend_from_slice(&[0; 216]);
    assert_eq!(decode(&unix, true), Err(ProxyError::UnixFamily));
    // A TLV cut inside its own type and length.
    let mut short = good[..28].to_vec();
    short[15] = 12 + 2;
    short.extend_from_slice(&[tlv::ALPN, 0]);
    assert!(matches!(
        decode(&short, true),
        Err(ProxyError::BadTlv {
            at: 28,
            left: 2,
            ..
        })
    ));
}

#[test]
fn errors_name_the_byte_at_fault() {
    assert_eq!(
        ProxyError::UnknownFamily(4).to_string(),
        "address family 4 (byte 14, high nibble): the spec defines AF_UNSPEC (0), AF_INET (1), AF_INET6 (2) and AF_UNIX (3)"
    );
    assert!(ProxyError::Version1.to_string().contains("send-proxy-v2"));
}

#[test]
fn a_header_is_recognised_from_its_first_byte_and_tls_is_not() {
    assert!(looks_like_header(&emitted(&v4())));
    assert!(looks_like_header(b"\r"));
    assert!(looks_like_header(b"PROXY TCP4 "));
    assert!(!looks_like_header(b"\x16\x03\x01"));
    assert!(!looks_like_header(b"PUT / HTTP/1.1\r\n"));
    assert!(!looks_like_header(b""));
}

#[test]
fn prefixes_parse_match_and_refuse_host_bits() {
    let c: Cidr = "10.1.0.0/16".parse().unwrap();
    assert!(c.contains("10.1.200.3".parse().unwrap()));
    assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()), "v4-mapped");
    assert!(!c.contains("10.2.0.1".parse().unwrap()));
    assert!(!c.contains("2001:db8::1".parse().unwrap()));
    let one: Cidr = "10.2.0.2".parse().unwrap();
    assert_eq!(one.to_string(), "10.2.0.2/32");
    assert!(one.contains("10.2.0.2".parse().unwrap()));
    assert!(!one.contains("10.2.0.3".parse().unwrap()));
    let any: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(any.contains("192.0.2.1".parse().unwrap()));
    let v6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
    assert!(
        "10.1.0.1/16"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("host bits set: write 10.1.0.0/16")
    );
    assert!(
        "10.1.0.0/33"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("0 to 32")
    );
    assert!(
        "lb.example"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("not an address")
    );
}
