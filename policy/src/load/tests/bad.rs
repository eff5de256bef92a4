//! The mistakes of the fixtures under `bad/` and `duplicate/`, each at
//! its file, line, resource and field.

use super::*;

#[test]
fn an_unknown_field_is_named_with_its_path_and_the_fields_expected() {
    let errors = load_paths(&[fixture("bad/typo.yaml")]).unwrap_err();
    assert_eq!(errors.len(), 1, "{}", list(&errors));
    let e = expect(
        &errors,
        "bad/typo.yaml",
        21,
        Some("GlobalNetworkPolicy/deny-ssh"),
        Some("spec.ingress[0].souce"),
        "unknown field `souce`, expected one of `action`, `protocol`",
    );
    assert_eq!(e.column, Some(7));
    assert!(e.message.contains("`source`") && e.message.ends_with("fix its spelling or remove it"));
}

#[test]
fn a_bad_selector_is_reported_at_its_value_with_the_position_in_it() {
    let errors = load_paths(&[fixture("bad/selector.yaml")]).unwrap_err();
    let e = expect(
        &errors,
        "bad/selector.yaml",
        9,
        Some("GlobalNetworkPolicy/deny-ssh"),
        Some("spec.ingress[0].source.selector"),
        "at position 8: expected a quoted string",
    );
    assert_eq!(e.column, Some(19));
    assert!(e.message.contains("\"role == bastion\""), "{e}");
}

#[test]
fn bad_ports_and_protocols_are_reported_at_the_value() {
    let errors = load_paths(&[fixture("bad/ports.yaml")]).unwrap_err();
    assert_eq!(errors.len(), 5, "{}", list(&errors));
    let file = "bad/ports.yaml";
    let e = expect(
        &errors,
        file,
        11,
        Some("GlobalNetworkPolicy/port-too-big"),
        Some("spec.ingress[0].destination.ports[1]"),
        "port 70000 is out of range (0 to 65535)",
    );
    assert_eq!(e.column, Some(21));
    expect(
        &errors,
        file,
        22,
        Some("GlobalNetworkPolicy/range-backwards"),
        Some("spec.ingress[0].destination.ports[0]"),
        "port range `90:80` has its low end above its high end",
    );
    expect(
        &errors,
        file,
        31,
        Some("GlobalNetworkPolicy/bad-protocol"),
        Some("spec.ingress[0].protocol"),
        "`TPC` is not a protocol: use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number",
    );
    expect(
        &errors,
        file,
        42,
        Some("NetworkPolicy/shop/ports-without-protocol"),
        Some("spec.ingress[0].destination.ports"),
        "rules that specify ports must set protocol to TCP, UDP, SCTP or UDPLite: add `protocol: TCP`",
    );
    expect(
        &errors,
        file,
        53,
        Some("GlobalNetworkPolicy/icmp-with-tcp"),
        Some("spec.ingress[0].icmp"),
        "must set protocol to ICMP or ICMPv6, and this one has protocol TCP",
    );
}

#[test]
fn bad_cidrs_and_excepts_outside_the_cidr_are_reported() {
    let errors = load_paths(&[fixture("bad/nets.yaml")]).unwrap_err();
    assert_eq!(errors.len(), 2, "{}", list(&errors));
    let e = expect(
        &errors,
        "bad/nets.yaml",
        11,
        Some("GlobalNetworkPolicy/bad-cidr"),
        Some("spec.egress[0].destination.nets[1]"),
        "`10.300.0.0/16` is not an IP address or CIDR",
    );
    assert_eq!(e.column, Some(13));
    expect(
        &errors,
        "bad/nets.yaml",
        26,
        Some("networking.k8s.io/NetworkPolicy/shop/except-outside"),
        Some("spec.ingress[0].from[0].ipBlock.except[1]"),
        "10.0.0.0/24 is not inside cidr 172.17.0.0/16",
    );
}

#[test]
fn missing_and_unknown_kinds_say_what_is_understood() {
    let errors = load_paths(&[fixture("bad/kinds.yaml")]).unwrap_err();
    assert_eq!(errors.len(), 3, "{}", list(&errors));
    let file = "bad/kinds.yaml";
    expect(
        &errors,
        file,
        1,
        None,
        None,
        "missing `kind`: add it; understood are projectcalico.org/v3",
    );
    let e = expect(
        &errors,
        file,
        7,
        None,
        Some("kind"),
        "projectcalico.org/v3 HostEndpoint is not a kind causeway reads: it reads projectcalico.org/v3 GlobalNetworkPolicy",
    );
    assert!(
        e.message.contains("causeway.dev/v1alpha1 StaticEndpoint"),
        "{e}"
    );
    expect(
        &errors,
        file,
        14,
        None,
        Some("kind"),
        "Pod is not a projectcalico.org/v3 kind: use apiVersion v1",
    );
}

