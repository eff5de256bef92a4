//! `up`, `down` and `status`: building a lab from its plan, removing exactly
//! what its record lists, and reading back what exists.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::appliance;
use super::backends;
use super::cmd::{self, ETHTOOL, IP, OPENSSL, PING, SYSCTL};
use super::config::{self, ConfigPaths};
use super::error::{LabError, Result};
use super::name;
use super::pki::{self, Pki};
use super::state::{LabDir, LabRecord};
use super::status::{ApplianceStatus, LabStatus, NamespaceStatus, TerminatorStatus, interfaces};
use super::topology::{self, Role, addr};

/// How long `up` waits for its links to report carrier.
const LINKS_UP_TIMEOUT: Duration = Duration::from_secs(5);

/// How `up` builds a lab.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Start the appliance in `NAME-gw` and wait until it forwards.
    pub start: bool,
    /// A directory of manifests, recorded in the lab's state (and shown by
    /// `status`) for the appliance and tests to use.
    pub manifests: Option<PathBuf>,
    /// The `causeway` binary to start as the appliance and as the lab's HTTP
    /// backends (`causeway lab backend`); `None` means this process's own
    /// executable, which is right for `causeway lab up` but not for a test
    /// binary.
    pub appliance_exe: Option<PathBuf>,
    /// How long `start` waits for the appliance to forward.
    pub ready_timeout: Duration,
}

