//! The in-process cost of a one-policy change on a 10 000-rule base: what
//! `Node::change` and `Node::publish` do for an apply, without the gRPC
//! hop, the fsync'd save or the workers.
//!
//! The base is the `converge` perf scenario's: 100 GlobalNetworkPolicies
//! of 100 deny rules, policy `i` selecting StaticEndpoint `app-(i % 10)`.
//! Each iteration changes one policy (one port of its first rule flipped,
//! a different policy each time) and the state moves on, as on a server.
//!
//! - `plan_and_compile`: `Desired::plan_apply` (parse the change, validate
//!   the whole next state, build its policy set) then `compile` of the
//!   plan's policy set with the warm cache of the previous generation, as
//!   `Node::change` and `Node::publish` do: the figure.
//! - `plan_and_compile_rule_added`: the same, where the change adds a
//!   rule to (or removes it from) the policy, which moves the rule ids of
//!   every policy after it: their programs keep their classifiers,
//!   renumbered.
//! - `plan`: `plan_apply` alone.
//! - `compile`: `compile` alone, alternating between the policy sets of
//!   two states one policy apart.
//! - `compile_cold`: `compile` of the whole 10k-rule set with an empty
//!   cache (a start, or the first compile after a restart).
//! - `clone`, `check`, `policy_set`: the parts of a plan that grow with
//!   the whole state, not with the change: the plan copies the state
//!   (`Desired::clone`) and validates the whole next state
//!   (`Desired::check`, which builds the policy set).
//! - `save_fsync`: `persist::save` of the 10k-rule state (serialise, write,
//!   fsync, rename, fsync the directory) into the temp directory, for
//!   comparison; the disk and its load decide this one.
//!
//! The `sync_shape` group is the same on the shape a sync carries
//! (`policy/benches/shape`: 10 000 pods, 1 000 policies): one pod's
//! `version` label flipped per iteration, the change of the
//! `causeway-perf sync` scenario's single changes.
//!
//! - `plan_and_compile`: as above, the figure;
//! - `plan_and_compile_spaced`: the same with the changes 100 ms apart, as
//!   the node meets them (the scenario's pace): the caches have gone cold
//!   between them, and only the change is timed;
//! - `plan_and_compile_port_moved`: the scenario's other single change,
//!   a policy's port moved;
//! - `plan`, `compile`: the two halves;
//! - `clone`, `policy_set`: the parts of the plan that grow with the
//!   state;
//! - `commit`: a plan and its journal record written and fdatasynced
//!   (less `plan`: the save the node runs beside the compile).
//!
//! Allocation is with mimalloc, as in the `causeway` binary.
//!
//! `cargo bench -p causeway-control --bench apply`

use std::{fmt::Write as _, hint::black_box, time::Duration};

use causeway_control::store::{Desired, InputFile, OWNER_CTL, Writer, persist};
use causeway_policy::compile::{Cache, compile};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../../policy/benches/shape/mod.rs"]
mod shape;

// The allocator of the `causeway` binary: the plan and compile allocate a
// lot, and the figure should be the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POLICIES: u32 = 100;
const RULES_PER_POLICY: u32 = 100;
const ENDPOINTS: u32 = 10;

/// Policy `i`, with its first rule's port flipped or not.
fn policy(i: u32, flipped: bool) -> String {
    let mut y = format!(
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: perf-{i}\nspec:\n  order: {i}\n  selector: app == 'app-{}'\n  types: [Ingress]\n  ingress:\n",
        i % ENDPOINTS
    );
    for j in 0..RULES_PER_POLICY {
        let k = i * RULES_PER_POLICY + j;
        let src = format!("10.{}.{}.{}", 128 + (k >> 16), (k >> 8) & 255, k & 255);
        let port = if j == 0 && flipped {
            60_000 + i
        } else {
            10_000 + k % 50_000
        };
        let _ = writeln!(
            y,
            "    - action: Deny\n      protocol: TCP\n      source:\n        nets: [{src}/32]\n      destination:\n        ports: [{port}]"
        );
    }
    y
}

/// Policy `i`, with one more rule at its end or not: an edit that moves
/// the rule ids of every policy after it.
fn policy_grown(i: u32, grown: bool) -> String {
    let mut y = policy(i, false);
    if grown {
        y.push_str(
            "    - action: Allow\n      protocol: UDP\n      destination:\n        ports: [53]\n",
        );
    }
    y
}

