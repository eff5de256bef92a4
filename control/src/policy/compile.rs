//! The compiler: normal-form policy ([`PolicySet`]) → the dataplane's
//! [`PolicyProgram`].
//!
//! For each endpoint and direction, the policies that apply to it (in tier
//! and policy order) form its program; endpoints with the same applicable
//! policies share one. Each rule becomes classifier rules ("cubes"):
//! selectors are resolved to the addresses of the endpoints and network
//! sets they select, `nets`/`notNets`/`notSelector` become prefix-set
//! intersections and differences, named ports are resolved per endpoint,
//! `notProtocol`/`notPorts`/`notICMP` become the complementary values.
//! ICMP type and code ride in the classifier's port fields. Each tier ends
//! with its default rule.
//!
//! Compiling again after a change rebuilds only the programs whose content
//! changed: a program is keyed by the resolved cubes of its rules, and an
//! unchanged key reuses the previous compile's classifier.
//!
//! The set resolution below deliberately does not share code with the
//! reference evaluator ([`super::eval`]): the two are compared in tests.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{Hash, Hasher},
    net::IpAddr,
    sync::Arc,
};

use causeway_dataplane::{
    policy::{
        classifier::{Classifier, Prefix, Rule as Cube},
        program::{
            Action as DpAction, EndpointPrograms, PolicyProgram, Program, RuleId, RuleMeta,
            TierProgram,
        },
    },
    route::IpPrefix,
};

use super::{
    eval::applies,
    model::{Action, IcmpFields, PolicyType, Port, Protocol},
    normalize::{Entity, NAMESPACE_LABEL, NRule, Policy, PolicySet, Scope},
    selector::Selector,
};

/// The IPv4-mapped range of the u128 address space.
const V4_MAPPED: Prefix = Prefix {
    addr: 0xffff_0000_0000,
    len: 96,
};

/// Converts an [`IpPrefix`] to the classifier's u128 form.
pub fn to_prefix(p: &IpPrefix) -> Prefix {
    match p.addr() {
        IpAddr::V4(a) => Prefix::v4(u32::from(a), p.len()),
        IpAddr::V6(a) => Prefix::v6(u128::from(a), p.len()),
    }
}

/// An address in the classifier's u128 form.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn host(ip: IpAddr) -> Prefix {
    Prefix {
        addr: to_u128(ip),
        len: 128,
    }
}

/// What a compile produced besides the program.
#[derive(Debug, Default)]
pub struct Compiled {
    /// The program for the workers.
    pub program: PolicyProgram,
    /// doNotTrack Deny rules on source nets that apply to every endpoint:
    /// the XDP prefilter drops these sources in the kernel.
    pub prefilter: Vec<(IpPrefix, RuleId)>,
    /// Programs built (not reused from the previous compile).
    pub built: usize,
    /// Programs reused.
    pub reused: usize,
}

/// Programs of the previous compile, by content.
#[derive(Debug, Default)]
pub struct Cache {
    programs: HashMap<u64, Arc<Program>>,
}

type Cubes = Vec<(Cube, DpAction, RuleId)>;

/// What makes two endpoints share a program: the direction, the applicable
/// policies, and the endpoint's addresses when a rule constrains them.
type Signature = (PolicyType, Vec<usize>, Option<Vec<IpAddr>>);

