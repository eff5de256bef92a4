//! The appliance's ports and routes as configured: the names every other
//! module shares.
//!
//! A leaf: it imports nothing else of this crate, so the pipeline, the
//! ports, the route table, the kernel driver ([`crate::xdp`]) and the
//! control crate can all use it without importing each other. What is
//! here is data the operator writes (ports, routes, the reverse-path
//! mode) and the index a port is known by at run time ([`PortId`]); what
//! the kernel says about a port (its MAC, its addresses) is found at start
//! by [`crate::xdp`], and the route table built from both by
//! [`crate::route::build`].
#![forbid(unsafe_code)]

mod prefix;

pub use prefix::{IpPrefix, PrefixError};

use std::net::IpAddr;

/// A port's index in the worker's (and the configuration's) port list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl PortId {
    /// The index as `usize`.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// How a port checks the source address of what it receives (see
/// [`crate::pipeline::source`]). Strict unless configured otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RpFilter {
    /// The route back to the source must leave by the ingress port.
    #[default]
    Strict,
    /// Some route back to the source must exist, by any port.
    Loose,
    /// No check.
    Off,
}

impl RpFilter {
    /// Whether this is the default ([`RpFilter::Strict`]), for serde's
    /// `skip_serializing_if`.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A port of the appliance, as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// The port's name (`a`, `b`, `host`): used in routes, counters, logs.
    pub name: String,
    /// The kernel interface in the appliance's network namespace.
    pub interface: String,
    /// RX queues to bind, 0..queues (one AF_XDP socket each).
    #[serde(default = "one")]
    pub queues: u32,
    /// The reverse-path check of received sources (anti-spoofing):
    /// `strict` (the default), `loose` or `off`.
    #[serde(default, skip_serializing_if = "RpFilter::is_default")]
    pub rp_filter: RpFilter,
}

fn one() -> u32 {
    1
}

/// A configured route (beyond the ports' connected routes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The destination prefix.
    pub prefix: IpPrefix,
    /// The next hop; it must lie in a connected subnet of some port.
    #[serde(default)]
    pub via: Option<IpAddr>,
    /// The egress port by name: required without `via` (a connected route),
    /// optional with it.
    #[serde(default)]
    pub port: Option<String>,
}
