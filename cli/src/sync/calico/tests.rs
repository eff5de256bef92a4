use serde_json::json;

use super::*;

fn gnp_key(name: &str) -> String {
    format!("{PREFIX}globalnetworkpolicies/{name}")
}

#[test]
fn a_policy_as_calicoctl_writes_it_reads_as_the_same_kind() {
    // What calicoctl stores: the v3 object with server-set metadata.
    let value = json!({
        "kind": "GlobalNetworkPolicy",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {
            "name": "allow-web",
            "uid": "5a0c2a1e-5b0e-4d0f-9b8e-0f1e2d3c4b5a",
            "creationTimestamp": "2026-12-06T10:00:00Z",
            "labels": {"team": "web"}
        },
        "spec": {"tier": "default", "order": 100, "selector": "app == 'web'",
                 "types": ["Ingress"],
                 "ingress": [{"action": "Allow", "protocol": "TCP",
                              "destination": {"ports": [80]}}]}
    });
    let Read::Resource(m) = read(&gnp_key("allow-web"), value.to_string().as_bytes()).unwrap()
    else {
        panic!("ignored");
    };
    assert_eq!(
        m,
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "allow-web", "labels": {"team": "web"}},
            "spec": value["spec"],
        })
    );
    // It loads as causeway's policy.
    causeway_control::store::loaded_from_manifest(&m, std::path::Path::new("x")).unwrap();
}

#[test]
fn the_stashed_v3_name_is_the_policys_name() {
    let value = json!({
        "kind": "NetworkPolicy", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "default.db", "namespace": "shop",
                     "annotations": {"projectcalico.org/metadata": "{\"name\":\"db\"}", "keep": "me"}},
        "spec": {"selector": "all()"}
    });
    let Read::Resource(m) = read(
        &format!("{PREFIX}networkpolicies/shop/default.db"),
        value.to_string().as_bytes(),
    )
    .unwrap() else {
        panic!("ignored")
    };
    assert_eq!(
        m["metadata"],
        json!({"name": "db", "namespace": "shop", "annotations": {"keep": "me"}})
    );
}

#[test]
fn a_workload_endpoint_reads_as_its_pod() {
    let value = json!({
        "kind": "WorkloadEndpoint", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "node1-k8s-web--1-eth0", "namespace": "shop",
                     "labels": {"app": "web", "projectcalico.org/namespace": "shop",
                                "projectcalico.org/orchestrator": "k8s"}},
        "spec": {"orchestrator": "k8s", "node": "node1", "pod": "web-1", "endpoint": "eth0",
                 "serviceAccountName": "web", "ipNetworks": ["10.2.0.2/32", "fd00:b::2/128"],
                 "profiles": ["kns.shop", "ksa.shop.web"], "interfaceName": "cali1",
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "hostPort": 0}]}
    });
    let Read::Resource(m) = read(
        &format!("{PREFIX}workloadendpoints/shop/node1-k8s-web--1-eth0"),
        value.to_string().as_bytes(),
    )
    .unwrap() else {
        panic!("ignored")
    };
    assert_eq!(m["kind"], "Pod");
    assert_eq!(m["metadata"]["name"], "web-1");
    assert_eq!(m["metadata"]["labels"]["app"], "web");
    assert_eq!(m["spec"]["serviceAccountName"], "web");
    assert_eq!(
        m["spec"]["containers"][0]["ports"],
        json!([{"name": "http", "containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(
        m["status"]["podIPs"],
        json!([{"ip": "10.2.0.2"}, {"ip": "fd00:b::2"}])
    );
    causeway_control::store::loaded_from_manifest(&m, std::path::Path::new("x")).unwrap();
}

#[test]
fn a_namespace_profile_reads_as_the_namespace_with_its_labels() {
    let value = json!({
        "kind": "Profile", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "kns.shop"},
        "spec": {"labelsToApply": {"pcns.projectcalico.org/name": "shop", "pcns.env": "prod"}}
    });
    let r = read(
        &format!("{PREFIX}profiles/kns.shop"),
        value.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        r,
        Read::Resource(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"projectcalico.org/name": "shop", "env": "prod"}}
        }))
    );
    // A service account profile bears on nothing causeway enforces.
    let sa = json!({"kind": "Profile", "apiVersion": "projectcalico.org/v3",
                    "metadata": {"name": "ksa.shop.web"}, "spec": {}});
    assert_eq!(
        read(
            &format!("{PREFIX}profiles/ksa.shop.web"),
            sa.to_string().as_bytes()
        )
        .unwrap(),
        Read::Ignored
    );
}

#[test]
fn bad_values_and_unknown_kinds_are_named() {
    let e = read(&gnp_key("x"), b"{not json").unwrap_err();
    assert!(e.contains("not JSON"), "{e}");
    let e = read(&gnp_key("x"), br#"{"kind":"Tier","spec":{}}"#).unwrap_err();
    assert!(e.contains("the value's kind is `Tier`"), "{e}");
    let e = read(&format!("{PREFIX}frobnicators/x"), b"{}").unwrap_err();
    assert!(e.contains("unknown kind: `frobnicators`"), "{e}");
    let e = read("/calico/ipam/v2/x", b"{}").unwrap_err();
    assert!(e.contains("is not under"), "{e}");
    assert_eq!(
        read(&format!("{PREFIX}ippools/default-ipv4-ippool"), b"{}").unwrap(),
        Read::Ignored
    );
}
