//! The `converge` scenario: how long a one-policy change takes from the
//! control API's Apply until every worker enforces it, on a base of 10 000
//! rules, beside nftables replacing the same ruleset with one rule changed.
//!
//! ```text
//! causeway-perf converge [--quick] [--json FILE]
//! ```
//!
//! - causeway: a lab whose appliance runs, given the base ([`rules`]: 100
//!   GlobalNetworkPolicies × 100 rules over 10 StaticEndpoints; quick: 10
//!   × 100) in one apply, then N times (200; quick: 20) one policy with
//!   one port flipped, applied with `wait_enforced` ([`client`]). Two
//!   times per apply: the server's `enforced_after` (arrival → every
//!   worker enforces; validation, the fsync'd save, compile and publish
//!   included) and the client's round trip.
//! - Linux: the same rules as one nftables table in the lab's appliance
//!   namespace, replaced whole by `nft -f` with the same rule changed, as
//!   an nftables-based agent applies a change ([`peer`]); timed per run.
//!   The table goes with the namespace when the lab is removed.
//!
//! The two alternate change by change, so load on the shared machine
//! falls on both alike. A few unmeasured changes warm both up first; after
//! the measured run a few dry runs (validation only) show what the plan
//! alone costs. Latencies go into HDR histograms; the report has the p50
//! and p99 of each causeway time against nft's (lower is better), and the
//! table says whether the goal, p99 apply → enforced below 5 ms, is met.
//! The run stops after `--max-seconds` even if changes remain.

pub(crate) mod client;
mod peer;
mod rules;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::{
    lab::{self, Lab},
    progress::Progress,
    report_schema::{Figure, Machine, Report},
};
use client::Client;
use rules::Flips;

/// The goal: p99 apply → enforced below this.
const GOAL_P99: Duration = Duration::from_millis(5);
/// Unmeasured changes before the measured ones.
const WARM_UP: u32 = 5;
/// How long one change may take before the run fails.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the base may take to apply and be enforced.
const BASE_TIMEOUT: Duration = Duration::from_secs(300);
/// The peer's name in the report.
const PEER: &str = "linux-nft-f";

/// Arguments of `causeway-perf converge`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// 1 000 rules and 20 changes: the smoke test.
    #[arg(long)]
    quick: bool,
    /// Where to write the report (JSON, see `report_schema.rs`).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Measured changes [default: 200; quick: 20].
    #[arg(long)]
    changes: Option<u32>,
    /// Policies of 100 rules in the base [default: 100; quick: 10].
    #[arg(long)]
    policies: Option<u32>,
    /// Stop measuring after this many seconds, changes left or not
    /// [default: 600; quick: 120].
    #[arg(long, value_name = "SECONDS")]
    max_seconds: Option<u64>,
    /// The `causeway` binary [default: beside this one].
    #[arg(long, value_name = "PATH")]
    causeway: Option<PathBuf>,
    /// Labs are named PREFIXxN; PREFIX is a letter then letters and digits.
    #[arg(long, default_value_t = format!("cv{}", std::process::id() % 100_000))]
    lab_prefix: String,
}

/// Latencies of one party, in microseconds.
struct Times(Histogram<u64>);

impl Times {
    fn new() -> anyhow::Result<Self> {
        // 1 µs to an hour, 3 significant digits.
        Ok(Self(Histogram::new_with_bounds(1, 3_600_000_000, 3)?))
    }

    fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us.max(1));
    }

    /// The `q` quantile in microseconds.
    fn at(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64
    }

    fn row(&self, what: &str) {
        println!(
            "{what:<42} {:>10.0} {:>10.0} {:>10.0} {:>8}",
            self.at(0.5),
            self.at(0.99),
            self.0.max() as f64,
            self.0.len()
        );
    }
}

/// What the measured run gave.
struct Measured {
    server: Times,
    round_trip: Times,
    nft: Times,
    dry_run: Times,
    done: u32,
}

