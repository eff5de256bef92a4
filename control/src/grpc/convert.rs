//! Between the node's types and the wire's.

use std::net::IpAddr;

use tonic::Status;

use causeway_policy::{
    eval::{self, Packet},
    load::LoadError,
    model::Protocol,
    normalize::PolicySet,
};

use crate::{
    node::{Event, Node},
    proto,
    store::{Action, Entry},
};

/// `Kind/name` or `Kind/namespace/name` (a kind may hold one `/`:
/// `networking.k8s.io/NetworkPolicy`) → a reference.
pub fn split_id(id: &str) -> proto::ResourceRef {
    const K8S: &str = "networking.k8s.io/";
    let (prefix, rest) = match id.strip_prefix(K8S) {
        Some(rest) => (K8S, rest),
        None => ("", id),
    };
    let parts: Vec<&str> = rest.splitn(3, '/').collect();
    let (kind, namespace, name) = match parts.as_slice() {
        [k, ns, n] => (*k, *ns, *n),
        [k, n] => (*k, "", *n),
        _ => (rest, "", ""),
    };
    proto::ResourceRef {
        kind: format!("{prefix}{kind}"),
        namespace: namespace.into(),
        name: name.into(),
    }
}

pub(super) fn changes(changes: &[(String, Action)]) -> Vec<proto::Change> {
    changes
        .iter()
        .map(|(id, a)| proto::Change {
            resource: Some(split_id(id)),
            action: match a {
                Action::Created => proto::change::Action::Created,
                Action::Configured => proto::change::Action::Configured,
                Action::Unchanged => proto::change::Action::Unchanged,
                Action::Deleted => proto::change::Action::Deleted,
            } as i32,
        })
        .collect()
}

fn from_manifest(m: &serde_json::Value, generation: u64, owner: &str) -> proto::Resource {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    proto::Resource {
        api_version: s(&m["apiVersion"]),
        kind: s(&m["kind"]),
        namespace: s(&m["metadata"]["namespace"]),
        name: s(&m["metadata"]["name"]),
        manifest_json: m.to_string(),
        generation,
        owner: owner.to_owned(),
    }
}

pub(super) fn resource(e: &Entry) -> proto::Resource {
    from_manifest(&e.loaded.manifest, e.generation, &e.owner)
}

pub(super) fn event_resource(e: &Event) -> proto::Resource {
    from_manifest(&e.manifest, e.generation, &e.owner)
}

/// Whether `r` is of `kind` (`NetworkPolicy` is Calico's; Kubernetes' is
/// `networking.k8s.io/NetworkPolicy`; case does not matter).
pub(super) fn kind_matches(r: &proto::Resource, kind: &str) -> bool {
    let qualified = if r.api_version == "networking.k8s.io/v1" {
        format!("networking.k8s.io/{}", r.kind)
    } else {
        r.kind.clone()
    };
    qualified.eq_ignore_ascii_case(kind)
}

/// `file:line:column: message`.
pub(super) fn located(e: &LoadError) -> String {
    let mut s = e.file.display().to_string();
    if let Some(line) = e.line {
        s.push_str(&format!(":{line}"));
        if let Some(c) = e.column {
            s.push_str(&format!(":{c}"));
        }
    }
    if s.is_empty() {
        e.message.clone()
    } else {
        format!("{s}: {}", e.message)
    }
}

