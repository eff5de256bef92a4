//! causeway's control side: the appliance configuration, the desired state
//! and causeway's own resource kinds, `causeway run`, the gRPC control API
//! and `causeway ctl`, the HTTP metrics API, the lab of network namespaces,
//! and `causeway sync`, which keeps appliances in step with the cluster.
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
pub mod sync;
