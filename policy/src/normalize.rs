//! One shape for every policy: Calico (Global)NetworkPolicies as they are,
//! Kubernetes NetworkPolicies converted the way Calico converts them
//! (`knp.default.<name>` in tier `default`, order 1000), endpoints from Pods
//! and StaticEndpoints with their namespace's labels at hand.
//!
//! The reference evaluator ([`super::eval`]) reads this form directly; the
//! compiler will turn it into the dataplane's classifier.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
};

use causeway_dataplane::route::IpPrefix;

use super::{
    model::{
        Action, EntityRule, IcmpFields, K8sPeer, K8sPolicySpec, K8sPort, PolicySpec, PolicyType,
        Port, Protocol, Resource, Rule, pod_is_endpoint,
    },
    selector::Selector,
};

/// The tier policies without one belong to.
pub const DEFAULT_TIER: &str = "default";
/// The default tier's order (Calico: 1 000 000, after every other tier).
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// The order Calico gives converted Kubernetes NetworkPolicies.
pub const K8S_POLICY_ORDER: f64 = 1000.0;
/// The label every endpoint carries with its namespace (as Calico).
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// The label every pod carries (as Calico).
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";

/// Parses a CIDR or a bare address (a /32 or /128); host bits are cleared,
/// as Calico does.
///
/// # Errors
/// A message naming the bad text.
pub fn parse_net(s: &str) -> Result<IpPrefix, String> {
    let bad = || format!("`{s}` is not an IP address or CIDR");
    let (addr, len) = match s.trim().split_once('/') {
        Some((a, l)) => (
            a.parse::<IpAddr>().map_err(|_| bad())?,
            Some(l.parse::<u8>().map_err(|_| bad())?),
        ),
        None => (s.trim().parse::<IpAddr>().map_err(|_| bad())?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    if len > max {
        return Err(format!("`{s}`: prefix length {len} is longer than {max}"));
    }
    Ok(IpPrefix::containing(addr, len))
}

/// A tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Its name.
    pub name: String,
    /// Lower first; `None` last.
    pub order: Option<f64>,
    /// Deny (default) or Pass when its applicable policies do not decide.
    pub default_action: Action,
}

/// Where a rule's selector looks for endpoints and network sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// The policy's namespace (NetworkPolicy); `None` for global policies.
    pub policy_namespace: Option<String>,
    /// The rule's namespaceSelector.
    pub namespace_selector: Option<Selector>,
}

/// One side of a rule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entity {
    /// In any of these (empty: no constraint).
    pub nets: Vec<IpPrefix>,
    /// In none of these.
    pub not_nets: Vec<IpPrefix>,
    /// An endpoint or network set matching this, in scope.
    pub selector: Option<Selector>,
    /// No endpoint matching this, in scope.
    pub not_selector: Option<Selector>,
    /// Where selectors look.
    pub scope: Option<Scope>,
    /// Ports (empty: any).
    pub ports: Vec<Port>,
    /// Not these ports.
    pub not_ports: Vec<Port>,
    /// Service account names (pods).
    pub service_account_names: Vec<String>,
    /// Service account selector... over the account name label only here.
    pub service_account_selector: Option<Selector>,
}

impl Entity {
    /// Whether this side narrows who may be on it: nets, selectors, or a
    /// named port (which resolves per endpoint).
    pub fn constrained(&self) -> bool {
        !self.nets.is_empty()
            || !self.not_nets.is_empty()
            || self.selector.is_some()
            || self.not_selector.is_some()
            || self
                .ports
                .iter()
                .chain(&self.not_ports)
                .any(|p| matches!(p, Port::Named(_)))
    }
}

/// A rule.
#[derive(Debug, Clone, PartialEq)]
pub struct NRule {
    /// Its action.
    pub action: Action,
    /// Protocol matched.
    pub protocol: Option<Protocol>,
    /// Protocol not matched.
    pub not_protocol: Option<Protocol>,
    /// ICMP type/code matched.
    pub icmp: Option<IcmpFields>,
    /// ICMP type/code not matched.
    pub not_icmp: Option<IcmpFields>,
    /// 4 or 6.
    pub ip_version: Option<u8>,
    /// Source side.
    pub source: Entity,
    /// Destination side.
    pub destination: Entity,
}

