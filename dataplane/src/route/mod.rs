//! Routes and neighbours: where a packet goes and to which MAC.
//!
//! The route table is a longest-prefix match over IPv4 and IPv6 ([`lpm`]);
//! its entries are the connected routes of the ports (read from the kernel's
//! addresses on the port interfaces) plus the configured routes, put
//! together and checked by [`build`], which is pure so that the control
//! API can refuse a bad route when it is applied. Neighbours
//! (next hop → MAC) are the kernel's, read over netlink by
//! [`crate::xdp::neigh`] and published to the workers as an immutable
//! [`NeighTable`] snapshot.
#![forbid(unsafe_code)]

mod build;
pub mod lpm;

pub use crate::topology::{IpPrefix, PrefixError};
pub use build::{Connected, RouteError, RouteProblem, build};
pub use lpm::Lpm;

use std::{
    collections::HashMap,
    hash::BuildHasherDefault,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use rustc_hash::FxHasher;

use crate::{topology::PortId, wire::EthernetAddress};

/// Where a routed packet leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The egress port.
    pub port: PortId,
    /// The next hop; `None` for a connected route (the destination itself).
    pub via: Option<IpAddr>,
}

/// The routing table: one LPM per address family.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    v4: Lpm<u32, Route>,
    v6: Lpm<u128, Route>,
}

impl RouteTable {
    /// Adds (or replaces) the route for `prefix`.
    pub fn insert(&mut self, prefix: IpPrefix, route: Route) {
        let _replaced = match prefix.addr() {
            IpAddr::V4(a) => self.v4.insert(u32::from(a), prefix.len(), route),
            IpAddr::V6(a) => self.v6.insert(u128::from(a), prefix.len(), route),
        };
    }

    /// The longest-prefix route for an IPv4 destination.
    #[inline]
    pub fn lookup_v4(&self, dst: Ipv4Addr) -> Option<&Route> {
        self.v4.lookup(u32::from(dst))
    }

    /// The longest-prefix route for an IPv6 destination.
    #[inline]
    pub fn lookup_v6(&self, dst: Ipv6Addr) -> Option<&Route> {
        self.v6.lookup(u128::from(dst))
    }

    /// The longest-prefix route for any destination.
    pub fn lookup(&self, dst: IpAddr) -> Option<&Route> {
        match dst {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    /// Every route, IPv4 first, longest prefixes first.
    pub fn routes(&self) -> Vec<(IpPrefix, Route)> {
        let v4 = self.v4.iter().map(|(k, len, r)| {
            (
                IpPrefix::new(IpAddr::V4(Ipv4Addr::from(k)), len)
                    .expect("stored prefixes are valid"),
                *r,
            )
        });
        let v6 = self.v6.iter().map(|(k, len, r)| {
            (
                IpPrefix::new(IpAddr::V6(Ipv6Addr::from(k)), len)
                    .expect("stored prefixes are valid"),
                *r,
            )
        });
        v4.chain(v6).collect()
    }
}

/// A neighbour key: the port and the next hop, IPv4 mapped into IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighKey {
    /// The port the neighbour is reached on.
    pub port: PortId,
    /// The neighbour's address (IPv4 as `::ffff:a.b.c.d`).
    pub addr: u128,
}

impl NeighKey {
    /// The key for `addr` on `port`.
    #[inline]
    pub fn new(port: PortId, addr: IpAddr) -> Self {
        let addr = match addr {
            IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
            IpAddr::V6(a) => u128::from(a),
        };
        Self { port, addr }
    }

    /// The neighbour's address.
    pub fn ip(&self) -> IpAddr {
        Ipv6Addr::from(self.addr).to_canonical()
    }
}

/// An immutable snapshot of the kernel's usable neighbour entries for the
/// dataplane's ports. Workers read it without locks; the neighbour manager
/// publishes a new one when the kernel's table changes.
#[derive(Debug, Default, Clone)]
pub struct NeighTable {
    entries: HashMap<NeighKey, EthernetAddress, BuildHasherDefault<FxHasher>>,
}

impl NeighTable {
    /// The MAC of `addr` on `port`, if the kernel has resolved it.
    #[inline]
    pub fn get(&self, port: PortId, addr: IpAddr) -> Option<EthernetAddress> {
        self.entries.get(&NeighKey::new(port, addr)).copied()
    }

    /// Records (or replaces) a resolved neighbour.
    pub fn insert(&mut self, port: PortId, addr: IpAddr, mac: EthernetAddress) {
        self.entries.insert(NeighKey::new(port, addr), mac);
    }

    /// Forgets a neighbour.
    pub fn remove(&mut self, port: PortId, addr: IpAddr) {
        self.entries.remove(&NeighKey::new(port, addr));
    }

    /// The number of resolved neighbours.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no neighbour is resolved.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
