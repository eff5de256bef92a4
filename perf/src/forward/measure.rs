//! One measured point: a sink in island B, the generator in island A,
//! the sink's count (the XDP sink's map, or island B's interface counter
//! beside a UDP socket) and the forwarder's own count read before and
//! after, and the CPU time the run cost ([`super::cpu`]).
#![forbid(unsafe_code)]

use std::{
    net::{SocketAddr, SocketAddrV4},
    time::Duration,
};

use anyhow::Context;
use serde_json::Value;

use super::{
    Load, SINK_PORT,
    cpu::{self, CpuTimes},
    xdp_sink::XdpSink,
};
use crate::{
    lab::{self, Lab},
    pktgen::{self, GenConfig, frame::FrameSpec},
    procfs,
    sink::Sink,
};

/// The name of causeway's dataplane worker threads (`cw-worker-N`).
const WORKER_THREADS: &str = "cw-worker-";

/// What one run through a lab gave.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Point {
    /// Frames the generator sent per second: the offered rate.
    pub(crate) tx_pps: f64,
    /// The forwarder kept up with everything offered, so `pps` is the
    /// generator's rate, not the forwarder's ([`cpu::generator_bound`]).
    pub(crate) generator_bound: bool,
    /// A rate was asked and the generator did not offer it
    /// ([`cpu::held_back`]).
    pub(crate) held_back: bool,
    /// What the forwarded frames cost in CPU.
    pub(crate) cost: Cost,
    /// Frames that reached island B per second: the forwarding rate.
    pub(crate) pps: f64,
    /// 1 - received / sent.
    pub(crate) loss: f64,
    /// Probe latency percentiles, in microseconds (0 without probes).
    pub(crate) p50_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// Probes that reached the sink.
    pub(crate) probes: u64,
    /// Where causeway lost frames during the run, when an appliance ran.
    pub(crate) lost: Option<Losses>,
    /// Frames the sink counted over the run (and the drain after it).
    pub(crate) sink_counted: u64,
    /// Frames the forwarder says it forwarded over the same time:
    /// causeway's transmits on port `b`, or Linux's `ForwDatagrams`
    /// (which does not count what XDP redirects).
    pub(crate) forwarder_counted: Option<u64>,
}

/// What a run goes through and where its frames are counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) lab: &'a Lab,
    pub(crate) spec: &'a FrameSpec,
    /// The XDP sink on island B's `eth0`; `None`: a UDP socket receives,
    /// and island B's interface counter counts.
    pub(crate) sink: Option<&'a XdpSink>,
    /// The in-kernel XDP peer forwards: the kernel counts nothing it
    /// redirects, so there is no forwarder's count.
    pub(crate) xdp_peer: bool,
}

impl Target<'_> {
    /// Frames that reached island B so far, as this target counts them.
    fn received(&self) -> anyhow::Result<u64> {
        match self.sink {
            Some(sink) => sink.count(),
            None => lab::rx_packets(&self.lab.ns("b"), "eth0"),
        }
    }

    /// Frames the forwarder says it forwarded so far: causeway's
    /// transmits on port `b` (from `stats`, when an appliance runs), else
    /// the appliance namespace's `ForwDatagrams`.
    fn forwarded(&self, stats: Option<&Value>) -> Option<u64> {
        if self.xdp_peer {
            return None;
        }
        match stats {
            Some(stats) => port_b_tx(stats),
            None => {
                let snmp = lab::in_netns(&self.lab.ns("gw"), &["cat", "/proc/net/snmp"]).ok()?;
                forw_datagrams(&snmp)
            }
        }
    }
}

/// causeway's transmits on port `b` from its statistics.
fn port_b_tx(stats: &Value) -> Option<u64> {
    let ports = stats["ports"].as_array()?;
    let b = ports.iter().find(|p| p[0]["name"] == "b")?;
    b[1]["tx_packets"].as_u64()
}

/// `Ip: ForwDatagrams` of a `/proc/net/snmp` text.
fn forw_datagrams(snmp: &str) -> Option<u64> {
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip: "));
    let (names, values) = (ip.next()?, ip.next()?);
    let i = names
        .split_whitespace()
        .position(|n| n == "ForwDatagrams")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// CPU time per forwarded frame, nanoseconds (`None`: nothing forwarded,
/// or no appliance to ask).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cost {
    /// causeway's workers' busy time (polls that carried frames).
    pub(crate) busy_ns: Option<f64>,
    /// System, irq and softirq time of the forwarder's CPU.
    pub(crate) fwd_kernel_ns: Option<f64>,
    /// All the time the forwarder's CPU ran anything (a spinning worker's
    /// whole run).
    pub(crate) fwd_cpu_ns: Option<f64>,
    /// System, irq and softirq time of the generator's CPU (shared with
    /// the generator and the sink).
    pub(crate) gen_kernel_ns: Option<f64>,
    /// The share of the run the forwarder's CPU spent in user time: for a
    /// kernel forwarder, somebody else's work (another build) that may
    /// have taken system time there as well.
    pub(crate) fwd_user_share: f64,
    /// The share of the run causeway's workers spent waiting in a run
    /// queue: preempted by somebody else on their CPU, which their busy
    /// time (wall clock) then counts.
    pub(crate) worker_wait_share: Option<f64>,
}

