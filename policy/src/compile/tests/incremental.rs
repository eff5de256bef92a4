//! Incremental compiles against cold ones: after every change of a random
//! sequence (policy edits and deletes, endpoint labels, addresses and named
//! ports, network sets, namespace labels, tiers), compiling with the cache
//! the previous compiles left must produce exactly the program a compile
//! from scratch produces, and that program must agree with the reference
//! evaluator.
//!
//! The states are made as the appliance's store makes them ([`State`]: each
//! resource normalised once and kept), so that unchanged policies are
//! shared between the policy sets of successive states, as on a server; a
//! second cache compiles sets normalised afresh each time, where nothing
//! is shared and the cache must compare contents.

use causeway_dataplane::policy::{
    classifier::Rule as Cube,
    program::{Action as DpAction, AddrSet, Program, RuleId, RuleMeta, Side},
};
use proptest::{
    prelude::{ProptestConfig, any},
    proptest,
};

use std::{collections::BTreeMap, path::Path};

use super::*;
use crate::{
    load::{self, Loaded},
    normalize::Normal,
};

/// A desired state as the appliance's store (`causeway-control`'s
/// `Desired`) keeps one, in small: every resource by id with its normal
/// form, made when the resource arrives and kept while it is unchanged,
/// and a generation bumped by every change.
#[derive(Clone, Default)]
struct State {
    entries: BTreeMap<String, (Loaded, Normal)>,
    generation: u64,
}

impl State {
    /// The state with the resources in `text` added or replaced; `None`
    /// when they do not load or validate (a tier still in use, say), or
    /// change nothing.
    fn apply(&self, text: &str) -> Option<Self> {
        let loaded = load::load_str(text, Path::new("change.yaml")).ok()?;
        if !load::validate(&loaded).is_empty() {
            return None;
        }
        let mut next = self.clone();
        let mut changed = false;
        for l in loaded {
            let id = l.resource.id();
            if next
                .entries
                .get(&id)
                .is_some_and(|(old, _)| old.resource == l.resource)
            {
                continue;
            }
            let normal = Normal::of(&l.resource).ok()?;
            next.entries.insert(id, (l, normal));
            changed = true;
        }
        next.checked(changed)
    }

    /// The state without resource `id`, as [`State::apply`].
    fn delete(&self, id: &str) -> Option<Self> {
        let mut next = self.clone();
        let changed = next.entries.remove(id).is_some();
        next.checked(changed)
    }

    /// `self` as the next generation, if `changed` and its references hold.
    fn checked(mut self, changed: bool) -> Option<Self> {
        let all: Vec<&Loaded> = self.entries.values().map(|(l, _)| l).collect();
        if !changed || !load::validate_refs(&all).is_empty() {
            return None;
        }
        self.generation += 1;
        Some(self)
    }

    /// Its policy set, assembled from the kept normal forms.
    fn policy_set(&self) -> PolicySet {
        PolicySet::assemble(self.entries.values().map(|(_, n)| n))
    }
}

const NAMESPACES: &[&str] = &["ns0", "ns1", "ns2"];

fn labels(r: &mut Rng) -> String {
    let mut l = vec![format!(
        "app: {}",
        r.pick(&["web", "db", "cache", "dns", "legacy"])
    )];
    if r.chance(50) {
        l.push(format!("role: {}", r.pick(&["fe", "be"])));
    }
    format!("{{{}}}", l.join(", "))
}

fn namespace_doc(r: &mut Rng, ns: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{team: {}, env: {}}}\n",
        r.pick(&["a", "b"]),
        r.pick(&["prod", "dev"])
    )
}

/// Pod `k`, always in the same namespace (so it stays one resource): its
/// addresses are its own (10.0.0.k or 10.0.1.k, maybe fd00::k), so no two
/// endpoints share one.
fn pod_doc(r: &mut Rng, k: usize) -> String {
    let k = k + 1;
    let v4 = format!("10.0.{}.{k}", r.below(2));
    let ips = if r.chance(30) {
        format!("[{{ip: {v4}}}, {{ip: 'fd00::{k}'}}]")
    } else {
        format!("[{{ip: {v4}}}]")
    };
    let (pname, port, proto) = *r.pick(&[
        ("http", 80, "TCP"),
        ("http", 8080, "TCP"),
        ("pg", 5432, "TCP"),
        ("dns", 53, "UDP"),
    ]);
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod{k}\n  namespace: {}\n  labels: {}\nspec:\n  containers:\n  - name: c\n    ports: [{{name: {pname}, containerPort: {port}, protocol: {proto}}}]\nstatus:\n  podIPs: {ips}\n",
        NAMESPACES[k % NAMESPACES.len()],
        labels(r),
    )
}

/// Static endpoint `k`, always in the same namespace: 10.0.9.k or
/// 10.0.8.k.
fn static_doc(r: &mut Rng, k: usize) -> String {
    let k = k + 1;
    format!(
        "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: se{k}\n  namespace: {}\n  labels: {}\nspec:\n  ips: [10.0.{}.{k}]\n  ports: [{{name: http, port: {}}}]\n",
        NAMESPACES[k % NAMESPACES.len()],
        labels(r),
        r.pick(&[8, 9]),
        r.pick(&[8000, 8001]),
    )
}

