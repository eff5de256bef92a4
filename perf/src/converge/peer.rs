//! The Linux peer: `nft -f SCRIPT` run inside a lab namespace, timed from
//! spawn to exit, which is when the kernel has committed the transaction
//! (nft waits for netlink's acknowledgement) and new packets meet the new
//! rules. That is how an nftables-based agent applies a change: write the
//! whole ruleset, hand it to `nft -f`.
//!
//! The runs come from one thread that entered the namespace (setns), so
//! each `nft` starts there directly: no `ip netns exec` (which remounts
//! /sys) adds to the peer's time.
#![forbid(unsafe_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::sys;

type Job = (PathBuf, mpsc::Sender<anyhow::Result<Duration>>);

/// A thread in a namespace that runs `nft -f` on demand.
pub(crate) struct Nft {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Nft {
    /// Starts the thread in `/run/netns/NETNS`.
    ///
    /// # Errors
    /// The namespace cannot be entered, or `nft` does not run.
    pub(crate) fn start(netns: &str) -> anyhow::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::channel();
        let netns = netns.to_owned();
        let thread = std::thread::Builder::new()
            .name("perf-nft".to_owned())
            .spawn(move || {
                let entered = sys::enter_netns(&netns).and_then(|()| {
                    run(Command::new("nft").arg("--version")).map(drop).context(
                        "the converge scenario's peer needs nft (apt-get install nftables)",
                    )
                });
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if !ok {
                    return;
                }
                for (script, answer) in rx {
                    let _ = answer.send(run(Command::new("nft").arg("-f").arg(&script)));
                }
            })?;
        let nft = Self {
            jobs: Some(jobs),
            thread: Some(thread),
        };
        ready
            .recv()
            .context("the nft thread ended before it started")??;
        Ok(nft)
    }

    /// Runs `nft -f script`; how long it took.
    ///
    /// # Errors
    /// nft refused the script (its stderr is quoted).
    pub(crate) fn load(&self, script: &Path) -> anyhow::Result<Duration> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .context("the nft thread is gone")?
            .send((script.to_owned(), tx))
            .map_err(|_| anyhow::anyhow!("the nft thread is gone"))?;
        rx.recv().context("the nft thread is gone")?
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `cmd` to its end; how long it took.
fn run(cmd: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let out = cmd.output().context("running nft")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "nft failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}
