use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::OnceLock,
    time::{Duration, Instant},
};

use super::{
    Conntrack, Direction, Flow, FlowKey, Lookup, NO_PORT, TcpState, Timeouts, index, is_icmp_error,
    proto,
};
use crate::wire::tcp::flags::{ACK, FIN, PSH, RST, SYN, URG};

mod model;
mod tcp;

use Direction::{Original, Reply};
use TcpState::{Close, CloseWait, Established, FinWait, LastAck, SynRecv, SynSent, TimeWait};

const SYNACK: u8 = SYN | ACK;
const FINACK: u8 = FIN | ACK;

/// One fixed origin for every test's clock.
fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn at(secs: u64) -> Instant {
    t0() + Duration::from_secs(secs)
}

fn v4(d: u8) -> u128 {
    FlowKey::ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, d)))
}

fn v6(d: u16) -> u128 {
    FlowKey::ip(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, d)))
}

fn key(proto: u8, src: u128, sport: u16, dst: u128, dport: u16) -> FlowKey {
    FlowKey {
        src,
        dst,
        proto,
        sport,
        dport,
    }
}

/// Client 10.0.0.1:40000 → server 10.0.0.2:443.
fn tcp_key() -> FlowKey {
    key(proto::TCP, v4(1), 40_000, v4(2), 443)
}

fn udp_key() -> FlowKey {
    key(proto::UDP, v4(1), 5353, v4(2), 53)
}

fn table() -> Conntrack {
    Conntrack::with_seed(1024, Timeouts::default(), 7)
}

/// Looks up a packet; `None` on a miss, else its direction and the flow.
fn send(ct: &mut Conntrack, k: FlowKey, flags: u8, now: Instant) -> Option<(Direction, Flow)> {
    match ct.lookup(&k, flags, 100, now) {
        Lookup::Hit { flow, dir } => Some((dir, flow.clone())),
        Lookup::Invalid { flow, dir } => Some((dir, flow.clone())),
        Lookup::Miss => None,
        Lookup::Unbound => panic!("a lookup without a port is never unbound"),
    }
}

/// The state after a packet; panics on a miss.
fn state_after(ct: &mut Conntrack, k: FlowKey, flags: u8, now: Instant) -> TcpState {
    let (_, flow) = send(ct, k, flags, now).expect("the flow is tracked");
    flow.tcp.expect("a TCP flow")
}

/// A table holding one established connection (client → server).
fn established() -> (Conntrack, FlowKey) {
    let mut ct = table();
    let k = tcp_key();
    ct.insert(k, SYN, 60, 1, 1, at(0));
    assert_eq!(state_after(&mut ct, k.reversed(), SYNACK, at(0)), SynRecv);
    assert_eq!(state_after(&mut ct, k, ACK, at(0)), Established);
    (ct, k)
}

// UDP, ICMP, others --------------------------------------------------------

#[test]
fn udp_one_way_uses_the_short_timeout() {
    let mut ct = table();
    let k = udp_key();
    ct.insert(k, 0, 60, 0, 0, at(0));
    // Refreshed by more packets the same way, 30 s each time.
    assert!(send(&mut ct, k, 0, at(29)).is_some());
    assert!(send(&mut ct, k, 0, at(58)).is_some());
    assert!(send(&mut ct, k, 0, at(88)).is_none());
    assert_eq!(ct.stats().expired, 1);
}

#[test]
fn udp_both_ways_uses_the_stream_timeout() {
    let mut ct = table();
    let k = udp_key();
    ct.insert(k, 0, 60, 0, 0, at(0));
    let (dir, flow) = send(&mut ct, k.reversed(), 0, at(10)).unwrap();
    assert_eq!((dir, flow.packets), (Reply, [1, 1]));
    // 119 s idle: alive; then 120 s idle: gone.
    assert!(send(&mut ct, k, 0, at(129)).is_some());
    assert!(ct.related(&k, at(249)).is_none());
}

