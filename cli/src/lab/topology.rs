//! The lab's wiring: which namespaces, links, addresses, routes, sysctls and
//! offload settings `up` makes, as a list of commands. Building the list
//! touches nothing, so it can be read and tested without root.
//!
//! ```text
//!   NAME-a (clients)          NAME-gw (the appliance)              NAME-b (servers)
//!   eth0 10.1.0.2/24 <-veth-> a0 10.1.0.1/24   b0 10.2.0.1/24 <-veth-> eth0 10.2.0.2/24
//!        fd00:a::2/64            fd00:a::1/64     fd00:b::1/64            fd00:b::2/64
//!                             hp0 10.0.255.1/30   (the host port)
//!                              ^
//!                            veth
//!                              v
//!                             hp1 10.0.255.2/30   NAME-svc (the terminator's kernel side)
//!                             lo  10.100.0.10/32, 10.100.0.20/32, 10.100.0.21/32 (services)
//! ```
//!
//! Routes: NAME-a sends 10.100.0.0/24 (the services) to 10.1.0.1, NAME-b
//! sends 10.0.255.0/30 (the terminator's upstream connections come from
//! 10.0.255.2) to 10.2.0.1, and NAME-svc's default route is 10.0.255.1. The
//! host port is IPv4 only.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cmd::{ETHTOOL, IP, SYSCTL, Tool};

/// Where `ip netns add` puts the namespaces it names (iproute2's
/// `NETNS_RUN_DIR`).
pub(crate) const NETNS_RUN_DIR: &str = "/run/netns";

/// What a namespace is for in the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Island A, the clients: `NAME-a`.
    A,
    /// The appliance: `NAME-gw`.
    Gw,
    /// The kernel side of the host port, where the terminator's sockets
    /// live: `NAME-svc`.
    Svc,
    /// Island B, the servers: `NAME-b`.
    B,
}

impl Role {
    /// In the order a packet walks from a client to a server through the
    /// terminator: island A, the appliance, the terminator, island B.
    pub const ALL: [Self; 4] = [Self::A, Self::Gw, Self::Svc, Self::B];

    /// The suffix this role's namespace has after the lab name.
    #[must_use]
    pub const fn suffix(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::Gw => "gw",
            Self::Svc => "svc",
            Self::B => "b",
        }
    }

    /// The name of this role's namespace in lab `lab`, e.g. `demo-gw`.
    #[must_use]
    pub fn netns(self, lab: &str) -> String {
        format!("{lab}-{}", self.suffix())
    }

    /// Where iproute2 keeps this role's namespace in lab `lab`, e.g.
    /// `/run/netns/demo-svc`: a path a process can `setns(2)` into.
    #[must_use]
    pub fn netns_path(self, lab: &str) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(self.netns(lab))
    }

    /// Which role namespace `netns` has in lab `lab`, if it is one of its.
    #[must_use]
    pub fn of(netns: &str, lab: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.netns(lab) == netns)
    }
}

