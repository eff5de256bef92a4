//! The pipeline on hand-built frames and on the in-memory port.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use proptest::prelude::*;

use super::*;
use crate::{
    policy::conntrack::FlowKey,
    port::{FLUSH_AT, HeapMemory, MemPort, Worker},
    route::{IpPrefix, Route},
    wire::{IpProtocol, checksum},
};

const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xa0]);
const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xb0]);
const CLIENT: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]);
const SERVER: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0b]);
const A: PortId = PortId(0);
const B: PortId = PortId(1);

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn tables() -> Tables {
    let mut routes = RouteTable::default();
    routes.insert("10.1.0.0/24".parse().unwrap(), Route { port: A, via: None });
    routes.insert("10.2.0.0/24".parse().unwrap(), Route { port: B, via: None });
    routes.insert("fd00:a::/64".parse().unwrap(), Route { port: A, via: None });
    routes.insert("fd00:b::/64".parse().unwrap(), Route { port: B, via: None });
    routes.insert(
        "10.20.0.0/16".parse::<IpPrefix>().unwrap(),
        Route {
            port: B,
            via: Some("10.2.0.9".parse().unwrap()),
        },
    );
    Tables {
        ports: vec![
            PortInfo {
                mac: MAC_A,
                ipv4: Some(v4("10.1.0.1")),
                ipv6: Some(v6("fd00:a::1")),
                rp_filter: RpFilter::Strict,
            },
            PortInfo {
                mac: MAC_B,
                ipv4: Some(v4("10.2.0.1")),
                ipv6: Some(v6("fd00:b::1")),
                rp_filter: RpFilter::Strict,
            },
        ],
        routes: Arc::new(routes),
        local: vec![
            "10.1.0.1".parse().unwrap(),
            "10.2.0.1".parse().unwrap(),
            "fd00:a::1".parse().unwrap(),
        ],
    }
}

fn neighbours() -> Arc<NeighTable> {
    let mut n = NeighTable::default();
    n.insert(B, "10.2.0.2".parse().unwrap(), SERVER);
    n.insert(B, "fd00:b::2".parse().unwrap(), SERVER);
    n.insert(B, "10.2.0.9".parse().unwrap(), SERVER);
    n.insert(A, "10.1.0.2".parse().unwrap(), CLIENT);
    Arc::new(n)
}

fn pipeline() -> Pipeline {
    Pipeline::new(tables(), neighbours())
}

fn eth(dst: EthernetAddress, src: EthernetAddress, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// An Ethernet + IPv4 + UDP frame with correct checksums.
fn udp4(src: &str, dst: &str, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = eth(MAC_A, CLIENT, 0x0800);
    let total = 20 + 8 + payload.len();
    let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, ttl, 17, 0, 0];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&v4(src).octets());
    ip.extend_from_slice(&v4(dst).octets());
    let sum = !checksum::data(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = vec![0x30, 0x39, 0x00, 0x35, 0, 0, 0, 0];
    udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(payload);
    f.extend_from_slice(&udp);
    f
}

/// An Ethernet + IPv6 + TCP SYN frame.
fn tcp6(src: &str, dst: &str, hop_limit: u8) -> Vec<u8> {
    let mut f = eth(MAC_A, CLIENT, 0x86dd);
    let mut ip = vec![0x60, 0, 0, 0, 0, 20, 6, hop_limit];
    ip.extend_from_slice(&v6(src).octets());
    ip.extend_from_slice(&v6(dst).octets());
    f.extend_from_slice(&ip);
    // ports 40000 → 80, seq 1, SYN, data offset 5, window 64240
    f.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0,
    ]);
    f
}

fn run(p: &mut Pipeline, port: PortId, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let v = p.process(port, &mut buf, frame.len(), Instant::now());
    let len = match v {
        Verdict::Tx { len, .. } => len,
        Verdict::Drop(_) | Verdict::Unresolved | Verdict::Local { .. } => frame.len(),
    };
    buf.truncate(len);
    (v, buf)
}

fn ipv4_header_ok(ip: &[u8]) -> bool {
    checksum::data(&ip[..usize::from(ip[0] & 0xf) * 4]) == 0xffff
}

#[test]
fn forwards_ipv4_rewriting_macs_and_ttl() {
    let mut p = pipeline();
    let frame = udp4("10.1.0.2", "10.2.0.2", 64, b"hello");
    let (v, out) = run(&mut p, A, &frame);
    assert_eq!(
        v,
        Verdict::Tx {
            port: B,
            len: frame.len()
        }
    );
    assert_eq!(&out[0..6], &SERVER.0, "next hop's MAC");
    assert_eq!(&out[6..12], &MAC_B.0, "egress port's MAC");
    assert_eq!(out[14 + 8], 63, "TTL decremented by exactly one");
    assert!(
        ipv4_header_ok(&out[14..]),
        "incrementally updated checksum is right"
    );
    assert_eq!(&out[14 + 20..], &frame[14 + 20..], "L4 untouched");
    assert_eq!(p.counters()[0].rx_packets, 1);
    assert_eq!(p.counters()[0].rx_bytes, frame.len() as u64);
    assert_eq!(p.counters()[0].dropped(), 0);
}

#[test]
fn forwards_via_a_next_hop() {
    let mut p = pipeline();
    let (v, out) = run(&mut p, A, &udp4("10.1.0.2", "10.20.3.4", 9, b""));
    assert_eq!(
        v,
        Verdict::Tx {
            port: B,
            len: out.len()
        }
    );
    assert_eq!(&out[0..6], &SERVER.0);
}

