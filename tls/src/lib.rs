//! causeway's terminator (the armoured car): io_uring workers that terminate
//! and originate mTLS, balance across upstream pools, retry, and break
//! circuits.
//!
//! - [`engine`]: the proxy logic, sans-IO (tested on virtual time);
//! - [`buf`]: connection buffers lent from a per-worker pool;
//! - [`metrics`]: Linkerd-style counters and histograms;
//! - `identity`, `pool`: TLS material and upstream pools;
//! - [`uring`]: the io_uring driver (production);
//! - [`tokio_driver`]: the tokio (epoll) driver, where io_uring is
//!   unavailable;
//! - [`driver`]: which of the two a worker runs on.

pub mod buf;
pub mod driver;
pub mod engine;
#[path = "stub/identity.rs"]
pub mod identity;
pub mod metrics;
#[path = "stub/pool.rs"]
pub mod pool;
pub mod tokio_driver;
pub mod uring;
