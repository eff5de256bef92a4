//! causeway's dataplane: packets in, verdicts and packets out.
//!
//! - [`wire`]: zero-copy packet views (smoltcp style).
//! - [`topology`]: ports and routes as configured, and [`topology::PortId`]; a driver-free leaf.
//! - [`host`]: what reaches the appliance's own addresses (failsafe ports, the host endpoint).
//! - [`route`]: longest-prefix-match routes and the neighbour table.
//! - [`pipeline`]: the sans-IO per-packet pipeline: frame and `now` in, verdict out.
//! - [`port`]: the port trait, the in-memory port and the worker loop over ports.
//! - [`xdp`]: the kernel side: XDP program, AF_XDP sockets, netlink, pinned workers.

pub mod flows;
pub mod host;
pub mod pipeline;
pub mod policy;
pub mod port;
pub mod route;
pub mod topology;
pub mod wire;
pub mod xdp;