fn netset_doc(r: &mut Rng, k: usize) -> String {
    let nets = r.pick(&[
        "[192.168.0.0/16]",
        "[192.168.1.0/24, 172.16.0.0/12]",
        "[172.16.0.0/12]",
        "[8.8.8.0/24]",
        "[10.0.0.0/30]",
    ]);
    let kind = r.pick(&["external", "partner"]);
    if r.chance(50) {
        format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: gset{k}\n  labels: {{kind: {kind}}}\nspec:\n  nets: {nets}\n"
        )
    } else {
        format!(
            "---\napiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata:\n  name: set{k}\n  namespace: {}\n  labels: {{kind: {kind}}}\nspec:\n  nets: {nets}\n",
            r.pick(NAMESPACES)
        )
    }
}

fn random_tier(r: &mut Rng) -> String {
    tier_doc(
        "security",
        *r.pick(&[50, 100, 2_000_000]),
        r.pick::<&str>(&["Deny", "Pass"]),
    )
}

/// The first state: namespaces, a few endpoints and network sets, the tier
/// and some policies.
fn base(r: &mut Rng) -> String {
    let mut out = String::new();
    for ns in NAMESPACES {
        out += &namespace_doc(r, ns);
    }
    for k in 0..4 {
        out += &pod_doc(r, k);
    }
    out += &static_doc(r, 0);
    out += &netset_doc(r, 0);
    out += &random_tier(r);
    for i in 0..3 + r.below(3) {
        out += &policy_doc(r, i);
    }
    out
}

/// One random change: a batch to apply, or ids to delete.
enum Change {
    Apply(String),
    Delete(String),
}

fn change(r: &mut Rng, state: &State) -> Change {
    let existing = |prefixes: &[&str]| -> Vec<String> {
        state
            .entries
            .keys()
            .filter(|id| prefixes.iter().any(|p| id.starts_with(p)))
            .cloned()
            .collect()
    };
    let delete = |r: &mut Rng, prefixes: &[&str]| {
        let ids = existing(prefixes);
        if ids.is_empty() {
            None
        } else {
            Some(Change::Delete(r.pick(&ids).clone()))
        }
    };
    let choice = match r.below(100) {
        0..30 => Some(Change::Apply({
            let k = r.below(8);
            policy_doc(r, k)
        })),
        30..38 => delete(
            r,
            &[
                "GlobalNetworkPolicy/",
                "NetworkPolicy/",
                "networking.k8s.io/NetworkPolicy/",
            ],
        ),
        38..55 => Some(Change::Apply({
            let k = r.below(6);
            pod_doc(r, k)
        })),
        55..62 => Some(Change::Apply({
            let k = r.below(3);
            static_doc(r, k)
        })),
        62..66 => delete(r, &["Pod/", "StaticEndpoint/"]),
        66..76 => Some(Change::Apply({
            let k = r.below(3);
            netset_doc(r, k)
        })),
        76..80 => delete(r, &["GlobalNetworkSet/", "NetworkSet/"]),
        80..87 => Some(Change::Apply({
            let k = *r.pick(NAMESPACES);
            namespace_doc(r, k)
        })),
        87..96 => Some(Change::Apply(random_tier(r))),
        // Refused while a policy is in the tier.
        _ => delete(r, &["Tier/"]),
    };
    choice.unwrap_or_else(|| {
        Change::Apply({
            let k = r.below(8);
            policy_doc(r, k)
        })
    })
}

/// The state after `c`, or `None` when it is refused (a tier still in use,
/// say) or changes nothing.
fn plan(state: &State, c: &Change) -> Option<State> {
    match c {
        Change::Apply(text) => state.apply(text),
        Change::Delete(id) => state.delete(id),
    }
}

/// A program as data: per tier, the classifier's rules and what each one
/// stands for, its set constraints by the sets' members (set ids are the
/// cache's to give).
type Shape = Vec<(
    Vec<Cube>,
    Vec<(DpAction, RuleId, Vec<(Vec<u128>, Side, bool)>)>,
)>;

fn shape(p: &Program, sets: &[Arc<AddrSet>]) -> Shape {
    p.tiers
        .iter()
        .map(|t| {
            let cubes = (0..t.classifier.len())
                .map(|i| {
                    *t.classifier
                        .get(i as _)
                        .expect("a built classifier's indices are dense")
                })
                .collect();
            let rules = t
                .rules
                .iter()
                .map(|r| {
                    let constraints = r
                        .sets
                        .iter()
                        .map(|m| {
                            let mut members: Vec<u128> =
                                sets[m.set as usize].iter().copied().collect();
                            members.sort_unstable();
                            (members, m.side, m.member)
                        })
                        .collect();
                    (r.action, r.id, constraints)
                })
                .collect();
            (cubes, rules)
        })
        .collect()
}

