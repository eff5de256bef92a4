//! Calico's own constraints on policies, rules and tiers, as its API
//! validator (libcalico-go `validator/v3`) enforces them, so that what
//! `causeway policy check` accepts `calicoctl apply` accepts too.

use std::collections::BTreeSet;

use super::{DEFAULT_TIER, FieldPath, Issues, dns_label, nets, protocol_name};
use crate::{
    model::{Action, EntityRule, IcmpFields, PolicySpec, PolicyType, Protocol, Rule, TierSpec},
    selector::Selector,
};

/// The default tier's fixed order.
const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// A (Global)NetworkPolicy name: a DNS label, optionally after one dot (a
/// tier prefix, `security.allow-dns`). Calico also accepts the names it
/// gives converted Kubernetes policies (`knp.default.<name>`); those are
/// not written by hand and are refused here.
pub(super) fn policy_name(name: &str, out: &mut Issues) {
    let parts: Vec<&str> = name.split('.').collect();
    let ok = name.len() <= 253 && parts.len() <= 2 && parts.iter().all(|p| dns_label(p).is_ok());
    if !ok {
        out.add(
            FieldPath::root().key("metadata").key("name"),
            format!(
                "`{name}` is not a valid policy name: use lowercase letters, digits and '-', starting and \
                 ending with a letter or digit, optionally after the tier's name and a '.' (e.g. security.allow-dns)"
            ),
        );
    }
}

pub(super) fn tier(name: &str, spec: &TierSpec, at: &FieldPath, out: &mut Issues) {
    if let Err(e) = dns_label(name) {
        out.add(
            FieldPath::root().key("metadata").key("name"),
            format!("`{name}` is not a valid tier name: {e}; no '.', since policy names use it after the tier"),
        );
    }
    if let Some(order) = spec.order {
        if !order.is_finite() {
            out.add(
                at.key("order"),
                "order must be a number: remove it to order the tier last",
            );
        } else if name == DEFAULT_TIER && order != DEFAULT_TIER_ORDER {
            out.add(
                at.key("order"),
                format!(
                    "the default tier's order is fixed at 1000000, not {order}: remove spec.order"
                ),
            );
        }
    }
    if let Some(action) = spec.default_action
        && !matches!(action, Action::Deny | Action::Pass)
    {
        out.add(
            at.key("defaultAction"),
            format!("a tier's defaultAction must be Deny or Pass, not {action:?}"),
        );
    }
}

pub(super) fn policy(spec: &PolicySpec, global: bool, at: &FieldPath, out: &mut Issues) {
    if let Some(tier) = &spec.tier
        && let Err(e) = dns_label(tier)
    {
        out.add(
            at.key("tier"),
            format!("`{tier}` is not a valid tier name: {e}"),
        );
    }
    if spec.order.is_some_and(|o| !o.is_finite()) {
        out.add(
            at.key("order"),
            "order must be a number: remove it to order the policy last",
        );
    }
    let selectors = [
        ("selector", &spec.selector),
        ("serviceAccountSelector", &spec.service_account_selector),
        ("namespaceSelector", &spec.namespace_selector),
    ];
    for (field, selector) in selectors {
        no_global(selector.as_ref(), &at.key(field), out);
    }
    if global {
        global_only_rules(spec, at, out);
    } else {
        let only_global = [
            ("namespaceSelector", spec.namespace_selector.is_some()),
            ("doNotTrack", spec.do_not_track),
            ("preDNAT", spec.pre_dnat),
            ("applyOnForward", spec.apply_on_forward),
        ];
        for (field, set) in only_global {
            if set {
                out.add(
                    at.key(field),
                    format!(
                        "{field} is only valid in a GlobalNetworkPolicy: remove it, or make this a \
                         GlobalNetworkPolicy"
                    ),
                );
            }
        }
    }
    if let Some(types) = &spec.types {
        let mut seen = BTreeSet::new();
        for (i, t) in types.iter().enumerate() {
            if !seen.insert(*t) {
                out.add(
                    at.key("types").index(i),
                    format!("{t:?} is listed twice: remove one"),
                );
            }
        }
    }
    for (direction, rules) in [("ingress", &spec.ingress), ("egress", &spec.egress)] {
        for (i, r) in rules.iter().enumerate() {
            rule(r, &at.key(direction).index(i), out);
        }
    }
}

/// doNotTrack and preDNAT (Calico's `validateGlobalNetworkPolicySpec`).
fn global_only_rules(spec: &PolicySpec, at: &FieldPath, out: &mut Issues) {
    if spec.do_not_track && spec.pre_dnat {
        out.add(
            at.key("preDNAT"),
            "doNotTrack and preDNAT cannot both be true: keep one (a policy applies either before \
             connection tracking or before DNAT)",
        );
    }
    if spec.pre_dnat && !spec.egress.is_empty() {
        out.add(
            at.key("egress"),
            "a preDNAT policy cannot have egress rules: move them to a policy without preDNAT",
        );
    }
    if spec.pre_dnat
        && spec
            .types
            .as_ref()
            .is_some_and(|t| t.contains(&PolicyType::Egress))
    {
        out.add(
            at.key("types"),
            "a preDNAT policy cannot have type Egress: remove Egress from spec.types",
        );
    }
    if (spec.do_not_track || spec.pre_dnat) && !spec.apply_on_forward {
        let which = if spec.do_not_track {
            "doNotTrack"
        } else {
            "preDNAT"
        };
        out.add(
            at.key("applyOnForward"),
            format!(
                "a {which} policy must also apply to forwarded traffic: add `applyOnForward: true`"
            ),
        );
    }
}

