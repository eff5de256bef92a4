//! The kernel side of the dataplane: the XDP program, AF_XDP sockets,
//! netlink, and the pinned worker threads that drive the pipeline.
//!
//! [`Dataplane::start`] assembles it, in this order (each step fails closed:
//! until the last one nothing is forwarded):
//!
//! 1. read the ports' interfaces, MACs and addresses over netlink;
//! 2. build the route table: connected routes, then configured routes
//!    ([`route::build`], which the control API also runs at apply);
//! 3. start the neighbour manager (kernel neighbour table → snapshots);
//! 4. load the XDP program, mark the appliance's own addresses and the
//!    failsafe ports, attach it to every port (packets are dropped until a
//!    socket takes its queue; failsafe ports of the appliance pass);
//! 5. create the TUN device the workers hand the appliance's own allowed
//!    packets to ([`tun`], see [`crate::host`]);
//! 6. per worker: a UMEM, one AF_XDP socket per (port, queue) it owns,
//!    registered in the XSKMAP; then the worker thread, pinned to its core.
//!
//! Minimum kernel: 5.16 (managed neighbours); AF_XDP need_wakeup needs 5.4.

mod busy;
pub mod neigh;
pub mod netlink;
pub mod program;
pub mod publish;
pub mod socket;
pub mod tun;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tracing::{info, warn};

pub use program::{XdpCounters, XdpMode, XdpProgram};

pub use self::{busy::WorkerStats, socket::XskStats};
use self::{
    busy::{BusyClock, SharedBusy},
    neigh::{NeighCounters, NeighLimits, NeighbourManager, NeighbourStats, SharedNeighbours},
    netlink::Netlink,
    publish::Published,
    socket::{RING_SIZE, XskMemory, XskPort},
};
use crate::{
    pipeline::{Pipeline, PortCounters, PortInfo, SharedCounters, Tables},
    policy::{
        conntrack::ConntrackStats,
        program::{PolicyProgram, RuleId, RuleMeta, Unclaimed},
    },
    port::Worker,
    route::{self, Connected, RouteTable},
    topology::{IpPrefix, PortConfig, PortId, RouteConfig},
    wire::EthernetAddress,
};

/// How workers run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// One worker per listed CPU, pinned to it.
    #[serde(default = "default_cores")]
    pub cores: Vec<usize>,
    /// Frames taken from each RX ring per turn.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Never sleep: spin on the rings even when idle.
    #[serde(default)]
    pub busy_poll: bool,
    /// How long a worker spins on empty rings before it sleeps in poll(2).
    #[serde(default = "default_idle_us")]
    pub idle_before_sleep_us: u64,
    /// How long forwarded frames may wait on a TX ring for more before
    /// the kernel is woken to send them (at most 32 wait): one copy-mode
    /// `sendto(2)` then carries several frames at rates where a turn
    /// receives one or two. Adds up to this much latency; 0 sends in the
    /// turn that received.
    #[serde(default = "default_tx_hold_us")]
    pub tx_hold_us: u64,
}

fn default_cores() -> Vec<usize> {
    // The last CPU: CPU 0 keeps the kernel's receive work and everything else
    // (see docs/ARCHITECTURE.md, "Core layout").
    let n = thread::available_parallelism().map_or(1, |n| n.get());
    vec![n - 1]
}

fn default_batch() -> usize {
    64
}

fn default_idle_us() -> u64 {
    200
}

fn default_tx_hold_us() -> u64 {
    0
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            cores: default_cores(),
            batch: default_batch(),
            busy_poll: false,
            idle_before_sleep_us: default_idle_us(),
            tx_hold_us: default_tx_hold_us(),
        }
    }
}

/// Everything the dataplane needs to start.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// The ports, in [`PortId`] order.
    pub ports: Vec<PortConfig>,
    /// Configured routes.
    pub routes: Vec<RouteConfig>,
    /// The workers.
    pub workers: WorkerConfig,
    /// How the XDP program attaches.
    pub xdp_mode: XdpMode,
    /// The policy to enforce from the first packet.
    pub policy: Arc<PolicyProgram>,
    /// The XDP prefilter: sources dropped in the kernel, with their rule.
    pub prefilter: Vec<(IpPrefix, RuleId)>,
    /// Flows each worker tracks at most.
    pub conntrack_capacity: usize,
    /// Bounds on the neighbour resolutions the appliance asks for.
    pub neighbours: NeighLimits,
    /// What happens to traffic between addresses no endpoint claims.
    pub unclaimed: Unclaimed,
    /// Inbound ports of the appliance's own addresses that policy never
    /// closes (passed by the XDP program).
    pub failsafe: Vec<crate::host::FailsafePort>,
    /// Whether what the host endpoint's policy allows reaches the
    /// appliance's kernel, through a TUN device (set when a host endpoint
    /// is configured). Without it, nothing judged by policy reaches the
    /// appliance (failsafe ports and its own connections still do), and
    /// no TUN device is made: a service that has no host endpoint needs
    /// no access to `/dev/net/tun`.
    pub local_stack: bool,
}