/// Which endpoints a policy applies to.
#[derive(Debug, Clone, PartialEq)]
pub struct Applies {
    /// Endpoint label selector (Calico: missing = all()).
    pub selector: Selector,
    /// Namespaced policy: only endpoints of this namespace.
    pub namespace: Option<String>,
    /// GlobalNetworkPolicy namespaceSelector.
    pub namespace_selector: Option<Selector>,
    /// Service account selector.
    pub service_account_selector: Option<Selector>,
    /// Kubernetes policies apply to pods only.
    pub pods_only: bool,
}

/// A policy in normal form.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `Kind/namespace/name`, as explain prints it.
    pub id: String,
    /// The name within its kind (ties in order are broken by it).
    pub name: String,
    /// Its tier.
    pub tier: String,
    /// Lower first; `None` last.
    pub order: Option<f64>,
    /// Who it applies to.
    pub applies: Applies,
    /// Its directions.
    pub types: Vec<PolicyType>,
    /// Ingress rules.
    pub ingress: Vec<NRule>,
    /// Egress rules.
    pub egress: Vec<NRule>,
    /// Enforced before conntrack (XDP prefilter where possible).
    pub do_not_track: bool,
    /// By direction (ingress, egress): whether a rule constrains the
    /// judged endpoint's own side ([`Entity::constrained`] of the
    /// destination of an ingress rule, the source of an egress rule), so
    /// that the program depends on the endpoint's addresses. Kept here,
    /// computed once per resource version, rather than per endpoint per
    /// compile.
    pub local_constrained: [bool; 2],
}

/// [`Policy::local_constrained`] of these rules.
fn local_constrained(ingress: &[NRule], egress: &[NRule]) -> [bool; 2] {
    [
        ingress.iter().any(|r| r.destination.constrained()),
        egress.iter().any(|r| r.source.constrained()),
    ]
}

/// A named port of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    /// The name.
    pub name: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The number.
    pub port: u16,
}

/// An endpoint: a pod or a static endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `Pod/ns/name` or `StaticEndpoint/ns/name`.
    pub id: String,
    /// Its namespace.
    pub namespace: String,
    /// Its labels, plus Calico's `projectcalico.org/namespace` (and
    /// `projectcalico.org/orchestrator: k8s` for pods).
    pub labels: BTreeMap<String, String>,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
    /// Named ports.
    pub ports: Vec<EndpointPort>,
    /// Its service account (pods).
    pub service_account: Option<String>,
    /// Whether it is a pod.
    pub pod: bool,
}

/// A network set: labelled CIDRs that rule selectors can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSet {
    /// `GlobalNetworkSet/name` or `NetworkSet/ns/name`.
    pub id: String,
    /// Its namespace (`None`: global).
    pub namespace: Option<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its CIDRs.
    pub nets: Vec<IpPrefix>,
}

/// Everything policy needs, in normal form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    /// Tiers, sorted (order, name); always includes `default`.
    pub tiers: Vec<Tier>,
    /// Policies, sorted by (order, name, id); shared with the normal forms
    /// they came from ([`Normal::Policy`]).
    pub policies: Vec<Arc<Policy>>,
    /// Endpoints (shared with the normal forms they came from).
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Network sets.
    pub net_sets: Vec<NetSet>,
    /// Namespace labels by name.
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
    /// What the compiler worked out from this set and may ask again (see
    /// [`Memo`]).
    pub memo: Memo,
}

/// Results the compiler derives from a set and asks for many times in one
/// compile: the addresses a (selector, scope) selects, asked once per
/// program and rule that names it (with 10 000 endpoints, each a scan of
/// all of them). Kept with the set, which is never changed once assembled,
/// and dropped with it; a clone starts empty, and it takes no part in
/// equality. The compiler seeds it with what the previous compile resolved
/// that the change cannot have touched.
#[derive(Default)]
pub struct Memo {
    /// By selector text, policy namespace and namespace selector text.
    pub selected: std::sync::Mutex<HashMap<String, Selected>>,
}

/// What a selector in a scope selects: the addresses of its endpoints and
/// network sets.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The selector.
    pub selector: Selector,
    /// Where it looks.
    pub scope: Option<Scope>,
    /// What it found.
    pub addrs: Arc<Vec<causeway_dataplane::policy::classifier::Prefix>>,
}

impl Clone for Memo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo").finish_non_exhaustive()
    }
}

/// Orders `None` last, then by value.
pub fn order_key(order: Option<f64>) -> f64 {
    order.unwrap_or(f64::INFINITY)
}

