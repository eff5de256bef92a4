//! The terminator's counters and histograms, named as Linkerd's proxy names
//! them, and their Prometheus text rendering.
//!
//! Each worker owns one [`WorkerMetrics`] and is its only writer (relaxed
//! atomics, no sharing of cache lines between workers); a scrape sums the
//! workers. Names follow the Linkerd proxy's TCP metrics (`tcp_open_total`,
//! `tcp_close_total`, `tcp_open_connections`, `tcp_read_bytes_total`,
//! `tcp_write_bytes_total`, `tcp_connection_duration_ms`) with a `peer`
//! label of `src` (the client leg) or `dst` (the upstream leg), prefixed
//! `causeway_terminator_` so they sit beside the dataplane's; what Linkerd
//! has no name for (handshake failures by reason, retries, budget,
//! ejections, endpoint state) follows the same style.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};

use crate::{
    ktls::Userspace,
    pool::{EndpointId, EndpointState, Pool},
};

/// Which leg a figure belongs to (Linkerd's `peer` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The client leg: `peer="src"`.
    Client,
    /// The upstream leg: `peer="dst"`.
    Upstream,
}

impl Peer {
    fn label(self) -> &'static str {
        match self {
            Self::Client => "src",
            Self::Upstream => "dst",
        }
    }
}

/// The reasons a TLS handshake fails, as labels: the identity module's
/// classification plus what the engine itself sees.
pub const HANDSHAKE_REASONS: &[&str] = &[
    "no_client_cert",
    "unknown_ca",
    "expired",
    "not_yet_valid",
    "identity_not_admitted",
    "bad_certificate",
    "protocol_version",
    "peer_misbehaved",
    "no_application_protocol",
    "other",
    "timeout",
    "eof",
];

/// Why a client was refused right after its accept: a small enum that
/// indexes a counter array (`refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already holds `max_connections_per_client` connections
    /// on this worker.
    ClientLimit,
    /// It started with a PROXY header but is not a trusted source.
    ProxyUntrusted,
    /// A trusted source sent no PROXY v2 header, a malformed one, or none
    /// within the handshake timeout.
    ProxyBadHeader,
}

impl Refusal {
    /// Every reason, in counter order.
    pub const ALL: [Self; 3] = [
        Self::ClientLimit,
        Self::ProxyUntrusted,
        Self::ProxyBadHeader,
    ];

    /// The label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientLimit => "client_limit",
            Self::ProxyUntrusted => "proxy_untrusted",
            Self::ProxyBadHeader => "proxy_bad_header",
        }
    }
}

/// Why a client of a listener that reads the client's first bytes (to
/// choose a service by SNI, or to answer PostgreSQL's SSLRequest) was
/// refused before any service was chosen: a small
/// enum that indexes a counter array
/// (`listener_refused_total{listen,reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerRefusal {
    /// Its ClientHello named no server and the address has no default
    /// service.
    NoSni,
    /// Its ClientHello named a server no service on the address answers,
    /// and the address has no default service.
    UnknownSni,
    /// Its first bytes were not a ClientHello rustls could read.
    BadHello,
    /// It sent no whole ClientHello within the handshake timeout.
    Timeout,
    /// It hung up before its ClientHello was whole.
    Eof,
    /// Its address already holds `max_connections_per_client` connections
    /// on this worker.
    ClientLimit,
    /// A PostgreSQL client that did not start with an SSLRequest or a
    /// ClientHello (a plaintext startup or cancel request), or sent more
    /// before it was answered `S`.
    PostgresNotTls,
    /// A PostgreSQL client's direct TLS ClientHello without ALPN
    /// `postgresql`.
    PostgresNoAlpn,
    /// It started with a PROXY header but is not a trusted source.
    ProxyUntrusted,
    /// A trusted source sent no PROXY v2 header, a malformed one, or none
    /// within the handshake timeout.
    ProxyBadHeader,
}

