//! `causeway`: the appliance (`run`), the lab (`lab`), the operator's
//! view of counters (`stats`) and client of the control API (`ctl`). See
//! README.md.
#![forbid(unsafe_code)]

use std::{io::IsTerminal, process::ExitCode};

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "causeway",
    version,
    about = "An edge gateway appliance: AF_XDP routing with policy, and an mTLS terminator"
)]
struct Cli {
    /// Log as JSON lines instead of text (the filter is RUST_LOG, default info).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the appliance from a configuration file.
    Run(causeway_control::run::RunArgs),
    /// Build, inspect and remove labs of network namespaces.
    Lab(causeway_cli::lab::LabArgs),
    /// Show the appliance's counters.
    Stats(causeway_cli::stats::StatsArgs),
    /// Check and explain network policy manifests.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Configure and watch a running appliance over its control API.
    Ctl(causeway_cli::ctl::CtlArgs),
    /// Keep appliances in step with the cluster (Calico's etcdv3, manifests).
    Sync(causeway_cli::sync::SyncArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate manifests and print every error.
    Check(causeway_policy::check::CheckArgs),
    /// Explain the verdict a packet gets, and which rule decides it.
    Explain(causeway_policy::explain::ExplainArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let result = match cli.cmd {
        Command::Run(args) => causeway_control::run::run(&args),
        Command::Lab(args) => causeway_cli::lab::run(args),
        Command::Stats(args) => causeway_cli::stats::run(&args),
        Command::Sync(args) => causeway_cli::sync::run(&args),
        Command::Policy(PolicyCommand::Check(args)) => causeway_policy::check::run(&args),
        Command::Policy(PolicyCommand::Explain(args)) => causeway_policy::explain::run(&args),
        Command::Ctl(args) => causeway_cli::ctl::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("causeway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
