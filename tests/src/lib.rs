//! Helpers shared by the end-to-end tests in `tests/tests/`: the `causeway`
//! binary, labs that remove themselves, and commands inside namespaces.
//!
//! The tests drive the real binary (`target/<profile>/causeway`, built by
//! the README's test command before the tests run) and real tools (ping,
//! iperf3, python3) in real network namespaces. A missing tool fails the
//! test with the package to install; nothing is skipped.
#![forbid(unsafe_code)]

use std::{
    path::PathBuf,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod k8s;

/// The `causeway` binary next to the test binary's profile directory.
///
/// # Panics
/// If it was not built.
pub fn causeway_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAUSEWAY_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/causeway
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .join("causeway");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --release --bin causeway` (the README's test command does)",
        bin.display()
    );
    bin
}

/// Fails (does not skip) when `tool` is missing, naming the package.
///
/// # Panics
/// If the tool is not on PATH.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is needed by this test: apt-get install {package}"
    );
}

/// Runs a command, returning its output whatever the exit status.
///
/// # Panics
/// If the command cannot be started at all.
pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cmd}`: {e}"))
}

/// Runs a command and returns its stdout.
///
/// # Panics
/// If it fails; the message has the command, status, stdout and stderr.
pub fn ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "`{cmd}` failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A lab for one test, removed when dropped (also when the test fails).
#[derive(Debug)]
pub struct Lab {
    /// The lab's name.
    pub name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Builds a lab named after `tag`, this process and a counter, and
    /// starts the appliance (`causeway lab up --start`).
    ///
    /// # Panics
    /// If the lab cannot be built or the appliance does not forward.
    pub fn start(tag: &str) -> Self {
        let name = Self::unique(tag);
        let lab = Self { name };
        ok(&format!(
            "{} lab up --name {} --start",
            causeway_bin().display(),
            lab.name
        ));
        lab
    }

    /// Builds a lab and starts the appliance enforcing the manifests in `dir`.
    ///
    /// # Panics
    /// If the lab cannot be built or the appliance does not forward.
    pub fn start_with_manifests(tag: &str, dir: &std::path::Path) -> Self {
        let lab = Self {
            name: Self::unique(tag),
        };
        ok(&format!(
            "{} lab up --name {} --start --manifests {}",
            causeway_bin().display(),
            lab.name,
            dir.display()
        ));
        lab
    }

    /// Sends SIGHUP to the appliance and waits until every worker enforces a
    /// newer policy generation, or until `timeout`; returns the generation
    /// in force afterwards.
    ///
    /// # Panics
    /// If the appliance is not running.
    pub fn reload(&self, timeout: Duration) -> u64 {
        let before = self.stats()["enforced_generation"]
            .as_u64()
            .expect("generation");
        let pid = self.status()["appliance"]["pid"]
            .as_u64()
            .expect("appliance pid");
        ok(&format!("kill -HUP {pid}"));
        wait_for(timeout, || {
            let g = self.stats()["enforced_generation"].as_u64().unwrap_or(0);
            (g > before).then_some(g)
        })
        .unwrap_or(before)
    }

    /// Builds a lab without starting the appliance.
    ///
    /// # Panics
    /// If the lab cannot be built.
    pub fn up(tag: &str) -> Self {
        let lab = Self {
            name: Self::unique(tag),
        };
        ok(&format!(
            "{} lab up --name {}",
            causeway_bin().display(),
            lab.name
        ));
        lab
    }

    /// Builds a lab that will enforce the manifests in `dir`, without
    /// starting the appliance: edit its configuration, then `lab start`.
    ///
    /// # Panics
    /// If the lab cannot be built.
    pub fn up_with_manifests(tag: &str, dir: &std::path::Path) -> Self {
        let lab = Self {
            name: Self::unique(tag),
        };
        ok(&format!(
            "{} lab up --name {} --manifests {}",
            causeway_bin().display(),
            lab.name,
            dir.display()
        ));
        lab
    }

    fn unique(tag: &str) -> String {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Short: namespace and lab names stay readable; pid keeps parallel
        // test binaries apart.
        format!("t{tag}{}x{n}", std::process::id() % 100_000)
    }