impl ListenerRefusal {
    /// Every reason, in counter order.
    pub const ALL: [Self; 10] = [
        Self::NoSni,
        Self::UnknownSni,
        Self::BadHello,
        Self::Timeout,
        Self::Eof,
        Self::ClientLimit,
        Self::PostgresNotTls,
        Self::PostgresNoAlpn,
        Self::ProxyUntrusted,
        Self::ProxyBadHeader,
    ];

    /// The label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSni => "no_sni",
            Self::UnknownSni => "unknown_sni",
            Self::BadHello => "bad_client_hello",
            Self::Timeout => "timeout",
            Self::Eof => "eof",
            Self::ClientLimit => "client_limit",
            Self::PostgresNotTls => "postgres_not_tls",
            Self::PostgresNoAlpn => "postgres_no_alpn",
            Self::ProxyUntrusted => "proxy_untrusted",
            Self::ProxyBadHeader => "proxy_bad_header",
        }
    }
}

/// One routing listener's figures in one worker.
#[derive(Debug)]
pub struct ListenerCounters {
    /// The address it listens on.
    pub listen: SocketAddr,
    refused: [AtomicU64; ListenerRefusal::ALL.len()],
}

impl ListenerCounters {
    pub(crate) fn refused(&self, why: ListenerRefusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    /// Clients refused for `why`.
    #[must_use]
    pub fn refusals(&self, why: ListenerRefusal) -> u64 {
        self.refused[why as usize].load(Relaxed)
    }
}

/// Where the terminator ran out of file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdStage {
    /// Accepting a client.
    Accept,
    /// Opening the socket towards an upstream.
    Connect,
}

impl FdStage {
    /// Every stage, in counter order.
    pub const ALL: [Self; 2] = [Self::Accept, Self::Connect];

    /// The label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Connect => "connect",
        }
    }
}

/// Upper bounds of the latency buckets, in milliseconds (Linkerd's
/// response_latency_ms buckets).
const LATENCY_MS: &[u64] = &[
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000,
    10_000, 20_000, 30_000, 40_000, 50_000,
];

/// Upper bounds of the connection duration buckets, in milliseconds.
const DURATION_MS: &[u64] = &[
    1,
    10,
    100,
    1000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// A fixed-bucket histogram of milliseconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let ms = d.as_millis() as u64;
        let i = self.bounds.partition_point(|&b| b < ms);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Observations so far.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// An endpoint's figures.
#[derive(Debug)]
pub struct EndpointCounters {
    /// The endpoint.
    pub addr: SocketAddr,
    connects: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    ejections: AtomicU64,
    /// 0 ready, 1 ejected, 2 probing, 3 removed.
    state: AtomicU8,
}

impl EndpointCounters {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            connects: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            state: AtomicU8::new(0),
        }
    }

    /// A connect to it succeeded.
    pub fn connected(&self, pool: &Pool, id: EndpointId, now: Instant) {
        self.connects.fetch_add(1, Relaxed);
        self.track(pool, id, now);
    }

    /// A connect to it failed.
    pub fn connect_failed(&self, pool: &Pool, id: EndpointId, now: Instant) {
        self.failures.fetch_add(1, Relaxed);
        self.track(pool, id, now);
    }

    /// A connect to it timed out (also counted as failed).
    pub fn timed_out(&self) {
        self.timeouts.fetch_add(1, Relaxed);
    }

    /// Copies the pool's view of the endpoint, counting new ejections.
    pub fn track(&self, pool: &Pool, id: EndpointId, now: Instant) {
        let state = match pool.state(id, now) {
            EndpointState::Healthy => 0,
            EndpointState::Ejected { .. } => 1,
            EndpointState::Probing => 2,
            EndpointState::Removed => 3,
        };
        let before = self.state.swap(state, Relaxed);
        if state == 1 && before != 1 {
            self.ejections.fetch_add(1, Relaxed);
        }
    }

    /// Ejections so far.
    #[must_use]
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Relaxed)
    }

    /// The state label now.
    #[must_use]
    pub fn state(&self) -> &'static str {
        match self.state.load(Relaxed) {
            1 => "ejected",
            2 => "probing",
            3 => "removed",
            _ => "ready",
        }
    }
}

