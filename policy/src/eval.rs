//! The reference evaluator: slow, obviously correct, and the oracle the
//! compiled classifier is tested against. It also explains: every verdict
//! names the tier, policy and rule that made it and the policies it passed.
//!
//! How a packet forwarded through the appliance is judged (Calico's model,
//! with the appliance in the place of the hosts of both endpoints):
//!
//! 1. The **source endpoint** (the Pod or StaticEndpoint owning the source
//!    address, if any) judges it with its **egress** policy.
//! 2. The **destination endpoint** judges it with its **ingress** policy.
//! 3. It is allowed only if both allow. An address that is no endpoint has
//!    no policy of its own: that side allows (as traffic from outside the
//!    cluster is judged only by the pod's ingress policy in Calico).
//!
//! One side, for direction *d* (Calico's tier walk):
//! - tiers in (order, name) order, missing order last; within a tier, the
//!   policies that apply to the endpoint in *d* (selector, namespace,
//!   `types`), in (order, name) order, missing order last;
//! - a tier with no applicable policy is skipped;
//! - the first matching rule decides: Allow or Deny end the walk, Pass
//!   skips to the next tier, Log records and goes on;
//! - applicable policies but no decision: the tier's defaultAction (Deny,
//!   or Pass to the next tier);
//! - past the last tier (no tier applied, or a Pass out of the last one):
//!   the endpoint's profile, which for Kubernetes namespaces allows.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use serde::Serialize;

use super::{
    model::{Action, IcmpFields, PolicyType, Port, Protocol},
    normalize::{Applies, Endpoint, Entity, NAMESPACE_LABEL, NRule, Policy, PolicySet, Scope},
    selector::Selector,
};

/// The label Calico gives a namespace with its own name.
const NAME_LABEL: &str = "projectcalico.org/name";

/// The packet being judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol.
    pub protocol: Protocol,
    /// Source port (TCP, UDP, SCTP, UDP-Lite).
    pub src_port: Option<u16>,
    /// Destination port.
    pub dst_port: Option<u16>,
    /// ICMP type.
    pub icmp_type: Option<u8>,
    /// ICMP code.
    pub icmp_code: Option<u8>,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Drop it.
    Deny,
}

/// Why one side decided as it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// A rule decided.
    Rule {
        /// Its tier.
        tier: String,
        /// Its policy.
        policy: String,
        /// Its index in the policy's rules of this direction.
        rule: usize,
        /// Allow or Deny.
        action: Action,
    },
    /// Policies of the tier applied, none decided: its default action.
    TierDefault {
        /// The tier.
        tier: String,
        /// The last applicable policy of the tier.
        policy: String,
    },
    /// No tier decided (none applied, or passed beyond the last): the
    /// profile allows.
    Profile,
    /// The address is not an endpoint: no policy of its own.
    NotAnEndpoint,
}

/// One side's judgement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// Ingress or Egress.
    pub direction: PolicyType,
    /// The endpoint judged, if the address is one.
    pub endpoint: Option<String>,
    /// Its verdict.
    pub verdict: Verdict,
    /// Why.
    pub reason: Reason,
    /// Policies applicable to the endpoint that were evaluated, in order,
    /// with what each did ("no match", "pass", "log", "allow", "deny").
    pub trace: Vec<TraceStep>,
}

/// A step of a side's walk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceStep {
    /// The tier.
    pub tier: String,
    /// The policy.
    pub policy: String,
    /// What happened in it.
    pub outcome: String,
}

/// The whole judgement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The packet's fate.
    pub verdict: Verdict,
    /// The policy that decided, when a rule or a tier default did.
    pub policy: Option<String>,
    /// The tier that decided.
    pub tier: Option<String>,
    /// The rule index that decided.
    pub rule: Option<usize>,
    /// The source endpoint's egress judgement.
    pub egress: Side,
    /// The destination endpoint's ingress judgement.
    pub ingress: Side,
}

