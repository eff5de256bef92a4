//! The table against a model: a `HashMap` from original keys to flows, with
//! the same timeouts, no eviction (the table is larger than the key pool)
//! and no index. The TCP transition function is shared (the unit tests
//! check it); what each step does to a flow, the lookup in both directions,
//! expiry and removal are written again here, plainly.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use proptest::prelude::*;

use super::{key, t0, v4, v6};
use crate::{
    policy::conntrack::{
        Conntrack, Direction, Flow, FlowKey, Lookup, NO_PORT, TcpState, Timeouts, proto,
        tcp::{self, Segment, Step},
    },
    wire::tcp::flags::{ACK, FIN, PSH, RST, SYN},
};

/// Distinct flows; each op picks one and a direction.
fn pool() -> Vec<FlowKey> {
    vec![
        key(proto::TCP, v4(1), 40_000, v4(2), 443),
        key(proto::TCP, v4(2), 443, v4(1), 40_001),
        key(proto::TCP, v6(1), 40_000, v6(2), 22),
        key(proto::UDP, v4(1), 5353, v4(2), 53),
        key(proto::UDP, v4(2), 53, v4(1), 5354),
        key(proto::UDP, v6(1), 123, v6(2), 123),
        key(proto::ICMP, v4(1), 7, v4(2), 7),
        key(proto::ICMPV6, v6(1), 7, v6(3), 7),
        key(47, v4(1), 0, v4(3), 0),
        // The same address both ends.
        key(proto::UDP, v4(9), 1000, v4(9), 2000),
    ]
}

const CAPACITY: usize = 16;

#[derive(Clone, Debug)]
enum Op {
    Insert {
        k: usize,
        rev: bool,
        flags: u8,
        len: u32,
        verdict: u32,
    },
    Lookup {
        k: usize,
        rev: bool,
        flags: u8,
        len: u32,
    },
    Related {
        k: usize,
        rev: bool,
    },
    Remove {
        k: usize,
        rev: bool,
    },
    Advance(Duration),
    Expire(usize),
}

fn flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => Just(SYN),
        4 => Just(SYN | ACK),
        6 => Just(ACK),
        2 => Just(PSH | ACK),
        3 => Just(FIN | ACK),
        2 => Just(RST),
        1 => Just(RST | ACK),
        1 => Just(0),
        1 => Just(SYN | FIN),
        1 => Just(SYN | RST),
        1 => Just(FIN),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    // Around every default timeout, so boundaries are hit exactly.
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        (0u64..=3).prop_map(Duration::from_secs),
        prop::sample::select(vec![
            9, 10, 11, 29, 30, 31, 59, 60, 61, 119, 120, 121, 599, 600
        ])
        .prop_map(Duration::from_secs),
        Just(Duration::from_secs(432_000)),
        (0u64..1_000_000_000).prop_map(Duration::from_nanos),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let n = pool().len();
    prop_oneof![
        3 => (0..n, any::<bool>(), flags(), 0u32..1500, any::<u32>())
            .prop_map(|(k, rev, flags, len, verdict)| Op::Insert { k, rev, flags, len, verdict }),
        8 => (0..n, any::<bool>(), flags(), 0u32..1500)
            .prop_map(|(k, rev, flags, len)| Op::Lookup { k, rev, flags, len }),
        1 => (0..n, any::<bool>()).prop_map(|(k, rev)| Op::Related { k, rev }),
        1 => (0..n, any::<bool>()).prop_map(|(k, rev)| Op::Remove { k, rev }),
        3 => duration().prop_map(Op::Advance),
        1 => prop_oneof![0usize..4, Just(usize::MAX)].prop_map(Op::Expire),
    ]
}

#[derive(Default)]
struct Model {
    timeouts: Timeouts,
    /// Flows by their original key.
    flows: HashMap<FlowKey, Flow>,
    invalid: u64,
    expired: u64,
    inserted: u64,
}

