//! causeway-perf: the perf harness. One subcommand per scenario; each
//! measures causeway's part beside a peer in the same run and reports the
//! ratio, on stderr, while results go to stdout or `--out`.
//!
//! - `classify`: the policy classifier (TupleMerge) on ClassBench filter
//!   sets and traces, against a linear first-match scan; or, with
//!   `--generate`, makes such sets.
//! - `tls`: causeway's TLS terminator beside nginx (and HAProxy) in a
//!   private network namespace: new connections, keep-alive requests, bulk
//!   throughput, memory per idle connection; results as
//!   [`report_schema::Results`] JSON.
//!
//! And the tools the scenarios run: `load`, the TLS/TCP load generator,
//! and `backend`, the HTTP origin behind every proxy.
#![forbid(unsafe_code)]

mod backend;
mod classify;
mod http;
mod load;
mod procfs;
mod report_schema;
mod tls;

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
    /// causeway's TLS terminator beside nginx/HAProxy (needs root).
    Tls(tls::Args),
    /// Load a TLS or TCP server (the scenarios' generator).
    Load(load::Args),
    /// Serve HTTP/1.1 for the proxies under test (`GET /bytes/N`).
    Backend(backend::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Classify(args) => classify::run(&args),
        Scenario::Tls(args) => tls::run(&args),
        Scenario::Load(args) => load::run(&args),
        Scenario::Backend(args) => backend::run(&args),
    }
}
