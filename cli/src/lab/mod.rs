//! `causeway lab`: a whole test network in network namespaces on one host.
//!
//! A lab named NAME is four namespaces joined by veth pairs:
//!
//! ```text
//!   NAME-a (clients)          NAME-gw (the appliance)              NAME-b (servers)
//!   eth0 10.1.0.2/24 <-veth-> a0 10.1.0.1/24   b0 10.2.0.1/24 <-veth-> eth0 10.2.0.2/24
//!        fd00:a::2/64            fd00:a::1/64     fd00:b::1/64            fd00:b::2/64
//!                             hp0 10.0.255.1/30   (the host port)     backend-1..3 on
//!                              ^                                     10.2.0.2:8081..8083
//!                            veth
//!                              v
//!                             hp1 10.0.255.2/30   NAME-svc (the terminator's side)
//!                             lo  10.100.0.10/32 (the demo service), 10.100.0.20/32,
//!                                 10.100.0.21/32 (spare service addresses)
//! ```
//!
//! The islands route to each other through the appliance's addresses, but
//! the kernel in `NAME-gw` does not forward: only the dataplane, attached to
//! `a0`, `b0` and `hp0` with AF_XDP, carries packets between them. `NAME-svc`
//! is the kernel side of the host port, where the terminator's sockets live
//! (its workers enter `/run/netns/NAME-svc`): island A reaches the service
//! addresses, and the terminator reaches island B, only through the
//! dataplane. The host port is IPv4 only. Every offload is off on every lab
//! veth (see `topology.rs` for why). Nothing in a lab reaches beyond its own
//! namespaces, and labs with different names never share anything, so tests
//! can build several at once.
//!
//! Every lab runs three small HTTP backends in island B
//! (`causeway lab backend`), the upstreams of the terminator's demo service,
//! and has its own PKI for the terminator's mTLS.
//!
//! A lab's state lives in `/run/causeway/lab/NAME/` (the base directory
//! moves with `CAUSEWAY_RUN_DIR`):
//!
//! - `lab.json`: what the lab made, written before it is made, so that
//!   [`down`] removes exactly that, even after a crash in the middle of [`up`];
//! - `config.yaml`: the appliance configuration (`cli/lab/default.yaml`
//!   with the API socket path filled in, and `cli/lab/terminator.yaml`
//!   once the configuration has a `terminator:` section);
//! - `pki/`: the lab CA and the gateway's, a client's and an upstream's
//!   certificates and keys (see `pki.rs`);
//! - `backend-N.log`, `backend-N.pid`: the HTTP backends' output and pids;
//! - `appliance.log`, `appliance.pid`: the appliance's output and pid, when
//!   started with `--start`;
//! - `causeway.sock`: the appliance's API socket, once it listens.
//!
//! Every change to the system goes through `ip` (iproute2), `sysctl` run with
//! `ip netns exec`, and `ethtool`; all of it needs root. The PKI is made with
//! `openssl`.
//!
//! The kernel needs veth and network namespaces (any kernel AF_XDP runs on,
//! 4.18 or later, has both).

#![forbid(unsafe_code)]

mod appliance;
mod backend;
mod backends;
mod cmd;
mod config;
mod error;
mod lifecycle;
mod name;
mod pki;
mod state;
mod status;
mod topology;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use config::{
    ConfigPaths, DEFAULT_TEMPLATE as DEFAULT_CONFIG_TEMPLATE, TERMINATOR_IN_CONFIG,
    TERMINATOR_TEMPLATE as TERMINATOR_CONFIG_TEMPLATE, render as render_config,
};
pub use error::{LabError, Result};
pub use lifecycle::UpOptions;
pub use name::{MAX_NAME_LEN, validate as validate_name};
pub use state::RUN_DIR_ENV;
pub use status::{
    AddressStatus, ApplianceStatus, InterfaceStatus, LabStatus, NamespaceStatus, TerminatorStatus,
};
pub use topology::{Role, addr};

/// `causeway lab …`: build, inspect and remove labs.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: LabCommand,
}

