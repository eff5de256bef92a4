//! The compiled classifier against the reference evaluator, on random
//! policies, endpoints and packets: the verdict and the deciding rule must
//! agree on every packet.

use std::net::IpAddr;

use causeway_dataplane::policy::classifier::Key;
use proptest::prelude::*;

use super::*;
use crate::{
    eval::{self, Packet, Verdict},
    load,
};

/// A small deterministic generator (xorshift), so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const SELECTORS: &[&str] = &[
    "all()",
    "app == 'web'",
    "app != 'db'",
    "has(role)",
    "!has(role)",
    "app in {'web', 'cache'}",
    "role == 'fe' && app == 'web'",
    "app == 'db' || role == 'be'",
    "kind == 'external'",
    "kind in {'partner', 'external'}",
];
const NS_SELECTORS: &[&str] = &["team == 'a'", "env != 'prod'", "all()", "global()"];

fn pods() -> String {
    let mut out = String::new();
    for ns in ["ns0", "ns1", "ns2"] {
        let (team, env) = match ns {
            "ns0" => ("a", "prod"),
            "ns1" => ("b", "dev"),
            _ => ("a", "dev"),
        };
        out += &format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{team: {team}, env: {env}}}\n"
        );
    }
    let pods = [
        (
            "web1",
            "ns0",
            "app: web, role: fe",
            "10.0.0.1",
            Some("fd00::1"),
            "http",
            80,
        ),
        ("web2", "ns1", "app: web", "10.0.0.2", None, "http", 8080),
        (
            "db1",
            "ns0",
            "app: db, role: be",
            "10.0.0.3",
            Some("fd00::3"),
            "pg",
            5432,
        ),
        (
            "cache1",
            "ns2",
            "app: cache, role: be",
            "10.0.0.4",
            None,
            "http",
            80,
        ),
        ("dns1", "ns1", "app: dns", "10.0.0.5", None, "dns", 53),
    ];
    for (name, ns, labels, ip4, ip6, pname, port) in pods {
        let ips = match ip6 {
            Some(v6) => format!("[{{ip: {ip4}}}, {{ip: '{v6}'}}]"),
            None => format!("[{{ip: {ip4}}}]"),
        };
        let proto = if pname == "dns" { "UDP" } else { "TCP" };
        out += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{{labels}}}\nspec:\n  containers:\n  - name: c\n    ports: [{{name: {pname}, containerPort: {port}, protocol: {proto}}}]\nstatus:\n  podIPs: {ips}\n"
        );
    }
    out += "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: legacy\n  namespace: ns2\n  labels: {app: legacy}\nspec:\n  ips: [10.0.9.1]\n  ports: [{name: http, port: 8000}]\n";
    out += "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: internet\n  labels: {kind: external}\nspec:\n  nets: [192.168.0.0/16]\n";
    out += "---\napiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata:\n  name: partner\n  namespace: ns0\n  labels: {kind: partner}\nspec:\n  nets: [172.16.0.0/12]\n";
    out
}

fn entity(r: &mut Rng, proto: Option<&str>) -> String {
    let mut f = Vec::new();
    if r.chance(25) {
        f.push(format!(
            "nets: [{}]",
            r.pick(&[
                "10.0.0.0/30",
                "192.168.1.0/24",
                "10.0.0.4/32",
                "172.16.0.0/16"
            ])
        ));
    }
    if r.chance(15) {
        f.push(format!(
            "notNets: [{}]",
            r.pick(&["10.0.0.2/32", "192.168.1.128/25"])
        ));
    }
    if r.chance(60) {
        f.push(format!("selector: \"{}\"", r.pick(SELECTORS)));
    }
    if r.chance(15) {
        f.push(format!("notSelector: \"{}\"", r.pick(SELECTORS)));
    }
    if r.chance(20) {
        f.push(format!("namespaceSelector: \"{}\"", r.pick(NS_SELECTORS)));
    }
    if matches!(proto, Some("TCP" | "UDP")) {
        if r.chance(60) {
            f.push(format!(
                "ports: [{}]",
                r.pick(&["80", "53", "80, http", "'1000:9000'", "http", "dns, 5432"])
            ));
        }
        if r.chance(15) {
            f.push(format!(
                "notPorts: [{}]",
                r.pick(&["8080", "'1:100'", "http"])
            ));
        }
    }
    format!("{{{}}}", f.join(", "))
}

