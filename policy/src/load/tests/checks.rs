//! The checks of single resources: Calico's and Kubernetes' rules.

use super::*;

#[test]
fn global_only_fields_on_a_network_policy_are_refused() {
    let text = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n  namespaceSelector: all()\n  doNotTrack: true\n  preDNAT: true\n  applyOnForward: true\n";
    let errors = errors_of(text);
    assert_eq!(errors.len(), 4, "{}", list(&errors));
    for (line, field) in [
        (6, "namespaceSelector"),
        (7, "doNotTrack"),
        (8, "preDNAT"),
        (9, "applyOnForward"),
    ] {
        expect(
            &errors,
            "test.yaml",
            line,
            Some("NetworkPolicy/default/p"),
            Some(&format!("spec.{field}")),
            &format!(
                "{field} is only valid in a GlobalNetworkPolicy: remove it, or make this a GlobalNetworkPolicy"
            ),
        );
    }
}

#[test]
fn do_not_track_and_pre_dnat_follow_calicos_rules() {
    let errors = errors_of(&gnp(
        "  doNotTrack: true\n  preDNAT: true\n  applyOnForward: true\n  types: [Ingress, Egress]\n  egress:\n  - action: Allow\n",
    ));
    let id = Some("GlobalNetworkPolicy/p");
    expect(
        &errors,
        "test.yaml",
        7,
        id,
        Some("spec.preDNAT"),
        "doNotTrack and preDNAT cannot both be true",
    );
    expect(
        &errors,
        "test.yaml",
        11,
        id,
        Some("spec.egress"),
        "a preDNAT policy cannot have egress rules",
    );
    expect(
        &errors,
        "test.yaml",
        9,
        id,
        Some("spec.types"),
        "a preDNAT policy cannot have type Egress",
    );
    assert_eq!(errors.len(), 3, "{}", list(&errors));
    let errors = errors_of(&gnp("  preDNAT: true\n"));
    expect(
        &errors,
        "test.yaml",
        6,
        id,
        Some("spec.applyOnForward"),
        "a preDNAT policy must also apply to forwarded traffic",
    );
}

#[test]
fn rule_values_follow_calicos_rules() {
    let errors = errors_of(&gnp(
        "  ingress:\n  - action: Allow\n    protocol: ICMP\n    ipVersion: 5\n    icmp: {type: 255}\n  - action: Allow\n    protocol: ICMP\n    ipVersion: 6\n    source: {nets: [10.0.0.0/8], notNets: ['::/0']}\n",
    ));
    let id = Some("GlobalNetworkPolicy/p");
    expect(
        &errors,
        "test.yaml",
        9,
        id,
        Some("spec.ingress[0].ipVersion"),
        "ipVersion must be 4 or 6, not 5",
    );
    expect(
        &errors,
        "test.yaml",
        9,
        id,
        Some("spec.ingress[0].ipVersion"),
        "protocol ICMP is IPv4's",
    );
    expect(
        &errors,
        "test.yaml",
        10,
        id,
        Some("spec.ingress[0].icmp.type"),
        "ICMP type 255 is reserved",
    );
    expect(
        &errors,
        "test.yaml",
        13,
        id,
        Some("spec.ingress[1].ipVersion"),
        "protocol ICMP is IPv4's",
    );
    expect(
        &errors,
        "test.yaml",
        14,
        id,
        Some("spec.ingress[1].source.nets[0]"),
        "10.0.0.0/8 is IPv4 but the rule has ipVersion 6",
    );
    expect(
        &errors,
        "test.yaml",
        14,
        id,
        Some("spec.ingress[1].source.notNets[0]"),
        "the rule mixes IPv4 and IPv6 CIDRs",
    );
    assert_eq!(errors.len(), 6, "{}", list(&errors));
    // ICMP fields with a protocol number that is not ICMP.
    let errors = errors_of(&gnp(
        "  ingress:\n  - action: Allow\n    protocol: 6\n    notICMP: {type: 3}\n",
    ));
    expect(
        &errors,
        "test.yaml",
        9,
        id,
        Some("spec.ingress[0].notICMP"),
        "rules that specify notICMP must set protocol to ICMP or ICMPv6, and this one has protocol TCP",
    );
    let errors = errors_of(&gnp(
        "  ingress:\n  - action: Allow\n    protocol: ICMP\n    destination: {notPorts: [1]}\n",
    ));
    expect(
        &errors,
        "test.yaml",
        9,
        id,
        Some("spec.ingress[0].destination.notPorts"),
        "protocol ICMP has no ports",
    );
}

