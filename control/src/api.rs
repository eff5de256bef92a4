//! The operator API, for now: HTTP/1.1 on a Unix socket (mode 0600) with
//! `GET /metrics` (Prometheus text format 0.0.4) and `GET /stats` (JSON).
//! The gRPC control API will join it on the same path's sibling; see the
//! Control API issue. A Unix socket works across network namespaces, so
//! `causeway stats --lab NAME` reads an appliance inside its lab from the
//! host, and so does `curl --unix-socket PATH http://x/metrics`.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Write},
    os::unix::{
        fs::PermissionsExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::Arc,
    thread,
    time::Duration,
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
    pub fn start(path: &Path, stats: StatsSource, more: Option<MetricsSource>) -> Result<Self> {
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
        thread::Builder::new()
            .name("cw-api".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(c) => {
                            let s = stats.clone();
                            let m = more.clone();
                            let _ = thread::Builder::new().name("cw-api-conn".into()).spawn(
                                move || {
                                    if let Err(e) = serve(c, &s, m.as_ref()) {
                                        debug!(error = %e, "API connection");
                                    }
                                },
                            );
                        }
                        Err(e) => warn!(error = %e, "API accept"),
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

/// Serves `GET /metrics` (only) on TCP, for Prometheus to scrape: a
/// thread per connection, as on the Unix socket.
///
/// # Errors
/// The address cannot be bound.
pub fn start_metrics_tcp(
    listen: std::net::SocketAddr,
    stats: StatsSource,
    more: Option<MetricsSource>,
) -> Result<()> {
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("metrics.listen: binding {listen}"))?;
    thread::Builder::new()
        .name("cw-metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = stats.clone();
                let m = more.clone();
                let _ = thread::Builder::new()
                    .name("cw-metrics-conn".into())
                    .spawn(move || {
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                        if let Ok(reader) = conn.try_clone() {
                            let _ = respond(reader, conn, &s, m.as_ref());
                        }
                    });
            }
        })?;
    Ok(())
}

fn serve(
    conn: UnixStream,
    stats: &StatsSource,
    more: Option<&MetricsSource>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    respond(conn.try_clone()?, conn, stats, more)
}

fn respond(
    reader: impl std::io::Read,
    mut conn: impl Write,
    stats: &StatsSource,
    more: Option<&MetricsSource>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(reader);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path {
        "/metrics" => {
            let mut text = prometheus(&stats());
            if let Some(more) = more {
                text.push_str(&more());
            }
            ("200 OK", "text/plain; version=0.0.4", text)
        }
        "/stats" => (
            "200 OK",
            "application/json",
            serde_json::to_string_pretty(&stats()).unwrap_or_default(),
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /stats\n".to_owned(),
        ),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A counter family: name, help, and how to read it from a port's counters.
type Family = (&'static str, &'static str, fn(&PortCounters) -> u64);

/// The Prometheus text exposition of a stats snapshot.
pub fn prometheus(s: &DataplaneStats) -> String {
    let mut out = String::new();
    let families: [Family; 5] = [
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
        ("pass", "local", x.pass_local),
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
