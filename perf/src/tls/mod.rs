//! The `tls` scenario: causeway's terminator beside nginx (and HAProxy),
//! the same load generator against each, in the same run.
//!
//! ```text
//! causeway-perf tls [--quick] --json FILE [--peers nginx,haproxy] [--mtls]
//!     [--causeway PATH] [--causeway-aws PATH] [--duration S] [--rounds N]
//! ```
//!
//! In a private network namespace (`cwperf-tls-PID`, loopback only,
//! deleted at the end even on failure) it starts two `causeway-perf
//! backend`s, then every server (see [`servers`] for how each is
//! configured and why that is fair), then measures, server by server:
//!
//! 1. memory per idle TLS connection: RSS of the server's processes
//!    before and after the generator holds K connections (1000; quick
//!    200), each after one request, divided by K — first, while the
//!    servers are fresh, so memory freed by earlier runs cannot hide it;
//! 2. for TLS and then plain TCP, `new-conns`, `keepalive` and `bulk`
//!    (see [`crate::load`]): requests (or bits) per second, p50/p99
//!    latency, and the server's CPU time per request (or per MiB);
//! 3. with `--mtls`, `new-conns` again with a client certificate that each
//!    server verifies against the CA.
//!
//! Each run is repeated `--rounds` times (3; quick 1), every round
//! starting with the next server, and each figure is its median over the
//! rounds: the machine is shared, and a burst of someone else's work
//! should not land on one server only.
//!
//! Idle memory is per connection after K connections, so fixed costs
//! (pools, first allocations) are spread over K: the quick run's K of 200
//! overstates it; compare figures of the same K only.
//!
//! It prints one table row per figure as it goes (stdout; progress on
//! stderr) and writes [`crate::report_schema::Report`] to `--json`.
//!
//! # Placement and its limits
//!
//! Two CPUs by default: the generator and the backends share one
//! (`--generator-cpu`, 0), the server under test has the other to itself
//! (`--server-cpu`, 1), all pinned with `taskset` (causeway refuses a
//! `cores` entry outside its affinity, so it starts unpinned, pins its
//! worker itself, and its other threads are pinned with `taskset -a -p`
//! once it listens). The generator does not always outrun a server on one
//! CPU, and a server can also be latency-bound below 100% CPU, so the
//! rates are the pair's: the report prints both sides' CPU use per run,
//! and the server CPU per request figures compare the servers' own cost
//! whichever side saturated.
//!
//! The namespace's sysctls (ephemeral ports 10000-65000, `tcp_tw_reuse`,
//! `somaxconn` 8192) let `new-conns` open tens of thousands of
//! connections a run; they are the same for every server.
//!
//! `--causeway-aws PATH` adds a causeway built with
//! `--features causeway-tls/aws-lc-rs` as one more peer of the TLS runs
//! (ring against aws-lc-rs); the harness never builds it itself.

mod netns;
mod servers;

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use causeway_tls::identity::ca::lab_pki;

use crate::{
    load::{LoadReport, Mode},
    procfs,
    progress::Progress,
    report_schema::{Figure, Machine, Report},
};
use netns::Netns;
use servers::{Common, Listeners, Peer, Server};