#[test]
fn a_tier_no_tier_resource_defines_is_reported_by_validate() {
    let all = load_paths(&[fixture("bad/undefined-tier.yaml")])
        .unwrap_or_else(|e| panic!("errors:{}", list(&e)));
    let errors = validate(&all);
    assert_eq!(errors.len(), 1, "{}", list(&errors));
    expect(
        &errors,
        "bad/undefined-tier.yaml",
        1,
        Some("GlobalNetworkPolicy/security.deny-all"),
        Some("spec.tier"),
        "tier `security` is not defined: add a Tier named `security`",
    );
    // Defined in another input, it is fine.
    let mut with_tier = all;
    with_tier.extend(ok("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  order: 1\n"));
    assert!(validate(&with_tier).is_empty());
}

#[test]
fn a_tier_that_failed_to_load_does_not_also_make_its_policies_undefined() {
    let dir = TempDir::new("unreadable-tier");
    dir.write("tier.yaml", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  oder: 1\n");
    fs::copy(
        fixture("bad/undefined-tier.yaml"),
        dir.path.join("policy.yaml"),
    )
    .unwrap();
    let checked = check_paths(std::slice::from_ref(&dir.path));
    assert_eq!(checked.errors.len(), 1, "{}", list(&checked.errors));
    expect(
        &checked.errors,
        "tier.yaml",
        6,
        Some("Tier/security"),
        Some("spec.oder"),
        "unknown field `oder`",
    );
}

#[test]
fn a_resource_defined_in_two_files_names_both_places() {
    let checked = check_paths(&[fixture("duplicate")]);
    assert_eq!(checked.loaded.len(), 2);
    assert_eq!(checked.errors.len(), 1, "{}", list(&checked.errors));
    let first = fixture("duplicate/a.yaml");
    expect(
        &checked.errors,
        "duplicate/b.yaml",
        3,
        Some("GlobalNetworkPolicy/deny-telnet"),
        Some("metadata.name"),
        &format!(
            "defined twice: first at {}:1; remove one of them",
            first.display()
        ),
    );
    // validate() finds it too.
    let all = load_paths(&[fixture("duplicate")]).unwrap_or_else(|e| panic!("errors:{}", list(&e)));
    assert_eq!(validate(&all), checked.errors);
}

#[test]
fn every_error_of_a_file_is_reported_not_only_the_first() {
    let errors = load_paths(&[fixture("bad/many.yaml")]).unwrap_err();
    let file = "bad/many.yaml";
    let gnp = Some("GlobalNetworkPolicy/Many_Mistakes");
    let knp = Some("networking.k8s.io/NetworkPolicy/default/k8s-mistakes");
    let want: [(usize, Option<&str>, &str, &str); 15] = [
        (
            5,
            gnp,
            "metadata.name",
            "`Many_Mistakes` is not a valid policy name: use lowercase",
        ),
        (7, gnp, "spec.applyOnForward", "add `applyOnForward: true`"),
        (
            11,
            gnp,
            "spec.ingress[0].source.ports",
            "rules that specify ports must set protocol",
        ),
        (13, gnp, "spec.ingress[0].icmp", "this one has no protocol"),
        (
            13,
            gnp,
            "spec.ingress[0].icmp.code",
            "an ICMP code needs an ICMP type: add icmp.type",
        ),
        (
            16,
            gnp,
            "spec.ingress[1].ipVersion",
            "protocol ICMPv6 is IPv6's: set ipVersion to 6",
        ),
        (
            18,
            gnp,
            "spec.ingress[1].destination.nets[1]",
            "fd00::/8 is IPv6 but the rule has ipVersion 4",
        ),
        (
            18,
            gnp,
            "spec.ingress[1].destination.nets[1]",
            "the rule mixes IPv4 and IPv6 CIDRs: split it",
        ),
        (
            26,
            Some("NetworkSet/shop/office"),
            "spec.nets[0]",
            "the prefix length 33 is longer than the 32 bits",
        ),
        (
            37,
            knp,
            "spec.egress[0].to[0].ipBlock",
            "ipBlock cannot be combined with podSelector",
        ),
        (
            40,
            knp,
            "spec.egress[0].ports[0].protocol",
            "protocol `ICMP` is not supported here: use TCP, UDP or SCTP",
        ),
        (
            43,
            knp,
            "spec.egress[0].ports[1].endPort",
            "endPort 80 is below port 90",
        ),
        (
            45,
            knp,
            "spec.egress[0].ports[2].endPort",
            "endPort needs a numeric port, not the named port `https`",
        ),
        (
            52,
            Some("Tier/default"),
            "spec.order",
            "the default tier's order is fixed at 1000000, not 5",
        ),
        (
            53,
            Some("Tier/default"),
            "spec.defaultAction",
            "a tier's defaultAction must be Deny or Pass, not Allow",
        ),
    ];
    assert_eq!(errors.len(), want.len(), "{}", list(&errors));
    for (line, resource, field, fragment) in &want {
        expect(&errors, file, *line, *resource, Some(field), fragment);
    }
    // One line each, with the positions in file order.
    let lines: Vec<usize> = errors.iter().map(|e| e.line.unwrap()).collect();
    assert!(lines.is_sorted(), "{lines:?}");
}

#[test]
fn load_paths_reports_the_errors_of_every_file() {
    let errors = load_paths(&[fixture("bad"), fixture("good/pod.yaml")]).unwrap_err();
    let files: BTreeSet<String> = errors
        .iter()
        .map(|e| e.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // undefined-tier.yaml is only wrong across resources (validate).
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        [
            "kinds.yaml",
            "many.yaml",
            "nets.yaml",
            "ports.yaml",
            "selector.yaml",
            "typo.yaml"
        ]
    );
    assert_eq!(errors.len(), 1 + 1 + 5 + 2 + 3 + 15);
}

/// A pod at `ip` in namespace `ns`, with `extra` lines under `spec` and
/// `phase`.
fn pod_at(name: &str, ip: &str, spec: &str, phase: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: ns\nspec:\n  containers: []\n{spec}status:\n  phase: {phase}\n  podIP: {ip}\n  podIPs: [{{ip: {ip}}}]\n"
    )
}

