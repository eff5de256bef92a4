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
//! A selector that selects many host addresses (at least
//! [`SET_THRESHOLD`]) is not resolved into one cube per address: the
//! rule's cubes leave that side's address open and carry a constraint to
//! an address set ([`SetMatch`]) that the program holds once. The set
//! takes the selector's identity (its text and scope), so a pod that joins
//! or leaves it changes the set's contents and no program.
//!
//! Compiling again after a change resolves and rebuilds only what the
//! change touched (see [`Cache`]): a program whose inputs are all the same
//! is reused as it is; one whose inputs changed has its rules resolved,
//! and is rebuilt only if the resolved rules differ.
//!
//! The set resolution below deliberately does not share code with the
//! reference evaluator ([`super::eval`]): the two are compared in tests.

use std::{
    cell::RefCell,
    collections::HashMap,
    hash::{Hash, Hasher},
    net::IpAddr,
    sync::Arc,
};

use causeway_dataplane::{
    policy::{
        classifier::{Classifier, Prefix, Rule as Cube, RuleIndex},
        program::{
            Action as DpAction, AddrSet, EndpointPrograms, PolicyProgram, Program, RuleId,
            RuleMeta, SetMatch, Side, TierProgram, TierRule,
        },
    },
    route::IpPrefix,
};

use super::{
    model::{Action, IcmpFields, PolicyType, Port, Protocol},
    normalize::{Entity, NRule, Policy, PolicySet, Scope, Selected, Tier},
    selector::Selector,
};

mod world;

/// A selector that selects at least this many addresses, all of them
/// hosts, is matched as an address set rather than one cube per address.
/// Below it the addresses stay in the classifier, where a lookup finds
/// them in one probe with no walk past non-members; at and above it, a
/// program's size and a membership change's cost stop growing with the
/// selector.
pub const SET_THRESHOLD: usize = 32;

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
    /// Programs whose rules were resolved (selectors, nets, ports) because
    /// an input of theirs changed; the others were reused without.
    pub resolved: usize,
    /// Programs reused with their rule ids renumbered (their classifiers
    /// shared), because a policy walked before theirs gained or lost
    /// rules; counted in `reused` too.
    pub renumbered: usize,
    /// Whether the last compile's programs, rule table and rule ids were
    /// carried whole and only endpoints moved between its programs (a pod
    /// relabelled: see [`Last`]); its programs count as reused.
    pub carried: bool,
}

/// What the previous compile built, to reuse.
///
/// A program is found by its inputs first: its direction, the tiers and
/// policies it walks (each policy's content and the rule ids it was given),
/// whether it has tier defaults, the endpoint's addresses when a rule
/// constrains them and, when a rule has a selector, the addresses each
/// selector resolved to, and when it has a named port, the endpoints'
/// ports. When all of these are the same the program is reused without
/// resolving a rule. Otherwise its rules are resolved and the program is
/// found by content (the resolved cubes, compared in full).
///
/// Beside the programs it keeps which policies apply to which endpoint
/// and what each selector resolved to ([`world`]), so that a compile
/// after one endpoint changed judges that endpoint, not every pair.
#[derive(Debug, Default)]
pub struct Cache {
    by_inputs: rustc_hash::FxHashMap<InputKey, Cached>,
    by_content: HashMap<u64, (Vec<Cubes>, Arc<Program>)>,
    /// The previous compile's endpoints, network sets and namespaces.
    world: world::World,
    /// Which policies apply to which endpoint.
    applicability: world::Applicability,
    /// What the previous compile's selectors resolved to.
    selected: HashMap<String, Selected>,
    /// The previous compile's rule count (the next one is likely alike).
    rules: usize,
    /// Address-set ids by selector identity, kept while a program uses them.
    set_ids: SetIds,
    /// The previous compile's sets: their addresses and the set built.
    set_content: HashMap<u32, (Arc<Vec<Prefix>>, Arc<AddrSet>)>,
    /// [`SET_THRESHOLD`] unless set ([`Cache::with_set_threshold`]).
    set_threshold: Option<usize>,
    /// What the last compile made, whole, for a compile that can carry it.
    last: Option<Last>,
}

/// What a compile made, kept whole for the next one. When no tier,
/// namespace, network set or selector resolution changed, no endpoint
/// came, went or changed its addresses, and every policy is the same or
/// edited in place ([`edited_in_place`]: its rules' contents changed, not
/// their number, its tier, order or whom it applies to), the rule table
/// and every rule id stand, and so does every program but those that walk
/// an edited policy. An endpoint relabelled moves to the program of its
/// new list of policies, which some other endpoint already runs; a policy
/// whose port moved rebuilds the programs that walk it. In a cluster of
/// 10 000 pods either change then costs what it changed, not a walk of
/// every program's inputs.
#[derive(Debug)]
struct Last {
    /// The policies it compiled (a store's state shares an unchanged
    /// policy's allocation from one state to the next).
    policies: Vec<Arc<Policy>>,
    tiers: Vec<Tier>,
    /// Each list of applicable policies' programs in each direction, by
    /// the list's address; the list is held, so that no other list takes
    /// the address while it is a key.
    by_list: rustc_hash::FxHashMap<usize, (Arc<[usize]>, [ListPrograms; 2])>,
    /// Whether two endpoints held one address (the last one's program
    /// wins it): then a move is not a patch of one claim, and the compile
    /// runs whole.
    shared_addresses: bool,
    endpoints: HashMap<u128, EndpointPrograms, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>,
    programs: Vec<Arc<Program>>,
    rules: Arc<[RuleMeta]>,
    /// [`Compiler::rule_base`] and [`Compiler::tier_defaults`]: where each
    /// policy's and tier's rules are in `rules`.
    rule_base: Vec<[Option<RuleId>; 2]>,
    tier_defaults: HashMap<(String, PolicyType), RuleId>,
    untracked: Vec<u32>,
    sets: Vec<Arc<AddrSet>>,
    prefilter: Vec<(IpPrefix, RuleId)>,
}

/// What carrying [`Last`] to a new set takes.
struct Carry {
    /// The endpoints (by position) whose list of policies changed, with
    /// the programs of their new lists.
    claims: Vec<(usize, EndpointPrograms)>,
    /// The policies (by index) edited in place.
    edited: Vec<usize>,
    /// The programs that walk an edited policy, to rebuild: the index,
    /// the direction and the policies it walks.
    rebuild: Vec<(u32, PolicyType, Vec<usize>)>,
}

