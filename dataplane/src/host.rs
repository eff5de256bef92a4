//! The appliance as an endpoint of its own policy: what reaches its own
//! addresses (a Calico host endpoint's ingress).
//!
//! A packet addressed to one of the appliance's addresses walks three
//! gates, the first two in the XDP program, the third in a worker:
//!
//! 1. failsafe: TCP or UDP to a [`FailsafePort`] goes to the kernel
//!    unjudged, as Calico's `failsafeInboundHostPorts` do, so a broken or
//!    missing policy (or a stuck worker) cannot lock the operator out;
//! 2. the kernel's own sockets: a TCP segment that is not a bare SYN, or a
//!    UDP datagram, that a socket other than a listener takes (a connection
//!    already admitted, the reply to one the appliance opened) goes to the
//!    kernel: its socket table is the conntrack of the appliance's own
//!    connections;
//!    An ICMP echo reply or error goes to the kernel too: it answers the
//!    appliance's own pings and connections (path MTU discovery
//!    included), and the kernel matches it to its sockets or drops it;
//! 3. everything else (a new connection, an ICMP echo request, UDP to a server socket) is
//!    judged by the host endpoint's ingress policy in the worker
//!    ([`crate::pipeline`]): allowed packets are written to a TUN device
//!    ([`crate::xdp::tun`]), so the kernel receives them as local traffic;
//!    denied ones are dropped and counted (`host_denied`). With no policy
//!    selecting the host endpoint for ingress, nothing is allowed: a Calico
//!    host endpoint with no policy denies, failsafe ports excepted.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// A transport protocol a failsafe port can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailsafeProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl FailsafeProtocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

/// An inbound port of the appliance that policy never closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FailsafePort {
    /// `tcp` or `udp`.
    pub protocol: FailsafeProtocol,
    /// The destination port.
    pub port: u16,
}

impl FailsafePort {
    /// A TCP port.
    pub const fn tcp(port: u16) -> Self {
        Self {
            protocol: FailsafeProtocol::Tcp,
            port,
        }
    }

    /// A UDP port.
    pub const fn udp(port: u16) -> Self {
        Self {
            protocol: FailsafeProtocol::Udp,
            port,
        }
    }
}

/// Calico's default `failsafeInboundHostPorts`: SSH, DHCP, BGP, etcd,
/// Typha, the Kubernetes API and OpenStack's.
pub const CALICO_FAILSAFE_INBOUND: [FailsafePort; 9] = [
    FailsafePort::tcp(22),
    FailsafePort::udp(68),
    FailsafePort::tcp(179),
    FailsafePort::tcp(2379),
    FailsafePort::tcp(2380),
    FailsafePort::tcp(5473),
    FailsafePort::tcp(6443),
    FailsafePort::tcp(6666),
    FailsafePort::tcp(6667),
];