/// The lab's addresses, for tests and the perf harness to aim at.
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Island A's `eth0`: where clients run.
    pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    /// Island A's `eth0`, IPv6.
    pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 2);
    /// The appliance's `a0`: island A's gateway.
    pub const GW_A_V4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    /// The appliance's `a0`, IPv6.
    pub const GW_A_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 1);
    /// The appliance's `b0`: island B's gateway.
    pub const GW_B_V4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
    /// The appliance's `b0`, IPv6.
    pub const GW_B_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xb, 0, 0, 0, 0, 0, 1);
    /// Island B's `eth0`: where servers run.
    pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
    /// Island B's `eth0`, IPv6.
    pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xb, 0, 0, 0, 0, 0, 2);
    /// Prefix length of both IPv4 subnets.
    pub const PREFIX_V4: u8 = 24;
    /// Prefix length of both IPv6 subnets.
    pub const PREFIX_V6: u8 = 64;

    /// The appliance kernel's end of the host port, `hp0` in `NAME-gw`: the
    /// next hop of the terminator's default route. The dataplane's connected
    /// route [`HOST_PREFIX`] on port `host` comes from it.
    pub const HOST_GW_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 255, 1);
    /// The terminator's end of the host port, `hp1` in `NAME-svc`: the next
    /// hop of the dataplane's route to [`SERVICE_PREFIX`], and the source of
    /// the terminator's connections to upstreams.
    pub const HOST_SVC_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 255, 2);
    /// The host port's subnet (IPv4 only).
    pub const HOST_PREFIX: V4Prefix = V4Prefix::new(Ipv4Addr::new(10, 0, 255, 0), 30);
    /// The demo service's address, on `lo` in `NAME-svc`.
    pub const SERVICE_V4: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 10);
    /// Spare service addresses, on `lo` in `NAME-svc`, for tests to listen on.
    pub const SPARE_SERVICES_V4: [Ipv4Addr; 2] =
        [Ipv4Addr::new(10, 100, 0, 20), Ipv4Addr::new(10, 100, 0, 21)];
    /// Where service addresses come from: island A routes it to the
    /// appliance, the dataplane routes it to the host port.
    pub const SERVICE_PREFIX: V4Prefix = V4Prefix::new(Ipv4Addr::new(10, 100, 0, 0), 24);
    /// The demo service's port.
    pub const SERVICE_PORT: u16 = 443;
    /// The name the demo service's certificate has (a DNS SAN), for clients
    /// to send as SNI and check.
    pub const SERVICE_NAME: &str = "demo.causeway.lab";
    /// The ports of the lab's HTTP backends on [`SERVER_V4`], `backend-1`
    /// to `backend-3`: the demo service's upstreams.
    pub const BACKEND_PORTS: [u16; 3] = [8081, 8082, 8083];

    /// An IPv4 prefix, written `10.100.0.0/24`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct V4Prefix {
        /// The network address.
        pub addr: Ipv4Addr,
        /// The prefix length.
        pub len: u8,
    }

    impl V4Prefix {
        /// The prefix `addr/len`.
        #[must_use]
        pub const fn new(addr: Ipv4Addr, len: u8) -> Self {
            Self { addr, len }
        }

        /// Whether `ip` is inside the prefix.
        #[must_use]
        pub fn contains(self, ip: Ipv4Addr) -> bool {
            let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
            ip.to_bits() & mask == self.addr.to_bits() & mask
        }
    }

    impl std::fmt::Display for V4Prefix {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

/// One command of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) tool: Tool,
    pub(crate) args: Vec<String>,
}

/// Collects the steps; one method per kind of step keeps [`plan`] readable.
struct Plan {
    steps: Vec<Step>,
}

impl Plan {
    fn push(&mut self, tool: Tool, args: &[&str]) {
        self.steps.push(Step {
            tool,
            args: args.iter().map(|&a| a.to_owned()).collect(),
        });
    }

    /// `ip -n NETNS args…`: everything is made inside the lab's namespaces.
    fn ip(&mut self, netns: &str, args: &[&str]) {
        let mut all = vec!["-n", netns];
        all.extend_from_slice(args);
        self.push(IP, &all);
    }

    /// A tool run inside `netns` (`ip netns exec`), for those without `-n`.
    fn exec(&mut self, netns: &str, tool: Tool, args: &[&str]) {
        let mut all = vec!["netns", "exec", netns, tool.program];
        all.extend_from_slice(args);
        self.push(IP, &all);
    }

    fn sysctl(&mut self, netns: &str, setting: &str) {
        self.exec(netns, SYSCTL, &["-qw", setting]);
    }

    /// A veth pair created in `netns`; `peer_netns` moves the peer end.
    fn veth(&mut self, netns: &str, name: &str, peer: &str, peer_netns: Option<&str>) {
        // `name` is spelled out: `ip link add a0 …` would be read as
        // `address` by iproute2's prefix matching for names like "a".
        let mut args = vec![
            "link", "add", "name", name, "type", "veth", "peer", "name", peer,
        ];
        if let Some(peer_netns) = peer_netns {
            args.extend(["netns", peer_netns]);
        }
        self.ip(netns, &args);
    }

