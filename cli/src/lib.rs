//! The `causeway` binary's commands beside `run`: the client of the
//! control API (`ctl`), the operator's view of counters (`stats`), the lab
//! of network namespaces (`lab`), and `causeway sync`, which keeps
//! appliances in step with a cluster. Each is a client of an appliance;
//! none is linked into the appliance's own control side
//! (`causeway-control`).
#![forbid(unsafe_code)]

pub mod ctl;
pub mod lab;
pub mod stats;
pub mod sync;
