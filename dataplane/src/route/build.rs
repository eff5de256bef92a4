//! The route table from configuration: pure, so that the control API can
//! refuse a bad route when it is applied, not when the appliance restarts.
//!
//! [`build`] takes the ports as configured, the connected subnets of their
//! interfaces (the kernel's addresses; [`crate::xdp`] reads them at start,
//! the control process when a change is applied) and the configured
//! routes, and returns the table the workers look up, or the first route
//! it cannot accept and why. Connected routes go in first; a configured
//! route for the same prefix replaces one.

use std::net::IpAddr;

use super::{Route, RouteTable};
use crate::topology::{IpPrefix, PortConfig, PortId, RouteConfig};

/// A connected subnet: an address of a port's interface, with its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// The port whose interface holds the address.
    pub port: PortId,
    /// The address's subnet (host bits cleared).
    pub prefix: IpPrefix,
}

/// A configured route [`build`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {prefix}{}: {problem}", via.map(|v| format!(" via {v}")).unwrap_or_default())]
pub struct RouteError {
    /// The route's index in the configured routes.
    pub index: usize,
    /// Its prefix.
    pub prefix: IpPrefix,
    /// Its next hop, if it has one.
    pub via: Option<IpAddr>,
    /// What is wrong with it.
    pub problem: RouteProblem,
}

/// What is wrong with a configured route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteProblem {
    /// Neither a next hop nor a port: nowhere to send.
    #[error("give a next hop (via) or a port")]
    Nowhere,
    /// The port it names is not configured.
    #[error("no port named `{0}`")]
    NoSuchPort(String),
    /// The next hop is of the other address family than the prefix.
    #[error("the next hop and the prefix mix IPv4 and IPv6")]
    MixedFamilies,
    /// The next hop is in no port's connected subnet: no port reaches it.
    #[error("{0} is not in any port's connected subnet")]
    NotConnected(IpAddr),
    /// The next hop is reached on another port than the one named.
    #[error("{via} is reached on port {reached}, not {named}")]
    OtherPort {
        /// The next hop.
        via: IpAddr,
        /// The port whose connected subnet holds it.
        reached: String,
        /// The port the route names.
        named: String,
    },
}

