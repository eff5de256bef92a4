//! causeway-perf: the perf harness. One subcommand per scenario; each
//! measures causeway's part beside a peer in the same run and reports the
//! ratio, on stderr, while results go to stdout or `--out`.
//!
//! - `classify`: the policy classifier (TupleMerge) on ClassBench filter
//!   sets and traces, against a linear first-match scan; or, with
//!   `--generate`, makes such sets.
//! - `report`: results of the scenarios into `docs/benchmarks.md` with
//!   tables and SVG plots of the ratios.
#![forbid(unsafe_code)]

mod classify;
mod report;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "causeway-perf", about = "causeway's perf harness", version)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Classify a ClassBench trace against a filter set, or generate both.
    Classify(classify::Args),
    /// Turn scenario results (JSON) into a markdown report with plots.
    Report(report::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Classify(args) => classify::run(&args),
        Scenario::Report(args) => report::run(&args),
    }
}
