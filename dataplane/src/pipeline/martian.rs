//! Martian addresses and directed broadcasts: packets no router forwards.
//!
//! - IPv4 (RFC 1812 §5.3.7, §4.2.2.11; Linux's `ip_route_input_slow`): a
//!   source or destination in 0.0.0.0/8 ("this network"), 127.0.0.0/8
//!   (loopback) or 240.0.0.0/4 (reserved, 255.255.255.255 the limited
//!   broadcast included); a multicast source (224.0.0.0/4); a multicast
//!   destination (the dataplane routes unicast only; L2 multicast frames
//!   go to the kernel before they reach it).
//! - IPv6 (RFC 4291 §2.5.2, §2.5.3, §2.5.5.2, §2.7; Linux's
//!   `ip6_rcv_core` and `ip6_forward`): an unspecified, loopback,
//!   multicast or IPv4-mapped source; an unspecified, loopback, multicast,
//!   link-local (never forwarded beyond its link) or IPv4-mapped
//!   destination.
//! - A directed broadcast (RFC 2644: a router must not forward one by
//!   default): a destination that is the broadcast address of a
//!   connected IPv4 subnet of /30 or shorter (a /31 or /32 has none).
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::route::RouteTable;

/// Whether an IPv4 packet from `src` to `dst` is martian.
#[inline]
pub fn v4(src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    let bad = |a: Ipv4Addr| {
        let o = a.octets()[0];
        // 0/8, 127/8, 240/4 (255.255.255.255 included).
        o == 0 || o == 127 || o >= 240
    };
    bad(src) || bad(dst) || src.is_multicast() || dst.is_multicast()
}

/// Whether an IPv6 packet from `src` to `dst` is martian.
#[inline]
pub fn v6(src: Ipv6Addr, dst: Ipv6Addr) -> bool {
    let mapped = |a: Ipv6Addr| a.to_ipv4_mapped().is_some();
    let link_local = |a: Ipv6Addr| a.segments()[0] & 0xffc0 == 0xfe80;
    src.is_unspecified()
        || src.is_loopback()
        || src.is_multicast()
        || mapped(src)
        || dst.is_unspecified()
        || dst.is_loopback()
        || dst.is_multicast()
        || link_local(dst)
        || mapped(dst)
}

/// The broadcast addresses of the connected IPv4 subnets (routes without a
/// next hop) of /30 or shorter, sorted (the walk searches them per packet).
pub fn directed_broadcasts(routes: &RouteTable) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = routes
        .routes()
        .into_iter()
        .filter(|(_, r)| r.via.is_none())
        .filter_map(|(p, _)| match p.addr() {
            std::net::IpAddr::V4(a) if p.len() <= 30 => {
                Some(Ipv4Addr::from(u32::from(a) | (u32::MAX >> p.len())))
            }
            _ => None,
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn martian_v4() {
        let ok = Ipv4Addr::new(10, 1, 0, 2);
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            let bad: Ipv4Addr = bad.parse().unwrap();
            assert!(v4(bad, ok), "{bad} as a source");
            assert!(v4(ok, bad), "{bad} as a destination");
        }
        assert!(!v4(ok, Ipv4Addr::new(10, 2, 0, 2)));
        assert!(!v4(
            Ipv4Addr::new(1, 0, 0, 1),
            Ipv4Addr::new(223, 255, 255, 254)
        ));
    }

    #[test]
    fn martian_v6() {
        let ok: Ipv6Addr = "fd00:a::2".parse().unwrap();
        for bad in ["::", "::1", "ff02::1", "::ffff:10.1.0.2"] {
            let bad: Ipv6Addr = bad.parse().unwrap();
            assert!(v6(bad, ok), "{bad} as a source");
            assert!(v6(ok, bad), "{bad} as a destination");
        }
        assert!(v6(ok, "fe80::1".parse().unwrap()));
        assert!(!v6(ok, "fd00:b::2".parse().unwrap()));
        assert!(!v6("2001:db8::1".parse().unwrap(), ok));
    }
}
