//! Connection tracking with a million flows: lookups (hits in random order,
//! misses) and inserts (into a table with room, and into a full one, which
//! evicts).
//!
//! `cargo bench -p causeway-dataplane --bench conntrack`

use std::{
    collections::HashMap,
    hint::black_box,
    time::{Duration, Instant},
};

use causeway_dataplane::policy::conntrack::{Conntrack, Flow, FlowKey, Lookup, Timeouts};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustc_hash::FxBuildHasher;

const FLOWS: u32 = 1_000_000;

/// The `i`th flow: clients 10.0.0.0/8 (16 flows each), 64 servers, half
/// TCP (:443), half UDP (:53).
fn key(i: u32) -> FlowKey {
    let mapped = |v4: u32| 0xffff_0000_0000 | u128::from(v4);
    let tcp = i.is_multiple_of(2);
    FlowKey {
        src: mapped(0x0a00_0000 | (i >> 4)),
        dst: mapped(0xc000_0200 | (i % 64)),
        proto: if tcp { 6 } else { 17 },
        sport: 32_768 + (i % 16) as u16 * 7,
        dport: if tcp { 443 } else { 53 },
    }
}

/// An ACK for TCP, nothing for UDP.
fn flags(k: &FlowKey) -> u8 {
    if k.proto == 6 { 0x10 } else { 0 }
}

/// A table of `capacity` holding flows `0..n`, all established (TCP
/// picked up from an ACK, UDP seen both ways).
fn table(capacity: usize, n: u32, now: Instant) -> Conntrack {
    let mut ct = Conntrack::with_seed(capacity, Timeouts::default(), 42);
    for i in 0..n {
        let k = key(i);
        ct.insert(k, flags(&k), 100, 0, 0, now);
        ct.lookup(&k.reversed(), flags(&k), 100, now);
    }
    ct
}

/// The peer's flow for `k`.
fn flow(key: FlowKey, now: Instant) -> Flow {
    Flow {
        key,
        verdict: 0,
        generation: 0,
        tcp: None,
        packets: [1, 1],
        bytes: [100, 100],
        created: now,
        last_seen: now,
        ingress: [0, 1],
    }
}

/// `0..n` shuffled (xorshift Fisher–Yates), so lookups defeat the caches.
fn shuffled(n: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).collect();
    let mut s = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}

fn lookups(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut ct = table(FLOWS as usize, FLOWS, t0);
    let now = t0 + Duration::from_secs(1);
    let order = shuffled(FLOWS);
    let mut g = c.benchmark_group("conntrack/lookup_1M");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("hit_random", |b| {
        b.iter(|| {
            let n = order[i % order.len()];
            i += 1;
            // One packet in three in the reply direction.
            let k = if n.is_multiple_of(3) {
                key(n).reversed()
            } else {
                key(n)
            };
            match ct.lookup(black_box(&k), flags(&k), 1500, now) {
                Lookup::Hit { flow, .. } => black_box(flow.verdict),
                Lookup::Invalid { flow, .. } => black_box(flow.verdict),
                Lookup::Miss | Lookup::Unbound => panic!("flow {n} missing"),
            }
        });
    });
    let mut i = 0;
    g.bench_function("miss", |b| {
        b.iter(|| {
            i += 1;
            let k = key(FLOWS + order[i % order.len()]);
            assert!(matches!(
                ct.lookup(black_box(&k), 0x02, 60, now),
                Lookup::Miss
            ));
        });
    });
    drop(ct);

    // The peer, in the same run: a plain `HashMap` of the same flows by
    // original key (FxHash), probed both ways, counters bumped; no expiry,
    // no TCP state, no bound.
    let mut peer: HashMap<FlowKey, Flow, FxBuildHasher> =
        HashMap::with_capacity_and_hasher(FLOWS as usize, FxBuildHasher);
    for i in 0..FLOWS {
        let k = key(i);
        peer.insert(k, flow(k, t0));
    }
    let mut i = 0;
    g.bench_function("peer_fx_hashmap_hit_random", |b| {
        b.iter(|| {
            let n = order[i % order.len()];
            i += 1;
            let k = if n.is_multiple_of(3) {
                key(n).reversed()
            } else {
                key(n)
            };
            let k = black_box(&k);
            let (flow, dir) = match peer.get_mut(k) {
                Some(f) => (f, 0),
                None => (peer.get_mut(&k.reversed()).expect("flow"), 1),
            };
            flow.packets[dir] += 1;
            flow.bytes[dir] += 1500;
            flow.last_seen = now;
            black_box(flow.verdict)
        });
    });
    g.finish();
}

fn inserts(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut g = c.benchmark_group("conntrack/insert_1M");
    g.throughput(Throughput::Elements(1));

    // Capacity 1M holding 500k..1M flows: no eviction. Only the inserts
    // are timed; the flows are removed again between rounds.
    let half = FLOWS / 2;
    let mut ct = table(FLOWS as usize, half, t0);
    g.bench_function("with_room", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(u64::from(half)) as u32;
                let start = Instant::now();
                for i in half..half + n {
                    let k = key(i);
                    black_box(ct.insert(k, flags(&k), 60, 1, 1, t0));
                }
                timed += start.elapsed();
                for i in half..half + n {
                    ct.remove(&key(i));
                }
                left -= u64::from(n);
            }
            timed
        });
    });
    drop(ct);

    // A full table of 1M: every insert evicts (sampled LRU).
    let mut ct = table(FLOWS as usize, FLOWS, t0);
    let mut next = FLOWS;
    g.bench_function("full_evicting", |b| {
        b.iter(|| {
            let k = key(next);
            let now = t0 + Duration::from_nanos(u64::from(next));
            next = next.wrapping_add(1);
            black_box(ct.insert(k, flags(&k), 60, 1, 1, now));
        });
    });
    g.finish();
    assert_eq!(ct.len(), FLOWS as usize);
    assert!(ct.stats().evicted() > 0);
}

criterion_group!(benches, lookups, inserts);
criterion_main!(benches);
