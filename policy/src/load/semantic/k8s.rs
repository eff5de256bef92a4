//! Kubernetes' constraints on a NetworkPolicy, as the API server's
//! validation (`pkg/apis/networking/validation`) enforces them.

use std::collections::BTreeSet;

use super::{FieldPath, Issues, parse_net, port_protocol};
use crate::{
    model::{IpBlock, K8sPeer, K8sPolicySpec, K8sPort, LabelSelector, Port},
    selector::from_match_labels,
};

pub(super) fn policy(spec: &K8sPolicySpec, at: &FieldPath, out: &mut Issues) {
    label_selector(&spec.pod_selector, &at.key("podSelector"), out);
    if let Some(types) = &spec.policy_types {
        let mut seen = BTreeSet::new();
        for (i, t) in types.iter().enumerate() {
            if !seen.insert(*t) {
                out.add(
                    at.key("policyTypes").index(i),
                    format!("{t:?} is listed twice: remove one"),
                );
            }
        }
    }
    for (i, rule) in spec.ingress.iter().enumerate() {
        let here = at.key("ingress").index(i);
        peers(&rule.from, &here.key("from"), out);
        ports(&rule.ports, &here.key("ports"), out);
    }
    for (i, rule) in spec.egress.iter().enumerate() {
        let here = at.key("egress").index(i);
        peers(&rule.to, &here.key("to"), out);
        ports(&rule.ports, &here.key("ports"), out);
    }
}

fn peers(list: &[K8sPeer], at: &FieldPath, out: &mut Issues) {
    for (i, peer) in list.iter().enumerate() {
        let here = at.index(i);
        let selects = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
        for (field, selector) in [
            ("podSelector", &peer.pod_selector),
            ("namespaceSelector", &peer.namespace_selector),
        ] {
            if let Some(selector) = selector {
                label_selector(selector, &here.key(field), out);
            }
        }
        match &peer.ip_block {
            Some(_) if selects => out.add(
                here.key("ipBlock"),
                "ipBlock cannot be combined with podSelector or namespaceSelector in one peer: make it a \
                 peer of its own (a separate `- ipBlock:` item)",
            ),
            Some(block) => ip_block(block, &here.key("ipBlock"), out),
            None if !selects => out.add(
                here,
                "a peer needs podSelector, namespaceSelector or ipBlock: add one, or remove the empty peer \
                 (leaving out the whole list allows every peer)",
            ),
            None => {}
        }
    }
}

fn ip_block(block: &IpBlock, at: &FieldPath, out: &mut Issues) {
    let cidr = match parse_net(&block.cidr) {
        Ok(c) => Some(c),
        Err(e) => {
            out.add(at.key("cidr"), e);
            None
        }
    };
    for (i, except) in block.except.iter().enumerate() {
        let here = at.key("except").index(i);
        let inner = match parse_net(except) {
            Ok(p) => p,
            Err(e) => {
                out.add(here, e);
                continue;
            }
        };
        let Some(cidr) = cidr else {
            continue;
        };
        if inner.len() <= cidr.len() || !cidr.contains(inner.addr()) {
            out.add(
                here,
                format!(
                    "{except} is not inside cidr {cidr}: except entries must be strictly smaller ranges inside \
                     cidr; fix the entry or remove it"
                ),
            );
        }
    }
}

fn ports(list: &[K8sPort], at: &FieldPath, out: &mut Issues) {
    for (i, port) in list.iter().enumerate() {
        let here = at.index(i);
        if let Some(p) = &port.protocol {
            port_protocol(p, &here.key("protocol"), out);
        }
        match &port.port {
            Some(Port::Range(0, 0)) => out.add(here.key("port"), "port 0 is not a port: use 1 to 65535"),
            Some(Port::Range(lo, hi)) if lo != hi => out.add(
                here.key("port"),
                format!("a Kubernetes NetworkPolicy writes a port range as `port: {lo}` and `endPort: {hi}`"),
            ),
            _ => {}
        }
        let Some(end) = port.end_port else {
            continue;
        };
        match &port.port {
            None => out.add(
                here.key("endPort"),
                "endPort needs a numeric port: add `port` (the range's start)",
            ),
            Some(Port::Named(name)) => out.add(
                here.key("endPort"),
                format!("endPort needs a numeric port, not the named port `{name}`: use a number or remove endPort"),
            ),
            Some(Port::Range(start, _)) if end < *start => out.add(
                here.key("endPort"),
                format!("endPort {end} is below port {start}: endPort must be greater than or equal to port"),
            ),
            Some(Port::Range(..)) => {}
        }
    }
}

/// A label selector Calico can translate (operators, values, keys).
fn label_selector(selector: &LabelSelector, at: &FieldPath, out: &mut Issues) {
    if let Err(e) = from_match_labels(&selector.match_labels, &selector.match_expressions) {
        out.add(at.clone(), e.to_string());
    }
}