fn rule(r: &mut Rng) -> String {
    let action = r.pick(&["Allow", "Deny", "Deny", "Pass", "Log"]);
    let proto = *r.pick(&[None, Some("TCP"), Some("UDP"), Some("ICMP")]);
    let mut f = vec![format!("action: {action}")];
    if let Some(p) = proto {
        f.push(format!("protocol: {p}"));
    } else if r.chance(10) {
        f.push("notProtocol: UDP".into());
    }
    if proto == Some("ICMP") {
        if r.chance(30) {
            f.push("icmp: {type: 8}".into());
        } else if r.chance(20) {
            f.push("notICMP: {type: 8, code: 0}".into());
        }
    }
    if r.chance(10) && proto != Some("ICMP") {
        f.push("ipVersion: 4".into());
    }
    f.push(format!("source: {}", entity(r, proto)));
    f.push(format!("destination: {}", entity(r, proto)));
    format!("{{{}}}", f.join(", "))
}

fn policies(r: &mut Rng) -> String {
    let default_action = *r.pick(&["Deny", "Pass"]);
    let mut out = tier_doc("security", 100, default_action);
    for i in 0..2 + r.below(4) {
        out += &policy_doc(r, i);
    }
    out
}

fn tier_doc(name: &str, order: u32, default_action: &str) -> String {
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: {name}\nspec:\n  order: {order}\n  defaultAction: {default_action}\n"
    )
}

/// A random policy of a random kind, named after `i`; GlobalNetworkPolicies
/// may be in tier `security`.
fn policy_doc(r: &mut Rng, i: usize) -> String {
    let rules = |r: &mut Rng| {
        let mut v: Vec<String> = (0..1 + r.below(3)).map(|_| rule(r)).collect();
        if r.chance(30) {
            v.push("{action: Deny}".into());
        }
        v.join(", ")
    };
    let types = r
        .pick(&[
            "",
            "  types: [Ingress]\n",
            "  types: [Egress]\n",
            "  types: [Ingress, Egress]\n",
        ])
        .to_string();
    let order = if r.chance(70) {
        format!("  order: {}\n", r.below(3) * 10)
    } else {
        String::new()
    };
    match r.below(4) {
        0 | 1 => {
            let tier = r.chance(50);
            let name = if tier {
                format!("security.p{i}")
            } else {
                format!("p{i}")
            };
            let dnt = r.chance(10);
            let (sel, extra) = if dnt {
                (
                    "all()".to_owned(),
                    "  doNotTrack: true\n  applyOnForward: true\n".to_owned(),
                )
            } else if r.chance(30) {
                // Applies by namespace labels too: a namespace relabelled
                // moves its endpoints in or out.
                let ns = r.pick(&["team == 'a'", "env == 'prod'", "all()"]);
                (
                    r.pick(SELECTORS).to_string(),
                    format!("  namespaceSelector: \"{ns}\"\n"),
                )
            } else {
                (r.pick(SELECTORS).to_string(), String::new())
            };
            format!(
                "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n{}{order}  selector: \"{sel}\"\n{types}{extra}  ingress: [{}]\n  egress: [{}]\n",
                if tier { "  tier: security\n" } else { "" },
                rules(r),
                if dnt { String::new() } else { rules(r) },
            )
        }
        2 => {
            let ns = r.pick(&["ns0", "ns1", "ns2"]);
            format!(
                "---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: np{i}\n  namespace: {ns}\nspec:\n{order}  selector: \"{}\"\n{types}  ingress: [{}]\n  egress: [{}]\n",
                r.pick(SELECTORS),
                rules(r),
                rules(r)
            )
        }
        _ => {
            let ns = r.pick(&["ns0", "ns1", "ns2"]);
            let peer = r.pick(&[
                "{podSelector: {matchLabels: {app: web}}}",
                "{namespaceSelector: {matchLabels: {team: a}}}",
                "{namespaceSelector: {}, podSelector: {matchExpressions: [{key: role, operator: Exists}]}}",
                "{ipBlock: {cidr: 10.0.0.0/24, except: [10.0.0.3/32]}}",
            ]);
            let ports = r.pick(&[
                "",
                ", ports: [{port: 80}]",
                ", ports: [{protocol: UDP, port: 53}]",
                ", ports: [{port: http}]",
                ", ports: [{port: 1000, endPort: 9000}]",
            ]);
            format!(
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: knp{i}\n  namespace: {ns}\nspec:\n  podSelector: {{matchLabels: {{app: {}}}}}\n  policyTypes: [{}]\n  ingress: [{{from: [{peer}]{ports}}}]\n  egress: [{{to: [{peer}]{ports}}}]\n",
                r.pick(&["web", "db", "cache"]),
                r.pick(&["Ingress", "Egress", "Ingress, Egress"]),
            )
        }
    }
}