/// Asserts that two compiles produced the same program, exactly.
fn assert_same(got: &Compiled, want: &Compiled, context: &dyn Fn() -> String) {
    let (g, w) = (&got.program, &want.program);
    assert_eq!(g.generation, w.generation);
    assert_eq!(g.rules, w.rules, "rule tables differ\n{}", context());
    assert_eq!(g.endpoints, w.endpoints, "endpoints differ\n{}", context());
    assert_eq!(g.untracked, w.untracked, "untracked differ\n{}", context());
    assert_eq!(
        g.programs.len(),
        w.programs.len(),
        "program counts differ\n{}",
        context()
    );
    for (i, (a, b)) in g.programs.iter().zip(&w.programs).enumerate() {
        assert_eq!(
            shape(a, &g.sets),
            shape(b, &w.sets),
            "program {i} differs\n{}",
            context()
        );
    }
    assert_eq!(
        got.prefilter,
        want.prefilter,
        "prefilters differ\n{}",
        context()
    );
}

/// What a compile means, with nothing a cache chooses (program indices,
/// rule ids, set ids): for every claimed address, its programs' shapes in
/// each direction; the doNotTrack programs' shapes; the prefilter. Each
/// rule is named by what it stands for (its [`RuleMeta`]: tier, policy,
/// direction, index, action) instead of its id.
type Meaning = (
    BTreeMap<u128, [Option<Named>; 2]>,
    Vec<Named>,
    Vec<(IpPrefix, RuleMeta)>,
);

/// A [`Shape`] with each rule id replaced by its rule's [`RuleMeta`].
type Named = Vec<(
    Vec<Cube>,
    Vec<(DpAction, RuleMeta, Vec<(Vec<u128>, Side, bool)>)>,
)>;

fn meaning(c: &Compiled) -> Meaning {
    let p = &c.program;
    let name = |id: RuleId| p.rules[id as usize].clone();
    let named = |i: u32| -> Named {
        shape(&p.programs[i as usize], &p.sets)
            .into_iter()
            .map(|(cubes, rules)| {
                let rules = rules
                    .into_iter()
                    .map(|(action, id, sets)| (action, name(id), sets))
                    .collect();
                (cubes, rules)
            })
            .collect()
    };
    (
        p.endpoints
            .iter()
            .map(|(addr, e)| (*addr, [e.ingress.map(named), e.egress.map(named)]))
            .collect(),
        p.untracked.iter().map(|i| named(*i)).collect(),
        c.prefilter.iter().map(|(n, id)| (*n, name(*id))).collect(),
    )
}

/// Asserts that a carried compile ([`Compiled::carried`]) means what a
/// cold one does: its ids are the compile it carried's, not the ones a
/// cold walk gives.
fn assert_same_meaning(got: &Compiled, want: &Compiled, context: &dyn Fn() -> String) {
    assert_eq!(got.program.generation, want.program.generation);
    let (g, w) = (meaning(got), meaning(want));
    assert_eq!(g.0, w.0, "endpoints' programs differ\n{}", context());
    assert_eq!(g.1, w.1, "untracked programs differ\n{}", context());
    assert_eq!(g.2, w.2, "prefilters differ\n{}", context());
}

/// Asserts that `got` is what the cold compile `want` is: exactly, or by
/// meaning when it carried the compile before it.
/// One step of a run: `state` compiled with the run's `cache` and with
/// `cold` (a fresh cache), the two judged equivalent and on 30 packets
/// against the reference evaluator; the incremental compile, for the
/// run's tally.
fn judge(
    state: &State,
    cache: &mut Cache,
    mut cold: Cache,
    r: &mut Rng,
    context: &dyn Fn() -> String,
) -> Compiled {
    let set = state.policy_set();
    let incremental = compile(&set, state.generation, cache);
    let cold = compile(&set, state.generation, &mut cold);
    assert_equivalent(&incremental, &cold, context);
    agree_on_packets(&set, &incremental, r, 30, any_packet, context);
    incremental
}

fn assert_equivalent(got: &Compiled, want: &Compiled, context: &dyn Fn() -> String) {
    if got.carried {
        assert_same_meaning(got, want, context);
    } else {
        assert_same(got, want, context);
    }
}

/// Addresses of the endpoints (either address of each), the network sets
/// and elsewhere.
const ADDRS: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.4",
    "10.0.0.5",
    "10.0.0.6",
    "10.0.1.1",
    "10.0.1.2",
    "10.0.1.3",
    "10.0.1.4",
    "10.0.1.5",
    "10.0.1.6",
    "10.0.9.1",
    "10.0.9.2",
    "10.0.8.1",
    "10.0.8.3",
    "192.168.1.5",
    "192.168.1.200",
    "172.16.3.3",
    "8.8.8.8",
];
const ADDRS6: &[&str] = &["fd00::1", "fd00::3", "fd00::6", "2001:db8::9"];