/// One service's figures in one worker.
#[derive(Debug)]
pub struct ServiceCounters {
    /// The service's name.
    pub name: String,
    accepted: AtomicU64,
    closed: AtomicU64,
    upstream_opened: AtomicU64,
    upstream_closed: AtomicU64,
    read: [AtomicU64; 2],
    written: [AtomicU64; 2],
    handshakes: AtomicU64,
    handshake_failures: [Vec<AtomicU64>; 2],
    /// TLS legs by record path: all in user space, by reason, per leg.
    record_path: [[AtomicU64; Userspace::ALL.len()]; 2],
    retries: AtomicU64,
    budget_exhausted: AtomicU64,
    no_endpoint: AtomicU64,
    idle_closed: AtomicU64,
    first_byte_closed: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    service_limit_reached: AtomicU64,
    fd_exhausted: [AtomicU64; FdStage::ALL.len()],
    connect_latency: Histogram,
    duration: Histogram,
    endpoints: Vec<EndpointCounters>,
}

fn zeros(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl ServiceCounters {
    /// Zeroed figures for service `name` with `endpoints`.
    #[must_use]
    pub fn new(name: &str, endpoints: &[SocketAddr]) -> Self {
        Self {
            name: name.to_owned(),
            accepted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            upstream_opened: AtomicU64::new(0),
            upstream_closed: AtomicU64::new(0),
            read: Default::default(),
            written: Default::default(),
            handshakes: AtomicU64::new(0),
            handshake_failures: [
                zeros(HANDSHAKE_REASONS.len()),
                zeros(HANDSHAKE_REASONS.len()),
            ],
            record_path: Default::default(),
            retries: AtomicU64::new(0),
            budget_exhausted: AtomicU64::new(0),
            no_endpoint: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            first_byte_closed: AtomicU64::new(0),
            refused: Default::default(),
            service_limit_reached: AtomicU64::new(0),
            fd_exhausted: Default::default(),
            connect_latency: Histogram::new(LATENCY_MS),
            duration: Histogram::new(DURATION_MS),
            endpoints: endpoints
                .iter()
                .map(|&a| EndpointCounters::new(a))
                .collect(),
        }
    }

    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }
    pub(crate) fn closed(&self, lived: Duration) {
        self.closed.fetch_add(1, Relaxed);
        self.duration.observe(lived);
    }
    pub(crate) fn upstream_opened(&self) {
        self.upstream_opened.fetch_add(1, Relaxed);
    }
    pub(crate) fn upstream_closed(&self) {
        self.upstream_closed.fetch_add(1, Relaxed);
    }
    pub(crate) fn read(&self, peer: Peer, n: usize) {
        self.read[peer as usize].fetch_add(n as u64, Relaxed);
    }
    pub(crate) fn wrote(&self, peer: Peer, n: usize) {
        self.written[peer as usize].fetch_add(n as u64, Relaxed);
    }
    pub(crate) fn handshake_ok(&self) {
        self.handshakes.fetch_add(1, Relaxed);
    }
    pub(crate) fn handshake_failed(&self, peer: Peer, reason: &str) {
        let i = HANDSHAKE_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(HANDSHAKE_REASONS.len() - 3);
        self.handshake_failures[peer as usize][i].fetch_add(1, Relaxed);
    }
    pub(crate) fn record_path(&self, peer: Peer, why: Userspace) {
        self.record_path[peer as usize][why as usize].fetch_add(1, Relaxed);
    }
    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }
    pub(crate) fn budget_exhausted(&self) {
        self.budget_exhausted.fetch_add(1, Relaxed);
    }
    pub(crate) fn no_endpoint(&self) {
        self.no_endpoint.fetch_add(1, Relaxed);
    }
    pub(crate) fn idle_closed(&self) {
        self.idle_closed.fetch_add(1, Relaxed);
    }
    pub(crate) fn first_byte_closed(&self) {
        self.first_byte_closed.fetch_add(1, Relaxed);
    }
    pub(crate) fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }
    pub(crate) fn service_limit_reached(&self) {
        self.service_limit_reached.fetch_add(1, Relaxed);
    }
    /// This process (EMFILE) or the system (ENFILE) had no descriptor for
    /// an accept or an upstream socket: local pressure, nobody else's
    /// fault.
    pub fn fd_exhausted(&self, stage: FdStage) {
        self.fd_exhausted[stage as usize].fetch_add(1, Relaxed);
    }
    pub(crate) fn connect_latency(&self, d: Duration) {
        self.connect_latency.observe(d);
    }

    /// The figures of endpoint `i` (by its index in the configuration).
    #[must_use]
    pub fn endpoint(&self, i: usize) -> &EndpointCounters {
        &self.endpoints[i]
    }

    /// Connections accepted and not yet closed.
    #[must_use]
    pub fn open(&self) -> u64 {
        self.accepted
            .load(Relaxed)
            .saturating_sub(self.closed.load(Relaxed))
    }

    /// Handshake failures with `reason` on the client leg.
    #[must_use]
    pub fn client_handshake_failures(&self, reason: &str) -> u64 {
        HANDSHAKE_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.handshake_failures[0][i].load(Relaxed))
    }

    /// Upstream handshakes that failed for `reason` (a
    /// [`HANDSHAKE_REASONS`] label).
    #[must_use]
    pub fn upstream_handshake_failures(&self, reason: &str) -> u64 {
        HANDSHAKE_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.handshake_failures[1][i].load(Relaxed))
    }

    /// Clients refused for `why`.
    #[must_use]
    pub fn refusals(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Relaxed)
    }

    /// Connections closed because the client sent nothing in time.
    #[must_use]
    pub fn first_byte_timeouts(&self) -> u64 {
        self.first_byte_closed.load(Relaxed)
    }

    /// Descriptor exhaustion met at `stage`.
    #[must_use]
    pub fn fd_exhaustions(&self, stage: FdStage) -> u64 {
        self.fd_exhausted[stage as usize].load(Relaxed)
    }

    /// TLS legs on `peer`'s side whose records went through user space
    /// for `why`.
    #[must_use]
    pub fn record_paths(&self, peer: Peer, why: Userspace) -> u64 {
        self.record_path[peer as usize][why as usize].load(Relaxed)
    }

    /// Retries, budget exhaustions, refusals for lack of an endpoint.
    #[must_use]
    pub fn retry_figures(&self) -> (u64, u64, u64) {
        (
            self.retries.load(Relaxed),
            self.budget_exhausted.load(Relaxed),
            self.no_endpoint.load(Relaxed),
        )
    }
}

