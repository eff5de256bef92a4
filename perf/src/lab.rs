//! The labs a scenario stands on, driven through the `causeway` binary
//! (`causeway lab up/down/status`, `causeway stats`) and iproute2/nft, and
//! removed when dropped, also when the scenario fails half way.
#![forbid(unsafe_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

/// Runs `program args...`; returns stdout, or an error quoting stderr.
pub(crate) fn run(program: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command inside namespace `netns` (`ip netns exec`).
pub(crate) fn in_netns(netns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["netns", "exec", netns];
    all.extend_from_slice(args);
    run(Path::new("ip"), &all)
}

/// The MAC address of `iface` in `netns`.
///
/// # Errors
/// The interface is not there or `ip` answers something unexpected.
pub(crate) fn mac(netns: &str, iface: &str) -> anyhow::Result<[u8; 6]> {
    let out = run(Path::new("ip"), &["-n", netns, "-j", "link", "show", iface])?;
    let v: Value = serde_json::from_str(&out)?;
    let text = v[0]["address"]
        .as_str()
        .with_context(|| format!("no address for {iface} in {netns}: {out}"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    anyhow::ensure!(parts.len() == 6, "not a MAC: {text}");
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("not a MAC: {text}"))?;
    }
    Ok(mac)
}

/// Frames received by `iface` in `netns` (its kernel counter).
pub(crate) fn rx_packets(netns: &str, iface: &str) -> anyhow::Result<u64> {
    let out = run(
        Path::new("ip"),
        &["-n", netns, "-s", "-j", "link", "show", iface],
    )?;
    let v: Value = serde_json::from_str(&out)?;
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .with_context(|| format!("no rx counter for {iface} in {netns}"))
}

/// Steers the receive processing of `iface` in `netns` to `cpu` (RPS).
pub(crate) fn steer_rx(netns: &str, iface: &str, cpu: usize) -> anyhow::Result<()> {
    let mask = format!("{:x}", 1u64 << cpu);
    in_netns(
        netns,
        &[
            "sh",
            "-c",
            &format!("echo {mask} > /sys/class/net/{iface}/queues/rx-0/rps_cpus"),
        ],
    )
    .map(drop)
}

/// The `causeway` binary: `explicit`, or the one beside this harness.
///
/// # Errors
/// It is not there (the message says how to build it).
pub(crate) fn causeway_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let causeway = match explicit {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()?
            .parent()
            .context("the harness binary has no directory")?
            .join("causeway"),
    };
    anyhow::ensure!(
        causeway.exists(),
        "{} is missing: build it with `cargo build --release --bin causeway`, or pass --causeway",
        causeway.display()
    );
    Ok(causeway)
}

/// Checks a `--lab-prefix`: labs are named PREFIXxN, and a lab name has at
/// most 15 characters.
///
/// # Errors
/// It is not a-z then a-z/0-9, 11 characters at most.
pub(crate) fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        prefix.len() <= 11
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "--lab-prefix {prefix:?}: a-z then a-z/0-9, 11 characters at most"
    );
    Ok(())
}

/// A lab that is removed (`causeway lab down`) when dropped.
#[derive(Debug)]
pub(crate) struct Lab {
    name: String,
    causeway: PathBuf,
}

impl Lab {
    /// Builds lab `name` (`causeway lab up`), starting the appliance with
    /// `start`, enforcing the manifests in `manifests` if given.
    ///
    /// # Errors
    /// The lab cannot be built; what was built of it is removed.
    pub(crate) fn up(
        causeway: &Path,
        name: &str,
        start: bool,
        manifests: Option<&Path>,
    ) -> anyhow::Result<Self> {
        // The guard first: a lab that fails half way up is still removed.
        let lab = Self {
            name: name.to_owned(),
            causeway: causeway.to_owned(),
        };
        let mut args = vec!["lab", "up", "--name", name];
        if start {
            args.push("--start");
        }
        let dir;
        if let Some(m) = manifests {
            dir = m.display().to_string();
            args.extend(["--manifests", &dir]);
        }
        run(causeway, &args)?;
        Ok(lab)
    }

    /// Its namespace of `role` (`a`, `gw`, `b`).
    pub(crate) fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    /// Turns on the kernel's IPv4 forwarding in the appliance namespace: the
    /// Linux peer (no appliance runs in such a lab).
    pub(crate) fn kernel_forwarding(&self) -> anyhow::Result<()> {
        in_netns(&self.ns("gw"), &["sysctl", "-qw", "net.ipv4.ip_forward=1"]).map(drop)
    }

    /// Replaces the appliance namespace's nftables ruleset with `ruleset`
    /// (`nft -f`); an empty one leaves no table at all.
    pub(crate) fn nft(&self, ruleset: &str, scratch: &Path) -> anyhow::Result<()> {
        let file = scratch.join(format!("{}.nft", self.name));
        std::fs::write(&file, format!("flush ruleset\n{ruleset}"))
            .with_context(|| format!("writing {}", file.display()))?;
        in_netns(&self.ns("gw"), &["nft", "-f", &file.display().to_string()]).map(drop)
    }

    /// The lab's status (`causeway lab status -o json`): its namespaces and
    /// the appliance's pid, log, sockets and state directory.
    pub(crate) fn status(&self) -> anyhow::Result<Value> {
        let out = run(
            &self.causeway,
            &["lab", "status", "--name", &self.name, "-o", "json"],
        )?;
        Ok(serde_json::from_str(&out)?)
    }

    /// The appliance's statistics (`causeway stats -o json`).
    pub(crate) fn stats(&self) -> anyhow::Result<Value> {
        let out = run(
            &self.causeway,
            &["stats", "--lab", &self.name, "-o", "json"],
        )?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Makes the appliance reload its manifests (SIGHUP) and waits until
    /// every worker enforces the new generation.
    ///
    /// # Errors
    /// The appliance is gone, or refused the manifests (its log says why),
    /// or did not adopt them within `timeout`.
    pub(crate) fn reload(&self, timeout: Duration) -> anyhow::Result<()> {
        let generation = |s: &Value| s["enforced_generation"].as_u64().unwrap_or(0);
        let before = generation(&self.stats()?);
        let status = self.status()?;
        let pid = status["appliance"]["pid"]
            .as_u64()
            .context("the lab's appliance is not running")?;
        run(Path::new("kill"), &["-HUP", &pid.to_string()])?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            if generation(&self.stats()?) > before {
                return Ok(());
            }
        }
        let log = status["appliance"]["log"].as_str().unwrap_or("");
        bail!(
            "the appliance of lab {} did not adopt the new policy within {timeout:?}; see {log}",
            self.name
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = run(&self.causeway, &["lab", "down", "--name", &self.name]) {
            eprintln!("removing lab {}: {e:#}", self.name);
        }
    }
}
