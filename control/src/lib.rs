//! causeway's control side: the appliance configuration, `causeway run`,
//! the operator API (for now: counters over HTTP on a Unix socket), and the
//! lab of network namespaces.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod ctl;
pub mod lab;
pub mod policy;
pub mod proto;
pub mod resources;
pub mod run;
pub mod stats;
pub mod store;