/// Every service's figures in one worker.
#[derive(Debug)]
pub struct WorkerMetrics {
    services: Vec<ServiceCounters>,
    listeners: Vec<ListenerCounters>,
    restarts: AtomicU64,
    access_log_dropped: AtomicU64,
}

impl WorkerMetrics {
    /// Figures for `services` (name, endpoints), in configuration order.
    #[must_use]
    pub fn new<'a>(services: impl IntoIterator<Item = (&'a str, &'a [SocketAddr])>) -> Self {
        Self {
            services: services
                .into_iter()
                .map(|(n, e)| ServiceCounters::new(n, e))
                .collect(),
            listeners: Vec::new(),
            restarts: AtomicU64::new(0),
            access_log_dropped: AtomicU64::new(0),
        }
    }

    /// Adds figures for the listeners that route by SNI, in the order of
    /// the engine's [`crate::engine::ListenerSpec`]s.
    #[must_use]
    pub fn with_listeners(mut self, listens: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.listeners = listens
            .into_iter()
            .map(|listen| ListenerCounters {
                listen,
                refused: Default::default(),
            })
            .collect();
        self
    }

    /// Routing listener `i`'s figures.
    #[must_use]
    pub fn listener(&self, i: usize) -> &ListenerCounters {
        &self.listeners[i]
    }

    /// An access log record was dropped: the writer was behind.
    pub(crate) fn access_log_dropped(&self) {
        self.access_log_dropped.fetch_add(1, Relaxed);
    }

    /// Access log records this worker dropped because the writer was
    /// behind.
    #[must_use]
    pub fn access_log_drops(&self) -> u64 {
        self.access_log_dropped.load(Relaxed)
    }

    /// The worker's ring failed and the worker was built again.
    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Relaxed);
    }

    /// Restarts so far.
    #[must_use]
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Relaxed)
    }

    /// Service `i`'s figures.
    #[must_use]
    pub fn service(&self, i: usize) -> &ServiceCounters {
        &self.services[i]
    }
}

