//! The neighbour manager: mirrors the kernel's neighbour table for the
//! dataplane's ports into immutable [`NeighTable`] snapshots, and asks the
//! kernel to resolve next hops the workers could not find.
//!
//! The dataplane does not speak ARP or NDP: the kernel does, and a next hop
//! the workers miss is added as a *managed* neighbour, which the kernel
//! resolves and keeps reachable (Linux 5.16). Changes arrive as netlink
//! events; a lost event (ENOBUFS) triggers a full re-dump.
//!
//! Resolutions are bounded, because the destinations that miss are chosen
//! by whoever sends packets: a scan of a connected /16 would otherwise
//! leave 65 534 managed entries in the kernel, which never collects them.
//! At most [`NeighLimits::max_pending`] resolutions are outstanding at
//! once, new ones start at most [`NeighLimits::rate`] a second (burst as
//! many), and an entry still unresolved after
//! [`NeighLimits::resolve_timeout`] is deleted from the kernel. Requests
//! over either bound are dropped and counted ([`NeighbourStats`]); their
//! packets are dropped as `no_neighbour` when the hold expires, as Linux
//! drops what waits on an unresolved neighbour when its `unres_qlen`
//! queue overflows.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use tracing::{debug, warn};

use super::{
    netlink::{Neigh, Netlink},
    publish::Published,
};
use crate::{route::NeighTable, topology::PortId};

/// The published neighbour table.
pub type SharedNeighbours = Published<NeighTable>;

/// Bounds on the resolutions the appliance asks of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighLimits {
    /// Resolutions outstanding at once (asked, not yet resolved).
    pub max_pending: usize,
    /// New resolutions per second (a token bucket of as many tokens).
    pub rate: u32,
    /// How long a resolution may stay unresolved before its entry is
    /// deleted from the kernel (Linux gives up after 3 probes a second
    /// apart: `mcast_solicit` × `retrans_time_ms`).
    pub resolve_timeout: Duration,
}

impl Default for NeighLimits {
    fn default() -> Self {
        Self {
            max_pending: 256,
            rate: 100,
            resolve_timeout: Duration::from_secs(3),
        }
    }
}

/// What the neighbour manager did with the resolutions the workers asked
/// for.
#[derive(Debug, Default)]
pub struct NeighCounters {
    asked: AtomicU64,
    over_pending: AtomicU64,
    over_rate: AtomicU64,
    gave_up: AtomicU64,
    pending: AtomicU64,
}

/// A snapshot of [`NeighCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NeighbourStats {
    /// Resolutions asked of the kernel (managed entries added).
    pub asked: u64,
    /// Requests dropped: [`NeighLimits::max_pending`] were outstanding.
    pub dropped_pending: u64,
    /// Requests dropped: over [`NeighLimits::rate`].
    pub dropped_rate: u64,
    /// Entries deleted because they did not resolve in time.
    pub unresolved_deleted: u64,
    /// Resolutions outstanding now.
    pub pending: u64,
}

impl NeighCounters {
    /// A snapshot.
    pub fn read(&self) -> NeighbourStats {
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NeighbourStats {
            asked: v(&self.asked),
            dropped_pending: v(&self.over_pending),
            dropped_rate: v(&self.over_rate),
            unresolved_deleted: v(&self.gave_up),
            pending: v(&self.pending),
        }
    }
}

