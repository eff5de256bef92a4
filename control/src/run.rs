//! `causeway run`: the appliance.
//!
//! Start order (fail closed: nothing is forwarded until the dataplane's
//! sockets are in the XSKMAP, its last step, and the policy is compiled
//! before the dataplane starts): configuration file → stored state (or, on
//! the first start, the state seeded from the file, saved) → policy →
//! signals → dataplane → terminator → control API (gRPC) and the metrics
//! endpoints. The control API is the main way in; SIGHUP re-applies the
//! manifest files named in the configuration as one change (the files are
//! the whole policy: policy and endpoint resources they no longer hold are
//! deleted; ports, routes and TLS services stay), refused whole if any is
//! wrong. SIGINT/SIGTERM stop the API, drain the terminator, stop the
//! workers, close the sockets and detach the XDP program.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use tracing::{info, warn};

use crate::{
    api::{Api, MetricsSource, StatsSource},
    config::Config,
    grpc::{FlowHub, GrpcServer},
    node::{ChangeError, Node, manifest_files},
    store::{OWNER_CONFIG, Replace, Writer},
};

/// Arguments of `causeway run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file (YAML).
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Runs the appliance until SIGINT or SIGTERM.
///
/// # Errors
/// The configuration or the stored state is invalid, or the dataplane,
/// the terminator or an API listener cannot start.
pub fn run(args: &RunArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("installing SIGHUP")?;
    let node = Arc::new(Node::start(config)?);
    let config = node.config().clone();
    let result = serve(&node, &config, &args.config, &stop, &reload);
    info!("stopping");
    node.stop();
    info!("stopped");
    result
}

fn serve(
    node: &Arc<Node>,
    config: &Config,
    path: &std::path::Path,
    stop: &AtomicBool,
    reload: &AtomicBool,
) -> Result<()> {
    let stats: StatsSource = {
        let n = node.clone();
        Arc::new(move || n.dataplane_stats())
    };
    let more: MetricsSource = {
        let n = node.clone();
        Arc::new(move || n.more_metrics())
    };
    let api = Api::start(&config.api.socket, stats.clone(), Some(more.clone()))?;
    if let Some(listen) = config.metrics.listen {
        crate::api::start_metrics_tcp(listen, stats, Some(more))?;
        info!(%listen, "Prometheus endpoint");
    }
    let flows = FlowHub::start();
    let control_socket = config.api.control_socket();
    let grpc = GrpcServer::start(
        node.clone(),
        flows.clone(),
        &control_socket,
        config.api.tcp.as_ref(),
    )?;
    let status = crate::grpc::describe_ports(node);
    info!(
        config = %path.display(),
        generation = node.desired().generation,
        ports = %status,
        api = %config.api.socket.display(),
        control = %control_socket.display(),
        state = %config.state.dir.display(),
        "causeway is forwarding"
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if reload.swap(false, Ordering::Relaxed) {
            sighup(node, config);
        }
    }
    drop(grpc);
    drop(flows);
    drop(api);
    Ok(())
}

/// SIGHUP: the configuration's manifest files, re-applied as the whole of
/// the policy the configuration file holds (what a sync or an operator
/// wrote stays).
fn sighup(node: &Node, config: &Config) {
    if config.policy.manifests.is_empty() {
        info!("SIGHUP: no policy.manifests in the configuration; nothing to re-apply");
        return;
    }
    info!("SIGHUP: re-applying the policy manifests");
    let files = match manifest_files(config) {
        Ok(f) => f,
        Err(errors) => {
            for e in &errors {
                warn!("{e}");
            }
            warn!("policy reload refused; the policy in force stays");
            return;
        }
    };
    let writer = Writer {
        replace: Replace::OwnedPolicy,
        ..Writer::new(OWNER_CONFIG)
    };
    match node.apply(&files, &[], writer, false) {
        Ok(c) if c.changed => info!(generation = c.generation, "policy published"),
        Ok(c) => info!(generation = c.generation, "policy unchanged"),
        Err(ChangeError::Refused(r)) => {
            for line in r.to_string().lines() {
                tracing::error!("{}", line.trim());
            }
            warn!("policy reload refused; the policy in force stays");
        }
        Err(ChangeError::Io(e)) => {
            warn!(error = %format!("{e:#}"), "policy reload not saved; the policy in force stays")
        }
    }
}