/// Judges `pkt` against `set`.
pub fn evaluate(set: &PolicySet, pkt: &Packet) -> Explanation {
    if let Some(e) = untracked(set, pkt) {
        return e;
    }
    let egress = side(set, pkt, PolicyType::Egress);
    let ingress = side(set, pkt, PolicyType::Ingress);
    // Egress is judged first: if it denies, that is the reason.
    let decider = if egress.verdict == Verdict::Deny {
        &egress
    } else {
        &ingress
    };
    let verdict = if egress.verdict == Verdict::Allow && ingress.verdict == Verdict::Allow {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    let (tier, policy, rule) = match &decider.reason {
        Reason::Rule {
            tier, policy, rule, ..
        } => (Some(tier.clone()), Some(policy.clone()), Some(*rule)),
        Reason::TierDefault { tier, policy } => (Some(tier.clone()), Some(policy.clone()), None),
        Reason::Profile | Reason::NotAnEndpoint => (None, None, None),
    };
    Explanation {
        verdict,
        policy,
        tier,
        rule,
        egress,
        ingress,
    }
}

/// The appliance's own doNotTrack policies (selector all() or none): they
/// judge every packet first; the first matching Allow or Deny decides for
/// good, Pass skips to the next tier, no match goes on to endpoint policy.
fn untracked(set: &PolicySet, pkt: &Packet) -> Option<Explanation> {
    for direction in [PolicyType::Ingress, PolicyType::Egress] {
        let mut trace = Vec::new();
        'tiers: for tier in &set.tiers {
            for policy in set.policies.iter().filter(|p| {
                p.tier == tier.name
                    && p.do_not_track
                    && p.types.contains(&direction)
                    && p.applies.selector.is_all()
            }) {
                let rules = if direction == PolicyType::Ingress {
                    &policy.ingress
                } else {
                    &policy.egress
                };
                for (i, rule) in rules.iter().enumerate() {
                    if !rule_matches(set, policy, rule, pkt) {
                        continue;
                    }
                    match rule.action {
                        Action::Log => {}
                        Action::Pass => continue 'tiers,
                        Action::Allow | Action::Deny => {
                            let verdict = if rule.action == Action::Allow {
                                Verdict::Allow
                            } else {
                                Verdict::Deny
                            };
                            trace.push(TraceStep {
                                tier: tier.name.clone(),
                                policy: policy.id.clone(),
                                outcome: format!(
                                    "untracked {} (rule {i})",
                                    if verdict == Verdict::Allow {
                                        "allow"
                                    } else {
                                        "deny"
                                    }
                                ),
                            });
                            let side = Side {
                                direction,
                                endpoint: Some("the appliance (doNotTrack)".into()),
                                verdict,
                                reason: Reason::Rule {
                                    tier: tier.name.clone(),
                                    policy: policy.id.clone(),
                                    rule: i,
                                    action: rule.action,
                                },
                                trace,
                            };
                            let other = Side {
                                direction: if direction == PolicyType::Ingress {
                                    PolicyType::Egress
                                } else {
                                    PolicyType::Ingress
                                },
                                endpoint: None,
                                verdict,
                                reason: Reason::NotAnEndpoint,
                                trace: Vec::new(),
                            };
                            let (egress, ingress) = if direction == PolicyType::Egress {
                                (side, other)
                            } else {
                                (other, side)
                            };
                            return Some(Explanation {
                                verdict,
                                policy: Some(policy.id.clone()),
                                tier: Some(tier.name.clone()),
                                rule: Some(i),
                                egress,
                                ingress,
                            });
                        }
                    }
                }
            }
        }
    }
    None
}

fn endpoint_at(set: &PolicySet, ip: IpAddr) -> Option<&Endpoint> {
    set.endpoints
        .iter()
        .map(AsRef::as_ref)
        .find(|e| e.ips.contains(&ip))
}

fn side(set: &PolicySet, pkt: &Packet, direction: PolicyType) -> Side {
    let local_ip = match direction {
        PolicyType::Egress => pkt.src,
        PolicyType::Ingress => pkt.dst,
    };
    let Some(ep) = endpoint_at(set, local_ip) else {
        return Side {
            direction,
            endpoint: None,
            verdict: Verdict::Allow,
            reason: Reason::NotAnEndpoint,
            trace: Vec::new(),
        };
    };
    let mut trace = Vec::new();
    'tiers: for tier in &set.tiers {
        let mut last = None;
        for policy in set
            .policies
            .iter()
            .filter(|p| p.tier == tier.name && !p.do_not_track)
        {
            if !policy.types.contains(&direction) || !applies(set, policy, ep) {
                continue;
            }
            last = Some(policy);
            let rules = match direction {
                PolicyType::Ingress => &policy.ingress,
                PolicyType::Egress => &policy.egress,
            };
            let mut outcome = "no match".to_owned();
            for (i, rule) in rules.iter().enumerate() {
                if !rule_matches(set, policy, rule, pkt) {
                    continue;
                }
                match rule.action {
                    Action::Log => outcome = format!("log (rule {i})"),
                    Action::Pass => {
                        trace.push(TraceStep {
                            tier: tier.name.clone(),
                            policy: policy.id.clone(),
                            outcome: format!("pass (rule {i})"),
                        });
                        continue 'tiers;
                    }
                    Action::Allow | Action::Deny => {
                        let verdict = if rule.action == Action::Allow {
                            Verdict::Allow
                        } else {
                            Verdict::Deny
                        };
                        trace.push(TraceStep {
                            tier: tier.name.clone(),
                            policy: policy.id.clone(),
                            outcome: format!(
                                "{} (rule {i})",
                                if verdict == Verdict::Allow {
                                    "allow"
                                } else {
                                    "deny"
                                }
                            ),
                        });
                        return Side {
                            direction,
                            endpoint: Some(ep.id.clone()),
                            verdict,
                            reason: Reason::Rule {
                                tier: tier.name.clone(),
                                policy: policy.id.clone(),
                                rule: i,
                                action: rule.action,
                            },
                            trace,
                        };
                    }
                }
            }
            trace.push(TraceStep {
                tier: tier.name.clone(),
                policy: policy.id.clone(),
                outcome,
            });
        }
        if let Some(last) = last {
            if tier.default_action == Action::Pass {
                continue;
            }
            return Side {
                direction,
                endpoint: Some(ep.id.clone()),
                verdict: Verdict::Deny,
                reason: Reason::TierDefault {
                    tier: tier.name.clone(),
                    policy: last.id.clone(),
                },
                trace,
            };
        }
    }
    Side {
        direction,
        endpoint: Some(ep.id.clone()),
        verdict: Verdict::Allow,
        reason: Reason::Profile,
        trace,
    }
}