/// The endpoints and every policy, unflipped.
fn base() -> Desired {
    let mut y = String::new();
    for e in 0..ENDPOINTS {
        let _ = write!(
            y,
            "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: app-{e}\n  namespace: island-b\n  labels:\n    app: app-{e}\nspec:\n  ips: [10.2.0.{}]\n",
            10 + e
        );
    }
    for i in 0..POLICIES {
        y.push_str(&policy(i, false));
    }
    let file = InputFile {
        name: "base.yaml".into(),
        text: y,
    };
    Desired::default()
        .plan_apply(&[file], &[], Writer::new(OWNER_CTL), None)
        .expect("the base is valid")
        .next
}

/// The changes, as an apply receives them: `[policy][flipped]`, where
/// `make(i, flipped)` is policy `i`'s text.
fn changes(make: fn(u32, bool) -> String) -> Vec<[InputFile; 2]> {
    (0..POLICIES)
        .map(|i| {
            [false, true].map(|f| InputFile {
                name: format!("perf-{i}.yaml"),
                text: make(i, f),
            })
        })
        .collect()
}

/// A server's state: the desired state, the compile cache, the flips.
struct Server {
    desired: Desired,
    cache: Cache,
    flipped: Vec<bool>,
    n: u32,
}

impl Server {
    fn new() -> Self {
        let desired = base();
        let mut cache = Cache::default();
        let set = desired.policy_set().expect("the base builds");
        compile(&set, desired.generation, &mut cache);
        Self {
            desired,
            cache,
            flipped: vec![false; POLICIES as usize],
            n: 0,
        }
    }

    /// The next change: another policy each time (a stride coprime to the
    /// count), flipped from how it is now.
    fn next<'a>(&mut self, changes: &'a [[InputFile; 2]]) -> &'a InputFile {
        let p = (self.n * 37 % POLICIES) as usize;
        self.n += 1;
        self.flipped[p] = !self.flipped[p];
        &changes[p][usize::from(self.flipped[p])]
    }
}

fn apply(c: &mut Criterion) {
    let flipped = changes(policy);
    let grown = changes(policy_grown);
    let mut group = c.benchmark_group(format!("apply/{}_rules", POLICIES * RULES_PER_POLICY));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));

    for (name, changes) in [
        ("plan_and_compile", &flipped),
        ("plan_and_compile_rule_added", &grown),
    ] {
        let mut s = Server::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                let file = s.next(changes);
                let plan = s
                    .desired
                    .plan_apply(
                        std::slice::from_ref(file),
                        &[],
                        Writer::new(OWNER_CTL),
                        None,
                    )
                    .expect("a valid change");
                let set = plan.policy.expect("a change carries its policy set");
                let compiled = compile(&set, plan.next.generation, &mut s.cache);
                s.desired = plan.next;
                black_box(compiled.built)
            });
        });
    }

    let mut s = Server::new();
    group.bench_function("plan", |b| {
        b.iter(|| {
            let file = s.next(&flipped);
            let plan = s
                .desired
                .plan_apply(
                    std::slice::from_ref(file),
                    &[],
                    Writer::new(OWNER_CTL),
                    None,
                )
                .expect("a valid change");
            s.desired = plan.next;
        });
    });

    let mut s = Server::new();
    let a = s.desired.clone();
    let b_state = s
        .desired
        .plan_apply(
            std::slice::from_ref(&flipped[0][1]),
            &[],
            Writer::new(OWNER_CTL),
            None,
        )
        .expect("a valid change")
        .next;
    let sets =
        [&a, &b_state].map(|d| (d.policy_set().expect("a valid state builds"), d.generation));
    let mut which = 0;
    group.bench_function("compile", |b| {
        b.iter(|| {
            which = 1 - which;
            let (set, generation) = &sets[which];
            black_box(compile(set, *generation, &mut s.cache).built)
        });
    });

    group.bench_function("compile_cold", |b| {
        b.iter(|| black_box(compile(&sets[0].0, sets[0].1, &mut Cache::default()).built));
    });

    group.bench_function("clone", |b| b.iter(|| black_box(a.clone())));
    group.bench_function("check", |b| b.iter(|| black_box(a.check(None))));
    group.bench_function("policy_set", |b| {
        b.iter(|| black_box(a.policy_set().expect("a valid state builds")));
    });

    let dir = std::env::temp_dir().join(format!("causeway-bench-apply-{}", std::process::id()));
    group.bench_function("save_fsync", |b| {
        b.iter(|| persist::save(&dir, &a).expect("saved"));
    });
    let _ = std::fs::remove_dir_all(&dir);
    group.finish();
}

