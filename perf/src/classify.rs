//! The `classify` scenario: TupleMerge against a linear scan on ClassBench
//! sets.
//!
//! ```text
//! causeway-perf classify --rules acl1_10k --trace acl1_10k_trace [--out FILE]
//! causeway-perf classify --generate 10000 --seed 1 --profile acl \
//!     --rules-out acl_10k --trace-out acl_10k_trace [--packets 100000]
//! ```
//!
//! Classifying writes, per packet, the 0-based index of the first matching
//! rule (`-1` for none), one per line; stderr gets the build time and
//! lookups per second over the whole trace, repeated until `--min-time`
//! has passed, beside the linear scan's rate on a prefix of the trace.
//! Where both ran, they must agree, or the run fails.

use std::{
    fs,
    hint::black_box,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::report_schema::{Figure, Machine, Report};
use anyhow::{Context, bail};
use causeway_dataplane::policy::{
    classbench::{self, Profile},
    classifier::{Classifier, Key, Rule, RuleIndex, classify_linear},
};

/// Arguments of `causeway-perf classify`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// ClassBench filter set (db_generator format).
    #[arg(long, value_name = "FILE", required_unless_present = "generate")]
    rules: Option<PathBuf>,
    /// ClassBench trace (trace_generator format). Absent: `--packets`
    /// headers made from the rules with `--seed`, as trace_generator makes
    /// them (nine in ten a random header inside a random rule, the rest
    /// random; without its locality), so a public filter set that comes
    /// without a trace can be measured.
    #[arg(long, value_name = "FILE", conflicts_with = "generate")]
    trace: Option<PathBuf>,
    /// Where to write the match per packet [default: stdout].
    #[arg(long, value_name = "FILE", conflicts_with = "generate")]
    out: Option<PathBuf>,
    /// Seconds to repeat the trace for, at least.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0.5,
        conflicts_with = "generate"
    )]
    min_time: f64,
    /// Skip the linear-scan peer (and its cross-check).
    #[arg(long, conflicts_with = "generate")]
    no_peer: bool,
    /// Also write the figures as JSON (the harness's result schema, for
    /// `causeway-perf report`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["generate", "no_peer"])]
    json: Option<PathBuf>,

    /// Generate a filter set of N rules and a trace instead.
    #[arg(
        long,
        value_name = "N",
        conflicts_with_all = ["rules", "trace"],
        requires_all = ["rules_out", "trace_out"]
    )]
    generate: Option<usize>,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kind of set to generate: acl, fw or ipc.
    #[arg(long, default_value = "acl")]
    profile: Profile,
    /// Where to write the generated filter set.
    #[arg(long, value_name = "FILE", requires = "generate")]
    rules_out: Option<PathBuf>,
    /// Where to write the generated trace.
    #[arg(long, value_name = "FILE", requires = "generate")]
    trace_out: Option<PathBuf>,
    /// Packets in the generated trace (with --generate, or --rules without
    /// --trace).
    #[arg(long, value_name = "M", default_value_t = 100_000)]
    packets: usize,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(count) = args.generate {
        return generate(args, count);
    }
    let Some(rules_path) = &args.rules else {
        bail!("classify needs --rules (and --trace, or one is made), or --generate");
    };
    let rules = read(rules_path, classbench::parse_rules)?;
    let (trace, trace_from) = match &args.trace {
        Some(path) => (
            read(path, classbench::parse_trace)?,
            path.display().to_string(),
        ),
        None => (
            classbench::generate_trace(&rules, args.packets, args.seed),
            format!("headers made from the rules (seed {})", args.seed),
        ),
    };

    // Build.
    let start = Instant::now();
    let classifier = Classifier::build(&rules);
    let build = start.elapsed();
    let stats = classifier.stats();
    eprintln!(
        "rules: {} from {}: {} tables, {} buckets, largest {}, {:.1} MiB; built in {:.2} ms",
        rules.len(),
        rules_path.display(),
        stats.tables,
        stats.buckets,
        stats.max_bucket,
        stats.memory_bytes as f64 / f64::from(1 << 20),
        build.as_secs_f64() * 1e3,
    );

    // Classify once for the answers.
    let answers: Vec<Option<RuleIndex>> = trace.iter().map(|k| classifier.classify(k)).collect();
    write_answers(args.out.as_deref(), &answers)?;
    let matched = answers.iter().filter(|a| a.is_some()).count();
    eprintln!(
        "packets: {} from {}: {:.1}% match a rule",
        trace.len(),
        trace_from,
        percent(matched, trace.len()),
    );
    if trace.is_empty() {
        return Ok(());
    }

    // Measure: the whole trace, again and again.
    let min_time = Duration::from_secs_f64(args.min_time.max(0.0));
    let ours = measure(min_time, |time_left| {
        let mut n = 0;
        loop {
            for k in &trace {
                black_box(classifier.classify(black_box(k)));
            }
            n += trace.len();
            if !time_left() {
                break n;
            }
        }
    });
    eprintln!(
        "tuplemerge: {:.2} M lookups/s ({:.0} ns/lookup; {} lookups in {:.2} s)",
        ours.rate() / 1e6,
        1e9 / ours.rate(),
        ours.lookups,
        ours.elapsed.as_secs_f64(),
    );

    if !args.no_peer {
        let linear = peer(&rules, &trace, &answers, min_time, ours.rate())?;
        if let Some(path) = &args.json {
            write_json(path, rules.len(), ours.rate(), linear)?;
        }
    }
    Ok(())
}

