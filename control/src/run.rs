//! `causeway run`: the appliance.
//!
//! Start order (fail closed: nothing is forwarded until the dataplane's
//! sockets are in the XSKMAP, its last step, and the policy is compiled
//! before the dataplane starts): configuration file → stored state (or, on
//! the first start, the state seeded from the file, saved) → policy →
//! signals → the probes (`/live`, `/ready` 503) → dataplane → terminator →
//! control API (gRPC) and the metrics endpoints → ready (`/ready` 200,
//! `READY=1` to systemd when it supervises; see [`crate::notify`]). The control API is the main way in; SIGHUP re-applies the
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
    api::{Api, MetricsSource, Probes, StatsSource},
    config::Config,
    grpc::{FlowHub, GrpcServer},
    node::{ChangeError, Node, manifest_files},
    notify::Notifier,
    store::{OWNER_CONFIG, Replace, Writer},
};

/// Arguments of `causeway run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file (YAML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Load and validate everything a start would (configuration, stored
    /// state, manifests, certificates, interfaces), start nothing, and exit:
    /// 0 when it would start, 1 with every mistake named.
    #[arg(long)]
    pub check: bool,
}

/// Runs the appliance until SIGINT or SIGTERM.
///
/// # Errors
/// The configuration or the stored state is invalid, or the dataplane,
/// the terminator or an API listener cannot start.
pub fn run(args: &RunArgs) -> Result<()> {
    if args.check {
        return check(&args.config);
    }
    let config = Config::load(&args.config)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("installing SIGHUP")?;
    // The probes answer from now on (/live 200, /ready 503), so a
    // balancer sees a starting appliance as not ready rather than absent.
    let probes = Probes::new();
    if let Some(listen) = config.metrics.listen {
        crate::api::start_metrics_tcp(listen, probes.clone())?;
        info!(%listen, "Prometheus endpoint and probes (/metrics, /live, /ready)");
    }
    let mut notifier = Notifier::from_env();
    notifier.status("loading the policy and starting the ports");
    let node = Arc::new(Node::start(config)?);
    let config = node.config().clone();
    let result = serve(
        &node,
        &config,
        &args.config,
        &Loop {
            stop: &stop,
            reload: &reload,
            probes: &probes,
        },
        &mut notifier,
    );
    probes.set_ready(false);
    notifier.stopping();
    info!("stopping");
    node.stop();
    info!("stopped");
    result
}

/// What the main loop watches and reports to.
struct Loop<'a> {
    stop: &'a AtomicBool,
    reload: &'a AtomicBool,
    probes: &'a Arc<Probes>,
}

/// `causeway run --check`: prints what would start, or every mistake.
fn check(path: &std::path::Path) -> Result<()> {
    match crate::check::check(path) {
        Ok(c) => {
            let state = match &c.state {
                crate::check::StateSource::Stored(p) => format!("stored state {}", p.display()),
                crate::check::StateSource::Seed => "a new state seeded from the file".to_owned(),
            };
            println!(
                "{}: ok: {state}, generation {}, {} resources, {} ports, {} TLS services",
                path.display(),
                c.generation,
                c.resources,
                c.ports,
                c.services
            );
            Ok(())
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            anyhow::bail!(
                "{}: {} mistake(s); a start would refuse this configuration",
                path.display(),
                errors.len()
            )
        }
    }
}

fn serve(
    node: &Arc<Node>,
    config: &Config,
    path: &std::path::Path,
    main: &Loop<'_>,
    notifier: &mut Notifier,
) -> Result<()> {
    let stats: StatsSource = {
        let n = node.clone();
        Arc::new(move || n.dataplane_stats())
    };
    let more: MetricsSource = {
        let n = node.clone();
        Arc::new(move || n.more_metrics())
    };
    main.probes.set_sources(stats, Some(more));
    let api = Api::start(&config.api.socket, main.probes.clone())?;
    let flows = FlowHub::start();
    let control_socket = config.api.control_socket();
    let grpc = GrpcServer::start(
        node.clone(),
        flows.clone(),
        main.probes.clone(),
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
    // Ready: the policy is compiled and published, the ports' sockets are
    // in the XSKMAP, the control API answers.
    main.probes.set_ready(true);
    notifier.ready(&format!(
        "forwarding; policy generation {}; ports {status}",
        node.desired().generation
    ));
    while !main.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        main.probes.beat();
        notifier.tick(std::time::Instant::now());
        if main.reload.swap(false, Ordering::Relaxed) {
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