impl Cost {
    /// What one forwarded frame costs the forwarder, the figure to compare:
    /// a causeway worker's busy time, else the kernel time of the
    /// forwarder's CPU.
    pub(crate) fn per_packet_ns(&self) -> Option<f64> {
        self.busy_ns.or(self.fwd_kernel_ns)
    }

    /// The cost of `forwarded` frames from the CPU times of a run and the
    /// appliance's busy time (`busy_ns`, if one ran).
    fn of(cpus: (&CpuTimes, &CpuTimes), hz: u64, forwarded: u64, busy_ns: Option<u64>) -> Self {
        let (fwd, generator) = cpus;
        let ticks = |t: u64| cpu::ticks_per_packet_ns(t, hz, forwarded);
        let window = fwd.busy() + fwd.idle + fwd.iowait + fwd.steal;
        Self {
            busy_ns: busy_ns.and_then(|ns| cpu::ns_per_packet(ns, forwarded)),
            fwd_kernel_ns: ticks(fwd.kernel()),
            fwd_cpu_ns: ticks(fwd.busy()),
            gen_kernel_ns: ticks(generator.kernel()),
            fwd_user_share: if window == 0 {
                0.0
            } else {
                (fwd.user + fwd.nice) as f64 / window as f64
            },
            worker_wait_share: None,
        }
    }
}

/// The workers' busy time, summed, from `causeway stats`.
fn busy_ns(stats: &Value) -> Option<u64> {
    let workers = stats["workers"].as_array()?;
    Some(workers.iter().filter_map(|w| w["busy_ns"].as_u64()).sum())
}

/// Frames an appliance lost during a run, by where (counter deltas of
/// `causeway stats`, port `a`: the ingress of the generated load).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Losses {
    /// Redirected by the XDP program to an AF_XDP socket of any port.
    pub(crate) redirected: u64,
    /// Dropped by the kernel because a socket's RX ring was full: the
    /// worker did not keep up.
    pub(crate) rx_ring_full: u64,
    /// Dropped by the kernel for other reasons (no frame on the fill
    /// ring among them).
    pub(crate) rx_dropped: u64,
    /// Times the kernel found a fill ring empty.
    pub(crate) fill_ring_empty: u64,
    /// Frames the worker received on port `a`.
    pub(crate) worker_rx: u64,
    /// Frames the worker dropped (any reason).
    pub(crate) worker_drops: u64,
}

impl Losses {
    /// The deltas from `before` to `after`; `None` unless both are the
    /// statistics of a running appliance.
    fn between(before: Option<&Value>, after: Option<&Value>) -> Option<Self> {
        let (before, after) = (before?, after?);
        let port_a = |v: &Value| -> Option<(Value, Value)> {
            let ports = v["ports"].as_array()?;
            let i = ports.iter().position(|p| p[0]["name"] == "a")?;
            Some((ports[i][1].clone(), v["sockets"].get(i)?.clone()))
        };
        let ((c0, s0), (c1, s1)) = (port_a(before)?, port_a(after)?);
        let delta = |a: &Value, b: &Value, k: &str| {
            b[k].as_u64()
                .unwrap_or(0)
                .saturating_sub(a[k].as_u64().unwrap_or(0))
        };
        let drops = |c: &Value| -> u64 {
            c["drops"]
                .as_array()
                .map_or(0, |d| d.iter().filter_map(Value::as_u64).sum())
        };
        Some(Self {
            redirected: delta(&before["xdp"], &after["xdp"], "redirect"),
            rx_ring_full: delta(&s0, &s1, "rx_ring_full"),
            rx_dropped: delta(&s0, &s1, "rx_dropped"),
            fill_ring_empty: delta(&s0, &s1, "rx_fill_ring_empty_descs"),
            worker_rx: delta(&c0, &c1, "rx_packets"),
            worker_drops: drops(&c1).saturating_sub(drops(&c0)),
        })
    }
}