fn any_packet(r: &mut Rng) -> Packet {
    let (src, dst): (IpAddr, IpAddr) = if r.chance(15) {
        (
            r.pick(ADDRS6).parse().unwrap(),
            r.pick(ADDRS6).parse().unwrap(),
        )
    } else {
        (
            r.pick(ADDRS).parse().unwrap(),
            r.pick(ADDRS).parse().unwrap(),
        )
    };
    let icmp = if src.is_ipv4() {
        Protocol::ICMP
    } else {
        Protocol::ICMPV6
    };
    let protocol = *r.pick(&[Protocol::TCP, Protocol::UDP, icmp]);
    let is_icmp = protocol == icmp;
    let port = |r: &mut Rng| Some(*r.pick(&[53u16, 80, 443, 1500, 5432, 8000, 8001, 8080, 40000]));
    Packet {
        src,
        dst,
        protocol,
        src_port: if is_icmp { None } else { port(r) },
        dst_port: if is_icmp { None } else { port(r) },
        icmp_type: is_icmp.then(|| *r.pick(&[8u8, 0, 3])),
        icmp_code: is_icmp.then(|| *r.pick(&[0u8, 1])),
    }
}

/// What a run of changes did, to check the test tests something.
#[derive(Default)]
struct Tally {
    steps: usize,
    programs: usize,
    resolved: usize,
    built: usize,
    renumbered: usize,
    carried: usize,
}

/// Runs `steps` random changes from seed `seed`; after each, the shared
/// incremental compile, the unshared one and a cold one must agree, and
/// agree with the reference on `packets` packets. Selectors of at least
/// `threshold` addresses are matched as address sets (0: never).
fn run(seed: u64, steps: usize, packets: usize, threshold: usize) -> Tally {
    let mut r = Rng(seed | 1);
    let mut tally = Tally::default();
    let text = base(&mut r);
    let mut state = State::default()
        .apply(&text)
        .unwrap_or_else(|| panic!("seed {seed}: the base is refused:\n{text}"));
    let (mut shared, mut unshared) = (
        Cache::with_set_threshold(threshold),
        Cache::with_set_threshold(threshold),
    );
    let mut history = vec![text];
    for step in 0..=steps {
        if step > 0 {
            let c = change(&mut r, &state);
            let Some(next) = plan(&state, &c) else {
                continue;
            };
            history.push(match c {
                Change::Apply(t) => t,
                Change::Delete(id) => format!("--- delete {id}\n"),
            });
            state = next;
        }
        let context = || format!("seed {seed}, step {step}; changes:\n{}", history.join(""));
        let set = state.policy_set();
        let fresh = PolicySet::build(state.entries.values().map(|(l, _)| &l.resource))
            .expect("a valid state normalises");
        assert_eq!(
            set,
            fresh,
            "normalising per resource differs\n{}",
            context()
        );
        let generation = state.generation;
        let incremental = compile(&set, generation, &mut shared);
        let compared = compile(&fresh, generation, &mut unshared);
        let cold = compile(&set, generation, &mut Cache::with_set_threshold(threshold));
        if incremental.carried {
            assert_same_meaning(&incremental, &cold, &context);
            tally.carried += 1;
        } else {
            assert_same(&incremental, &cold, &context);
        }
        assert_same(&compared, &cold, &context);
        if step > 0 {
            tally.steps += 1;
            tally.programs += incremental.program.programs.len();
            tally.resolved += incremental.resolved;
            tally.built += incremental.built;
            tally.renumbered += incremental.renumbered;
        }
        agree_on_packets(&set, &incremental, &mut r, packets, any_packet, &context);
    }
    tally
}

#[test]
fn incremental_compiles_equal_cold_ones() {
    let mut total = Tally::default();
    for seed in 1..=20 {
        let t = run(seed * 104_729, 30, 40, 0);
        total.steps += t.steps;
        total.programs += t.programs;
        total.resolved += t.resolved;
        total.built += t.built;
        total.renumbered += t.renumbered;
        total.carried += t.carried;
    }
    // The runs must change things, and the cache must spare work: else this
    // test compares cold compiles with cold compiles. (Most generated rules
    // have selectors, and half the changes are to endpoints, network sets
    // or namespaces, so most programs are resolved again.)
    assert!(total.steps > 400, "{} steps", total.steps);
    assert!(
        total.resolved * 10 < total.programs * 9,
        "resolved {} of {} programs",
        total.resolved,
        total.programs
    );
    assert!(total.built < total.resolved, "built {}", total.built);
    // Policies gain and lose rules: programs after them are renumbered,
    // and must still equal cold ones.
    assert!(total.renumbered > 0, "nothing renumbered");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn incremental_compiles_equal_cold_ones_from_any_seed(seed in any::<u64>(), threshold in 0..4usize) {
        run(seed, 20, 20, threshold);
    }
}

#[test]
fn incremental_compiles_with_address_sets_equal_cold_ones() {
    // Most generated selectors select a few endpoints: at a threshold of 2
    // they are sets, and their members change under reused programs.
    let mut total = Tally::default();
    for seed in 1..=12 {
        let t = run(seed * 7_919, 30, 40, 2);
        total.steps += t.steps;
        total.programs += t.programs;
        total.resolved += t.resolved;
    }
    assert!(total.steps > 250, "{} steps", total.steps);
    assert!(
        total.resolved * 2 < total.programs,
        "resolved {} of {} programs",
        total.resolved,
        total.programs
    );
}

