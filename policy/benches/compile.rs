//! The compiler at cluster scale: 10 000 pods in 50 namespaces and 1 000
//! Calico policies in three tiers, the shape `causeway-perf sync` writes
//! into etcd (our own generator's data, made here again as manifests; see
//! `perf/src/sync/inventory.rs` for the shape). What one change costs an
//! appliance that already compiled the rest, which is what a sync's
//! write → enforced waits for:
//!
//! - `cold`: the first compile of the whole set;
//! - `label_flipped`: one pod's `version` label flipped (it leaves or joins
//!   the GlobalNetworkPolicies of its app), warm cache;
//! - `port_moved`: one policy's port moved, warm cache;
//! - `selected_label_flipped`: one pod's `tier` label moved between
//!   `frontend` and `backend`, so it joins or leaves what every policy's
//!   `tier == 'frontend'` rule selects: every program with such a rule
//!   changes, the expensive kind of change.
//!
//! The sets are assembled as the appliance's store assembles them: each
//! resource normalised once, so that unchanged policies are shared.
//!
//! `cargo bench -p causeway-policy --bench compile`

use std::{collections::BTreeMap, hint::black_box, path::Path, time::Duration};

use causeway_policy::{
    compile::{Cache, compile},
    load,
    normalize::{Normal, PolicySet},
};
use criterion::{Criterion, criterion_group, criterion_main};
use shape::{PODS, POLICIES, pod, pod_as, policy};

mod shape;

// The allocator of the `causeway` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resources by id with their normal forms, as the store keeps them.
#[derive(Clone, Default)]
struct State(BTreeMap<String, Normal>);

impl State {
    fn put(&mut self, text: &str) {
        for l in load::load_str(text, Path::new("bench.yaml")).expect("the generator's YAML loads")
        {
            let normal = Normal::of(&l.resource).expect("normalises");
            self.0.insert(l.resource.id(), normal);
        }
    }

    fn set(&self) -> PolicySet {
        PolicySet::assemble(self.0.values())
    }
}

fn base() -> State {
    let mut s = State::default();
    s.put(&shape::all());
    s
}

fn bench(c: &mut Criterion) {
    let state = base();
    let set = state.set();
    let mut g = c.benchmark_group("compile_10k_pods_1k_policies");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("cold", |b| {
        b.iter(|| black_box(compile(&set, 1, &mut Cache::default())));
    });
    // Each iteration flips one more pod (or moves one more policy's port)
    // against a cache that compiled the state before it.
    let mut warm = Cache::default();
    let first = compile(&set, 1, &mut warm);
    println!(
        "{} programs, {} rules",
        first.program.programs.len(),
        first.program.rules.len()
    );
    // What one change of each kind resolves and builds, once.
    for (what, text) in [
        ("label_flipped", pod(3, true)),
        ("port_moved", policy(5, 1)),
        ("selected_label_flipped", pod_as(4, true, Some("backend"))),
    ] {
        let mut probe = state.clone();
        probe.put(&text);
        let c = compile(&probe.set(), 2, &mut warm);
        println!(
            "{what}: resolved {} built {} reused {}",
            c.resolved, c.built, c.reused
        );
        compile(&set, 1, &mut warm);
    }
    let mut flipped = state.clone();
    let mut i = 0u32;
    g.bench_function("label_flipped", |b| {
        b.iter_batched(
            || {
                i = (i + 7) % PODS;
                flipped.put(&pod(i, !i.is_multiple_of(2)));
                let next = flipped.set();
                flipped.put(&pod(i, i.is_multiple_of(2)));
                next
            },
            |next| black_box(compile(&next, 2, &mut warm)),
            criterion::BatchSize::PerIteration,
        );
    });
    let mut moved = state.clone();
    let mut k = 0u32;
    g.bench_function("port_moved", |b| {
        b.iter_batched(
            || {
                k = (k + 13) % POLICIES;
                moved.put(&policy(k, 1));
                let next = moved.set();
                moved.put(&policy(k, 0));
                next
            },
            |next| black_box(compile(&next, 3, &mut warm)),
            criterion::BatchSize::PerIteration,
        );
    });
    // Pod i (of role frontend for the first 1 000 pods: k < 20) becomes
    // a backend, and back on the next.
    let mut roled = state;
    let mut r = 0u32;
    g.bench_function("selected_label_flipped", |b| {
        b.iter_batched(
            || {
                r = (r + 7) % 1_000;
                roled.put(&pod_as(r, r.is_multiple_of(2), Some("backend")));
                let next = roled.set();
                roled.put(&pod(r, r.is_multiple_of(2)));
                next
            },
            |next| black_box(compile(&next, 4, &mut warm)),
            criterion::BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
