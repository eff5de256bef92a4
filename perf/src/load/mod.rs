//! `causeway-perf load`: the TLS/TCP load generator the perf scenarios run
//! against causeway and its peers alike.
//!
//! ```text
//! causeway-perf load --target 127.0.0.1:8443 --mode new-conns [--plain]
//!     [--concurrency 32] [--duration 5] [--warmup 1] [--max-requests N]
//!     [--body 1048576] [--threads 1] [--json]
//! ```
//!
//! Modes, each with `--concurrency` loops (tasks):
//! - `new-conns`: a fresh connection and, unless `--plain`, a full TLS 1.3
//!   handshake per request (`GET /`, `Connection: close`), read to EOF;
//! - `keepalive`: one connection per task, `GET /` in a loop;
//! - `bulk`: one connection per task, `GET /bytes/BODY` in a loop;
//! - `idle`: opens `--concurrency` connections, one request each, prints
//!   `ready OK ERRORS` and holds them until stdin closes or `--duration`
//!   ends (for memory per idle connection).
//!
//! Every loop stops by itself: at the deadline (`--warmup` plus
//! `--duration`), after `--max-requests` requests, and no IO waits longer
//! than `--io-timeout`. Requests that start during the warm-up are not
//! measured. Latency (whole request: connect and handshake included in
//! `new-conns`) goes to an HDR histogram; failures are counted, not fatal.
//!
//! # Why it is built so
//!
//! One current-thread tokio runtime per `--threads` (default 1) keeps the
//! generator on as few CPUs as it is given (the scenario pins it with
//! `taskset`). It shares the machine with the servers: on two cores it
//! cannot always outrun them, so the report carries its own CPU use and
//! the scenarios also compare server CPU per request, which does not
//! depend on who saturated first.
//!
//! The client does not verify the server's certificate (nor its
//! handshake signature) and never resumes a session: a load generator's
//! verification cost would only slow it, every server presents the same
//! certificate, and each `new-conns` request is a full handshake
//! (ECDHE + the server's ECDSA signature) on every server alike.

mod conn;
mod report;
mod tls;

use std::{
    io::{BufRead, Write},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

pub(crate) use report::LoadReport;

use conn::Connector;

/// What each loop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// A new connection (and TLS handshake) per request.
    NewConns,
    /// Requests in a loop on one connection per task.
    Keepalive,
    /// Large responses in a loop on one connection per task.
    Bulk,
    /// Open connections and hold them.
    Idle,
}

impl Mode {
    /// The name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::NewConns => "new-conns",
            Self::Keepalive => "keepalive",
            Self::Bulk => "bulk",
            Self::Idle => "idle",
        }
    }
}

/// Arguments of `causeway-perf load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// The server to load.
    #[arg(long, value_name = "ADDR")]
    pub(crate) target: SocketAddr,
    /// new-conns, keepalive, bulk or idle.
    #[arg(long, value_enum)]
    pub(crate) mode: Mode,
    /// Plain TCP instead of TLS 1.3.
    #[arg(long)]
    pub(crate) plain: bool,
    /// Concurrent loops (idle: connections to hold).
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Requests started at most, warm-up included.
    #[arg(long, default_value_t = 50_000_000)]
    pub(crate) max_requests: u64,
    /// Body bytes per `bulk` response.
    #[arg(long, default_value_t = 1 << 20)]
    pub(crate) body: u64,
    /// Generator threads, each its own runtime.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Seconds any connect, handshake or exchange may take.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) io_timeout: f64,
    /// Client certificate (PEM) for mTLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub(crate) client_cert: Option<std::path::PathBuf>,
    /// Its key (PEM, PKCS#8).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub(crate) client_key: Option<std::path::PathBuf>,
    /// Print the report as JSON on stdout (else a line on stderr).
    #[arg(long)]
    pub(crate) json: bool,
}

/// What every loop shares.
struct Shared {
    args: Args,
    connector: Connector,
    /// Requests started so far (against `--max-requests`).
    started: AtomicU64,
    /// Measurement starts.
    warm_end: Instant,
    /// Nothing starts after this.
    deadline: Instant,
    /// TLS parameters of the first handshake: "suite/group".
    negotiated: Mutex<Option<String>>,
}