impl Model {
    fn timeout(&self, flow: &Flow) -> Duration {
        let t = &self.timeouts;
        match flow.key.proto {
            6 => match flow.tcp.unwrap() {
                TcpState::SynSent => t.tcp_syn_sent,
                TcpState::SynRecv => t.tcp_syn_recv,
                TcpState::Established => t.tcp_established,
                TcpState::FinWait => t.tcp_fin_wait,
                TcpState::CloseWait => t.tcp_close_wait,
                TcpState::LastAck => t.tcp_last_ack,
                TcpState::TimeWait => t.tcp_time_wait,
                TcpState::Close => t.tcp_close,
            },
            17 if flow.packets[1] == 0 => t.udp,
            17 => t.udp_stream,
            1 | 58 => t.icmp,
            _ => t.other,
        }
    }

    fn is_expired(&self, flow: &Flow, now: Instant) -> bool {
        now >= flow.last_seen + self.timeout(flow)
    }

    /// The original key and direction of a packet's flow.
    fn find(&self, k: &FlowKey) -> Option<(FlowKey, Direction)> {
        if self.flows.contains_key(k) {
            Some((*k, Direction::Original))
        } else if self.flows.contains_key(&k.reversed()) {
            Some((k.reversed(), Direction::Reply))
        } else {
            None
        }
    }

    /// The live flow of a packet, removing it if expired.
    fn live(&mut self, k: &FlowKey, now: Instant) -> Option<(FlowKey, Direction)> {
        let (orig, dir) = self.find(k)?;
        if self.is_expired(&self.flows[&orig], now) {
            self.flows.remove(&orig);
            self.expired += 1;
            return None;
        }
        Some((orig, dir))
    }

    fn insert(
        &mut self,
        k: FlowKey,
        flags: u8,
        len: u32,
        verdict: u32,
        gen_: u64,
        now: Instant,
    ) -> Flow {
        if let Some((orig, _)) = self.find(&k) {
            self.flows.remove(&orig);
        }
        let tcp = (k.proto == 6).then(|| match Segment::classify(flags).and_then(tcp::initial) {
            Some(s) => s,
            None => {
                self.invalid += 1;
                TcpState::Close
            }
        });
        let flow = Flow {
            key: k,
            verdict,
            generation: gen_,
            tcp,
            packets: [1, 0],
            bytes: [u64::from(len), 0],
            created: now,
            last_seen: now,
            ingress: [NO_PORT; 2],
        };
        self.inserted += 1;
        self.flows.insert(k, flow.clone());
        flow
    }

    fn lookup(
        &mut self,
        k: &FlowKey,
        flags: u8,
        len: u32,
        now: Instant,
    ) -> Option<(Direction, Flow)> {
        let (orig, dir) = self.live(k, now)?;
        let flow = self.flows.get_mut(&orig).unwrap();
        let d = usize::from(dir == Direction::Reply);
        if let Some(state) = flow.tcp {
            let step = match Segment::classify(flags) {
                Some(seg) => tcp::step(state, dir, seg, flow.packets[1] != 0),
                None => Step::Invalid,
            };
            match step {
                Step::To(next) => flow.tcp = Some(next),
                Step::Ignore => return Some((dir, flow.clone())),
                Step::Invalid => {
                    self.invalid += 1;
                    return Some((dir, flow.clone()));
                }
                Step::Restart => {
                    *flow = Flow {
                        tcp: Some(TcpState::SynSent),
                        packets: [0, 0],
                        bytes: [0, 0],
                        created: now,
                        ..flow.clone()
                    };
                }
                Step::Reopen => {
                    self.flows.remove(&orig);
                    return None;
                }
            }
        }
        flow.packets[d] += 1;
        flow.bytes[d] += u64::from(len);
        flow.last_seen = now;
        Some((dir, flow.clone()))
    }
}

