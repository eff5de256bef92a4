//! The upstream Kubernetes network-policy e2e scenarios
//! (kubernetes/test/e2e/network/netpol: namespaces x, y, z; pods a, b, c;
//! ports 80 and 81 over TCP and UDP), transcribed as reachability tables.
//! Each case is judged twice: by the reference evaluator (what
//! `causeway policy explain` says) and by the compiled classifier (what the
//! appliance enforces). Both must give the upstream expectation for every
//! pair of pods.

use std::{net::IpAddr, path::Path};

use causeway_dataplane::policy::classifier::Key;
use causeway_policy::{
    compile::{Cache, compile, to_u128},
    eval::{Packet, Verdict, evaluate},
    load,
    model::Protocol,
    normalize::PolicySet,
};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

fn ip(ns: &str, pod: &str) -> IpAddr {
    let n = NAMESPACES.iter().position(|x| *x == ns).unwrap() + 1;
    let p = PODS.iter().position(|x| *x == pod).unwrap() + 1;
    format!("10.0.{n}.{p}").parse().unwrap()
}

/// The e2e model: every namespace labelled `ns: NAME` (and the well-known
/// `kubernetes.io/metadata.name`), every pod `pod: NAME`, serving 80 and 81
/// on TCP and UDP with the upstream port names.
fn model() -> String {
    let mut out = String::new();
    for ns in NAMESPACES {
        out += &format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{ns: {ns}, kubernetes.io/metadata.name: {ns}}}\n"
        );
        for pod in PODS {
            out += &format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {ns}\n  labels: {{pod: {pod}}}\n\
                 spec:\n  containers:\n  - name: cont-80-tcp\n    image: agnhost\n    ports:\n    - {{name: serve-80-tcp, containerPort: 80, protocol: TCP}}\n\
                 \x20   - {{name: serve-81-tcp, containerPort: 81, protocol: TCP}}\n    - {{name: serve-80-udp, containerPort: 80, protocol: UDP}}\n\
                 \x20   - {{name: serve-81-udp, containerPort: 81, protocol: UDP}}\n\
                 status:\n  phase: Running\n  podIP: {ip}\n  podIPs: [{{ip: {ip}}}]\n",
                ip = ip(ns, pod)
            );
        }
    }
    out
}

struct Case {
    name: &'static str,
    policies: &'static str,
    port: u16,
    proto: Protocol,
    /// Expected reachability from (ns, pod) to (ns, pod).
    expect: fn((&str, &str), (&str, &str)) -> bool,
}