/// Pod `k` (1..=6) with `labels` and everything else fixed: its address
/// 10.0.0.k, one named port. A change of it is a relabel.
fn relabelled_pod(k: usize, labels: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod{k}\n  namespace: {}\n  labels: {labels}\nspec:\n  containers:\n  - name: c\n    ports: [{{name: http, containerPort: 80, protocol: TCP}}]\nstatus:\n  podIPs: [{{ip: 10.0.0.{k}}}]\n",
        NAMESPACES[k % NAMESPACES.len()],
    )
}

/// A run of relabels only, from seed `seed`, over random policies: after
/// each, the incremental compile must mean what a cold one does (exactly
/// the cold one when it was not carried) and agree with the reference.
fn relabel_run(seed: u64, steps: usize) -> Tally {
    let mut r = Rng(seed | 1);
    let mut tally = Tally::default();
    let mut text = String::new();
    for ns in NAMESPACES {
        text += &namespace_doc(&mut r, ns);
    }
    for k in 1..=6 {
        text += &relabelled_pod(k, &labels(&mut r));
    }
    text += &random_tier(&mut r);
    for i in 0..4 + r.below(4) {
        text += &policy_doc(&mut r, i);
    }
    let Some(mut state) = State::default().apply(&text) else {
        return tally;
    };
    let mut cache = Cache::default();
    let mut history = vec![text];
    for step in 0..=steps {
        if step > 0 {
            let pod = relabelled_pod(1 + r.below(6), &labels(&mut r));
            let Some(next) = state.apply(&pod) else {
                continue;
            };
            history.push(pod);
            state = next;
        }
        let context = || format!("seed {seed}, step {step}; changes:\n{}", history.join(""));
        let incremental = judge(&state, &mut cache, Cache::default(), &mut r, &context);
        tally.carried += usize::from(incremental.carried);
        tally.steps += usize::from(step > 0);
    }
    tally
}

#[test]
fn relabels_carry_the_last_compile_and_mean_what_cold_compiles_do() {
    let mut total = Tally::default();
    for seed in 1..=30 {
        let t = relabel_run(seed * 15_485_863, 30);
        total.steps += t.steps;
        total.carried += t.carried;
    }
    // Some relabels change what a rule's selector selects, or move a pod
    // to a list no other pod has: those compile whole. The rest must be
    // carried, or this test compares whole compiles with cold ones.
    assert!(total.steps > 300, "{} steps", total.steps);
    assert!(
        total.carried * 10 > total.steps,
        "carried {} of {} relabels",
        total.carried,
        total.steps
    );
    assert!(total.carried < total.steps, "everything carried");
}

/// Policy `k` of [`edit_run`]: its shape fixed (two ingress rules, one
/// egress), what an edit in place changes chosen by `r`: the port, the
/// actions, the source selector.
fn edited_policy(r: &mut Rng, k: usize) -> String {
    let tier = if k.is_multiple_of(3) {
        "security"
    } else {
        "default"
    };
    let name = if tier == "default" {
        format!("e{k}")
    } else {
        format!("{tier}.e{k}")
    };
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n  tier: {tier}\n  order: {k}\n  selector: \"app == '{}'\"\n  types: [Ingress, Egress]\n  ingress:\n  - {{action: {}, protocol: TCP, source: {{selector: \"{}\"}}, destination: {{ports: [{}]}}}}\n  - {{action: {}, source: {{nets: [{}]}}}}\n  egress:\n  - {{action: {}, protocol: UDP, destination: {{ports: [{}]}}}}\n",
        ["web", "db", "cache"][k % 3],
        r.pick(&["Allow", "Deny", "Pass"]),
        r.pick(&["role == 'fe'", "app == 'dns'", "has(role)", "all()"]),
        r.pick(&[53, 80, 443, 5432, 8080]),
        r.pick(&["Allow", "Deny"]),
        r.pick(&["10.0.0.0/30", "10.0.1.0/24", "192.168.1.0/24"]),
        r.pick(&["Allow", "Deny", "Pass"]),
        r.pick(&[53, 80, 1500]),
    )
}

/// A run of relabels and policy edits in place from seed `seed`, with
/// selectors of at least `threshold` addresses matched as sets (0: never):
/// after each, the incremental compile must be the cold one (by meaning
/// when it carried) and agree with the reference.
fn edit_run(seed: u64, steps: usize, threshold: usize) -> Tally {
    let mut r = Rng(seed | 1);
    let mut tally = Tally::default();
    let mut text = tier_doc("security", 100, r.pick::<&str>(&["Deny", "Pass"]));
    for ns in NAMESPACES {
        text += &namespace_doc(&mut r, ns);
    }
    for k in 1..=6 {
        text += &relabelled_pod(k, &labels(&mut r));
    }
    for k in 0..5 {
        text += &edited_policy(&mut r, k);
    }
    let mut state = State::default()
        .apply(&text)
        .unwrap_or_else(|| panic!("seed {seed}: the base is refused:\n{text}"));
    let mut cache = Cache::with_set_threshold(threshold);
    let mut history = vec![text];
    for step in 0..=steps {
        if step > 0 {
            let change = if r.chance(50) {
                relabelled_pod(1 + r.below(6), &labels(&mut r))
            } else {
                let k = r.below(5);
                edited_policy(&mut r, k)
            };
            let Some(next) = state.apply(&change) else {
                continue;
            };
            history.push(change);
            state = next;
        }
        let context = || format!("seed {seed}, step {step}; changes:\n{}", history.join(""));
        let cold = Cache::with_set_threshold(threshold);
        let incremental = judge(&state, &mut cache, cold, &mut r, &context);
        if step > 0 {
            tally.steps += 1;
            tally.carried += usize::from(incremental.carried);
            tally.built += usize::from(incremental.carried) * incremental.built;
        }
    }
    tally
}

