//! Classifies a ClassBench-like trace a number of times: a small driver
//! for instruction counts, which are repeatable where timings on a shared
//! machine are not.
//!
//! `classify_trace PROFILE RULES ROUNDS`, e.g. `classify_trace acl 10000 4`,
//! prints the fastest round's time per lookup: on a busy machine the
//! fastest round is the one least disturbed. Under `valgrind --tool=callgrind`, the instructions of a run with
//! `ROUNDS` = 0 (build and trace only) subtracted from those of a run with
//! more rounds, divided by `ROUNDS * 8192`, give instructions per lookup.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use causeway_dataplane::policy::{
    classbench::{Profile, generate, generate_trace},
    classifier::Classifier,
};

/// Packets in the trace (as in `benches/classifier.rs`).
const TRACE: usize = 8192;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: classify_trace PROFILE RULES ROUNDS (e.g. acl 10000 4)";
    let [_, profile, rules, rounds] = args.as_slice() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (Ok(profile), Ok(n), Ok(rounds)) = (
        profile.parse::<Profile>(),
        rules.parse::<usize>(),
        rounds.parse::<usize>(),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let rules = generate(n, 42, profile);
    let trace = generate_trace(&rules, TRACE, 43);
    let classifier = Classifier::build(&rules);
    let mut sum = 0u64;
    let mut fastest = Duration::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for k in &trace {
            sum += u64::from(classifier.classify(black_box(k)).unwrap_or(0));
        }
        fastest = fastest.min(start.elapsed());
    }
    let s = classifier.stats();
    println!(
        "{profile} {n} rules: {} tables, {} buckets, max bucket {}; checksum {sum}",
        s.tables, s.buckets, s.max_bucket
    );
    if rounds > 0 {
        let ns = fastest.as_secs_f64() * 1e9 / TRACE as f64;
        println!(
            "fastest round: {ns:.1} ns per lookup, {:.2} M lookups/s",
            1e3 / ns
        );
    }
}