/// One resource's part of a [`PolicySet`]: its normal form, computed once
/// per resource version (the store keeps it beside the resource) so that a
/// change normalises only what it changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Normal {
    /// A tier.
    Tier(Tier),
    /// A policy, shared between the policy sets of every state that holds
    /// the same resource (the compiler recognises an unchanged policy by
    /// pointer before it compares contents).
    Policy(Arc<Policy>),
    /// A network set.
    NetSet(NetSet),
    /// A namespace: its name and labels.
    Namespace(String, BTreeMap<String, String>),
    /// An endpoint, shared like a policy (the compiler tells an unchanged
    /// endpoint by pointer).
    Endpoint(Arc<Endpoint>),
    /// Not policy's business (the appliance kinds).
    Nothing,
}

impl Normal {
    /// The normal form of one validated resource.
    ///
    /// # Errors
    /// As [`PolicySet::build`], for this resource.
    pub fn of(r: &Resource) -> Result<Self, String> {
        let id = r.id();
        let ctx = |e: String| format!("{id}: {e}");
        Ok(match r {
            Resource::Tier { metadata, spec } => {
                let order = if metadata.name == DEFAULT_TIER {
                    spec.order.or(Some(DEFAULT_TIER_ORDER))
                } else {
                    spec.order
                };
                Self::Tier(Tier {
                    name: metadata.name.clone(),
                    order,
                    default_action: spec.default_action.unwrap_or(Action::Deny),
                })
            }
            Resource::GlobalNetworkPolicy { metadata, spec } => Self::Policy(Arc::new(
                calico_policy(&id, &metadata.name, None, spec).map_err(ctx)?,
            )),
            Resource::NetworkPolicy { metadata, spec } => {
                let ns = metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                Self::Policy(Arc::new(
                    calico_policy(&id, &metadata.name, Some(ns), spec).map_err(ctx)?,
                ))
            }
            Resource::K8sNetworkPolicy { metadata, spec } => {
                let ns = metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                Self::Policy(Arc::new(
                    k8s_policy(&id, &metadata.name, &ns, spec).map_err(ctx)?,
                ))
            }
            Resource::GlobalNetworkSet { metadata, spec }
            | Resource::NetworkSet { metadata, spec } => {
                let namespace = match r {
                    Resource::NetworkSet { .. } => Some(
                        metadata
                            .namespace
                            .clone()
                            .unwrap_or_else(|| "default".into()),
                    ),
                    _ => None,
                };
                Self::NetSet(NetSet {
                    id: id.clone(),
                    namespace,
                    labels: metadata.labels.clone(),
                    nets: spec
                        .nets
                        .iter()
                        .map(|n| parse_net(n))
                        .collect::<Result<_, _>>()
                        .map_err(ctx)?,
                })
            }
            Resource::Namespace { metadata } => {
                Self::Namespace(metadata.name.clone(), metadata.labels.clone())
            }
            Resource::Pod { spec, status, .. } if !pod_is_endpoint(spec, status) => Self::Nothing,
            Resource::Pod {
                metadata,
                spec,
                status,
            } => {
                let namespace = metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let mut ips: Vec<IpAddr> = Vec::new();
                for ip in status
                    .pod_ips
                    .iter()
                    .map(|p| p.ip.as_str())
                    .chain(status.pod_ip.as_deref())
                {
                    let ip: IpAddr = ip
                        .parse()
                        .map_err(|_| ctx(format!("status.podIPs: `{ip}` is not an IP")))?;
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
                let mut labels = metadata.labels.clone();
                labels.insert(NAMESPACE_LABEL.into(), namespace.clone());
                labels.insert(ORCHESTRATOR_LABEL.into(), "k8s".into());
                let mut ports = Vec::new();
                for p in spec.containers.iter().flat_map(|c| &c.ports) {
                    if let Some(name) = &p.name {
                        ports.push(EndpointPort {
                            name: name.clone(),
                            protocol: Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))
                                .map_err(ctx)?,
                            port: p.container_port,
                        });
                    }
                }
                Self::Endpoint(Arc::new(Endpoint {
                    id: id.clone(),
                    namespace,
                    labels,
                    ips,
                    ports,
                    service_account: Some(
                        spec.service_account_name
                            .clone()
                            .unwrap_or_else(|| "default".into()),
                    ),
                    pod: true,
                }))
            }
            Resource::Appliance { .. } | Resource::ServiceDiscovery { .. } => Self::Nothing,
            Resource::StaticEndpoint { metadata, spec } => {
                let namespace = metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let mut labels = metadata.labels.clone();
                labels.insert(NAMESPACE_LABEL.into(), namespace.clone());
                let ips = spec
                    .ips
                    .iter()
                    .map(|s| {
                        s.parse::<IpAddr>()
                            .map_err(|_| ctx(format!("spec.ips: `{s}` is not an IP")))
                    })
                    .collect::<Result<_, _>>()?;
                let ports = spec
                    .ports
                    .iter()
                    .map(|p| {
                        Ok(EndpointPort {
                            name: p.name.clone(),
                            protocol: Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))
                                .map_err(ctx)?,
                            port: p.port,
                        })
                    })
                    .collect::<Result<_, String>>()?;
                Self::Endpoint(Arc::new(Endpoint {
                    id: id.clone(),
                    namespace,
                    labels,
                    ips,
                    ports,
                    service_account: None,
                    pod: false,
                }))
            }
        })
    }
}