/// Handle to the neighbour manager thread.
#[derive(Debug)]
pub struct NeighbourManager {
    /// The published table.
    pub shared: Arc<SharedNeighbours>,
    /// What became of the requests.
    pub counters: Arc<NeighCounters>,
    /// Where workers send next hops they could not resolve.
    pub requests: Sender<(PortId, IpAddr)>,
    /// The flag its thread stops on (the dataplane's).
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl NeighbourManager {
    /// Starts the manager for `ports` (port id → interface index); it stops
    /// when `stop` is set.
    ///
    /// # Errors
    /// The netlink socket or the first dump failed.
    pub fn start(
        ports: Vec<(PortId, u32)>,
        limits: NeighLimits,
        stop: Arc<AtomicBool>,
    ) -> Result<Self> {
        let mut events = Netlink::open(true).context("netlink socket for neighbour events")?;
        let mut control = Netlink::open(false).context("netlink socket")?;
        let shared = Arc::new(SharedNeighbours::default());
        let counters = Arc::new(NeighCounters::default());
        let mut state = State {
            ports,
            table: NeighTable::default(),
            pending: HashMap::new(),
            limits,
            tokens: limits.rate,
            refilled: Instant::now(),
            counters: counters.clone(),
        };
        state.redump(&mut control)?;
        shared.publish(Arc::new(state.table.clone()), 1);
        let (requests, rx) = crossbeam_channel::bounded(4096);
        let sh = shared.clone();
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name("cw-neigh".into())
            .spawn(move || state.run(&mut events, &mut control, &sh, &rx, &flag))
            .context("spawning the neighbour thread")?;
        Ok(Self {
            shared,
            counters,
            requests,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for NeighbourManager {
    fn drop(&mut self) {
        // Dropped by a start that failed half-way, the flag is not set yet:
        // without this the join would wait for ever.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    ports: Vec<(PortId, u32)>,
    table: NeighTable,
    /// Resolutions asked for and not yet resolved, with when they were
    /// asked (at most `limits.max_pending`).
    pending: HashMap<(PortId, IpAddr), Instant>,
    limits: NeighLimits,
    /// The rate limit's tokens, and when they were last refilled.
    tokens: u32,
    refilled: Instant,
    counters: Arc<NeighCounters>,
}

impl State {
    fn port_of(&self, index: u32) -> Option<PortId> {
        self.ports
            .iter()
            .find(|(_, i)| *i == index)
            .map(|(p, _)| *p)
    }

    fn index_of(&self, port: PortId) -> Option<u32> {
        self.ports.iter().find(|(p, _)| *p == port).map(|(_, i)| *i)
    }

    /// Applies an entry; returns whether the table changed.
    fn apply(&mut self, n: Neigh) -> bool {
        let Some(port) = self.port_of(n.index) else {
            return false;
        };
        // A resolved next hop is no longer pending.
        if n.mac.is_some() {
            self.pending.remove(&(port, n.addr));
        }
        match n.mac {
            Some(mac) if self.table.get(port, n.addr) != Some(mac) => {
                debug!(port = port.0, addr = %n.addr, %mac, "neighbour resolved");
                self.table.insert(port, n.addr, mac);
                true
            }
            None if self.table.get(port, n.addr).is_some() => {
                self.table.remove(port, n.addr);
                true
            }
            _ => false,
        }
    }

    fn redump(&mut self, nl: &mut Netlink) -> Result<()> {
        self.table = NeighTable::default();
        for n in nl.neighbours().context("dumping the neighbour table")? {
            self.apply(n);
        }
        Ok(())
    }

    fn run(
        mut self,
        events: &mut Netlink,
        control: &mut Netlink,
        shared: &SharedNeighbours,
        requests: &Receiver<(PortId, IpAddr)>,
        stop: &AtomicBool,
    ) {
        let mut batch = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut pfd = libc::pollfd {
                fd: events.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a short timeout so requests and stop are seen.
            unsafe { libc::poll(&raw mut pfd, 1, 20) };
            let mut changed = false;
            batch.clear();
            match events.recv_neigh_events(&mut batch) {
                Ok(()) => {
                    for n in batch.drain(..) {
                        changed |= self.apply(n);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "lost neighbour events; re-reading the table");
                    if let Err(e) = self.redump(control) {
                        warn!(error = %format!("{e:#}"), "neighbour dump failed");
                    }
                    changed = true;
                }
            }
            if changed {
                shared.publish(Arc::new(self.table.clone()), shared.generation() + 1);
            }
            let now = Instant::now();
            self.give_up(control, now);
            while let Ok((port, addr)) = requests.try_recv() {
                self.ask(control, port, addr, now);
            }
            self.counters
                .pending
                .store(self.pending.len() as u64, Ordering::Relaxed);
        }
    }
}

impl State {
    /// Asks the kernel to resolve `addr` on `port`, within the limits.
    fn ask(&mut self, control: &mut Netlink, port: PortId, addr: IpAddr, now: Instant) {
        if self.table.get(port, addr).is_some() || self.pending.contains_key(&(port, addr)) {
            return;
        }
        let Some(index) = self.index_of(port) else {
            return;
        };
        if self.pending.len() >= self.limits.max_pending {
            self.counters.over_pending.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let earned = now.saturating_duration_since(self.refilled).as_millis() as u64
            * u64::from(self.limits.rate)
            / 1000;
        if earned > 0 {
            self.tokens = (u64::from(self.tokens) + earned).min(u64::from(self.limits.rate)) as u32;
            self.refilled = now;
        }
        if self.tokens == 0 {
            self.counters.over_rate.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.tokens -= 1;
        self.pending.insert((port, addr), now);
        self.counters.asked.fetch_add(1, Ordering::Relaxed);
        debug!(port = port.0, %addr, "asking the kernel to resolve a next hop");
        if let Err(e) = control.add_managed_neighbour(index, addr) {
            warn!(%addr, error = %e, "the kernel refused to resolve a next hop");
        }
    }

    /// Deletes the entries that did not resolve in time, so the kernel's
    /// table holds at most `max_pending` of them.
    fn give_up(&mut self, control: &mut Netlink, now: Instant) {
        let timeout = self.limits.resolve_timeout;
        let expired: Vec<(PortId, IpAddr)> = self
            .pending
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        for (port, addr) in expired {
            self.pending.remove(&(port, addr));
            if self.table.get(port, addr).is_some() {
                continue;
            }
            self.counters.gave_up.fetch_add(1, Ordering::Relaxed);
            if let Some(index) = self.index_of(port) {
                debug!(port = port.0, %addr, "a next hop did not resolve; deleting its entry");
                if let Err(e) = control.del_neighbour(index, addr) {
                    debug!(%addr, error = %e, "deleting an unresolved neighbour");
                }
            }
        }
    }
}