/// Whether `policy` applies to endpoint `ep` (direction aside).
pub fn applies(set: &PolicySet, policy: &Policy, ep: &Endpoint) -> bool {
    applies_to(set, &policy.applies, ep)
}

/// Whether endpoint `ep` is one a policy with `a` applies to (
/// [`applies`], for the compiler, which tells policies with the same
/// `applies` apart only once).
pub fn applies_to(set: &PolicySet, a: &Applies, ep: &Endpoint) -> bool {
    if a.pods_only && !ep.pod {
        return false;
    }
    if a.namespace.as_ref().is_some_and(|ns| *ns != ep.namespace) {
        return false;
    }
    if let Some(ns_sel) = &a.namespace_selector
        && !ns_sel.is_all()
        && !ns_sel.matches(&namespace_labels(set, &ep.namespace))
    {
        return false;
    }
    if let Some(sa_sel) = &a.service_account_selector
        && !sa_sel.is_all()
    {
        let Some(sa) = &ep.service_account else {
            return false;
        };
        let labels: BTreeMap<String, String> = [(NAME_LABEL.to_owned(), sa.clone())].into();
        if !sa_sel.matches(&labels) {
            return false;
        }
    }
    a.selector.matches(&ep.labels)
}

/// A namespace's labels, plus Calico's `projectcalico.org/name`.
pub(crate) fn namespace_labels(set: &PolicySet, ns: &str) -> BTreeMap<String, String> {
    let mut labels = set.namespace_labels(ns);
    labels.insert(NAME_LABEL.into(), ns.into());
    labels
}

fn rule_matches(set: &PolicySet, policy: &Policy, rule: &NRule, pkt: &Packet) -> bool {
    let _ = policy;
    if let Some(v) = rule.ip_version
        && (v == 4) != pkt.src.is_ipv4()
    {
        return false;
    }
    if rule.protocol.is_some_and(|p| p != pkt.protocol) {
        return false;
    }
    if rule.not_protocol.is_some_and(|p| p == pkt.protocol) {
        return false;
    }
    let is_icmp = matches!(pkt.protocol, Protocol::ICMP | Protocol::ICMPV6);
    if let Some(icmp) = rule.icmp
        && !(is_icmp && icmp_matches(icmp, pkt))
    {
        return false;
    }
    if let Some(icmp) = rule.not_icmp
        && is_icmp
        && icmp_matches(icmp, pkt)
    {
        return false;
    }
    entity_matches(set, &rule.source, pkt.src, pkt.src_port, pkt.protocol)
        && entity_matches(set, &rule.destination, pkt.dst, pkt.dst_port, pkt.protocol)
}

fn icmp_matches(f: IcmpFields, pkt: &Packet) -> bool {
    f.ty.is_none_or(|t| Some(t) == pkt.icmp_type) && f.code.is_none_or(|c| Some(c) == pkt.icmp_code)
}

fn entity_matches(
    set: &PolicySet,
    e: &Entity,
    ip: IpAddr,
    port: Option<u16>,
    proto: Protocol,
) -> bool {
    if !e.nets.is_empty() && !e.nets.iter().any(|n| n.contains(ip)) {
        return false;
    }
    if e.not_nets.iter().any(|n| n.contains(ip)) {
        return false;
    }
    let scope = e.scope.as_ref();
    if let Some(sel) = &e.selector
        && !selected(set, sel, scope, ip)
    {
        return false;
    }
    if let Some(sel) = &e.not_selector
        && selected(set, sel, scope, ip)
    {
        return false;
    }
    if !e.ports.is_empty()
        && !e
            .ports
            .iter()
            .any(|p| port_matches(set, p, ip, port, proto))
    {
        return false;
    }
    if e.not_ports
        .iter()
        .any(|p| port_matches(set, p, ip, port, proto))
    {
        return false;
    }
    if !e.service_account_names.is_empty() || e.service_account_selector.is_some() {
        let Some(sa) = endpoint_at(set, ip)
            .filter(|ep| ep.pod)
            .and_then(|ep| ep.service_account.as_ref())
        else {
            return false;
        };
        if !e.service_account_names.is_empty() && !e.service_account_names.contains(sa) {
            return false;
        }
        if let Some(sel) = &e.service_account_selector {
            let labels: BTreeMap<String, String> = [(NAME_LABEL.to_owned(), sa.clone())].into();
            if !sel.matches(&labels) {
                return false;
            }
        }
    }
    true
}

