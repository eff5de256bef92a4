//! The cluster-scale shape `causeway-perf sync` writes into etcd (our own
//! generator's data, made here again as manifests; see
//! `perf/src/sync/inventory.rs`): 10 000 pods in 50 namespaces, 1 000
//! Calico policies in three tiers. Shared by the policy crate's `compile`
//! bench and the control crate's `apply` bench.

#![allow(dead_code, reason = "each bench uses part of the shape")]

use std::fmt::Write as _;

pub(crate) const PODS: u32 = 10_000;
pub(crate) const NAMESPACES: u32 = 50;
pub(crate) const POLICIES: u32 = 1_000;
pub(crate) const APPS: u32 = 20;
pub(crate) const ROLES: [&str; 3] = ["frontend", "backend", "db"];

pub(crate) fn namespace(n: u32) -> String {
    format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{n:02}\n  labels: {{team: t{}}}\n",
        n % 5
    )
}

pub(crate) fn pod(i: u32, v2: bool) -> String {
    pod_as(i, v2, None)
}

/// Pod `i`, with `role` instead of its own `tier` if given.
pub(crate) fn pod_as(i: u32, v2: bool, role: Option<&str>) -> String {
    let ns = i % NAMESPACES;
    let k = i / NAMESPACES;
    let ip = u32::from_be_bytes([172, 16, 0, 1]) + i;
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i}\n  namespace: ns-{ns:02}\n  labels: {{app: app-{}, tier: {}, version: {}}}\nspec:\n  serviceAccountName: default\n  containers:\n  - name: c\n    ports: [{{name: http, containerPort: 8080, protocol: TCP}}]\nstatus:\n  podIPs: [{{ip: {}}}]\n",
        k % APPS,
        role.unwrap_or(ROLES[(k / APPS % 3) as usize]),
        if v2 { "v2" } else { "v1" },
        std::net::Ipv4Addr::from(ip),
    )
}

pub(crate) fn tiers() -> String {
    "---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  order: 100\n\
---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: platform\nspec:\n  order: 200\n"
        .to_owned()
}

pub(crate) fn policy(k: u32, moved: u32) -> String {
    let global = k.is_multiple_of(5);
    let tier = match k % 10 {
        0 | 1 => "security",
        2 => "platform",
        _ => "default",
    };
    let base = if global {
        format!("gp-{k}")
    } else {
        format!("np-{k}")
    };
    let name = if tier == "default" {
        base
    } else {
        format!("{tier}.{base}")
    };
    let app = format!("app-{}", k % APPS);
    let (kind, ns, selector) = if global {
        (
            "GlobalNetworkPolicy",
            String::new(),
            format!("app == '{app}' && version == 'v2'"),
        )
    } else {
        (
            "NetworkPolicy",
            format!("\n  namespace: ns-{:02}", k % NAMESPACES),
            format!(
                "app == '{app}' && tier == '{}'",
                ROLES[(k / APPS % 3) as usize]
            ),
        )
    };
    let port = 10_000 + (k * 7 + moved) % 50_000;
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata:\n  name: {name}{ns}\nspec:\n  tier: {tier}\n  order: {}\n  selector: \"{selector}\"\n  types: [Ingress, Egress]\n  ingress:\n  - {{action: Allow, protocol: TCP, source: {{selector: \"tier == 'frontend'\"}}, destination: {{ports: [{port}]}}}}\n  - {{action: Allow, protocol: TCP, source: {{nets: [10.1.0.0/24]}}, destination: {{ports: ['8000:8099']}}}}\n  egress:\n  - {{action: Allow, protocol: UDP, destination: {{selector: \"app == 'app-0'\", ports: [53]}}}}\n",
        k % 100
    )
}

/// The whole shape as one manifest text: tiers, namespaces, pods (the
/// even ones at `v2`), policies.
pub(crate) fn all() -> String {
    let mut text = tiers();
    for n in 0..NAMESPACES {
        text += &namespace(n);
    }
    for i in 0..PODS {
        text += &pod(i, i.is_multiple_of(2));
    }
    for k in 0..POLICIES {
        let _ = write!(text, "{}", policy(k, 0));
    }
    text
}
