//! Source address validation (anti-spoofing): reverse-path filtering as
//! RFC 3704 §2 describes it and Linux's `rp_filter` does it.
//!
//! Policy knows endpoints by their source address, so a packet's source
//! must be one that could have come from the port it arrived on. The check
//! is a route lookup of the *source*:
//!
//! - `strict` (RFC 3704 §2.2, `rp_filter=1`, Calico's workload
//!   anti-spoofing): the route back to the source leaves by the ingress
//!   port;
//! - `loose` (§2.4, `rp_filter=2`): some route back to the source exists,
//!   by any port — for ports that see asymmetric paths;
//! - `off`: no check.
//!
//! Under `strict` and `loose` a source that is one of the appliance's own
//! addresses is refused too (Linux's `fib_validate_source` calls it a
//! martian unless `accept_local`). IPv6 link-local sources have no route
//! (connected routes leave them out), so they are refused as well: a router
//! must not forward them beyond their link (RFC 4291 §2.5.6).
//!
//! What the XDP program passes to the kernel (ARP, NDP, L2 multicast and
//! broadcast, traffic to the appliance's own addresses) never reaches this
//! check; the kernel's own `rp_filter` governs it.
//!
//! Cost: one LPM lookup. The policy stage does it once per flow direction
//! and port (conntrack remembers the port each direction arrived on);
//! without policy there is no flow table and it is done per packet.

use std::net::IpAddr;

use super::Tables;
use crate::topology::{PortId, RpFilter};

impl Tables {
    /// Whether `src` could have come from port `ingress` under that port's
    /// [`RpFilter`].
    #[inline]
    pub fn source_valid(&self, ingress: PortId, src: IpAddr) -> bool {
        let mode = self.ports[ingress.index()].rp_filter;
        if mode == RpFilter::Off {
            return true;
        }
        if self.local.contains(&src) {
            return false;
        }
        match self.routes.lookup(src) {
            None => false,
            Some(route) => mode == RpFilter::Loose || route.port == ingress,
        }
    }
}