#[test]
fn forwards_ipv6_decrementing_hop_limit() {
    let mut p = pipeline();
    let frame = tcp6("fd00:a::2", "fd00:b::2", 64);
    let (v, out) = run(&mut p, A, &frame);
    assert_eq!(
        v,
        Verdict::Tx {
            port: B,
            len: frame.len()
        }
    );
    assert_eq!(out[14 + 7], 63);
    assert_eq!(&out[0..6], &SERVER.0);
    assert_eq!(&out[6..12], &MAC_B.0);
}

#[test]
fn a_missing_neighbour_is_asked_for_not_guessed() {
    let mut p = Pipeline::new(tables(), Arc::new(NeighTable::default()));
    let frame = udp4("10.1.0.2", "10.2.0.2", 64, b"x");
    let (v, held) = run(&mut p, A, &frame);
    assert_eq!(v, Verdict::Unresolved);
    assert_eq!(held, frame, "a held frame is left as it came");
    assert_eq!(run(&mut p, A, &frame).0, Verdict::Unresolved);
    assert_eq!(
        p.take_unresolved(),
        vec![(B, IpAddr::V4(v4("10.2.0.2")))],
        "asked once per batch"
    );
    p.set_neighbours(neighbours());
    assert!(matches!(
        run(&mut p, A, &frame).0,
        Verdict::Tx { port: B, .. }
    ));
    assert_eq!(p.counters()[0].dropped(), 0, "holding is not dropping");
}

#[test]
fn the_worker_holds_frames_until_the_neighbour_is_resolved() {
    let (mem, free) = HeapMemory::new(64, 2048);
    let pipeline = Pipeline::new(tables(), Arc::new(NeighTable::default()));
    let mut w = Worker::new(
        mem,
        vec![MemPort::new(64), MemPort::new(64)],
        free,
        pipeline,
        64,
    );
    let frame = udp4("10.1.0.2", "10.2.0.2", 64, b"first ping");
    let t0 = Instant::now();
    w.inject(A, &frame);
    w.poll(t0);
    assert_eq!(w.held_frames(), 1);
    assert!(w.take_sent(B).is_empty());
    w.set_neighbours(neighbours());
    w.poll(t0);
    let sent = w.take_sent(B);
    assert_eq!(sent.len(), 1, "sent once resolved");
    assert_eq!(sent[0][14 + 8], 63, "and rewritten exactly once");
    assert_eq!(w.pipeline.counters()[0].rx_packets, 1, "received once");
    assert_eq!(w.pipeline.counters()[0].dropped(), 0);

    // A next hop that never resolves: dropped after HOLD_FOR, and counted.
    let frame = udp4("10.1.0.2", "10.2.0.77", 64, b"nobody");
    w.inject(A, &frame);
    w.poll(t0);
    assert_eq!(w.held_frames(), 1);
    w.poll(t0 + crate::port::HOLD_FOR);
    assert_eq!(w.held_frames(), 0);
    assert_eq!(
        w.pipeline.counters()[0].drops[DropReason::NoNeighbour as usize],
        1
    );
    assert_eq!(w.free_frames(), 64, "every buffer came back");
}

#[test]
fn drops_what_it_cannot_route_and_counts_why() {
    let mut p = pipeline();
    assert_eq!(
        run(&mut p, A, &udp4("10.1.0.2", "192.0.2.1", 64, b"")).0,
        Verdict::Drop(DropReason::NoRoute)
    );
    assert_eq!(
        run(&mut p, A, &udp4("10.1.0.2", "10.2.0.1", 64, b"")).0,
        Verdict::Drop(DropReason::HostDenied),
        "the appliance's own address, with no host policy"
    );
    let mut other_mac = udp4("10.1.0.2", "10.2.0.2", 64, b"");
    other_mac[5] = 0x99;
    assert_eq!(
        run(&mut p, A, &other_mac).0,
        Verdict::Drop(DropReason::NotForUs)
    );
    let mut bad_sum = udp4("10.1.0.2", "10.2.0.2", 64, b"");
    bad_sum[14 + 10] ^= 0xff;
    assert_eq!(
        run(&mut p, A, &bad_sum).0,
        Verdict::Drop(DropReason::Malformed)
    );
    let arp = eth(MAC_A, CLIENT, 0x0806)
        .into_iter()
        .chain([0u8; 28])
        .collect::<Vec<_>>();
    assert_eq!(run(&mut p, A, &arp).0, Verdict::Drop(DropReason::NotIp));
    let c = p.counters()[0];
    assert_eq!(c.rx_packets, 5);
    assert_eq!(c.dropped(), 5);
    for r in [
        DropReason::NoRoute,
        DropReason::HostDenied,
        DropReason::NotForUs,
        DropReason::Malformed,
        DropReason::NotIp,
    ] {
        assert_eq!(c.drops[r as usize], 1, "{r:?}");
    }
}

