//! The routing table's longest-prefix match: lookups per second as the
//! table grows from 10 to 100 000 IPv4 prefixes of mixed lengths (/8 to
//! /32, like a full edge table), and for IPv6 /48 to /64. Addresses are
//! drawn so about half hit a prefix.
//!
//! `cargo bench -p causeway-dataplane --bench lpm`

use std::{
    hint::black_box,
    net::{Ipv4Addr, Ipv6Addr},
};

use causeway_dataplane::{
    route::{IpPrefix, Route, RouteTable},
    topology::PortId,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// A small deterministic generator (xorshift64*), so every run measures
/// the same table and the same addresses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn route() -> Route {
    Route {
        port: PortId(1),
        via: None,
    }
}

fn v4_table(n: usize, rng: &mut Rng) -> (RouteTable, Vec<Ipv4Addr>) {
    let mut table = RouteTable::default();
    let mut inside = Vec::new();
    for _ in 0..n {
        let len = 8 + (rng.next() % 25) as u8;
        let addr = Ipv4Addr::from(rng.next() as u32);
        table.insert(IpPrefix::containing(addr.into(), len), route());
        inside.push(addr);
    }
    // Half the lookups land in a prefix, half anywhere.
    let addrs = (0..4096)
        .map(|i| {
            if i % 2 == 0 {
                inside[rng.next() as usize % inside.len()]
            } else {
                Ipv4Addr::from(rng.next() as u32)
            }
        })
        .collect();
    (table, addrs)
}

fn v6_table(n: usize, rng: &mut Rng) -> (RouteTable, Vec<Ipv6Addr>) {
    let mut table = RouteTable::default();
    let mut inside = Vec::new();
    for _ in 0..n {
        let len = 48 + (rng.next() % 17) as u8;
        let addr = Ipv6Addr::from((u128::from(rng.next()) << 64) | u128::from(rng.next()));
        table.insert(IpPrefix::containing(addr.into(), len), route());
        inside.push(addr);
    }
    let addrs = (0..4096)
        .map(|i| {
            if i % 2 == 0 {
                inside[rng.next() as usize % inside.len()]
            } else {
                Ipv6Addr::from((u128::from(rng.next()) << 64) | u128::from(rng.next()))
            }
        })
        .collect();
    (table, addrs)
}

fn lpm(c: &mut Criterion) {
    let mut g = c.benchmark_group("lpm");
    for n in [10, 1_000, 100_000] {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n as u64);
        let (table, addrs) = v4_table(n, &mut rng);
        g.throughput(Throughput::Elements(addrs.len() as u64));
        g.bench_with_input(BenchmarkId::new("v4", n), &addrs, |b, addrs| {
            b.iter(|| {
                for a in addrs {
                    black_box(table.lookup_v4(black_box(*a)));
                }
            });
        });
        let (table, addrs) = v6_table(n, &mut rng);
        g.bench_with_input(BenchmarkId::new("v6", n), &addrs, |b, addrs| {
            b.iter(|| {
                for a in addrs {
                    black_box(table.lookup_v6(black_box(*a)));
                }
            });
        });
    }
    g.finish();
}

criterion_group!(benches, lpm);
criterion_main!(benches);
