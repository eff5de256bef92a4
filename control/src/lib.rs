//! An appliance's control side: its configuration file, the desired state
//! and the store that keeps it ([`store`]), the running appliance
//! ([`node`]: dataplane, terminator, compile and publish), `causeway run`,
//! the gRPC control API (server side) and the HTTP metrics API. The
//! policy language is `causeway-policy`; the clients (`ctl`, `sync`) and
//! the lab are `causeway-cli`.
#![forbid(unsafe_code)]

pub mod api;
pub mod check;
pub mod config;
pub mod grpc;
pub mod node;
pub mod notify;
pub mod proto;
pub mod run;
pub mod store;