/// The figures in the harness's result schema.
fn write_json(path: &Path, rules: usize, ours: f64, linear: f64) -> anyhow::Result<()> {
    Report {
        scenario: "classify".to_owned(),
        machine: Machine::detect(),
        placement: [(
            "classifier and peer".to_owned(),
            "one thread, wherever the scheduler puts it".to_owned(),
        )]
        .into(),
        figures: vec![Figure::new(
            format!("lookups/s, {rules} rules"),
            "lookups/s",
            ours,
            "linear first-match scan",
            linear,
            true,
        )],
        measures: Vec::new(),
        goals: Vec::new(),
    }
    .write(path)
}

/// The linear scan on as much of the trace as `min_time` allows: its rate,
/// the ratio, and a cross-check of every packet it saw.
fn peer(
    rules: &[Rule],
    trace: &[Key],
    answers: &[Option<RuleIndex>],
    min_time: Duration,
    ours: f64,
) -> anyhow::Result<f64> {
    let indexed: Vec<(RuleIndex, Rule)> = (0..).zip(rules.iter().copied()).collect();
    let mut disagree = None;
    let linear = measure(min_time, |time_left| {
        let mut n = 0;
        loop {
            let got = classify_linear(&indexed, black_box(&trace[n]));
            if got != answers[n] && disagree.is_none() {
                disagree = Some((n, got));
            }
            n += 1;
            if n == trace.len() || !time_left() {
                break n;
            }
        }
    });
    if let Some((n, linear)) = disagree {
        bail!(
            "packet {n} ({:?}): tuplemerge says {:?}, the linear scan {:?}",
            trace[n],
            answers[n],
            linear
        );
    }
    eprintln!(
        "linear:     {:.4} M lookups/s ({} packets, all agree); tuplemerge/linear = {:.0}x",
        linear.rate() / 1e6,
        linear.lookups,
        ours / linear.rate(),
    );
    Ok(linear.rate())
}

struct Rate {
    lookups: usize,
    elapsed: Duration,
}

impl Rate {
    fn rate(&self) -> f64 {
        self.lookups as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `work`, which makes lookups until the closure it is handed says
/// `min_time` has passed, and returns how many it made in how long.
fn measure(min_time: Duration, work: impl FnOnce(&dyn Fn() -> bool) -> usize) -> Rate {
    let start = Instant::now();
    let lookups = work(&|| start.elapsed() < min_time);
    Rate {
        lookups,
        elapsed: start.elapsed(),
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn read<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, classbench::ParseError>,
) -> anyhow::Result<T> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not a ClassBench file", path.display()))
}

fn write_answers(out: Option<&Path>, answers: &[Option<RuleIndex>]) -> anyhow::Result<()> {
    let sink: Box<dyn Write> = match out {
        Some(path) => Box::new(
            fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let mut w = BufWriter::new(sink);
    for a in answers {
        match a {
            Some(i) => writeln!(w, "{i}")?,
            None => writeln!(w, "-1")?,
        }
    }
    w.flush().context("writing the answers")?;
    Ok(())
}

fn generate(args: &Args, count: usize) -> anyhow::Result<()> {
    let (Some(rules_out), Some(trace_out)) = (&args.rules_out, &args.trace_out) else {
        bail!("--generate needs --rules-out and --trace-out");
    };
    let start = Instant::now();
    let rules = classbench::generate(count, args.seed, args.profile);
    let trace = classbench::generate_trace(&rules, args.packets, args.seed.wrapping_add(1));
    write_with(rules_out, |w| classbench::write_rules(w, &rules))?;
    write_with(trace_out, |w| classbench::write_trace(w, &trace))?;
    eprintln!(
        "generated {} {} rules (seed {}) into {} and {} packets into {} in {:.2} s",
        rules.len(),
        args.profile,
        args.seed,
        rules_out.display(),
        trace.len(),
        trace_out.display(),
        start.elapsed().as_secs_f64(),
    );
    Ok(())
}

fn write_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<fs::File>) -> io::Result<()>,
) -> anyhow::Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(file);
    write(&mut w)
        .and_then(|()| w.flush())
        .with_context(|| format!("writing {}", path.display()))
}
