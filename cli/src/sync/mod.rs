//! `causeway sync`: the control process that keeps appliances in step with
//! the cluster.
//!
//! ```text
//! sources (etcd.rs: Calico's etcdv3; kubernetes.rs: the Kubernetes API;
//!    │     manifests.rs: a directory)
//!    │  list, then watch; a relist is diffed, never replayed
//!    ▼
//! inventory.rs    every source's objects as causeway resources; bad ones
//!    │            reported and skipped; a version per change
//!    ▼  (every source synced; under load, pushes 50 ms apart)
//! push.rs         per appliance: diff against what it holds of this sync's
//!                 owner, one Apply (puts and deletes together, expected
//!                 generation, wait enforced), retry with backoff
//! status.rs       `causeway sync status`, /metrics
//! ```
//!
//! The sync writes as owner `sync/<name>`: the appliance refuses its writes
//! to resources an operator or the configuration file holds (and the other
//! way round), and its replace touches only its own. When the sync or a
//! datastore is gone the appliances keep enforcing what they hold (fail
//! static); a sync that restarts lists what each appliance holds and pushes
//! only the difference.

pub mod calico;
pub mod config;
pub mod etcd;
pub mod inventory;
pub mod kubernetes;
pub mod manifests;
pub mod push;
pub mod status;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex as StdMutex},
    time::Duration,
};

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::sync::{Mutex, watch};
use tracing::info;

use config::{SourceKind, SyncConfig};
use inventory::Inventory;
use push::ApplianceStatus;

/// Arguments of `causeway sync`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SyncArgs {
    /// `status`: ask a running sync how it is doing.
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
    /// The sync configuration file (optional: the environment and
    /// --appliance may say everything).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// An appliance to keep in step: unix:PATH (its control socket) or
    /// https://HOST:PORT (its TCP control API, with --appliance-ca,
    /// --appliance-cert and --appliance-key). Repeatable; added to the
    /// file's.
    #[arg(long = "appliance", value_name = "ADDR")]
    pub appliances: Vec<String>,
    /// The CA bundle https:// appliances' certificates chain to.
    #[arg(long, value_name = "FILE", requires_all = ["appliance_cert", "appliance_key"])]
    pub appliance_ca: Option<PathBuf>,
    /// This sync's certificate for https:// appliances (one of their admin
    /// identities).
    #[arg(long, value_name = "FILE", requires = "appliance_ca")]
    pub appliance_cert: Option<PathBuf>,
    /// Its key.
    #[arg(long, value_name = "FILE", requires = "appliance_ca")]
    pub appliance_key: Option<PathBuf>,
    /// The name in the appliances' certificates, if not the address's host.
    #[arg(long, value_name = "NAME", requires = "appliance_ca")]
    pub appliance_server_name: Option<String>,
    /// The sync's name (it writes as owner sync/NAME).
    #[arg(long)]
    pub name: Option<String>,
    /// Where to serve status and metrics.
    #[arg(long, value_name = "PATH")]
    pub status_socket: Option<PathBuf>,
    /// Let the cluster leave an appliance with no policy at all (its last
    /// policy deleted); without it such a push is refused and the
    /// appliance keeps the last policy it had (`allow_no_policy` in the
    /// configuration file).
    #[arg(long)]
    pub allow_no_policy: bool,
}

/// Subcommands of `causeway sync`.
#[derive(Debug, clap::Subcommand)]
pub enum SyncCommand {
    /// Per source: synced, revision, last event, errors; per appliance:
    /// connected, generation pushed and enforced, lag.
    Status(StatusArgs),
}

/// Arguments of `causeway sync status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The running sync's status socket.
    #[arg(long, value_name = "PATH", default_value = "/run/causeway/sync.sock")]
    pub socket: PathBuf,
    /// Output: a summary, or the JSON document.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: StatusFormat,
}

/// How `sync status` prints.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum StatusFormat {
    /// Lines for a reader.
    #[default]
    Text,
    /// The status document.
    Json,
}

