//! causeway's control side: the appliance configuration, the desired state
//! and causeway's own resource kinds, `causeway run`, the gRPC control API
//! and `causeway ctl`, the HTTP metrics API, and the lab of network namespaces.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod ctl;
pub mod grpc;
pub mod lab;
pub mod node;
pub mod policy;
pub mod proto;
pub mod resources;
pub mod run;
pub mod stats;
pub mod store;