/// Compiles `set` into generation `generation`, reusing `cache`.
pub fn compile(set: &PolicySet, generation: u64, cache: &mut Cache) -> Compiled {
    let mut rules: Vec<RuleMeta> = Vec::new();
    let mut rule_ids: HashMap<(usize, PolicyType, Option<usize>), RuleId> = HashMap::new();
    let mut tier_defaults: HashMap<(String, PolicyType), RuleId> = HashMap::new();
    let mut signatures: HashMap<Signature, u32> = HashMap::new();
    let mut programs: Vec<Arc<Program>> = Vec::new();
    let mut endpoints: HashMap<u128, EndpointPrograms, _> = HashMap::default();
    let previous = std::mem::take(&mut cache.programs);
    let mut reuse = Reuse {
        previous: &previous,
        next: HashMap::new(),
        built: 0,
        reused: 0,
    };

    for direction in [PolicyType::Ingress, PolicyType::Egress] {
        for ep in &set.endpoints {
            let applicable: Vec<usize> = set
                .policies
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    !p.do_not_track && p.types.contains(&direction) && applies(set, p, ep)
                })
                .map(|(i, _)| i)
                .collect();
            if applicable.is_empty() {
                continue;
            }
            let local_specific = applicable.iter().any(|&i| {
                rules_of(&set.policies[i], direction)
                    .iter()
                    .any(|r| local_constrained(local_side(r, direction)))
            });
            let sig = (
                direction,
                applicable.clone(),
                local_specific.then(|| ep.ips.clone()),
            );
            let index = match signatures.get(&sig) {
                Some(i) => *i,
                None => {
                    let local = local_specific.then_some(ep.ips.as_slice());
                    let tables = Tables {
                        rules: &mut rules,
                        rule_ids: &mut rule_ids,
                        tier_defaults: &mut tier_defaults,
                    };
                    let tiers = tier_cubes(set, &applicable, direction, local, true, tables);
                    programs.push(reuse.program(&tiers));
                    let i = (programs.len() - 1) as u32;
                    signatures.insert(sig, i);
                    i
                }
            };
            for ip in &ep.ips {
                let e = endpoints.entry(to_u128(*ip)).or_default();
                match direction {
                    PolicyType::Ingress => e.ingress = Some(index),
                    PolicyType::Egress => e.egress = Some(index),
                }
            }
        }
    }
    // The appliance's own (doNotTrack) policies: every packet, before
    // tracking; no tier defaults (no match falls through to normal policy).
    let mut untracked = Vec::new();
    for direction in [PolicyType::Ingress, PolicyType::Egress] {
        let own: Vec<usize> = set
            .policies
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.do_not_track && p.types.contains(&direction) && p.applies.selector.is_all()
            })
            .map(|(i, _)| i)
            .collect();
        if own.is_empty() {
            continue;
        }
        let tables = Tables {
            rules: &mut rules,
            rule_ids: &mut rule_ids,
            tier_defaults: &mut tier_defaults,
        };
        let tiers = tier_cubes(set, &own, direction, None, false, tables);
        programs.push(reuse.program(&tiers));
        untracked.push((programs.len() - 1) as u32);
    }
    let (built, reused) = (reuse.built, reuse.reused);
    cache.programs = reuse.next;
    let prefilter = prefilter(set, &rule_ids);
    Compiled {
        program: PolicyProgram {
            generation,
            endpoints,
            programs,
            rules,
            untracked,
        },
        prefilter,
        built,
        reused,
    }
}

fn rules_of(p: &Policy, d: PolicyType) -> &[NRule] {
    match d {
        PolicyType::Ingress => &p.ingress,
        PolicyType::Egress => &p.egress,
    }
}

/// The side of a rule that is the judged endpoint itself.
fn local_side(r: &NRule, d: PolicyType) -> &Entity {
    match d {
        PolicyType::Ingress => &r.destination,
        PolicyType::Egress => &r.source,
    }
}

fn local_constrained(e: &Entity) -> bool {
    !e.nets.is_empty()
        || !e.not_nets.is_empty()
        || e.selector.is_some()
        || e.not_selector.is_some()
        || e.ports
            .iter()
            .chain(&e.not_ports)
            .any(|p| matches!(p, Port::Named(_)))
}

/// Builds programs, or takes them from the previous compile's cache when
/// their content is the same.
struct Reuse<'a> {
    previous: &'a HashMap<u64, Arc<Program>>,
    next: HashMap<u64, Arc<Program>>,
    built: usize,
    reused: usize,
}

impl Reuse<'_> {
    fn program(&mut self, tiers: &[Cubes]) -> Arc<Program> {
        let key = content_key(tiers);
        let program = match self.previous.get(&key) {
            Some(p) => {
                self.reused += 1;
                p.clone()
            }
            None => {
                self.built += 1;
                Arc::new(build_program(tiers))
            }
        };
        self.next.insert(key, program.clone());
        program
    }
}

/// The rule tables a compile fills as it goes.
struct Tables<'a> {
    rules: &'a mut Vec<RuleMeta>,
    rule_ids: &'a mut HashMap<(usize, PolicyType, Option<usize>), RuleId>,
    tier_defaults: &'a mut HashMap<(String, PolicyType), RuleId>,
}