/// Endpoints twice as often as the rest.
const ADDRS: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.4",
    "10.0.0.5",
    "10.0.9.1",
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.4",
    "10.0.0.5",
    "10.0.9.1",
    "192.168.1.5",
    "192.168.1.200",
    "172.16.3.3",
    "8.8.8.8",
];
const ADDRS6: &[&str] = &["fd00::1", "fd00::3", "2001:db8::9"];

fn packet(r: &mut Rng) -> Packet {
    let (src, dst): (IpAddr, IpAddr) = if r.chance(20) {
        (
            r.pick(ADDRS6).parse().unwrap(),
            r.pick(ADDRS6).parse().unwrap(),
        )
    } else {
        (
            r.pick(ADDRS).parse().unwrap(),
            r.pick(ADDRS).parse().unwrap(),
        )
    };
    let icmp = if src.is_ipv4() {
        Protocol::ICMP
    } else {
        Protocol::ICMPV6
    };
    let protocol = *r.pick(&[Protocol::TCP, Protocol::UDP, icmp]);
    let is_icmp = protocol == icmp;
    let port = |r: &mut Rng| Some(*r.pick(&[53u16, 80, 443, 1500, 5432, 8000, 8080, 40000]));
    Packet {
        src,
        dst,
        protocol,
        src_port: if is_icmp { None } else { port(r) },
        dst_port: if is_icmp { None } else { port(r) },
        icmp_type: is_icmp.then(|| *r.pick(&[8u8, 0, 3])),
        icmp_code: is_icmp.then(|| *r.pick(&[0u8, 1])),
    }
}

fn key(p: &Packet) -> Key {
    let (sport, dport) = match (p.icmp_type, p.icmp_code) {
        (Some(t), Some(c)) => (u16::from(t), u16::from(c)),
        _ => (p.src_port.unwrap_or(0), p.dst_port.unwrap_or(0)),
    };
    Key {
        src: to_u128(p.src),
        dst: to_u128(p.dst),
        proto: p.protocol.0,
        sport,
        dport,
    }
}

/// (policy id, rule index) of what decided, if a rule did; `(tier, "")` for
/// a tier default.
fn reference_decider(e: &eval::Explanation) -> Option<(String, Option<usize>)> {
    match (&e.tier, &e.policy, e.rule) {
        (_, Some(policy), Some(rule)) => Some((policy.clone(), Some(rule))),
        (Some(tier), _, None) => Some((tier.clone(), None)),
        _ => None,
    }
}