#[test]
fn icmp_echo_flows() {
    for (proto, a, b) in [(proto::ICMP, v4(1), v4(2)), (proto::ICMPV6, v6(1), v6(2))] {
        let mut ct = table();
        // Echo request a → b with identifier 0x1234; the reply b → a.
        let request = key(proto, a, 0x1234, b, 0x1234);
        let reply = key(proto, b, 0x1234, a, 0x1234);
        assert_eq!(request.reversed(), reply);
        ct.insert(request, 0, 84, 0, 0, at(0));
        let (dir, flow) = send(&mut ct, reply, 0, at(1)).unwrap();
        assert_eq!((dir, flow.tcp, flow.packets), (Reply, None, [1, 1]));
        // Another identifier is another flow.
        assert!(send(&mut ct, key(proto, b, 7, a, 7), 0, at(1)).is_none());
        // 30 s idle.
        assert!(send(&mut ct, request, 0, at(30)).is_some());
        assert!(send(&mut ct, reply, 0, at(60)).is_none());
    }
}

#[test]
fn other_protocols_use_the_generic_timeout_exactly() {
    let mut ct = table();
    let gre = key(47, v4(1), 0, v4(2), 0);
    ct.insert(gre, 0, 60, 0, 0, at(0));
    let almost = at(600) - Duration::from_nanos(1);
    let (_, flow) = send(&mut ct, gre.reversed(), 0, almost).unwrap();
    assert_eq!(flow.last_seen, almost);
    assert!(send(&mut ct, gre, 0, almost + Duration::from_secs(600)).is_none());
    assert_eq!(ct.stats().expired, 1);
    assert!(ct.is_empty());
}

#[test]
fn a_direction_unbound_to_a_port_is_not_accounted_until_verified() {
    let mut ct = table();
    let k = tcp_key();
    ct.insert(k, SYN, 60, 0, 0, at(0)).ingress[0] = 3;
    let flow = |ct: &Conntrack| ct.iter().next().unwrap().clone();
    // The original direction on its own port: a hit, counted.
    assert!(matches!(
        ct.lookup_on(&k, 3, false, SYN, 60, at(1)),
        Lookup::Hit { dir: Original, .. }
    ));
    let before = flow(&ct);
    // The reply, first seen (no port yet), or the original on another
    // port: unbound, and nothing changes — not even by a RST.
    assert!(matches!(
        ct.lookup_on(&k.reversed(), 4, false, RST | ACK, 60, at(2)),
        Lookup::Unbound
    ));
    assert!(matches!(
        ct.lookup_on(&k, 5, false, RST, 60, at(2)),
        Lookup::Unbound
    ));
    assert_eq!(flow(&ct), before);
    assert_eq!(before.ingress, [3, NO_PORT]);
    // Verified: bound and accounted.
    assert!(matches!(
        ct.lookup_on(&k.reversed(), 4, true, SYN | ACK, 60, at(2)),
        Lookup::Hit { dir: Reply, .. }
    ));
    assert_eq!((flow(&ct).ingress, flow(&ct).tcp), ([3, 4], Some(SynRecv)));
    assert!(matches!(
        ct.lookup_on(&k.reversed(), 4, false, ACK, 60, at(3)),
        Lookup::Hit { dir: Reply, .. }
    ));
    // A port the caller cannot name is never bound.
    assert!(matches!(
        ct.lookup_on(&k, NO_PORT, true, ACK, 60, at(3)),
        Lookup::Hit { .. }
    ));
    assert!(matches!(
        ct.lookup_on(&k, NO_PORT, false, ACK, 60, at(3)),
        Lookup::Unbound
    ));
    assert_eq!(flow(&ct).ingress, [3, 4], "and binds nothing");
}