    /// The namespace of role `a`, `gw` or `b`.
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    /// Runs `cmd` inside the namespace of `role` and returns stdout.
    ///
    /// # Panics
    /// If the command fails.
    pub fn exec(&self, role: &str, cmd: &str) -> String {
        ok(&format!("ip netns exec {} {cmd}", self.ns(role)))
    }

    /// Runs `cmd` inside the namespace of `role`, whatever its status.
    pub fn try_exec(&self, role: &str, cmd: &str) -> Output {
        sh(&format!("ip netns exec {} {cmd}", self.ns(role)))
    }

    /// `causeway lab status -o json`.
    ///
    /// # Panics
    /// If the lab is gone.
    pub fn status(&self) -> Value {
        serde_json::from_str(&ok(&format!(
            "{} lab status --name {} -o json",
            causeway_bin().display(),
            self.name
        )))
        .expect("status is JSON")
    }

    /// The appliance's counters (`causeway stats -o json`).
    ///
    /// # Panics
    /// If the appliance cannot be reached.
    pub fn stats(&self) -> Value {
        serde_json::from_str(&ok(&format!(
            "{} stats --lab {} -o json",
            causeway_bin().display(),
            self.name
        )))
        .expect("stats is JSON")
    }

    /// A counter of port `port` (`a`, `b`, `host`) from [`Self::stats`].
    ///
    /// # Panics
    /// If the port or counter is missing.
    pub fn port_counter(stats: &Value, port: &str, counter: &str) -> u64 {
        stats["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p[0]["name"] == port)
            .unwrap_or_else(|| panic!("no port {port} in {stats}"))[1][counter]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {counter}"))
    }

    /// Drops of port `port` for `reason` (a `DropReason` name) from [`Self::stats`].
    ///
    /// # Panics
    /// If the port or reason is unknown.
    pub fn port_drops(stats: &Value, port: &str, reason: &str) -> u64 {
        const REASONS: [&str; 18] = [
            "malformed",
            "not_ip",
            "not_for_us",
            "local",
            "no_route",
            "no_neighbour",
            "ttl_expired",
            "tx_ring_full",
            "fragmented",
            "policy",
            "icmp_misdirected",
            "spoofed",
            "tcp_invalid",
            "tcp_no_flow",
            "martian",
            "directed_broadcast",
            "unclaimed",
            "host_denied",
        ];
        let i = REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or_else(|| panic!("no drop reason {reason}"));
        let port = stats["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p[0]["name"] == port)
            .expect("port");
        port[1]["drops"][i].as_u64().expect("drop counter")
    }

    /// The appliance's log, for failure messages.
    pub fn log(&self) -> String {
        let st = self.status();
        std::fs::read_to_string(st["appliance"]["log"].as_str().unwrap_or("")).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = sh(&format!(
            "{} lab down --name {}",
            causeway_bin().display(),
            self.name
        ));
        if !out.status.success() {
            eprintln!(
                "lab down {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process killed and reaped when dropped (also when a test fails).
#[derive(Debug)]
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// TCP listeners in island B on 10.2.0.2, one per port, that accept and
/// close; ready when this returns.
///
/// # Panics
/// If python3 cannot start in the namespace or does not get ready.
pub fn tcp_listeners(lab: &Lab, ports: &[u16]) -> Reaped {
    let script = format!(
        "import socket, threading, time\n\
         def serve(p):\n    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    \
         s.bind(('10.2.0.2', p)); s.listen(64)\n    while True:\n        c, _ = s.accept(); c.close()\n\
         for p in {ports:?}:\n    threading.Thread(target=serve, args=(p,), daemon=True).start()\n\
         time.sleep(0.2)\nprint('ready', flush=True)\ntime.sleep(3600)\n"
    );
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("b"), "python3", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 in island B");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().expect("piped stdout")),
        &mut line,
    )
    .expect("the listeners' ready line");
    assert_eq!(line.trim(), "ready");
    Reaped(child)
}

/// Whether a TCP connection from island A to 10.2.0.2:`port` is made
/// (within 1.5 s).
pub fn tcp_connects(lab: &Lab, port: u16) -> bool {
    lab.try_exec(
        "a",
        &format!("timeout 4 python3 -c \"import socket; socket.create_connection(('10.2.0.2', {port}), timeout=1.5)\""),
    )
    .status
    .success()
}
