//! `causeway run`: the appliance.
//!
//! Start order (fail closed: nothing is forwarded until the dataplane's
//! sockets are in the XSKMAP, its last step, and the policy is compiled
//! before the dataplane starts): configuration → policy → signals →
//! dataplane → API. SIGHUP reloads the policy manifests atomically: a set
//! with any error is refused whole (each error logged) and the policy in
//! force stays. SIGINT/SIGTERM stop the workers, close the sockets and
//! detach the XDP program.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use causeway_dataplane::{
    policy::program::PolicyProgram,
    xdp::{Dataplane, DataplaneStats},
};
use causeway_tls::{metrics::WorkerMetrics, terminator::Terminator};
use tracing::{error, info, warn};

use crate::{
    api::{Api, MetricsSource, StatsSource},
    config::Config,
    policy::{
        compile::{self, Cache, Compiled},
        load_set,
    },
};

/// Arguments of `causeway run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file (YAML).
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Loads and compiles the configured manifests as `generation`.
fn compile_policy(config: &Config, generation: u64, cache: &mut Cache) -> Result<Compiled> {
    if config.policy.manifests.is_empty() {
        return Ok(Compiled {
            program: PolicyProgram::allow_all(generation),
            ..Compiled::default()
        });
    }
    match load_set(&config.policy.manifests) {
        Ok(set) => {
            let c = compile::compile(&set, generation, cache);
            info!(
                generation,
                policies = set.policies.len(),
                endpoints = set.endpoints.len(),
                rules = c.program.rules.len(),
                programs_built = c.built,
                programs_reused = c.reused,
                prefilter = c.prefilter.len(),
                "policy compiled"
            );
            Ok(c)
        }
        Err(errors) => {
            for e in &errors {
                error!("{e}");
            }
            bail!(
                "{} error(s) in the policy manifests; nothing was applied",
                errors.len()
            )
        }
    }
}

/// Runs the appliance until SIGINT or SIGTERM.
///
/// # Errors
/// The configuration or policy is invalid, or the dataplane cannot start.
pub fn run(args: &RunArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let mut cache = Cache::default();
    let mut generation = 1;
    let compiled = compile_policy(&config, generation, &mut cache)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("installing SIGHUP")?;
    let dataplane = if config.ports.is_empty() {
        info!("no ports: this appliance runs the terminator only");
        None
    } else {
        Some(Arc::new(Mutex::new(Dataplane::start(&config.dataplane(
            Arc::new(compiled.program),
            compiled.prefilter,
        ))?)))
    };
    // The terminator starts once the dataplane forwards: its upstream
    // connections leave through the host port.
    let terminator = match &config.terminator {
        Some(t) if !t.services.is_empty() => Some(Terminator::start(t)?),
        _ => None,
    };
    let ports: Vec<String> = dataplane.as_ref().map_or_else(Vec::new, |dp| {
        dp.lock()
            .expect("not poisoned")
            .ports()
            .iter()
            .map(|p| format!("{}={}", p.name, p.interface))
            .collect()
    });
    let stats: StatsSource = match &dataplane {
        Some(dp) => {
            let dp = dp.clone();
            Arc::new(move || dp.lock().expect("not poisoned").stats())
        }
        None => Arc::new(DataplaneStats::default),
    };
    let more: Option<MetricsSource> = terminator.as_ref().map(|t| {
        let workers: Vec<Arc<WorkerMetrics>> = t.worker_metrics().to_vec();
        Arc::new(move || {
            let refs: Vec<&WorkerMetrics> = workers.iter().map(AsRef::as_ref).collect();
            causeway_tls::metrics::render(&refs)
        }) as MetricsSource
    });
    let api = Api::start(&config.api.socket, stats, more)?;
    info!(
        config = %args.config.display(),
        ports = %ports.join(","),
        services = config.terminator.as_ref().map_or(0, |t| t.services.len()),
        api = %config.api.socket.display(),
        "causeway is forwarding"
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if reload.swap(false, Ordering::Relaxed) {
            let Some(dataplane) = &dataplane else {
                info!("SIGHUP: no dataplane, no policy to reload");
                continue;
            };
            info!("SIGHUP: reloading the policy");
            match compile_policy(&config, generation + 1, &mut cache) {
                Ok(c) => {
                    let dp = dataplane.lock().expect("not poisoned");
                    match dp.set_policy(Arc::new(c.program), &c.prefilter) {
                        Ok(g) => {
                            generation = g;
                            info!(generation, "policy published");
                        }
                        Err(e) => {
                            warn!(error = %format!("{e:#}"), "the new policy was not published; the old one stays")
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "policy reload refused; the policy in force stays")
                }
            }
        }
    }
    info!("stopping");
    // The terminator drains first, while the dataplane still carries its
    // connections.
    if let Some(t) = terminator {
        t.stop();
    }
    if let Some(dp) = dataplane {
        dp.lock().expect("not poisoned").stop();
    }
    drop(api);
    info!("stopped");
    Ok(())
}
