//! causeway-perf: the perf harness. One subcommand per scenario; each
//! measures causeway's part beside a peer in the same run and reports the
//! ratio, on stderr, while results go to stdout or `--out`.
//!
//! - `classify`: the policy classifier (TupleMerge) on ClassBench filter
//!   sets and traces, against a linear first-match scan; or, with
//!   `--generate`, makes such sets.
//! - `report`: results of the scenarios into `docs/benchmarks.md` with
//!   tables and SVG plots of the ratios.
//! - `forward`: packets per second through a lab's gateway, causeway against
//!   Linux forwarding with the same rules in nftables (linear and as a set),
//!   for 0, 1 000 and 10 000 rules.
//! - `policy-scale`: causeway's packets per second from 0 to 100 000 rules.
//! - `converge`: a one-policy change on 10 000 rules, from the control
//!   API's Apply until every worker enforces it, against nftables
//!   replacing the same ruleset with `nft -f`.
//! - `sync`: `causeway sync` on Calico's etcdv3 datastore (10 000
//!   endpoints, 1 000 policies): the initial sync, etcd write → every
//!   worker enforcing beside etcd's own write → watch event latency, and a
//!   churn of 500 endpoint changes per second.
//!
//! - `tls`: causeway's TLS terminator beside nginx (and HAProxy) in a
//!   private network namespace: new connections, keep-alive requests, bulk
//!   throughput, memory per idle connection.
//!
//! The whole-system scenarios write [`report_schema::Report`] as JSON and
//! print a table row as each figure lands; `forward`'s traffic comes from
//! [`pktgen`] (AF_XDP) and lands in [`sink`].
//!
//! And the tools the scenarios run: `load`, the TLS/TCP load generator,
//! and `backend`, the HTTP origin behind every proxy.
#![forbid(unsafe_code)]

mod backend;
mod classify;
mod converge;
mod forward;
mod http;
mod lab;
mod load;
mod pktgen;
mod procfs;
mod progress;
mod report;
mod report_schema;
mod sink;
mod sync;
mod sys;
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
    /// Turn scenario results (JSON) into a markdown report with plots.
    Report(report::Args),
    /// causeway against Linux forwarding + nftables at 0, 1k and 10k rules.
    Forward(forward::Args),
    /// causeway's forwarding rate as the rules grow from 0 to 100k.
    PolicyScale(forward::Args),
    /// A one-policy change on 10k rules, Apply → enforced, against `nft -f`.
    Converge(converge::Args),
    /// `causeway sync` from etcd to an appliance: initial sync, write →
    /// enforced beside etcd's watch, churn (needs root and etcd).
    Sync(sync::Args),
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
        Scenario::Report(args) => report::run(&args),
        Scenario::Forward(args) => forward::forward(&args),
        Scenario::PolicyScale(args) => forward::policy_scale(&args),
        Scenario::Converge(args) => converge::run(&args),
        Scenario::Sync(args) => sync::run(&args),
        Scenario::Tls(args) => tls::run(&args),
        Scenario::Load(args) => load::run(&args),
        Scenario::Backend(args) => backend::run(&args),
    }
}
