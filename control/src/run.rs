//! `causeway run`: the appliance.
//!
//! Start order (fail closed: nothing is forwarded until the dataplane's
//! sockets are in the XSKMAP, which is its last step):
//! configuration → signals → dataplane → API. SIGINT/SIGTERM stop the
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
use causeway_dataplane::xdp::Dataplane;
use tracing::info;

use crate::{api::Api, config::Config};

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
/// The configuration is invalid or the dataplane cannot start.
pub fn run(args: &RunArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let dataplane = Arc::new(std::sync::Mutex::new(Dataplane::start(
        &config.dataplane(),
    )?));
    let ports: Vec<String> = dataplane
        .lock()
        .expect("not poisoned")
        .ports()
        .iter()
        .map(|p| format!("{}={}", p.name, p.interface))
        .collect();
    let dp = dataplane.clone();
    let api = Api::start(
        &config.api.socket,
        Arc::new(move || dp.lock().expect("not poisoned").stats()),
    )?;
    info!(config = %args.config.display(), ports = %ports.join(","), api = %config.api.socket.display(), "causeway is forwarding");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    info!("stopping");
    dataplane.lock().expect("not poisoned").stop();
    drop(api);
    info!("stopped");
    Ok(())
}