/// The `causeway lab` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Build a lab: namespaces NAME-a, NAME-gw, NAME-svc and NAME-b, wired and
    /// addressed, with its PKI and HTTP backends.
    Up {
        /// The lab's name: 1 to 15 of a-z, 0-9 and '-', not starting with '-'.
        #[arg(long)]
        name: String,
        /// Also start the appliance in NAME-gw and wait until it forwards.
        #[arg(long)]
        start: bool,
        /// A directory of manifests, recorded with the lab for the appliance
        /// and tests.
        #[arg(long, value_name = "DIR")]
        manifests: Option<PathBuf>,
    },
    /// Stop a lab's appliance, kill what runs in its namespaces and remove
    /// them and its state.
    Down {
        /// The lab's name.
        #[arg(long)]
        name: String,
    },
    /// Start the appliance of a lab built without `--start`, or after
    /// `stop`, and wait until it forwards (it loads its stored state).
    Start {
        /// The lab's name.
        #[arg(long)]
        name: String,
    },
    /// Stop the appliance of a lab (the namespaces stay).
    Stop {
        /// The lab's name.
        #[arg(long)]
        name: String,
        /// SIGKILL at once, as a crash would, instead of a clean stop.
        #[arg(long)]
        kill: bool,
    },
    /// Show a lab's namespaces, interfaces and appliance.
    Status {
        /// The lab's name.
        #[arg(long)]
        name: String,
        /// How to print it.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// One of the lab's HTTP backends (started by `up` in NAME-b): answers
    /// every request with `hello from NAME`.
    #[command(hide = true)]
    Backend {
        /// Where to listen, e.g. 10.2.0.2:8081.
        #[arg(long)]
        listen: SocketAddr,
        /// Its name, in the `X-Backend` header and the body.
        #[arg(long)]
        name: String,
    },
}

/// How `causeway lab status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned listing for people.
    Text,
    /// [`LabStatus`] as JSON, for programs.
    Json,
}

/// Runs a `causeway lab` command line.
///
/// # Errors
///
/// Whatever [`up`], [`down`] or [`status`] returns.
pub fn run(args: LabArgs) -> anyhow::Result<()> {
    match args.cmd {
        LabCommand::Up {
            name,
            start,
            manifests,
        } => {
            let opts = UpOptions {
                start,
                manifests,
                ..UpOptions::default()
            };
            let status = up(&name, &opts)?;
            println!("lab {name} is up; remove it with `causeway lab down --name {name}`\n");
            print!("{status}");
        }
        LabCommand::Down { name } => {
            down(&name)?;
            println!("lab {name} removed");
        }
        LabCommand::Start { name } => {
            lifecycle::start_appliance(&name)?;
            println!("the appliance of lab {name} is forwarding");
        }
        LabCommand::Stop { name, kill } => {
            if lifecycle::stop_appliance(&name, kill)? {
                println!("the appliance of lab {name} is stopped");
            } else {
                println!("the appliance of lab {name} was not running");
            }
        }
        LabCommand::Status { name, output } => {
            let status = status(&name)?;
            match output {
                OutputFormat::Text => print!("{status}"),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&status)?),
            }
        }
        LabCommand::Backend { listen, name } => backend::run(listen, &name)?,
    }
    Ok(())
}

/// Builds lab `name` and returns its status.
///
/// Creates the state directory and `lab.json` first, then the namespaces
/// (each recorded before it is made), the veths, offload settings,
/// addresses and routes, then the PKI and `config.yaml`, then starts the HTTP
/// backends in island B and waits until they listen; with `opts.start`,
/// starts the appliance and waits until island A pings island B over IPv4
/// and IPv6.
///
/// # Errors
///
/// - [`LabError::InvalidName`], [`LabError::ToolMissing`],
///   [`LabError::AlreadyExists`] (the lab exists: `down` it first) or
///   [`LabError::NamespaceTaken`] before anything is made;
/// - [`LabError::UpFailed`], naming the failing command and its stderr (or
///   the backend or appliance that did not start, quoting its log),
///   after removing what was made; [`LabError::UpAndTeardownFailed`] if that
///   removal failed too (then run [`down`]).
pub fn up(name: &str, opts: &UpOptions) -> Result<LabStatus> {
    lifecycle::up(name, opts)
}

/// Removes lab `name`: stops its appliance and backends (SIGTERM, SIGKILL
/// after 5 s, and only if a recorded pid is a live causeway process), kills every process
/// left in each recorded namespace, deletes the namespaces, then the state
/// directory. Works on a lab whose appliance crashed, whose `up` died midway
/// or whose namespaces are already gone, and can be repeated until it
/// succeeds. Touches nothing that `lab.json` does not list.
///
/// # Errors
///
/// [`LabError::NoSuchLab`] if the lab has no record; [`LabError::CommandFailed`]
/// if a namespace cannot be deleted (the record stays, so `down` can be
/// retried).
pub fn down(name: &str) -> Result<()> {
    lifecycle::down(name)
}

/// What lab `name` looks like now.
///
/// # Errors
///
/// [`LabError::NoSuchLab`] if the lab has no record; [`LabError::CommandFailed`]
/// if `ip` cannot list a namespace's interfaces.
pub fn status(name: &str) -> Result<LabStatus> {
    lifecycle::status(name)
}

/// The names of the labs that have a state directory, sorted; for sweeps
/// that `down` what earlier runs left.
///
/// # Errors
///
/// [`LabError::Io`] if the run directory cannot be read.
pub fn list() -> Result<Vec<String>> {
    state::list()
}
