//! `causeway ctl`: the operator's client of the control API (package
//! `causeway.v1`, control/proto/causeway/v1/control.proto), spoken over the
//! appliance's gRPC Unix socket.
//!
//! ```text
//! causeway ctl apply -f policies/ --wait       # create or replace resources
//! causeway ctl get GlobalNetworkPolicy allow-web -o json
//! causeway ctl list NetworkPolicy -n shop      # a table; -o yaml applies back
//! causeway ctl delete Tier security --expected-generation 7
//! causeway ctl explain --src 10.0.0.1 --dst 10.0.1.2 --proto tcp --dport 443
//! causeway ctl stats --watch                   # every counter, every second
//! causeway ctl flows --follow --verdict deny   # flow records as they come
//! causeway ctl status --wait 8                 # until every worker enforces 8
//! causeway ctl health                          # exit 0 only when SERVING
//! causeway ctl drain                           # stop taking new work, then restart
//! ```
//!
//! The socket is `--socket PATH`, that of the lab appliance with `--lab
//! NAME`, or the default configuration's control socket; `--server
//! https://HOST:PORT` with `--tls-ca`, `--tls-cert` and `--tls-key` reaches
//! the TCP control API (mTLS, an admin identity) instead. An error answer
//! from the appliance is printed for a reader (one line per mistake of a
//! refused batch) and the command exits non-zero.

mod apply;
mod connect;
mod duration;
mod explain;
mod files;
mod flows;
mod health;
mod kind;
mod out;
mod protocol;
mod read;
mod rpc_error;
mod stats;
mod status;
mod table;
mod time;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use anyhow::{Context, Result};
use tonic::transport::Channel;

pub use apply::{ApplyArgs, DeleteArgs};
pub use explain::{ExplainArgs, ExplainFormat};
pub use flows::{FlowSource, FlowVerdict, FlowsArgs, FlowsFormat};
pub use health::{DrainArgs, HealthArgs};
pub use read::{GetArgs, ListArgs, ListFormat, ManifestFormat};
pub use rpc_error::RpcError;
pub use stats::{StatsArgs, StatsFormat};
pub use status::{StatusArgs, StatusFormat};

/// Arguments of `causeway ctl`.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The appliance's gRPC control socket.
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "lab")]
    pub socket: Option<PathBuf>,
    /// The appliance of the lab with this name.
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "server")]
    pub lab: Option<String>,
    /// The control API as `unix:PATH` or `https://HOST:PORT` (the TCP API,
    /// mTLS: give --tls-ca, --tls-cert and --tls-key).
    #[arg(long, global = true, value_name = "ADDR", conflicts_with = "socket")]
    pub server: Option<String>,
    /// With `--server https://`: the CA bundle the appliance's certificate
    /// chains to.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// With `--server https://`: this client's certificate (an admin
    /// identity of the appliance).
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// With `--server https://`: its key.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// With `--server https://`: the name the appliance's certificate
    /// carries, when it is not the address's host.
    #[arg(long, global = true, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The subcommands of `causeway ctl`.
#[derive(Debug, clap::Subcommand)]
pub enum CtlCommand {
    /// Create or replace resources from manifest files, all or nothing.
    Apply(ApplyArgs),
    /// Print one resource's manifest.
    Get(GetArgs),
    /// List resources, optionally of one kind and namespace.
    List(ListArgs),
    /// Delete a resource.
    Delete(DeleteArgs),
    /// Explain the verdict a packet gets from the live policy.
    Explain(ExplainArgs),
    /// Show the appliance's counters.
    Stats(StatsArgs),
    /// Show flow records as the dataplane and the terminator judge them.
    Flows(FlowsArgs),
    /// Show the generation, what each worker enforces, and the ports.
    Status(StatusArgs),
    /// Ask the standard gRPC health service; exit 0 only when SERVING.
    Health(HealthArgs),
    /// Drain before a restart: health NOT_SERVING, /ready 503, the TLS
    /// terminator finishes its open connections and accepts no new ones.
    Drain(DrainArgs),
}

/// Runs `causeway ctl` on a current-thread tokio runtime of its own.
///
/// # Errors
/// The lab or the socket cannot be found, the appliance cannot be reached,
/// an input file cannot be read, or the appliance answers with an error
/// ([`RpcError`], printed for an operator).
pub fn run(args: &CtlArgs) -> Result<()> {
    let addr = connect::address(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(async {
        let channel = connect::open(&addr, args.lab.as_deref()).await?;
        dispatch(channel, &args.command).await
    });
    out::end_quietly_on_closed_stdout(result.map_err(|e| connect::explain(&addr, e)))
}

async fn dispatch(channel: Channel, command: &CtlCommand) -> Result<()> {
    match command {
        CtlCommand::Apply(args) => apply::apply(channel, args).await,
        CtlCommand::Get(args) => read::get(channel, args).await,
        CtlCommand::List(args) => read::list(channel, args).await,
        CtlCommand::Delete(args) => apply::delete(channel, args).await,
        CtlCommand::Explain(args) => explain::explain(channel, args).await,
        CtlCommand::Stats(args) => stats::stats(channel, args).await,
        CtlCommand::Flows(args) => flows::flows(channel, args).await,
        CtlCommand::Status(args) => status::status(channel, args).await,
        CtlCommand::Health(args) => health::health(channel, args).await,
        CtlCommand::Drain(args) => health::drain(channel, args).await,
    }
}