#[test]
fn policies_edited_in_place_carry_the_rest_and_mean_what_cold_compiles_do() {
    let mut total = Tally::default();
    for seed in 1..=30 {
        // Every other seed matches selectors of two addresses as sets.
        let t = edit_run(seed * 32_452_843, 30, 2 * (seed as usize % 2));
        total.steps += t.steps;
        total.carried += t.carried;
        total.built += t.built;
    }
    // A relabel that changes what a rule's selector selects compiles whole;
    // most of the rest carry, and the edits among them rebuild programs.
    assert!(total.steps > 600, "{} steps", total.steps);
    assert!(
        total.carried * 3 > total.steps,
        "carried {} of {} changes",
        total.carried,
        total.steps
    );
    assert!(total.carried < total.steps, "everything carried");
    assert!(total.built > 0, "no carried compile rebuilt a program");
}

/// The sync scenario's relabel in small: policies select pods by `app`
/// and `version`, rules by `tier` only, so a pod's `version` flipped moves
/// it between the lists of pods alike and changes no rule's addresses.
fn versioned_state(v2: &[bool]) -> State {
    let mut y = String::new();
    for (i, v2) in v2.iter().enumerate() {
        y += &versioned_pod(i, *v2);
    }
    for k in 0..4 {
        y += &format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p{k}\nspec:\n  order: {k}\n  selector: app == 'app-{}' && version == '{}'\n  types: [Ingress, Egress]\n  ingress:\n  - {{action: Allow, protocol: TCP, source: {{selector: \"tier == 'frontend'\"}}, destination: {{ports: [{}]}}}}\n  egress:\n  - {{action: Deny, protocol: UDP, destination: {{nets: [10.0.1.0/24]}}}}\n",
            k % 2,
            if k < 2 { "v2" } else { "v1" },
            8000 + k,
        );
    }
    State::default().apply(&y).expect("valid")
}

/// Endpoint `i` of [`versioned_state`] (12 of them: 10.0.0.1-6,
/// 10.0.1.1-6).
fn versioned_pod(i: usize, v2: bool) -> String {
    format!(
        "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: pod{i}\n  labels: {{app: app-{}, tier: {}, version: {}}}\nspec:\n  ips: [10.0.{}.{}]\n",
        i % 2,
        if i.is_multiple_of(3) {
            "frontend"
        } else {
            "backend"
        },
        if v2 { "v2" } else { "v1" },
        i / 6,
        1 + i % 6,
    )
}

#[test]
fn a_version_flip_moves_the_pod_between_programs_without_walking_them() {
    let mut v2: Vec<bool> = (0..12).map(|i| i % 4 < 2).collect();
    let mut cache = Cache::default();
    let first = compile(&versioned_state(&v2).policy_set(), 1, &mut cache);
    assert!(!first.carried, "nothing to carry from");
    let mut r = Rng(99);
    for generation in 2..40 {
        let i = r.below(v2.len());
        v2[i] = !v2[i];
        let set = versioned_state(&v2).policy_set();
        // Every policy is normalised afresh here: equal, not shared, so
        // each one counts as edited in place and every program is rebuilt.
        let got = compile(&set, generation, &mut cache);
        let cold = compile(&set, generation, &mut Cache::default());
        assert_equivalent(&got, &cold, &|| format!("flip {i}"));
    }
    // Through the store's way of changing one resource: carried.
    let mut state = versioned_state(&v2);
    compile(&state.policy_set(), 100, &mut cache);
    let mut carried = 0;
    for n in 0..40 {
        let i = r.below(v2.len());
        v2[i] = !v2[i];
        state = state
            .apply(&versioned_pod(i, v2[i]))
            .expect("a relabel applies");
        let set = state.policy_set();
        let got = compile(&set, state.generation, &mut cache);
        let cold = compile(&set, state.generation, &mut Cache::default());
        let context = || format!("flip {n}: pod{i} to v2 {}", v2[i]);
        if got.carried {
            carried += 1;
            assert_same_meaning(&got, &cold, &context);
            assert_eq!((got.built, got.resolved), (0, 0));
        } else {
            assert_same(&got, &cold, &context);
        }
        agree_on_packets(&set, &got, &mut r, 40, any_packet, &context);
    }
    assert!(carried >= 30, "carried {carried} of 40 flips");
}

/// The bench's shape in small: policy `i` selects endpoint `i % 3` and has
/// only nets and numeric ports.
fn plain_state(flipped: Option<usize>) -> State {
    plain_state_with(flipped, 0)
}

/// [`plain_state`], policy `p0` with `extra` more rules.
fn plain_state_with(flipped: Option<usize>, extra: usize) -> State {
    let mut y = String::new();
    for e in 0..3 {
        y += &format!(
            "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: app-{e}\n  labels: {{app: app-{e}}}\nspec:\n  ips: [10.2.0.{}]\n",
            10 + e
        );
    }
    for i in 0..9 {
        let port = if flipped == Some(i) { 9999 } else { 100 + i };
        y += &format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p{i}\nspec:\n  order: {i}\n  selector: app == 'app-{}'\n  types: [Ingress]\n  ingress:\n  - {{action: Deny, protocol: TCP, source: {{nets: [10.9.0.{i}/32]}}, destination: {{ports: [{port}]}}}}\n",
            i % 3
        );
        if i == 0 {
            for x in 0..extra {
                y += &format!(
                    "  - {{action: Allow, protocol: UDP, destination: {{ports: [{}]}}}}\n",
                    2000 + x
                );
            }
        }
    }
    State::default().apply(&y).expect("valid")
}

#[test]
fn a_changed_policy_resolves_only_the_programs_that_walk_it() {
    let mut cache = Cache::default();
    let first = compile(&plain_state(None).policy_set(), 1, &mut cache);
    assert_eq!((first.resolved, first.built), (3, 3));
    let changed = compile(&plain_state(Some(4)).policy_set(), 2, &mut cache);
    assert_eq!((changed.resolved, changed.built, changed.reused), (1, 1, 2));
    // A new endpoint no rule selects: no program reads the endpoints.
    let mut state = plain_state(Some(4));
    let more = "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: other\n  labels: {app: other}\nspec:\n  ips: [10.2.0.99]\n";
    state = state.apply(more).unwrap();
    let after = compile(&state.policy_set(), 3, &mut cache);
    assert_eq!((after.resolved, after.built, after.reused), (0, 0, 3));
}

#[test]
fn a_policy_that_gains_rules_renumbers_the_programs_after_it_without_building_them() {
    // p0 comes first in the rule table: a rule more moves the ids of every
    // other policy's rules. Only p0's program is resolved and built; the
    // other two keep their classifiers, renumbered.
    let mut cache = Cache::default();
    compile(&plain_state(None).policy_set(), 1, &mut cache);
    for (generation, extra) in [(2, 1), (3, 3), (4, 0)] {
        let set = plain_state_with(None, extra).policy_set();
        let got = compile(&set, generation, &mut cache);
        assert_eq!(
            (got.resolved, got.built, got.renumbered, got.reused),
            (1, 1, 2, 2),
            "{extra} extra rules"
        );
        let cold = compile(&set, generation, &mut Cache::default());
        assert_same(&got, &cold, &|| format!("{extra} extra rules"));
    }
}

#[test]
fn an_endpoint_change_resolves_only_the_programs_whose_selectors_select_it() {
    let base = "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: a\n  labels: {app: a}\nspec:\n  ips: [10.2.0.1]\n\
---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: b\n  labels: {app: b}\nspec:\n  ips: [10.2.0.2]\n\
---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: from-b\nspec:\n  selector: app == 'a'\n  types: [Ingress]\n  ingress:\n  - {action: Allow, source: {selector: app == 'b'}}\n\
---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: nets\nspec:\n  selector: app == 'b'\n  types: [Ingress]\n  ingress:\n  - {action: Allow, source: {nets: [10.3.0.0/16]}}\n";
    let apply = |d: &State, text: &str| d.apply(text).unwrap();
    let state = apply(&State::default(), base);
    let mut cache = Cache::default();
    compile(&state.policy_set(), 1, &mut cache);
    // A third endpoint that `from-b`'s selector does not select: what the
    // selector resolved to is kept, so nothing is resolved or built.
    let state = apply(
        &state,
        "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: c\n  labels: {app: c}\nspec:\n  ips: [10.2.0.3]\n",
    );
    let c = compile(&state.policy_set(), 2, &mut cache);
    assert_eq!((c.resolved, c.built, c.reused), (0, 0, 2));
    // `c` becomes a `b`: now `from-b` selects it too, and `c` is judged
    // by `nets`' program (a new endpoint of an existing program).
    let state = apply(
        &state,
        "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: c\n  labels: {app: b}\nspec:\n  ips: [10.2.0.3]\n",
    );
    let c = compile(&state.policy_set(), 3, &mut cache);
    assert_eq!((c.resolved, c.built, c.reused), (1, 1, 1));
    let cold = compile(&state.policy_set(), 3, &mut Cache::default());
    assert_same(&c, &cold, &|| String::new());
}

#[test]
fn a_port_moved_in_a_large_tier_updates_a_copy_of_its_classifier() {
    // `wide` allows from 40 endpoints (40 rules), `narrow` from anywhere
    // to one port: moving that port changes one rule of 42, so the tier's
    // classifier is a copy of the old one with that rule replaced. It must
    // be the cold compile's, rule for rule and verdict for verdict.
    let mut y = String::new();
    for i in 1..=40 {
        y += &format!(
            "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: fe{i}\n  labels: {{role: fe}}\nspec:\n  ips: [10.5.0.{i}]\n"
        );
    }
    y += "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: x\n  labels: {app: x}\nspec:\n  ips: [10.6.0.1]\n\
---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: wide\nspec:\n  order: 1\n  selector: app == 'x'\n  types: [Ingress]\n  ingress:\n  - {action: Allow, protocol: TCP, source: {selector: role == 'fe'}, destination: {ports: [80]}}\n";
    let narrow = |port: u16| {
        format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: narrow\nspec:\n  order: 2\n  selector: app == 'x'\n  types: [Ingress]\n  ingress:\n  - {{action: Allow, protocol: TCP, destination: {{ports: [{port}]}}}}\n"
        )
    };
    let before = State::default().apply(&(y + &narrow(8080))).unwrap();
    let after = before.apply(&narrow(9090)).unwrap();
    // 40 addresses stay in the classifier (no address sets here).
    let mut cache = Cache::with_set_threshold(0);
    compile(&before.policy_set(), 1, &mut cache);
    let warm = compile(&after.policy_set(), 2, &mut cache);
    assert_eq!((warm.resolved, warm.built), (1, 1));
    assert_eq!(warm.program.programs[0].tiers[0].classifier.len(), 42);
    let cold = compile(&after.policy_set(), 2, &mut Cache::with_set_threshold(0));
    assert_same(&warm, &cold, &|| "port 8080 -> 9090".into());
    let x = to_u128("10.6.0.1".parse().unwrap());
    let (w, c) = (
        &warm.program.programs[warm.program.endpoints[&x].ingress.unwrap() as usize],
        &cold.program.programs[cold.program.endpoints[&x].ingress.unwrap() as usize],
    );
    for src in ["10.5.0.1", "10.5.0.40", "10.7.0.1"] {
        for dport in [80, 8080, 9090, 443] {
            let key = Key {
                src: to_u128(src.parse().unwrap()),
                dst: x,
                proto: 6,
                sport: 40000,
                dport,
            };
            assert_eq!(
                w.tiers[0].classifier.classify(&key),
                c.tiers[0].classifier.classify(&key),
                "{src} -> :{dport}"
            );
        }
    }
}

#[test]
fn a_pod_joining_a_large_selector_changes_its_set_and_no_program() {
    // `wide` allows from `role == 'fe'`, 40 endpoints: an address set at
    // the default threshold. A 41st joining it (a label flip) resolves no
    // program; the set grows, and the new member is allowed.
    let mut y = String::new();
    for i in 1..=41 {
        let role = if i == 41 { "be" } else { "fe" };
        y += &format!(
            "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: fe{i}\n  labels: {{role: {role}}}\nspec:\n  ips: [10.5.0.{i}]\n"
        );
    }
    y += "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: x\n  labels: {app: x}\nspec:\n  ips: [10.6.0.1]\n\
---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: wide\nspec:\n  order: 1\n  selector: app == 'x'\n  types: [Ingress]\n  ingress:\n  - {action: Allow, protocol: TCP, source: {selector: role == 'fe'}, destination: {ports: [80]}}\n  - {action: Deny, protocol: TCP, source: {notSelector: role == 'fe'}, destination: {ports: [81]}}\n";
    let before = State::default().apply(&y).unwrap();
    let after = before
        .apply("---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: fe41\n  labels: {role: fe}\nspec:\n  ips: [10.5.0.41]\n")
        .unwrap();
    let mut cache = Cache::default();
    let first = compile(&before.policy_set(), 1, &mut cache);
    let x = to_u128("10.6.0.1".parse().unwrap());
    let program = |c: &Compiled| {
        c.program.programs[c.program.endpoints[&x].ingress.unwrap() as usize].clone()
    };
    // Two rules and the tier default: the 40 addresses are one set.
    assert_eq!(program(&first).tiers[0].classifier.len(), 3);
    assert_eq!(first.program.sets.iter().map(|s| s.len()).max(), Some(40));
    let warm = compile(&after.policy_set(), 2, &mut cache);
    assert_eq!((warm.resolved, warm.built), (0, 0));
    assert!(
        Arc::ptr_eq(&program(&first), &program(&warm)),
        "the program is the same"
    );
    assert_eq!(warm.program.sets.iter().map(|s| s.len()).max(), Some(41));
    let cold = compile(&after.policy_set(), 2, &mut Cache::default());
    assert_same(&warm, &cold, &|| "fe41 joins".into());
    // (source, port, allowed, deciding rule's index in `wide`: None for
    // the tier's default).
    for (src, dport, allow, rule) in [
        ("10.5.0.41", 80, true, Some(0)),
        ("10.5.0.1", 80, true, Some(0)),
        ("10.7.0.1", 80, false, None),
        ("10.7.0.1", 81, false, Some(1)),
        ("10.5.0.41", 81, false, None),
    ] {
        let key = Key {
            src: to_u128(src.parse().unwrap()),
            dst: x,
            proto: 6,
            sport: 40000,
            dport,
        };
        let j = warm.program.judge(&key);
        assert_eq!(j.allow, allow, "{src} -> :{dport}");
        let decided = &warm.program.rules[j.deciding().expect("a rule decides") as usize];
        assert_eq!(decided.index, rule, "{src} -> :{dport}");
    }
}
