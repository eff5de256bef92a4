//! The checks a resource must pass on its own, beyond what its types
//! already refuse: names, namespaces, addresses, and (in [`calico`] and
//! [`k8s`]) the policy rules of Calico and Kubernetes.

mod calico;
mod k8s;

use std::{collections::BTreeSet, net::IpAddr};

use causeway_dataplane::route::IpPrefix;

use super::path::FieldPath;
use crate::model::{Metadata, Port, Protocol, Resource, StaticEndpointSpec};

/// The tier policies without one are in.
pub(super) const DEFAULT_TIER: &str = "default";
/// The namespace of namespaced resources that do not name one.
pub(super) const DEFAULT_NAMESPACE: &str = "default";

/// A problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Issue {
    /// The field, from the resource's root.
    pub(super) path: FieldPath,
    /// What is wrong and what to do.
    pub(super) message: String,
}

/// Collects issues.
#[derive(Debug, Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn add(&mut self, path: FieldPath, message: impl Into<String>) {
        self.0.push(Issue {
            path,
            message: message.into(),
        });
    }
}

/// Fills in what Calico and Kubernetes default: the namespace of
/// namespaced kinds.
pub(super) fn fill_defaults(resource: &mut Resource) {
    let namespace = match resource {
        Resource::NetworkPolicy { metadata, .. }
        | Resource::NetworkSet { metadata, .. }
        | Resource::K8sNetworkPolicy { metadata, .. } => &mut metadata.namespace,
        Resource::Pod { metadata, .. } | Resource::ServiceDiscovery { metadata, .. } => {
            &mut metadata.namespace
        }
        _ => return,
    };
    namespace.get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
}

/// Every issue of one resource.
pub(super) fn check(resource: &Resource) -> Vec<Issue> {
    let mut out = Issues::default();
    let spec = FieldPath::root().key("spec");
    match resource {
        Resource::GlobalNetworkPolicy { metadata, spec: s } => {
            check_metadata(metadata, Scope::Global("NetworkPolicy"), &mut out);
            calico::policy_name(&metadata.name, &mut out);
            calico::policy(s, true, &spec, &mut out);
        }
        Resource::NetworkPolicy { metadata, spec: s } => {
            check_metadata(metadata, Scope::Namespaced, &mut out);
            calico::policy_name(&metadata.name, &mut out);
            calico::policy(s, false, &spec, &mut out);
        }
        Resource::GlobalNetworkSet { metadata, spec: s } => {
            check_metadata(metadata, Scope::Global("NetworkSet"), &mut out);
            subdomain_name(&metadata.name, &mut out);
            nets(&s.nets, &spec.key("nets"), &mut out);
        }
        Resource::NetworkSet { metadata, spec: s } => {
            check_metadata(metadata, Scope::Namespaced, &mut out);
            subdomain_name(&metadata.name, &mut out);
            nets(&s.nets, &spec.key("nets"), &mut out);
        }
        Resource::Tier { metadata, spec: s } => {
            check_metadata(metadata, Scope::Global(""), &mut out);
            calico::tier(&metadata.name, s, &spec, &mut out);
        }
        Resource::K8sNetworkPolicy { metadata, spec: s } => {
            check_metadata(metadata, Scope::Namespaced, &mut out);
            subdomain_name(&metadata.name, &mut out);
            k8s::policy(s, &spec, &mut out);
        }
        Resource::Namespace { metadata } => {
            let name = FieldPath::root().key("metadata").key("name");
            if let Err(e) = dns_label(&metadata.name) {
                out.add(
                    name,
                    format!("`{}` is not a valid namespace name: {e}", metadata.name),
                );
            }
        }
        Resource::Pod {
            metadata, status, ..
        } => {
            subdomain_name(&metadata.name, &mut out);
            namespace_name(metadata.namespace.as_deref(), &mut out);
            let at = FieldPath::root().key("status");
            if let Some(ip) = &status.pod_ip {
                address(ip, &at.key("podIP"), &mut out);
            }
            for (i, ip) in status.pod_ips.iter().enumerate() {
                address(&ip.ip, &at.key("podIPs").index(i).key("ip"), &mut out);
            }
        }
        Resource::ServiceDiscovery { metadata, .. } => {
            subdomain_name(&metadata.name, &mut out);
            namespace_name(metadata.namespace.as_deref(), &mut out);
        }
        Resource::StaticEndpoint { metadata, spec: s } => {
            check_metadata(metadata, Scope::Optional, &mut out);
            subdomain_name(&metadata.name, &mut out);
            static_endpoint(s, &spec, &mut out);
        }
        Resource::Appliance { metadata, .. } => {
            check_metadata(metadata, Scope::Global(""), &mut out);
            subdomain_name(&metadata.name, &mut out);
        }
    }
    out.0
}

