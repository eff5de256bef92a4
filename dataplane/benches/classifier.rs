//! The TupleMerge classifier on ClassBench-like sets: time per lookup at
//! 1k, 10k and 100k rules (it should stay flat), the full build of 10k
//! rules, and one online insert + remove at 10k.
//!
//! `cargo bench -p causeway-dataplane --bench classifier`
//! (add `-- --measurement-time 2 --warm-up-time 1` for a quick run)

use std::hint::black_box;

use causeway_dataplane::policy::{
    classbench::{Profile, generate, generate_trace},
    classifier::{Classifier, RuleIndex},
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// Packets per measured iteration: enough to leave the caches honest.
const TRACE: usize = 8192;

fn lookups(c: &mut Criterion) {
    for profile in [Profile::Acl, Profile::Fw] {
        let mut group = c.benchmark_group(format!("classify/{profile}"));
        group.throughput(Throughput::Elements(TRACE as u64));
        for n in [1_000, 10_000, 100_000] {
            let rules = generate(n, 42, profile);
            let trace = generate_trace(&rules, TRACE, 43);
            let classifier = Classifier::build(&rules);
            let s = classifier.stats();
            let hits = trace
                .iter()
                .filter(|k| classifier.classify(k).is_some())
                .count();
            eprintln!(
                "{profile} {n} rules: {} tables, {} buckets, max bucket {}, {:.1} MiB, {:.0}% of the trace hits",
                s.tables,
                s.buckets,
                s.max_bucket,
                s.memory_bytes as f64 / (1 << 20) as f64,
                100.0 * hits as f64 / TRACE as f64,
            );
            group.bench_function(format!("{n}"), |b| {
                b.iter(|| {
                    let mut sum = 0u64;
                    for k in &trace {
                        sum += u64::from(classifier.classify(black_box(k)).unwrap_or(0));
                    }
                    sum
                });
            });
        }
        group.finish();
    }
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(20);
    for profile in [Profile::Acl, Profile::Fw] {
        let rules = generate(10_000, 42, profile);
        group.bench_function(format!("{profile}/10000"), |b| {
            b.iter(|| Classifier::build(black_box(&rules)));
        });
    }
    group.finish();
}

fn update(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert+remove");
    for profile in [Profile::Acl, Profile::Fw] {
        let rules = generate(10_000, 42, profile);
        let mut classifier = Classifier::build(&rules);
        // A free index in the middle, and rules the set has not seen.
        let free: RuleIndex = 5_000;
        classifier.remove(free);
        let fresh = generate(64, 7, profile);
        let mut next = 0;
        group.bench_function(format!("{profile}/10000"), |b| {
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

criterion_group!(benches, lookups, build, update);
criterion_main!(benches);
