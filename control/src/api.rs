//! The operator API, for now: HTTP/1.1 on a Unix socket (mode 0600) with
//! `GET /metrics` (Prometheus text format 0.0.4) and `GET /stats` (JSON),
//! and the probes `GET /live` and `GET /ready` (also on the TCP metrics
//! listener, for load balancers and orchestrators; see [`Probes`]).
//! The gRPC control API will join it on the same path's sibling; see the
//! Control API issue. A Unix socket works across network namespaces, so
//! `causeway stats --lab NAME` reads an appliance inside its lab from the
//! host, and so does `curl --unix-socket PATH http://x/metrics`.

use std::{
    fmt::Write as _,
    io::Write,
    os::unix::{
        fs::PermissionsExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use causeway_dataplane::{
    pipeline::{DropReason, PortCounters},
    xdp::DataplaneStats,
};
use tracing::{debug, warn};

/// Something that can produce a stats snapshot.
pub type StatsSource = Arc<dyn Fn() -> DataplaneStats + Send + Sync>;

/// More Prometheus text for `/metrics` (the terminator's families).
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// What `/live` and `/ready` answer, and where `/metrics` and `/stats` read
/// from once the appliance is up.
///
/// - `/live`: 200 while the process serves and its main loop turns (the
///   loop calls [`Probes::beat`]; silent for [`STALL`] after it began:
///   503). While the appliance starts it is 200: starting is alive.
/// - `/ready`: 200 only once the policy is loaded and the ports forward
///   ([`Probes::set_ready`] after the dataplane and the control API are
///   up), 503 before that and again while it stops. Fail closed: a
///   balancer sends nothing to an appliance that does not enforce yet.
/// - `/metrics`, `/stats`: 503 until the appliance is up.
#[derive(Default)]
pub struct Probes {
    ready: AtomicBool,
    /// Milliseconds since `epoch` of the main loop's last turn; 0: not yet.
    beat_ms: AtomicU64,
    epoch: OnceLock<Instant>,
    sources: OnceLock<(StatsSource, Option<MetricsSource>)>,
}

/// How long the main loop may be silent before `/live` says 503.
pub const STALL: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Probes {
    /// Probes of an appliance that is starting: live, not ready.
    pub fn new() -> Arc<Self> {
        let p = Self::default();
        let _ = p.epoch.set(Instant::now());
        Arc::new(p)
    }

    /// Probes of an appliance that is up and ready, reading `stats` and
    /// `more`.
    pub fn serving(stats: StatsSource, more: Option<MetricsSource>) -> Arc<Self> {
        let p = Self::new();
        p.set_sources(stats, more);
        p.set_ready(true);
        p
    }

    /// Where `/metrics` and `/stats` read from (the first call wins).
    pub fn set_sources(&self, stats: StatsSource, more: Option<MetricsSource>) {
        let _ = self.sources.set((stats, more));
    }

    /// Ready (policy loaded, ports forwarding) or not (starting, stopping).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether `/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The main loop turned.
    pub fn beat(&self) {
        let ms = self.since_epoch().as_millis().max(1);
        self.beat_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Whether `/live` answers 200: no beat yet (starting), or one within
    /// [`STALL`].
    pub fn is_live(&self) -> bool {
        let last = self.beat_ms.load(Ordering::Acquire);
        last == 0
            || self
                .since_epoch()
                .saturating_sub(Duration::from_millis(last))
                < STALL
    }

    fn since_epoch(&self) -> Duration {
        self.epoch.get_or_init(Instant::now).elapsed()
    }
}

/// The API listener; the socket file is removed on drop.
#[derive(Debug)]
pub struct Api {
    path: PathBuf,
}

impl Api {
    /// Binds `path` (replacing a stale socket file) and serves in a thread.
    ///
    /// # Errors
    /// The directory cannot be made or the socket cannot be bound.
    pub fn start(path: &Path, probes: Arc<Probes>) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                anyhow::bail!("{} is in use by a running appliance", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let slots = Arc::new(Slots::default());
        thread::Builder::new()
            .name("cw-api".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(c) => serve_limited(c, &probes, &slots, "cw-api-conn"),
                        Err(e) => {
                            warn!(error = %e, "API accept");
                            thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How many more times a metrics listener whose address is in use is
/// bound again (nginx tries 5 times, 500 ms apart).
const BIND_TRIES: u32 = 5;

/// The longest request head (request line and headers) a listener reads:
/// what it serves are bare GETs of a few hundred bytes; nginx's default
/// for one header line is 8 KiB (`large_client_header_buffers 4 8k`).
/// Longer: 431, closed.
pub const MAX_REQUEST_HEAD: usize = 8 << 10;

/// The time a connection has, from accept, to send its request head and
/// take the answer; then it is closed (a slowloris trickling a byte per
/// second is cut off here, not at a per-read timeout it keeps resetting).
/// Prometheus' default scrape timeout is 10 s too.
pub const REQUEST_TIME: Duration = Duration::from_secs(10);

/// Connections served at once per listener. A scrape and a few probes
/// need a handful; past this, the oldest connection still sending its
/// request is closed to make room (an idle flood cannot lock the probes
/// out), and when every connection is already being answered the new one
/// gets a 503.
pub const MAX_CONNECTIONS: usize = 64;

/// Serves `GET /metrics`, `/stats`, `/live` and `/ready` on TCP, for
/// Prometheus and probes: a thread per connection, at most
/// [`MAX_CONNECTIONS`] at once, each with [`REQUEST_TIME`] and
/// [`MAX_REQUEST_HEAD`]. Started before the appliance is up, so `/ready`
/// says 503 until it is.
///
/// # Errors
/// The address cannot be bound.
pub fn start_metrics_tcp(listen: std::net::SocketAddr, probes: Arc<Probes>) -> Result<()> {
    // A restart can find the address still held for a moment by what the
    // previous process left behind: like nginx, try again a few times,
    // half a second apart, before giving up.
    let mut tries = 0;
    let listener = loop {
        match std::net::TcpListener::bind(listen) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < BIND_TRIES => {
                tries += 1;
                tracing::warn!(%listen, tries, "metrics.listen: the address is in use; trying again in 500 ms");
                thread::sleep(Duration::from_millis(500));
            }
            bound => break bound.with_context(|| format!("metrics.listen: binding {listen}"))?,
        }
    };
    let slots = Arc::new(Slots::default());
    thread::Builder::new()
        .name("cw-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => serve_limited(c, &probes, &slots, "cw-metrics-conn"),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        debug!(error = %e, "metrics accept");
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(())
}

/// A stream the listeners serve: Unix or TCP.
trait Conn: std::io::Read + Write + Send + 'static {
    fn set_timeouts(&self, d: Duration) -> std::io::Result<()>;
    fn closer(&self) -> std::io::Result<Box<dyn Fn() + Send>>;
    /// Ends the sending side: the peer reads the end of the answer.
    fn shutdown_write(&self) -> std::io::Result<()>;
}

/// The same for Unix and TCP streams, which have the same methods but no
/// trait for them.
macro_rules! impl_conn {
    ($($t:ty),*) => {$(
        impl Conn for $t {
            fn set_timeouts(&self, d: Duration) -> std::io::Result<()> {
                self.set_read_timeout(Some(d))?;
                self.set_write_timeout(Some(d))
            }
            fn closer(&self) -> std::io::Result<Box<dyn Fn() + Send>> {
                let c = self.try_clone()?;
                Ok(Box::new(move || {
                    let _ = c.shutdown(std::net::Shutdown::Both);
                }))
            }
            fn shutdown_write(&self) -> std::io::Result<()> {
                self.shutdown(std::net::Shutdown::Write)
            }
        }
    )*};
}

impl_conn!(UnixStream, std::net::TcpStream);

/// One connection being served.
struct Slot {
    id: u64,
    /// Still reading its request (may be evicted to make room).
    reading: Arc<AtomicBool>,
    close: Box<dyn Fn() + Send>,
}

/// The connections a listener serves (at most [`MAX_CONNECTIONS`]), oldest
/// first.
#[derive(Default)]
struct Slots {
    held: std::sync::Mutex<std::collections::VecDeque<Slot>>,
    next: AtomicU64,
    evicted: AtomicU64,
}

impl Slots {
    /// A slot for a new connection, closing the oldest still reading its
    /// request when all are taken; `None` when every one is answering.
    fn take(self: &Arc<Self>, close: Box<dyn Fn() + Send>) -> Option<SlotGuard> {
        let mut held = self.held.lock().expect("not poisoned");
        if held.len() >= MAX_CONNECTIONS {
            let idle = held
                .iter()
                .position(|s| s.reading.load(Ordering::Acquire))?;
            let old = held.remove(idle).expect("found above");
            (old.close)();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let reading = Arc::new(AtomicBool::new(true));
        held.push_back(Slot {
            id,
            reading: reading.clone(),
            close,
        });
        Some(SlotGuard {
            slots: self.clone(),
            id,
            reading,
        })
    }
}

/// Frees its slot when the connection ends.
struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
    reading: Arc<AtomicBool>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().expect("not poisoned");
        if let Some(i) = held.iter().position(|s| s.id == self.id) {
            held.remove(i);
        }
    }
}

/// Serves `conn` in a thread of its own if a slot is free (or can be
/// freed); otherwise answers 503 at once.
fn serve_limited<C: Conn>(mut conn: C, probes: &Arc<Probes>, slots: &Arc<Slots>, name: &str) {
    let _ = conn.set_timeouts(REQUEST_TIME);
    let guard = match conn.closer() {
        Ok(close) => slots.take(close),
        Err(_) => None,
    };
    let Some(guard) = guard else {
        let _ = write_answer(
            &mut conn,
            "503 Service Unavailable",
            "text/plain",
            "busy: too many connections\n",
        );
        return;
    };
    let p = probes.clone();
    let _ = thread::Builder::new().name(name.into()).spawn(move || {
        if let Err(e) = respond(conn, &p, &guard.reading) {
            debug!(error = %e, "API connection");
        }
        drop(guard);
    });
}

/// Why a request head could not be read.
#[derive(Debug)]
enum HeadError {
    /// Past [`MAX_REQUEST_HEAD`].
    TooLong,
    /// Not complete within [`REQUEST_TIME`], or the connection failed.
    Io(std::io::Error),
}

/// Reads a request head (up to the empty line) within `deadline`.
fn read_head<C: Conn>(conn: &mut C, deadline: Instant) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        match head_end(&head) {
            Some(end) if end <= MAX_REQUEST_HEAD => {
                head.truncate(end);
                return Ok(head);
            }
            _ => {}
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Err(HeadError::TooLong);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Io(std::io::ErrorKind::TimedOut.into()));
        }
        conn.set_timeouts(left).map_err(HeadError::Io)?;
        let n = conn.read(&mut buf).map_err(HeadError::Io)?;
        if n == 0 {
            // The peer finished sending: what came is the whole request.
            return Ok(head);
        }
        head.extend_from_slice(&buf[..n]);
    }
}

/// Bytes of a refused request read and dropped after the answer, at most.
const LINGER_BYTES: usize = 1 << 20;
/// How long they are read for, at most.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// A lingering close, as nginx's `lingering_close`: after answering a
/// request it did not read to the end, the server ends its side and
/// drops what the client is still sending (bounded in bytes and time)
/// before closing. Closing with unread bytes would send a RST, which can
/// reach the client before it has read the answer.
fn linger<C: Conn>(conn: &mut C, deadline: Instant) {
    if conn.shutdown_write().is_err() {
        return;
    }
    let until = deadline.min(Instant::now() + LINGER_TIME);
    let mut buf = [0u8; 4096];
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_timeouts(left).is_err() {
            return;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => dropped += n,
        }
    }
}

/// Where the head ends (before its empty line), if it has.
fn head_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find(|&i| b[i..].starts_with(b"\r\n\r\n") || b[i..].starts_with(b"\n\n"))
}