    fn offloads_off(&mut self, netns: &str, dev: &str) {
        // Why every offload is off on every lab interface:
        //
        // The dataplane takes frames from these veths with AF_XDP in copy
        // mode, which hands it the raw bytes, not the skb with its metadata.
        // A packet an island kernel sends with CHECKSUM_PARTIAL ("tx"
        // checksum offload on) carries only a pseudo-header sum in its TCP or
        // UDP checksum field, to be finished by a NIC that a veth does not
        // have; forwarded as bytes, it would leave the appliance with a wrong
        // checksum and be dropped by the receiver. Likewise, with TSO, GSO or
        // GRO on, a veth passes 64 KiB super-packets that are not frames any
        // wire could carry, and the dataplane must never see or emit them.
        // So the kernels on both ends of every lab veth finish checksums in
        // software and hand over MTU-sized frames only. hp1 is the
        // terminator's kernel side of the host port and is treated like an
        // island.
        self.exec(
            netns,
            ETHTOOL,
            &[
                "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
            ],
        );
    }

    fn addr(&mut self, netns: &str, dev: &str, v4: Ipv4Addr, v6: Ipv6Addr) {
        self.addr_v4(netns, dev, v4, addr::PREFIX_V4);
        let v6 = format!("{v6}/{}", addr::PREFIX_V6);
        // nodad: usable at once instead of after duplicate address detection;
        // nothing else is on these links.
        self.ip(netns, &["addr", "add", &v6, "dev", dev, "nodad"]);
    }

    fn addr_v4(&mut self, netns: &str, dev: &str, v4: Ipv4Addr, prefix: u8) {
        self.ip(
            netns,
            &["addr", "add", &format!("{v4}/{prefix}"), "dev", dev],
        );
    }

    fn up(&mut self, netns: &str, dev: &str) {
        self.ip(netns, &["link", "set", "dev", dev, "up"]);
    }

    fn route_v4(&mut self, netns: &str, to: addr::V4Prefix, via: Ipv4Addr) {
        self.ip(
            netns,
            &["route", "add", &to.to_string(), "via", &via.to_string()],
        );
    }

    fn route_v6(&mut self, netns: &str, to: Ipv6Addr, via: Ipv6Addr) {
        let to = format!("{to}/{}", addr::PREFIX_V6);
        self.ip(netns, &["-6", "route", "add", &to, "via", &via.to_string()]);
    }

    fn default_route_v4(&mut self, netns: &str, via: Ipv4Addr) {
        self.ip(netns, &["route", "add", "default", "via", &via.to_string()]);
    }
}