fn sum(workers: &[&WorkerMetrics], f: impl Fn(&WorkerMetrics) -> u64) -> u64 {
    workers.iter().map(|w| f(w)).sum()
}

/// Renders the sum over `workers` as Prometheus text.
#[must_use]
pub fn render(workers: &[&WorkerMetrics]) -> String {
    let mut out = String::new();
    let Some(first) = workers.first() else {
        return out;
    };
    let p = "causeway_terminator";
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {p}_{name} {help}\n# TYPE {p}_{name} {kind}");
    };
    let load = |a: &AtomicU64| a.load(Relaxed);
    let n = first.services.len();
    // A counter per service, leg and reason (`labels[r]`, the reason's
    // labels), written only where it is not zero.
    let by_reason = |out: &mut String,
                     name: &str,
                     labels: &[String],
                     value: &dyn Fn(&ServiceCounters, Peer, usize) -> u64| {
        for i in 0..n {
            let s = &first.services[i].name;
            for peer in [Peer::Client, Peer::Upstream] {
                for (r, labels) in labels.iter().enumerate() {
                    let v = sum(workers, |w| value(&w.services[i], peer, r));
                    if v > 0 {
                        let _ = writeln!(
                            out,
                            "{p}_{name}{{service=\"{s}\",peer=\"{}\",{labels}}} {v}",
                            peer.label()
                        );
                    }
                }
            }
        }
    };

    // Linkerd's TCP families: one sample per service and leg.
    type PerLeg = fn(&ServiceCounters, Peer) -> u64;
    let families: [(&str, &str, &str, PerLeg); 5] = [
        (
            "tcp_open_total",
            "counter",
            "Connections opened.",
            |c, peer| {
                match peer {
                    Peer::Client => &c.accepted,
                    Peer::Upstream => &c.upstream_opened,
                }
                .load(Relaxed)
            },
        ),
        (
            "tcp_close_total",
            "counter",
            "Connections closed.",
            |c, peer| {
                match peer {
                    Peer::Client => &c.closed,
                    Peer::Upstream => &c.upstream_closed,
                }
                .load(Relaxed)
            },
        ),
        (
            "tcp_open_connections",
            "gauge",
            "Connections open now.",
            |c, peer| match peer {
                Peer::Client => c.open(),
                Peer::Upstream => c
                    .upstream_opened
                    .load(Relaxed)
                    .saturating_sub(c.upstream_closed.load(Relaxed)),
            },
        ),
        (
            "tcp_read_bytes_total",
            "counter",
            "Bytes received, TLS records included.",
            |c, peer| c.read[peer as usize].load(Relaxed),
        ),
        (
            "tcp_write_bytes_total",
            "counter",
            "Bytes sent, TLS records included.",
            |c, peer| c.written[peer as usize].load(Relaxed),
        ),
    ];
    for (name, kind, help, value) in families {
        family(&mut out, name, kind, help);
        for i in 0..n {
            let s = &first.services[i].name;
            for peer in [Peer::Client, Peer::Upstream] {
                let v = sum(workers, |w| value(&w.services[i], peer));
                let _ = writeln!(
                    out,
                    "{p}_{name}{{service=\"{s}\",peer=\"{}\"}} {v}",
                    peer.label()
                );
            }
        }
    }
    family(
        &mut out,
        "tls_handshakes_total",
        "counter",
        "Client TLS handshakes completed.",
    );
    for i in 0..n {
        let s = &first.services[i].name;
        let v = sum(workers, |w| load(&w.services[i].handshakes));
        let _ = writeln!(out, "{p}_tls_handshakes_total{{service=\"{s}\"}} {v}");
    }
    family(
        &mut out,
        "tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed, by leg and reason.",
    );
    let reasons: Vec<String> = HANDSHAKE_REASONS
        .iter()
        .map(|r| format!("reason=\"{r}\""))
        .collect();
    by_reason(
        &mut out,
        "tls_handshake_failures_total",
        &reasons,
        &|c, peer, r| load(&c.handshake_failures[peer as usize][r]),
    );
    family(
        &mut out,
        "tls_record_path_total",
        "counter",
        "TLS legs by where their records are sealed and opened (user space or kernel TLS), and why.",
    );
    let reasons: Vec<String> = Userspace::ALL
        .iter()
        .map(|why| format!("path=\"userspace\",reason=\"{}\"", why.as_str()))
        .collect();
    by_reason(
        &mut out,
        "tls_record_path_total",
        &reasons,
        &|c, peer, r| load(&c.record_path[peer as usize][r]),
    );
    for (name, help, f) in [
        (
            "retries_total",
            "Upstream connects retried on another endpoint.",
            0,
        ),
        (
            "retry_budget_exhausted_total",
            "Retries refused by the retry budget.",
            1,
        ),
        (
            "no_endpoint_total",
            "Clients refused because every endpoint was ejected.",
            2,
        ),
        (
            "idle_timeouts_total",
            "Connections closed by the idle timeout.",
            3,
        ),
        (
            "first_byte_timeouts_total",
            "Connections closed because the client sent nothing within the first-byte timeout.",
            4,
        ),
        (
            "service_limit_reached_total",
            "Times the service reached max_connections on a worker, which then stopped accepting until one closed.",
            5,
        ),
    ] {
        family(&mut out, name, "counter", help);
        for i in 0..n {
            let s = &first.services[i].name;
            let v = sum(workers, |w| {
                let c = &w.services[i];
                load(match f {
                    0 => &c.retries,
                    1 => &c.budget_exhausted,
                    2 => &c.no_endpoint,
                    3 => &c.idle_closed,
                    4 => &c.first_byte_closed,
                    _ => &c.service_limit_reached,
                })
            });
            let _ = writeln!(out, "{p}_{name}{{service=\"{s}\"}} {v}");
        }
    }
    family(
        &mut out,
        "refused_total",
        "counter",
        "Clients refused (reset) right after their accept, by reason.",
    );
    for i in 0..n {
        let s = &first.services[i].name;
        for why in Refusal::ALL {
            let v = sum(workers, |w| load(&w.services[i].refused[why as usize]));
            let _ = writeln!(
                out,
                "{p}_refused_total{{service=\"{s}\",reason=\"{}\"}} {v}",
                why.as_str()
            );
        }
    }
    family(
        &mut out,
        "listener_refused_total",
        "counter",
        "Clients of an address shared by services (told apart by SNI) refused before a service was chosen, by reason.",
    );
    for (i, l) in first.listeners.iter().enumerate() {
        for why in ListenerRefusal::ALL {
            let v = sum(workers, |w| load(&w.listeners[i].refused[why as usize]));
            let _ = writeln!(
                out,
                "{p}_listener_refused_total{{listen=\"{}\",reason=\"{}\"}} {v}",
                l.listen,
                why.as_str()
            );
        }
    }
    family(
        &mut out,
        "fd_exhausted_total",
        "counter",
        "Accepts and upstream sockets that found no file descriptor (EMFILE, ENFILE): local pressure, never counted against an upstream.",
    );
    for i in 0..n {
        let s = &first.services[i].name;
        for stage in FdStage::ALL {
            let v = sum(workers, |w| {
                load(&w.services[i].fd_exhausted[stage as usize])
            });
            let _ = writeln!(
                out,
                "{p}_fd_exhausted_total{{service=\"{s}\",stage=\"{}\"}} {v}",
                stage.as_str()
            );
        }
    }
    family(
        &mut out,
        "worker_restarts_total",
        "counter",
        "Terminator workers rebuilt after their ring failed.",
    );
    let _ = writeln!(
        out,
        "{p}_worker_restarts_total {}",
        sum(workers, |w| load(&w.restarts))
    );
    family(
        &mut out,
        "access_log_dropped_total",
        "counter",
        "Access log records dropped because the writer was behind (the workers never wait for it).",
    );
    let _ = writeln!(
        out,
        "{p}_access_log_dropped_total {}",
        sum(workers, |w| load(&w.access_log_dropped))
    );
    for (name, help, which) in [
        ("connect_latency_ms", "Upstream TCP connect latency.", 0),
        (
            "tcp_connection_duration_ms",
            "Client connection lifetime.",
            1,
        ),
    ] {
        family(&mut out, name, "histogram", help);
        for i in 0..n {
            let s = &first.services[i].name;
            fn pick(w: &WorkerMetrics, i: usize, which: u8) -> &Histogram {
                if which == 0 {
                    &w.services[i].connect_latency
                } else {
                    &w.services[i].duration
                }
            }
            let bounds = pick(first, i, which).bounds;
            let mut cumulative = 0;
            for (b, bound) in bounds.iter().enumerate() {
                cumulative += sum(workers, |w| load(&pick(w, i, which).counts[b]));
                let _ = writeln!(
                    out,
                    "{p}_{name}_bucket{{service=\"{s}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += sum(workers, |w| load(&pick(w, i, which).counts[bounds.len()]));
            let _ = writeln!(
                out,
                "{p}_{name}_bucket{{service=\"{s}\",le=\"+Inf\"}} {cumulative}"
            );
            let sum_ms = sum(workers, |w| load(&pick(w, i, which).sum_us)) as f64 / 1000.0;
            let _ = writeln!(out, "{p}_{name}_sum{{service=\"{s}\"}} {sum_ms}");
            let _ = writeln!(out, "{p}_{name}_count{{service=\"{s}\"}} {cumulative}");
        }
    }
    for (name, help, f) in [
        (
            "endpoint_connects_total",
            "Successful connects per endpoint.",
            0,
        ),
        (
            "endpoint_connect_failures_total",
            "Failed connects per endpoint.",
            1,
        ),
        (
            "endpoint_connect_timeouts_total",
            "Timed-out connects per endpoint.",
            2,
        ),
        (
            "endpoint_ejections_total",
            "Times an endpoint was ejected.",
            3,
        ),
    ] {
        family(&mut out, name, "counter", help);
        for i in 0..n {
            let s = &first.services[i].name;
            for (e, ep) in first.services[i].endpoints.iter().enumerate() {
                let v = sum(workers, |w| {
                    let c = &w.services[i].endpoints[e];
                    load(match f {
                        0 => &c.connects,
                        1 => &c.failures,
                        2 => &c.timeouts,
                        _ => &c.ejections,
                    })
                });
                let _ = writeln!(
                    out,
                    "{p}_{name}{{service=\"{s}\",endpoint=\"{}\"}} {v}",
                    ep.addr
                );
            }
        }
    }
    family(
        &mut out,
        "endpoint_state",
        "gauge",
        "Workers that see the endpoint in each state (ready, ejected, probing).",
    );
    for i in 0..n {
        let s = &first.services[i].name;
        for (e, ep) in first.services[i].endpoints.iter().enumerate() {
            for state in ["ready", "ejected", "probing"] {
                let v = workers
                    .iter()
                    .filter(|w| w.services[i].endpoints[e].state() == state)
                    .count();
                let _ = writeln!(
                    out,
                    "{p}_endpoint_state{{service=\"{s}\",endpoint=\"{}\",state=\"{state}\"}} {v}",
                    ep.addr
                );
            }
        }
    }
    out
}