/// Returns (allowed, denied) counts. Selectors of at least `threshold`
/// addresses are matched as address sets (0: never).
fn scenario(seed: u64, packets: usize, threshold: usize) -> (usize, usize) {
    let mut r = Rng(seed | 1);
    let text = format!("{}{}", pods(), policies(&mut r));
    let loaded = match load::load_str(&text, std::path::Path::new("generated.yaml")) {
        Ok(l) => l,
        Err(errors) => panic!(
            "generated manifests do not load:\n{}\n{text}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    let set = PolicySet::build(loaded.iter().map(|l| &l.resource)).expect("normalises");
    let compiled = compile(&set, 1, &mut Cache::with_set_threshold(threshold));
    agree_on_packets(&set, &compiled, &mut r, packets, packet, &|| {
        format!("seed {seed}\n{text}")
    })
}

/// Judges `packets` random packets (from `gen`) with the compiled program
/// and the reference evaluator: the verdict, and the deciding rule of a
/// deny, must be the same. Returns (allowed, denied) counts.
fn agree_on_packets(
    set: &PolicySet,
    compiled: &Compiled,
    r: &mut Rng,
    packets: usize,
    generate: fn(&mut Rng) -> Packet,
    context: &dyn Fn() -> String,
) -> (usize, usize) {
    let mut counts = (0, 0);
    for _ in 0..packets {
        let p = generate(r);
        let reference = eval::evaluate(set, &p);
        let j = compiled.program.judge(&key(&p));
        let want = reference.verdict == Verdict::Allow;
        assert_eq!(
            j.allow,
            want,
            "verdict differs for {p:?}\nreference:\n{reference}\n{}",
            context()
        );
        if want {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
        if !want {
            let rule = j.deciding().map(|id| &compiled.program.rules[id as usize]);
            let got = rule.map(|m| {
                if m.index.is_some() {
                    (m.policy.to_string(), m.index)
                } else {
                    (m.tier.to_string(), None)
                }
            });
            assert_eq!(
                got,
                reference_decider(&reference),
                "deciding rule differs for {p:?}\n{reference}\n{}",
                context()
            );
        }
    }
    counts
}

#[test]
fn fixed_seeds_agree() {
    let (mut allowed, mut denied) = (0, 0);
    for seed in 1..40 {
        let (a, d) = scenario(seed * 7919, 200, 0);
        allowed += a;
        denied += d;
    }
    // The generator must exercise both outcomes, in earnest.
    assert!(
        allowed > 1000 && denied > 700,
        "allowed {allowed}, denied {denied}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn compiled_classifier_agrees_with_the_reference(seed in any::<u64>(), threshold in 0..4usize) {
        scenario(seed, 100, threshold);
    }
}

#[test]
fn fixed_seeds_agree_with_address_sets() {
    // At a threshold of 1 every host-only selector is a set, including
    // notSelectors and both sides of a rule.
    let (mut allowed, mut denied) = (0, 0);
    for seed in 1..40 {
        let (a, d) = scenario(seed * 6_007, 200, 1);
        allowed += a;
        denied += d;
    }
    assert!(
        allowed > 1000 && denied > 700,
        "allowed {allowed}, denied {denied}"
    );
}

#[test]
fn recompiling_an_unchanged_set_reuses_every_program() {
    let mut r = Rng(99);
    let text = format!("{}{}", pods(), policies(&mut r));
    let loaded = load::load_str(&text, std::path::Path::new("x.yaml")).unwrap();
    let set = PolicySet::build(loaded.iter().map(|l| &l.resource)).unwrap();
    let mut cache = Cache::default();
    let first = compile(&set, 1, &mut cache);
    let second = compile(&set, 2, &mut cache);
    assert_eq!(second.built, 0, "nothing rebuilt");
    assert_eq!(second.reused, first.built + first.reused);
}

#[test]
fn prefix_set_algebra() {
    let p = |s: &str| to_prefix(&crate::normalize::parse_net(s).unwrap());
    let minus = subtract(&[p("10.0.0.0/24")], &[p("10.0.0.5/32")]);
    assert_eq!(minus.len(), 8);
    for a in 0..=255u32 {
        let ip = to_u128(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | a)));
        assert_eq!(minus.iter().any(|x| x.contains(ip)), a != 5, "10.0.0.{a}");
    }
    assert_eq!(
        intersect(&[p("10.0.0.0/8")], &[p("10.1.0.0/16"), p("11.0.0.0/8")]),
        vec![p("10.1.0.0/16")]
    );
    assert_eq!(
        complement(&[(80, 80), (1000, 2000)]),
        vec![(0, 79), (81, 999), (2001, 65535)]
    );
}

mod incremental;