fn respond<C: Conn>(mut conn: C, probes: &Probes, reading: &AtomicBool) -> std::io::Result<()> {
    let deadline = Instant::now() + REQUEST_TIME;
    let head = match read_head(&mut conn, deadline) {
        Ok(h) => h,
        Err(HeadError::TooLong) => {
            write_answer(
                &mut conn,
                "431 Request Header Fields Too Large",
                "text/plain",
                &format!("the request head is longer than {MAX_REQUEST_HEAD} bytes\n"),
            )?;
            linger(&mut conn, deadline);
            return Ok(());
        }
        Err(HeadError::Io(e)) => return Err(e),
    };
    reading.store(false, Ordering::Release);
    let request = String::from_utf8_lossy(&head);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = answer(path, probes);
    write_answer(&mut conn, status, ctype, &body)
}

fn write_answer(
    conn: &mut impl Write,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Status, content type and body for `path`.
fn answer(path: &str, probes: &Probes) -> (&'static str, &'static str, String) {
    let text = "text/plain";
    match (path, probes.sources.get()) {
        ("/live", _) if probes.is_live() => ("200 OK", text, "live\n".to_owned()),
        ("/live", _) => (
            "503 Service Unavailable",
            text,
            format!("stalled: the main loop has not turned for {} s\n", STALL.as_secs()),
        ),
        ("/ready", _) if probes.is_ready() => ("200 OK", text, "ready\n".to_owned()),
        ("/ready", _) => (
            "503 Service Unavailable",
            text,
            "not ready: the policy is not loaded or the ports do not forward (starting or stopping)\n"
                .to_owned(),
        ),
        ("/metrics" | "/stats", None) => (
            "503 Service Unavailable",
            text,
            "starting\n".to_owned(),
        ),
        ("/metrics", Some((stats, more))) => {
            let mut text = prometheus(&stats());
            if let Some(more) = more {
                text.push_str(&more());
            }
            ("200 OK", "text/plain; version=0.0.4", text)
        }
        ("/stats", Some((stats, _))) => (
            "200 OK",
            "application/json",
            serde_json::to_string_pretty(&stats()).unwrap_or_default(),
        ),
        _ => (
            "404 Not Found",
            text,
            "try /metrics, /stats, /live or /ready\n".to_owned(),
        ),
    }
}

/// A counter family: name, help, and how to read it from a port's counters.
type Family = (&'static str, &'static str, fn(&PortCounters) -> u64);

/// The Prometheus text exposition of a stats snapshot.
pub fn prometheus(s: &DataplaneStats) -> String {
    let mut out = String::new();
    let families: [Family; 6] = [
        (
            "causeway_port_rx_packets_total",
            "Frames received on the port's AF_XDP sockets.",
            |c| c.rx_packets,
        ),
        (
            "causeway_port_rx_bytes_total",
            "Bytes received on the port's AF_XDP sockets.",
            |c| c.rx_bytes,
        ),
        (
            "causeway_port_tx_packets_total",
            "Frames transmitted on the port.",
            |c| c.tx_packets,
        ),
        (
            "causeway_port_tx_bytes_total",
            "Bytes transmitted on the port.",
            |c| c.tx_bytes,
        ),
        (
            "causeway_port_icmp_errors_sent_total",
            "ICMP errors sent out of the port.",
            |c| c.icmp_errors_sent,
        ),
        (
            "causeway_port_host_delivered_total",
            "Packets to the appliance's own addresses that arrived on the port, allowed by the host endpoint's policy and handed to its kernel.",
            |c| c.host_delivered,
        ),
    ];
    for (name, help, get) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (p, c) in &s.ports {
            let _ = writeln!(
                out,
                "{name}{{port=\"{}\",interface=\"{}\"}} {}",
                p.name,
                p.interface,
                get(c)
            );
        }
    }
    let name = "causeway_port_drops_total";
    let _ = writeln!(
        out,
        "# HELP {name} Frames dropped by the dataplane, by port and reason.\n# TYPE {name} counter"
    );
    for (p, c) in &s.ports {
        for r in DropReason::ALL {
            let _ = writeln!(
                out,
                "{name}{{port=\"{}\",reason=\"{}\"}} {}",
                p.name,
                r.name(),
                c.drops[r as usize]
            );
        }
    }
    let name = "causeway_port_xsk_events_total";
    let _ = writeln!(
        out,
        "# HELP {name} The kernel's counters of the port's AF_XDP sockets (XDP_STATISTICS, summed over queues): frames lost between the XDP redirect and the worker.\n# TYPE {name} counter"
    );
    for ((p, _), x) in s.ports.iter().zip(&s.sockets) {
        for (event, v) in x.events() {
            let _ = writeln!(out, "{name}{{port=\"{}\",event=\"{event}\"}} {v}", p.name);
        }
    }
    let name = "causeway_worker_busy_seconds_total";
    let _ = writeln!(
        out,
        "# HELP {name} Wall-clock time of the worker's polls that carried frames (a poll-mode worker spins the rest of the time).\n# TYPE {name} counter"
    );
    for (i, w) in s.workers.iter().enumerate() {
        let _ = writeln!(
            out,
            "{name}{{worker=\"{i}\",core=\"{}\"}} {}",
            w.core,
            w.busy_ns as f64 / 1e9
        );
    }
    let name = "causeway_worker_busy_polls_total";
    let _ = writeln!(
        out,
        "# HELP {name} The worker's polls that carried frames.\n# TYPE {name} counter"
    );
    for (i, w) in s.workers.iter().enumerate() {
        let _ = writeln!(
            out,
            "{name}{{worker=\"{i}\",core=\"{}\"}} {}",
            w.core, w.busy_polls
        );
    }
    let name = "causeway_xdp_packets_total";
    let _ = writeln!(
        out,
        "# HELP {name} Packets seen by the XDP program, by action and reason.\n# TYPE {name} counter"
    );
    let x = &s.xdp;
    for (action, reason, v) in [
        ("redirect", "af_xdp", x.redirect),
        ("pass", "arp", x.pass_arp),
        ("pass", "ndp", x.pass_ndp),
        ("pass", "failsafe", x.pass_failsafe),
        ("pass", "socket", x.pass_socket),
        ("pass", "icmp_reply", x.pass_icmp_reply),
        ("redirect", "host_judge", x.host_judge),
        ("pass", "multicast", x.pass_multicast),
        ("pass", "other", x.pass_other),
        ("drop", "malformed", x.drop_malformed),
        ("drop", "no_socket", x.drop_no_socket),
        ("drop", "prefilter", x.drop_prefilter),
    ] {
        let _ = writeln!(out, "{name}{{action=\"{action}\",reason=\"{reason}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP causeway_policy_rule_packets_total Packets judged by each policy rule (new and re-judged flows, denied packets).\n# TYPE causeway_policy_rule_packets_total counter"
    );
    for (rule, (p, _)) in &s.rules {
        let _ = writeln!(
            out,
            "causeway_policy_rule_packets_total{{rule=\"{rule}\"}} {p}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP causeway_policy_rule_bytes_total Bytes of those packets.\n# TYPE causeway_policy_rule_bytes_total counter"
    );
    for (rule, (_, b)) in &s.rules {
        let _ = writeln!(
            out,
            "causeway_policy_rule_bytes_total{{rule=\"{rule}\"}} {b}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP causeway_prefilter_drops_total Packets dropped in XDP by each doNotTrack rule.\n# TYPE causeway_prefilter_drops_total counter"
    );
    for (rule, (p, _)) in &s.prefilter {
        let _ = writeln!(out, "causeway_prefilter_drops_total{{rule=\"{rule}\"}} {p}");
    }
    let _ = writeln!(
        out,
        "# HELP causeway_policy_generation The policy generation published.\n# TYPE causeway_policy_generation gauge\ncauseway_policy_generation {}\n# HELP causeway_policy_enforced_generation The oldest generation a worker enforces.\n# TYPE causeway_policy_enforced_generation gauge\ncauseway_policy_enforced_generation {}\n# HELP causeway_flows Tracked flows.\n# TYPE causeway_flows gauge\ncauseway_flows {}",
        s.policy_generation, s.enforced_generation, s.flows
    );
    let c = &s.conntrack;
    let _ = writeln!(
        out,
        "# HELP causeway_conntrack_capacity The most flows the tables hold (policy.conntrack_capacity per worker).\n# TYPE causeway_conntrack_capacity gauge\ncauseway_conntrack_capacity {}\n\
         # HELP causeway_conntrack_half_open Tracked flows not yet answered (TCP before its handshake completed or after a RST): evicted first when a table is full.\n# TYPE causeway_conntrack_half_open gauge\ncauseway_conntrack_half_open {}\n\
         # HELP causeway_conntrack_evicted_total Live flows evicted from a full table, by kind: half_open (Linux's early_drop) or established (only when none was half-open).\n# TYPE causeway_conntrack_evicted_total counter\n\
         causeway_conntrack_evicted_total{{kind=\"half_open\"}} {}\ncauseway_conntrack_evicted_total{{kind=\"established\"}} {}\n\
         # HELP causeway_conntrack_table_full_total New flows that found their table full.\n# TYPE causeway_conntrack_table_full_total counter\ncauseway_conntrack_table_full_total {}\n\
         # HELP causeway_conntrack_expired_total Flows removed because their timeout passed.\n# TYPE causeway_conntrack_expired_total counter\ncauseway_conntrack_expired_total {}\n\
         # HELP causeway_conntrack_invalid_total TCP segments invalid for their tracked flow's state or flags (dropped as tcp_invalid).\n# TYPE causeway_conntrack_invalid_total counter\ncauseway_conntrack_invalid_total {}",
        c.capacity,
        c.half_open,
        c.evicted_half_open,
        c.evicted_established,
        c.table_full,
        c.expired,
        c.invalid
    );
    let _ = writeln!(
        out,
        "# HELP causeway_neighbours Resolved next hops.\n# TYPE causeway_neighbours gauge\ncauseway_neighbours {}",
        s.neighbours
    );
    let n = &s.neighbour_requests;
    let _ = writeln!(
        out,
        "# HELP causeway_neighbour_resolutions_total Next hops the dataplane asked the kernel to resolve.\n# TYPE causeway_neighbour_resolutions_total counter\ncauseway_neighbour_resolutions_total {}\n\
         # HELP causeway_neighbour_requests_dropped_total Resolutions not asked for, by reason: pending (neighbours.max_pending were outstanding) or rate (over neighbours.rate).\n# TYPE causeway_neighbour_requests_dropped_total counter\n\
         causeway_neighbour_requests_dropped_total{{reason=\"pending\"}} {}\ncauseway_neighbour_requests_dropped_total{{reason=\"rate\"}} {}\n\
         # HELP causeway_neighbour_unresolved_deleted_total Neighbour entries deleted from the kernel because they did not resolve in time.\n# TYPE causeway_neighbour_unresolved_deleted_total counter\ncauseway_neighbour_unresolved_deleted_total {}\n\
         # HELP causeway_neighbour_pending Resolutions outstanding.\n# TYPE causeway_neighbour_pending gauge\ncauseway_neighbour_pending {}",
        n.asked, n.dropped_pending, n.dropped_rate, n.unresolved_deleted, n.pending
    );
    out
}

/// Fetches `path` from an appliance's API socket.
///
/// # Errors
/// The socket cannot be reached or the answer is not a 200.
pub fn get(socket: &Path, path: &str) -> Result<String> {
    let mut conn = UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to {} (is the appliance running?)",
            socket.display()
        )
    })?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: causeway\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut conn, &mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!("{}: {}", head.lines().next().unwrap_or(""), body.trim());
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request over a socket pair, as a client would send it.
    fn send(probes: &Probes, request: &[u8]) -> String {
        let (server, mut client) = UnixStream::pair().expect("socketpair");
        client.write_all(request).expect("write");
        client.shutdown(std::net::Shutdown::Write).ok();
        respond(server, probes, &AtomicBool::new(true)).expect("respond");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut client, &mut out).expect("read");
        out
    }

    fn get(probes: &Probes, path: &str) -> String {
        send(
            probes,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
    }

    fn status(response: &str) -> &str {
        response.split_whitespace().nth(1).unwrap_or("")
    }

    #[test]
    fn ready_only_once_up_and_live_while_the_loop_turns() {
        let p = Probes::new();
        assert_eq!(status(&get(&p, "/live")), "200", "starting is alive");
        assert_eq!(status(&get(&p, "/ready")), "503", "fail closed");
        assert_eq!(status(&get(&p, "/metrics")), "503");
        p.set_sources(Arc::new(DataplaneStats::default), None);
        assert_eq!(
            status(&get(&p, "/ready")),
            "503",
            "sources are not readiness"
        );
        assert_eq!(status(&get(&p, "/metrics")), "200");
        p.set_ready(true);
        p.beat();
        assert_eq!(status(&get(&p, "/ready")), "200");
        assert_eq!(status(&get(&p, "/live")), "200");
        p.set_ready(false);
        assert_eq!(status(&get(&p, "/ready")), "503", "stopping");
        assert_eq!(status(&get(&p, "/nope")), "404");
    }

    #[test]
    fn each_workers_busy_time_is_a_counter_in_seconds() {
        use causeway_dataplane::xdp::WorkerStats;
        let s = DataplaneStats {
            workers: vec![WorkerStats {
                core: 1,
                busy_ns: 1_500_000_000,
                busy_polls: 7,
            }],
            ..DataplaneStats::default()
        };
        let text = prometheus(&s);
        assert!(
            text.contains("causeway_worker_busy_seconds_total{worker=\"0\",core=\"1\"} 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("causeway_worker_busy_polls_total{worker=\"0\",core=\"1\"} 7\n"),
            "{text}"
        );
    }

    #[test]
    fn a_stalled_main_loop_is_not_live() {
        let p = Probes::default();
        let past = Instant::now()
            .checked_sub(STALL + Duration::from_secs(1))
            .expect("an instant in the past");
        p.epoch.set(past).expect("unset");
        p.beat_ms.store(1, Ordering::Release);
        let r = get(&p, "/live");
        assert_eq!(status(&r), "503", "{r}");
        p.beat();
        assert_eq!(status(&get(&p, "/live")), "200");
    }

    #[test]
    fn a_request_head_past_the_limit_is_answered_431() {
        let p = Probes::new();
        let big = format!(
            "GET /live HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST_HEAD)
        );
        assert_eq!(status(&send(&p, big.as_bytes())), "431");
        let fits = format!("GET /live HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(4000));
        assert_eq!(status(&send(&p, fits.as_bytes())), "200");
    }

    #[test]
    fn a_refused_request_is_answered_and_closed_without_a_reset() {
        // Over TCP, a client still sending 64 KiB when the 431 comes: closed
        // with its bytes unread, the socket would send a RST, and the
        // client's read after the answer would fail (curl's exit 56).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = thread::spawn(move || {
            let (conn, _) = listener.accept().expect("accept");
            respond(conn, &Probes::new(), &AtomicBool::new(true))
        });
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        let big = format!(
            "GET /live HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(64 << 10)
        );
        client.write_all(big.as_bytes()).expect("write");
        client.shutdown(std::net::Shutdown::Write).ok();
        server.join().expect("server").expect("respond");
        let mut out = Vec::new();
        let read = std::io::Read::read_to_end(&mut client, &mut out);
        assert!(read.is_ok(), "{read:?} after {} bytes", out.len());
        assert_eq!(status(&String::from_utf8_lossy(&out)), "431");
    }

    #[test]
    fn a_full_listener_closes_its_oldest_idle_connection_not_a_busy_one() {
        let slots = Arc::new(Slots::default());
        let closed = Arc::new(AtomicU64::new(0));
        let closer = |i: u64| -> Box<dyn Fn() + Send> {
            let closed = closed.clone();
            Box::new(move || closed.store(i + 1, Ordering::Release))
        };
        let mut guards: Vec<SlotGuard> = (0..MAX_CONNECTIONS as u64)
            .map(|i| slots.take(closer(i)).expect("a free slot"))
            .collect();
        // The first is answering; the second is the oldest still reading.
        guards[0].reading.store(false, Ordering::Release);
        let g = slots.take(closer(1000)).expect("room made");
        assert_eq!(closed.load(Ordering::Acquire), 2, "slot 1 was closed");
        guards.push(g);
        for g in &guards {
            g.reading.store(false, Ordering::Release);
        }
        assert!(slots.take(closer(2000)).is_none(), "every slot answers");
        guards.clear();
        assert!(slots.held.lock().unwrap().is_empty(), "slots are freed");
    }
}