/// The commands that wire up lab `lab` once its four namespaces exist, in
/// the order they must run.
pub(crate) fn plan(lab: &str) -> Vec<Step> {
    let a = &Role::A.netns(lab);
    let gw = &Role::Gw.netns(lab);
    let svc = &Role::Svc.netns(lab);
    let b = &Role::B.netns(lab);
    let mut p = Plan { steps: Vec::new() };

    // The appliance's kernel must not route: only the dataplane may carry
    // packets between the islands. Set before any interface exists, so
    // "default" covers them all.
    p.sysctl(gw, "net.ipv4.ip_forward=0");
    p.sysctl(gw, "net.ipv6.conf.all.forwarding=0");
    p.sysctl(gw, "net.ipv6.conf.default.forwarding=0");

    // The veths, created straight between namespaces so that no lab
    // interface ever has a name in the root namespace.
    p.veth(gw, "a0", "eth0", Some(a));
    p.veth(gw, "b0", "eth0", Some(b));
    p.veth(gw, "hp0", "hp1", Some(svc));

    // Offloads off on both ends of every veth (see `offloads_off`).
    p.offloads_off(a, "eth0");
    p.offloads_off(b, "eth0");
    for dev in ["a0", "b0", "hp0"] {
        p.offloads_off(gw, dev);
    }
    p.offloads_off(svc, "hp1");

    // Addresses. The host port is IPv4 only: hp0 gets one so that the
    // appliance's kernel answers ARP from hp1 and resolves hp1 for the
    // dataplane; the service addresses sit on the terminator's loopback.
    p.addr(a, "eth0", addr::CLIENT_V4, addr::CLIENT_V6);
    p.addr(gw, "a0", addr::GW_A_V4, addr::GW_A_V6);
    p.addr(gw, "b0", addr::GW_B_V4, addr::GW_B_V6);
    p.addr_v4(gw, "hp0", addr::HOST_GW_V4, addr::HOST_PREFIX.len);
    p.addr_v4(svc, "hp1", addr::HOST_SVC_V4, addr::HOST_PREFIX.len);
    for service in std::iter::once(addr::SERVICE_V4).chain(addr::SPARE_SERVICES_V4) {
        p.addr_v4(svc, "lo", service, 32);
    }
    p.addr(b, "eth0", addr::SERVER_V4, addr::SERVER_V6);

    // Links up, loopback included.
    for ns in [a, gw, svc, b] {
        p.up(ns, "lo");
    }
    p.up(a, "eth0");
    for dev in ["a0", "b0", "hp0"] {
        p.up(gw, dev);
    }
    p.up(svc, "hp1");
    p.up(b, "eth0");

    // Each island reaches the other through the appliance.
    p.route_v4(a, v4_net(addr::SERVER_V4), addr::GW_A_V4);
    p.route_v6(a, addr::SERVER_V6.mask_to(addr::PREFIX_V6), addr::GW_A_V6);
    p.route_v4(b, v4_net(addr::CLIENT_V4), addr::GW_B_V4);
    p.route_v6(b, addr::CLIENT_V6.mask_to(addr::PREFIX_V6), addr::GW_B_V6);
    // Clients reach the services through the appliance, whose dataplane
    // routes them to the host port; the backends answer the terminator's
    // upstream connections the same way; the terminator reaches everything
    // through the dataplane.
    p.route_v4(a, addr::SERVICE_PREFIX, addr::GW_A_V4);
    p.route_v4(b, addr::HOST_PREFIX, addr::GW_B_V4);
    p.default_route_v4(svc, addr::HOST_GW_V4);

    p.steps
}

/// An island's IPv4 subnet.
fn v4_net(ip: Ipv4Addr) -> addr::V4Prefix {
    addr::V4Prefix::new(ip.mask_to(addr::PREFIX_V4), addr::PREFIX_V4)
}

/// The network of an address, without a crate for it.
trait MaskTo {
    fn mask_to(self, prefix: u8) -> Self;
}

impl MaskTo for Ipv4Addr {
    fn mask_to(self, prefix: u8) -> Self {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Self::from(self.to_bits() & mask)
    }
}