/// The policy the workers enforce; they adopt a new one at their next turn.
pub type SharedPolicy = Published<PolicyProgram>;

/// Per-rule packet and byte counters, by rule name, summed over workers and
/// policy generations.
pub type RuleCounters = BTreeMap<String, (u64, u64)>;

/// A port as the dataplane found it in the kernel.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PortState {
    /// Configured name.
    pub name: String,
    /// Interface name.
    pub interface: String,
    /// Interface index.
    pub ifindex: u32,
    /// The interface's MAC.
    pub mac: String,
    /// The interface's addresses, with prefix length.
    pub addresses: Vec<String>,
    /// Whether the XDP program runs in native (driver) mode.
    pub native_xdp: bool,
}

/// A snapshot of the dataplane's counters (all zero and empty for an
/// appliance that runs only the terminator).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DataplaneStats {
    /// Per port, summed over workers.
    pub ports: Vec<(PortState, PortCounters)>,
    /// The XDP program's counters.
    pub xdp: XdpCounters,
    /// Resolved neighbours.
    pub neighbours: usize,
    /// The resolutions asked of the kernel, and those refused by the
    /// bounds (a scan of a connected subnet).
    pub neighbour_requests: NeighbourStats,
    /// The routes in force.
    pub routes: Vec<String>,
    /// The policy generation published to the workers.
    pub policy_generation: u64,
    /// The oldest generation a worker still enforces.
    pub enforced_generation: u64,
    /// Packets and bytes judged per rule (`tier/policy/direction/index`).
    pub rules: RuleCounters,
    /// Packets dropped by the XDP prefilter, per rule.
    pub prefilter: RuleCounters,
    /// Tracked flows, summed over workers.
    pub flows: u64,
    /// The flow tables' counters (half-open flows, evictions by kind,
    /// expiries, invalid TCP), summed over workers.
    pub conntrack: ConntrackStats,
    /// The kernel's counters of each port's AF_XDP sockets, summed over
    /// queues, in the order of `ports`: frames lost between the XDP
    /// redirect and the worker (RX ring full, fill ring empty).
    pub sockets: Vec<XskStats>,
    /// Per worker, the time of its polls that carried frames: what the
    /// packets cost it, apart from the time it spins on empty rings.
    pub workers: Vec<WorkerStats>,
}

/// The running dataplane. Dropping it (or [`Self::stop`]) stops the workers,
/// closes the sockets and detaches the XDP program.
#[derive(Debug)]
pub struct Dataplane {
    ports: Vec<PortState>,
    routes: Arc<RouteTable>,
    counters: Vec<Arc<SharedCounters>>,
    workers: Vec<thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    neighbours: Option<NeighbourManager>,
    neigh: Arc<SharedNeighbours>,
    neigh_counters: Arc<NeighCounters>,
    program: Option<Arc<Mutex<XdpProgram>>>,
    policy: Arc<SharedPolicy>,
    adopted: Arc<Vec<AtomicU64>>,
    /// Each worker's busy time, published with its counters.
    busy: Vec<Arc<SharedBusy>>,
    /// Each worker's flow table counters, published every 100 ms.
    conntrack: Arc<Vec<Mutex<ConntrackStats>>>,
    rule_counters: Arc<Mutex<RuleCounters>>,
    prefilter_names: Mutex<Vec<String>>,
    /// Every AF_XDP socket's port index and a descriptor of it, to read its
    /// kernel counters.
    sockets: Vec<(usize, std::os::fd::OwnedFd)>,
    cores: Vec<usize>,
    /// One eventfd per worker: a publish wakes idle workers at once, so a
    /// new policy is enforced without waiting out their poll(2) timeout.
    wakers: Vec<Arc<std::os::fd::OwnedFd>>,
}

