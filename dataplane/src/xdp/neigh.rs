//! The neighbour manager: mirrors the kernel's neighbour table for the
//! dataplane's ports into immutable [`NeighTable`] snapshots, and asks the
//! kernel to resolve next hops the workers could not find.
//!
//! The dataplane does not speak ARP or NDP: the kernel does, and a next hop
//! the workers miss is added as a *managed* neighbour, which the kernel
//! resolves and keeps reachable (Linux 5.16). Changes arrive as netlink
//! events; a lost event (ENOBUFS) triggers a full re-dump.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
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
use crate::{port::PortId, route::NeighTable};

/// The published neighbour table.
pub type SharedNeighbours = Published<NeighTable>;

/// Handle to the neighbour manager thread.
#[derive(Debug)]
pub struct NeighbourManager {
    /// The published table.
    pub shared: Arc<SharedNeighbours>,
    /// Where workers send next hops they could not resolve.
    pub requests: Sender<(PortId, IpAddr)>,
    thread: Option<thread::JoinHandle<()>>,
}

impl NeighbourManager {
    /// Starts the manager for `ports` (port id → interface index); it stops
    /// when `stop` is set.
    ///
    /// # Errors
    /// The netlink socket or the first dump failed.
    pub fn start(ports: Vec<(PortId, u32)>, stop: Arc<AtomicBool>) -> Result<Self> {
        let mut events = Netlink::open(true).context("netlink socket for neighbour events")?;
        let mut control = Netlink::open(false).context("netlink socket")?;
        let shared = Arc::new(SharedNeighbours::default());
        let mut state = State {
            ports,
            table: NeighTable::default(),
            asked: HashMap::new(),
        };
        state.redump(&mut control)?;
        shared.publish(Arc::new(state.table.clone()), 1);
        let (requests, rx) = crossbeam_channel::bounded(4096);
        let sh = shared.clone();
        let thread = thread::Builder::new()
            .name("cw-neigh".into())
            .spawn(move || state.run(&mut events, &mut control, &sh, &rx, &stop))
            .context("spawning the neighbour thread")?;
        Ok(Self {
            shared,
            requests,
            thread: Some(thread),
        })
    }
}

impl Drop for NeighbourManager {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    ports: Vec<(PortId, u32)>,
    table: NeighTable,
    /// When each next hop was last asked for, to ask at most once a second.
    asked: HashMap<(PortId, IpAddr), Instant>,
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
        // Any news of a next hop ends the wait for it: ask again at once
        // should it be missed later.
        self.asked.remove(&(port, n.addr));
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
            while let Ok((port, addr)) = requests.try_recv() {
                if self.table.get(port, addr).is_some() {
                    continue;
                }
                let recently = self
                    .asked
                    .get(&(port, addr))
                    .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1));
                let Some(index) = self.index_of(port) else {
                    continue;
                };
                if recently {
                    continue;
                }
                self.asked.insert((port, addr), now);
                debug!(port = port.0, %addr, "asking the kernel to resolve a next hop");
                if let Err(e) = control.add_managed_neighbour(index, addr) {
                    warn!(%addr, error = %e, "the kernel refused to resolve a next hop");
                }
            }
        }
    }
}
