//! The scenario's private network namespace: loopback only, made at the
//! start and removed at the end, whatever happened in between.

use std::process::Command;

use anyhow::{Context, bail};

/// A network namespace that, when dropped, kills every process still in
/// it and is deleted.
pub(super) struct Netns {
    name: String,
}

/// Runs `cmd`, failing with its stderr.
pub(super) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// Makes `name` with its loopback up, ephemeral ports from 10000 (the
    /// servers listen below) and TIME_WAIT reuse for the connect-heavy
    /// `new-conns` runs. Both are per-namespace sysctls and hold for every
    /// server alike.
    ///
    /// # Errors
    /// Not root, or `ip`/`sysctl` missing or failing.
    pub(super) fn create(name: &str) -> anyhow::Result<Self> {
        run(Command::new("ip").args(["netns", "add", name]))
            .context("making the scenario's network namespace (needs root and iproute2)")?;
        // From here on Drop cleans up.
        let ns = Self {
            name: name.to_owned(),
        };
        run(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]))?;
        run(ns.exec("sysctl").args([
            "-q",
            "-w",
            "net.ipv4.ip_local_port_range=10000 65000",
            "net.ipv4.tcp_tw_reuse=1",
            "net.core.somaxconn=8192",
        ]))?;
        Ok(ns)
    }

    /// The namespace's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// `program` to be run inside the namespace.
    pub(super) fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whatever is left (a server that would not stop, a generator that
        // hung) goes with the namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill")
                    .args(["-KILL", pid])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!(
                "causeway-perf: could not remove network namespace {}: {e:#}",
                self.name
            );
        }
    }
}