impl Last {
    /// The program this compile made, for the workers (it shares every
    /// program, the rule table and the sets with this `Last`).
    fn program(&self, generation: u64) -> PolicyProgram {
        PolicyProgram {
            generation,
            endpoints: self.endpoints.clone(),
            programs: self.programs.clone(),
            rules: self.rules.clone(),
            untracked: self.untracked.clone(),
            sets: self.sets.clone(),
        }
    }

    /// How `set` is this compile's carried, or `None` when it cannot be
    /// (see [`Last`]) and the compile must run whole. `applicable` is the
    /// applicability's lists and `in_place` whether it judged only the
    /// endpoints that moved.
    fn carry(
        &self,
        set: &PolicySet,
        changes: &world::Changes,
        applicable: &[Arc<[usize]>],
        in_place: bool,
    ) -> Option<Carry> {
        let moved = changes.moved()?;
        if !in_place
            || changes.namespaces_changed()
            || self.shared_addresses
            || self.policies.len() != set.policies.len()
            || self.tiers != set.tiers
            || changes
                .changed()
                .iter()
                .any(|(before, after)| before.ips != after.ips)
        {
            return None;
        }
        let mut edited = Vec::new();
        for (i, (old, new)) in self.policies.iter().zip(&set.policies).enumerate() {
            if !Arc::ptr_eq(old, new) {
                if !edited_in_place(old, new) {
                    return None;
                }
                edited.push(i);
            }
        }
        let program = |l: &ListPrograms| match l {
            ListPrograms::None => Some(None),
            ListPrograms::Program(p) => Some(Some(*p)),
            ListPrograms::PerEndpoint => None,
        };
        let mut claims = Vec::with_capacity(moved.len());
        for &i in moved {
            let list = Arc::as_ptr(applicable.get(i)?).cast::<usize>() as usize;
            let (_, [ingress, egress]) = self.by_list.get(&list)?;
            claims.push((
                i,
                EndpointPrograms {
                    ingress: program(ingress)?,
                    egress: program(egress)?,
                },
            ));
        }
        let mut rebuild = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (list, programs) in self.by_list.values().filter(|_| !edited.is_empty()) {
            for (direction, walked) in [PolicyType::Ingress, PolicyType::Egress]
                .into_iter()
                .zip(programs)
            {
                let has = |p: &usize| set.policies[*p].types.contains(&direction);
                if !edited
                    .iter()
                    .any(|p| has(p) && list.binary_search(p).is_ok())
                {
                    continue;
                }
                let Some(index) = program(walked)? else {
                    // A list with an edited policy of this direction has
                    // a program in it.
                    return None;
                };
                if seen.insert(index) {
                    rebuild.push((index, direction, list.iter().copied().filter(has).collect()));
                }
            }
        }
        Some(Carry {
            claims,
            edited,
            rebuild,
        })
    }
}

/// Whether `new` is `old` with only its rules' contents changed: the same
/// id, tier, order, directions and number of rules in each (so the same
/// rule ids), whom it applies to, tracked, and whether a rule constrains
/// the endpoint's own addresses.
fn edited_in_place(old: &Policy, new: &Policy) -> bool {
    old.id == new.id
        && old.tier == new.tier
        && old.order == new.order
        && old.applies == new.applies
        && old.types == new.types
        && !old.do_not_track
        && !new.do_not_track
        && old.local_constrained == new.local_constrained
        && old.ingress.len() == new.ingress.len()
        && old.egress.len() == new.egress.len()
}

/// [`compile`] by carrying `last` as `carry` says.
fn carried(
    set: &PolicySet,
    generation: u64,
    cache: &mut Cache,
    mut last: Last,
    carry: Carry,
) -> Compiled {
    for (i, programs) in carry.claims {
        for ip in &set.endpoints[i].ips {
            last.endpoints.insert(to_u128(*ip), programs);
        }
    }
    let (mut built, mut resolved) = (0, 0);
    if !carry.rebuild.is_empty() {
        let mut c = Compiler::new(set, cache, true);
        let mut rules = last.rules.to_vec();
        for &pi in &carry.edited {
            for direction in [PolicyType::Ingress, PolicyType::Egress] {
                let Some(base) = last.rule_base[pi][dir_index(direction)] else {
                    continue;
                };
                for (ri, rule) in rules_of(&set.policies[pi], direction).iter().enumerate() {
                    rules[base as usize + ri].action = dp_action(rule.action);
                }
            }
        }
        c.rules = rules;
        c.rule_base = std::mem::take(&mut last.rule_base);
        c.tier_defaults = std::mem::take(&mut last.tier_defaults);
        for (index, direction, policies) in &carry.rebuild {
            let at = c.program(policies, *direction, None, true);
            last.programs[*index as usize] = c.programs[at as usize].clone();
        }
        // The programs not rebuilt keep their entries, and their sets.
        for (key, cached) in std::mem::take(&mut c.previous) {
            if let Some(reads) = &cached.reads {
                c.carried_sets
                    .borrow_mut()
                    .extend(reads.selected.iter().filter_map(|s| match s {
                        Resolved::Set(id) => Some(*id),
                        Resolved::Addrs(_) => None,
                    }));
            }
            c.next.entry(key).or_insert(cached);
        }
        let live: std::collections::HashSet<u64> = c.next.values().map(|c| c.content).collect();
        for (content, entry) in std::mem::take(&mut c.previous_content) {
            if live.contains(&content) {
                c.next_content.entry(content).or_insert(entry);
            }
        }
        last.sets = c.sets(&mut cache.set_content);
        (built, resolved) = (c.built, c.resolved);
        last.rules = c.rules.into();
        last.rule_base = c.rule_base;
        last.tier_defaults = c.tier_defaults;
        cache.set_ids = c.set_ids.take();
        cache.rules = last.rules.len();
        cache.by_inputs = c.next;
        cache.by_content = c.next_content;
    }
    last.policies.clone_from(&set.policies);
    cache.selected = std::mem::take(&mut *set.memo.selected.lock().expect("not poisoned"));
    let compiled = Compiled {
        program: last.program(generation),
        prefilter: last.prefilter.clone(),
        built,
        reused: last.programs.len() - built,
        resolved,
        renumbered: 0,
        carried: true,
    };
    cache.last = Some(last);
    compiled
}

impl Cache {
    /// A cache whose compiles match selectors of at least `threshold`
    /// addresses as address sets (0: never), for tests and benches.
    pub fn with_set_threshold(threshold: usize) -> Self {
        Self {
            set_threshold: Some(threshold),
            ..Self::default()
        }
    }
}