fn port_matches(set: &PolicySet, p: &Port, ip: IpAddr, port: Option<u16>, proto: Protocol) -> bool {
    let Some(port) = port else { return false };
    match p {
        Port::Range(lo, hi) => (*lo..=*hi).contains(&port),
        Port::Named(name) => endpoint_at(set, ip).is_some_and(|ep| {
            ep.ports
                .iter()
                .any(|np| np.name == *name && np.protocol == proto && np.port == port)
        }),
    }
}

/// Whether an endpoint or network set owning `ip` is selected by `sel`
/// within `scope` (see [`Scope`]).
fn selected(set: &PolicySet, sel: &Selector, scope: Option<&Scope>, ip: IpAddr) -> bool {
    let in_scope = |namespace: Option<&str>| -> bool {
        let Some(scope) = scope else { return true };
        match (&scope.namespace_selector, namespace) {
            (Some(ns_sel), ns) if ns_sel.is_global() => ns.is_none(),
            (Some(_), None) => false,
            (Some(ns_sel), Some(ns)) => {
                ns_sel.is_all() || ns_sel.matches(&namespace_labels(set, ns))
            }
            (None, ns) => match (&scope.policy_namespace, ns) {
                // A namespaced policy looks in its own namespace.
                (Some(pns), Some(ns)) => pns == ns,
                (Some(_), None) => false,
                // A global policy: endpoints of every namespace and global
                // network sets; namespaced network sets need a namespaceSelector.
                (None, _) => true,
            },
        }
    };
    let endpoints = set
        .endpoints
        .iter()
        .filter(|ep| ep.ips.contains(&ip))
        .any(|ep| {
            let ns = ep
                .labels
                .get(NAMESPACE_LABEL)
                .map(String::as_str)
                .or(Some(ep.namespace.as_str()));
            in_scope(ns) && sel.matches(&ep.labels)
        });
    endpoints
        || set
            .net_sets
            .iter()
            .filter(|n| n.nets.iter().any(|net| net.contains(ip)))
            .any(|n| {
                let global_policy = scope
                    .is_none_or(|s| s.policy_namespace.is_none() && s.namespace_selector.is_none());
                let visible = match &n.namespace {
                    None => in_scope(None) || global_policy,
                    Some(ns) => !global_policy && in_scope(Some(ns)),
                };
                visible && sel.matches(&n.labels)
            })
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = |v: Verdict| if v == Verdict::Allow { "ALLOW" } else { "DENY" };
        writeln!(f, "verdict: {}", v(self.verdict))?;
        match (&self.tier, &self.policy, self.rule) {
            (Some(t), Some(p), Some(r)) => writeln!(f, "decided by: tier {t}, {p}, rule {r}")?,
            (Some(t), Some(p), None) => writeln!(
                f,
                "decided by: tier {t}'s default action (last applicable policy {p})"
            )?,
            _ => writeln!(
                f,
                "decided by: no policy (no policy selects the endpoints, or none applies)"
            )?,
        }
        for s in [&self.egress, &self.ingress] {
            let dir = if s.direction == PolicyType::Egress {
                "egress of the source"
            } else {
                "ingress of the destination"
            };
            match &s.endpoint {
                None => writeln!(f, "{dir}: not an endpoint, no policy: {}", v(s.verdict))?,
                Some(ep) => {
                    let why = match &s.reason {
                        Reason::Rule {
                            tier, policy, rule, ..
                        } => format!("tier {tier}, {policy}, rule {rule}"),
                        Reason::TierDefault { tier, .. } => format!("tier {tier} default action"),
                        Reason::Profile => "no tier decided; the profile allows".into(),
                        Reason::NotAnEndpoint => "not an endpoint".into(),
                    };
                    writeln!(f, "{dir} {ep}: {} ({why})", v(s.verdict))?;
                    for t in &s.trace {
                        writeln!(f, "    tier {:<12} {:<48} {}", t.tier, t.policy, t.outcome)?;
                    }
                }
            }
        }
        Ok(())
    }
}