fn tier_cubes(
    set: &PolicySet,
    applicable: &[usize],
    direction: PolicyType,
    local: Option<&[IpAddr]>,
    with_defaults: bool,
    t: Tables<'_>,
) -> Vec<Cubes> {
    let Tables {
        rules,
        rule_ids,
        tier_defaults,
    } = t;
    let dir_name = if direction == PolicyType::Ingress {
        "ingress"
    } else {
        "egress"
    };
    let mut tiers = Vec::new();
    for tier in &set.tiers {
        let in_tier: Vec<usize> = applicable
            .iter()
            .copied()
            .filter(|i| set.policies[*i].tier == tier.name)
            .collect();
        if in_tier.is_empty() {
            continue;
        }
        let mut cubes = Vec::new();
        for pi in in_tier {
            let policy = &set.policies[pi];
            for (ri, rule) in rules_of(policy, direction).iter().enumerate() {
                let action = dp_action(rule.action);
                let id = *rule_ids
                    .entry((pi, direction, Some(ri)))
                    .or_insert_with(|| {
                        rules.push(RuleMeta {
                            tier: tier.name.clone(),
                            policy: policy.id.clone(),
                            direction: dir_name,
                            index: Some(ri),
                            action,
                        });
                        (rules.len() - 1) as RuleId
                    });
                for cube in expand(set, rule, direction, local) {
                    cubes.push((cube, action, id));
                }
            }
        }
        if !with_defaults {
            tiers.push(cubes);
            continue;
        }
        let default_action = if tier.default_action == Action::Pass {
            DpAction::Pass
        } else {
            DpAction::Deny
        };
        let id = *tier_defaults
            .entry((tier.name.clone(), direction))
            .or_insert_with(|| {
                rules.push(RuleMeta {
                    tier: tier.name.clone(),
                    policy: String::new(),
                    direction: dir_name,
                    index: None,
                    action: default_action,
                });
                (rules.len() - 1) as RuleId
            });
        cubes.push((
            Cube {
                src: Prefix::ANY,
                dst: Prefix::ANY,
                proto: None,
                sport: (0, 65535),
                dport: (0, 65535),
            },
            default_action,
            id,
        ));
        tiers.push(cubes);
    }
    tiers
}

fn dp_action(a: Action) -> DpAction {
    match a {
        Action::Allow => DpAction::Allow,
        Action::Deny => DpAction::Deny,
        Action::Pass => DpAction::Pass,
        Action::Log => DpAction::Log,
    }
}

fn content_key(tiers: &[Cubes]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in tiers {
        t.len().hash(&mut h);
        for (c, a, id) in t {
            (
                c.src.addr, c.src.len, c.dst.addr, c.dst.len, c.proto, c.sport, c.dport, a, id,
            )
                .hash(&mut h);
        }
    }
    h.finish()
}

fn build_program(tiers: &[Cubes]) -> Program {
    Program {
        tiers: tiers
            .iter()
            .map(|t| {
                let cubes: Vec<Cube> = t.iter().map(|(c, _, _)| *c).collect();
                TierProgram {
                    classifier: Classifier::build(&cubes),
                    rules: t.iter().map(|(_, a, id)| (*a, *id)).collect(),
                }
            })
            .collect(),
    }
}

