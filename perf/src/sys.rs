//! The few calls into the kernel the generator and sink threads make:
//! entering a lab namespace, pinning to a CPU, reading CLOCK_MONOTONIC.
//! All through `nix`, so the harness itself has no `unsafe`.
#![forbid(unsafe_code)]

use std::fs::File;

use anyhow::Context;
use nix::{
    sched::{CloneFlags, CpuSet, sched_setaffinity, setns},
    time::{ClockId, clock_gettime},
    unistd::Pid,
};

/// Moves the calling thread into the network namespace `/run/netns/NAME`
/// (as `ip netns exec` would). Sockets it creates afterwards live there.
///
/// # Errors
/// The namespace does not exist, or setns(2) refused (not root).
pub(crate) fn enter_netns(name: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{name}");
    let ns = File::open(&path).with_context(|| format!("opening {path}"))?;
    setns(ns, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns into {path}"))
}

/// Pins the calling thread to `cpu`.
///
/// # Errors
/// The CPU does not exist.
pub(crate) fn pin_to(cpu: usize) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    sched_setaffinity(Pid::from_raw(0), &set).with_context(|| format!("pinning to CPU {cpu}"))
}

/// CLOCK_MONOTONIC in nanoseconds: the clock probes are stamped with, the
/// same for every namespace of the machine.
pub(crate) fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64) * 1_000_000_000 + t.tv_nsec() as u64
    })
}