#[test]
fn martians_and_directed_broadcasts_are_never_forwarded() {
    let mut p = pipeline();
    for (src, dst) in [
        ("127.0.0.1", "10.2.0.2"),
        ("10.1.0.2", "127.0.0.1"),
        ("0.0.0.0", "10.2.0.2"),
        ("224.0.0.5", "10.2.0.2"),
        ("10.1.0.2", "239.1.2.3"),
        ("10.1.0.2", "255.255.255.255"),
        ("240.0.0.1", "10.2.0.2"),
    ] {
        assert_eq!(
            run(&mut p, A, &udp4(src, dst, 64, b"")).0,
            Verdict::Drop(DropReason::Martian),
            "{src} -> {dst}"
        );
    }
    assert_eq!(
        run(&mut p, A, &udp4("10.1.0.2", "10.2.0.255", 64, b"")).0,
        Verdict::Drop(DropReason::DirectedBroadcast)
    );
    // The last address of a routed (not connected) prefix is an ordinary host.
    assert!(matches!(
        run(&mut p, A, &udp4("10.1.0.2", "10.20.255.255", 64, b"")).0,
        Verdict::Tx { .. } | Verdict::Unresolved
    ));
    let c = p.counters()[0];
    assert_eq!(c.drops[DropReason::Martian as usize], 7);
    assert_eq!(c.drops[DropReason::DirectedBroadcast as usize], 1);
}

#[test]
fn every_truncation_is_dropped_as_malformed_never_a_panic() {
    for frame in [
        udp4("10.1.0.2", "10.2.0.2", 64, b"payload"),
        tcp6("fd00:a::2", "fd00:b::2", 64),
    ] {
        for cut in 0..frame.len() {
            let mut p = pipeline();
            let (v, _) = run(&mut p, A, &frame[..cut]);
            assert!(
                matches!(v, Verdict::Drop(DropReason::Malformed)),
                "cut at {cut}: {v:?}"
            );
        }
    }
}

#[test]
fn expired_ipv4_ttl_is_answered_with_time_exceeded() {
    let mut p = pipeline();
    let frame = udp4("10.1.0.2", "10.2.0.2", 1, b"traceroute probe");
    let (v, out) = run(&mut p, A, &frame);
    let Verdict::Tx { port, len } = v else {
        panic!("{v:?}")
    };
    assert_eq!(port, A, "back out of the ingress port");
    assert_eq!(&out[0..6], &CLIENT.0);
    assert_eq!(&out[6..12], &MAC_A.0);
    let ip = &out[14..len];
    assert!(ipv4_header_ok(ip));
    assert_eq!(ip[9], 1, "ICMP");
    assert_eq!(
        &ip[12..16],
        &v4("10.1.0.1").octets(),
        "from the ingress port's address"
    );
    assert_eq!(&ip[16..20], &v4("10.1.0.2").octets(), "to the sender");
    let icmp = &ip[20..];
    assert_eq!((icmp[0], icmp[1]), (11, 0), "time exceeded in transit");
    assert_eq!(checksum::data(icmp), 0xffff, "ICMP checksum");
    assert_eq!(
        &icmp[8..],
        &frame[14..],
        "the whole original datagram is quoted"
    );
    assert_eq!(p.counters()[0].icmp_errors_sent, 1);
    assert_eq!(p.counters()[0].drops[DropReason::TtlExpired as usize], 1);
}

#[test]
fn expired_ipv6_hop_limit_is_answered_with_time_exceeded() {
    let mut p = pipeline();
    let frame = tcp6("fd00:a::2", "fd00:b::2", 1);
    let (v, out) = run(&mut p, A, &frame);
    let Verdict::Tx { port: A, len } = v else {
        panic!("{v:?}")
    };
    let ip = &out[14..len];
    assert_eq!(ip[6], 58, "ICMPv6");
    assert_eq!(&ip[8..24], &v6("fd00:a::1").octets());
    assert_eq!(&ip[24..40], &v6("fd00:a::2").octets());
    let icmp = &ip[40..];
    assert_eq!((icmp[0], icmp[1]), (3, 0));
    let src = v6("fd00:a::1");
    let dst = v6("fd00:a::2");
    let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, icmp.len() as u32);
    assert_eq!(
        checksum::combine(&[pseudo, checksum::data(icmp)]),
        0xffff,
        "ICMPv6 checksum"
    );
    assert_eq!(&icmp[8..], &frame[14..]);
}

#[test]
fn icmp_errors_are_rate_limited() {
    let mut p = pipeline();
    let frame = udp4("10.1.0.2", "10.2.0.2", 1, b"");
    let now = Instant::now();
    let mut sent = 0;
    for _ in 0..200 {
        let mut buf = vec![0u8; 2048];
        buf[..frame.len()].copy_from_slice(&frame);
        if matches!(p.process(A, &mut buf, frame.len(), now), Verdict::Tx { .. }) {
            sent += 1;
        }
    }
    assert_eq!(sent, ICMP_BURST as usize);
    assert_eq!(p.counters()[0].drops[DropReason::TtlExpired as usize], 200);
}

#[test]
fn vlan_tagged_frames_are_routed_with_their_tag() {
    let mut p = pipeline();
    let plain = udp4("10.1.0.2", "10.2.0.2", 64, b"tagged");
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]); // VLAN 100
    tagged.extend_from_slice(&plain[12..]);
    let (v, out) = run(&mut p, A, &tagged);
    assert_eq!(
        v,
        Verdict::Tx {
            port: B,
            len: tagged.len()
        }
    );
    assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 0x64]);
    assert_eq!(out[18 + 8], 63);
    assert!(ipv4_header_ok(&out[18..]));
}

