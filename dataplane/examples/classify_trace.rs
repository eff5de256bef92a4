//! Classifies a ClassBench-like trace a number of times: a small driver
//! for instruction counts, which are repeatable where timings on a shared
//! machine are not.
//!
//! `classify_trace PROFILE RULES ROUNDS [DISTINCT [shuffled]] [no-open]`,
//! e.g. `classify_trace acl 10000 4`, prints the fastest round's time per
//! lookup: on a busy machine the fastest round is the one least disturbed.
//!
//! `no-open` drops the rules open in every field (both addresses, both
//! ports, any protocol) from the generated set before the trace is made.
//! Such a rule shadows everything after it: the 100k ACL set has one at
//! index 9 306, and it answers most of the trace.
//!
//! The trace is 8192 packets. With `DISTINCT` it holds only that many
//! distinct packets, repeated in order (a sequence short enough for the
//! branch predictor to learn, and a working set small enough for the
//! caches), or, with `shuffled`, in a random order of the same packets
//! (the same working set, a sequence nobody can learn): the two together
//! tell mispredicted branches from cache misses. Under `valgrind --tool=callgrind`, the instructions of a run with
//! `ROUNDS` = 0 (build and trace only) subtracted from those of a run with
//! more rounds, divided by `ROUNDS * 8192`, give instructions per lookup.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use causeway_dataplane::policy::{
    classbench::{Profile, generate, generate_trace},
    classifier::{Classifier, Rule},
};

/// Packets in the trace (as in `benches/classifier.rs`).
const TRACE: usize = 8192;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: classify_trace PROFILE RULES ROUNDS [DISTINCT [shuffled]] [no-open] (e.g. acl 10000 4)";
    let fail = || -> ! {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (profile, rules, rounds, rest, no_open) = match args.as_slice() {
        [_, profile, rules, rounds, rest @ ..] => {
            let (rest, no_open) = match rest.split_last() {
                Some((last, rest)) if last == "no-open" => (rest, true),
                _ => (rest, false),
            };
            if rest.len() > 2 {
                fail()
            }
            (profile, rules, rounds, rest, no_open)
        }
        _ => fail(),
    };
    let (Ok(profile), Ok(n), Ok(rounds)) = (
        profile.parse::<Profile>(),
        rules.parse::<usize>(),
        rounds.parse::<usize>(),
    ) else {
        fail()
    };
    let distinct = match rest.first().map(|d| d.parse::<usize>()) {
        None => TRACE,
        Some(Ok(d)) if (1..=TRACE).contains(&d) => d,
        Some(_) => fail(),
    };
    let shuffled = match rest.get(1).map(String::as_str) {
        None => false,
        Some("shuffled") => true,
        Some(_) => fail(),
    };
    let mut rules = generate(n, 42, profile);
    if no_open {
        let open = |r: &Rule| {
            r.src.len <= 96
                && r.dst.len <= 96
                && r.proto.is_none()
                && r.sport == (0, u16::MAX)
                && r.dport == (0, u16::MAX)
        };
        let before = rules.len();
        rules.retain(|r| !open(r));
        println!("dropped {} rules open in every field", before - rules.len());
    }
    let packets = generate_trace(&rules, distinct, 43);
    let mut trace: Vec<_> = packets.iter().copied().cycle().take(TRACE).collect();
    if shuffled {
        // Fisher–Yates with xorshift64: the same order on every run.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in (1..trace.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            trace.swap(i, (x % (i as u64 + 1)) as usize);
        }
    }
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
