//! The pipeline without a NIC: ns per packet for parse + route + rewrite,
//! alone and through the worker loop on in-memory ports.
//!
//! `cargo bench -p causeway-dataplane --bench pipeline`

use std::{hint::black_box, sync::Arc, time::Instant};

use causeway_dataplane::{
    pipeline::{Pipeline, PortInfo, Tables, Verdict},
    port::{HeapMemory, MemPort, Worker},
    route::{NeighTable, Route, RouteTable},
    topology::{PortId, RpFilter},
    wire::{EthernetAddress, checksum},
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MAC_A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa0]);
const MAC_B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb0]);

/// A pipeline with `extra_routes` beyond the islands' and port 0's
/// reverse-path check set to `rp_filter`.
fn pipeline(extra_routes: u32, rp_filter: RpFilter) -> Pipeline {
    let mut routes = RouteTable::default();
    routes.insert(
        "10.1.0.0/24".parse().unwrap(),
        Route {
            port: PortId(0),
            via: None,
        },
    );
    routes.insert(
        "10.2.0.0/24".parse().unwrap(),
        Route {
            port: PortId(1),
            via: None,
        },
    );
    // Island A's IPv6 subnet: the sources of the IPv6 frames, routed back
    // through port 0 so the reverse-path check admits them.
    routes.insert(
        "fd00:a::/64".parse().unwrap(),
        Route {
            port: PortId(0),
            via: None,
        },
    );
    routes.insert(
        "fd00:b::/64".parse().unwrap(),
        Route {
            port: PortId(1),
            via: None,
        },
    );
    for i in 0..extra_routes {
        // Spread over /16../28 so several prefix lengths are present.
        let len = 16 + (i % 13) as u8;
        let addr = std::net::Ipv4Addr::from(0x6400_0000 | (i << 8));
        routes.insert(
            causeway_dataplane::route::IpPrefix::containing(addr.into(), len),
            Route {
                port: PortId(1),
                via: None,
            },
        );
    }
    let mut neigh = NeighTable::default();
    neigh.insert(
        PortId(1),
        "10.2.0.2".parse().unwrap(),
        EthernetAddress([2, 0, 0, 0, 0, 0x0b]),
    );
    neigh.insert(
        PortId(1),
        "fd00:b::2".parse().unwrap(),
        EthernetAddress([2, 0, 0, 0, 0, 0x0b]),
    );
    Pipeline::new(
        Tables {
            ports: vec![
                PortInfo {
                    mac: MAC_A,
                    ipv4: Some("10.1.0.1".parse().unwrap()),
                    ipv6: None,
                    rp_filter,
                },
                PortInfo {
                    mac: MAC_B,
                    ipv4: Some("10.2.0.1".parse().unwrap()),
                    ipv6: None,
                    rp_filter,
                },
            ],
            routes: Arc::new(routes),
            local: vec!["10.1.0.1".parse().unwrap()],
        },
        Arc::new(neigh),
    )
}

fn udp4_frame(size: usize) -> Vec<u8> {
    let mut f = vec![0u8; size];
    f[0..6].copy_from_slice(&MAC_A.0);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x0a]);
    f[12..14].copy_from_slice(&[8, 0]);
    let total = (size - 14) as u16;
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2,
    ]);
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let sum = !checksum::data(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f[34..42].copy_from_slice(&[0x30, 0x39, 0, 53, 0, 0, 0, 0]);
    let udp_len = total - 20;
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    f
}

fn udp6_frame() -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40 + 8 + 18];
    f[0..6].copy_from_slice(&MAC_A.0);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14] = 0x60;
    f[18..20].copy_from_slice(&26u16.to_be_bytes());
    f[20] = 17;
    f[21] = 64;
    f[22..38].copy_from_slice(&"fd00:a::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    f[38..54].copy_from_slice(&"fd00:b::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    f[54..62].copy_from_slice(&[0x30, 0x39, 0, 53, 0, 26, 0, 0]);
    f
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    // The `_rp_off` twins measure what the reverse-path check (one more LPM
    // lookup per packet when no policy tracks flows) costs.
    for (name, frame, routes, rp) in [
        ("ipv4_64B", udp4_frame(64), 0, RpFilter::Strict),
        ("ipv4_64B_rp_off", udp4_frame(64), 0, RpFilter::Off),
        (
            "ipv4_64B_10k_routes",
            udp4_frame(64),
            10_000,
            RpFilter::Strict,
        ),
        (
            "ipv4_64B_10k_routes_rp_off",
            udp4_frame(64),
            10_000,
            RpFilter::Off,
        ),
        ("ipv4_1500B", udp4_frame(1500), 0, RpFilter::Strict),
        ("ipv6_80B", udp6_frame(), 0, RpFilter::Strict),
        ("ipv6_80B_rp_off", udp6_frame(), 0, RpFilter::Off),
    ] {
        let mut p = pipeline(routes, rp);
        let mut buf = vec![0u8; 2048];
        buf[..frame.len()].copy_from_slice(&frame);
        let headers = if name.starts_with("ipv6") {
            14 + 40
        } else {
            14 + 20
        };
        let now = Instant::now();
        assert!(matches!(
            p.process(PortId(0), &mut buf, frame.len(), now),
            Verdict::Tx { .. }
        ));
        g.bench_function(name, |b| {
            b.iter(|| {
                // Undo the previous rewrite (MACs, TTL − 1, the IPv4
                // checksum) so that every run forwards: with the MACs
                // left rewritten, every run after the first was dropped
                // at L2 as not for us.
                buf[..headers].copy_from_slice(&frame[..headers]);
                let v = p.process(PortId(0), black_box(&mut buf), frame.len(), now);
                debug_assert!(matches!(v, Verdict::Tx { .. }));
                black_box(v)
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("worker");
    let batch = 64;
    g.throughput(Throughput::Elements(batch as u64));
    let frame = udp4_frame(64);
    let (mem, free) = HeapMemory::new(1024, 2048);
    let mut w = Worker::new(
        mem,
        vec![MemPort::new(4096), MemPort::new(4096)],
        free,
        pipeline(0, RpFilter::Strict),
        batch,
    );
    g.bench_function("mem_port_batch_64", |b| {
        b.iter(|| {
            for _ in 0..batch {
                w.inject(PortId(0), &frame);
            }
            let n = w.poll(Instant::now());
            w.discard_sent(PortId(1));
            black_box(n)
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
