//! Manifests that load: every kind, as people write them and as kubectl
//! prints them.

use super::*;

#[test]
fn a_directory_loads_every_file_in_path_order() {
    let all = load_paths(&[fixture("good")]).unwrap_or_else(|e| panic!("errors:{}", list(&e)));
    assert!(validate(&all).is_empty(), "{}", list(&validate(&all)));
    let mut files: Vec<&Path> = all.iter().map(|l| l.source.file.as_path()).collect();
    files.dedup();
    let good = fixture("good");
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&good).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "calico.yaml",
            "cluster.yaml",
            "k8s/network-policies.yaml",
            "pod.yaml",
            "pods.json",
            "static-endpoint.yaml"
        ]
    );
    assert_eq!(
        crate::check::summary(&all),
        "ok: 4 GlobalNetworkPolicy, 2 NetworkPolicy, 6 networking.k8s.io/NetworkPolicy, 1 GlobalNetworkSet, \
         1 NetworkSet, 3 Tier, 4 Pod, 3 Namespace, 1 StaticEndpoint"
    );
}

#[test]
fn a_multi_document_calico_file_keeps_document_indexes_and_lines() {
    let all = load_paths(&[fixture("good/calico.yaml")])
        .unwrap_or_else(|e| panic!("errors:{}", list(&e)));
    let got: Vec<(String, usize, usize)> = all
        .iter()
        .map(|l| (l.resource.id(), l.source.document, l.source.line))
        .collect();
    let want = [
        ("Tier/security", 0, 4),
        ("Tier/platform", 1, 11),
        ("Tier/default", 2, 19),
        // The comment-only and the empty documents are not counted.
        ("GlobalNetworkSet/blocklist", 3, 30),
        ("NetworkSet/shop/partners", 4, 42),
        ("GlobalNetworkPolicy/security.deny-blocklist", 5, 53),
        ("GlobalNetworkPolicy/security.edge-ingress", 6, 75),
        ("GlobalNetworkPolicy/platform.host-prefilter", 7, 133),
        ("GlobalNetworkPolicy/platform-nodeport-guard", 8, 151),
        ("NetworkPolicy/shop/allow-frontend", 9, 167),
        // No namespace: Calico's default.
        ("NetworkPolicy/default/default-deny", 10, 195),
    ];
    let want: Vec<(String, usize, usize)> = want
        .iter()
        .map(|(id, d, l)| ((*id).to_owned(), *d, *l))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn every_calico_rule_field_is_read() {
    let all = load_paths(&[fixture("good/calico.yaml")])
        .unwrap_or_else(|e| panic!("errors:{}", list(&e)));
    let Resource::GlobalNetworkPolicy { metadata, spec } =
        &find(&all, "GlobalNetworkPolicy/security.edge-ingress").resource
    else {
        panic!("not a GlobalNetworkPolicy");
    };
    assert!(metadata.namespace.is_none());
    assert_eq!(spec.tier.as_deref(), Some("security"));
    assert_eq!(spec.order, Some(20.0));
    assert!(spec.namespace_selector.is_some() && spec.service_account_selector.is_some());
    assert_eq!(
        spec.effective_types(),
        [PolicyType::Ingress, PolicyType::Egress]
    );
    let [log, deny, icmp, not_icmp, accounts, pass] = spec.ingress.as_slice() else {
        panic!("{} ingress rules", spec.ingress.len());
    };
    assert_eq!(log.action, Action::Log);
    assert_eq!(
        log.metadata.as_ref().unwrap().annotations["why"],
        "audit ssh attempts"
    );
    assert_eq!(deny.ip_version, Some(4));
    assert_eq!(deny.source.not_nets, ["10.0.0.0/8"]);
    assert!(deny.source.not_selector.is_some());
    assert_eq!(
        deny.destination.ports,
        [Port::Range(22, 22), Port::Range(2222, 2230)]
    );
    assert_eq!(deny.destination.not_ports, [Port::Range(2225, 2225)]);
    assert_eq!(
        (
            icmp.protocol,
            icmp.icmp.unwrap().ty,
            icmp.icmp.unwrap().code
        ),
        (Some(Protocol::ICMP), Some(8), Some(0))
    );
    assert_eq!(not_icmp.not_icmp.unwrap().ty, Some(128));
    assert_eq!(accounts.not_protocol, Some(Protocol::UDP));
    assert!(
        accounts
            .source
            .namespace_selector
            .as_ref()
            .unwrap()
            .is_global()
    );
    assert_eq!(
        accounts.source.service_accounts.as_ref().unwrap().names,
        ["ingress-nginx"]
    );
    assert_eq!(
        accounts.destination.ports,
        [Port::Named("https".into()), Port::Range(80, 80)]
    );
    assert_eq!(pass.protocol, Some(Protocol::SCTP));
    assert_eq!(spec.egress[0].destination.nets, ["fd00::/8"]);

    let Resource::GlobalNetworkPolicy { spec, .. } =
        &find(&all, "GlobalNetworkPolicy/platform.host-prefilter").resource
    else {
        panic!("not a GlobalNetworkPolicy");
    };
    assert!(spec.do_not_track && spec.apply_on_forward && !spec.pre_dnat);
    let Resource::GlobalNetworkPolicy { spec, .. } =
        &find(&all, "GlobalNetworkPolicy/platform-nodeport-guard").resource
    else {
        panic!("not a GlobalNetworkPolicy");
    };
    assert!(
        spec.pre_dnat && spec.apply_on_forward,
        "preDNAT is Calico's spelling"
    );

    let Resource::Tier { spec, .. } = &find(&all, "Tier/platform").resource else {
        panic!("not a Tier");
    };
    assert_eq!(
        (spec.order, spec.default_action),
        (Some(200.0), Some(Action::Pass))
    );
    let Resource::GlobalNetworkSet { metadata, spec } =
        &find(&all, "GlobalNetworkSet/blocklist").resource
    else {
        panic!("not a GlobalNetworkSet");
    };
    assert_eq!(metadata.labels["feed"], "threat-intel");
    assert_eq!(
        spec.nets,
        ["198.51.100.0/24", "203.0.113.7", "2001:db8:bad::/48"]
    );
}

#[test]
fn the_kubernetes_network_policy_examples_load() {
    let all = load_paths(&[fixture("good/k8s/network-policies.yaml")])
        .unwrap_or_else(|e| panic!("errors:{}", list(&e)));
    assert_eq!(
        ids(&all),
        [
            "networking.k8s.io/NetworkPolicy/default/test-network-policy",
            "networking.k8s.io/NetworkPolicy/default/default-deny-ingress",
            "networking.k8s.io/NetworkPolicy/default/allow-all-ingress",
            "networking.k8s.io/NetworkPolicy/default/default-deny-all",
            "networking.k8s.io/NetworkPolicy/shop/allow-from-labelled-namespace",
            "networking.k8s.io/NetworkPolicy/default/multi-port-egress",
        ]
    );
    let Resource::K8sNetworkPolicy { spec, .. } = &all[0].resource else {
        panic!("not a Kubernetes NetworkPolicy");
    };
    let block = spec.ingress[0].from[0].ip_block.as_ref().unwrap();
    assert_eq!(
        (block.cidr.as_str(), block.except.as_slice()),
        ("172.17.0.0/16", &["172.17.1.0/24".to_owned()][..])
    );
    assert_eq!(spec.ingress[0].ports[0].port, Some(Port::Range(6379, 6379)));
    let Resource::K8sNetworkPolicy { spec, .. } = &all[4].resource else {
        panic!("not a Kubernetes NetworkPolicy");
    };
    let peer = &spec.ingress[0].from[0];
    assert!(
        peer.namespace_selector.is_some() && peer.pod_selector.is_some(),
        "one peer, both selectors"
    );
    let Resource::K8sNetworkPolicy { spec, .. } = &all[5].resource else {
        panic!("not a Kubernetes NetworkPolicy");
    };
    let port = &spec.egress[0].ports[0];
    assert_eq!(
        (port.port.clone(), port.end_port),
        (Some(Port::Range(32000, 32000)), Some(32768))
    );
}

#[test]
fn kubectl_output_loads_and_its_extra_fields_are_ignored() {
    let all = load_paths(&[fixture("good/cluster.yaml"), fixture("good/pod.yaml")])
        .unwrap_or_else(|e| panic!("errors:{}", list(&e)));
    assert_eq!(
        ids(&all),
        [
            "Namespace/default",
            "Namespace/shop",
            "Pod/shop/api-7d9c6b5f4-x2kqp",
            "Pod/shop/frontend-0",
            "Pod/default/db-0",
        ]
    );
    // Each item of the List has its own line.
    let lines: Vec<usize> = all.iter().map(|l| l.source.line).collect();
    assert_eq!(lines, [4, 18, 33, 121, 2]);
    let Resource::Namespace { metadata } = &all[1].resource else {
        panic!("not a Namespace");
    };
    assert_eq!(metadata.labels["team"], "payments");
    let Resource::Pod {
        metadata,
        spec,
        status,
    } = &all[2].resource
    else {
        panic!("not a Pod");
    };
    assert_eq!(metadata.labels["app"], "api");
    assert_eq!(spec.service_account_name.as_deref(), Some("api"));
    let ports: Vec<(Option<&str>, u16)> = spec.containers[0]
        .ports
        .iter()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(ports, [(Some("http"), 8080), (Some("metrics"), 9090)]);
    assert_eq!(
        status.pod_ip.as_deref(),
        Some("10.244.1.17"),
        "status.podIP is Kubernetes' spelling"
    );
    let ips: Vec<&str> = status.pod_ips.iter().map(|p| p.ip.as_str()).collect();
    assert_eq!(ips, ["10.244.1.17", "fd00:10:244:1::11"]);
    // A pod without a namespace is in `default`.
    let Resource::Pod { metadata, .. } = &all[4].resource else {
        panic!("not a Pod");
    };
    assert_eq!(metadata.namespace.as_deref(), Some("default"));
}

#[test]
fn a_json_list_loads_with_each_items_line() {
    let all =
        load_paths(&[fixture("good/pods.json")]).unwrap_or_else(|e| panic!("errors:{}", list(&e)));
    let got: Vec<(String, usize, usize)> = all
        .iter()
        .map(|l| (l.resource.id(), l.source.document, l.source.line))
        .collect();
    assert_eq!(
        got,
        [
            ("Pod/jobs/worker-5f7b8c9d6-abcde".to_owned(), 0, 4),
            ("Namespace/jobs".to_owned(), 0, 25)
        ]
    );
}

#[test]
fn a_static_endpoint_loads_without_a_namespace() {
    let all = load_paths(&[fixture("good/static-endpoint.yaml")])
        .unwrap_or_else(|e| panic!("errors:{}", list(&e)));
    let Resource::StaticEndpoint { metadata, spec } = &all[0].resource else {
        panic!("not a StaticEndpoint");
    };
    assert_eq!(metadata.namespace, None);
    assert_eq!(spec.ips, ["192.168.50.10", "2001:db8:50::10"]);
    assert_eq!(
        (spec.ports[0].name.as_str(), spec.ports[0].port),
        ("postgres", 5432)
    );
}

#[test]
fn minified_json_loads() {
    let text = r#"{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkSet","metadata":{"name":"x"},"spec":{"nets":["10.0.0.0/8"]}}"#;
    let all =
        load_str(text, Path::new("set.json")).unwrap_or_else(|e| panic!("errors:{}", list(&e)));
    assert_eq!(ids(&all), ["GlobalNetworkSet/x"]);
}

#[test]
fn a_typed_list_implies_its_items_kind() {
    // The API server's lists leave apiVersion and kind out of the items.
    let all = ok(
        "apiVersion: v1\nkind: PodList\nitems:\n- metadata:\n    name: a\n- metadata:\n    name: b\n    namespace: x\n",
    );
    assert_eq!(ids(&all), ["Pod/default/a", "Pod/x/b"]);
    assert_eq!((all[0].source.line, all[1].source.line), (4, 6));
}

#[test]
fn separators_may_carry_spaces_comments_and_end_markers() {
    let text = "# header\n--- \t\nkind: Namespace\napiVersion: v1\nmetadata: {name: a}\n...\n---   # two\n\n\n# about b\nkind: Namespace\napiVersion: v1\nmetadata: {name: b}\n---\n---\n";
    let all = ok(text);
    let got: Vec<(String, usize, usize)> = all
        .iter()
        .map(|l| (l.resource.id(), l.source.document, l.source.line))
        .collect();
    assert_eq!(
        got,
        [
            ("Namespace/a".to_owned(), 0, 3),
            ("Namespace/b".to_owned(), 1, 11)
        ]
    );
    // A longer run of dashes is content, not a separator.
    let errors = errors_of("kind: Namespace\napiVersion: v1\nmetadata: {name: a}\n----\n");
    assert_eq!(errors.len(), 1, "{}", list(&errors));
}

#[test]
fn windows_line_endings_are_read() {
    let text = "apiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: a\r\n---\r\n\r\napiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: b\r\n";
    let all = ok(text);
    let got: Vec<(String, usize)> = all
        .iter()
        .map(|l| (l.resource.id(), l.source.line))
        .collect();
    assert_eq!(
        got,
        [("Namespace/a".to_owned(), 1), ("Namespace/b".to_owned(), 7)]
    );
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let all = ok("\u{feff}apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n");
    assert_eq!(ids(&all), ["Namespace/a"]);
}

#[test]
fn plain_numbers_and_booleans_read_as_strings_where_strings_are_expected() {
    // The typed read goes from the untyped form, where `1` is a number; a
    // string field then falls back to the text, which reads it as "1", as
    // the loader always has. Alone and inside a List.
    let doc = |quote: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {quote}42{quote}\n  labels:\n    version: {quote}1{quote}\n    canary: {quote}true{quote}\n"
        )
    };
    let plain = ok(&doc(""));
    let quoted = ok(&doc("'"));
    assert_eq!(plain[0].resource, quoted[0].resource);
    assert_eq!(ids(&plain), ["Namespace/42"]);
    let list = |quote: &str| {
        format!(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: n\n    labels:\n      version: {quote}1{quote}\n"
        )
    };
    assert_eq!(ok(&list(""))[0].resource, ok(&list("'"))[0].resource);
}