/// Sends `load` from island A to island B through `target`'s gateway and
/// measures what arrives.
///
/// # Errors
/// The sink, generator or counters fail.
pub(crate) fn measure(target: &Target<'_>, load: &Load) -> anyhow::Result<Point> {
    let (lab, spec) = (target.lab, target.spec);
    let island_b = lab.ns("b");
    let sink_addr = SocketAddr::V4(SocketAddrV4::new(spec.dst_ip, SINK_PORT));
    let config = GenConfig {
        netns: lab.ns("a"),
        interface: "eth0".to_owned(),
        cpu: Some(load.gen_cpu),
        spec: spec.clone(),
        flows: load.flows,
        sizes: load.sizes.clone(),
        rate: load.rate,
        count: load.count,
        duration: load.duration,
        probe_every: load.probe_every,
    };
    // Warm up: every flow twice (conntrack entries, neighbours), unmeasured
    // and without probes, so every latency sample is from the measured run.
    let warm = GenConfig {
        rate: Some(100_000.0),
        count: u64::from(load.flows) * 2,
        duration: Duration::from_secs(1),
        probe_every: 0,
        ..config.clone()
    };
    // The UDP socket, unless the XDP sink counts (it has no latency).
    let sink = match target.sink {
        Some(_) => None,
        None => Some(Sink::start(&island_b, sink_addr, Some(load.sink_cpu))?),
    };
    run_generator(warm)?;
    std::thread::sleep(Duration::from_millis(200));

    // An appliance's counters, where one runs (a Linux lab has none).
    let stats_before = lab.stats().ok();
    let before = target.received()?;
    let forwarder_before = target.forwarded(stats_before.as_ref());
    // The appliance's workers, where one runs.
    let appliance = match stats_before {
        Some(_) => lab
            .status()
            .ok()
            .and_then(|s| s["appliance"]["pid"].as_u64())
            .and_then(|p| u32::try_from(p).ok()),
        None => None,
    };
    let workers = || appliance.map(|pid| procfs::thread_times(pid, WORKER_THREADS));
    let (workers_before, cpus_before) = (workers(), cpu::read()?);
    let generated = run_generator(config)?;
    // The CPU while the generator sent; the drain below adds frames but
    // (for a spinning worker) mostly idle turns.
    let (cpus_after, workers_after) = (cpu::read()?, workers());
    // Let what is still queued in the gateway arrive.
    std::thread::sleep(Duration::from_millis(200));
    let after = target.received()?;
    let stats_after = lab.stats().ok();
    let forwarder_after = target.forwarded(stats_after.as_ref());
    let lost = Losses::between(stats_before.as_ref(), stats_after.as_ref());
    let busy = stats_before
        .as_ref()
        .zip(stats_after.as_ref())
        .and_then(|(b, a)| Some(busy_ns(a)?.saturating_sub(busy_ns(b)?)));
    let latency_ns = match sink {
        Some(sink) => Some(sink.finish()?.latency_ns),
        None => None,
    };
    let forwarded = after.saturating_sub(before);
    let delta = |i: usize| {
        let zero = CpuTimes::default();
        let (a, b) = (cpus_after.get(i), cpus_before.get(i));
        a.unwrap_or(&zero).since(b.unwrap_or(&zero))
    };
    let secs = generated.elapsed.as_secs_f64().max(1e-9);
    let mut cost = Cost::of(
        (&delta(load.forward_cpu), &delta(load.gen_cpu)),
        load.ticks_per_second,
        forwarded,
        busy,
    );
    cost.worker_wait_share = workers_before
        .zip(workers_after)
        .map(|((_, w0), (_, w1))| w1.saturating_sub(w0) as f64 / secs / 1e9);
    let us = |q: f64| match &latency_ns {
        Some(hist) if !hist.is_empty() => hist.value_at_quantile(q) as f64 / 1000.0,
        _ => 0.0,
    };
    Ok(Point {
        tx_pps: generated.sent as f64 / secs,
        generator_bound: cpu::generator_bound(generated.sent, forwarded),
        held_back: cpu::held_back(load.rate, generated.sent as f64 / secs),
        cost,
        pps: forwarded as f64 / secs,
        loss: if generated.sent == 0 {
            1.0
        } else {
            (1.0 - forwarded as f64 / generated.sent as f64).max(0.0)
        },
        p50_us: us(0.5),
        p99_us: us(0.99),
        probes: latency_ns.as_ref().map_or(0, |h| h.len()),
        lost,
        sink_counted: forwarded,
        forwarder_counted: forwarder_before
            .zip(forwarder_after)
            .map(|(b, a)| a.saturating_sub(b)),
    })
}

/// Runs the generator on a thread of its own (it enters a namespace).
fn run_generator(config: GenConfig) -> anyhow::Result<pktgen::GenReport> {
    std::thread::Builder::new()
        .name("perf-pktgen".to_owned())
        .spawn(move || pktgen::run(&config))?
        .join()
        .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?
        .context("the generator")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forw_datagrams_is_read_from_the_ip_lines() {
        let snmp = "\
Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos
Ip: 1 64 1200 0 0 1100 0
Icmp: InMsgs InErrors
Icmp: 3 0
";
        assert_eq!(forw_datagrams(snmp), Some(1100));
        assert_eq!(forw_datagrams("Icmp: InMsgs\nIcmp: 3\n"), None);
    }

    #[test]
    fn port_b_transmits_are_read_from_the_stats() {
        let stats = serde_json::json!({
            "ports": [
                [{"name": "a"}, {"rx_packets": 10, "tx_packets": 1}],
                [{"name": "b"}, {"rx_packets": 2, "tx_packets": 9}],
            ]
        });
        assert_eq!(port_b_tx(&stats), Some(9));
        assert_eq!(port_b_tx(&serde_json::json!({"ports": []})), None);
    }
}