impl Dataplane {
    /// Starts the dataplane (see the module documentation for the steps).
    ///
    /// # Errors
    /// A port's interface is missing, a route is inconsistent, the XDP
    /// program or a socket cannot be set up; the error names which.
    pub fn start(config: &DataplaneConfig) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        if config.ports.is_empty() {
            bail!("no ports configured");
        }
        // The XDP program's port_slots map holds 64 ports.
        if config.ports.len() > 64 {
            bail!("{} ports configured; at most 64", config.ports.len());
        }
        if config.workers.cores.is_empty() {
            bail!("workers.cores is empty: list at least one CPU");
        }
        // Worker w owns queue w of every port, so that every worker can send
        // on every port (see docs/ARCHITECTURE.md, "Core layout").
        let n_workers = config.workers.cores.len() as u32;
        if let Some(p) = config.ports.iter().find(|p| p.queues != n_workers) {
            bail!(
                "port {}: {} queue(s) but {n_workers} worker(s); every port needs one queue per worker \
                 (set queues: {n_workers}, or list {} core(s) in workers.cores)",
                p.name,
                p.queues,
                p.queues
            );
        }
        // 1. Interfaces and addresses.
        let mut nl = Netlink::open(false).context("opening a netlink socket")?;
        let links = nl.links().context("listing interfaces")?;
        let addrs = nl.addrs().context("listing addresses")?;
        let mut ports = Vec::new();
        let mut infos = Vec::new();
        let mut connected = Vec::new();
        let mut local = Vec::new();
        for (i, p) in config.ports.iter().enumerate() {
            let id = PortId(i as u16);
            let link = port_link(&links, p)?;
            let mac = link.mac.with_context(|| {
                format!(
                    "port {}: {} has no MAC (not Ethernet?)",
                    p.name, p.interface
                )
            })?;
            let mine: Vec<_> = addrs.iter().filter(|a| a.index == link.index).collect();
            let mut info = PortInfo {
                mac,
                ipv4: None,
                ipv6: None,
                rp_filter: p.rp_filter,
            };
            for a in &mine {
                local.push(a.addr);
                match a.addr {
                    IpAddr::V4(v4) => {
                        info.ipv4.get_or_insert(v4);
                    }
                    IpAddr::V6(v6) if v6.is_unicast_link_local() => continue,
                    IpAddr::V6(v6) => {
                        info.ipv6.get_or_insert(v6);
                    }
                }
            }
            connected.extend(connected_subnets(id, &mine));
            infos.push(info);
            ports.push(PortState {
                name: p.name.clone(),
                interface: p.interface.clone(),
                ifindex: link.index,
                mac: mac.to_string(),
                addresses: mine
                    .iter()
                    .map(|a| format!("{}/{}", a.addr, a.prefix_len))
                    .collect(),
                native_xdp: false,
            });
        }
        // 2. Connected routes, then configured routes.
        let routes = Arc::new(route::build(&config.ports, &connected, &config.routes)?);

        // 3. Neighbours.
        let neighbours = NeighbourManager::start(
            ports
                .iter()
                .enumerate()
                .map(|(i, p)| (PortId(i as u16), p.ifindex))
                .collect(),
            config.neighbours,
            stop.clone(),
        )?;
        let neigh = neighbours.shared.clone();
        let neigh_counters = neighbours.counters.clone();
        // Resolve configured next hops before the first packet needs them.
        for r in routes.routes() {
            if let Some(via) = r.1.via {
                let _ = neighbours.requests.try_send((r.1.port, via));
            }
        }

        // 4. The XDP program.
        let mut program = XdpProgram::load()?;
        program.add_own_addresses(&local)?;
        program.set_failsafe(&config.failsafe)?;
        let prefilter_names = prefilter_names(&config.policy, &config.prefilter);
        program.set_prefilter(&config.prefilter)?;
        let mut slots = Vec::new();
        for (p, state) in config.ports.iter().zip(&mut ports) {
            let (first, native) = program.attach(
                &mut nl,
                &p.interface,
                state.ifindex,
                p.queues,
                config.xdp_mode,
            )?;
            state.native_xdp = native;
            slots.push(first);
        }

