//! Starting and stopping the appliance (`causeway run`) inside `NAME-gw`.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::cmd::{self, IP, KILL, PING};
use super::error::{LabError, Result};
use super::state::LabDir;
use super::topology::{Role, addr};

/// How many lines of the appliance log an error quotes.
const TAIL_LINES: usize = 30;
/// How long `down` waits after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How often to look again while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Starts the appliance in the lab's `NAME-gw` and waits until island A
/// reaches island B through it over IPv4 and IPv6.
///
/// The appliance runs in a process group of its own, so it outlives
/// `causeway lab up` and a Ctrl-C in its terminal; `down` stops it.
pub(crate) fn start(lab: &str, dir: &LabDir, exe: &Path, ready_timeout: Duration) -> Result<()> {
    PING.require()?;
    let gw = Role::Gw.netns(lab);
    let log_path = dir.log();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| LabError::io("open", &log_path, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| LabError::io("open", &log_path, e))?;
    let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());

    let mut command = Command::new(IP.program);
    command
        .args(["netns", "exec", &gw])
        .arg(exe)
        .arg("run")
        .arg("--config")
        .arg(dir.config())
        .env("RUST_LOG", &rust_log)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let line = cmd::command_line(
        IP.program,
        &command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
    );
    note(
        &log_path,
        &format!("causeway lab up: starting RUST_LOG={rust_log} {line}"),
    );
    tracing::info!(lab, command = %line, "lab: starting the appliance");

    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LabError::ToolMissing {
            tool: IP.program,
            package: IP.package,
        },
        _ => LabError::io("start", exe, e),
    })?;
    // `ip netns exec` execs the appliance, so this is the appliance's pid.
    let pid = child.id();
    dir.write_atomic(&dir.pid(), format!("{pid}\n").as_bytes())?;

    match wait_until_forwarding(lab, &mut child, ready_timeout) {
        Ok(()) => {
            tracing::info!(lab, pid, "lab: the appliance forwards");
            // Reap the appliance when it exits, should this process live that
            // long (a test); otherwise it is reparented and reaped by init.
            let reaper = std::thread::Builder::new().name("lab-reaper".to_owned());
            if let Err(e) = reaper.spawn(move || child.wait()) {
                tracing::warn!(lab, error = %e, "lab: cannot watch the appliance process");
            }
            Ok(())
        }
        Err(reason) => {
            // Stop it before quoting the log, so its last words are in it.
            if let Err(e) = stop(pid) {
                tracing::warn!(lab, pid, error = %e, "lab: cannot stop the appliance");
            }
            let _ = child.kill();
            let _ = child.wait();
            Err(LabError::ApplianceNotReady {
                netns: gw,
                reason,
                tail: tail(&log_path, TAIL_LINES),
                log: log_path,
            })
        }
    }
}

/// Pings from island A to island B until both families answer; `Err` says
/// why it gave up.
fn wait_until_forwarding(lab: &str, child: &mut Child, timeout: Duration) -> Result<(), String> {
    let a = Role::A.netns(lab);
    let v4 = addr::SERVER_V4.to_string();
    let v6 = addr::SERVER_V6.to_string();
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("it exited ({status})")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot watch it: {e}")),
        }
        let ping = |target: &str, family: &str| {
            cmd::succeeds_in(&a, PING, &[family, "-c1", "-W1", target]).map_err(|e| e.to_string())
        };
        if ping(&v4, "-4")? && ping(&v6, "-6")? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "island A ({a}) got no ping reply from {v4} and {v6} within {} s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops the appliance with pid `pid`: SIGTERM, then SIGKILL after
/// [`TERM_GRACE`]. Does nothing unless `pid` is alive and a causeway process,
/// so a stale pid file never kills a stranger. Returns whether it stopped one.
pub(crate) fn stop(pid: u32) -> Result<bool> {
    stop_process(pid, "the appliance")
}

/// [`stop`] for any of the lab's causeway processes; `what` names it in
/// the log.
pub(crate) fn stop_process(pid: u32, what: &str) -> Result<bool> {
    if !is_causeway(pid) {
        return Ok(false);
    }
    tracing::info!(pid, "lab: stopping {what}");
    signal(pid, "-TERM")?;
    if wait_gone(pid, TERM_GRACE) {
        return Ok(true);
    }
    tracing::warn!(pid, "lab: {what} ignored SIGTERM for 5 s; killing it");
    signal(pid, "-KILL")?;
    wait_gone(pid, Duration::from_secs(1));
    Ok(true)
}

/// Sends a signal with the `kill` command; a process that is already gone
/// is not an error.
pub(crate) fn signal(pid: u32, sig: &str) -> Result<()> {
    match cmd::run(KILL, &[sig, &pid.to_string()]) {
        Ok(_) => Ok(()),
        Err(LabError::CommandFailed { .. }) if !is_alive(pid) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while is_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Whether `pid` is a live process (a zombie is not).
pub(crate) fn is_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the first field after the command name, which is in
    // parentheses and may itself contain ") ".
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Whether `pid` is alive and its command line mentions causeway.
pub(crate) fn is_causeway(pid: u32) -> bool {
    is_alive(pid)
        && fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.windows(b"causeway".len()).any(|w| w == b"causeway"))
}

/// The last `n` lines of `path`, or a note saying it cannot be read.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Appends a line of our own to the appliance log, to mark where a run starts.
fn note(log: &Path, message: &str) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let result = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| writeln!(f, "--- [unix time {secs}] {message}"));
    if let Err(e) = result {
        tracing::warn!(log = %log.display(), error = %e, "lab: cannot write to the appliance log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not_a_process() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(0));
        assert!(!is_alive(u32::MAX));
    }

    #[test]
    fn a_stranger_is_never_stopped() {
        // A live process whose command line does not mention causeway.
        let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = sleeper.id();
        assert!(!is_causeway(pid));
        assert!(!stop(pid).unwrap());
        assert!(is_alive(pid));
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(!is_alive(pid));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("causeway-lab-tail-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("appliance.log");
        let text: String = (1..=40).map(|i| format!("line {i}\n")).collect();
        fs::write(&log, text).unwrap();
        let t = tail(&log, 30);
        assert!(t.starts_with("line 11\n"), "{t}");
        assert!(t.ends_with("line 40"), "{t}");
        assert!(tail(&dir.join("nope"), 30).contains("cannot read"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