fn check(case: &Case) {
    let text = format!("{}{}", model(), case.policies);
    let loaded = load::load_str(&text, Path::new(case.name)).unwrap_or_else(|e| {
        panic!(
            "{}: {}",
            case.name,
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let set = PolicySet::build(loaded.iter().map(|l| &l.resource)).unwrap();
    let compiled = compile(&set, 1, &mut Cache::default());
    let mut wrong = Vec::new();
    for from_ns in NAMESPACES {
        for from in PODS {
            for to_ns in NAMESPACES {
                for to in PODS {
                    let want = (case.expect)((from_ns, from), (to_ns, to));
                    let pkt = Packet {
                        src: ip(from_ns, from),
                        dst: ip(to_ns, to),
                        protocol: case.proto,
                        src_port: Some(40000),
                        dst_port: Some(case.port),
                        icmp_type: None,
                        icmp_code: None,
                    };
                    let reference = evaluate(&set, &pkt).verdict == Verdict::Allow;
                    let key = Key {
                        src: to_u128(pkt.src),
                        dst: to_u128(pkt.dst),
                        proto: case.proto.0,
                        sport: 40000,
                        dport: case.port,
                    };
                    let enforced = compiled.program.judge(&key).allow;
                    if reference != want || enforced != want {
                        wrong.push(format!(
                            "{from_ns}/{from} -> {to_ns}/{to}: want {want}, explain says {reference}, appliance does {enforced}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} ({} {}):\n{}",
        case.name,
        case.proto,
        case.port,
        wrong.join("\n")
    );
}

fn all(_: (&str, &str), _: (&str, &str)) -> bool {
    true
}

#[test]
fn no_policy_allows_everything() {
    check(&Case {
        name: "no policy",
        policies: "",
        port: 80,
        proto: Protocol::TCP,
        expect: all,
    });
}

#[test]
fn default_deny_ingress() {
    check(&Case {
        name: "default-deny-ingress",
        policies: "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-ingress, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n",
        port: 80,
        proto: Protocol::TCP,
        expect: |_, (to_ns, _)| to_ns != "x",
    });
}

#[test]
fn default_deny_all() {
    check(&Case {
        name: "default-deny-all",
        policies: "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]\n",
        port: 81,
        proto: Protocol::TCP,
        expect: |(from_ns, _), (to_ns, _)| from_ns != "x" && to_ns != "x",
    });
}

#[test]
fn allow_from_pods_in_the_server_namespace_by_pod_selector() {
    check(&Case {
        name: "x-a-shell ingress from pod b",
        policies: "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-b, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {pod: b}}\n",
        port: 80,
        proto: Protocol::TCP,
        expect: |from, to| to != ("x", "a") || from == ("x", "b"),
    });
}

#[test]
fn namespace_selector_with_match_expressions() {
    check(&Case {
        name: "ns In [y]",
        policies: "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-ns-y, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchExpressions: [{key: ns, operator: In, values: [y]}]\n",
        port: 80,
        proto: Protocol::TCP,
        expect: |(from_ns, _), to| to != ("x", "a") || from_ns == "y",
    });
}

#[test]
fn pod_selector_or_namespace_selector() {
    check(&Case {
        name: "two peers",
        policies: "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: or, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {pod: b}}\n    - namespaceSelector:\n        matchExpressions: [{key: ns, operator: NotIn, values: [x]}]\n",
        port: 80,
        proto: Protocol::TCP,
        expect: |from, to| to != ("x", "a") || from == ("x", "b") || from.0 != "x",
    });
}

#[test]
fn pod_selector_and_namespace_selector() {
    check(&Case {
        name: "one peer with both",
        policies: "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: and, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {pod: b}}\n      namespaceSelector:\n        matchExpressions: [{key: ns, operator: NotIn, values: [x]}]\n",
        port: 80,
        proto: Protocol::TCP,
        expect: |from, to| to != ("x", "a") || (from.1 == "b" && from.0 != "x"),
    });
}

const PORT_81_ONLY: &str = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: port-81, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports: [{port: 81}]\n";

#[test]
fn ports_81_allowed_80_not() {
    let deny_80 = |_: (&str, &str), to: (&str, &str)| to != ("x", "a");
    check(&Case {
        name: "port 81 (81)",
        policies: PORT_81_ONLY,
        port: 81,
        proto: Protocol::TCP,
        expect: all,
    });
    check(&Case {
        name: "port 81 (80)",
        policies: PORT_81_ONLY,
        port: 80,
        proto: Protocol::TCP,
        expect: deny_80,
    });
    // A port without protocol is TCP: UDP 81 is not allowed.
    check(&Case {
        name: "port 81 (udp 81)",
        policies: PORT_81_ONLY,
        port: 81,
        proto: Protocol::UDP,
        expect: deny_80,
    });
}

#[test]
fn stacked_policies_with_overlapping_pod_selectors() {
    let both = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-80, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports: [{port: 80}]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-81, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports: [{port: 81}]\n";
    check(&Case {
        name: "stacked 80",
        policies: both,
        port: 80,
        proto: Protocol::TCP,
        expect: all,
    });
    check(&Case {
        name: "stacked 81",
        policies: both,
        port: 81,
        proto: Protocol::TCP,
        expect: all,
    });
}

#[test]
fn allow_all_policy() {
    check(&Case {
        name: "allow-all",
        policies: "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-all, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - {}\n",
        port: 80,
        proto: Protocol::TCP,
        expect: all,
    });
}

#[test]
fn ingress_on_one_named_port() {
    let p = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: named, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: serve-81-tcp}]\n";
    check(&Case {
        name: "named 81",
        policies: p,
        port: 81,
        proto: Protocol::TCP,
        expect: all,
    });
    check(&Case {
        name: "named 81 (80)",
        policies: p,
        port: 80,
        proto: Protocol::TCP,
        expect: |_, to| to.0 != "x",
    });
    check(&Case {
        name: "named 81 (udp 81)",
        policies: p,
        port: 81,
        proto: Protocol::UDP,
        expect: |_, to| to.0 != "x",
    });
}

#[test]
fn egress_on_one_named_port() {
    let p = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: egress-named, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{port: serve-80-tcp}]\n";
    check(&Case {
        name: "egress named 80",
        policies: p,
        port: 80,
        proto: Protocol::TCP,
        expect: all,
    });
    check(&Case {
        name: "egress named 80 (81)",
        policies: p,
        port: 81,
        proto: Protocol::TCP,
        expect: |from, _| from.0 != "x",
    });
}

#[test]
fn egress_to_a_pod_in_another_namespace() {
    check(&Case {
        name: "egress to y/a",
        policies: "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: to-y-a, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - namespaceSelector: {matchLabels: {ns: y}}\n      podSelector: {matchLabels: {pod: a}}\n",
        port: 80,
        proto: Protocol::TCP,
        expect: |from, to| from != ("x", "a") || to == ("y", "a"),
    });
}

#[test]
fn any_port_on_a_specific_protocol() {
    let p = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: udp-only, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports: [{protocol: UDP}]\n";
    check(&Case {
        name: "udp 80",
        policies: p,
        port: 80,
        proto: Protocol::UDP,
        expect: all,
    });
    check(&Case {
        name: "udp 81",
        policies: p,
        port: 81,
        proto: Protocol::UDP,
        expect: all,
    });
    check(&Case {
        name: "tcp 80",
        policies: p,
        port: 80,
        proto: Protocol::TCP,
        expect: |_, to| to != ("x", "a"),
    });
}

#[test]
fn egress_to_a_cidr_with_an_except_clause() {
    check(&Case {
        name: "ipBlock except",
        policies: "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: cidr, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/16, except: [10.0.2.2/32]}\n",
        port: 80,
        proto: Protocol::TCP,
        expect: |from, to| from != ("x", "a") || to != ("y", "b"),
    });
}

#[test]
fn end_port_ranges() {
    let p = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: range, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 81, endPort: 82}]\n";
    check(&Case {
        name: "endPort 81",
        policies: p,
        port: 81,
        proto: Protocol::TCP,
        expect: all,
    });
    check(&Case {
        name: "endPort 80",
        policies: p,
        port: 80,
        proto: Protocol::TCP,
        expect: |_, to| to.0 != "x",
    });
}

#[test]
fn ingress_and_egress_together_across_namespaces() {
    // Egress from y is denied entirely; x/a admits only y: nothing reaches x/a.
    let p = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-egress, namespace: y}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: from-y, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: y}}}]\n";
    check(&Case {
        name: "egress deny + ingress allow",
        policies: p,
        port: 80,
        proto: Protocol::TCP,
        expect: |from, to| from.0 != "y" && to != ("x", "a"),
    });
}

#[test]
fn calico_tiers_pass_and_deny_over_kubernetes_policy() {
    // A Calico security tier before the default tier: it denies x -> z
    // outright and passes everything else on to Kubernetes policy, which
    // admits only pod b into x/a.
    let p = "---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 10}\n\
             ---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: security.guard}\nspec:\n  tier: security\n  selector: all()\n  types: [Ingress]\n  ingress:\n  - action: Deny\n    source: {namespaceSelector: ns == 'x'}\n    destination: {selector: projectcalico.org/namespace == 'z'}\n  - action: Pass\n\
             ---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-b, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {pod: b}}}]\n";
    check(&Case {
        name: "tiers",
        policies: p,
        port: 80,
        proto: Protocol::TCP,
        expect: |from, to| {
            !(from.0 == "x" && to.0 == "z") && (to != ("x", "a") || from == ("x", "b"))
        },
    });
}