/// Stable ids for address sets: a selector's identity keeps its id from
/// compile to compile while some program uses it; an id no program of a
/// compile used is free for another selector.
#[derive(Debug, Default)]
struct SetIds {
    by_key: HashMap<String, u32>,
    free: Vec<u32>,
    next: u32,
}

impl SetIds {
    fn id(&mut self, key: &str) -> u32 {
        if let Some(id) = self.by_key.get(key) {
            return *id;
        }
        let id = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.by_key.insert(key.to_owned(), id);
        id
    }

    /// Frees every id not in `used`.
    fn keep(&mut self, used: &HashMap<u32, Arc<Vec<Prefix>>>) {
        let free = &mut self.free;
        self.by_key.retain(|_, id| {
            let keep = used.contains_key(id);
            if !keep {
                free.push(*id);
            }
            keep
        });
    }
}

/// How a selector is matched: as the addresses it selects, or as an
/// address set.
#[derive(Debug, Clone, PartialEq)]
enum Resolved {
    Addrs(Arc<Vec<Prefix>>),
    Set(u32),
}

/// How a program is looked up in [`Cache::by_inputs`]: the direction,
/// whether it has tier defaults (the untracked programs do not), the
/// endpoint's addresses when they constrain its rules, and its policies'
/// ids in walk order, hashed (the ids of a program's policies are a few
/// hundred bytes, and a compile looks up every program). The lookup is
/// then confirmed against [`Cached`]: two lists of ids that hash alike
/// find each other's program, which fails the check and is only where a
/// rebuild starts.
type InputKey = (PolicyType, bool, Option<Vec<IpAddr>>, u64);

/// A cached program and everything it was built from.
#[derive(Debug)]
struct Cached {
    tiers: Vec<TierInput>,
    /// What its rules read of the world, if anything.
    reads: Option<Reads>,
    content: u64,
    program: Arc<Program>,
}

/// One tier of a program's inputs.
#[derive(Debug)]
struct TierInput {
    tier: Tier,
    /// The tier's default rule, if the program has defaults.
    default: Option<RuleId>,
    /// The tier's policies in order, each with its first rule's id (a
    /// policy's rules in one direction have consecutive ids).
    policies: Vec<(Arc<Policy>, RuleId)>,
}

/// Whether two programs' inputs are the same but for their rule ids:
/// same tiers, with a default rule or not alike, same policies (the same
/// allocation, or equal).
fn same_policies(a: &[TierInput], b: &[TierInput]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            a.tier == b.tier
                && a.default.is_some() == b.default.is_some()
                && a.policies.len() == b.policies.len()
                && a.policies
                    .iter()
                    .zip(&b.policies)
                    .all(|(x, y)| Arc::ptr_eq(&x.0, &y.0) || *x.0 == *y.0)
        })
}

/// Whether two programs' inputs, already [`same_policies`], give their
/// rules the same ids.
fn same_ids(a: &[TierInput], b: &[TierInput]) -> bool {
    a.iter().zip(b).all(|(a, b)| {
        a.default == b.default && a.policies.iter().zip(&b.policies).all(|(x, y)| x.1 == y.1)
    })
}

/// The ids of one tier of a program moved from `old`'s to `new`'s (the
/// two [`same_policies`]): `(first old id, count, first new id)` for each
/// run of consecutive ids, the default rule as a run of one.
fn id_moves(
    old: &TierInput,
    new: &TierInput,
    direction: PolicyType,
) -> Vec<(RuleId, RuleId, RuleId)> {
    let mut moves: Vec<(RuleId, RuleId, RuleId)> = old
        .policies
        .iter()
        .zip(&new.policies)
        .map(|((policy, from), (_, to))| (*from, rules_of(policy, direction).len() as RuleId, *to))
        .collect();
    if let (Some(from), Some(to)) = (old.default, new.default) {
        moves.push((from, 1, to));
    }
    moves
}

/// `id` moved by `moves` ([`id_moves`]).
fn moved(moves: &[(RuleId, RuleId, RuleId)], id: RuleId) -> RuleId {
    moves
        .iter()
        .find(|(from, count, _)| (*from..from + count).contains(&id))
        .map_or(id, |(from, _, to)| to + (id - from))
}

/// What a program's rules read of the world when they were resolved: how
/// each selector resolved (its addresses, or the set standing for them; in
/// the order its rules name them) and, if a rule names a port, the ports
/// epoch ([`world::World::ports_epoch`]). A selector matched as a set reads
/// only the set's id: its members may change under the program.
#[derive(Debug, PartialEq)]
struct Reads {
    selected: Vec<Resolved>,
    ports_epoch: Option<u64>,
}

/// Whether two [`Reads`] read the same (the same allocation, or equal).
fn same_reads(a: &Reads, b: &Reads) -> bool {
    a.ports_epoch == b.ports_epoch
        && a.selected.len() == b.selected.len()
        && a.selected
            .iter()
            .zip(&b.selected)
            .all(|(x, y)| match (x, y) {
                (Resolved::Addrs(x), Resolved::Addrs(y)) => Arc::ptr_eq(x, y) || x == y,
                (Resolved::Set(x), Resolved::Set(y)) => x == y,
                _ => false,
            })
}

/// A tier's classifier rules in order: the cube, what it does, the rule it
/// stands for and the set constraints it carries.
type Cubes = Vec<(Cube, DpAction, RuleId, Vec<SetMatch>)>;

/// What makes two endpoints share a program: the direction, the applicable
/// policies, and the endpoint's addresses when a rule constrains them.
type Signature = (PolicyType, Vec<usize>, Option<Vec<IpAddr>>);

/// What the endpoints of one list of applicable policies get in one
/// direction.
#[derive(Debug, Clone, Copy)]
enum ListPrograms {
    /// No program: no policy of the list has the direction.
    None,
    /// This program.
    Program(u32),
    /// A program per endpoint: a rule constrains the endpoint's addresses.
    PerEndpoint,
}

