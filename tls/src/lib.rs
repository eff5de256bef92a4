//! causeway's terminator (the armoured car): io_uring workers that terminate
//! and originate mTLS, balance across upstream pools, retry, and break
//! circuits. Being built: [`identity`] holds the TLS material, SPIFFE
//! identities and authorization; the proxy state machine and the io_uring
//! driver come next and consume it.
#![forbid(unsafe_code)]

pub mod identity;