#[test]
fn the_worker_moves_frames_between_memory_ports() {
    let (mem, free) = HeapMemory::new(256, 2048);
    let ports = vec![MemPort::new(1024), MemPort::new(100)];
    let mut w = Worker::new(mem, ports, free, pipeline(), 64);
    let frame = udp4("10.1.0.2", "10.2.0.2", 64, b"bulk");
    for _ in 0..150 {
        w.inject(A, &frame);
    }
    let now = Instant::now();
    assert_eq!(w.poll(now), 64, "one batch per port per turn");
    assert_eq!(w.poll(now), 64);
    assert_eq!(w.poll(now), 22);
    let sent = w.take_sent(B);
    assert_eq!(sent.len(), 100, "the TX ring holds 100");
    assert!(sent.iter().all(|f| f[14 + 8] == 63));
    let c = w.pipeline.counters();
    assert_eq!(c[0].rx_packets, 150);
    assert_eq!(c[1].tx_packets, 100);
    assert_eq!(c[1].tx_bytes, 100 * frame.len() as u64);
    assert_eq!(c[1].drops[DropReason::TxRingFull as usize], 50);
    assert_eq!(w.free_frames(), 256, "every buffer came back");
}

#[test]
fn a_tx_hold_flushes_once_for_frames_of_several_turns() {
    let (mem, free) = HeapMemory::new(256, 2048);
    let ports = vec![MemPort::new(1024), MemPort::new(1024)];
    let mut w = Worker::new(mem, ports, free, pipeline(), 64);
    let frame = udp4("10.1.0.2", "10.2.0.2", 64, b"one");
    // No hold: the turn that queues a frame flushes its port.
    let t0 = Instant::now();
    w.inject(A, &frame);
    assert_eq!(w.poll(t0), 1);
    assert_eq!((w.flushes(), w.unflushed_frames()), (1, 0));
    assert_eq!(w.ports[B.index()].flushes, 1);
    // A 50 µs hold: frames of three turns wait, then go in one flush.
    w.set_tx_hold(Duration::from_micros(50));
    for us in [0, 10, 20] {
        w.inject(A, &frame);
        assert_eq!(w.poll(t0 + Duration::from_micros(us)), 1);
        assert_eq!(w.flushes(), 0, "held at {us} µs");
    }
    assert_eq!(w.unflushed_frames(), 3);
    assert_eq!(w.poll(t0 + Duration::from_micros(49)), 0);
    assert_eq!(w.flushes(), 0);
    assert_eq!(w.poll(t0 + Duration::from_micros(50)), 0);
    assert_eq!((w.flushes(), w.unflushed_frames()), (1, 0));
    assert_eq!(w.ports[B.index()].flushes, 2);
    assert_eq!(w.take_sent(B).len(), 4, "every frame was queued");
    // FLUSH_AT frames go at once, however long the hold.
    w.set_tx_hold(Duration::from_secs(1));
    for _ in 0..FLUSH_AT {
        w.inject(A, &frame);
    }
    let t1 = t0 + Duration::from_millis(1);
    assert_eq!(w.poll(t1), FLUSH_AT);
    assert_eq!((w.flushes(), w.unflushed_frames()), (1, 0));
    assert_eq!(w.ports[B.index()].flushes, 3);
}

/// `frame` as it arrives on the port with MAC `mac`.
fn arriving_at(mac: EthernetAddress, mut frame: Vec<u8>) -> Vec<u8> {
    frame[0..6].copy_from_slice(&mac.0);
    frame
}

