//! causeway's terminator (the armoured car): io_uring workers that terminate
//! and originate mTLS, balance across upstream pools, retry, and break
//! circuits.
//!
//! - [`engine`]: the proxy logic, sans-IO (tested on virtual time);
//! - [`uring`]: the io_uring driver that runs an engine on real sockets;
//! - [`pool`]: sans-IO upstream pools: balancers, passive health (ejection
//!   and probing) and the retry budget, on virtual time;
//! - [`identity`]: TLS material, SPIFFE identities, authorization, reload
//!   and the lab CA;
//! - [`access_log`]: one JSON line per connection, written off the
//!   workers through a bounded channel;
//! - [`buf`]: connection buffers lent from a per-worker pool;
//! - [`ktls`]: the kernel TLS probe, and which path each leg's records
//!   take;
//! - [`proxy`]: the PROXY protocol v2, read from trusted load balancers
//!   and sent to upstreams;
//! - [`metrics`]: Linkerd-style counters and histograms;
//! - [`config`]: the `terminator:` section of the appliance configuration;
//! - [`tokio_driver`]: the tokio (epoll) driver, where io_uring is
//!   unavailable; [`driver`]: which of the two a worker runs on;
//! - [`terminator`]: the running terminator (workers, reload, metrics).

pub mod access_log;
pub mod buf;
pub mod config;
pub mod driver;
pub mod engine;
pub mod flows;
pub mod identity;
pub mod ktls;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod terminator;
pub mod tokio_driver;
pub mod uring;