/// Whether a kind has a namespace.
enum Scope {
    /// Never; the namespaced kind to suggest instead, if any.
    Global(&'static str),
    /// Always (filled in by [`fill_defaults`]).
    Namespaced,
    /// Maybe.
    Optional,
}

fn check_metadata(metadata: &Metadata, scope: Scope, out: &mut Issues) {
    match (scope, &metadata.namespace) {
        (Scope::Global(instead), Some(_)) => {
            let hint = if instead.is_empty() {
                String::new()
            } else {
                format!(" (or make it a {instead}, which is namespaced)")
            };
            out.add(
                FieldPath::root().key("metadata").key("namespace"),
                format!(
                    "this kind is cluster-wide, not namespaced: remove metadata.namespace{hint}"
                ),
            );
        }
        (_, ns) => namespace_name(ns.as_deref(), out),
    }
}

fn namespace_name(namespace: Option<&str>, out: &mut Issues) {
    let Some(ns) = namespace else {
        return;
    };
    if let Err(e) = dns_label(ns) {
        out.add(
            FieldPath::root().key("metadata").key("namespace"),
            format!("`{ns}` is not a valid namespace name: {e}"),
        );
    }
}

fn subdomain_name(name: &str, out: &mut Issues) {
    if let Err(e) = dns_subdomain(name) {
        out.add(
            FieldPath::root().key("metadata").key("name"),
            format!("`{name}` is not a valid name: {e}"),
        );
    }
}

const LABEL_RULE: &str =
    "use lowercase letters, digits and '-', starting and ending with a letter or digit";

/// A DNS-1123 label (RFC 1123 §2.1 as Kubernetes reads it): 1 to 63 of
/// `a-z`, `0-9`, `-`, not starting or ending with `-`.
///
/// # Errors
/// What to change, for a message.
pub(super) fn dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty; give it a name".to_owned());
    }
    if s.len() > 63 {
        return Err(format!("it is {} characters long; use at most 63", s.len()));
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("{LABEL_RULE} (at most 63 characters)"))
    }
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
///
/// # Errors
/// What to change, for a message.
pub(super) fn dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty; give it a name".to_owned());
    }
    if s.len() > 253 {
        return Err(format!(
            "it is {} characters long; use at most 253",
            s.len()
        ));
    }
    if s.split('.').all(|l| !l.is_empty() && dns_label(l).is_ok()) {
        Ok(())
    } else {
        Err(format!("{LABEL_RULE}, and '.' between such parts"))
    }
}

/// Parses a CIDR, or a bare address as a /32 or /128. Host bits beyond the
/// prefix are cleared, as Calico and Kubernetes do.
///
/// # Errors
/// A message naming the text and what is expected.
pub(super) fn parse_net(s: &str) -> Result<IpPrefix, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let bad = || {
        format!(
            "`{s}` is not an IP address or CIDR: write ADDRESS/LENGTH (e.g. 10.0.0.0/8, fd00::/64) or an address"
        )
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
            match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "`{s}`: the prefix length {l} is longer than the {max} bits of an IPv{} address",
                        if addr.is_ipv4() { 4 } else { 6 }
                    ));
                }
            }
        }
        Some(_) => return Err(bad()),
    };
    Ok(IpPrefix::containing(addr, len))
}

/// Checks a list of CIDRs; returns the valid ones with their index.
fn nets(list: &[String], at: &FieldPath, out: &mut Issues) -> Vec<(usize, IpPrefix)> {
    let mut good = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match parse_net(s) {
            Ok(p) => good.push((i, p)),
            Err(e) => out.add(at.index(i), e),
        }
    }
    good
}

fn address(s: &str, at: &FieldPath, out: &mut Issues) {
    if s.parse::<IpAddr>().is_err() {
        out.add(
            at.clone(),
            format!(
                "`{s}` is not an IP address: write an IPv4 or IPv6 address without a prefix length"
            ),
        );
    }
}

/// The protocols a Kubernetes port or a named port may have, as written.
const PORT_PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];

fn port_protocol(p: &str, at: &FieldPath, out: &mut Issues) {
    if !PORT_PROTOCOLS.contains(&p) {
        out.add(
            at.clone(),
            format!("protocol `{p}` is not supported here: use TCP, UDP or SCTP (in capitals)"),
        );
    }
}

fn static_endpoint(spec: &StaticEndpointSpec, at: &FieldPath, out: &mut Issues) {
    if spec.ips.is_empty() {
        out.add(
            at.key("ips"),
            "a StaticEndpoint needs at least one address: list them under spec.ips",
        );
    }
    nets(&spec.ips, &at.key("ips"), out);
    let mut names = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let here = at.key("ports").index(i);
        match Port::parse(&port.name) {
            Ok(Port::Named(_)) => {
                if !names.insert((port.name.as_str(), port.protocol.as_deref().unwrap_or("TCP"))) {
                    out.add(
                        here.key("name"),
                        format!("port name `{}` is used twice for one protocol: rename one", port.name),
                    );
                }
            }
            _ => out.add(
                here.key("name"),
                format!(
                    "`{}` is not a port name: use 1 to 15 of a-z, 0-9 and '-', with at least one letter (RFC 6335)",
                    port.name
                ),
            ),
        }
        if port.port == 0 {
            out.add(here.key("port"), "port 0 is not a port: use 1 to 65535");
        }
        if let Some(p) = &port.protocol {
            port_protocol(p, &here.key("protocol"), out);
        }
    }
}

/// A protocol's name for messages, or "no protocol".
fn protocol_name(p: Option<Protocol>) -> String {
    p.map_or_else(|| "no protocol".to_owned(), |p| format!("protocol {p}"))
}