/// An Ethernet + IPv4 + ICMP error frame (`ty`, `code`) quoting `quoted`
/// (an IPv4 datagram, from its header), with correct checksums.
fn icmp4_error(src: &str, dst: &str, ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut f = eth(MAC_B, SERVER, 0x0800);
    let mut icmp = vec![ty, code, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quoted);
    let sum = !checksum::data(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let total = 20 + icmp.len();
    let mut ip = vec![0x45, 0, 0, 0, 0x56, 0x78, 0, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&v4(src).octets());
    ip.extend_from_slice(&v4(dst).octets());
    let sum = !checksum::data(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

/// The tables with port A's reverse-path check set to `mode`.
fn tables_with_a(mode: RpFilter) -> Tables {
    let mut t = tables();
    t.ports[A.index()].rp_filter = mode;
    t
}

/// A policy that allows everything but is in force (it has an endpoint),
/// so that flows are tracked.
fn tracking_pipeline() -> Pipeline {
    let mut policy = PolicyProgram::allow_all(1);
    policy.endpoints.insert(
        FlowKey::ip("10.2.0.2".parse().unwrap()),
        crate::policy::program::EndpointPrograms::default(),
    );
    Pipeline::with_policy(tables(), neighbours(), Arc::new(policy), 1024)
}

fn spoofed(p: &Pipeline, port: PortId) -> u64 {
    p.counters()[port.index()].drops[DropReason::Spoofed as usize]
}

#[test]
fn strict_drops_a_source_routed_through_another_port_or_not_at_all() {
    let mut p = pipeline();
    let v6_frame = |src: &str| tcp6(src, "fd00:b::2", 64);
    for (frame, why) in [
        (udp4("10.2.0.7", "10.2.0.2", 64, b""), "island B's subnet"),
        (
            udp4("10.20.1.1", "10.2.0.2", 64, b""),
            "behind a route via B",
        ),
        (
            udp4("192.0.2.1", "10.2.0.2", 64, b""),
            "no route back at all",
        ),
        (udp4("10.1.0.1", "10.2.0.2", 64, b""), "the appliance's own"),
        (
            udp4("10.2.0.1", "10.2.0.2", 64, b""),
            "the appliance's own, on B",
        ),
        (v6_frame("fd00:b::7"), "island B's IPv6 subnet"),
        (v6_frame("fe80::2"), "IPv6 link-local"),
    ] {
        assert_eq!(
            run(&mut p, A, &frame).0,
            Verdict::Drop(DropReason::Spoofed),
            "{why}"
        );
    }
    assert_eq!(spoofed(&p, A), 7);
    // What is routed back through the port it came in on is forwarded.
    let ok = run(&mut p, A, &udp4("10.1.0.77", "10.2.0.2", 64, b"")).0;
    assert!(matches!(ok, Verdict::Tx { port: B, .. }), "{ok:?}");
    let behind_b = arriving_at(MAC_B, udp4("10.20.1.1", "10.1.0.2", 64, b""));
    let ok = run(&mut p, B, &behind_b).0;
    assert!(matches!(ok, Verdict::Tx { port: A, .. }), "{ok:?}");
    assert_eq!(spoofed(&p, B), 0);
}

#[test]
fn loose_wants_some_route_back_and_off_wants_none() {
    let mut p = Pipeline::new(tables_with_a(RpFilter::Loose), neighbours());
    let v = run(&mut p, A, &udp4("10.2.0.7", "10.2.0.2", 64, b"")).0;
    assert!(matches!(v, Verdict::Tx { port: B, .. }), "{v:?}");
    for src in ["192.0.2.1", "10.1.0.1"] {
        assert_eq!(
            run(&mut p, A, &udp4(src, "10.2.0.2", 64, b"")).0,
            Verdict::Drop(DropReason::Spoofed),
            "{src}"
        );
    }
    let mut p = Pipeline::new(tables_with_a(RpFilter::Off), neighbours());
    for src in ["10.2.0.7", "192.0.2.1", "10.1.0.1"] {
        let v = run(&mut p, A, &udp4(src, "10.2.0.2", 64, b"")).0;
        assert!(matches!(v, Verdict::Tx { port: B, .. }), "{src}: {v:?}");
    }
    assert_eq!(spoofed(&p, A), 0);
}

#[test]
fn with_policy_a_spoofed_packet_of_a_tracked_flow_touches_nothing() {
    let mut p = tracking_pipeline();
    let request = udp4("10.1.0.2", "10.2.0.2", 64, b"q");
    assert!(matches!(
        run(&mut p, A, &request).0,
        Verdict::Tx { port: B, .. }
    ));
    let mut reply = arriving_at(MAC_B, udp4("10.2.0.2", "10.1.0.2", 64, b"r"));
    reply[14 + 20..14 + 24].copy_from_slice(&[0, 0x35, 0x30, 0x39]); // 53 → 12345
    assert!(matches!(
        run(&mut p, B, &reply).0,
        Verdict::Tx { port: A, .. }
    ));
    let flow = |p: &Pipeline| p.filter().conntrack().iter().next().unwrap().clone();
    assert_eq!(flow(&p).ingress, [A.0 as u8, B.0 as u8], "each way bound");
    assert_eq!(flow(&p).packets, [1, 1]);
    // The same reply forged from island A: the flow knows its replies come
    // in on B, the route back to 10.2.0.2 says so too.
    let forged = arriving_at(MAC_A, reply.clone());
    assert_eq!(
        run(&mut p, A, &forged).0,
        Verdict::Drop(DropReason::Spoofed)
    );
    assert_eq!(flow(&p).packets, [1, 1], "not accounted to the flow");
    assert_eq!(flow(&p).ingress, [A.0 as u8, B.0 as u8]);
    // A new flow from a spoofed source is never judged nor tracked.
    let new = udp4("10.2.0.9", "10.2.0.2", 64, b"");
    assert_eq!(run(&mut p, A, &new).0, Verdict::Drop(DropReason::Spoofed));
    assert_eq!(p.filter().conntrack().len(), 1);
    assert_eq!(spoofed(&p, A), 2);
    // The genuine flow goes on both ways.
    assert!(matches!(
        run(&mut p, A, &request).0,
        Verdict::Tx { port: B, .. }
    ));
    assert!(matches!(
        run(&mut p, B, &reply).0,
        Verdict::Tx { port: A, .. }
    ));
    assert_eq!(flow(&p).packets, [2, 2]);
}

#[test]
fn an_icmp_error_is_related_only_toward_the_source_it_quotes() {
    let mut p = tracking_pipeline();
    let request = udp4("10.1.0.2", "10.2.0.2", 64, b"query");
    assert!(matches!(
        run(&mut p, A, &request).0,
        Verdict::Tx { port: B, .. }
    ));
    // Quoted as the server received it (TTL 63, checksum as rewritten).
    let (_, forwarded) = run(&mut tracking_pipeline(), A, &request);
    let quoted = &forwarded[14..14 + 28];
    // Port unreachable from the server, back to the client: related.
    let genuine = icmp4_error("10.2.0.2", "10.1.0.2", 3, 3, quoted);
    let v = run(&mut p, B, &genuine).0;
    assert!(matches!(v, Verdict::Tx { port: A, .. }), "{v:?}");
    // The same error sent to another host of island A: not related.
    let forged = icmp4_error("10.2.0.2", "10.1.0.9", 3, 3, quoted);
    assert_eq!(
        run(&mut p, B, &forged).0,
        Verdict::Drop(DropReason::IcmpMisdirected)
    );
    // Nor to the quoted packet's destination (a reflection to the server).
    let back = arriving_at(MAC_A, icmp4_error("10.1.0.2", "10.2.0.2", 11, 0, quoted));
    assert_eq!(
        run(&mut p, A, &back).0,
        Verdict::Drop(DropReason::IcmpMisdirected)
    );
    // Time exceeded from a router behind B (10.20.0.0/16 via B) is related.
    let router = icmp4_error("10.20.0.1", "10.1.0.2", 11, 0, quoted);
    let v = run(&mut p, B, &router).0;
    assert!(matches!(v, Verdict::Tx { port: A, .. }), "{v:?}");
    // And a genuine-looking error forged from island A is spoofed.
    let spoof = arriving_at(MAC_A, genuine);
    assert_eq!(run(&mut p, A, &spoof).0, Verdict::Drop(DropReason::Spoofed));
    let drops = |port: PortId, r: DropReason| p.counters()[port.index()].drops[r as usize];
    assert_eq!(drops(B, DropReason::IcmpMisdirected), 1);
    assert_eq!(drops(A, DropReason::IcmpMisdirected), 1);
    assert_eq!(drops(A, DropReason::Spoofed), 1);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut p = pipeline();
        let mut buf = bytes.clone();
        buf.resize(2048, 0);
        let _ = p.process(A, &mut buf, bytes.len(), Instant::now());
    }

    #[test]
    fn mutated_frames_never_panic_and_forwarded_ones_stay_valid(
        which in 0..2usize,
        flips in proptest::collection::vec((0usize..80, any::<u8>()), 1..6),
        cut in 0usize..100,
    ) {
        let mut frame = if which == 0 { udp4("10.1.0.2", "10.2.0.2", 3, b"abcdefgh") } else { tcp6("fd00:a::2", "fd00:b::2", 3) };
        for (i, b) in flips {
            if i < frame.len() { frame[i] = b; }
        }
        frame.truncate(frame.len().saturating_sub(cut % 8));
        let mut p = pipeline();
        let (v, out) = run(&mut p, A, &frame);
        if let Verdict::Tx { len, .. } = v {
            prop_assert!(len <= 2048);
            if which == 0 && out.len() > 14 && out[12..14] == [8, 0] {
                prop_assert!(ipv4_header_ok(&out[14..]));
            }
        }
    }
}

mod tcp_validity {
    //! Issue 19, item 3: TCP segments that conntrack finds invalid, and
    //! segments of no tracked flow that are not SYNs, are dropped and
    //! counted, whatever policy would say of them.
    use std::time::Duration;

    use super::*;
    use crate::{
        pipeline::filter::EXPIRE_EVERY,
        wire::tcp::flags::{ACK, FIN, PSH, RST, SYN},
    };

    /// An Ethernet + IPv4 + TCP frame `src:sport → dst:dport` with `flags`,
    /// arriving on port A when its source is island A's, else on B.
    fn tcp4(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
        let from_a = src.starts_with("10.1.");
        let (mac, peer) = if from_a {
            (MAC_A, CLIENT)
        } else {
            (MAC_B, SERVER)
        };
        let mut f = eth(mac, peer, 0x0800);
        let mut ip = vec![0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&v4(src).octets());
        ip.extend_from_slice(&v4(dst).octets());
        let sum = !checksum::data(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&64_240u16.to_be_bytes());
        f.extend_from_slice(&tcp);
        f
    }

    fn client(flags: u8) -> Vec<u8> {
        tcp4("10.1.0.2", 40_000, "10.2.0.2", 80, flags)
    }

    fn server(flags: u8) -> Vec<u8> {
        tcp4("10.2.0.2", 80, "10.1.0.2", 40_000, flags)
    }

    fn at(p: &mut Pipeline, port: PortId, frame: &[u8], now: Instant) -> Verdict {
        let mut buf = vec![0u8; 2048];
        buf[..frame.len()].copy_from_slice(frame);
        p.process(port, &mut buf, frame.len(), now)
    }

    fn passes(v: Verdict) -> bool {
        matches!(v, Verdict::Tx { .. })
    }

    fn drops(p: &Pipeline, port: PortId, r: DropReason) -> u64 {
        p.counters()[port.index()].drops[r as usize]
    }

    #[test]
    fn bad_flags_and_first_segments_that_are_not_syns_are_dropped() {
        // The policy allows everything, both ways: only conntrack refuses.
        let mut p = tracking_pipeline();
        let now = Instant::now();
        for flags in [SYN | FIN, SYN | RST, 0, FIN, FIN | PSH, SYN | FIN | ACK] {
            assert_eq!(
                at(&mut p, A, &client(flags), now),
                Verdict::Drop(DropReason::TcpInvalid),
                "flags {flags:#04x}"
            );
        }
        for flags in [ACK, ACK | PSH, SYN | ACK, FIN | ACK, RST, RST | ACK] {
            assert_eq!(
                at(&mut p, A, &client(flags), now),
                Verdict::Drop(DropReason::TcpNoFlow),
                "flags {flags:#04x}"
            );
        }
        assert_eq!(p.filter().conntrack().len(), 0, "nothing was tracked");
        assert_eq!(drops(&p, A, DropReason::TcpInvalid), 6);
        assert_eq!(drops(&p, A, DropReason::TcpNoFlow), 6);
        assert_eq!(drops(&p, A, DropReason::Policy), 0);
        // A SYN opens; the handshake and the data pass both ways.
        assert!(passes(at(&mut p, A, &client(SYN), now)));
        // Before the SYN/ACK, the client cannot ACK (Linux: sIV).
        assert_eq!(
            at(&mut p, A, &client(ACK), now),
            Verdict::Drop(DropReason::TcpInvalid)
        );
        assert!(passes(at(&mut p, B, &server(SYN | ACK), now)));
        assert!(passes(at(&mut p, A, &client(ACK), now)));
        assert!(passes(at(&mut p, B, &server(ACK | PSH), now)));
        // Bad flags on the established flow: dropped, the flow unchanged.
        assert_eq!(
            at(&mut p, B, &server(SYN | RST), now),
            Verdict::Drop(DropReason::TcpInvalid)
        );
        // A SYN/ACK from the client is invalid in any state past SYN_SENT.
        assert_eq!(
            at(&mut p, A, &client(SYN | ACK), now),
            Verdict::Drop(DropReason::TcpInvalid)
        );
        assert!(passes(at(&mut p, A, &client(ACK | PSH), now)));
        let flow = p.filter().conntrack().iter().next().unwrap().clone();
        assert_eq!(
            flow.tcp,
            Some(crate::policy::conntrack::TcpState::Established)
        );
        assert_eq!(flow.packets, [3, 2]);
        assert_eq!(drops(&p, A, DropReason::TcpInvalid), 8);
        assert_eq!(drops(&p, B, DropReason::TcpInvalid), 1);
        assert_eq!(p.filter().conntrack().stats().invalid, 3);
    }

    #[test]
    fn the_halves_of_an_evicted_flow_are_not_admitted_as_new_ones() {
        // One flow fits: a second connection evicts the first.
        let mut policy = PolicyProgram::allow_all(1);
        policy.endpoints.insert(
            FlowKey::ip("10.2.0.2".parse().unwrap()),
            crate::policy::program::EndpointPrograms::default(),
        );
        let mut p = Pipeline::with_policy(tables(), neighbours(), Arc::new(policy), 1);
        let now = Instant::now();
        assert!(passes(at(&mut p, A, &client(SYN), now)));
        assert!(passes(at(&mut p, B, &server(SYN | ACK), now)));
        assert!(passes(at(&mut p, A, &client(ACK), now)));
        let other = tcp4("10.1.0.2", 40_001, "10.2.0.2", 80, SYN);
        assert!(passes(at(&mut p, A, &other, now)));
        let s = p.filter().conntrack().stats();
        assert_eq!((s.entries, s.evicted_established), (1, 1));
        // The server's next segment would be a new connection from the
        // server, which this policy allows; it is not a SYN, so it is not.
        assert_eq!(
            at(&mut p, B, &server(ACK | PSH), now),
            Verdict::Drop(DropReason::TcpNoFlow)
        );
        assert_eq!(
            at(&mut p, A, &client(ACK | PSH), now),
            Verdict::Drop(DropReason::TcpNoFlow)
        );
        assert_eq!(p.filter().conntrack().len(), 1, "nothing picked up");
        assert_eq!(drops(&p, B, DropReason::TcpNoFlow), 1);
        assert_eq!(drops(&p, A, DropReason::TcpNoFlow), 1);
    }

    #[test]
    fn flows_expire_on_the_clock_while_packets_keep_coming() {
        let mut p = tracking_pipeline();
        let t0 = Instant::now();
        // A flow that goes quiet, and a stream that never does.
        assert!(passes(at(&mut p, A, &client(SYN), t0)));
        let stream = udp4("10.1.0.2", "10.2.0.2", 64, b"x");
        let mut removed = 0;
        // 200 s of a packet every 5 ms, each turn of the worker's loop
        // asking for expiry as it does: the quiet flow (SYN_SENT, 120 s)
        // goes without a single idle moment.
        for i in 0..40_000u64 {
            let now = t0 + Duration::from_millis(5 * i);
            removed += p.filter_mut().expire_due(now);
            assert!(passes(at(&mut p, A, &stream, now)));
        }
        assert_eq!(removed, 1);
        assert_eq!(p.filter().conntrack().len(), 1);
        assert_eq!(p.filter().conntrack().stats().expired, 1);
        // Sweeps are at most one per EXPIRE_EVERY.
        let t1 = t0 + Duration::from_secs(1000);
        assert!(passes(at(&mut p, A, &client(SYN), t1)));
        let t2 = t1 + Duration::from_secs(120);
        assert_eq!(p.filter_mut().expire_due(t2), 2, "both flows are due");
        assert!(passes(at(&mut p, A, &client(SYN), t2)));
        let t3 = t2 + Duration::from_secs(120);
        let swept = t3 - EXPIRE_EVERY / 2;
        assert_eq!(p.filter_mut().expire_due(swept), 0, "a sweep, too early");
        assert_eq!(p.filter_mut().expire_due(t3), 0, "expired, but not due");
        assert_eq!(p.filter_mut().expire_due(swept + EXPIRE_EVERY), 1);
    }
}

#[test]
fn unclaimed_traffic_is_dropped_unless_allowed_and_no_policy_forwards_nothing() {
    use crate::policy::program::Unclaimed;
    // No policy at all, unclaimed denied: nothing crosses.
    let mut p = pipeline();
    p.set_unclaimed(Unclaimed::Deny);
    assert_eq!(
        run(&mut p, A, &udp4("10.1.0.2", "10.2.0.2", 64, b"")).0,
        Verdict::Drop(DropReason::Unclaimed)
    );
    assert_eq!(
        run(&mut p, A, &tcp6("fd00:a::2", "fd00:b::2", 64)).0,
        Verdict::Drop(DropReason::Unclaimed),
        "a SYN between unclaimed addresses"
    );
    assert_eq!(p.counters()[0].drops[DropReason::Unclaimed as usize], 2);
    // One side claimed (an endpoint with no policy of its own): its side
    // allows, as before.
    let mut p = tracking_pipeline();
    p.set_unclaimed(Unclaimed::Deny);
    assert!(matches!(
        run(&mut p, A, &udp4("10.1.0.2", "10.2.0.2", 64, b"")).0,
        Verdict::Tx { .. }
    ));
    // Neither claimed, and allowed by the knob.
    let mut p = pipeline();
    p.set_unclaimed(Unclaimed::Allow);
    assert!(matches!(
        run(&mut p, A, &udp4("10.1.0.2", "10.2.0.2", 64, b"")).0,
        Verdict::Tx { .. }
    ));
}

/// A policy whose host endpoint (the appliance's 10.1.0.1 and 10.2.0.1)
/// admits UDP to port 53 from 10.1.0.2 only; its tier's default denies.
fn host_policy_pipeline() -> Pipeline {
    use crate::policy::{
        classifier::{Classifier, Prefix, Rule},
        program::{Action, EndpointPrograms, Program, RuleMeta, TierProgram, TierRule},
    };
    let client = Prefix::v4(u32::from(v4("10.1.0.2")), 32);
    let rules = [
        Rule {
            src: client,
            proto: Some(17),
            dport: (53, 53),
            ..Rule::ANY
        },
        Rule::ANY,
    ];
    let meta = |action, index| RuleMeta {
        tier: "default".into(),
        policy: "GlobalNetworkPolicy/host".into(),
        direction: "ingress",
        index,
        action,
    };
    let mut policy = PolicyProgram::allow_all(1);
    policy.rules = [meta(Action::Allow, Some(0)), meta(Action::Deny, None)].into();
    policy.programs = vec![Arc::new(Program {
        tiers: vec![TierProgram {
            classifier: Arc::new(Classifier::build(&rules)),
            rules: vec![
                TierRule::plain(Action::Allow, 0),
                TierRule::plain(Action::Deny, 1),
            ],
        }],
    })];
    for own in ["10.1.0.1", "10.2.0.1"] {
        policy.endpoints.insert(
            FlowKey::ip(own.parse().unwrap()),
            EndpointPrograms {
                ingress: Some(0),
                egress: None,
            },
        );
    }
    Pipeline::with_policy(tables(), neighbours(), Arc::new(policy), 1024)
}

#[test]
fn the_host_endpoints_policy_judges_what_is_addressed_to_the_appliance() {
    let mut p = host_policy_pipeline();
    // Allowed: handed over as the IP packet, without the Ethernet header.
    // udp4 sends to port 53; `frame` is the same query to port 5353.
    let dns = udp4("10.1.0.2", "10.1.0.1", 64, b"query");
    let mut frame = dns.clone();
    frame[14 + 22..14 + 24].copy_from_slice(&5353u16.to_be_bytes());
    // The UDP checksum is not checked; the IPv4 one is unchanged.
    let (v, out) = run(&mut p, A, &dns);
    assert_eq!(
        v,
        Verdict::Local {
            l3: 14,
            end: frame.len()
        }
    );
    assert_eq!(out[14..], dns[14..], "passed on unchanged (no TTL - 1)");
    // Another port, or another source: the tier default denies.
    assert_eq!(
        run(&mut p, A, &frame).0,
        Verdict::Drop(DropReason::HostDenied)
    );
    let from_b = arriving_at(MAC_B, {
        let mut f = udp4("10.2.0.2", "10.2.0.1", 64, b"query");
        f[14 + 22..14 + 24].copy_from_slice(&53u16.to_be_bytes());
        f
    });
    assert_eq!(
        run(&mut p, B, &from_b).0,
        Verdict::Drop(DropReason::HostDenied)
    );
    // A spoofed source is still spoofed, not judged.
    let mut spoofed_dns = udp4("10.2.0.9", "10.1.0.1", 64, b"query");
    spoofed_dns[14 + 22..14 + 24].copy_from_slice(&53u16.to_be_bytes());
    assert_eq!(
        run(&mut p, A, &spoofed_dns).0,
        Verdict::Drop(DropReason::Spoofed)
    );
    assert_eq!(
        p.counters()[A.index()].drops[DropReason::HostDenied as usize],
        1
    );
    assert_eq!(
        p.counters()[B.index()].drops[DropReason::HostDenied as usize],
        1
    );
}

#[test]
fn the_worker_hands_allowed_host_packets_to_its_local_stack() {
    let p = host_policy_pipeline();
    let mut dns = udp4("10.1.0.2", "10.1.0.1", 64, b"query");
    dns[14 + 22..14 + 24].copy_from_slice(&53u16.to_be_bytes());
    // Ethernet padding past the IP packet is not handed over.
    let mut padded = dns.clone();
    padded.extend_from_slice(&[0xee; 6]);
    let (mem, free) = HeapMemory::new(64, 2048);
    let ports = vec![MemPort::new(16), MemPort::new(16)];
    // Without a local stack: dropped as `local`.
    let mut w = Worker::new(mem, ports, free, p, 16);
    w.inject(A, &padded);
    w.poll(Instant::now());
    assert_eq!(
        w.pipeline.counters()[0].drops[DropReason::Local as usize],
        1
    );
    #[derive(Debug, Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);
    impl crate::port::LocalStack for Shared {
        fn deliver(&mut self, packet: &[u8]) -> std::io::Result<()> {
            self.0.lock().unwrap().push(packet.to_vec());
            Ok(())
        }
    }
    let got = Shared::default();
    w.set_local_stack(Box::new(got.clone()));
    w.inject(A, &padded);
    w.poll(Instant::now());
    assert_eq!(*got.0.lock().unwrap(), [dns[14..].to_vec()]);
    assert_eq!(w.pipeline.counters()[0].host_delivered, 1);
    assert_eq!(w.free_frames(), 64, "every buffer came back");
}