/// One rule (Calico's `validateRule` and `validateICMPFields`).
fn rule(rule: &Rule, at: &FieldPath, out: &mut Issues) {
    for (side, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
        ports_need_protocol(rule.protocol, entity, &at.key(side), out);
        entity_selectors(entity, &at.key(side), out);
    }
    for (field, icmp) in [("icmp", rule.icmp), ("notICMP", rule.not_icmp)] {
        if let Some(icmp) = icmp {
            icmp_fields(rule.protocol, field, &icmp, &at.key(field), out);
        }
    }
    if let Some(v) = rule.ip_version
        && v != 4
        && v != 6
    {
        out.add(
            at.key("ipVersion"),
            format!("ipVersion must be 4 or 6, not {v}"),
        );
    }
    for (field, p) in [
        ("protocol", rule.protocol),
        ("notProtocol", rule.not_protocol),
    ] {
        match (p, rule.ip_version) {
            (Some(Protocol::ICMP), Some(v)) if v != 4 => out.add(
                at.key("ipVersion"),
                format!("{field} ICMP is IPv4's: set ipVersion to 4, or use ICMPv6 for IPv6"),
            ),
            (Some(Protocol::ICMPV6), Some(v)) if v != 6 => out.add(
                at.key("ipVersion"),
                format!("{field} ICMPv6 is IPv6's: set ipVersion to 6, or use ICMP for IPv4"),
            ),
            _ => {}
        }
    }
    rule_nets(rule, at, out);
}

fn ports_need_protocol(
    protocol: Option<Protocol>,
    entity: &EntityRule,
    at: &FieldPath,
    out: &mut Issues,
) {
    if protocol.is_some_and(Protocol::has_ports) {
        return;
    }
    for (field, ports) in [("ports", &entity.ports), ("notPorts", &entity.not_ports)] {
        if ports.is_empty() {
            continue;
        }
        let what = match protocol {
            None => "add `protocol: TCP` (or UDP, SCTP, UDPLite) to the rule".to_owned(),
            Some(p) => format!("protocol {p} has no ports: change the protocol or remove {field}"),
        };
        out.add(
            at.key(field),
            format!(
                "rules that specify ports must set protocol to TCP, UDP, SCTP or UDPLite: {what}"
            ),
        );
    }
}

fn icmp_fields(
    protocol: Option<Protocol>,
    field: &str,
    icmp: &IcmpFields,
    at: &FieldPath,
    out: &mut Issues,
) {
    if !matches!(protocol, Some(Protocol::ICMP | Protocol::ICMPV6)) {
        out.add(
            at.clone(),
            format!(
                "rules that specify {field} must set protocol to ICMP or ICMPv6, and this one has {}: set \
                 the protocol or remove {field}",
                protocol_name(protocol)
            ),
        );
    }
    if icmp.code.is_some() && icmp.ty.is_none() {
        out.add(
            at.key("code"),
            format!("an ICMP code needs an ICMP type: add {field}.type"),
        );
    }
    if icmp.ty == Some(255) {
        out.add(
            at.key("type"),
            "ICMP type 255 is reserved: use a type from 0 to 254",
        );
    }
}

/// CIDRs valid, of one IP version, and of the rule's ipVersion.
fn rule_nets(rule: &Rule, at: &FieldPath, out: &mut Issues) {
    let (mut seen_v4, mut seen_v6) = (false, false);
    let mut mixed = false;
    for (side, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
        for (field, list) in [("nets", &entity.nets), ("notNets", &entity.not_nets)] {
            let here = at.key(side).key(field);
            for (i, net) in nets(list, &here, out) {
                let v4 = net.addr().is_ipv4();
                if let Some(v) = rule.ip_version
                    && (v == 4 || v == 6)
                    && (v == 4) != v4
                {
                    out.add(
                        here.index(i),
                        format!(
                            "{net} is IPv{} but the rule has ipVersion {v}: remove it, or change ipVersion",
                            if v4 { 4 } else { 6 }
                        ),
                    );
                }
                if (v4 && seen_v6 || !v4 && seen_v4) && !mixed {
                    mixed = true;
                    out.add(
                        here.index(i),
                        "the rule mixes IPv4 and IPv6 CIDRs: split it into one rule per IP version",
                    );
                }
                seen_v4 |= v4;
                seen_v6 |= !v4;
            }
        }
    }
}

/// `global()` outside a rule's namespaceSelector (Calico refuses it).
fn no_global(selector: Option<&Selector>, at: &FieldPath, out: &mut Issues) {
    if selector.is_some_and(|s| s.text().contains("global(")) {
        out.add(
            at.clone(),
            "global() can only be used in a rule's namespaceSelector: use all() or a label expression here",
        );
    }
}

fn entity_selectors(entity: &EntityRule, at: &FieldPath, out: &mut Issues) {
    no_global(entity.selector.as_ref(), &at.key("selector"), out);
    no_global(entity.not_selector.as_ref(), &at.key("notSelector"), out);
    if let Some(s) = &entity.namespace_selector
        && s.text().contains("global(")
        && !s.is_global()
    {
        out.add(
            at.key("namespaceSelector"),
            "global() cannot be combined with other selectors: write `namespaceSelector: global()` \
             alone, and select by labels in another rule",
        );
    }
}