#[test]
fn names_namespaces_and_global_selectors_are_checked() {
    let id = Some("GlobalNetworkPolicy/a.b.c");
    let errors = errors_of(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: a.b.c\n  namespace: shop\nspec:\n  tier: sec.ops\n  selector: global()\n  egress:\n  - action: Allow\n    destination:\n      namespaceSelector: global() && a == 'b'\n",
    );
    expect(
        &errors,
        "test.yaml",
        4,
        id,
        Some("metadata.name"),
        "`a.b.c` is not a valid policy name",
    );
    expect(
        &errors,
        "test.yaml",
        5,
        id,
        Some("metadata.namespace"),
        "this kind is cluster-wide, not namespaced: remove metadata.namespace (or make it a NetworkPolicy",
    );
    expect(
        &errors,
        "test.yaml",
        7,
        id,
        Some("spec.tier"),
        "`sec.ops` is not a valid tier name",
    );
    expect(
        &errors,
        "test.yaml",
        8,
        id,
        Some("spec.selector"),
        "global() can only be used in a rule's namespaceSelector",
    );
    expect(
        &errors,
        "test.yaml",
        12,
        id,
        Some("spec.egress[0].destination.namespaceSelector"),
        "global() cannot be combined with other selectors",
    );
    assert_eq!(errors.len(), 5, "{}", list(&errors));
    let errors =
        errors_of("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: a.b\n");
    expect(
        &errors,
        "test.yaml",
        4,
        Some("Tier/a.b"),
        Some("metadata.name"),
        "`a.b` is not a valid tier name",
    );
    let errors = errors_of("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Shop\n");
    expect(
        &errors,
        "test.yaml",
        4,
        Some("Namespace/Shop"),
        Some("metadata.name"),
        "`Shop` is not a valid namespace name",
    );
    let errors = errors_of(
        "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata:\n  name: ''\n  namespace: -x\n",
    );
    expect(
        &errors,
        "test.yaml",
        4,
        Some("NetworkSet/-x/"),
        Some("metadata.name"),
        "`` is not a valid name: it is empty",
    );
    expect(
        &errors,
        "test.yaml",
        5,
        Some("NetworkSet/-x/"),
        Some("metadata.namespace"),
        "`-x` is not a valid namespace name",
    );
    // A missing name is serde's to report.
    let errors =
        errors_of("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  labels: {}\n");
    expect(
        &errors,
        "test.yaml",
        4,
        Some("Tier/<no name>"),
        Some("metadata.name"),
        "missing field `name`: add it",
    );
}

#[test]
fn kubernetes_policies_follow_the_api_servers_rules() {
    let text = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: k, namespace: shop}
spec:
  podSelector:
    matchExpressions: [{key: app, operator: Equals, values: [a]}]
  policyTypes: [Ingress, Ingress]
  ingress:
  - from:
    - {}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8, nope]}
    ports:
    - port: 0
    - port: '80:90'
    - endPort: 90