        // 5. The way into the appliance's own kernel.
        let tun = if config.local_stack {
            let tun = Arc::new(tun::Tun::create(tun::TUN_NAME)?);
            info!(
                device = tun.name(),
                "host endpoint: allowed packets to the appliance go through it"
            );
            Some(tun)
        } else {
            None
        };

        // 6. Workers.
        let tables = Tables {
            ports: infos,
            routes: routes.clone(),
            local,
        };
        let n_workers = config.workers.cores.len();
        let policy = Arc::new(SharedPolicy::new(
            config.policy.clone(),
            config.policy.generation,
        ));
        let adopted: Arc<Vec<AtomicU64>> = Arc::new(
            (0..n_workers)
                .map(|_| AtomicU64::new(config.policy.generation))
                .collect(),
        );
        let conntrack: Arc<Vec<Mutex<ConntrackStats>>> = Arc::new(
            (0..n_workers)
                .map(|_| Mutex::new(ConntrackStats::default()))
                .collect(),
        );
        let rule_counters = Arc::new(Mutex::new(RuleCounters::new()));
        let mut counters = Vec::new();
        let mut busy = Vec::new();
        let mut workers = Vec::new();
        let mut sockets = Vec::new();
        let wakers = (0..n_workers)
            .map(|_| eventfd().map(Arc::new))
            .collect::<std::io::Result<Vec<_>>>()
            .context("creating the workers' eventfds")?;
        for (w, &core) in config.workers.cores.iter().enumerate() {
            let mut owned = Vec::new(); // (port, queue)
            for (i, p) in config.ports.iter().enumerate() {
                owned.extend(
                    (0..p.queues)
                        .filter(|q| *q as usize % n_workers == w)
                        .map(|q| (i, q)),
                );
            }
            // Each socket can hold a full fill ring and a full TX ring.
            let frames = (owned.len() as u32) * 2 * RING_SIZE + 4 * config.workers.batch as u32;
            let (mem, free) = XskMemory::new(frames)?;
            // One port per configured port; queues of one port beyond the
            // first are separate ports of this worker sharing the same id.
            let mut xsk_ports = Vec::new();
            for &(i, q) in &owned {
                let port = XskPort::bind(&mem, &config.ports[i].interface, q)?;
                program.register_socket(slots[i] + q, port.fd())?;
                sockets.push((
                    i,
                    port.stats_fd()
                        .context("keeping a descriptor of an AF_XDP socket")?,
                ));
                xsk_ports.push((PortId(i as u16), port));
            }
            let shared = Arc::new(SharedCounters::new(config.ports.len()));
            counters.push(shared.clone());
            let worker_busy = Arc::new(SharedBusy::default());
            busy.push(worker_busy.clone());
            let mut pipeline = Pipeline::with_policy(
                tables.clone(),
                neigh.load(),
                config.policy.clone(),
                config.conntrack_capacity,
            );
            pipeline.set_unclaimed(config.unclaimed);
            let run = WorkerRun {
                index: w,
                policy: policy.clone(),
                adopted: adopted.clone(),
                conntrack: conntrack.clone(),
                rule_counters: rule_counters.clone(),
                core,
                busy_poll: config.workers.busy_poll,
                idle: Duration::from_micros(config.workers.idle_before_sleep_us),
                tx_hold: Duration::from_micros(config.workers.tx_hold_us),
                stop: stop.clone(),
                neigh: neigh.clone(),
                requests: neighbours.requests.clone(),
                counters: shared,
                busy: worker_busy,
                wake: wakers[w].clone(),
                local: tun.clone(),
            };
            let batch = config.workers.batch;
            let n_ports = config.ports.len();
            workers.push(
                thread::Builder::new()
                    .name(format!("cw-worker-{w}"))
                    .spawn(move || run.run(mem, xsk_ports, free, pipeline, batch, n_ports))
                    .context("spawning a worker thread")?,
            );
            info!(
                worker = w,
                core,
                sockets = owned.len(),
                frames,
                "worker started"
            );
        }
        Ok(Self {
            ports,
            routes,
            counters,
            workers,
            stop,
            neighbours: Some(neighbours),
            neigh,
            neigh_counters,
            program: Some(Arc::new(Mutex::new(program))),
            policy,
            adopted,
            busy,
            conntrack,
            rule_counters,
            prefilter_names: Mutex::new(prefilter_names),
            sockets,
            cores: config.workers.cores.clone(),
            wakers,
        })
    }

    /// Publishes a new policy (and XDP prefilter); workers adopt it at their
    /// next turn. Returns its generation.
    ///
    /// # Errors
    /// The prefilter map could not be updated (the workers' policy is then
    /// left as it was).
    pub fn set_policy(
        &self,
        policy: Arc<PolicyProgram>,
        prefilter: &[(IpPrefix, RuleId)],
    ) -> Result<u64> {
        if let Some(p) = &self.program {
            p.lock().expect("not poisoned").set_prefilter(prefilter)?;
            *self.prefilter_names.lock().expect("not poisoned") =
                prefilter_names(&policy, prefilter);
        }
        let generation = policy.generation;
        self.policy.publish(policy, generation);
        for w in &self.wakers {
            wake(w);
        }
        Ok(generation)
    }

    /// Each worker's CPU and the policy generation it enforces.
    pub fn worker_generations(&self) -> Vec<(usize, u64)> {
        self.cores
            .iter()
            .zip(self.adopted.iter())
            .map(|(c, g)| (*c, g.load(Ordering::Acquire)))
            .collect()
    }

    /// The oldest policy generation any worker enforces.
    pub fn enforced_generation(&self) -> u64 {
        self.adopted
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// The ports as found at start.
    pub fn ports(&self) -> &[PortState] {
        &self.ports
    }

    /// Each port's AF_XDP socket counters, summed over its queues; a
    /// socket that cannot be read counts nothing (and is logged).
    fn socket_stats(&self) -> Vec<XskStats> {
        let mut out = vec![XskStats::default(); self.ports.len()];
        for (port, fd) in &self.sockets {
            match XskStats::read(std::os::fd::AsFd::as_fd(fd)) {
                Ok(s) => out[*port].add(&s),
                Err(e) => warn!(port = *port, error = %e, "reading an AF_XDP socket's statistics"),
            }
        }
        out
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> DataplaneStats {
        let mut sums = vec![PortCounters::default(); self.ports.len()];
        for c in &self.counters {
            for (s, v) in sums.iter_mut().zip(c.read()) {
                s.add(&v);
            }
        }
        let xdp = self
            .program
            .as_ref()
            .and_then(|p| p.lock().ok().and_then(|p| p.counters().ok()))
            .unwrap_or_default();
        let prefilter = match &self.program {
            Some(p) => {
                let counts = p
                    .lock()
                    .ok()
                    .and_then(|p| p.prefilter_counters().ok())
                    .unwrap_or_default();
                let names = self.prefilter_names.lock().expect("not poisoned");
                let mut out = RuleCounters::new();
                for (name, c) in names.iter().zip(counts) {
                    let e = out.entry(name.clone()).or_default();
                    e.0 += c;
                }
                out
            }
            None => RuleCounters::new(),
        };
        let mut conntrack = ConntrackStats::default();
        for c in self.conntrack.iter() {
            conntrack.add(&c.lock().expect("not poisoned"));
        }
        DataplaneStats {
            policy_generation: self.policy.generation(),
            enforced_generation: self.enforced_generation(),
            rules: self.rule_counters.lock().expect("not poisoned").clone(),
            prefilter,
            flows: conntrack.entries as u64,
            conntrack,
            sockets: self.socket_stats(),
            workers: self
                .busy
                .iter()
                .zip(&self.cores)
                .map(|(b, &core)| b.read(core))
                .collect(),
            ports: self.ports.iter().cloned().zip(sums).collect(),
            xdp,
            neighbours: self.neigh.load().len(),
            neighbour_requests: self.neigh_counters.read(),
            routes: self
                .routes
                .routes()
                .iter()
                .map(|(p, r)| match r.via {
                    Some(via) => format!("{p} via {via} port {}", self.ports[r.port.index()].name),
                    None => format!("{p} port {}", self.ports[r.port.index()].name),
                })
                .collect(),
        }
    }

    /// Stops the workers, closes the sockets and detaches the XDP program.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.neighbours.take();
        if self.program.take().is_some() {
            info!("XDP program detached");
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The appliance's own addresses on `ports` (in this network namespace),
/// link-local ones included: what the host endpoint stands for. The
/// dataplane reads the same ones when it starts.
///
/// # Errors
/// Netlink cannot be read, or a port's interface is missing.
pub fn own_addresses(ports: &[PortConfig]) -> Result<Vec<IpAddr>> {
    let mut nl = Netlink::open(false).context("opening a netlink socket")?;
    let links = nl.links().context("listing interfaces")?;
    let addrs = nl.addrs().context("listing addresses")?;
    let mut out = Vec::new();
    for p in ports {
        let link = port_link(&links, p)?;
        out.extend(
            addrs
                .iter()
                .filter(|a| a.index == link.index)
                .map(|a| a.addr),
        );
    }
    Ok(out)
}

/// The connected subnets of `ports`' interfaces as the kernel has them now:
/// what [`route::build`] checks next hops against. The control API calls
/// it when routes are applied; [`Dataplane::start`] reads the same.
///
/// # Errors
/// Netlink cannot be read, or a port's interface is missing.
pub fn connected(ports: &[PortConfig]) -> Result<Vec<Connected>> {
    let mut nl = Netlink::open(false).context("opening a netlink socket")?;
    let links = nl.links().context("listing interfaces")?;
    let addrs = nl.addrs().context("listing addresses")?;
    let mut out = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let link = port_link(&links, p)?;
        let mine: Vec<_> = addrs.iter().filter(|a| a.index == link.index).collect();
        out.extend(connected_subnets(PortId(i as u16), &mine));
    }
    Ok(out)
}

/// The subnets of a port's addresses; IPv6 link-local ones have none (the
/// dataplane does not route them).
fn connected_subnets<'a>(
    port: PortId,
    addrs: &'a [&netlink::Addr],
) -> impl Iterator<Item = Connected> + 'a {
    addrs
        .iter()
        .filter(|a| !matches!(a.addr, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .map(move |a| Connected {
            port,
            prefix: IpPrefix::containing(a.addr, a.prefix_len),
        })
}

/// The interface of port `p` among `links`.
fn port_link<'a>(links: &'a [netlink::Link], p: &PortConfig) -> Result<&'a netlink::Link> {
    links
        .iter()
        .find(|l| l.name == p.interface)
        .with_context(|| {
            format!(
                "port {}: interface {} not found in this network namespace",
                p.name, p.interface
            )
        })
}

