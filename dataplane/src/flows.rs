//! Flow records for the control API's flow stream: a process-wide tap the
//! workers write into only while someone listens (one relaxed load per
//! new flow otherwise), bounded, counting what it had to drop.

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

/// Records held at most between two drains.
const CAPACITY: usize = 65_536;

/// The tap.
#[derive(Debug)]
pub struct FlowTap<T> {
    on: AtomicBool,
    queue: Mutex<VecDeque<T>>,
    dropped: AtomicU64,
}

impl<T> FlowTap<T> {
    /// A closed tap.
    pub const fn new() -> Self {
        Self {
            on: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether someone listens: check before building a record.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Opens or closes the tap (closing empties it).
    pub fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
        if !on {
            self.queue.lock().expect("not poisoned").clear();
        }
    }

    /// Adds a record, or counts it dropped when the queue is full.
    pub fn push(&self, record: T) {
        let mut q = self.queue.lock().expect("not poisoned");
        if q.len() >= CAPACITY {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            q.push_back(record);
        }
    }

    /// Takes every record held, and the count dropped since the last take.
    pub fn drain(&self) -> (Vec<T>, u64) {
        let records = self.queue.lock().expect("not poisoned").drain(..).collect();
        (records, self.dropped.swap(0, Ordering::Relaxed))
    }
}

impl<T> Default for FlowTap<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A flow as the dataplane judged it: its first packet, or a denied one.
#[derive(Debug, Clone)]
pub struct FlowRecord {
    /// When.
    pub at: std::time::SystemTime,
    /// Source address.
    pub src: std::net::IpAddr,
    /// Destination address.
    pub dst: std::net::IpAddr,
    /// Source port (0 when none).
    pub sport: u16,
    /// Destination port (0 when none).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Forwarded or dropped.
    pub allow: bool,
    /// The deciding rule's name (`tier/policy/direction/index`), or empty.
    pub rule: String,
    /// The packet's length.
    pub bytes: u32,
    /// The policy generation that judged it.
    pub generation: u64,
}

/// The dataplane's tap.
pub static TAP: FlowTap<FlowRecord> = FlowTap::new();
