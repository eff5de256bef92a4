//! The `forward` and `policy-scale` scenarios: packets per second through
//! the gateway of a lab, island A to island B, as the rule count grows.
//!
//! ```text
//! causeway-perf forward      [--quick] --json FILE   # causeway vs Linux + nftables
//! causeway-perf policy-scale [--quick] --json FILE   # causeway, 0 to 100 000 rules
//! ```
//!
//! - `forward`: for R in 0, 1 000, 10 000 (quick: 0, 1 000), causeway
//!   enforcing R Calico rules against Linux forwarding (`ip_forward=1` in a
//!   lab where no appliance runs) with the same R rules in nftables, written
//!   as linear rules and as one set lookup ([`rules`]). At 0 rules also
//!   against in-kernel XDP forwarding ([`xdp`]: `bpf_fib_lookup` and a
//!   redirect in the driver) on the same Linux lab.
//! - `policy-scale`: causeway for R in 0, 1k, 10k, 100k (quick: 0, 1k), its
//!   peer being causeway itself at 0 rules.
//!
//! Each point is two runs, each a warm-up then the generator
//! ([`crate::pktgen`], AF_XDP from island A's eth0) for `--seconds`:
//!
//! - capacity: as fast as the generator can (or `--rate`); the forwarding
//!   rate is what island B's sink counted over the sending time. The sink
//!   (`--sink`) is by default an XDP program on island B's eth0 that
//!   counts and drops ([`xdp_sink`]), so the forwarder's CPU, which runs
//!   island B's receive, pays for forwarding and not for a socket's
//!   receive path; `--sink udp` is a UDP socket ([`crate::sink`]) that
//!   gives the probes' latency. When the forwarder kept
//!   up with everything offered the point is flagged generator-bound: its
//!   rate is the generator's, and says nothing of the forwarder.
//! - cost: at `--cpu-rate` (250k pps), a rate every forwarder sustains,
//!   the CPU time per forwarded packet ([`cpu`]): the figure that does not
//!   depend on the generator, and the one to compare. The offered rate
//!   and the generator-bound flag go beside it (at this rate a forwarder
//!   that is not bound did not sustain it, and its cost is at saturation;
//!   one whose generator did not offer the rate is flagged held back: its
//!   CPU, shared with the sink and kernel work of the forwarding, could
//!   not keep up, and the run compares with nothing).
//!
//! causeway's lab is started once with a manifests directory; each R is
//! written there and loaded with SIGHUP (0 rules: the endpoint alone, no
//! policy, so everything is allowed). The Linux lab is built once and its
//! ruleset replaced with `nft -f` per point (0 rules: no table).
//!
//! Placement on this 2-core machine: the dataplane worker has the last CPU
//! (the lab configuration's `workers.cores`); generator and sink share CPU 0
//! with the kernel's veth work of island A. Linux forwards in softirq on
//! the CPU that receives; RPS on its `a0` gives it the last CPU, the one
//! causeway's worker has, so neither forwarder shares a core with the
//! traffic's ends. Island B's receive runs where frames are sent into it,
//! on the forwarder's CPU, for every forwarder alike: somebody's CPU must
//! pay for it in a lab, and steering it to CPU 0 with RPS (as before
//! `--island-b-rx-cpu` existed) made the forwarder pay an IPI each time
//! island B's backlog went from idle to busy instead — for causeway's
//! copy-mode transmit, which enables bottom halves once per frame, nearly
//! once per frame, and in a VM an IPI is a VM exit (30% of the worker's
//! CPU in a profile) — and left the generator's CPU with island B's
//! stack, so that it could not send more than about 350k pps. The
//! placement goes into the report.

mod cpu;
mod measure;
mod rules;
mod xdp;
mod xdp_sink;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;

use crate::{
    lab::{self, Lab},
    pktgen::frame::FrameSpec,
    progress::Progress,
    report_schema::{Figure, Machine, Measure, Report},
};
use measure::{Point, Target, measure};
use xdp::XdpPeer;
use xdp_sink::XdpSink;