#[test]
fn icmp_errors_find_their_flow_both_ways() {
    for (client, server) in [(v4(1), v4(2)), (v6(1), v6(2))] {
        for proto in [proto::UDP, proto::TCP] {
            let mut ct = table();
            let k = key(proto, client, 40_000, server, 53);
            ct.insert(k, SYN, 60, 5, 0, at(0));
            // A router between them reports the client's packet: the error
            // travels router → client and quotes client → server.
            let flow = ct.related(&k, at(1)).expect("related to the flow");
            assert_eq!((flow.key, flow.verdict), (k, 5));
            // The client reports the server's reply (port unreachable): the
            // error travels client → server and quotes server → client.
            assert_eq!(ct.related(&k.reversed(), at(1)).unwrap().key, k);
            // Related packets neither count nor refresh.
            let flow = ct.iter().next().unwrap();
            assert_eq!((flow.packets, flow.last_seen), ([1, 0], at(0)));
            // A quote of an untracked packet.
            let other = key(proto, client, 40_001, server, 53);
            assert!(ct.related(&other, at(1)).is_none());
        }
    }
    // ICMP about an echo request.
    let mut ct = table();
    let echo = key(proto::ICMP, v4(1), 9, v4(2), 9);
    ct.insert(echo, 0, 84, 0, 0, at(0));
    assert!(ct.related(&echo, at(1)).is_some());
    assert!(ct.related(&echo, at(30)).is_none());
}

#[test]
fn which_icmp_messages_are_errors() {
    let v4: Vec<u8> = (0..=255)
        .filter(|&t| is_icmp_error(proto::ICMP, t))
        .collect();
    assert_eq!(v4, [3, 11, 12]);
    let v6: Vec<u8> = (0..=255)
        .filter(|&t| is_icmp_error(proto::ICMPV6, t))
        .collect();
    assert_eq!(v6, [1, 2, 3, 4]);
    assert!(!is_icmp_error(proto::UDP, 3));
}

// Table --------------------------------------------------------------------

#[test]
fn hash_is_the_same_both_ways() {
    let seed = index::Seed::new(99);
    for k in [tcp_key(), udp_key(), key(proto::ICMPV6, v6(1), 3, v6(2), 3)] {
        assert_eq!(index::hash(&seed, &k), index::hash(&seed, &k.reversed()));
    }
}

#[test]
fn expire_boundary_and_budget() {
    let mut ct = table();
    for port in 0..100 {
        ct.insert(key(proto::UDP, v4(1), port, v4(2), 53), 0, 60, 0, 0, at(0));
    }
    let live = key(proto::TCP, v4(3), 1, v4(4), 2);
    ct.insert(live, ACK, 60, 0, 0, at(0));
    assert_eq!(ct.expire(at(30) - Duration::from_nanos(1), usize::MAX), 0);
    assert_eq!(ct.expire(at(30), 10), 10);
    assert_eq!(ct.len(), 91);
    assert_eq!(ct.expire(at(30), 0), 0);
    assert_eq!(ct.expire(at(30), usize::MAX), 90);
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.iter().next().unwrap().key, live);
    assert_eq!(ct.stats().expired, 100);
    assert_eq!(ct.expire(at(30), usize::MAX), 0);
}

#[test]
fn expire_sweeps_round_robin_from_where_it_stopped() {
    let mut ct = table();
    // Alternate live (TCP established) and expiring (UDP) flows.
    for port in 0..200 {
        let proto = if port % 2 == 0 {
            proto::UDP
        } else {
            proto::TCP
        };
        ct.insert(key(proto, v4(1), port, v4(2), 80), ACK, 60, 0, 0, at(0));
    }
    let mut removed = 0;
    for _ in 0..100 {
        removed += ct.expire(at(31), 1);
    }
    assert_eq!(removed, 100);
    assert!(ct.iter().all(|f| f.key.proto == proto::TCP));
}

#[test]
fn remove_finds_either_direction_and_keeps_the_rest() {
    let mut ct = Conntrack::with_seed(4096, Timeouts::default(), 1);
    let keys: Vec<FlowKey> = (0..4000)
        .map(|i| key(proto::UDP, v4((i % 200) as u8), i, v6(i), 53))
        .collect();
    for k in &keys {
        ct.insert(*k, 0, 60, 0, 0, at(0));
    }
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let k = if i % 4 == 0 { *k } else { k.reversed() };
        assert!(ct.remove(&k));
        assert!(!ct.remove(&k));
    }
    assert_eq!(ct.len(), 2000);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            ct.related(&k.reversed(), at(1)).is_some(),
            i % 2 == 1,
            "key {i}"
        );
    }
    let held: HashSet<FlowKey> = ct.iter().map(|f| f.key).collect();
    assert_eq!(held.len(), 2000);
    assert!(keys.iter().skip(1).step_by(2).all(|k| held.contains(k)));
}