impl PolicySet {
    /// Builds the normal form of validated resources.
    ///
    /// # Errors
    /// A message naming the resource and field, for what validation lets
    /// through but normalisation cannot use (bad CIDRs, unknown K8s
    /// selector operators).
    pub fn build<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Result<Self, String> {
        let parts = resources
            .into_iter()
            .map(Normal::of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::assemble(&parts))
    }

    /// The set made of resources already in normal form ([`Normal::of`]),
    /// in the order [`Self::build`] would read them: a later tier or
    /// namespace of the same name wins.
    pub fn assemble<'a>(parts: impl IntoIterator<Item = &'a Normal>) -> Self {
        let mut set = Self::default();
        let mut tiers: HashMap<String, Tier> = HashMap::new();
        tiers.insert(
            DEFAULT_TIER.into(),
            Tier {
                name: DEFAULT_TIER.into(),
                order: Some(DEFAULT_TIER_ORDER),
                default_action: Action::Deny,
            },
        );
        for part in parts {
            match part {
                Normal::Tier(t) => {
                    tiers.insert(t.name.clone(), t.clone());
                }
                Normal::Policy(p) => set.policies.push(p.clone()),
                Normal::NetSet(n) => set.net_sets.push(n.clone()),
                Normal::Namespace(name, labels) => {
                    set.namespaces.insert(name.clone(), labels.clone());
                }
                Normal::Endpoint(e) => set.endpoints.push(e.clone()),
                Normal::Nothing => {}
            }
        }
        let mut tiers: Vec<Tier> = tiers.into_values().collect();
        tiers.sort_by(|a, b| {
            order_key(a.order)
                .total_cmp(&order_key(b.order))
                .then_with(|| a.name.cmp(&b.name))
        });
        set.tiers = tiers;
        set.policies.sort_by(|a, b| {
            order_key(a.order)
                .total_cmp(&order_key(b.order))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.id.cmp(&b.id))
        });
        set
    }

    /// This set with `changes` made, each the normal forms of one resource
    /// before and after, when every one replaces an endpoint or a policy
    /// where it stands (the same endpoint; a policy with the same order,
    /// name and id, so the same place in the order) or is not policy's;
    /// `None` otherwise (a resource came or went; a tier, namespace or
    /// network set changed), when [`PolicySet::assemble`] must build it
    /// whole. A pod relabelled in a set of 10 000 endpoints then costs a
    /// copy of the lists, not a walk of every resource and a sort. The
    /// copy starts with an empty [`Memo`].
    pub fn patched<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a Normal, &'a Normal)>,
    ) -> Option<Self> {
        let mut next = self.clone();
        for (before, after) in changes {
            match (before, after) {
                (Normal::Nothing, Normal::Nothing) => {}
                (Normal::Endpoint(old), Normal::Endpoint(new)) if old.id == new.id => {
                    let at = next.endpoints.iter().position(|e| Arc::ptr_eq(e, old))?;
                    next.endpoints[at] = new.clone();
                }
                (Normal::Policy(old), Normal::Policy(new))
                    if old.id == new.id
                        && old.name == new.name
                        && order_key(old.order)
                            .total_cmp(&order_key(new.order))
                            .is_eq() =>
                {
                    let at = next.policies.iter().position(|p| Arc::ptr_eq(p, old))?;
                    next.policies[at] = new.clone();
                }
                _ => return None,
            }
        }
        Some(next)
    }

    /// The labels of a namespace (empty if it has no Namespace resource).
    pub fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.namespaces.get(ns).cloned().unwrap_or_default()
    }
}