/// Compiles `set` into generation `generation`, reusing `cache`.
pub fn compile(set: &PolicySet, generation: u64, cache: &mut Cache) -> Compiled {
    let epoch = cache.world.ports_epoch;
    let changes = cache.world.update(set);
    let kept_all = world::carry_selected(set, &changes, std::mem::take(&mut cache.selected));
    let applicable =
        cache
            .applicability
            .applicable(set, changes.namespaces_changed(), changes.moved());
    let reads_kept = kept_all && cache.world.ports_epoch == epoch;
    let in_place = cache.applicability.in_place();
    if reads_kept
        && let Some(last) = cache.last.take()
        && let Some(carry) = last.carry(set, &changes, &applicable, in_place)
    {
        return carried(set, generation, cache, last, carry);
    }
    // Dropped before the compile: it holds the lists' addresses.
    cache.last = None;
    let mut c = Compiler::new(set, cache, reads_kept);
    let mut signatures: rustc_hash::FxHashMap<Signature, u32> = rustc_hash::FxHashMap::default();
    // By list (endpoints with the same policies share its allocation) and
    // direction: the program, when the endpoint's addresses do not change
    // it.
    let mut by_list: rustc_hash::FxHashMap<(usize, PolicyType), ListPrograms> =
        rustc_hash::FxHashMap::default();
    // The lists `by_list` has keys for, held for the next compile.
    let mut lists: Vec<Arc<[usize]>> = Vec::new();
    // Each endpoint's programs by direction, then by address.
    let mut programs_of: Vec<[Option<u32>; 2]> = vec![[None; 2]; set.endpoints.len()];
    for direction in [PolicyType::Ingress, PolicyType::Egress] {
        for ((ep, all), programs) in set
            .endpoints
            .iter()
            .zip(applicable.iter())
            .zip(&mut programs_of)
        {
            let at = (Arc::as_ptr(all).cast::<usize>() as usize, direction);
            let known = by_list.get(&at).copied();
            let index = match known {
                Some(ListPrograms::None) => continue,
                Some(ListPrograms::Program(i)) => Some(i),
                Some(ListPrograms::PerEndpoint) | None => None,
            };
            let index = match index {
                Some(i) => i,
                None => {
                    let applicable: Vec<usize> = all
                        .iter()
                        .copied()
                        .filter(|&i| set.policies[i].types.contains(&direction))
                        .collect();
                    if direction == PolicyType::Ingress {
                        lists.push(all.clone());
                    }
                    if applicable.is_empty() {
                        by_list.insert(at, ListPrograms::None);
                        continue;
                    }
                    let local_specific = applicable
                        .iter()
                        .any(|&i| set.policies[i].local_constrained[dir_index(direction)]);
                    let sig = (
                        direction,
                        applicable,
                        local_specific.then(|| ep.ips.clone()),
                    );
                    let index = match signatures.get(&sig) {
                        Some(i) => *i,
                        None => {
                            let i = c.program(&sig.1, direction, sig.2.as_deref(), true);
                            signatures.insert(sig, i);
                            i
                        }
                    };
                    by_list.insert(
                        at,
                        if local_specific {
                            ListPrograms::PerEndpoint
                        } else {
                            ListPrograms::Program(index)
                        },
                    );
                    index
                }
            };
            programs[dir_index(direction)] = Some(index);
        }
    }
    // Every endpoint's addresses are claimed, with policy or without: the
    // dataplane's unclaimed default (`policy.unclaimed`) reads the map. An
    // address two endpoints hold (not from a store) takes the last one's
    // program in each direction it has one.
    let mut endpoints: HashMap<u128, EndpointPrograms, _> =
        HashMap::with_capacity_and_hasher(set.endpoints.len(), Default::default());
    let mut claims = 0;
    for (ep, [ingress, egress]) in set.endpoints.iter().zip(programs_of) {
        for ip in &ep.ips {
            let e = endpoints.entry(to_u128(*ip)).or_default();
            e.ingress = ingress.or(e.ingress);
            e.egress = egress.or(e.egress);
            claims += 1;
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
        untracked.push(c.program(&own, direction, None, false));
    }
    let prefilter = prefilter(set, &c.rule_base);
    let sets = c.sets(&mut cache.set_content);
    cache.set_ids = c.set_ids.take();
    cache.rules = c.rules.len();
    // The set is compiled once: what its compile resolved moves to the
    // next.
    cache.selected = std::mem::take(&mut *set.memo.selected.lock().expect("not poisoned"));
    cache.by_inputs = c.next;
    cache.by_content = c.next_content;
    let rules: Arc<[RuleMeta]> = c.rules.into();
    let by_list = lists
        .into_iter()
        .filter_map(|list| {
            let at = Arc::as_ptr(&list).cast::<usize>() as usize;
            let of = |d| by_list.get(&(at, d)).copied();
            Some((
                at,
                (list, [of(PolicyType::Ingress)?, of(PolicyType::Egress)?]),
            ))
        })
        .collect();
    let last = Last {
        policies: set.policies.clone(),
        tiers: set.tiers.clone(),
        by_list,
        shared_addresses: claims != endpoints.len(),
        endpoints,
        programs: c.programs,
        rules,
        rule_base: c.rule_base,
        tier_defaults: c.tier_defaults,
        untracked,
        sets,
        prefilter,
    };
    let compiled = Compiled {
        program: last.program(generation),
        prefilter: last.prefilter.clone(),
        built: c.built,
        reused: c.reused,
        resolved: c.resolved,
        renumbered: c.renumbered,
        carried: false,
    };
    cache.last = Some(last);
    compiled
}

fn rules_of(p: &Policy, d: PolicyType) -> &[NRule] {
    match d {
        PolicyType::Ingress => &p.ingress,
        PolicyType::Egress => &p.egress,
    }
}

/// The index of a direction in per-direction arrays.
fn dir_index(d: PolicyType) -> usize {
    match d {
        PolicyType::Ingress => 0,
        PolicyType::Egress => 1,
    }
}

/// One compile's state: the rule table it fills as it goes, the programs
/// it made, and the previous compile's programs it may reuse.
struct Compiler<'a> {
    set: &'a PolicySet,
    /// Every rule, by id.
    rules: Vec<RuleMeta>,
    /// By policy index and direction: the id of the policy's first rule,
    /// once given (a policy's rules get consecutive ids the first time a
    /// program walks it).
    rule_base: Vec<[Option<RuleId>; 2]>,
    tier_defaults: HashMap<(String, PolicyType), RuleId>,
    programs: Vec<Arc<Program>>,
    previous: rustc_hash::FxHashMap<InputKey, Cached>,
    previous_content: HashMap<u64, (Vec<Cubes>, Arc<Program>)>,
    next: rustc_hash::FxHashMap<InputKey, Cached>,
    next_content: HashMap<u64, (Vec<Cubes>, Arc<Program>)>,
    ports_epoch: u64,
    /// Whether every selector resolves as in the previous compile (every
    /// resolution carried, the ports epoch unchanged): then a cached
    /// program of the same policies reads what it read, unchecked.
    reads_kept: bool,
    /// The address sets of programs reused unchecked ([`Compiler::reads_kept`]):
    /// kept, with the addresses the previous compile gave them.
    carried_sets: RefCell<Vec<u32>>,
    /// [`SET_THRESHOLD`], or the cache's own.
    set_threshold: usize,
    set_ids: RefCell<SetIds>,
    /// How each selector identity resolved in this compile.
    resolutions: RefCell<HashMap<String, Resolved>>,
    /// How each rule side's selector resolved in this compile, by the
    /// addresses of the side and the selector (the set is borrowed for the
    /// whole compile, so they are stable and unique).
    by_side: RefCell<rustc_hash::FxHashMap<(usize, usize), Resolved>>,
    /// The sets this compile's programs use, with their addresses.
    used_sets: RefCell<HashMap<u32, Arc<Vec<Prefix>>>>,
    built: usize,
    reused: usize,
    resolved: usize,
    renumbered: usize,
}