pub(super) fn status(node: &Node) -> proto::Status {
    let desired = node.desired();
    let stats = node.dataplane_stats();
    let (pending_restart, errors) = node.pending_and_errors();
    proto::Status {
        generation: desired.generation,
        enforced_generation: node.enforced_generation(),
        workers: node
            .workers()
            .into_iter()
            .map(|(role, index, core, generation)| proto::Worker {
                role: role.into(),
                index,
                core,
                generation,
            })
            .collect(),
        ports: stats
            .ports
            .iter()
            .map(|(p, c)| proto::Port {
                name: p.name.clone(),
                interface: p.interface.clone(),
                ifindex: p.ifindex,
                mac: p.mac.clone(),
                addresses: p.addresses.clone(),
                native_xdp: p.native_xdp,
                rx_packets: c.rx_packets,
                tx_packets: c.tx_packets,
                dropped: c.dropped(),
            })
            .collect(),
        pending_restart,
        errors,
        started: Some(prost_types::Timestamp::from(node.started)),
        last_enforced_after: prost_types::Duration::try_from(node.metrics.enforced.last()).ok(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

#[allow(clippy::result_large_err)]
pub(super) fn explain(
    set: &PolicySet,
    generation: u64,
    r: &proto::ExplainRequest,
) -> Result<proto::ExplainResponse, Status> {
    let ip = |field: &str, s: &str| {
        s.parse::<IpAddr>()
            .map_err(|_| Status::invalid_argument(format!("{field}: `{s}` is not an IP address")))
    };
    let src = ip("src", &r.src)?;
    let dst = ip("dst", &r.dst)?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(Status::invalid_argument(format!(
            "src {src} and dst {dst} are of different IP versions"
        )));
    }
    let protocol = Protocol::parse(if r.protocol.is_empty() {
        "tcp"
    } else {
        &r.protocol
    })
    .map_err(|e| Status::invalid_argument(format!("protocol: {e}")))?;
    let port = |field: &str, p: u32| {
        u16::try_from(p)
            .map_err(|_| Status::invalid_argument(format!("{field}: {p} is not a port")))
    };
    let icmp = matches!(protocol, Protocol::ICMP | Protocol::ICMPV6);
    let echo = if protocol == Protocol::ICMP { 8 } else { 128 };
    let sport = port("sport", r.sport)?;
    let dport = port("dport", r.dport)?;
    let pkt = Packet {
        src,
        dst,
        protocol,
        src_port: (!icmp).then_some(if sport == 0 { 40000 } else { sport }),
        dst_port: (!icmp && protocol.has_ports()).then_some(dport),
        icmp_type: icmp.then_some(echo),
        icmp_code: icmp.then_some(0),
    };
    let e = eval::evaluate(set, &pkt);
    let decider = if e.egress.verdict == eval::Verdict::Deny {
        &e.egress
    } else {
        &e.ingress
    };
    let direction = |d: causeway_policy::model::PolicyType| format!("{d:?}").to_ascii_lowercase();
    let reason = serde_json::to_value(&decider.reason)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let rule = match (&e.tier, &e.policy, e.rule) {
        (Some(t), Some(p), Some(i)) => format!("{t}/{p}/{}/{i}", direction(decider.direction)),
        _ => String::new(),
    };
    let policy = match (&e.tier, &e.policy) {
        (Some(t), Some(p)) => format!("{t}/{p}"),
        _ => String::new(),
    };
    let mut trace = Vec::new();
    for side in [&e.egress, &e.ingress] {
        for s in &side.trace {
            trace.push(proto::TraceStep {
                direction: direction(side.direction),
                tier: s.tier.clone(),
                policy: s.policy.clone(),
                outcome: s.outcome.clone(),
            });
        }
    }
    Ok(proto::ExplainResponse {
        verdict: match e.verdict {
            eval::Verdict::Allow => "allow",
            eval::Verdict::Deny => "deny",
        }
        .into(),
        policy,
        rule,
        reason,
        src_endpoint: e.egress.endpoint.clone().unwrap_or_default(),
        dst_endpoint: e.ingress.endpoint.clone().unwrap_or_default(),
        trace,
        generation,
        json: serde_json::to_string_pretty(&e).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_into_references() {
        let r = split_id("networking.k8s.io/NetworkPolicy/x/deny");
        assert_eq!(
            (r.kind.as_str(), r.namespace.as_str(), r.name.as_str()),
            ("networking.k8s.io/NetworkPolicy", "x", "deny")
        );
        let r = split_id("GlobalNetworkPolicy/allow-web");
        assert_eq!(
            (r.kind.as_str(), r.namespace.as_str(), r.name.as_str()),
            ("GlobalNetworkPolicy", "", "allow-web")
        );
        let r = split_id("Pod/lab/b");
        assert_eq!((r.namespace.as_str(), r.name.as_str()), ("lab", "b"));
    }
}