fn nets(list: &[String]) -> Result<Vec<IpPrefix>, String> {
    list.iter().map(|n| parse_net(n)).collect()
}

fn calico_policy(
    id: &str,
    name: &str,
    namespace: Option<String>,
    spec: &PolicySpec,
) -> Result<Policy, String> {
    let scope = Scope {
        policy_namespace: namespace.clone(),
        namespace_selector: None,
    };
    let rules = |rules: &[Rule], field: &str| -> Result<Vec<NRule>, String> {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| calico_rule(r, &scope).map_err(|e| format!("spec.{field}[{i}]: {e}")))
            .collect()
    };
    let (ingress, egress) = (
        rules(&spec.ingress, "ingress")?,
        rules(&spec.egress, "egress")?,
    );
    Ok(Policy {
        id: id.into(),
        name: name.into(),
        tier: spec.tier.clone().unwrap_or_else(|| DEFAULT_TIER.into()),
        order: spec.order,
        applies: Applies {
            selector: spec.selector.clone().unwrap_or_else(Selector::all),
            namespace,
            namespace_selector: spec.namespace_selector.clone(),
            service_account_selector: spec.service_account_selector.clone(),
            pods_only: false,
        },
        types: spec.effective_types(),
        local_constrained: local_constrained(&ingress, &egress),
        ingress,
        egress,
        do_not_track: spec.do_not_track,
    })
}

fn calico_entity(e: &EntityRule, scope: &Scope) -> Result<Entity, String> {
    let sa = e.service_accounts.clone().unwrap_or_default();
    // Calico: a namespaceSelector alone selects every endpoint of the
    // selected namespaces.
    let selector = match (&e.selector, &e.namespace_selector) {
        (None, Some(_)) => Some(Selector::all()),
        (s, _) => s.clone(),
    };
    Ok(Entity {
        nets: nets(&e.nets)?,
        not_nets: nets(&e.not_nets)?,
        selector,
        not_selector: e.not_selector.clone(),
        scope: Some(Scope {
            policy_namespace: scope.policy_namespace.clone(),
            namespace_selector: e.namespace_selector.clone(),
        }),
        ports: e.ports.clone(),
        not_ports: e.not_ports.clone(),
        service_account_names: sa.names,
        service_account_selector: sa.selector,
    })
}

fn calico_rule(r: &Rule, scope: &Scope) -> Result<NRule, String> {
    Ok(NRule {
        action: r.action,
        protocol: r.protocol,
        not_protocol: r.not_protocol,
        icmp: r.icmp,
        not_icmp: r.not_icmp,
        ip_version: r.ip_version,
        source: calico_entity(&r.source, scope).map_err(|e| format!("source: {e}"))?,
        destination: calico_entity(&r.destination, scope)
            .map_err(|e| format!("destination: {e}"))?,
    })
}

/// Kubernetes ports grouped by protocol, as Calico's converter does: one
/// rule per (peer, protocol). `None`: no port constraint at all.
/// Ports grouped by protocol.
type PortGroups = Vec<(Protocol, Vec<Port>)>;

fn k8s_port_groups(ports: &[K8sPort]) -> Result<Option<PortGroups>, String> {
    if ports.is_empty() {
        return Ok(None);
    }
    let mut groups: Vec<(Protocol, Vec<Port>)> = Vec::new();
    for p in ports {
        let proto = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?;
        let port = match (&p.port, p.end_port) {
            (None, _) => None,
            (Some(Port::Range(lo, _)), Some(end)) => Some(Port::Range(*lo, end)),
            (Some(port), _) => Some(port.clone()),
        };
        let i = match groups.iter().position(|(pr, _)| *pr == proto) {
            Some(i) => i,
            None => {
                groups.push((proto, Vec::new()));
                groups.len() - 1
            }
        };
        match port {
            // A port-less entry allows every port of the protocol.
            None => groups[i].1 = vec![Port::Range(0, 65535)],
            Some(port) if groups[i].1 != [Port::Range(0, 65535)] => groups[i].1.push(port),
            Some(_) => {}
        }
    }
    Ok(Some(groups))
}