/// Arguments of `causeway-perf tls`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// About a second per measurement and small counts: the smoke test.
    #[arg(long)]
    quick: bool,
    /// Where to write the results (JSON).
    #[arg(long, value_name = "FILE")]
    json: PathBuf,
    /// The causeway binary [default: `causeway` beside this one].
    #[arg(long, value_name = "PATH")]
    causeway: Option<PathBuf>,
    /// A causeway built with `--features causeway-tls/aws-lc-rs`: adds it as
    /// a peer of the TLS runs.
    #[arg(long, value_name = "PATH")]
    causeway_aws: Option<PathBuf>,
    /// Peers to measure beside causeway.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "nginx")]
    peers: Vec<Peer>,
    /// Seconds measured per run [default: 5; quick: 0.8].
    #[arg(long)]
    duration: Option<f64>,
    /// Idle connections for the memory figure [default: 1000; quick: 200].
    #[arg(long)]
    idle: Option<usize>,
    /// Concurrent loops of `new-conns` and `keepalive`.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Connections of `bulk`.
    #[arg(long, default_value_t = 4)]
    bulk_concurrency: usize,
    /// Bytes per `bulk` response.
    #[arg(long, default_value_t = 1 << 20)]
    bulk_body: u64,
    /// The CPU of the generator and the backends.
    #[arg(long, default_value_t = 0)]
    generator_cpu: usize,
    /// The CPU of the server under test.
    #[arg(long, default_value_t = 1)]
    server_cpu: usize,
    /// Rounds per run; each figure is the median round [default: 1; 3
    /// without --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// Also measure new connections with a client certificate (mTLS).
    #[arg(long)]
    mtls: bool,
    /// Keep the working directory (configurations, logs, certificates).
    #[arg(long)]
    keep: bool,
    /// Measure only these (for iterating on one load): `idle` and runs
    /// named PREFIX-MODE, e.g. `tls-bulk,tls-keepalive,tcp-bulk`
    /// [default: all].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<String>,
}

/// The scenario's working directory, removed on drop unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("causeway-perf: kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A backend process; killed on drop.
struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One measurement: a mode over TLS, mTLS or plain TCP.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// `tls`, `mtls` or `tcp`: the figures' prefix.
    prefix: &'static str,
    mode: Mode,
}

impl Run {
    const fn new(prefix: &'static str, mode: Mode) -> Self {
        Self { prefix, mode }
    }

    fn plain(self) -> bool {
        self.prefix == "tcp"
    }

    fn mtls(self) -> bool {
        self.prefix == "mtls"
    }

    /// `PREFIX-MODE`, as `--only` names it.
    fn name(self) -> String {
        format!("{}-{}", self.prefix, self.mode.name())
    }
}

/// Always measured.
const RUNS: [Run; 6] = [
    Run::new("tls", Mode::NewConns),
    Run::new("tls", Mode::Keepalive),
    Run::new("tls", Mode::Bulk),
    Run::new("tcp", Mode::NewConns),
    Run::new("tcp", Mode::Keepalive),
    Run::new("tcp", Mode::Bulk),
];

/// With `--mtls`: where a client certificate costs something, the
/// handshake (after it, mTLS is TLS).
const MTLS_RUNS: [Run; 1] = [Run::new("mtls", Mode::NewConns)];

/// One server's result of one run.
struct Measured {
    report: LoadReport,
    /// The server's CPU time over the whole generator run.
    server_cpu_ns: u64,
}

/// How a run is driven.
struct Driver<'a> {
    netns: &'a Netns,
    exe: PathBuf,
    /// The client certificate and key for mTLS runs.
    client: (PathBuf, PathBuf),
    generator_cpu: usize,
    duration: f64,
    warmup: f64,
    concurrency: usize,
    bulk_concurrency: usize,
    bulk_body: u64,
    idle: usize,
}