#[test]
fn insert_replaces_a_flow_with_the_same_key() {
    let mut ct = table();
    let k = udp_key();
    ct.insert(k, 0, 60, 1, 1, at(0));
    send(&mut ct, k.reversed(), 0, at(1));
    let flow = ct.insert(k.reversed(), 0, 70, 2, 2, at(2));
    assert_eq!(
        (flow.key, flow.verdict, flow.packets),
        (k.reversed(), 2, [1, 0])
    );
    assert_eq!(ct.len(), 1);
    assert_eq!(send(&mut ct, k, 0, at(3)).unwrap().0, Reply);
    assert_eq!(ct.stats().inserted, 2);
}

#[test]
fn full_table_never_grows_and_counts_evictions() {
    let cap = 64;
    let mut ct = Conntrack::with_seed(cap, Timeouts::default(), 3);
    for i in 0..cap as u16 * 3 {
        let now = t0() + Duration::from_millis(u64::from(i));
        ct.insert(key(proto::UDP, v4(1), i, v4(2), 53), 0, 60, 0, 0, now);
        assert!(ct.len() <= cap);
    }
    let s = ct.stats();
    assert_eq!((s.entries, s.capacity, s.inserted), (cap, cap, 192));
    assert_eq!((s.evicted(), s.table_full, s.expired), (128, 128, 0));
    // Every held flow is still found.
    let held: Vec<FlowKey> = ct.iter().map(|f| f.key).collect();
    for k in held {
        assert!(ct.related(&k, at(1)).is_some());
    }
}

#[test]
fn sampled_lru_keeps_busy_flows() {
    let cap = 64;
    let mut ct = Conntrack::with_seed(cap, Timeouts::default(), 11);
    let flow = |i: u16| key(proto::UDP, v4(1), i, v4(2), 53);
    for i in 0..cap as u16 {
        ct.insert(flow(i), 0, 60, 0, 0, at(0));
    }
    let hot: Vec<FlowKey> = (0..8).map(flow).collect();
    let cold: Vec<FlowKey> = (8..16).map(flow).collect();
    // Each millisecond the hot flows see a packet and a new flow arrives.
    for i in 0..cap as u16 * 2 {
        let now = at(1) + Duration::from_millis(u64::from(i));
        for k in &hot {
            assert!(send(&mut ct, *k, 0, now).is_some());
        }
        ct.insert(flow(1000 + i), 0, 60, 0, 0, now);
        assert_eq!(ct.len(), cap);
    }
    let held: HashSet<FlowKey> = ct.iter().map(|f| f.key).collect();
    let hot_left = hot.iter().filter(|k| held.contains(k)).count();
    let cold_left = cold.iter().filter(|k| held.contains(k)).count();
    assert_eq!(hot_left, 8);
    assert!(cold_left < hot_left, "cold flows left: {cold_left}");
    assert_eq!(ct.stats().evicted_half_open, 128);
}

#[test]
fn full_table_reclaims_expired_flows_before_evicting() {
    let cap = 16;
    let mut ct = Conntrack::with_seed(cap, Timeouts::default(), 5);
    for i in 0..cap as u16 {
        ct.insert(key(proto::UDP, v4(1), i, v4(2), 53), 0, 60, 0, 0, at(0));
    }
    // Every candidate is expired: one is reclaimed, none evicted.
    ct.insert(key(proto::UDP, v4(3), 0, v4(2), 53), 0, 60, 0, 0, at(30));
    let s = ct.stats();
    assert_eq!(
        (s.entries, s.expired, s.evicted(), s.table_full),
        (16, 1, 0, 1)
    );
    // Fresh flows in the way are evicted only when no candidate expired.
    for i in 1..cap as u16 {
        ct.insert(key(proto::UDP, v4(3), i, v4(2), 53), 0, 60, 0, 0, at(30));
    }
    let s = ct.stats();
    assert_eq!(
        (s.entries, s.expired + s.evicted(), s.table_full),
        (16, 16, 16)
    );
    assert!(s.expired > s.evicted(), "{s:?}");
}