fn k8s_peer(peer: &K8sPeer, ns: &str) -> Result<Entity, String> {
    let mut e = Entity::default();
    if let Some(block) = &peer.ip_block {
        e.nets = vec![parse_net(&block.cidr)?];
        e.not_nets = nets(&block.except)?;
        return Ok(e);
    }
    let pod_sel = peer
        .pod_selector
        .as_ref()
        .map(|s| super::selector::from_match_labels(&s.match_labels, &s.match_expressions))
        .transpose()
        .map_err(|e| e.to_string())?;
    let ns_sel = peer
        .namespace_selector
        .as_ref()
        .map(|s| super::selector::from_match_labels(&s.match_labels, &s.match_expressions))
        .transpose()
        .map_err(|e| e.to_string())?;
    // Pods only: Kubernetes peers never match network sets or host endpoints.
    let pods = Selector::parse(&format!("has({ORCHESTRATOR_LABEL})")).map_err(|e| e.to_string())?;
    e.selector = Some(match pod_sel {
        Some(s) => and(&s, &pods)?,
        None => pods,
    });
    e.scope = Some(Scope {
        policy_namespace: Some(ns.into()),
        namespace_selector: ns_sel,
    });
    Ok(e)
}

fn and(a: &Selector, b: &Selector) -> Result<Selector, String> {
    if a.is_all() {
        return Ok(b.clone());
    }
    Selector::parse(&format!("({a}) && ({b})")).map_err(|e| e.to_string())
}

fn k8s_policy(id: &str, name: &str, ns: &str, spec: &K8sPolicySpec) -> Result<Policy, String> {
    let selector = super::selector::from_match_labels(
        &spec.pod_selector.match_labels,
        &spec.pod_selector.match_expressions,
    )
    .map_err(|e| format!("spec.podSelector: {e}"))?;
    let allow =
        |peer: Entity, local: Entity, ports: &Option<PortGroups>, ingress: bool| -> Vec<NRule> {
            let base = |protocol: Option<Protocol>, ports: Vec<Port>| {
                let (mut source, mut destination) = if ingress {
                    (peer.clone(), local.clone())
                } else {
                    (local.clone(), peer.clone())
                };
                // Ports are the destination's, in both directions.
                destination.ports = ports;
                let _ = &mut source;
                NRule {
                    action: Action::Allow,
                    protocol,
                    not_protocol: None,
                    icmp: None,
                    not_icmp: None,
                    ip_version: None,
                    source,
                    destination,
                }
            };
            match ports {
                None => vec![base(None, Vec::new())],
                Some(groups) => groups
                    .iter()
                    .map(|(p, ports)| base(Some(*p), ports.clone()))
                    .collect(),
            }
        };
    let mut ingress = Vec::new();
    for (i, r) in spec.ingress.iter().enumerate() {
        let ports =
            k8s_port_groups(&r.ports).map_err(|e| format!("spec.ingress[{i}].ports: {e}"))?;
        if r.from.is_empty() {
            ingress.extend(allow(Entity::default(), Entity::default(), &ports, true));
        }
        for (j, peer) in r.from.iter().enumerate() {
            let peer =
                k8s_peer(peer, ns).map_err(|e| format!("spec.ingress[{i}].from[{j}]: {e}"))?;
            ingress.extend(allow(peer, Entity::default(), &ports, true));
        }
    }
    let mut egress = Vec::new();
    for (i, r) in spec.egress.iter().enumerate() {
        let ports =
            k8s_port_groups(&r.ports).map_err(|e| format!("spec.egress[{i}].ports: {e}"))?;
        if r.to.is_empty() {
            egress.extend(allow(Entity::default(), Entity::default(), &ports, false));
        }
        for (j, peer) in r.to.iter().enumerate() {
            let peer = k8s_peer(peer, ns).map_err(|e| format!("spec.egress[{i}].to[{j}]: {e}"))?;
            egress.extend(allow(peer, Entity::default(), &ports, false));
        }
    }
    Ok(Policy {
        id: id.into(),
        name: format!("knp.default.{name}"),
        tier: DEFAULT_TIER.into(),
        order: Some(K8S_POLICY_ORDER),
        applies: Applies {
            selector,
            namespace: Some(ns.into()),
            namespace_selector: None,
            service_account_selector: None,
            pods_only: true,
        },
        types: spec.effective_types(),
        local_constrained: local_constrained(&ingress, &egress),
        ingress,
        egress,
        do_not_track: false,
    })
}