/// The UDP port the generator sends to and the sink listens on.
pub(crate) const SINK_PORT: u16 = 9000;
/// Flow `i` comes from source port `FIRST_SRC_PORT + i`.
const FIRST_SRC_PORT: u16 = 1024;

/// Where island B counts the frames that reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SinkKind {
    /// An XDP program on island B's eth0 counts and drops them
    /// ([`xdp_sink`]): the forwarder's CPU, which runs island B's receive,
    /// pays almost nothing for it. No latency.
    Xdp,
    /// A UDP socket receives them ([`crate::sink`]), island B's interface
    /// counter counts them; the probes give latency, and the forwarder's
    /// CPU pays for a socket's receive path.
    Udp,
}

/// Arguments of `causeway-perf forward` and `policy-scale`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Fewer rule counts and about a second per point.
    #[arg(long)]
    quick: bool,
    /// Where to write the report (JSON, see `report_schema.rs`).
    #[arg(long, value_name = "FILE")]
    json: PathBuf,
    /// Seconds of traffic per point [default: 3, quick: 1].
    #[arg(long, value_name = "SECONDS")]
    seconds: Option<f64>,
    /// Frame sizes with FCS, cycled through (64..=1518).
    #[arg(long, value_delimiter = ',', default_value = "64")]
    sizes: Vec<usize>,
    /// Distinct flows (UDP source ports).
    #[arg(long, default_value_t = 1024)]
    flows: u16,
    /// Frames per second to send in the capacity run [default: as fast as
    /// possible].
    #[arg(long, value_name = "PPS")]
    rate: Option<f64>,
    /// Frames per second of the cost run of `forward`, where CPU time per
    /// packet is measured: a rate every forwarder sustains.
    #[arg(long, value_name = "PPS", default_value_t = 250_000.0)]
    cpu_rate: f64,
    /// Stop a point after this many frames, if its time is not up first.
    #[arg(long, default_value_t = u64::MAX)]
    count: u64,
    /// Every N-th frame is a timestamped probe.
    #[arg(long, default_value_t = 1000)]
    probe_every: u64,
    /// The `causeway` binary [default: beside this one].
    #[arg(long, value_name = "PATH")]
    causeway: Option<PathBuf>,
    /// Labs are named PREFIXxN; PREFIX is a letter then letters and digits.
    #[arg(long, default_value_t = format!("pf{}", std::process::id() % 100_000))]
    lab_prefix: String,
    /// The generator's CPU.
    #[arg(long, default_value_t = 0)]
    gen_cpu: usize,
    /// The sink: `xdp` counts and drops in XDP on island B's eth0 (the
    /// forwarder's CPU does forwarding, no latency); `udp` is a socket
    /// (probe latency, and a receive path the forwarder's CPU pays for).
    #[arg(long, value_enum, default_value_t = SinkKind::Xdp)]
    sink: SinkKind,
    /// The UDP sink's CPU.
    #[arg(long, default_value_t = 0)]
    sink_cpu: usize,
    /// Steer island B's receive processing to this CPU with RPS [default:
    /// not steered: it runs on the forwarder's CPU, which sends into it].
    #[arg(long, value_name = "CPU")]
    island_b_rx_cpu: Option<usize>,
}

/// The traffic of one point.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) flows: u16,
    pub(crate) sizes: Vec<usize>,
    pub(crate) rate: Option<f64>,
    pub(crate) count: u64,
    pub(crate) duration: Duration,
    pub(crate) probe_every: u64,
    pub(crate) gen_cpu: usize,
    pub(crate) sink: SinkKind,
    pub(crate) sink_cpu: usize,
    /// Where island B's receive is steered (RPS); `None`: where frames
    /// are sent into it.
    pub(crate) island_b_rx_cpu: Option<usize>,
    /// The CPU the forwarder runs on (causeway's worker, Linux's RPS
    /// target, XDP's NAPI thread).
    pub(crate) forward_cpu: usize,
    /// Clock ticks per second of `/proc/stat`.
    pub(crate) ticks_per_second: u64,
}