impl<'a> Compiler<'a> {
    /// A compile of `set` that may reuse what `cache` kept (taken from it
    /// for the compile); `reads_kept`: see [`Compiler::reads_kept`].
    fn new(set: &'a PolicySet, cache: &mut Cache, reads_kept: bool) -> Self {
        Compiler {
            set,
            rules: Vec::with_capacity(cache.rules),
            rule_base: vec![[None; 2]; set.policies.len()],
            tier_defaults: HashMap::new(),
            programs: Vec::new(),
            previous: std::mem::take(&mut cache.by_inputs),
            previous_content: std::mem::take(&mut cache.by_content),
            next: rustc_hash::FxHashMap::default(),
            next_content: HashMap::new(),
            ports_epoch: cache.world.ports_epoch,
            reads_kept,
            carried_sets: RefCell::default(),
            set_threshold: cache.set_threshold.unwrap_or(SET_THRESHOLD),
            set_ids: RefCell::new(std::mem::take(&mut cache.set_ids)),
            resolutions: RefCell::new(HashMap::new()),
            by_side: RefCell::default(),
            used_sets: RefCell::new(HashMap::new()),
            built: 0,
            reused: 0,
            resolved: 0,
            renumbered: 0,
        }
    }

    /// How `sel` on rule side `e` is matched: as an address set when it
    /// selects at least [`Compiler::set_threshold`] host addresses and the
    /// side names no named port (those resolve per selected endpoint),
    /// else as its addresses.
    fn resolve(&self, sel: &Selector, e: &Entity) -> Resolved {
        // Most calls are for a rule side already seen in this compile
        // (every cached program's reads are checked): found by address,
        // without writing out the selector's key.
        let at = (
            std::ptr::from_ref(e) as usize,
            std::ptr::from_ref(sel) as usize,
        );
        if let Some(r) = self.by_side.borrow().get(&at) {
            return r.clone();
        }
        let r = self.resolve_keyed(sel, e);
        self.by_side.borrow_mut().insert(at, r.clone());
        r
    }

    /// [`Compiler::resolve`], by the selector's key.
    fn resolve_keyed(&self, sel: &Selector, e: &Entity) -> Resolved {
        let key = selector_key(sel, e.scope.as_ref());
        if e.ports
            .iter()
            .chain(&e.not_ports)
            .any(|p| matches!(p, Port::Named(_)))
        {
            return Resolved::Addrs(selected(self.set, &key, sel, e.scope.as_ref()));
        }
        if let Some(r) = self.resolutions.borrow().get(&key) {
            return r.clone();
        }
        let addrs = selected(self.set, &key, sel, e.scope.as_ref());
        let as_set = self.set_threshold > 0
            && addrs.len() >= self.set_threshold
            && addrs.iter().all(|p| p.len == 128);
        let r = if as_set {
            let id = self.set_ids.borrow_mut().id(&key);
            self.used_sets.borrow_mut().insert(id, addrs);
            Resolved::Set(id)
        } else {
            Resolved::Addrs(addrs)
        };
        self.resolutions.borrow_mut().insert(key, r.clone());
        r
    }

    /// The program's address sets by id, reusing `previous`'s where their
    /// addresses are the same; frees the ids no program used and leaves
    /// this compile's sets in `previous`.
    fn sets(
        &self,
        previous: &mut HashMap<u32, (Arc<Vec<Prefix>>, Arc<AddrSet>)>,
    ) -> Vec<Arc<AddrSet>> {
        let mut used = self.used_sets.borrow_mut();
        for id in self.carried_sets.borrow().iter() {
            if !used.contains_key(id)
                && let Some((addrs, _)) = previous.get(id)
            {
                used.insert(*id, addrs.clone());
            }
        }
        self.set_ids.borrow_mut().keep(&used);
        let len = used.keys().max().map_or(0, |m| *m as usize + 1);
        let empty = Arc::new(AddrSet::default());
        let mut sets = vec![empty; len];
        let mut next = HashMap::with_capacity(used.len());
        for (id, addrs) in used.iter() {
            let set = match previous.remove(id) {
                Some((a, s)) if Arc::ptr_eq(&a, addrs) || a == *addrs => s,
                _ => Arc::new(addrs.iter().map(|p| p.addr).collect()),
            };
            sets[*id as usize] = set.clone();
            next.insert(*id, (addrs.clone(), set));
        }
        *previous = next;
        sets
    }

