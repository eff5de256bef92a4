//! The TupleMerge classifier on ClassBench sets: time per lookup on the
//! public sets (`../shared/classbench/`: db_generator's acl1, fw1 and
//! ipc1 at 1k and 10k rules, with a trace made from their rules) and on
//! our generated ones at 1k, 10k and 100k rules (it should stay flat),
//! the full build of 10k rules, and one online insert + remove at 10k.
//!
//! The public sets are the headline; the bench stops with a message
//! saying where it looked if they are missing, rather than leave them out
//! unnoticed.
//!
//! `cargo bench -p causeway-dataplane --bench classifier`
//! (add `-- --measurement-time 2 --warm-up-time 1` for a quick run)

use std::{hint::black_box, path::PathBuf};

use causeway_dataplane::policy::{
    classbench::{Profile, generate, generate_trace, parse_rules},
    classifier::{Classifier, Key, Rule, RuleIndex},
};
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};

/// Packets per measured iteration: enough to leave the caches honest.
const TRACE: usize = 8192;

/// The public sets, by file name.
const PUBLIC: [&str; 6] = [
    "acl1_1k", "acl1_10k", "fw1_1k", "fw1_10k", "ipc1_1k", "ipc1_10k",
];

/// The rules of public set `name`.
///
/// # Panics
/// If the set is not in `../shared/classbench/` (beside the repository)
/// or does not parse.
fn public_set(name: &str) -> Vec<Rule> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/classbench");
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the public ClassBench set {name} is not at {} ({e}): the classifier's \
             headline benches need the shared sets (acl1, fw1, ipc1 at 1k and 10k rules) \
             in ../shared/classbench/ beside the repository",
            path.display()
        )
    });
    parse_rules(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Time per lookup over `trace`, after a line on the classifier's shape.
fn bench_lookups(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    rules: &[Rule],
    trace: &[Key],
) {
    let classifier = Classifier::build(rules);
    let s = classifier.stats();
    let hits = trace
        .iter()
        .filter(|k| classifier.classify(k).is_some())
        .count();
    eprintln!(
        "{name}: {} rules, {} tables, {} buckets, max bucket {}, {:.1} MiB, {:.0}% of the trace hits",
        s.rules,
        s.tables,
        s.buckets,
        s.max_bucket,
        s.memory_bytes as f64 / (1 << 20) as f64,
        100.0 * hits as f64 / trace.len() as f64,
    );
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for k in trace {
                sum += u64::from(classifier.classify(black_box(k)).unwrap_or(0));
            }
            sum
        });
    });
}

fn public(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify/public");
    group.throughput(Throughput::Elements(TRACE as u64));
    for name in PUBLIC {
        let rules = public_set(name);
        let trace = generate_trace(&rules, TRACE, 43);
        bench_lookups(&mut group, name, &rules, &trace);
    }
    group.finish();
}

fn lookups(c: &mut Criterion) {
    for profile in [Profile::Acl, Profile::Fw] {
        let mut group = c.benchmark_group(format!("classify/{profile}"));
        group.throughput(Throughput::Elements(TRACE as u64));
        for n in [1_000, 10_000, 100_000] {
            let rules = generate(n, 42, profile);
            let trace = generate_trace(&rules, TRACE, 43);
            bench_lookups(&mut group, &format!("{n}"), &rules, &trace);
        }
        group.finish();
    }
}

/// The 10k sets the build and update benches run on, our generated ones
/// and the public ones, each with 64 rules to insert: for a generated
/// set, rules it has not seen; for a public one, copies of its own
/// rules from all over the set (at an index they do not hold).
fn ten_thousands() -> Vec<(String, Vec<Rule>, Vec<Rule>)> {
    let mut sets: Vec<_> = [Profile::Acl, Profile::Fw]
        .into_iter()
        .map(|p| {
            let fresh = generate(64, 7, p);
            (format!("{p}/10000"), generate(10_000, 42, p), fresh)
        })
        .collect();
    for name in ["acl1_10k", "fw1_10k", "ipc1_10k"] {
        let rules = public_set(name);
        let fresh = rules.iter().step_by(rules.len() / 64).copied().collect();
        sets.push((format!("public/{name}"), rules, fresh));
    }
    sets
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(20);
    for (name, rules, _) in ten_thousands() {
        group.bench_function(name, |b| {
            b.iter(|| Classifier::build(black_box(&rules)));
        });
    }
    group.finish();
}

fn update(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert+remove");
    for (name, rules, fresh) in ten_thousands() {
        let mut classifier = Classifier::build(&rules);
        // A free index in the middle.
        let free = RuleIndex::try_from(rules.len() / 2).expect("a small set");
        classifier.remove(free);
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    next = (next + 1) % fresh.len();
                    fresh[next]
                },
                |rule| {
                    classifier.insert(free, rule);
                    classifier.remove(free)
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, public, lookups, build, update);
criterion_main!(benches);
