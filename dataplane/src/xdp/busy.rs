//! A worker's busy time: the wall-clock time of the polls that carried
//! frames, so that the CPU a forwarded packet costs can be told apart
//! from the time a poll-mode worker spends spinning on empty rings.
//!
//! A spinning worker shows 100% CPU in `/proc/stat` whatever it forwards;
//! dividing that by the packets forwarded charges it for idling. Its busy
//! time divided by the same packets is what a packet costs it. Busy time
//! is wall-clock time on the worker's core: it includes the kernel's work
//! done in the worker's thread during those polls (the transmit kick of a
//! copy-mode socket, a softirq run when it enables bottom halves) and any
//! time the worker was preempted during them.
//!
//! The worker counts into plain integers and publishes them with a plain
//! store (one writer per cell), as [`crate::pipeline::SharedCounters`] does.
#![forbid(unsafe_code)]

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// One worker's busy time, as the worker counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BusyClock {
    busy_ns: u64,
    busy_polls: u64,
}

impl BusyClock {
    /// Counts one poll that carried frames and took `took`.
    #[inline]
    pub(crate) fn add(&mut self, took: Duration) {
        // A u64 of nanoseconds lasts 584 years.
        self.busy_ns += u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.busy_polls += 1;
    }
}

/// One worker's published busy time.
#[derive(Debug, Default)]
pub(crate) struct SharedBusy {
    busy_ns: AtomicU64,
    busy_polls: AtomicU64,
}

impl SharedBusy {
    /// Publishes the worker's running totals. Only that worker may call this.
    pub(crate) fn publish(&self, clock: &BusyClock) {
        self.busy_ns.store(clock.busy_ns, Ordering::Relaxed);
        self.busy_polls.store(clock.busy_polls, Ordering::Relaxed);
    }

    /// The last published totals, for the worker on `core`.
    pub(crate) fn read(&self, core: usize) -> WorkerStats {
        WorkerStats {
            core,
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            busy_polls: self.busy_polls.load(Ordering::Relaxed),
        }
    }
}

/// What one worker reports of its time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerStats {
    /// The CPU the worker is pinned to.
    pub core: usize,
    /// Nanoseconds spent in polls that received at least one frame, from
    /// the start of the poll to the end of its batch (transmit included).
    pub busy_ns: u64,
    /// Polls that received at least one frame.
    pub busy_polls: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_adds_up_and_publishes_whole() {
        let mut clock = BusyClock::default();
        clock.add(Duration::from_nanos(1500));
        clock.add(Duration::from_micros(2));
        let shared = SharedBusy::default();
        assert_eq!(shared.read(3).busy_ns, 0);
        shared.publish(&clock);
        assert_eq!(
            shared.read(3),
            WorkerStats {
                core: 3,
                busy_ns: 3500,
                busy_polls: 2
            }
        );
    }
}