/// The rule names of prefilter slots (slot i is entry i).
fn prefilter_names(policy: &PolicyProgram, prefilter: &[(IpPrefix, RuleId)]) -> Vec<String> {
    prefilter
        .iter()
        .map(|(_, id)| {
            policy
                .rules
                .get(*id as usize)
                .map_or_else(|| format!("rule-{id}"), RuleMeta::name)
        })
        .collect()
}

/// Adds a worker's per-rule deltas (ids of `policy`) into the totals.
fn add_rule_deltas(totals: &Mutex<RuleCounters>, policy: &PolicyProgram, deltas: &[(u64, u64)]) {
    if deltas.iter().all(|d| d.0 == 0) {
        return;
    }
    let mut t = totals.lock().expect("not poisoned");
    for (meta, d) in policy.rules.iter().zip(deltas).filter(|(_, d)| d.0 > 0) {
        let e = t.entry(meta.name()).or_default();
        e.0 += d.0;
        e.1 += d.1;
    }
}

/// What a worker thread needs besides its ports.
struct WorkerRun {
    index: usize,
    policy: Arc<SharedPolicy>,
    adopted: Arc<Vec<AtomicU64>>,
    conntrack: Arc<Vec<Mutex<ConntrackStats>>>,
    rule_counters: Arc<Mutex<RuleCounters>>,
    core: usize,
    busy_poll: bool,
    idle: Duration,
    tx_hold: Duration,
    stop: Arc<AtomicBool>,
    neigh: Arc<SharedNeighbours>,
    requests: crossbeam_channel::Sender<(PortId, IpAddr)>,
    counters: Arc<SharedCounters>,
    /// Where it publishes its busy time.
    busy: Arc<SharedBusy>,
    /// Readable when the control side published something.
    wake: Arc<std::os::fd::OwnedFd>,
    /// Where the appliance's own allowed packets go (none: dropped).
    local: Option<Arc<tun::Tun>>,
}