impl Driver<'_> {
    /// `causeway-perf load ...` in the namespace on the generator CPU.
    fn load_command(&self, target: SocketAddr, mode: Mode, run: Option<Run>) -> Command {
        let mut cmd = self.netns.exec("taskset");
        cmd.args(["-c", &self.generator_cpu.to_string()])
            .arg(&self.exe)
            .args(["load", "--target", &target.to_string(), "--mode"])
            .arg(mode.name());
        match run {
            Some(r) if r.plain() => {
                cmd.arg("--plain");
            }
            Some(r) if r.mtls() => {
                cmd.arg("--client-cert")
                    .arg(&self.client.0)
                    .arg("--client-key")
                    .arg(&self.client.1);
            }
            _ => {}
        }
        cmd
    }

    /// Runs the generator against `server` and reads the server's CPU
    /// time around it.
    fn measure(&self, server: &Server, run: Run) -> anyhow::Result<Measured> {
        let target = match run.prefix {
            "tcp" => server.at.tcp,
            "mtls" => server.at.mtls,
            _ => server.at.tls,
        };
        let concurrency = match run.mode {
            Mode::Bulk => self.bulk_concurrency,
            _ => self.concurrency,
        };
        let mut cmd = self.load_command(target, run.mode, Some(run));
        cmd.args(["--json", "--concurrency", &concurrency.to_string()])
            .args(["--duration", &self.duration.to_string()])
            .args(["--warmup", &self.warmup.to_string()])
            .args(["--body", &self.bulk_body.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let cpu_before = server.cpu_ns();
        let child = cmd.spawn().context("starting the load generator")?;
        let limit = Duration::from_secs_f64(self.warmup + self.duration + 20.0);
        let out = wait_bounded(child, limit)?;
        let server_cpu_ns = server.cpu_ns().saturating_sub(cpu_before);
        if !out.status.success() {
            bail!(
                "the load generator failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let report: LoadReport =
            serde_json::from_slice(&out.stdout).context("reading the load generator's report")?;
        if report.ok == 0 {
            bail!(
                "{} {} {}: no request succeeded (first error: {}); the server's log:\n{}",
                server.name,
                run.prefix,
                run.mode.name(),
                report.first_error.as_deref().unwrap_or("none"),
                server.log_tail()
            );
        }
        Ok(Measured {
            report,
            server_cpu_ns,
        })
    }

    /// KiB of resident memory per idle TLS connection on `server`.
    fn idle_memory(&self, server: &Server) -> anyhow::Result<f64> {
        let mut cmd = self.load_command(server.at.tls, Mode::Idle, None);
        cmd.args(["--concurrency", &self.idle.to_string()])
            .args(["--duration", "120", "--warmup", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let before = server.rss_kib();
        let mut child = cmd.spawn().context("starting the load generator")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .context("reading the load generator")?;
        // Let the server finish whatever the last handshakes left to do.
        thread::sleep(Duration::from_millis(300));
        let after = server.rss_kib();
        drop(child.stdin.take());
        let status = wait_bounded(child, Duration::from_secs(10))?.status;
        let mut fields = line.split_whitespace();
        let (Some("ready"), Some(held)) = (fields.next(), fields.next()) else {
            bail!("the load generator's idle mode said {line:?} ({status})");
        };
        let held: usize = held.parse().context("idle connections held")?;
        if held < self.idle / 2 {
            bail!(
                "{}: only {held} of {} idle connections opened",
                server.name,
                self.idle
            );
        }
        Ok((after as f64 - before as f64) / held as f64)
    }
}

/// Waits for `child` at most `limit`, then kills it; its output.
fn wait_bounded(mut child: Child, limit: Duration) -> anyhow::Result<std::process::Output> {
    let deadline = Instant::now() + limit;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the load generator ran over {limit:?} and was killed");
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

/// A quantity taken from one measurement.
struct Quantity {
    name: String,
    unit: &'static str,
    higher_is_better: bool,
    value: f64,
}

/// The quantities a run yields.
fn quantities(run: Run, body: u64, m: &Measured) -> Vec<Quantity> {
    let r = &m.report;
    let q = |name: String, unit, higher_is_better, value| Quantity {
        name,
        unit,
        higher_is_better,
        value,
    };
    let cpu_us = m.server_cpu_ns as f64 / 1e3;
    let p = run.prefix;
    match run.mode {
        Mode::Bulk => vec![
            q(
                format!("{p}_bulk_gbit_per_sec"),
                "Gbit/s",
                true,
                r.bits_per_sec / 1e9,
            ),
            q(
                format!("{p}_bulk_server_cpu_per_mib"),
                "us",
                false,
                cpu_us / (r.ok_total as f64 * body as f64 / f64::from(1 << 20)),
            ),
        ],
        Mode::NewConns | Mode::Keepalive | Mode::Idle => {
            let m = if run.mode == Mode::NewConns {
                "new_conns"
            } else {
                "keepalive"
            };
            vec![
                q(format!("{p}_{m}_per_sec"), "1/s", true, r.per_sec),
                q(format!("{p}_{m}_p50_latency"), "us", false, r.p50_us),
                q(format!("{p}_{m}_p99_latency"), "us", false, r.p99_us),
                q(
                    format!("{p}_{m}_server_cpu_per_req"),
                    "us",
                    false,
                    cpu_us / r.ok_total as f64,
                ),
            ]
        }
    }
}

/// Each quantity's median over rounds (of two middle values, the mean).
fn median(rounds: &[Vec<Quantity>]) -> Vec<Quantity> {
    let first = &rounds[0];
    (0..first.len())
        .map(|j| {
            let mut v: Vec<f64> = rounds.iter().map(|r| r[j].value).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let value = if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            };
            Quantity {
                name: first[j].name.clone(),
                unit: first[j].unit,
                higher_is_better: first[j].higher_is_better,
                value,
            }
        })
        .collect()
}

/// Prints a figure as a table row.
fn row(out: &mut impl Write, f: &Figure) {
    let _ = writeln!(
        out,
        "{:<34} {:>12.2} {:<20} {:>12.2} {:>7.2}x  {}{}",
        f.name,
        f.causeway,
        f.peer,
        f.peer_value,
        f.ratio,
        f.unit,
        if f.higher_is_better {
            ""
        } else {
            " (lower is better)"
        }
    );
}

/// Runs the scenario.
///
/// # Errors
/// A binary or peer is missing, the namespace or a server cannot be set
/// up, or a measurement got no successful request at all.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding causeway-perf itself")?;
    let causeway = match &args.causeway {
        Some(p) => p.clone(),
        None => exe.with_file_name("causeway"),
    };
    if !causeway.is_file() {
        bail!(
            "no causeway binary at {}: build it (cargo build --release --bin causeway) \
             or pass --causeway PATH",
            causeway.display()
        );
    }
    if let Some(aws) = &args.causeway_aws
        && !aws.is_file()
    {
        bail!("--causeway-aws {}: no such file", aws.display());
    }
    for &peer in &args.peers {
        servers::peer_program(peer)?;
    }
    for tool in ["ip", "taskset", "sysctl"] {
        if servers::find_program(tool).is_none() {
            bail!("{tool} is missing: apt-get install iproute2 util-linux procps");
        }
    }
    let machine = Machine::detect();
    let cpus_needed = args.generator_cpu.max(args.server_cpu) as u32 + 1;
    if args.generator_cpu == args.server_cpu || machine.cpus < cpus_needed {
        bail!(
            "the generator and the servers need two different CPUs (--generator-cpu {}, \
             --server-cpu {}; this machine has {})",
            args.generator_cpu,
            args.server_cpu,
            machine.cpus
        );
    }
    let (duration, warmup, idle, rounds_n) = if args.quick {
        let rounds = args.rounds.unwrap_or(1);
        (
            args.duration.unwrap_or(0.8),
            0.2,
            args.idle.unwrap_or(200),
            rounds,
        )
    } else {
        let rounds = args.rounds.unwrap_or(3);
        (
            args.duration.unwrap_or(5.0),
            1.0,
            args.idle.unwrap_or(1000),
            rounds,
        )
    };
    if rounds_n == 0 {
        bail!("--rounds must be at least 1");
    }

    // Every process inherits this limit; a server holds two descriptors
    // per idle connection, the generator one.
    let files = procfs::open_files_limit();
    if files < 2 * idle as u64 + 1024 {
        bail!(
            "open files limit {files} is too low for {idle} idle connections: \
             raise it (ulimit -n) or pass a smaller --idle"
        );
    }
    let pid = std::process::id();
    let work = WorkDir {
        path: std::env::temp_dir().join(format!("cwperf-tls-{pid}")),
        keep: args.keep,
    };
    fs::create_dir_all(&work.path).with_context(|| format!("creating {}", work.path.display()))?;
    let localhost = Ipv4Addr::LOCALHOST;
    let pki = lab_pki(&work.path.join("pki"), "perf.causeway", &[localhost.into()])
        .context("making the certificates")?;
    let netns = Netns::create(&format!("cwperf-tls-{pid}"))?;
    eprintln!("causeway-perf: network namespace {}", netns.name());

    // The backends: on the generator's CPU, the same two for every server.
    let backend_addrs: Vec<SocketAddr> = (0..2)
        .map(|i| SocketAddr::from((localhost, 9001 + i)))
        .collect();
    let mut backends = Vec::new();
    for (i, addr) in backend_addrs.iter().enumerate() {
        let mut cmd = netns.exec("taskset");
        cmd.args(["-c", &args.generator_cpu.to_string()])
            .arg(&exe)
            .args(["backend", "--listen", &addr.to_string(), "--name"])
            .arg(format!("b{i}"))
            .stdin(Stdio::null());
        let mut b = Backend(cmd.spawn().context("starting a backend")?);
        wait_listening(&mut b.0, addr.port())?;
        backends.push(b);
    }

    let common = Common {
        dir: &work.path,
        pki: &pki,
        backends: &backend_addrs,
        cpu: args.server_cpu,
        netns: &netns,
    };
    let ports = |i: u16| Listeners {
        tls: SocketAddr::from((localhost, 8443 + i)),
        tcp: SocketAddr::from((localhost, 8080 + i)),
        mtls: SocketAddr::from((localhost, 9443 + i)),
    };
    // The servers, causeway first; all run at once, idle but for the one
    // being measured.
    let mut all = vec![Server::causeway(&common, "causeway", &causeway, ports(0))?];
    for (i, &peer) in args.peers.iter().enumerate() {
        let at = ports(1 + i as u16);
        all.push(match peer {
            Peer::Nginx => Server::nginx(&common, at)?,
            Peer::Haproxy => Server::haproxy(&common, at)?,
        });
    }
    let aws_index = match &args.causeway_aws {
        Some(path) => {
            let at = ports(1 + args.peers.len() as u16);
            all.push(Server::causeway(&common, "causeway-aws-lc-rs", path, at)?);
            Some(all.len() - 1)
        }
        None => None,
    };

    let mut placement = BTreeMap::from([
        (
            "generator".to_owned(),
            format!(
                "cpu {}: causeway-perf load, 1 thread (tokio current-thread)",
                args.generator_cpu
            ),
        ),
        (
            "backends".to_owned(),
            format!(
                "cpu {}: 2 x causeway-perf backend (tokio current-thread)",
                args.generator_cpu
            ),
        ),
        (
            "network".to_owned(),
            format!("netns {} (loopback only)", netns.name()),
        ),
    ]);
    for s in &all {
        placement.insert(s.name.clone(), s.placement.clone());
    }

    let driver = Driver {
        netns: &netns,
        exe,
        client: (pki.client.cert.clone(), pki.client.key.clone()),
        generator_cpu: args.generator_cpu,
        duration,
        warmup,
        concurrency: args.concurrency,
        bulk_concurrency: args.bulk_concurrency,
        bulk_body: args.bulk_body,
        idle,
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "tls scenario: {} CPUs, {}, kernel {}; {duration} s per run after {warmup} s \
         warm-up, median of {rounds_n} round(s)",
        machine.cpus, machine.cpu_model, machine.kernel
    );
    for (k, v) in &placement {
        let _ = writeln!(out, "  {k}: {v}");
    }
    let _ = writeln!(
        out,
        "{:<34} {:>12} {:<20} {:>12} {:>8}  unit",
        "figure", "causeway", "peer", "peer value", "ratio"
    );
    let mut figures = Vec::new();
    let mtls_runs: &[Run] = if args.mtls { &MTLS_RUNS } else { &[] };
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let runs: Vec<Run> = RUNS
        .iter()
        .chain(mtls_runs)
        .copied()
        .filter(|r| wanted(&r.name()))
        .collect();
    let idle_servers = if wanted("idle") { all.len() } else { 0 };
    // One step per server's idle memory and per measured run.
    let per_round = |run: &Run| all.len() - usize::from(run.plain() && aws_index.is_some());
    let measured: usize = runs.iter().map(per_round).sum();
    let mut bar = Progress::new("tls", (idle_servers + measured * rounds_n) as u64);
    let mut emit = |out: &mut std::io::StdoutLock<'_>, bar: &Progress, f: Figure| {
        bar.clear();
        row(out, &f);
        figures.push(f);
    };

    // 1. Memory per idle connection, on fresh servers.
    let mut idle_kib = Vec::new();
    if idle_servers > 0 {
        eprintln!("causeway-perf: {idle} idle TLS connections per server");
    }
    for s in all.iter().take(idle_servers) {
        bar.doing(&format!("idle memory: {}", s.name));
        idle_kib.push(driver.idle_memory(s)?);
        bar.step(&format!("idle memory: {}", s.name));
    }
    for (i, s) in all.iter().enumerate().take(idle_servers).skip(1) {
        emit(
            &mut out,
            &bar,
            Figure::new(
                "tls_idle_memory_per_conn",
                "KiB",
                idle_kib[0],
                &s.name,
                idle_kib[i],
                false,
            ),
        );
    }

    // 2. The load runs: per run, every server in turn, `rounds` times,
    // each round starting one server later (a slow minute on this shared
    // machine then falls on all of them); the median round counts.
    for &run in &runs {
        let mut rounds: Vec<Vec<Vec<Quantity>>> = all.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds_n {
            for k in 0..all.len() {
                let i = (k + round) % all.len();
                if run.plain() && Some(i) == aws_index {
                    // No crypto on plain TCP: nothing for aws-lc-rs to change.
                    continue;
                }
                let s = &all[i];
                let what = format!(
                    "{} {} {} (round {})",
                    run.prefix,
                    run.mode.name(),
                    s.name,
                    round + 1
                );
                bar.doing(&what);
                let m = driver.measure(s, run)?;
                let r = &m.report;
                bar.print(&format!(
                    "  {what}: {r}; server CPU {:.0}%",
                    m.server_cpu_ns as f64 / 1e9 / r.wall_seconds * 100.0
                ));
                bar.step(&what);
                rounds[i].push(quantities(run, args.bulk_body, &m));
            }
        }
        let ours = median(&rounds[0]);
        for (i, s) in all.iter().enumerate().skip(1) {
            if rounds[i].is_empty() {
                continue;
            }
            for (a, b) in ours.iter().zip(median(&rounds[i])) {
                emit(
                    &mut out,
                    &bar,
                    Figure::new(
                        &a.name,
                        a.unit,
                        a.value,
                        &s.name,
                        b.value,
                        a.higher_is_better,
                    ),
                );
            }
        }
    }

    Report {
        scenario: "tls".to_owned(),
        machine,
        placement,
        figures,
        measures: Vec::new(),
        goals: Vec::new(),
    }
    .write(&args.json)?;
    let _ = writeln!(out, "results: {}", args.json.display());
    Ok(())
}

/// Waits until `child`'s namespace listens on `port` (10 s at most).
fn wait_listening(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !procfs::listening(child.id(), port) {
        if let Some(status) = child.try_wait()? {
            bail!("the backend for port {port} exited ({status})");
        }
        if Instant::now() > deadline {
            bail!("nothing listened on port {port} within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