/// The cubes of one rule.
fn expand(
    set: &PolicySet,
    rule: &NRule,
    direction: PolicyType,
    local: Option<&[IpAddr]>,
) -> Vec<Cube> {
    let family: Option<Vec<Prefix>> = match rule.ip_version {
        Some(4) => Some(vec![V4_MAPPED]),
        Some(6) => Some(subtract(&[Prefix::ANY], &[V4_MAPPED])),
        _ => None,
    };
    let protocols: Vec<Option<u8>> = match (rule.protocol, rule.not_protocol) {
        (Some(p), Some(np)) if p == np => return Vec::new(),
        (Some(p), _) => vec![Some(p.0)],
        (None, Some(np)) => (1..=255u8).filter(|p| *p != np.0).map(Some).collect(),
        (None, None) => vec![None],
    };
    let icmp = icmp_alternatives(rule.icmp, rule.not_icmp);
    let (src_local, dst_local) = match direction {
        PolicyType::Ingress => (None, local),
        PolicyType::Egress => (local, None),
    };
    let src = side(
        set,
        &rule.source,
        rule.protocol,
        family.as_deref(),
        src_local,
    );
    let dst = side(
        set,
        &rule.destination,
        rule.protocol,
        family.as_deref(),
        dst_local,
    );
    let mut out = Vec::new();
    for (s, sports) in &src {
        for (d, dports) in &dst {
            for proto in &protocols {
                for (itype, icode) in &icmp {
                    for sp in sports {
                        for dp in dports {
                            let (Some(sport), Some(dport)) = (meet(*sp, *itype), meet(*dp, *icode))
                            else {
                                continue;
                            };
                            out.push(Cube {
                                src: *s,
                                dst: *d,
                                proto: *proto,
                                sport,
                                dport,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

fn meet(a: (u16, u16), b: (u16, u16)) -> Option<(u16, u16)> {
    let lo = a.0.max(b.0);
    let hi = a.1.min(b.1);
    (lo <= hi).then_some((lo, hi))
}

/// (type range, code range) alternatives; ICMP type and code ride in the
/// classifier's source and destination port fields.
fn icmp_alternatives(
    icmp: Option<IcmpFields>,
    not: Option<IcmpFields>,
) -> Vec<((u16, u16), (u16, u16))> {
    const ALL: (u16, u16) = (0, 65535);
    let point = |v: Option<u8>| v.map_or(ALL, |v| (u16::from(v), u16::from(v)));
    let base = match icmp {
        Some(f) => vec![(point(f.ty), point(f.code))],
        None => vec![(ALL, ALL)],
    };
    let Some(n) = not else { return base };
    // not (type == t && code == c) = type != t || (type == t && code != c)
    let others = |v: Option<u8>| -> Vec<(u16, u16)> {
        match v {
            None => Vec::new(),
            Some(v) => complement(&[(u16::from(v), u16::from(v))]),
        }
    };
    let mut excl = Vec::new();
    match (n.ty, n.code) {
        (None, _) => {}
        (Some(_), None) => excl.extend(others(n.ty).into_iter().map(|t| (t, ALL))),
        (Some(t), Some(_)) => {
            excl.extend(others(n.ty).into_iter().map(|r| (r, ALL)));
            excl.extend(
                others(n.code)
                    .into_iter()
                    .map(|c| ((u16::from(t), u16::from(t)), c)),
            );
        }
    }
    let mut out = Vec::new();
    for (bt, bc) in &base {
        for (et, ec) in &excl {
            if let (Some(t), Some(c)) = (meet(*bt, *et), meet(*bc, *ec)) {
                out.push((t, c));
            }
        }
    }
    out
}

fn complement(ranges: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut out = Vec::new();
    let mut next: u32 = 0;
    for (lo, hi) in sorted {
        if u32::from(lo) > next {
            out.push((next as u16, lo - 1));
        }
        next = next.max(u32::from(hi) + 1);
    }
    if next <= 65535 {
        out.push((next as u16, 65535));
    }
    out
}

/// One side of a rule: (address prefix, port ranges) alternatives.
fn side(
    set: &PolicySet,
    e: &Entity,
    protocol: Option<Protocol>,
    family: Option<&[Prefix]>,
    local: Option<&[IpAddr]>,
) -> Vec<(Prefix, Vec<(u16, u16)>)> {
    let mut addrs: Vec<Prefix> = if e.nets.is_empty() {
        vec![Prefix::ANY]
    } else {
        e.nets.iter().map(to_prefix).collect()
    };
    if let Some(f) = family {
        addrs = intersect(&addrs, f);
    }
    if let Some(local) = local {
        addrs = intersect(
            &addrs,
            &local.iter().map(|ip| host(*ip)).collect::<Vec<_>>(),
        );
    }
    if let Some(sel) = &e.selector {
        addrs = intersect(&addrs, &selected(set, sel, e.scope.as_ref()));
    }
    if !e.not_nets.is_empty() {
        addrs = subtract(
            &addrs,
            &e.not_nets.iter().map(to_prefix).collect::<Vec<_>>(),
        );
    }
    if let Some(sel) = &e.not_selector {
        addrs = subtract(&addrs, &selected(set, sel, e.scope.as_ref()));
    }
    if addrs.is_empty() {
        return Vec::new();
    }
    let numeric: Vec<(u16, u16)> = e
        .ports
        .iter()
        .filter_map(|p| match p {
            Port::Range(lo, hi) => Some((*lo, *hi)),
            Port::Named(_) => None,
        })
        .collect();
    let named: Vec<&str> = e
        .ports
        .iter()
        .filter_map(|p| match p {
            Port::Named(n) => Some(n.as_str()),
            Port::Range(..) => None,
        })
        .collect();
    let not_numeric: Vec<(u16, u16)> = e
        .not_ports
        .iter()
        .filter_map(|p| match p {
            Port::Range(lo, hi) => Some((*lo, *hi)),
            Port::Named(_) => None,
        })
        .collect();
    let not_named: Vec<&str> = e
        .not_ports
        .iter()
        .filter_map(|p| match p {
            Port::Named(n) => Some(n.as_str()),
            Port::Range(..) => None,
        })
        .collect();
    let minus = |ranges: Vec<(u16, u16)>, not: &[(u16, u16)]| -> Vec<(u16, u16)> {
        if not.is_empty() {
            return ranges;
        }
        let allowed = complement(not);
        ranges
            .iter()
            .flat_map(|r| allowed.iter().filter_map(move |a| meet(*r, *a)))
            .collect()
    };
    // Named ports resolve per endpoint address (a named port only ever
    // matches an endpoint that has it).
    let port_of = |ip: IpAddr, name: &str| -> Option<u16> {
        set.endpoints
            .iter()
            .filter(|ep| ep.ips.contains(&ip))
            .find_map(|ep| {
                ep.ports
                    .iter()
                    .find(|p| p.name == name && protocol.is_none_or(|pr| pr == p.protocol))
                    .map(|p| p.port)
            })
    };
    let endpoint_ips: Vec<IpAddr> = if named.is_empty() && not_named.is_empty() {
        Vec::new()
    } else {
        let mut ips: Vec<IpAddr> = set
            .endpoints
            .iter()
            .flat_map(|ep| ep.ips.iter().copied())
            .filter(|ip| addrs.iter().any(|a| a.contains(to_u128(*ip))))
            .collect();
        ips.sort_unstable();
        ips.dedup();
        ips
    };
    let base_ranges = if e.ports.is_empty() {
        vec![(0, 65535)]
    } else {
        numeric
    };
    let mut out = Vec::new();
    if not_named.is_empty() {
        let ranges = minus(base_ranges, &not_numeric);
        if !ranges.is_empty() {
            out.extend(addrs.iter().map(|a| (*a, ranges.clone())));
        }
    } else {
        // Endpoints with a named notPort get their own alternatives.
        let special: Vec<(IpAddr, Vec<(u16, u16)>)> = endpoint_ips
            .iter()
            .filter_map(|ip| {
                let extra: Vec<(u16, u16)> = not_named
                    .iter()
                    .filter_map(|n| port_of(*ip, n))
                    .map(|p| (p, p))
                    .collect();
                (!extra.is_empty()).then(|| {
                    let mut not = not_numeric.clone();
                    not.extend(extra);
                    (*ip, not)
                })
            })
            .collect();
        let hosts: Vec<Prefix> = special.iter().map(|(ip, _)| host(*ip)).collect();
        let ranges = minus(base_ranges.clone(), &not_numeric);
        for a in subtract(&addrs, &hosts) {
            if !ranges.is_empty() {
                out.push((a, ranges.clone()));
            }
        }
        for (ip, not) in special {
            let r = minus(base_ranges.clone(), &not);
            if !r.is_empty() {
                out.push((host(ip), r));
            }
        }
    }
    for ip in &endpoint_ips {
        let ports: Vec<(u16, u16)> = named
            .iter()
            .filter_map(|n| port_of(*ip, n))
            .map(|p| (p, p))
            .collect();
        let not: Vec<(u16, u16)> = not_numeric
            .iter()
            .copied()
            .chain(
                not_named
                    .iter()
                    .filter_map(|n| port_of(*ip, n))
                    .map(|p| (p, p)),
            )
            .collect();
        let ports = minus(ports, &not);
        if !ports.is_empty() {
            out.push((host(*ip), ports));
        }
    }
    out
}

/// The addresses of the endpoints and network sets `sel` selects in `scope`.
fn selected(set: &PolicySet, sel: &Selector, scope: Option<&Scope>) -> Vec<Prefix> {
    let ns_labels = |ns: &str| -> BTreeMap<String, String> {
        let mut l = set.namespace_labels(ns);
        l.insert("projectcalico.org/name".into(), ns.into());
        l
    };
    let policy_ns = scope.and_then(|s| s.policy_namespace.as_deref());
    let ns_sel = scope.and_then(|s| s.namespace_selector.as_ref());
    let visible = |ns: Option<&str>| -> bool {
        match (ns_sel, ns) {
            (Some(s), ns) if s.is_global() => ns.is_none(),
            (Some(_), None) => false,
            (Some(s), Some(ns)) => s.is_all() || s.matches(&ns_labels(ns)),
            (None, Some(ns)) => policy_ns.is_none_or(|p| p == ns),
            (None, None) => policy_ns.is_none(),
        }
    };
    let mut out = Vec::new();
    for ep in &set.endpoints {
        let ns = ep
            .labels
            .get(NAMESPACE_LABEL)
            .map_or(ep.namespace.as_str(), String::as_str);
        if visible(Some(ns)) && sel.matches(&ep.labels) {
            out.extend(ep.ips.iter().map(|ip| host(*ip)));
        }
    }
    let global_policy = policy_ns.is_none() && ns_sel.is_none();
    for n in &set.net_sets {
        let ok = match n.namespace.as_deref() {
            None => global_policy || visible(None),
            Some(ns) => !global_policy && visible(Some(ns)),
        };
        if ok && sel.matches(&n.labels) {
            out.extend(n.nets.iter().map(to_prefix));
        }
    }
    out
}

/// `a ∩ b` for unions of prefixes.
fn intersect(a: &[Prefix], b: &[Prefix]) -> Vec<Prefix> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            if x.len >= y.len && y.contains(x.addr) {
                out.push(*x);
            } else if y.len > x.len && x.contains(y.addr) {
                out.push(*y);
            }
        }
    }
    out.sort_unstable_by_key(|p| (p.addr, p.len));
    out.dedup_by_key(|p| (p.addr, p.len));
    out
}

/// `a − b` for unions of prefixes.
fn subtract(a: &[Prefix], b: &[Prefix]) -> Vec<Prefix> {
    let mut cur: Vec<Prefix> = a.to_vec();
    for y in b {
        let mut next = Vec::new();
        for x in cur {
            if x.len >= y.len && y.contains(x.addr) {
                continue; // wholly removed
            }
            if y.len > x.len && x.contains(y.addr) {
                // Split x around y: the sibling at every level from x down to y.
                for l in (x.len + 1)..=y.len {
                    let bit = 1u128 << (128 - u32::from(l));
                    let sibling = Prefix::new((y.addr ^ bit) & mask(l), l);
                    next.push(sibling);
                }
                continue;
            }
            next.push(x);
        }
        cur = next;
    }
    cur
}

/// Whether a rule side matches every address and port.
fn unconstrained(e: &Entity) -> bool {
    e.nets.is_empty()
        && e.not_nets.is_empty()
        && e.selector.is_none()
        && e.not_selector.is_none()
        && e.ports.is_empty()
        && e.not_ports.is_empty()
        && e.service_account_names.is_empty()
        && e.service_account_selector.is_none()
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// doNotTrack policies are the appliance's own (applyOnForward): they judge
/// every forwarded packet before connection tracking. The leading run of
/// their rules that deny on source nets alone, in policies that select
/// every endpoint, goes to the XDP prefilter: nothing before those rules
/// can allow, so dropping in the kernel changes no verdict.
fn prefilter(
    set: &PolicySet,
    rule_ids: &HashMap<(usize, PolicyType, Option<usize>), RuleId>,
) -> Vec<(IpPrefix, RuleId)> {
    let mut out = Vec::new();
    for (pi, p) in set
        .policies
        .iter()
        .enumerate()
        .filter(|(_, p)| p.do_not_track && p.types.contains(&PolicyType::Ingress))
    {
        let all = p.applies.namespace.is_none()
            && p.applies.selector.is_all()
            && p.applies.namespace_selector.is_none();
        for (ri, r) in p.ingress.iter().enumerate() {
            let only_nets = r.protocol.is_none()
                && r.not_protocol.is_none()
                && r.icmp.is_none()
                && r.not_icmp.is_none()
                && r.ip_version.is_none()
                && unconstrained(&r.destination)
                && !r.source.nets.is_empty()
                && unconstrained(&Entity {
                    nets: Vec::new(),
                    ..r.source.clone()
                });
            match r.action {
                Action::Log => continue,
                Action::Deny if only_nets && all => {
                    let id = rule_ids
                        .get(&(pi, PolicyType::Ingress, Some(ri)))
                        .copied()
                        .unwrap_or(RuleId::MAX);
                    out.extend(r.source.nets.iter().map(|n| (*n, id)));
                }
                _ => return out,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