    /// The program walking `policies` (indices into the set, in order) in
    /// `direction`, for an endpoint with addresses `local` when its rules
    /// constrain them; `with_defaults`: each tier ends with its default
    /// rule. Gives the rules their ids, then reuses the previous compile's
    /// program when its inputs are the same, or resolves the rules and
    /// reuses or builds by content. Returns the program's index.
    fn program(
        &mut self,
        policies: &[usize],
        direction: PolicyType,
        local: Option<&[IpAddr]>,
        with_defaults: bool,
    ) -> u32 {
        let (tiers, order) = self.inputs(policies, direction, with_defaults);
        let ids = {
            use std::hash::{Hash as _, Hasher as _};
            let mut h = rustc_hash::FxHasher::default();
            for &pi in &order {
                self.set.policies[pi].id.hash(&mut h);
            }
            h.finish()
        };
        let key: InputKey = (direction, with_defaults, local.map(<[IpAddr]>::to_vec), ids);
        // The same policies read the world or not alike: a cached program
        // that read it is valid if what it read reads the same now.
        let mut reads_now = None;
        let candidate = self.previous.remove(&key);
        let valid = candidate.as_ref().is_some_and(|c| {
            same_policies(&c.tiers, &tiers)
                && c.reads.as_ref().is_none_or(|r| {
                    if self.reads_kept {
                        self.carried_sets
                            .borrow_mut()
                            .extend(r.selected.iter().filter_map(|s| match s {
                                Resolved::Set(id) => Some(*id),
                                Resolved::Addrs(_) => None,
                            }));
                        return true;
                    }
                    reads_now = self.reads(&tiers, direction);
                    reads_now.as_ref().is_some_and(|now| same_reads(r, now))
                })
        });
        // A stale program of the same policies is where a rebuild starts.
        let (hit, stale) = if valid {
            (candidate, None)
        } else {
            (None, candidate)
        };
        // Only the ids moved (a policy walked before these gained or lost
        // rules): the same classifiers, with the ids renumbered.
        let hit = match hit {
            Some(c) if !same_ids(&c.tiers, &tiers) => {
                let renumbered = self.renumbered(c, &tiers, direction);
                self.renumbered += usize::from(renumbered.is_some());
                renumbered
            }
            hit => hit,
        };
        let (reads, content, program) = match hit {
            Some(c) => {
                self.reused += 1;
                if !self.next_content.contains_key(&c.content)
                    && let Some(entry) = self.previous_content.remove(&c.content)
                {
                    self.next_content.insert(c.content, entry);
                }
                // What it read now, so the next compile compares with
                // the allocations it will find.
                (reads_now.or(c.reads), c.content, c.program)
            }
            None => {
                self.resolved += 1;
                let cubes: Vec<Cubes> = tiers
                    .iter()
                    .map(|t| self.tier_cubes(t, direction, local))
                    .collect();
                let content = content_key(&cubes);
                let found = match self.next_content.get(&content) {
                    Some((c, p)) if *c == cubes => Some(p.clone()),
                    _ => match self.previous_content.remove(&content) {
                        Some((c, p)) if c == cubes => Some(p),
                        _ => None,
                    },
                };
                let program = match found {
                    Some(p) => {
                        self.reused += 1;
                        p
                    }
                    None => {
                        self.built += 1;
                        Arc::new(self.build_program(&cubes, stale.as_ref()))
                    }
                };
                self.next_content
                    .entry(content)
                    .or_insert_with(|| (cubes, program.clone()));
                (self.reads(&tiers, direction), content, program)
            }
        };
        self.next.insert(
            key,
            Cached {
                tiers,
                reads,
                content,
                program: program.clone(),
            },
        );
        self.programs.push(program);
        (self.programs.len() - 1) as u32
    }

    /// `cached`, a program whose inputs are [`same_policies`] as `tiers`
    /// but whose rule ids differ, with the ids of `tiers`: its classifiers
    /// shared, its rule table and its cubes renumbered (and its content
    /// entry moved to the renumbered cubes). `None` if its cubes are not
    /// at hand (then it is resolved as a new program).
    fn renumbered(
        &mut self,
        cached: Cached,
        tiers: &[TierInput],
        direction: PolicyType,
    ) -> Option<Cached> {
        let cubes = match self.next_content.get(&cached.content) {
            Some((cubes, _)) => cubes.clone(),
            None => self.previous_content.remove(&cached.content)?.0,
        };
        // Found by hash: it must be this program's, tier for tier.
        if cubes.len() != tiers.len() || cubes.len() != cached.program.tiers.len() {
            return None;
        }
        let moves: Vec<_> = cached
            .tiers
            .iter()
            .zip(tiers)
            .map(|(old, new)| id_moves(old, new, direction))
            .collect();
        let cubes: Vec<Cubes> = cubes
            .into_iter()
            .zip(&moves)
            .map(|(tier, moves)| {
                tier.into_iter()
                    .map(|(cube, action, id, sets)| (cube, action, moved(moves, id), sets))
                    .collect()
            })
            .collect();
        let content = content_key(&cubes);
        let program = match self.next_content.get(&content) {
            Some((c, p)) if *c == cubes => p.clone(),
            _ => {
                let program = Arc::new(Program {
                    tiers: cached
                        .program
                        .tiers
                        .iter()
                        .zip(&moves)
                        .map(|(t, moves)| TierProgram {
                            classifier: t.classifier.clone(),
                            rules: t
                                .rules
                                .iter()
                                .map(|r| TierRule {
                                    id: moved(moves, r.id),
                                    ..r.clone()
                                })
                                .collect(),
                        })
                        .collect(),
                });
                self.next_content.insert(content, (cubes, program.clone()));
                program
            }
        };
        Some(Cached {
            tiers: Vec::new(),
            reads: cached.reads,
            content,
            program,
        })
    }

    /// The tiers and policies a program walks, with their rule ids (given
    /// here on first sight), and the policies in walk order.
    fn inputs(
        &mut self,
        policies: &[usize],
        direction: PolicyType,
        with_defaults: bool,
    ) -> (Vec<TierInput>, Vec<usize>) {
        let set = self.set;
        let dir_name = if direction == PolicyType::Ingress {
            "ingress"
        } else {
            "egress"
        };
        let mut tiers = Vec::new();
        let mut order = Vec::new();
        for tier in &set.tiers {
            let in_tier: Vec<usize> = policies
                .iter()
                .copied()
                .filter(|i| set.policies[*i].tier == tier.name)
                .collect();
            if in_tier.is_empty() {
                continue;
            }
            let mut walked = Vec::with_capacity(in_tier.len());
            let tier_name: Arc<str> = Arc::from(tier.name.as_str());
            for pi in in_tier {
                let policy = &set.policies[pi];
                let base = match self.rule_base[pi][dir_index(direction)] {
                    Some(b) => b,
                    None => {
                        let b = self.rules.len() as RuleId;
                        let policy_id: Arc<str> = Arc::from(policy.id.as_str());
                        for (ri, rule) in rules_of(policy, direction).iter().enumerate() {
                            self.rules.push(RuleMeta {
                                tier: tier_name.clone(),
                                policy: policy_id.clone(),
                                direction: dir_name,
                                index: Some(ri),
                                action: dp_action(rule.action),
                            });
                        }
                        self.rule_base[pi][dir_index(direction)] = Some(b);
                        b
                    }
                };
                walked.push((policy.clone(), base));
                order.push(pi);
            }
            let default = with_defaults.then(|| {
                let action = default_action(tier);
                *self
                    .tier_defaults
                    .entry((tier.name.clone(), direction))
                    .or_insert_with(|| {
                        self.rules.push(RuleMeta {
                            tier: tier_name.clone(),
                            policy: Arc::from(""),
                            direction: dir_name,
                            index: None,
                            action,
                        });
                        (self.rules.len() - 1) as RuleId
                    })
            });
            tiers.push(TierInput {
                tier: tier.clone(),
                default,
                policies: walked,
            });
        }
        (tiers, order)
    }