/// `causeway-perf converge`.
///
/// # Errors
/// The lab, the control API or nft fails; the lab is removed either way.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let causeway = lab::causeway_binary(args.causeway.as_deref())?;
    lab::check_prefix(&args.lab_prefix)?;
    let policies = args
        .policies
        .unwrap_or(if args.quick { 10 } else { 100 })
        .max(1);
    let changes = args
        .changes
        .unwrap_or(if args.quick { 20 } else { 200 })
        .max(1);
    let max = Duration::from_secs(
        args.max_seconds
            .unwrap_or(if args.quick { 120 } else { 600 }),
    );
    let rule_count = policies * rules::RULES_PER_POLICY;
    let scratch =
        std::env::temp_dir().join(format!("causeway-perf-converge-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;

    println!(
        "converge: {rule_count} rules ({policies} GlobalNetworkPolicies x {} rules over {} StaticEndpoints), {changes} changes of one policy each",
        rules::RULES_PER_POLICY,
        rules::ENDPOINTS
    );
    let lab = Lab::up(&causeway, &format!("{}x0", args.lab_prefix), true, None)?;
    let result = measure(&lab, &scratch, policies, changes, max);
    let gw = lab.ns("gw");
    let state = lab
        .status()
        .ok()
        .and_then(|s| s["appliance"]["state"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "the lab's state directory".to_owned());
    drop(lab);
    let _ = std::fs::remove_dir_all(&scratch);
    let m = result?;

    println!();
    println!(
        "{:<42} {:>10} {:>10} {:>10} {:>8}",
        "latency", "p50_us", "p99_us", "max_us", "samples"
    );
    m.server.row("causeway apply -> enforced (server)");
    m.round_trip.row("causeway apply round trip (client)");
    m.nft.row("nft -f whole ruleset (peer)");
    m.dry_run.row("causeway dry run, validation only (client)");

    let figures = figures(&m, rule_count);
    println!();
    println!(
        "{:<36} {:>10} {:<12} {:>10} {:>7}",
        "figure", "causeway", "peer", "peer_value", "ratio"
    );
    for f in &figures {
        println!(
            "{:<36} {:>10.0} {:<12} {:>10.0} {:>7.3}",
            f.name, f.causeway, f.peer, f.peer_value, f.ratio
        );
    }
    let p99 = m.server.at(0.99);
    let goal = GOAL_P99.as_secs_f64() * 1e6;
    println!(
        "{:<36} {:>10.0} {:<12} {:>10.0} {}",
        "goal: apply_to_enforced_p99",
        p99,
        "< goal",
        goal,
        if p99 < goal { "met" } else { "NOT MET" }
    );
    if m.done < changes {
        println!(
            "stopped after {} of {changes} changes: --max-seconds {}",
            m.done,
            max.as_secs()
        );
    }

    if let Some(path) = &args.json {
        let report = Report {
            scenario: "converge".to_owned(),
            machine: Machine::detect(),
            placement: placement(&gw, &state, policies, changes),
            figures,
            measures: Vec::new(),
            goals: Vec::new(),
        };
        report.write(path)?;
    }
    Ok(())
}

/// The base, the warm-up, the measured changes and the dry runs.
fn measure(
    lab: &Lab,
    scratch: &Path,
    policies: u32,
    changes: u32,
    max: Duration,
) -> anyhow::Result<Measured> {
    let status = lab.status()?;
    let socket = PathBuf::from(
        status["appliance"]["control_socket"]
            .as_str()
            .context("`causeway lab status` names no control socket")?,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut client = runtime.block_on(Client::connect(&socket))?;
    let nft = peer::Nft::start(&lab.ns("gw"))?;
    let script = scratch.join("ruleset.nft");

    let mut flips = Flips::new(policies);
    let base =
        runtime.block_on(client.apply("base.yaml", rules::calico(&flips), false, BASE_TIMEOUT))?;
    std::fs::write(&script, rules::nft(&flips))?;
    let nft_base = nft.load(&script)?;
    println!(
        "base: causeway applied and enforced generation {} in {:.0} ms (server; round trip {:.0} ms), nft -f in {:.0} ms",
        base.generation,
        base.server.as_secs_f64() * 1e3,
        base.round_trip.as_secs_f64() * 1e3,
        nft_base.as_secs_f64() * 1e3
    );

    // One change to both: policy `p` gets its first rule's port flipped.
    let mut change = |n: u32| -> anyhow::Result<(client::Applied, Duration)> {
        // A stride coprime to the policy count touches every policy in turn.
        let p = (n * 37) % policies;
        flips.flip(p);
        let ours = runtime.block_on(client.apply(
            &format!("perf-{p}.yaml"),
            rules::policy(&flips, p),
            false,
            CHANGE_TIMEOUT,
        ))?;
        std::fs::write(&script, rules::nft(&flips))?;
        let theirs = nft.load(&script)?;
        Ok((ours, theirs))
    };
    for n in 0..WARM_UP {
        change(n)?;
    }
    let mut m = Measured {
        server: Times::new()?,
        round_trip: Times::new()?,
        nft: Times::new()?,
        dry_run: Times::new()?,
        done: 0,
    };
    let deadline = Instant::now() + max;
    let mut bar = Progress::new("converge", u64::from(changes));
    for n in 0..changes {
        if Instant::now() >= deadline {
            break;
        }
        let (ours, theirs) = change(WARM_UP + n)?;
        m.server.record(ours.server);
        m.round_trip.record(ours.round_trip);
        m.nft.record(theirs);
        m.done = n + 1;
        bar.step(&format!(
            "last: causeway {:.2} ms, nft {:.2} ms",
            ours.server.as_secs_f64() * 1e3,
            theirs.as_secs_f64() * 1e3
        ));
    }
    anyhow::ensure!(m.done > 0, "no change was measured within --max-seconds");

    // Validation alone: the same kind of change as a dry run (nothing is
    // saved or published, so the policy keeps its flip state).
    for n in 0..(changes / 10).clamp(5, 20) {
        let p = (n * 37) % policies;
        let mut flipped = flips.clone();
        flipped.flip(p);
        let dry = runtime.block_on(client.apply(
            &format!("perf-{p}.yaml"),
            rules::policy(&flipped, p),
            true,
            CHANGE_TIMEOUT,
        ))?;
        m.dry_run.record(dry.round_trip);
    }
    drop(nft);
    Ok(m)
}

/// causeway's p50 and p99, server side and round trip, against nft's.
fn figures(m: &Measured, rules: u32) -> Vec<Figure> {
    let mut figures = Vec::new();
    for (what, ours) in [
        ("apply_to_enforced", &m.server),
        ("apply_round_trip", &m.round_trip),
    ] {
        for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
            figures.push(Figure::new(
                format!("{what}_{name} rules={rules}"),
                "us",
                ours.at(q),
                PEER,
                m.nft.at(q),
                false,
            ));
        }
    }
    figures
}

fn placement(gw: &str, state: &str, policies: u32, changes: u32) -> BTreeMap<String, String> {
    let last = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    BTreeMap::from([
        (
            "causeway".to_owned(),
            format!(
                "causeway run in {gw}: dataplane worker on CPU {last} (the lab's workers.cores; idle, so it sleeps in poll(2) between frames), control API on tokio threads, unpinned; state saved with fsync in {state}"
            ),
        ),
        (
            "client".to_owned(),
            "causeway-perf: one tokio current-thread client, unpinned, gRPC over the appliance's Unix socket; one change at a time".to_owned(),
        ),
        (
            "linux".to_owned(),
            format!(
                "nft -f of the whole table inet {} in {gw}, spawned from a thread that entered the namespace; alternating with causeway change by change",
                rules::NFT_TABLE
            ),
        ),
        (
            "workload".to_owned(),
            format!(
                "{} rules: {policies} GlobalNetworkPolicies x {} deny rules over {} StaticEndpoints (nftables: a chain per policy, one per endpoint, a forward chain jumping by address); {changes} changes, each one port of one policy's first rule, after {WARM_UP} unmeasured",
                policies * rules::RULES_PER_POLICY,
                rules::RULES_PER_POLICY,
                rules::ENDPOINTS
            ),
        ),
    ])
}