impl Load {
    /// The same load at `rate` frames per second.
    fn at(&self, rate: f64) -> Self {
        Self {
            rate: Some(rate),
            ..self.clone()
        }
    }
}

/// What the scenario shares between points.
struct Setup {
    causeway: PathBuf,
    load: Load,
    /// The rate of the cost runs.
    cpu_rate: f64,
    /// `/proc/loadavg` when the scenario started: whether somebody else
    /// was busy on the machine.
    load_at_start: String,
    scratch: PathBuf,
    prefix: String,
    labs_made: u32,
    last_cpu: usize,
}

impl Setup {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let causeway = lab::causeway_binary(args.causeway.as_deref())?;
        lab::check_prefix(&args.lab_prefix)?;
        let seconds = args.seconds.unwrap_or(if args.quick { 1.0 } else { 3.0 });
        let scratch = std::env::temp_dir().join(format!("causeway-perf-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        anyhow::ensure!(
            args.cpu_rate.is_finite() && args.cpu_rate > 0.0,
            "--cpu-rate {}: give a positive rate in frames per second",
            args.cpu_rate
        );
        if let Some(cpu) = args.island_b_rx_cpu {
            anyhow::ensure!(
                cpu < cpus,
                "--island-b-rx-cpu {cpu}: this machine has CPUs 0 to {}",
                cpus - 1
            );
        }
        Ok(Self {
            causeway,
            load: Load {
                flows: args.flows.max(1),
                sizes: args.sizes.clone(),
                rate: args.rate,
                count: args.count,
                duration: Duration::from_secs_f64(seconds),
                probe_every: args.probe_every,
                gen_cpu: args.gen_cpu,
                sink: args.sink,
                sink_cpu: args.sink_cpu,
                island_b_rx_cpu: args.island_b_rx_cpu,
                forward_cpu: cpus - 1,
                ticks_per_second: cpu::ticks_per_second(),
            },
            cpu_rate: args.cpu_rate,
            load_at_start: loadavg(),
            scratch,
            prefix: args.lab_prefix.clone(),
            labs_made: 0,
            last_cpu: cpus - 1,
        })
    }

    fn next_name(&mut self) -> String {
        let name = format!("{}x{}", self.prefix, self.labs_made);
        self.labs_made += 1;
        name
    }