impl Default for UpOptions {
    fn default() -> Self {
        Self {
            start: false,
            manifests: None,
            appliance_exe: None,
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// Builds lab `name`, see the [module docs](super).
pub(crate) fn up(name: &str, opts: &UpOptions) -> Result<LabStatus> {
    // Arguments and tools first: a mistake there should cost nothing to undo.
    name::validate(name)?;
    let manifests = opts.manifests.as_deref().map(manifests_dir).transpose()?;
    let exe = appliance_exe(opts)?;
    for tool in [IP, ETHTOOL, SYSCTL, OPENSSL] {
        tool.require()?;
    }
    if opts.start {
        PING.require()?;
    }

    let dir = LabDir::new(name)?;
    if dir.dir.exists() {
        return Err(LabError::AlreadyExists {
            name: name.to_owned(),
            dir: dir.dir,
        });
    }
    // Never adopt a namespace the lab did not make.
    let existing = existing_namespaces()?;
    if let Some(netns) = Role::ALL
        .iter()
        .map(|r| r.netns(name))
        .find(|ns| existing.contains(ns))
    {
        return Err(LabError::NamespaceTaken {
            name: name.to_owned(),
            netns,
        });
    }

    dir.create(name)?;
    let mut record = LabRecord {
        name: name.to_owned(),
        namespaces: Vec::new(),
        manifests,
    };
    if let Err(e) = dir.write_record(&record) {
        let _ = dir.remove();
        return Err(e);
    }
    tracing::info!(lab = name, dir = %dir.dir.display(), "lab: building");

    match build(name, &dir, &mut record, opts, &exe) {
        Ok(()) => status(name),
        Err(e) => {
            tracing::warn!(lab = name, error = %e, "lab: up failed; removing what was made");
            let cause = Box::new(e);
            match teardown(&dir, &record) {
                Ok(()) => Err(LabError::UpFailed {
                    name: name.to_owned(),
                    cause,
                }),
                Err(teardown) => Err(LabError::UpAndTeardownFailed {
                    name: name.to_owned(),
                    cause,
                    teardown: Box::new(teardown),
                }),
            }
        }
    }
}

fn build(
    name: &str,
    dir: &LabDir,
    record: &mut LabRecord,
    opts: &UpOptions,
    exe: &Path,
) -> Result<()> {
    // The namespaces, each recorded before it is made: whatever happens
    // next, `down` finds it.
    for role in Role::ALL {
        let netns = role.netns(name);
        record.namespaces.push(netns.clone());
        dir.write_record(record)?;
        if let Err(e) = cmd::run(IP, &["netns", "add", &netns]) {
            // Not made by us (it may have appeared since the check): forget it.
            record.namespaces.pop();
            dir.write_record(record)?;
            return Err(e);
        }
    }
    // Links, offloads, addresses and routes (see `topology::plan`).
    for step in topology::plan(name) {
        cmd::run(step.tool, &step.args)?;
    }
    // The kernel reports carrier a moment after `link set up`; a lab is
    // handed over with every link passing packets.
    wait_links_up(&record.namespaces)?;
    // The PKI the terminator's configuration names.
    let pki = pki::make(&dir.pki())?;
    // The appliance's configuration.
    let svc_netns = Role::Svc.netns_path(name);
    let mut yaml = config::render(&ConfigPaths {
        socket: &dir.socket(),
        svc_netns: &svc_netns,
        pki: &pki.dir,
    })?;
    match &record.manifests {
        Some(m) => yaml.push_str(&config::policy_section(m)?),
        None => yaml.push_str(config::BRIDGE_POLICY),
    }
    yaml.push_str(&config::state_section(&dir.appliance_state())?);
    dir.write_atomic(&dir.config(), yaml.as_bytes())?;
    // The HTTP backends in island B, the demo service's upstreams.
    backends::start(name, dir, exe)?;
    // The appliance itself, if asked for.
    if opts.start {
        appliance::start(name, dir, exe, opts.ready_timeout)?;
    }
    Ok(())
}

/// Waits until every interface but loopback in `namespaces` is
/// operationally up.
fn wait_links_up(namespaces: &[String]) -> Result<()> {
    let deadline = Instant::now() + LINKS_UP_TIMEOUT;
    loop {
        let mut down = Vec::new();
        for netns in namespaces {
            for ifc in interfaces(netns)? {
                if ifc.name != "lo" && ifc.operstate.as_deref() != Some("UP") {
                    down.push(format!("{} in {netns}", ifc.name));
                }
            }
        }
        if down.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::LinksDown {
                links: down,
                waited: LINKS_UP_TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn manifests_dir(path: &Path) -> Result<PathBuf> {
    let abs = path
        .canonicalize()
        .map_err(|e| LabError::io("find the manifests directory", path, e))?;
    if !abs.is_dir() {
        return Err(LabError::Config(format!(
            "--manifests {} is not a directory",
            path.display()
        )));
    }
    Ok(abs)
}

fn appliance_exe(opts: &UpOptions) -> Result<PathBuf> {
    match &opts.appliance_exe {
        Some(exe) => exe
            .canonicalize()
            .map_err(|e| LabError::io("find the appliance binary", exe, e)),
        None => std::env::current_exe()
            .map_err(|e| LabError::io("find the appliance binary", "/proc/self/exe", e)),
    }
}

/// Removes lab `name`, see the [module docs](super).
/// Starts the appliance of an existing lab (after `stop`, or a crash) and
/// waits until it forwards.
pub(crate) fn start_appliance(name: &str) -> Result<()> {
    name::validate(name)?;
    let dir = LabDir::new(name)?;
    if dir.read_record()?.is_none() {
        return Err(LabError::NoSuchLab {
            name: name.to_owned(),
            record: dir.record(),
            stray: Vec::new(),
        });
    }
    if let Some(pid) = dir.read_pid()?
        && appliance::is_causeway(pid)
    {
        return Err(LabError::Config(format!(
            "the appliance of lab {name} is running (pid {pid}); stop it first"
        )));
    }
    let opts = UpOptions::default();
    let exe = appliance_exe(&opts)?;
    appliance::start(name, &dir, &exe, opts.ready_timeout)
}

/// Stops the appliance of a lab: SIGTERM (it drains and detaches), or
/// with `kill` SIGKILL at once (a crash). Returns whether one was running.
pub(crate) fn stop_appliance(name: &str, kill: bool) -> Result<bool> {
    name::validate(name)?;
    let dir = LabDir::new(name)?;
    let Some(pid) = dir.read_pid()? else {
        return Ok(false);
    };
    if !appliance::is_causeway(pid) {
        return Ok(false);
    }
    if kill {
        appliance::signal(pid, "-KILL")?;
        appliance::wait_gone(pid, Duration::from_secs(5));
        Ok(true)
    } else {
        appliance::stop(pid)
    }
}

pub(crate) fn down(name: &str) -> Result<()> {
    name::validate(name)?;
    let dir = LabDir::new(name)?;
    let Some(record) = dir.read_record()? else {
        let stray = stray_namespaces(name)?;
        if dir.dir.is_dir() && stray.is_empty() {
            // An `up` that died between creating the directory and writing
            // its record made nothing else.
            tracing::warn!(
                lab = name,
                "lab: removing a state directory without a record"
            );
            return dir.remove();
        }
        return Err(LabError::NoSuchLab {
            name: name.to_owned(),
            record: dir.record(),
            stray,
        });
    };
    tracing::info!(lab = name, "lab: removing");
    teardown(&dir, &record)
}

/// Stops the appliance, empties and deletes every recorded namespace that
/// exists, then removes the state directory. Safe to repeat: the record
/// goes last, so an interrupted teardown can be run again.
fn teardown(dir: &LabDir, record: &LabRecord) -> Result<()> {
    // The appliance first, gently, so it can detach its XDP programs.
    match dir.read_pid() {
        Ok(Some(pid)) => {
            if let Err(e) = appliance::stop(pid) {
                // Killing everything in the namespaces below stops it too.
                tracing::warn!(pid, error = %e, "lab: cannot stop the appliance");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "lab: cannot read the appliance pid"),
    }
    backends::stop(dir);
    let existing = existing_namespaces()?;
    for netns in record.namespaces.iter().rev() {
        if !existing.contains(netns) {
            tracing::debug!(netns, "lab: namespace already gone");
            continue;
        }
        kill_all_in(netns)?;
        cmd::run(IP, &["netns", "del", netns])?;
    }
    dir.remove()
}

/// SIGKILLs every process in `netns` (servers, clients and shells that tests
/// or people left there), except this one.
fn kill_all_in(netns: &str) -> Result<()> {
    let me = std::process::id();
    let pids: Vec<u32> = cmd::run(IP, &["netns", "pids", netns])?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| p != me)
        .collect();
    for &pid in &pids {
        tracing::debug!(netns, pid, "lab: killing a process left in the namespace");
        appliance::signal(pid, "-KILL")?;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&p| appliance::is_alive(p)) {
        if Instant::now() >= deadline {
            // The namespace outlives its name until they exit; nothing else
            // can be done about a process stuck in the kernel.
            tracing::warn!(
                netns,
                "lab: processes survive SIGKILL; deleting the namespace anyway"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// What lab `name` looks like now, see [`LabStatus`].
pub(crate) fn status(name: &str) -> Result<LabStatus> {
    name::validate(name)?;
    let dir = LabDir::new(name)?;
    let Some(record) = dir.read_record()? else {
        return Err(LabError::NoSuchLab {
            name: name.to_owned(),
            record: dir.record(),
            stray: stray_namespaces(name)?,
        });
    };
    let existing = existing_namespaces()?;
    let mut namespaces = Vec::new();
    for netns in &record.namespaces {
        let exists = existing.contains(netns);
        namespaces.push(NamespaceStatus {
            role: Role::of(netns, name),
            name: netns.clone(),
            exists,
            interfaces: if exists {
                interfaces(netns)?
            } else {
                Vec::new()
            },
        });
    }
    let pid = dir.read_pid()?;
    Ok(LabStatus {
        name: name.to_owned(),
        state_dir: dir.dir.clone(),
        manifests: record.manifests,
        namespaces,
        appliance: ApplianceStatus {
            pid,
            running: pid.is_some_and(appliance::is_causeway),
            log: dir.log(),
            config: dir.config(),
            api_socket: dir.socket(),
            control_socket: causeway_control::config::ApiConfig {
                socket: dir.socket(),
                ..causeway_control::config::ApiConfig::default()
            }
            .control_socket(),
            state: dir.appliance_state(),
        },
        terminator: terminator_status(name, &dir),
    })
}

/// Where the lab's terminator listens and what a client needs to reach it.
fn terminator_status(name: &str, dir: &LabDir) -> TerminatorStatus {
    let pki = Pki::at(&dir.pki());
    TerminatorStatus {
        service: (addr::SERVICE_V4, addr::SERVICE_PORT).into(),
        ca: pki.ca,
        client_cert: pki.client,
        client_key: pki.client_key,
        server_name: addr::SERVICE_NAME.to_owned(),
        backends: backends::all().into_iter().map(|(_, a)| a).collect(),
        svc_netns: Role::Svc.netns(name),
    }
}

/// The names of all network namespaces, from `ip netns list`.
fn existing_namespaces() -> Result<Vec<String>> {
    // Lines are `NAME` or `NAME (id: N)`.
    Ok(cmd::run(IP, &["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The lab's namespace names that exist although no record lists them.
fn stray_namespaces(name: &str) -> Result<Vec<String>> {
    let existing = existing_namespaces()?;
    Ok(Role::ALL
        .iter()
        .map(|r| r.netns(name))
        .filter(|ns| existing.contains(ns))
        .collect())
}