";
    let errors = errors_of(text);
    let id = Some("networking.k8s.io/NetworkPolicy/shop/k");
    expect(
        &errors,
        "test.yaml",
        6,
        id,
        Some("spec.podSelector"),
        "unknown operator `Equals`",
    );
    expect(
        &errors,
        "test.yaml",
        7,
        id,
        Some("spec.policyTypes[1]"),
        "Ingress is listed twice",
    );
    expect(
        &errors,
        "test.yaml",
        10,
        id,
        Some("spec.ingress[0].from[0]"),
        "a peer needs podSelector, namespaceSelector or ipBlock",
    );
    expect(
        &errors,
        "test.yaml",
        11,
        id,
        Some("spec.ingress[0].from[1].ipBlock.except[0]"),
        "10.0.0.0/8 is not inside cidr 10.0.0.0/8",
    );
    expect(
        &errors,
        "test.yaml",
        11,
        id,
        Some("spec.ingress[0].from[1].ipBlock.except[1]"),
        "`nope` is not an IP address or CIDR",
    );
    expect(
        &errors,
        "test.yaml",
        13,
        id,
        Some("spec.ingress[0].ports[0].port"),
        "port 0 is not a port",
    );
    expect(
        &errors,
        "test.yaml",
        14,
        id,
        Some("spec.ingress[0].ports[1].port"),
        "writes a port range as `port: 80` and `endPort: 90`",
    );
    expect(
        &errors,
        "test.yaml",
        15,
        id,
        Some("spec.ingress[0].ports[2].endPort"),
        "endPort needs a numeric port: add `port`",
    );
    assert_eq!(errors.len(), 8, "{}", list(&errors));
    // endPort beyond 65535 is serde's to refuse, in words.
    let errors = errors_of(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k}\nspec:\n  egress:\n  - ports: [{port: 1, endPort: 70000}]\n",
    );
    expect(
        &errors,
        "test.yaml",
        6,
        Some("networking.k8s.io/NetworkPolicy/default/k"),
        Some("spec.egress[0].ports[0].endPort"),
        "expected a number from 0 to 65535",
    );
}

#[test]
fn endpoints_need_valid_addresses_and_ports() {
    let errors = errors_of(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus:\n  podIP: 10.0.0.1/32\n  podIPs:\n  - ip: 10.0.0.1\n  - ip: fd00::zz\n",
    );
    expect(
        &errors,
        "test.yaml",
        5,
        Some("Pod/default/p"),
        Some("status.podIP"),
        "`10.0.0.1/32` is not an IP address: write an IPv4 or IPv6 address",
    );
    expect(
        &errors,
        "test.yaml",
        8,
        Some("Pod/default/p"),
        Some("status.podIPs[1].ip"),
        "`fd00::zz` is not an IP address",
    );
    assert_eq!(errors.len(), 2, "{}", list(&errors));
    let text = "\
apiVersion: causeway.dev/v1alpha1
kind: StaticEndpoint
metadata: {name: host}
spec:
  ips: []
  ports:
  - {name: web, port: 80}
  - {name: web, port: 8080, protocol: TCP}
  - {name: Web_1, port: 0, protocol: tcp}
";
    let errors = errors_of(text);
    let id = Some("StaticEndpoint/host");
    expect(
        &errors,
        "test.yaml",
        5,
        id,
        Some("spec.ips"),
        "a StaticEndpoint needs at least one address",
    );
    expect(
        &errors,
        "test.yaml",
        8,
        id,
        Some("spec.ports[1].name"),
        "port name `web` is used twice",
    );
    expect(
        &errors,
        "test.yaml",
        9,
        id,
        Some("spec.ports[2].name"),
        "`Web_1` is not a port name",
    );
    expect(
        &errors,
        "test.yaml",
        9,
        id,
        Some("spec.ports[2].port"),
        "port 0 is not a port",
    );
    expect(
        &errors,
        "test.yaml",
        9,
        id,
        Some("spec.ports[2].protocol"),
        "protocol `tcp` is not supported here",
    );
    assert_eq!(errors.len(), 5, "{}", list(&errors));
}

#[test]
fn cidrs_accept_bare_addresses_and_host_bits() {
    for (text, want) in [
        ("10.1.2.3", "10.1.2.3/32"),
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("fd00::1", "fd00::1/128"),
        ("::/0", "::/0"),
    ] {
        assert_eq!(semantic::parse_net(text).unwrap().to_string(), want);
    }
    for bad in [
        "10.0.0.0/",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
        "010.0.0.1",
        "fd00::/129",
        " 10.0.0.0/8",
        "10.0.0.0/+8",
    ] {
        assert!(semantic::parse_net(bad).is_err(), "{bad}");
    }
}

#[test]
fn dns_names() {
    for good in ["a", "a-b", "0", &"a".repeat(63)] {
        assert!(semantic::dns_label(good).is_ok(), "{good}");
    }
    for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
        assert!(semantic::dns_label(bad).is_err(), "{bad}");
    }
    assert!(semantic::dns_subdomain("a.b-c.d").is_ok());
    for bad in ["a..b", ".a", "a.", &format!("{}.b", "a".repeat(253))] {
        assert!(semantic::dns_subdomain(bad).is_err(), "{bad}");
    }
}