/// Runs `causeway sync`.
///
/// # Errors
/// The configuration is wrong (every mistake named), or the status socket
/// cannot be bound; a running sync does not return.
pub fn run(args: &SyncArgs) -> Result<()> {
    if let Some(SyncCommand::Status(s)) = &args.command {
        return print_status(s);
    }
    let mut config = match &args.config {
        Some(path) => SyncConfig::load(path)?,
        None => SyncConfig::default(),
    };
    config.add_env(|k| std::env::var(k).ok())?;
    config.appliances.extend(args.appliances.iter().cloned());
    config.allow_no_policy |= args.allow_no_policy;
    if let Some(name) = &args.name {
        config.name.clone_from(name);
    }
    if let Some(s) = &args.status_socket {
        config.status_socket.clone_from(s);
    }
    if let (Some(ca), Some(cert), Some(key)) = (
        &args.appliance_ca,
        &args.appliance_cert,
        &args.appliance_key,
    ) {
        config.appliance_tls = Some(config::ApplianceTls {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
            server_name: args.appliance_server_name.clone(),
        });
    }
    let (sources, appliances) = config.check().context("the sync configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cw-sync")
        .enable_all()
        .build()
        .context("starting the sync's runtime")?;
    runtime.block_on(async move {
        let labels: Vec<(String, &'static str)> = sources
            .iter()
            .map(|(name, kind)| (name.clone(), kind.label()))
            .collect();
        let inventory = Arc::new(Mutex::new(Inventory::new(&labels)));
        let (changed, _) = watch::channel(0u64);
        let owner = config.owner();
        // Sources: each lists, then watches, into the inventory.
        for (index, (name, kind)) in sources.into_iter().enumerate() {
            let (inv, tx) = (inventory.clone(), changed.clone());
            match kind {
                SourceKind::Etcd(c) => tokio::spawn(etcd::run(index, name, c, inv, tx)),
                SourceKind::Manifests(c) => tokio::spawn(manifests::run(index, name, c, inv, tx)),
                SourceKind::Kubernetes(c) => tokio::spawn(kubernetes::run(index, name, c, inv, tx)),
            };
        }
        // Pushers: one per appliance, each on its own connection.
        let mut statuses = Vec::new();
        for addr in appliances {
            let status = Arc::new(StdMutex::new(ApplianceStatus {
                addr: addr.to_string(),
                ..ApplianceStatus::default()
            }));
            statuses.push(status.clone());
            tokio::spawn(push::run(
                addr,
                push::Settings {
                    owner: owner.clone(),
                    batch: Duration::from_millis(config.batch_ms),
                    allow_no_policy: config.allow_no_policy,
                },
                inventory.clone(),
                changed.subscribe(),
                status,
            ));
        }
        // Status and metrics.
        let shared = status::Shared {
            name: config.name.clone(),
            owner: owner.clone(),
            inventory,
            appliances: statuses,
        };
        status::start_unix(&config.status_socket, shared.clone())?;
        if let Some(addr) = config.metrics_listen {
            status::start_tcp(addr, shared).await?;
        }
        info!(owner, status = %config.status_socket.display(), "causeway sync running");
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// `causeway sync status`.
fn print_status(args: &StatusArgs) -> Result<()> {
    let body = causeway_control::api::get(&args.socket, "/status").with_context(|| {
        format!(
            "asking the sync at {} (is it running?)",
            args.socket.display()
        )
    })?;
    let s: Value = serde_json::from_str(&body).context("the sync's status is not JSON")?;
    match args.output {
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&s)?),
        StatusFormat::Text => print!("{}", summary(&s)),
    }
    Ok(())
}

/// The status document as lines for a reader.
fn summary(s: &Value) -> String {
    let mut out = format!(
        "sync {} (owner {}): {}; inventory version {}, {} resources, {} problems\n",
        s["name"].as_str().unwrap_or("?"),
        s["owner"].as_str().unwrap_or("?"),
        if s["synced"].as_bool() == Some(true) {
            "synced"
        } else {
            "not synced yet"
        },
        s["inventory"]["version"],
        s["inventory"]["resources"],
        s["inventory"]["problems"],
    );
    for src in s["sources"].as_array().into_iter().flatten() {
        out += &format!(
            "source {} ({}): {}, {}, revision {}, {} lists, {} events{}\n",
            src["name"].as_str().unwrap_or("?"),
            src["kind"].as_str().unwrap_or("?"),
            if src["synced"].as_bool() == Some(true) {
                "synced"
            } else {
                "not synced"
            },
            if src["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "disconnected"
            },
            src["revision"].as_str().unwrap_or("-"),
            src["lists"],
            src["events"],
            src["error"]
                .as_str()
                .map(|e| format!(", error: {e}"))
                .unwrap_or_default(),
        );
        for (key, problem) in src["problems"].as_object().into_iter().flatten() {
            out += &format!("  skipped {key}: {}\n", problem.as_str().unwrap_or(""));
        }
    }
    for a in s["appliances"].as_array().into_iter().flatten() {
        out += &format!(
            "appliance {}: {}, generation {} enforced {}, {} pushes, {} behind, lag {}{}\n",
            a["address"].as_str().unwrap_or("?"),
            if a["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "disconnected"
            },
            a["generation"],
            a["enforced"],
            a["pushes"],
            a["behind"],
            a["lag_seconds"]
                .as_f64()
                .map_or_else(|| "-".into(), |l| format!("{:.1} ms", l * 1e3)),
            a["error"]
                .as_str()
                .map(|e| format!(", error: {e}"))
                .unwrap_or_default(),
        );
        for (id, why) in a["rejected"].as_object().into_iter().flatten() {
            out += &format!("  refused {id}: {}\n", why.as_str().unwrap_or(""));
        }
    }
    out
}