#[test]
fn capacity_one_works() {
    let mut ct = Conntrack::with_seed(1, Timeouts::default(), 0);
    ct.insert(udp_key(), 0, 1, 0, 0, at(0));
    ct.insert(tcp_key(), SYN, 1, 0, 0, at(1));
    assert_eq!(ct.len(), 1);
    assert!(send(&mut ct, udp_key(), 0, at(1)).is_none());
    assert!(send(&mut ct, tcp_key().reversed(), SYNACK, at(1)).is_some());
    assert_eq!(ct.stats().evicted_half_open, 1);
}

#[test]
#[should_panic(expected = "capacity 0")]
fn capacity_zero_panics() {
    Conntrack::new(0, Timeouts::default());
}

#[test]
fn memory_is_reported() {
    assert_eq!(size_of::<Flow>(), 128);
    let ct = Conntrack::new(1000, Timeouts::default());
    assert!(ct.memory() >= 1000 * size_of::<Flow>() + 2048 * 8);
    assert!(format!("{ct:?}").contains("capacity: 1000"));
}

/// Opens a TCP connection through a full handshake: established, assured.
fn handshake(ct: &mut Conntrack, k: FlowKey, now: Instant) {
    ct.insert(k, SYN, 60, 0, 0, now);
    assert_eq!(state_after(ct, k.reversed(), SYNACK, now), SynRecv);
    assert_eq!(state_after(ct, k, ACK, now), Established);
}

#[test]
fn a_syn_flood_evicts_half_open_flows_never_an_idle_established_one() {
    let cap = 256;
    let mut ct = Conntrack::with_seed(cap, Timeouts::default(), 13);
    // A long transfer, idle while the flood goes on: under plain LRU it
    // would be the first to go.
    handshake(&mut ct, tcp_key(), at(0));
    let mut established = vec![tcp_key()];
    for i in 0..16 {
        let k = key(proto::TCP, v4(1), 41_000 + i, v4(2), 443);
        handshake(&mut ct, k, at(0));
        established.push(k);
    }
    assert_eq!(ct.stats().half_open, 0);
    // SYNs from everywhere, ten times the table.
    for i in 0..cap as u32 * 10 {
        let src = FlowKey::ip(IpAddr::V4(Ipv4Addr::from(0x0a80_0000 + i)));
        let now = at(1) + Duration::from_micros(u64::from(i));
        ct.insert(key(proto::TCP, src, 1024, v4(2), 443), SYN, 60, 0, 0, now);
        assert!(ct.len() <= cap);
    }
    assert_eq!(ct.len(), cap);
    let s = ct.stats();
    assert_eq!(s.evicted_established, 0, "{s:?}");
    assert_eq!(s.evicted_half_open, s.table_full, "{s:?}");
    assert!(s.evicted_half_open >= cap as u64 * 9, "{s:?}");
    assert_eq!(s.half_open, cap - established.len());
    for k in established {
        let (_, flow) = send(&mut ct, k, ACK, at(2)).expect("the transfer survives");
        assert_eq!(flow.tcp, Some(Established));
    }
    assert!(ct.half_open.matches(&ct.flows));
}

#[test]
fn a_table_of_established_flows_evicts_the_least_recently_seen() {
    let cap = 32;
    let mut ct = Conntrack::with_seed(cap, Timeouts::default(), 17);
    for i in 0..cap as u16 {
        let now = at(0) + Duration::from_millis(u64::from(i));
        handshake(&mut ct, key(proto::TCP, v4(1), 40_000 + i, v4(2), 443), now);
    }
    // A new SYN finds nothing half-open: an established flow makes room.
    ct.insert(
        key(proto::TCP, v4(3), 50_000, v4(2), 443),
        SYN,
        60,
        0,
        0,
        at(1),
    );
    let s = ct.stats();
    assert_eq!((s.evicted_established, s.evicted_half_open), (1, 0));
    assert_eq!(s.half_open, 1);
    // The next insert takes that half-open flow, not an established one.
    ct.insert(udp_key(), 0, 60, 0, 0, at(2));
    let s = ct.stats();
    assert_eq!((s.evicted_established, s.evicted_half_open), (1, 1));
    assert!(ct.half_open.matches(&ct.flows));
}