impl WorkerRun {
    fn run(
        self,
        mem: XskMemory,
        ports: Vec<(PortId, XskPort)>,
        free: Vec<xsk_rs::FrameDesc>,
        pipeline: Pipeline,
        batch: usize,
        n_ports: usize,
    ) {
        if let Err(e) = pin_to_core(self.core) {
            warn!(core = self.core, error = %e, "could not pin the worker to its core");
        }
        // The worker owns one socket per port (checked at start), in port
        // order, so socket index and PortId agree.
        let fds: Vec<_> = ports.iter().map(|(_, p)| p.fd()).collect();
        debug_assert!(
            ports.iter().enumerate().all(|(i, (id, _))| id.index() == i) && ports.len() == n_ports
        );
        let mut worker = Worker::new(
            mem,
            ports.into_iter().map(|(_, p)| p).collect(),
            free,
            pipeline,
            batch,
        );
        if let Some(local) = &self.local {
            worker.set_local_stack(Box::new(local.clone()));
        }
        worker.set_tx_hold(self.tx_hold);
        let mut generation = self.neigh.generation();
        let mut policy_generation = self.policy.generation();
        let mut last_traffic = Instant::now();
        let mut last_publish = Instant::now();
        let mut busy = BusyClock::default();
        let wake_fd = std::os::fd::AsRawFd::as_raw_fd(&*self.wake);
        let mut pfds: Vec<libc::pollfd> = fds
            .iter()
            .chain(std::iter::once(&wake_fd))
            .map(|fd| libc::pollfd {
                fd: *fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        while !self.stop.load(Ordering::Relaxed) {
            let g = self.neigh.generation();
            if g != generation {
                generation = g;
                worker.set_neighbours(self.neigh.load());
            }
            let pg = self.policy.generation();
            if pg != policy_generation {
                policy_generation = pg;
                let (old, deltas) = worker.pipeline.set_policy(self.policy.load());
                add_rule_deltas(&self.rule_counters, &old, &deltas);
                self.adopted[self.index].store(pg, Ordering::Release);
            }
            let now = Instant::now();
            if now.duration_since(last_publish) >= Duration::from_millis(100) {
                last_publish = now;
                let (policy, deltas) = worker.pipeline.filter_mut().take_rule_deltas();
                add_rule_deltas(&self.rule_counters, &policy, &deltas);
                *self.conntrack[self.index].lock().expect("not poisoned") =
                    worker.pipeline.filter().conntrack().stats();
            }
            // Expiry runs on the clock, busy or idle.
            worker.pipeline.filter_mut().expire_due(now);
            let n = worker.poll(now);
            for req in worker.pipeline.take_unresolved() {
                let _ = self.requests.try_send(req);
            }
            let flushed = worker.flushes() > 0;
            if n > 0 || flushed || worker.held_frames() > 0 || worker.unflushed_frames() > 0 {
                last_traffic = now;
                self.counters.publish(worker.pipeline.counters());
                if n > 0 || flushed {
                    // One clock read per turn that carried frames or sent
                    // held ones: from the top of this turn (`now`) to
                    // here, transmit and publishing included.
                    busy.add(now.elapsed());
                    self.busy.publish(&busy);
                }
                continue;
            }
            if self.busy_poll || now.duration_since(last_traffic) < self.idle {
                std::hint::spin_loop();
                continue;
            }
            self.counters.publish(worker.pipeline.counters());
            // Idle: sleep until a socket has frames (or 10 ms pass, to see `stop`).
            // SAFETY: `pfds` is a valid array of pollfd of its length.
            unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 10) };
            if pfds.last().is_some_and(|p| p.revents & libc::POLLIN != 0) {
                drain_wake(&self.wake);
            }
        }
        self.counters.publish(worker.pipeline.counters());
        let (policy, deltas) = worker.pipeline.filter_mut().take_rule_deltas();
        add_rule_deltas(&self.rule_counters, &policy, &deltas);
    }
}

/// A non-blocking eventfd.
fn eventfd() -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: eventfd(2) takes no pointers; a non-negative result is a new
    // descriptor that we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// Makes an eventfd readable.
fn wake(fd: &std::os::fd::OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to a descriptor we own; a full
    // counter (EAGAIN) already wakes the reader.
    unsafe {
        libc::write(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            (&raw const one).cast(),
            size_of::<u64>(),
        )
    };
}

/// Resets an eventfd.
fn drain_wake(fd: &std::os::fd::OwnedFd) {
    let mut n: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64; non-blocking.
    unsafe {
        libc::read(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            (&raw mut n).cast(),
            size_of::<u64>(),
        )
    };
}

/// Pins the calling thread to `core`.
fn pin_to_core(core: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; the set is
    // passed with its own size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The MAC type of the wire module, re-exported for configuration code.
pub type Mac = EthernetAddress;