fn hit(l: Lookup<'_>) -> Option<(Direction, Flow)> {
    match l {
        Lookup::Hit { flow, dir } => Some((dir, flow.clone())),
        Lookup::Invalid { flow, dir } => Some((dir, flow.clone())),
        Lookup::Miss => None,
        Lookup::Unbound => panic!("a lookup without a port is never unbound"),
    }
}

fn check(ops: Vec<Op>, seed: u64) -> Result<(), TestCaseError> {
    let keys = pool();
    let mut ct = Conntrack::with_seed(CAPACITY, Timeouts::default(), seed);
    let mut m = Model::default();
    let mut now = t0();
    for (i, op) in ops.into_iter().enumerate() {
        let pick = |k: usize, rev: bool| if rev { keys[k].reversed() } else { keys[k] };
        match op {
            Op::Insert {
                k,
                rev,
                flags,
                len,
                verdict,
            } => {
                let k = pick(k, rev);
                let got = ct.insert(k, flags, len, verdict, i as u64, now).clone();
                let want = m.insert(k, flags, len, verdict, i as u64, now);
                prop_assert_eq!(got, want);
            }
            Op::Lookup { k, rev, flags, len } => {
                let k = pick(k, rev);
                let got = hit(ct.lookup(&k, flags, len, now));
                prop_assert_eq!(got, m.lookup(&k, flags, len, now), "op {}", i);
            }
            Op::Related { k, rev } => {
                let k = pick(k, rev);
                let got = ct.related(&k, now).map(|f| f.clone());
                let want = m.live(&k, now).map(|(orig, _)| m.flows[&orig].clone());
                prop_assert_eq!(got, want);
            }
            Op::Remove { k, rev } => {
                let k = pick(k, rev);
                let want = m.find(&k).map(|(orig, _)| m.flows.remove(&orig)).is_some();
                prop_assert_eq!(ct.remove(&k), want);
            }
            Op::Advance(d) => now += d,
            Op::Expire(budget) => {
                let removed = ct.expire(now, budget);
                prop_assert!(removed <= budget);
                let held: HashSet<FlowKey> = ct.iter().map(|f| f.key).collect();
                let gone: Vec<FlowKey> = m
                    .flows
                    .keys()
                    .filter(|k| !held.contains(k))
                    .copied()
                    .collect();
                prop_assert_eq!(gone.len(), removed);
                for k in gone {
                    let flow = m.flows.remove(&k).unwrap();
                    prop_assert!(m.is_expired(&flow, now), "expire removed a live flow");
                }
                m.expired += removed as u64;
                if budget == usize::MAX {
                    prop_assert!(m.flows.values().all(|f| !m.is_expired(f, now)));
                }
            }
        }
        let s = ct.stats();
        prop_assert_eq!(s.entries, m.flows.len());
        prop_assert_eq!(ct.len(), m.flows.len());
        prop_assert!(ct.half_open.matches(&ct.flows), "op {}: half-open set", i);
        prop_assert_eq!(
            (s.inserted, s.expired, s.invalid, s.evicted(), s.table_full),
            (m.inserted, m.expired, m.invalid, 0, 0)
        );
    }
    let mut got: Vec<Flow> = ct.iter().cloned().collect();
    let mut want: Vec<Flow> = m.flows.into_values().collect();
    got.sort_by_key(|f| (f.key.src, f.key.dst, f.key.proto, f.key.sport, f.key.dport));
    want.sort_by_key(|f| (f.key.src, f.key.dst, f.key.proto, f.key.sport, f.key.dport));
    prop_assert_eq!(got, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn table_matches_model(ops in prop::collection::vec(op(), 1..200), seed in any::<u64>()) {
        check(ops, seed)?;
    }
}

#[test]
fn pool_fits_without_eviction() {
    assert!(pool().len() < CAPACITY);
    // Both directions of every pool key are distinct from every other key.
    let all: HashSet<FlowKey> = pool().iter().flat_map(|k| [*k, k.reversed()]).collect();
    assert_eq!(all.len(), 2 * pool().len());
}