/// The route table of `ports`, whose interfaces hold the `connected`
/// subnets, with the configured `routes`.
///
/// # Errors
/// The first configured route that names no configured port, has neither
/// a next hop nor a port, mixes address families, or whose next hop no
/// port's connected subnet holds (or holds on another port than the one
/// named).
pub fn build(
    ports: &[PortConfig],
    connected: &[Connected],
    routes: &[RouteConfig],
) -> Result<RouteTable, RouteError> {
    let mut table = RouteTable::default();
    for c in connected {
        table.insert(
            c.prefix,
            Route {
                port: c.port,
                via: None,
            },
        );
    }
    let connected = table.clone();
    for (index, r) in routes.iter().enumerate() {
        let refuse = |problem| RouteError {
            index,
            prefix: r.prefix,
            via: r.via,
            problem,
        };
        let by_name = |name: &String| {
            ports
                .iter()
                .position(|p| p.name == *name)
                .map(|i| PortId(i as u16))
                .ok_or_else(|| refuse(RouteProblem::NoSuchPort(name.clone())))
        };
        let route = match (r.via, &r.port) {
            (Some(via), _) if via.is_ipv4() != r.prefix.addr().is_ipv4() => {
                return Err(refuse(RouteProblem::MixedFamilies));
            }
            (Some(via), port) => {
                let named = port.as_ref().map(by_name).transpose()?;
                let reached = connected
                    .lookup(via)
                    .map(|c| c.port)
                    .ok_or_else(|| refuse(RouteProblem::NotConnected(via)))?;
                if let Some(named) = named
                    && named != reached
                {
                    return Err(refuse(RouteProblem::OtherPort {
                        via,
                        reached: ports[reached.index()].name.clone(),
                        named: ports[named.index()].name.clone(),
                    }));
                }
                Route {
                    port: reached,
                    via: Some(via),
                }
            }
            (None, Some(name)) => Route {
                port: by_name(name)?,
                via: None,
            },
            (None, None) => return Err(refuse(RouteProblem::Nowhere)),
        };
        table.insert(r.prefix, route);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str) -> PortConfig {
        PortConfig {
            name: name.into(),
            interface: format!("{name}0"),
            queues: 1,
            rp_filter: Default::default(),
        }
    }

    fn ports() -> Vec<PortConfig> {
        vec![port("a"), port("b")]
    }

    fn connected() -> Vec<Connected> {
        [(0, "10.1.0.0/24"), (1, "10.2.0.0/24"), (1, "fd00:b::/64")]
            .into_iter()
            .map(|(p, prefix)| Connected {
                port: PortId(p),
                prefix: prefix.parse().unwrap(),
            })
            .collect()
    }

    fn route(prefix: &str, via: Option<&str>, port: Option<&str>) -> RouteConfig {
        RouteConfig {
            prefix: prefix.parse().unwrap(),
            via: via.map(|v| v.parse().unwrap()),
            port: port.map(Into::into),
        }
    }

    fn refused(routes: &[RouteConfig]) -> RouteError {
        build(&ports(), &connected(), routes).expect_err("refused")
    }

    #[test]
    fn connected_then_configured_routes() {
        let table = build(
            &ports(),
            &connected(),
            &[
                route("0.0.0.0/0", Some("10.2.0.9"), None),
                route("192.0.2.0/24", None, Some("a")),
                route("2001:db8::/32", Some("fd00:b::9"), Some("b")),
            ],
        )
        .unwrap();
        let at = |a: &str| table.lookup(a.parse().unwrap()).copied();
        assert_eq!(
            at("10.1.0.7"),
            Some(Route {
                port: PortId(0),
                via: None
            })
        );
        assert_eq!(
            at("198.51.100.1"),
            Some(Route {
                port: PortId(1),
                via: Some("10.2.0.9".parse().unwrap())
            })
        );
        assert_eq!(
            at("192.0.2.1"),
            Some(Route {
                port: PortId(0),
                via: None
            })
        );
        assert_eq!(
            at("2001:db8::1"),
            Some(Route {
                port: PortId(1),
                via: Some("fd00:b::9".parse().unwrap())
            })
        );
    }

    #[test]
    fn a_route_to_nowhere_is_refused() {
        let e = refused(&[route("10.0.0.0/8", None, None)]);
        assert_eq!(e.problem, RouteProblem::Nowhere);
        assert_eq!(
            e.to_string(),
            "route 10.0.0.0/8: give a next hop (via) or a port"
        );
    }

    #[test]
    fn a_route_naming_a_missing_port_is_refused() {
        let e = refused(&[
            route("192.0.2.0/24", None, Some("a")),
            route("10.0.0.0/8", None, Some("z")),
        ]);
        assert_eq!(e.index, 1);
        assert_eq!(e.problem, RouteProblem::NoSuchPort("z".into()));
        assert_eq!(e.to_string(), "route 10.0.0.0/8: no port named `z`");
        let e = refused(&[route("10.0.0.0/8", Some("10.2.0.9"), Some("z"))]);
        assert_eq!(e.problem, RouteProblem::NoSuchPort("z".into()));
    }

    #[test]
    fn a_next_hop_no_port_reaches_is_refused() {
        let e = refused(&[route("10.0.0.0/8", Some("10.9.0.1"), None)]);
        assert_eq!(
            e.problem,
            RouteProblem::NotConnected("10.9.0.1".parse().unwrap())
        );
        assert_eq!(
            e.to_string(),
            "route 10.0.0.0/8 via 10.9.0.1: 10.9.0.1 is not in any port's connected subnet"
        );
    }

    #[test]
    fn a_next_hop_on_another_port_than_named_is_refused() {
        let e = refused(&[route("10.0.0.0/8", Some("10.2.0.9"), Some("a"))]);
        assert_eq!(
            e.to_string(),
            "route 10.0.0.0/8 via 10.2.0.9: 10.2.0.9 is reached on port b, not a"
        );
    }

    #[test]
    fn a_next_hop_of_the_other_family_is_refused() {
        // Before the builder, start accepted this one: the next hop's
        // lookup found its connected subnet, whatever the prefix's family.
        let e = refused(&[route("2001:db8::/32", Some("10.2.0.9"), None)]);
        assert_eq!(e.problem, RouteProblem::MixedFamilies);
        let e = refused(&[route("10.0.0.0/8", Some("fd00:b::9"), None)]);
        assert_eq!(e.problem, RouteProblem::MixedFamilies);
    }
}
