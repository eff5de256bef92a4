//! Starting and stopping the lab's HTTP backends (`causeway lab backend`, see
//! `backend.rs`) in island B: `backend-N` listens on 10.2.0.2:808N, logs to
//! `backend-N.log` and has its pid in `backend-N.pid` in the state dir.

use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::appliance;
use super::backend::LISTENING;
use super::cmd::{self, IP};
use super::error::{LabError, Result};
use super::state::LabDir;
use super::topology::{Role, addr};

/// How long `up` waits for a backend to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The lab's backends: name and address, `backend-1` first.
pub(crate) fn all() -> Vec<(String, SocketAddr)> {
    addr::BACKEND_PORTS
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            (
                format!("backend-{}", i + 1),
                SocketAddr::from((addr::SERVER_V4, port)),
            )
        })
        .collect()
}

/// Starts every backend in `NAME-b` with `exe` (a `causeway` binary) and
/// waits until each says it listens.
pub(crate) fn start(lab: &str, dir: &LabDir, exe: &Path) -> Result<()> {
    let b = Role::B.netns(lab);
    let mut started = Vec::new();
    for (name, listen) in all() {
        let log_path = dir.backend_log(&name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| LabError::io("open", &log_path, e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| LabError::io("open", &log_path, e))?;
        let mut command = Command::new(IP.program);
        command
            .args(["netns", "exec", &b])
            .arg(exe)
            .args(["lab", "backend", "--listen", &listen.to_string()])
            .args(["--name", &name])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own group: it outlives `causeway lab up` and a Ctrl-C in
            // its terminal; `down` stops it.
            .process_group(0);
        let line = cmd::command_line(
            IP.program,
            &command
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
        );
        tracing::info!(lab, command = %line, "lab: starting a backend");
        let child = command.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LabError::ToolMissing {
                tool: IP.program,
                package: IP.package,
            },
            _ => LabError::io("start", exe, e),
        })?;
        // `ip netns exec` execs the backend, so this is the backend's pid.
        let pid = child.id();
        dir.write_atomic(&dir.backend_pid(&name), format!("{pid}\n").as_bytes())?;
        started.push((name, listen, log_path, child));
    }
    for (name, listen, log_path, mut child) in started {
        wait_listening(&mut child, &log_path).map_err(|reason| LabError::BackendNotReady {
            backend: format!("{name} ({listen} in {b})"),
            reason,
            tail: appliance::tail(&log_path, 10),
            log: log_path.clone(),
        })?;
        // Reap it when it exits, should this process live that long.
        let reaper = std::thread::Builder::new().name("lab-reaper".to_owned());
        if let Err(e) = reaper.spawn(move || child.wait()) {
            tracing::warn!(lab, error = %e, "lab: cannot watch a backend process");
        }
    }
    Ok(())
}

/// Waits for the backend's "listening on" line in its log.
fn wait_listening(child: &mut std::process::Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if fs::read_to_string(log).is_ok_and(|text| text.contains(LISTENING)) {
            return Ok(());
        }
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("it exited ({status})")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot watch it: {e}")),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "it did not say it listens within {} s",
                READY_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the backends whose pid files are in `dir` (SIGTERM; a pid that is
/// not a live causeway process is left alone). Best effort: killing
/// everything in the namespace afterwards covers what this misses.
pub(crate) fn stop(dir: &LabDir) {
    for (name, _) in all() {
        let path = dir.backend_pid(&name);
        let pid = match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u32>().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "lab: cannot read a backend pid");
                None
            }
        };
        if let Some(pid) = pid
            && let Err(e) = appliance::stop_process(pid, &name)
        {
            tracing::warn!(backend = name, pid, error = %e, "lab: cannot stop a backend");
        }
    }
}
