//! Fuzzes the packet pipeline as a worker runs it: a compiled policy
//! program (endpoints, allow and deny rules, a named port, ICMP) and a
//! small conntrack table, frames from two ports on a clock that moves.
//! Not only the parser: conntrack's states, eviction and expiry, the
//! reverse-path check, related ICMP errors, policy swaps and rewriting.
//!
//! The input is a sequence of records `[port] [ms] [len hi] [len lo]
//! frame…`: the ingress port (its low bit; 0xfe swaps in the other
//! policy, 0xff runs an expiry sweep), milliseconds to advance the clock,
//! and the frame (truncated at the input's end).

#![no_main]

use std::{
    net::IpAddr,
    path::Path,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use causeway_dataplane::{
    pipeline::{Pipeline, PortInfo, Tables, Verdict},
    policy::program::PolicyProgram,
    route::{NeighTable, Route, RouteTable},
    topology::{PortId, RpFilter},
    wire::EthernetAddress,
};
use causeway_policy::{
    compile::{Cache, compile},
    load,
    normalize::PolicySet,
};
use libfuzzer_sys::fuzz_target;

const POLICY: &str = "apiVersion: causeway.dev/v1alpha1
kind: StaticEndpoint
metadata: {name: web, namespace: lab, labels: {role: server}}
spec: {ips: [10.2.0.2, 'fd00:b::2'], ports: [{name: http, port: 80, protocol: TCP}]}
---
apiVersion: causeway.dev/v1alpha1
kind: StaticEndpoint
metadata: {name: client, namespace: lab, labels: {role: client}}
spec: {ips: [10.1.0.2, 'fd00:a::2']}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web}
spec:
  selector: role == 'server'
  types: [Ingress, Egress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [http, 8080]}}
  - {action: Allow, protocol: UDP, destination: {ports: ['53:60']}}
  - {action: Allow, protocol: ICMP}
  - {action: Deny, protocol: TCP, source: {nets: [10.1.0.128/25]}}
  egress:
  - {action: Allow, protocol: UDP}
  - {action: Deny}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: clients}
spec:
  selector: role == 'client'
  egress: [{action: Allow}]
  ingress: [{action: Allow, protocol: ICMPv6}]
";

/// The policy above and a stricter one (no TCP 80), compiled once.
fn programs() -> &'static [Arc<PolicyProgram>; 2] {
    static PROGRAMS: OnceLock<[Arc<PolicyProgram>; 2]> = OnceLock::new();
    PROGRAMS.get_or_init(|| {
        let build = |text: &str, generation| {
            let loaded = load::load_str(text, Path::new("fuzz.yaml")).expect("the policy loads");
            let set = PolicySet::build(loaded.iter().map(|l| &l.resource)).expect("normalises");
            Arc::new(compile(&set, generation, &mut Cache::default()).program)
        };
        [
            build(POLICY, 1),
            build(&POLICY.replace("ports: [http, 8080]", "ports: [8080]"), 2),
        ]
    })
}

fn tables() -> Tables {
    let mut routes = RouteTable::default();
    for (net, port) in [
        ("10.1.0.0/24", 0),
        ("10.2.0.0/24", 1),
        ("fd00:a::/64", 0),
        ("fd00:b::/64", 1),
    ] {
        routes.insert(
            net.parse().expect("a prefix"),
            Route {
                port: PortId(port),
                via: None,
            },
        );
    }
    let port = |last: u8, v4: &str, v6: &str, rp_filter| PortInfo {
        mac: EthernetAddress([2, 0, 0, 0, 0, last]),
        ipv4: Some(v4.parse().expect("v4")),
        ipv6: Some(v6.parse().expect("v6")),
        rp_filter,
    };
    Tables {
        ports: vec![
            port(0xa0, "10.1.0.1", "fd00:a::1", RpFilter::Strict),
            port(0xb0, "10.2.0.1", "fd00:b::1", RpFilter::Loose),
        ],
        routes: Arc::new(routes),
        local: vec![
            "10.1.0.1".parse().expect("v4"),
            "10.2.0.1".parse().expect("v4"),
        ],
    }
}

fn neighbours() -> Arc<NeighTable> {
    let mut neigh = NeighTable::default();
    for (port, ip, last) in [
        (0, "10.1.0.2", 0x0a),
        (0, "fd00:a::2", 0x0a),
        (1, "10.2.0.2", 0x0b),
        (1, "fd00:b::2", 0x0b),
    ] {
        let ip: IpAddr = ip.parse().expect("an address");
        neigh.insert(PortId(port), ip, EthernetAddress([2, 0, 0, 0, 0, last]));
    }
    Arc::new(neigh)
}

fuzz_target!(|data: &[u8]| {
    let [strict, loose] = programs();
    let mut pipeline = Pipeline::with_policy(tables(), neighbours(), strict.clone(), 8);
    let mut now = Instant::now();
    let mut buf = vec![0u8; 2048];
    let mut rest = data;
    let mut swapped = false;
    while let [port, ms, hi, lo, tail @ ..] = rest {
        let len = (usize::from(*hi) << 8 | usize::from(*lo))
            .min(tail.len())
            .min(1600);
        let (frame, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(*ms) * u64::from(*ms));
        match *port {
            0xfe => {
                swapped = !swapped;
                let _ = pipeline.set_policy(if swapped { loose } else { strict }.clone());
                continue;
            }
            0xff => {
                let _ = pipeline.filter_mut().expire(now);
                continue;
            }
            _ => {}
        }
        let ingress = PortId(u16::from(*port & 1));
        buf.fill(0);
        buf[..len].copy_from_slice(frame);
        match pipeline.process(ingress, &mut buf, len, now) {
            Verdict::Tx { port, len } => {
                assert!(port.index() < 2, "to a port that does not exist");
                assert!(len <= buf.len(), "a frame longer than its buffer");
            }
            Verdict::Unresolved => {
                let _ = pipeline.retry(ingress, &mut buf, len, now);
            }
            Verdict::Local { l3, end } => {
                assert!(l3 < end && end <= len, "a host packet outside its frame");
            }
            Verdict::Drop(_) => {}
        }
    }
    let _ = pipeline.take_unresolved();
    let _ = pipeline.counters();
});
