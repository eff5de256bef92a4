//! Policy in the dataplane: the classifier, connection tracking, and the
//! compiled program a worker enforces.
#![forbid(unsafe_code)]

pub mod classbench;
pub mod classifier;
pub mod conntrack;
pub mod program;