    /// A causeway lab enforcing the manifests in the returned directory
    /// (the endpoint alone for now: no policy, everything allowed).
    fn causeway_lab(&mut self) -> anyhow::Result<(Lab, PathBuf)> {
        let dir = self.scratch.join("manifests");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("endpoints.yaml"), rules::ENDPOINTS)?;
        let _ = std::fs::remove_file(dir.join("policy.yaml"));
        let name = self.next_name();
        let lab = Lab::up(&self.causeway, &name, true, Some(&dir))?;
        self.steer_island_b(&lab)?;
        Ok((lab, dir))
    }

    /// The XDP sink on `lab`'s island B, when `--sink xdp`.
    fn sink(&self, lab: &Lab) -> anyhow::Result<Option<XdpSink>> {
        match self.load.sink {
            SinkKind::Xdp => XdpSink::attach(lab).map(Some),
            SinkKind::Udp => Ok(None),
        }
    }

    /// Steers island B's receive as `--island-b-rx-cpu` says.
    fn steer_island_b(&self, lab: &Lab) -> anyhow::Result<()> {
        match self.load.island_b_rx_cpu {
            Some(cpu) => lab::steer_rx(&lab.ns("b"), "eth0", cpu),
            None => Ok(()),
        }
    }

    /// Where island B's receive runs, for the placement.
    fn island_b_rx(&self) -> String {
        match self.load.island_b_rx_cpu {
            Some(cpu) => format!("island B's receive softirq steered to CPU {cpu} by RPS"),
            None => format!(
                "island B's receive runs on the forwarder's CPU {}, which sends into it",
                self.last_cpu
            ),
        }
    }

    /// A lab whose appliance namespace forwards with the kernel.
    fn linux_lab(&mut self) -> anyhow::Result<Lab> {
        let name = self.next_name();
        let lab = Lab::up(&self.causeway, &name, false, None)?;
        lab.kernel_forwarding()?;
        lab::steer_rx(&lab.ns("gw"), "a0", self.last_cpu)?;
        self.steer_island_b(&lab)?;
        // It forwards, and both neighbours are known, before measuring.
        lab::in_netns(&lab.ns("a"), &["ping", "-c1", "-W2", "10.2.0.2"])
            .context("the Linux peer does not forward")?;
        Ok(lab)
    }

    fn spec(lab: &Lab) -> anyhow::Result<FrameSpec> {
        Ok(FrameSpec {
            src_mac: lab::mac(&lab.ns("a"), "eth0")?,
            dst_mac: lab::mac(&lab.ns("gw"), "a0")?,
            src_ip: Ipv4Addr::new(10, 1, 0, 2),
            dst_ip: Ipv4Addr::new(10, 2, 0, 2),
            dst_port: SINK_PORT,
            first_src_port: FIRST_SRC_PORT,
        })
    }

    /// Loads `rules` Calico rules into the causeway lab's manifests.
    fn set_policy(lab: &Lab, dir: &Path, rules: u32) -> anyhow::Result<()> {
        let file = dir.join("policy.yaml");
        if rules == 0 {
            if file.exists() {
                std::fs::remove_file(&file)?;
                lab.reload(Duration::from_secs(60))?;
            }
            return Ok(());
        }
        std::fs::write(&file, rules::calico(rules))?;
        lab.reload(Duration::from_secs(300))
    }

    fn placement(&self, linux: bool) -> BTreeMap<String, String> {
        let last = self.last_cpu;
        let mut p = BTreeMap::from([
            (
                "load".to_owned(),
                format!(
                    "/proc/loadavg at start: {}, at the end: {}; per run, the forwarder CPU's user share (for a kernel forwarder, somebody else's work) and the worker's run-queue wait (causeway preempted) say whether others shared the forwarder's CPU",
                    self.load_at_start,
                    loadavg()
                ),
            ),
            (
                "cost".to_owned(),
                format!(
                    "CPU per forwarded packet at {:.0} pps: causeway's worker busy time (polls that carried frames); Linux and XDP: system+irq+softirq of CPU {last} from /proc/stat",
                    self.cpu_rate
                ),
            ),
            (
                "generator".to_owned(),
                format!(
                    "CPU {}: AF_XDP TX (copy mode) on island A's eth0; shares the CPU with the sink and the kernel's veth work",
                    self.load.gen_cpu
                ),
            ),
            (
                "sink".to_owned(),
                match self.load.sink {
                    SinkKind::Xdp => format!(
                        "XDP on island B's eth0 (--sink xdp): counts the generator's frames in a per-CPU map and drops them (XDP_DROP), forwarded packets read from that map; no latency; {}",
                        self.island_b_rx(),
                    ),
                    SinkKind::Udp => format!(
                        "CPU {}: UDP socket in island B (--sink udp); {}; forwarded packets counted on island B's eth0",
                        self.load.sink_cpu,
                        self.island_b_rx(),
                    ),
                },
            ),
            (
                "causeway".to_owned(),
                format!(
                    "dataplane worker on CPU {last} (workers.cores); the XDP program and the copy into the UMEM run in a0's NAPI on the sender's CPU {}",
                    self.load.gen_cpu
                ),
            ),
        ]);
        if linux {
            p.insert(
                "linux".to_owned(),
                format!(
                    "ip_forward=1, nftables in the forward hook; forwarding runs in softirq on the receiving CPU, which RPS on a0 makes CPU {last}, the dataplane worker's"
                ),
            );
            p.insert(
                "linux-xdp-fwd".to_owned(),
                format!(
                    "XDP in native mode on a0 (bpf_fib_lookup, TTL - 1, bpf_redirect to b0; no rules), a0's NAPI threaded and pinned to CPU {last}, the dataplane worker's; island B's eth0 runs {} (a veth takes redirected frames only then), its NAPI scheduled from CPU {last}; {}",
                    match self.load.sink {
                        SinkKind::Xdp => "the XDP sink",
                        SinkKind::Udp => "XDP_PASS",
                    },
                    self.island_b_rx()
                ),
            );
        }
        p
    }
}

