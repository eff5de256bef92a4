//! causeway's terminator (the armoured car): io_uring workers that terminate
//! and originate mTLS, balance across upstream pools, retry, and break
//! circuits. Mostly not built yet: see issue "Armoured car".
//!
//! - [`pool`]: sans-IO upstream pools: balancers, passive health (ejection
//!   and probing) and the retry budget, on virtual time.
#![forbid(unsafe_code)]

pub mod pool;