#[test]
fn an_address_of_two_endpoints_is_refused_naming_both() {
    let statics = "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: db\nspec:\n  ips: [192.168.50.10, '2001:db8::1']\n\
                   ---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: db2\nspec:\n  ips: ['2001:db8:0::1']\n";
    let text = format!("{statics}{}", pod_at("web", "192.168.50.10", "", "Running"));
    let all = load_str(&text, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{}", list(&e)));
    let errors = validate(&all);
    assert_eq!(errors.len(), 2, "{}", list(&errors));
    // The same IPv6 address written another way is the same address.
    expect(
        &errors,
        "test.yaml",
        9,
        Some("StaticEndpoint/db2"),
        Some("spec.ips"),
        "address 2001:db8::1 is also StaticEndpoint/db's (at test.yaml:2): an address belongs to one endpoint",
    );
    expect(
        &errors,
        "test.yaml",
        16,
        Some("Pod/ns/web"),
        Some("status.podIPs"),
        "address 192.168.50.10 is also StaticEndpoint/db's (at test.yaml:2)",
    );
}

#[test]
fn finished_and_host_network_pods_are_not_endpoints_and_share_addresses() {
    // Kubernetes gives a finished pod's address to a new pod, and every
    // host-network pod of a node has the node's address: Calico makes no
    // endpoint of either, and neither clashes.
    let text = [
        pod_at("done", "10.0.0.5", "", "Succeeded"),
        pod_at("crashed", "10.0.0.5", "", "Failed"),
        pod_at("new", "10.0.0.5", "", "Running"),
        pod_at(
            "kube-proxy",
            "192.168.1.1",
            "  hostNetwork: true\n",
            "Running",
        ),
        pod_at(
            "node-exporter",
            "192.168.1.1",
            "  hostNetwork: true\n",
            "Running",
        ),
    ]
    .concat();
    let all = load_str(&text, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{}", list(&e)));
    assert!(validate(&all).is_empty(), "{}", list(&validate(&all)));
    let set =
        crate::normalize::PolicySet::build(all.iter().map(|l| &l.resource)).expect("normalises");
    let endpoints: Vec<&str> = set.endpoints.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(endpoints, ["Pod/ns/new"]);
}