/// `/proc/loadavg`'s three averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A run's rate as rows and measures name it.
fn rate_label(rate: Option<f64>) -> String {
    rate.map_or_else(|| "max".to_owned(), |r| format!("{r:.0}pps"))
}

/// Nanoseconds, or `-` for none.
fn ns(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// How a run prints, as it lands; an appliance's run says where it lost
/// frames, on a second line.
fn row(rules: u32, who: &str, rate: &str, p: &Point) -> String {
    let c = &p.cost;
    let mut out = format!(
        "{rules:>7}  {who:<16} {rate:>10} {:>10.0} {:>10.0} {:>6.1}% {:>5} {:>8.1} {:>8.1} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>5.0}% {:>5}",
        p.tx_pps,
        p.pps,
        p.loss * 100.0,
        match (p.held_back, p.generator_bound) {
            (true, _) => "held",
            (false, true) => "gen",
            (false, false) => "-",
        },
        p.p50_us,
        p.p99_us,
        p.probes,
        ns(c.per_packet_ns()),
        ns(c.busy_ns),
        ns(c.fwd_kernel_ns),
        ns(c.fwd_cpu_ns),
        ns(c.gen_kernel_ns),
        c.fwd_user_share * 100.0,
        c.worker_wait_share
            .map_or_else(|| "-".to_owned(), |w| format!("{:.0}%", w * 100.0)),
    );
    if let Some(l) = p.lost {
        out += &format!(
            "\n{:>9}(XDP redirected {}; kernel dropped on port a: {} RX ring full, {} other (fill ring found empty {} times); worker received {}, dropped {})",
            "",
            l.redirected,
            l.rx_ring_full,
            l.rx_dropped,
            l.fill_ring_empty,
            l.worker_rx,
            l.worker_drops
        );
    }
    out
}

fn header(title: &str, load: &Load) {
    println!(
        "{title}: {:.1} s per run, frames {:?} bytes, {} flows, {} sink; CPU columns in ns per forwarded packet \
         (cost: the one to compare; busy: causeway's worker busy time; fwdK/fwdAll: kernel/all time of \
         the forwarder's CPU {}; genK: kernel time of the generator's CPU {}); usr: user share of the \
         forwarder's CPU (somebody else's, for a kernel forwarder); wait: share of the run causeway's \
         worker waited preempted; bound=gen: the forwarder kept up with all that was offered, \
         bound=held: the generator did not offer the rate asked",
        load.duration.as_secs_f64(),
        load.sizes,
        load.flows,
        match load.sink {
            SinkKind::Xdp => "XDP (count and drop on island B's eth0; no latency)",
            SinkKind::Udp => "UDP socket",
        },
        load.forward_cpu,
        load.gen_cpu,
    );
    println!(
        "{:>7}  {:<16} {:>10} {:>10} {:>10} {:>7} {:>5} {:>8} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>5}",
        "rules",
        "forwarder",
        "rate",
        "offered",
        "fwd_pps",
        "loss",
        "bound",
        "p50_us",
        "p99_us",
        "probes",
        "cost",
        "busy",
        "fwdK",
        "fwdAll",
        "genK",
        "usr",
        "wait"
    );
}

/// One run's values beside its figures: offered and forwarded rates, the
/// generator-bound flag and every CPU column.
fn run_measures(rules: u32, who: &str, rate: &str, p: &Point) -> Vec<Measure> {
    let at = |what: &str| format!("{who} rules={rules} rate={rate} {what}");
    let c = &p.cost;
    let mut m = vec![
        Measure::new(at("offered"), "pps", p.tx_pps),
        Measure::new(at("forwarded"), "pps", p.pps),
        Measure::new(
            at("generator-bound"),
            "bool",
            f64::from(u8::from(p.generator_bound)),
        ),
        Measure::new(
            at("generator held back"),
            "bool",
            f64::from(u8::from(p.held_back)),
        ),
        Measure::new(at("forwarder CPU user share"), "ratio", c.fwd_user_share),
        Measure::new(at("sink counted"), "frames", p.sink_counted as f64),
    ];
    if let Some(n) = p.forwarder_counted {
        m.push(Measure::new(at("forwarder counted"), "frames", n as f64));
    }
    if let Some(w) = c.worker_wait_share {
        m.push(Measure::new(at("worker run-queue wait share"), "ratio", w));
    }
    for (what, v) in [
        ("cost", c.per_packet_ns()),
        ("worker busy", c.busy_ns),
        ("forwarder CPU kernel", c.fwd_kernel_ns),
        ("forwarder CPU all", c.fwd_cpu_ns),
        ("generator CPU kernel", c.gen_kernel_ns),
    ] {
        if let Some(v) = v {
            m.push(Measure::new(at(what), "ns/pkt", v));
        }
    }
    m
}

/// A point of `forward`: a capacity run and a cost run.
struct Runs {
    capacity: Point,
    cost: Point,
}

impl Setup {
    /// Measures both runs of `who` at `rules` rules, prints them and keeps
    /// their measures.
    fn runs(
        &self,
        target: &Target<'_>,
        (rules, who): (u32, &str),
        bar: &mut Progress,
        measures: &mut Vec<Measure>,
    ) -> anyhow::Result<Runs> {
        bar.doing(&format!("{who} rules={rules}"));
        let capacity = measure(target, &self.load)?;
        let label = rate_label(self.load.rate);
        bar.print(&row(rules, who, &label, &capacity));
        measures.extend(run_measures(rules, who, &label, &capacity));
        bar.doing(&format!("{who} rules={rules} at {:.0} pps", self.cpu_rate));
        let load = self.load.at(self.cpu_rate);
        let cost = measure(target, &load)?;
        let label = rate_label(load.rate);
        bar.print(&row(rules, who, &label, &cost));
        measures.extend(run_measures(rules, who, &label, &cost));
        bar.step(&format!("{who} rules={rules}"));
        Ok(Runs { capacity, cost })
    }
}

/// The cost figure of causeway beside `peer`, when both forwarded.
fn cost_figure(name: String, ours: &Point, peer: &str, theirs: &Point) -> Option<Figure> {
    let (a, b) = (ours.cost.per_packet_ns()?, theirs.cost.per_packet_ns()?);
    (a > 0.0 && b > 0.0).then(|| Figure::new(name, "ns/pkt", a, peer, b, false))
}

fn summary(figures: &[Figure]) {
    println!();
    println!(
        "{:<30} {:>7} {:>12} {:<20} {:>12} {:>7}",
        "figure", "unit", "causeway", "peer", "peer_value", "ratio"
    );
    for f in figures {
        println!(
            "{:<30} {:>7} {:>12.0} {:<20} {:>12.0} {:>7.3}",
            f.name, f.unit, f.causeway, f.peer, f.peer_value, f.ratio
        );
    }
}

/// `causeway-perf forward`.
///
/// # Errors
/// A lab, the generator or the sink fails; every lab made is removed.
pub(crate) fn forward(args: &Args) -> anyhow::Result<()> {
    let mut setup = Setup::new(args)?;
    let counts: &[u32] = if args.quick {
        &[0, 1000]
    } else {
        &[0, 1000, 10_000]
    };
    header("forward", &setup.load);
    let (cw, dir) = setup.causeway_lab()?;
    let linux = setup.linux_lab()?;
    let cw_spec = Setup::spec(&cw)?;
    let linux_spec = Setup::spec(&linux)?;
    let (cw_sink, linux_sink) = (setup.sink(&cw)?, setup.sink(&linux)?);
    let cw_target = Target {
        lab: &cw,
        spec: &cw_spec,
        sink: cw_sink.as_ref(),
        xdp_peer: false,
    };
    let linux_target = Target {
        lab: &linux,
        spec: &linux_spec,
        sink: linux_sink.as_ref(),
        xdp_peer: false,
    };
    let mut figures = Vec::new();
    let mut measures = Vec::new();
    // Per rule count: causeway, nft linear, nft set; and XDP at 0 rules.
    let mut bar = Progress::new("forward", counts.len() as u64 * 3 + 1);
    for &r in counts {
        bar.doing(&format!("loading {r} rules"));
        Setup::set_policy(&cw, &dir, r)?;
        let ours = setup.runs(&cw_target, (r, "causeway"), &mut bar, &mut measures)?;
        let mut peers = Vec::new();
        for (form, ruleset) in [("linear", rules::nft_linear(r)), ("set", rules::nft_set(r))] {
            let peer = format!("linux-nft-{form}");
            linux.nft(&ruleset, &setup.scratch)?;
            let theirs = setup.runs(&linux_target, (r, &peer), &mut bar, &mut measures)?;
            peers.push((format!("rules={r} nft={form}"), peer, theirs));
        }
        if r == 0 {
            let theirs = {
                let _xdp = XdpPeer::attach(&linux, setup.last_cpu, linux_sink.is_some())?;
                let who = "linux-xdp-fwd";
                let target = Target {
                    xdp_peer: true,
                    ..linux_target
                };
                setup.runs(&target, (r, who), &mut bar, &mut measures)?
            };
            peers.push(("rules=0 xdp".to_owned(), "linux-xdp-fwd".to_owned(), theirs));
        }
        for (point, peer, theirs) in peers {
            figures.push(Figure::new(
                format!("pps {point}"),
                "pps",
                ours.capacity.pps,
                &peer,
                theirs.capacity.pps,
                true,
            ));
            figures.extend(cost_figure(
                format!("cpu {point}"),
                &ours.cost,
                &peer,
                &theirs.cost,
            ));
        }
    }
    summary(&figures);
    let report = Report {
        scenario: "forward".to_owned(),
        machine: Machine::detect(),
        placement: setup.placement(true),
        figures,
        measures,
        goals: Vec::new(),
    };
    drop((cw_sink, linux_sink));
    drop((cw, linux));
    let _ = std::fs::remove_dir_all(&setup.scratch);
    report.write(&args.json)
}

/// `causeway-perf policy-scale`.
///
/// # Errors
/// A lab, the generator or the sink fails; every lab made is removed.
pub(crate) fn policy_scale(args: &Args) -> anyhow::Result<()> {
    let mut setup = Setup::new(args)?;
    let counts: &[u32] = if args.quick {
        &[0, 1000]
    } else {
        &[0, 1000, 10_000, 100_000]
    };
    header("policy-scale", &setup.load);
    let (cw, dir) = setup.causeway_lab()?;
    let spec = Setup::spec(&cw)?;
    let sink = setup.sink(&cw)?;
    let target = Target {
        lab: &cw,
        spec: &spec,
        sink: sink.as_ref(),
        xdp_peer: false,
    };
    let mut base = None;
    let mut figures = Vec::new();
    let mut bar = Progress::new("policy-scale", counts.len() as u64);
    for &r in counts {
        bar.doing(&format!("loading {r} rules"));
        Setup::set_policy(&cw, &dir, r)?;
        bar.doing(&format!("causeway rules={r}"));
        let p = measure(&target, &setup.load)?;
        bar.print(&row(r, "causeway", &rate_label(setup.load.rate), &p));
        bar.step(&format!("causeway rules={r}"));
        let base = *base.get_or_insert(p.pps);
        figures.push(Figure::new(
            format!("pps rules={r}"),
            "pps",
            p.pps,
            "causeway-0-rules",
            base,
            true,
        ));
    }
    summary(&figures);
    let report = Report {
        scenario: "policy-scale".to_owned(),
        machine: Machine::detect(),
        placement: setup.placement(false),
        figures,
        measures: Vec::new(),
        goals: Vec::new(),
    };
    drop(sink);
    drop(cw);
    let _ = std::fs::remove_dir_all(&setup.scratch);
    report.write(&args.json)
}
