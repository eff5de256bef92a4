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

use std::{collections::BTreeMap, fmt::Write as _, hint::black_box, path::Path, time::Duration};

use causeway_policy::{
    compile::{Cache, compile},
    load,
    normalize::{Normal, PolicySet},
};
use criterion::{Criterion, criterion_group, criterion_main};

// The allocator of the `causeway` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PODS: u32 = 10_000;
const NAMESPACES: u32 = 50;
const POLICIES: u32 = 1_000;
const APPS: u32 = 20;
const ROLES: [&str; 3] = ["frontend", "backend", "db"];

fn namespace(n: u32) -> String {
    format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{n:02}\n  labels: {{team: t{}}}\n",
        n % 5
    )
}

fn pod(i: u32, v2: bool) -> String {
    pod_as(i, v2, None)
}

/// Pod `i`, with `role` instead of its own `tier` if given.
fn pod_as(i: u32, v2: bool, role: Option<&str>) -> String {
    let ns = i % NAMESPACES;
    let k = i / NAMESPACES;
    let ip = u32::from_be_bytes([172, 16, 0, 1]) + i;
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i}\n  namespace: ns-{ns:02}\n  labels: {{app: app-{}, tier: {}, version: {}}}\nspec:\n  serviceAccountName: default\n  containers:\n  - name: c\n    ports: [{{name: http, containerPort: 8080, protocol: TCP}}]\nstatus:\n  podIPs: [{{ip: {}}}]\n",
        k % APPS,
        role.unwrap_or(ROLES[(k / APPS % 3) as usize]),
        if v2 { "v2" } else { "v1" },
        std::net::Ipv4Addr::from(ip),
    )
}

fn tiers() -> String {
    "---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  order: 100\n\
---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: platform\nspec:\n  order: 200\n"
        .to_owned()
}

fn policy(k: u32, moved: u32) -> String {
    let global = k.is_multiple_of(5);
    let tier = match k % 10 {
        0 | 1 => "security",
        2 => "platform",
        _ => "default",
    };
    let base = if global {
        format!("gp-{k}")
    } else {
        format!("np-{k}")
    };
    let name = if tier == "default" {
        base
    } else {
        format!("{tier}.{base}")
    };
    let app = format!("app-{}", k % APPS);
    let (kind, ns, selector) = if global {
        (
            "GlobalNetworkPolicy",
            String::new(),
            format!("app == '{app}' && version == 'v2'"),
        )
    } else {
        (
            "NetworkPolicy",
            format!("\n  namespace: ns-{:02}", k % NAMESPACES),
            format!(
                "app == '{app}' && tier == '{}'",
                ROLES[(k / APPS % 3) as usize]
            ),
        )
    };
    let port = 10_000 + (k * 7 + moved) % 50_000;
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata:\n  name: {name}{ns}\nspec:\n  tier: {tier}\n  order: {}\n  selector: \"{selector}\"\n  types: [Ingress, Egress]\n  ingress:\n  - {{action: Allow, protocol: TCP, source: {{selector: \"tier == 'frontend'\"}}, destination: {{ports: [{port}]}}}}\n  - {{action: Allow, protocol: TCP, source: {{nets: [10.1.0.0/24]}}, destination: {{ports: ['8000:8099']}}}}\n  egress:\n  - {{action: Allow, protocol: UDP, destination: {{selector: \"app == 'app-0'\", ports: [53]}}}}\n",
        k % 100
    )
}

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
    let mut text = tiers();
    for n in 0..NAMESPACES {
        text += &namespace(n);
    }
    for i in 0..PODS {
        text += &pod(i, i.is_multiple_of(2));
    }
    for k in 0..POLICIES {
        let _ = write!(text, "{}", policy(k, 0));
    }
    let mut s = State::default();
    s.put(&text);
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