impl Shared {
    fn may_start(&self) -> bool {
        Instant::now() < self.deadline
            && self.started.fetch_add(1, Ordering::Relaxed) < self.args.max_requests
    }

    fn io_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.args.io_timeout)
    }
}

/// One loop's tally.
struct Tally {
    hist: Histogram<u64>,
    ok_total: u64,
    errors: u64,
    bytes: u64,
    last_done: Option<Instant>,
    first_error: Option<String>,
    /// CPU time of the generator threads, nanoseconds.
    cpu_ns: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            // 1 us to 10 min, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            ok_total: 0,
            errors: 0,
            bytes: 0,
            last_done: None,
            first_error: None,
            cpu_ns: 0,
        }
    }

    fn done(&mut self, start: Instant, warm_end: Instant, bytes: u64) {
        let now = Instant::now();
        self.ok_total += 1;
        if start >= warm_end {
            let us = now.duration_since(start).as_micros().max(1) as u64;
            self.hist.saturating_record(us);
            self.bytes += bytes;
            self.last_done = Some(now);
        }
    }

    fn failed(&mut self, e: &anyhow::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{e:#}"));
        }
    }

    fn merge(&mut self, other: Self) {
        self.hist.add(&other.hist).expect("same bounds");
        self.ok_total += other.ok_total;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.last_done = self.last_done.max(other.last_done);
        self.first_error = self.first_error.take().or(other.first_error);
        self.cpu_ns += other.cpu_ns;
    }
}

/// Runs the generator and prints its report.
///
/// # Errors
/// Bad arguments, or the client TLS configuration cannot be built.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.threads == 0 {
        bail!("--concurrency and --threads must be at least 1");
    }
    if !(args.duration > 0.0 && args.warmup >= 0.0 && args.io_timeout > 0.0) {
        bail!("--duration and --io-timeout must be positive, --warmup not negative");
    }
    let connector = Connector::new(args)?;
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(args.warmup);
    let shared = Arc::new(Shared {
        args: args.clone(),
        connector,
        started: AtomicU64::new(0),
        warm_end,
        deadline: warm_end + Duration::from_secs_f64(args.duration),
        negotiated: Mutex::new(None),
    });
    if args.mode == Mode::Idle {
        return idle(&shared);
    }
    let threads: Vec<_> = (0..args.threads)
        .map(|t| {
            let shared = Arc::clone(&shared);
            // Loops split as evenly as they go; thread t takes the rest.
            let n =
                args.concurrency / args.threads + usize::from(t < args.concurrency % args.threads);
            thread::spawn(move || run_thread(&shared, n))
        })
        .collect();
    let mut total = Tally::new();
    for t in threads {
        total.merge(t.join().expect("a generator thread panicked")?);
    }
    let wall = start.elapsed();
    let negotiated = shared.negotiated.lock().expect("not poisoned").clone();
    let report = LoadReport::new(&total, warm_end, wall, negotiated);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        eprintln!("{report}");
    }
    Ok(())
}

/// One thread: its runtime and `n` loops, bounded as a whole by the
/// deadline plus one IO timeout.
fn run_thread(shared: &Arc<Shared>, n: usize) -> anyhow::Result<Tally> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bound = shared.deadline + shared.io_timeout() + Duration::from_secs(1);
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            set.spawn(conn::run_loop(Arc::clone(shared)));
        }
        let mut total = Tally::new();
        let collect = async {
            while let Some(t) = set.join_next().await {
                total.merge(t.expect("a generator loop panicked"));
            }
        };
        if tokio::time::timeout_at(bound.into(), collect)
            .await
            .is_err()
        {
            // Loops still waiting are abandoned with the runtime.
            total.errors += set.len() as u64;
        }
        // Read before the thread ends: a finished thread's time leaves
        // /proc/self/task.
        total.cpu_ns = report::thread_cpu_ns();
        Ok(total)
    })
}

/// `idle`: open, report `ready OK ERRORS`, hold until stdin closes or the
/// deadline.
fn idle(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (held, errors) = rt.block_on(conn::open_idle(Arc::clone(shared)));
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {} {errors}", held.len()).context("writing to stdout")?;
    out.flush().context("writing to stdout")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // Any line or EOF ends the hold.
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(shared.deadline.saturating_duration_since(Instant::now()));
    drop(held);
    Ok(())
}