impl MaskTo for Ipv6Addr {
    fn mask_to(self, prefix: u8) -> Self {
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        Self::from(self.to_bits() & mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(lab: &str) -> Vec<String> {
        plan(lab)
            .iter()
            .map(|s| super::super::cmd::command_line(s.tool.program, &s.args))
            .collect()
    }

    #[test]
    fn roles_name_their_namespaces() {
        assert_eq!(Role::A.netns("demo"), "demo-a");
        assert_eq!(Role::Gw.netns("demo"), "demo-gw");
        assert_eq!(Role::Svc.netns("demo"), "demo-svc");
        assert_eq!(Role::B.netns("demo"), "demo-b");
        assert_eq!(Role::of("demo-gw", "demo"), Some(Role::Gw));
        assert_eq!(Role::of("demo-svc", "demo"), Some(Role::Svc));
        assert_eq!(Role::of("demo-gw", "dem"), None);
        assert_eq!(
            Role::Svc.netns_path("demo"),
            Path::new("/run/netns/demo-svc")
        );
        // Every suffix is distinct, and no lab's namespace is another's.
        let suffixes: std::collections::HashSet<_> = Role::ALL.map(Role::suffix).into();
        assert_eq!(suffixes.len(), Role::ALL.len());
    }

    #[test]
    fn the_addresses_fit_their_prefixes() {
        assert!(addr::HOST_PREFIX.contains(addr::HOST_GW_V4));
        assert!(addr::HOST_PREFIX.contains(addr::HOST_SVC_V4));
        assert!(addr::SERVICE_PREFIX.contains(addr::SERVICE_V4));
        for spare in addr::SPARE_SERVICES_V4 {
            assert!(addr::SERVICE_PREFIX.contains(spare));
        }
        assert!(!addr::SERVICE_PREFIX.contains(addr::HOST_SVC_V4));
        assert_eq!(addr::HOST_PREFIX.to_string(), "10.0.255.0/30");
        assert_eq!(addr::SERVICE_PREFIX.to_string(), "10.100.0.0/24");
    }

    #[test]
    fn everything_is_made_inside_the_lab_namespaces() {
        for line in lines("t1") {
            assert!(
                line.starts_with("ip -n t1-") || line.starts_with("ip netns exec t1-"),
                "{line}"
            );
        }
    }

    #[test]
    fn the_wiring_is_as_documented() {
        let lines = lines("t1");
        for want in [
            "ip netns exec t1-gw sysctl -qw net.ipv4.ip_forward=0",
            "ip netns exec t1-gw sysctl -qw net.ipv6.conf.all.forwarding=0",
            "ip netns exec t1-gw sysctl -qw net.ipv6.conf.default.forwarding=0",
            "ip -n t1-gw link add name a0 type veth peer name eth0 netns t1-a",
            "ip -n t1-gw link add name b0 type veth peer name eth0 netns t1-b",
            "ip -n t1-gw link add name hp0 type veth peer name hp1 netns t1-svc",
            "ip netns exec t1-a ethtool -K eth0 tx off tso off gso off gro off",
            "ip netns exec t1-gw ethtool -K hp0 tx off tso off gso off gro off",
            "ip netns exec t1-svc ethtool -K hp1 tx off tso off gso off gro off",
            "ip -n t1-a addr add 10.1.0.2/24 dev eth0",
            "ip -n t1-a addr add fd00:a::2/64 dev eth0 nodad",
            "ip -n t1-gw addr add 10.1.0.1/24 dev a0",
            "ip -n t1-gw addr add fd00:b::1/64 dev b0 nodad",
            "ip -n t1-b addr add 10.2.0.2/24 dev eth0",
            "ip -n t1-gw addr add 10.0.255.1/30 dev hp0",
            "ip -n t1-svc addr add 10.0.255.2/30 dev hp1",
            "ip -n t1-svc addr add 10.100.0.10/32 dev lo",
            "ip -n t1-svc addr add 10.100.0.20/32 dev lo",
            "ip -n t1-svc addr add 10.100.0.21/32 dev lo",
            "ip -n t1-gw link set dev lo up",
            "ip -n t1-svc link set dev lo up",
            "ip -n t1-gw link set dev hp0 up",
            "ip -n t1-svc link set dev hp1 up",
            "ip -n t1-a route add 10.2.0.0/24 via 10.1.0.1",
            "ip -n t1-a -6 route add fd00:b::/64 via fd00:a::1",
            "ip -n t1-b route add 10.1.0.0/24 via 10.2.0.1",
            "ip -n t1-b -6 route add fd00:a::/64 via fd00:b::1",
            "ip -n t1-a route add 10.100.0.0/24 via 10.1.0.1",
            "ip -n t1-b route add 10.0.255.0/30 via 10.2.0.1",
            "ip -n t1-svc route add default via 10.0.255.1",
        ] {
            assert!(lines.iter().any(|l| l == want), "missing: {want}");
        }
        // The host port is IPv4 only, and hp1 lives in t1-svc from birth.
        assert!(
            !lines
                .iter()
                .any(|l| l.contains(" -6 ") && l.contains("t1-svc"))
        );
        for line in lines.iter().filter(|l| l.contains("hp1")) {
            assert!(
                line.contains("t1-svc ") || line.ends_with("peer name hp1 netns t1-svc"),
                "{line}"
            );
        }
        // The forwarding sysctls come before any interface exists.
        let first_link = lines.iter().position(|l| l.contains("link add")).unwrap();
        let last_sysctl = lines.iter().rposition(|l| l.contains("sysctl")).unwrap();
        assert!(last_sysctl < first_link);
        // Routes come after the links are up.
        let last_up = lines.iter().rposition(|l| l.ends_with(" up")).unwrap();
        let first_route = lines.iter().position(|l| l.contains("route add")).unwrap();
        assert!(last_up < first_route);
    }
}