#[test]
fn half_open_follows_the_state_of_each_protocol() {
    let mut ct = table();
    ct.insert(tcp_key(), SYN, 60, 0, 0, at(0));
    ct.insert(udp_key(), 0, 60, 0, 0, at(0));
    assert_eq!(ct.stats().half_open, 2);
    send(&mut ct, tcp_key().reversed(), SYNACK, at(0));
    assert_eq!(ct.stats().half_open, 2, "SYN_RECV is not assured yet");
    send(&mut ct, tcp_key(), ACK, at(0));
    send(&mut ct, udp_key().reversed(), 0, at(0));
    assert_eq!(ct.stats().half_open, 0, "established and answered");
    send(&mut ct, tcp_key(), RST, at(0));
    assert_eq!(ct.stats().half_open, 1, "a reset connection goes first");
    assert!(ct.half_open.matches(&ct.flows));
    ct.remove(&tcp_key());
    assert_eq!(ct.stats().half_open, 0);
    assert!(ct.half_open.matches(&ct.flows));
}

#[test]
fn an_invalid_segment_is_answered_invalid_and_changes_nothing() {
    let mut ct = table();
    ct.insert(tcp_key(), SYN, 60, 0, 0, at(0));
    // The client cannot ACK before the SYN/ACK.
    match ct.lookup(&tcp_key(), ACK, 60, at(1)) {
        Lookup::Invalid { flow, dir } => {
            assert_eq!(
                (dir, flow.tcp, flow.last_seen),
                (Original, Some(SynSent), at(0))
            );
        }
        other => panic!("{other:?}"),
    }
    // SYN+FIN never is valid.
    assert!(matches!(
        ct.lookup(&tcp_key().reversed(), SYN | FIN, 60, at(1)),
        Lookup::Invalid { dir: Reply, .. }
    ));
    assert_eq!(ct.stats().invalid, 2);
}

#[test]
fn tcp_first_segments_are_told_apart() {
    use super::TcpFirst::{BadFlags, NotSyn, Syn};
    for (flags, want) in [
        (SYN, Syn),
        (SYN | PSH, Syn),
        (SYNACK, NotSyn),
        (ACK, NotSyn),
        (ACK | PSH, NotSyn),
        (FINACK, NotSyn),
        (RST, NotSyn),
        (RST | ACK, NotSyn),
        (SYN | FIN, BadFlags),
        (SYN | RST, BadFlags),
        (0, BadFlags),
        (FIN, BadFlags),
        (FIN | PSH | URG, BadFlags),
    ] {
        assert_eq!(super::TcpFirst::of(flags), want, "flags {flags:#04x}");
    }
}

mod eviction {
    //! A small table under random inserts, lookups and removals: the
    //! half-open set stays exact, and an established flow is evicted only
    //! when no flow was half-open.
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn established_flows_go_only_when_none_is_half_open(
            ops in prop::collection::vec((0u8..4, 0u16..24, 0u8..6, 0u64..3), 1..300),
            seed in any::<u64>(),
        ) {
            let flags = [SYN, SYNACK, ACK, FINACK, RST, 0];
            let mut ct = Conntrack::with_seed(8, Timeouts::default(), seed);
            let mut now = t0();
            for (op, port, f, dt) in ops {
                now += Duration::from_millis(dt);
                let k = key(proto::TCP, v4(1), 40_000 + port, v4(2), 443);
                let before = ct.stats();
                match op {
                    0 => {
                        ct.insert(k, flags[usize::from(f)], 60, 0, 0, now);
                    }
                    1 => {
                        let _ = ct.lookup(&k, flags[usize::from(f)], 60, now);
                    }
                    2 => {
                        let _ = ct.lookup(&k.reversed(), flags[usize::from(f)], 60, now);
                    }
                    _ => {
                        ct.remove(&k);
                    }
                }
                let after = ct.stats();
                prop_assert!(ct.half_open.matches(&ct.flows));
                if after.evicted_established > before.evicted_established {
                    prop_assert_eq!(before.half_open, 0, "{:?}", after);
                }
            }
        }
    }
}