    /// The program of `tiers`' cubes. A tier whose cubes are those of
    /// `stale`'s tier but for a few changed in place (a policy's port
    /// moved) starts from a copy of that tier's classifier and updates the
    /// changed rules: a tier of 200 000 rules (50 policies that each allow
    /// from a selector of 4 000 pods) takes 60 ms to build, a copy and a
    /// few updates a fraction of that.
    fn build_program(&self, tiers: &[Cubes], stale: Option<&Cached>) -> Program {
        let old_cubes = stale.and_then(|s| {
            self.next_content
                .get(&s.content)
                .or_else(|| self.previous_content.get(&s.content))
                .map(|(cubes, _)| (cubes, &s.program))
        });
        Program {
            tiers: tiers
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let old = old_cubes.and_then(|(cubes, program)| {
                        Some((cubes.get(i)?, &program.tiers.get(i)?.classifier))
                    });
                    TierProgram {
                        classifier: tier_classifier(t, old),
                        rules: t
                            .iter()
                            .map(|(_, action, id, sets)| TierRule {
                                action: *action,
                                id: *id,
                                sets: sets.clone(),
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }

    /// What the rules of `tiers` read of the world now ([`Reads`]), or
    /// `None` if they read nothing of it.
    fn reads(&self, tiers: &[TierInput], direction: PolicyType) -> Option<Reads> {
        let mut reads = Reads {
            selected: Vec::new(),
            ports_epoch: None,
        };
        let rules = tiers
            .iter()
            .flat_map(|t| &t.policies)
            .flat_map(|(p, _)| rules_of(p, direction));
        for e in rules.flat_map(|r| [&r.source, &r.destination]) {
            for sel in [&e.selector, &e.not_selector].into_iter().flatten() {
                reads.selected.push(self.resolve(sel, e));
            }
            if e.ports
                .iter()
                .chain(&e.not_ports)
                .any(|p| matches!(p, Port::Named(_)))
            {
                reads.ports_epoch = Some(self.ports_epoch);
            }
        }
        (!reads.selected.is_empty() || reads.ports_epoch.is_some()).then_some(reads)
    }

    /// The cubes of one tier of a program: its policies' rules resolved,
    /// then its default rule.
    fn tier_cubes(&self, t: &TierInput, direction: PolicyType, local: Option<&[IpAddr]>) -> Cubes {
        let mut cubes = Vec::new();
        for (policy, base) in &t.policies {
            for (ri, rule) in rules_of(policy, direction).iter().enumerate() {
                let action = dp_action(rule.action);
                let id = base + ri as RuleId;
                let resolve = |sel: &Selector, e: &Entity| self.resolve(sel, e);
                let (expanded, sets) = expand(self.set, rule, direction, local, &resolve);
                for cube in expanded {
                    cubes.push((cube, action, id, sets.clone()));
                }
            }
        }
        if let Some(id) = t.default {
            cubes.push((
                Cube {
                    src: Prefix::ANY,
                    dst: Prefix::ANY,
                    proto: None,
                    sport: (0, 65535),
                    dport: (0, 65535),
                },
                default_action(&t.tier),
                id,
                Vec::new(),
            ));
        }
        cubes
    }
}

fn default_action(tier: &Tier) -> DpAction {
    if tier.default_action == Action::Pass {
        DpAction::Pass
    } else {
        DpAction::Deny
    }
}

fn dp_action(a: Action) -> DpAction {
    match a {
        Action::Allow => DpAction::Allow,
        Action::Deny => DpAction::Deny,
        Action::Pass => DpAction::Pass,
        Action::Log => DpAction::Log,
    }
}

/// A program's content hashed: a key to find candidates by, compared in
/// full after (so a fast, weak hash is enough).
fn content_key(tiers: &[Cubes]) -> u64 {
    // Lengths are hashed plus one: FxHasher's state stays 0 while it is
    // fed zeros, so programs of one, two or no empty tiers hashed alike.
    let mut h = rustc_hash::FxHasher::default();
    (tiers.len() + 1).hash(&mut h);
    for t in tiers {
        (t.len() + 1).hash(&mut h);
        for (c, a, id, sets) in t {
            (
                c.src.addr, c.src.len, c.dst.addr, c.dst.len, c.proto, c.sport, c.dport, a, id,
                sets,
            )
                .hash(&mut h);
        }
    }
    h.finish()
}

/// The classifier of one tier's cubes: `old`'s classifier copied and
/// updated where only a few cubes changed in place, else built afresh.
fn tier_classifier(cubes: &Cubes, old: Option<(&Cubes, &Arc<Classifier>)>) -> Arc<Classifier> {
    if let Some((old_cubes, old)) = old
        && old_cubes.len() == cubes.len()
    {
        let changed: Vec<usize> = (0..cubes.len())
            .filter(|&i| old_cubes[i].0 != cubes[i].0)
            .collect();
        if changed.is_empty() {
            return old.clone();
        }
        // Past an eighth changed, building afresh keeps the tables as
        // tight as a build makes them.
        if changed.len() * 8 <= cubes.len() {
            let mut c = Classifier::clone(old);
            for i in changed {
                let index = i as RuleIndex;
                c.remove(index);
                c.insert(index, cubes[i].0);
            }
            return Arc::new(c);
        }
    }
    let rules: Vec<Cube> = cubes.iter().map(|(c, ..)| *c).collect();
    Arc::new(Classifier::build(&rules))
}

/// How a rule side's selector is matched ([`Compiler::resolve`]).
type Resolve<'a> = dyn Fn(&Selector, &Entity) -> Resolved + 'a;

/// The cubes of one rule, and the set constraints every one of them
/// carries.
fn expand(
    set: &PolicySet,
    rule: &NRule,
    direction: PolicyType,
    local: Option<&[IpAddr]>,
    resolve: &Resolve<'_>,
) -> (Vec<Cube>, Vec<SetMatch>) {
    let family: Option<Vec<Prefix>> = match rule.ip_version {
        Some(4) => Some(vec![V4_MAPPED]),
        Some(6) => Some(subtract(&[Prefix::ANY], &[V4_MAPPED])),
        _ => None,
    };
    let protocols: Vec<Option<u8>> = match (rule.protocol, rule.not_protocol) {
        (Some(p), Some(np)) if p == np => return (Vec::new(), Vec::new()),
        (Some(p), _) => vec![Some(p.0)],
        (None, Some(np)) => (1..=255u8).filter(|p| *p != np.0).map(Some).collect(),
        (None, None) => vec![None],
    };
    let icmp = icmp_alternatives(rule.icmp, rule.not_icmp);
    let (src_local, dst_local) = match direction {
        PolicyType::Ingress => (None, local),
        PolicyType::Egress => (local, None),
    };
    let (src, src_sets) = side(
        set,
        &rule.source,
        rule.protocol,
        family.as_deref(),
        src_local,
        resolve,
    );
    let (dst, dst_sets) = side(
        set,
        &rule.destination,
        rule.protocol,
        family.as_deref(),
        dst_local,
        resolve,
    );
    let sets: Vec<SetMatch> = src_sets
        .into_iter()
        .map(|(set, member)| SetMatch {
            set,
            side: Side::Source,
            member,
        })
        .chain(dst_sets.into_iter().map(|(set, member)| SetMatch {
            set,
            side: Side::Destination,
            member,
        }))
        .collect();
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
    (out, sets)
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

/// The sets a rule side's address must be in (`true`) or not in (`false`).
type SideSets = Vec<(u32, bool)>;

/// Inclusive port ranges, any of which matches.
type PortRanges = Vec<(u16, u16)>;

/// One side of a rule: (address prefix, port ranges) alternatives, and the
/// sets the side's address must be in (`true`) or not in (`false`).
fn side(
    set: &PolicySet,
    e: &Entity,
    protocol: Option<Protocol>,
    family: Option<&[Prefix]>,
    local: Option<&[IpAddr]>,
    resolve: &Resolve<'_>,
) -> (Vec<(Prefix, PortRanges)>, SideSets) {
    let mut sets = Vec::new();
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
        match resolve(sel, e) {
            Resolved::Set(id) => sets.push((id, true)),
            Resolved::Addrs(selected) => addrs = intersect(&addrs, &selected),
        }
    }
    if !e.not_nets.is_empty() {
        addrs = subtract(
            &addrs,
            &e.not_nets.iter().map(to_prefix).collect::<Vec<_>>(),
        );
    }
    if let Some(sel) = &e.not_selector {
        match resolve(sel, e) {
            Resolved::Set(id) => sets.push((id, false)),
            Resolved::Addrs(selected) => addrs = subtract(&addrs, &selected),
        }
    }
    if addrs.is_empty() {
        return (Vec::new(), Vec::new());
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
    (out, sets)
}

/// A selector's identity in its scope: its memo key, and its address
/// set's.
fn selector_key(sel: &Selector, scope: Option<&Scope>) -> String {
    // Canonical forms (`Display`): a selector made from a Kubernetes
    // podSelector has no text of its own to tell it apart.
    format!(
        "{sel}\u{0}{}\u{0}{}",
        scope
            .and_then(|s| s.policy_namespace.as_deref())
            .unwrap_or("\u{1}"),
        scope
            .and_then(|s| s.namespace_selector.as_ref())
            .map_or_else(|| "\u{1}".to_owned(), ToString::to_string)
    )
}

/// The addresses of the endpoints and network sets `sel` selects in
/// `scope` (`key` is [`selector_key`]), worked out once per set
/// ([`PolicySet::memo`]).
fn selected(set: &PolicySet, key: &str, sel: &Selector, scope: Option<&Scope>) -> Arc<Vec<Prefix>> {
    if let Some(hit) = set.memo.selected.lock().expect("not poisoned").get(key) {
        return hit.addrs.clone();
    }
    let found = Arc::new(select(set, sel, scope));
    set.memo.selected.lock().expect("not poisoned").insert(
        key.to_owned(),
        Selected {
            selector: sel.clone(),
            scope: scope.cloned(),
            addrs: found.clone(),
        },
    );
    found
}

/// [`selected`], worked out: a scan of every endpoint and network set.
fn select(set: &PolicySet, sel: &Selector, scope: Option<&Scope>) -> Vec<Prefix> {
    let mut out = Vec::new();
    for ep in &set.endpoints {
        if world::selects(set, sel, scope, ep) {
            out.extend(ep.ips.iter().map(|ip| host(*ip)));
        }
    }
    let policy_ns = scope.and_then(|s| s.policy_namespace.as_deref());
    let ns_sel = scope.and_then(|s| s.namespace_selector.as_ref());
    let global_policy = policy_ns.is_none() && ns_sel.is_none();
    for n in &set.net_sets {
        let ok = match n.namespace.as_deref() {
            None => global_policy || world::visible(set, scope, None),
            Some(ns) => !global_policy && world::visible(set, scope, Some(ns)),
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
fn prefilter(set: &PolicySet, rule_base: &[[Option<RuleId>; 2]]) -> Vec<(IpPrefix, RuleId)> {
    let mut out = Vec::new();
    for (pi, ri, r) in prefilter_rules(set) {
        let id =
            rule_base[pi][dir_index(PolicyType::Ingress)].map_or(RuleId::MAX, |b| b + ri as RuleId);
        out.extend(r.source.nets.iter().map(|n| (*n, id)));
    }
    out
}

/// The entries the XDP prefilter holds (`PREFILTER_MAX` in
/// `dataplane/bpf/causeway.bpf.c`): a policy set that needs more cannot be
/// enforced, and is refused before it is committed.
pub const PREFILTER_CAPACITY: usize = 16_384;

/// Where a policy set first needs more prefilter entries than
/// [`PREFILTER_CAPACITY`]: the policy's id, the ingress rule's index, and
/// how many entries the whole set needs.
#[must_use]
pub fn prefilter_overflow(set: &PolicySet) -> Option<(String, usize, usize)> {
    let mut total = 0usize;
    let mut first = None;
    for (pi, ri, r) in prefilter_rules(set) {
        total += r.source.nets.len();
        if total > PREFILTER_CAPACITY && first.is_none() {
            first = Some((set.policies[pi].id.clone(), ri));
        }
    }
    first.map(|(id, ri)| (id, ri, total))
}

/// The rules [`prefilter`] takes (policy index, ingress rule index, rule).
fn prefilter_rules(set: &PolicySet) -> Vec<(usize, usize, &NRule)> {
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
                Action::Deny if only_nets && all => out.push((pi, ri, r)),
                _ => return out,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