/// One pod's `version` label flipped per change, on the sync's shape.
fn sync_shape(c: &mut Criterion) {
    let file = |text: String| InputFile {
        name: "sync.yaml".into(),
        text,
    };
    let base = Desired::default()
        .plan_apply(&[file(shape::all())], &[], Writer::new(OWNER_CTL), None)
        .expect("the shape is valid")
        .next;
    let mut cache = Cache::default();
    compile(
        &base.policy_set().expect("the shape builds"),
        base.generation,
        &mut cache,
    );
    // Pod i flipped from its base label, and back on its next turn.
    let flips: Vec<[InputFile; 2]> = (0..shape::PODS)
        .step_by(7)
        .map(|i| [false, true].map(|f| file(shape::pod(i, i.is_multiple_of(2) != f))))
        .collect();
    let mut flipped = vec![false; flips.len()];
    let mut n = 0usize;
    let mut next = move || {
        let i = n * 31 % flips.len();
        n += 1;
        flipped[i] = !flipped[i];
        flips[i][usize::from(flipped[i])].clone()
    };
    let mut group = c.benchmark_group("apply/sync_shape");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));

    let mut desired = base;
    group.bench_function("plan_and_compile", |b| {
        b.iter(|| {
            let plan = desired
                .plan_apply(&[next()], &[], Writer::new(OWNER_CTL), None)
                .expect("a valid change");
            let set = plan.policy.expect("a change carries its policy set");
            let compiled = compile(&set, plan.next.generation, &mut cache);
            desired = plan.next;
            black_box(compiled.built)
        });
    });
    // As the node sees it: changes 100 ms apart, with the caches gone
    // cold between them (only the change itself is timed).
    group.bench_function("plan_and_compile_spaced", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::thread::sleep(Duration::from_millis(100));
                let started = std::time::Instant::now();
                let plan = desired
                    .plan_apply(&[next()], &[], Writer::new(OWNER_CTL), None)
                    .expect("a valid change");
                let set = plan.policy.expect("a change carries its policy set");
                black_box(compile(&set, plan.next.generation, &mut cache).built);
                desired = plan.next;
                total += started.elapsed();
            }
            total
        });
    });
    // The scenario's other single change: a policy's port moved (and back
    // on its next turn), policies 0, 7, 14, ... in turn.
    let mut moves = (0..shape::POLICIES).step_by(7).cycle().enumerate();
    let mut port_moved = move || {
        let (n, k) = moves.next().expect("cycles");
        let back = n / (shape::POLICIES as usize).div_ceil(7) % 2;
        file(shape::policy(k, 1 - back as u32))
    };
    group.bench_function("plan_and_compile_port_moved", |b| {
        b.iter(|| {
            let plan = desired
                .plan_apply(&[port_moved()], &[], Writer::new(OWNER_CTL), None)
                .expect("a valid change");
            let set = plan.policy.expect("a change carries its policy set");
            black_box(compile(&set, plan.next.generation, &mut cache).built);
            desired = plan.next;
        });
    });
    group.bench_function("plan", |b| {
        b.iter(|| {
            let plan = desired
                .plan_apply(&[next()], &[], Writer::new(OWNER_CTL), None)
                .expect("a valid change");
            desired = plan.next;
        });
    });
    let other = desired
        .plan_apply(&[next()], &[], Writer::new(OWNER_CTL), None)
        .expect("a valid change")
        .next;
    let sets =
        [&desired, &other].map(|d| (d.policy_set().expect("a valid state builds"), d.generation));
    let mut which = 0;
    group.bench_function("compile", |b| {
        b.iter(|| {
            which = 1 - which;
            let (set, generation) = &sets[which];
            black_box(compile(set, *generation, &mut cache).built)
        });
    });
    group.bench_function("clone", |b| b.iter(|| black_box(desired.clone())));
    group.bench_function("policy_set", |b| {
        b.iter(|| black_box(desired.policy_set().expect("a valid state builds")));
    });
    // The journal record of one change, written and fdatasynced, as the
    // node does beside the compile (the disk decides most of this).
    let dir = std::env::temp_dir().join(format!("causeway-bench-sync-{}", std::process::id()));
    persist::save(&dir, &desired).expect("saved");
    group.bench_function("commit", |b| {
        b.iter(|| {
            let plan = desired
                .plan_apply(&[next()], &[], Writer::new(OWNER_CTL), None)
                .expect("a valid change");
            persist::commit(&dir, &desired, &plan.next).expect("committed");
            desired = plan.next;
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
    group.finish();
}

criterion_group!(benches, apply, sync_shape);
criterion_main!(benches);
