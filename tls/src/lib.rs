//! causeway's terminator (the armoured car): io_uring workers that terminate
//! and originate mTLS, balance across upstream pools, retry, and break
//! circuits. Not built yet: see issue "Armoured car". The crate exists so the
//! workspace has its final shape and the dataplane's host port has a peer to
//! grow into.
#![forbid(unsafe_code)]

pub mod pool;
