//! The packet generator: AF_XDP transmit of UDP/IPv4 frames from one
//! interface inside a lab namespace, as fast as possible or at a fixed rate,
//! bounded by a count and a duration.
//!
//! The generating thread enters the namespace (setns), pins itself, and
//! binds one AF_XDP socket to queue 0 of the interface with the dataplane's
//! own wrapper ([`XskPort`] on an [`XskMemory`] UMEM). Transmitting needs no
//! XDP program: on a veth the socket runs in copy mode, each `sendto` kick
//! moving up to 32 frames from the TX ring into the driver. Frames are
//! written in place in the UMEM ([`frame`]); flows are source ports, taken
//! round-robin; sizes cycle through the list given; every `probe_every`-th
//! frame carries its CLOCK_MONOTONIC transmit time for the sink's latency
//! histogram.
//!
//! A frame counts as sent once the kernel has completed it (it is back on
//! the completion ring): it left the socket, though the veth behind may
//! still drop it if its peer is full, which the run sees as loss.

pub(crate) mod frame;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use causeway_dataplane::{
    port::{FrameMemory, Port},
    xdp::socket::{XskMemory, XskPort},
};

use crate::sys;
use frame::{FrameSpec, Stamp};

/// UMEM frames of the generator: enough to keep the TX ring full.
const FRAMES: u32 = 4096;
/// Frames written and queued per turn.
const BATCH: usize = 64;
/// How long to wait at the end for the last frames to complete.
const DRAIN: Duration = Duration::from_millis(200);

/// What to send, from where.
#[derive(Debug, Clone)]
pub(crate) struct GenConfig {
    /// The namespace to send from (`/run/netns/NAME`).
    pub(crate) netns: String,
    /// The interface in it.
    pub(crate) interface: String,
    /// The CPU to pin the generating thread to.
    pub(crate) cpu: Option<usize>,
    /// Addresses and ports.
    pub(crate) spec: FrameSpec,
    /// Distinct flows (source ports), at least 1.
    pub(crate) flows: u16,
    /// Frame sizes with FCS, cycled through (64..=1518).
    pub(crate) sizes: Vec<usize>,
    /// Frames per second; `None`: as fast as possible.
    pub(crate) rate: Option<f64>,
    /// Stop after this many frames...
    pub(crate) count: u64,
    /// ...or after this long, whichever comes first.
    pub(crate) duration: Duration,
    /// Every N-th frame is a timestamped probe (0: none).
    pub(crate) probe_every: u64,
}

/// What the generator did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GenReport {
    /// Frames completed by the kernel.
    pub(crate) sent: u64,
    /// Their bytes (without FCS).
    pub(crate) bytes: u64,
    /// Probes among them (queued; a probe still in flight at the end is
    /// counted but may not have left).
    pub(crate) probes: u64,
    /// From the first frame queued to the last one queued.
    pub(crate) elapsed: Duration,
}

/// Runs the generator on the calling thread (which it moves into
/// `config.netns` for good: call it from a thread of its own).
///
/// # Errors
/// The namespace, the CPU or the AF_XDP socket cannot be had, or the
/// configuration is empty.
pub(crate) fn run(config: &GenConfig) -> anyhow::Result<GenReport> {
    ensure!(config.flows > 0, "at least one flow");
    ensure!(!config.sizes.is_empty(), "at least one frame size");
    for &s in &config.sizes {
        ensure!(
            (frame::MIN_SIZE..=frame::MAX_SIZE).contains(&s),
            "frame size {s} is outside {}..={}",
            frame::MIN_SIZE,
            frame::MAX_SIZE
        );
    }
    if let Some(cpu) = config.cpu {
        sys::pin_to(cpu)?;
    }
    sys::enter_netns(&config.netns)?;
    let (mut mem, mut free) = XskMemory::new(FRAMES)?;
    let mut port = XskPort::bind(&mem, &config.interface, 0)
        .with_context(|| format!("AF_XDP on {} in {}", config.interface, config.netns))?;

    let mut batch = Vec::with_capacity(BATCH);
    let mut queued: u64 = 0;
    let mut completed: u64 = 0;
    let mut report = GenReport::default();
    let start = Instant::now();
    let deadline = start + config.duration;
    let mut last_queued = start;
    loop {
        let before = free.len();
        port.reclaim(&mut free);
        completed += (free.len() - before) as u64;
        let now = Instant::now();
        if queued >= config.count || now >= deadline {
            break;
        }
        let mut want = (BATCH as u64).min(config.count - queued);
        if let Some(rate) = config.rate {
            let allowed = (rate * now.duration_since(start).as_secs_f64()) as u64 + 1;
            want = want.min(allowed.saturating_sub(queued));
        }
        let want = (want as usize).min(free.len());
        if want == 0 {
            port.flush();
            std::hint::spin_loop();
            continue;
        }
        for i in 0..want {
            let seq = queued + i as u64;
            let mut desc = free.pop().expect("counted above");
            let size = config.sizes[(seq % config.sizes.len() as u64) as usize];
            let flow = (seq % u64::from(config.flows)) as u16;
            let probe = config.probe_every > 0 && seq.is_multiple_of(config.probe_every);
            let stamp = Stamp {
                seq: seq as u32,
                sent_ns: probe.then(sys::monotonic_ns),
            };
            mem.with_frame(&mut desc, |buf, _| {
                ((), config.spec.write(buf, size, flow, stamp))
            });
            batch.push(desc);
        }
        let taken = port.send(&batch);
        for (i, desc) in batch[..taken].iter().enumerate() {
            report.bytes += mem.frame_len(desc) as u64;
            let seq = queued + i as u64;
            report.probes +=
                u64::from(config.probe_every > 0 && seq.is_multiple_of(config.probe_every));
        }
        // Frames the TX ring had no room for go back unsent.
        for desc in batch.drain(taken..) {
            free.push(desc);
        }
        batch.clear();
        queued += taken as u64;
        port.flush();
        last_queued = Instant::now();
    }
    report.elapsed = last_queued.duration_since(start);
    // The frames still in flight: wait for the kernel to complete them.
    let drain_until = Instant::now() + DRAIN;
    while completed < queued && Instant::now() < drain_until {
        port.flush();
        let before = free.len();
        port.reclaim(&mut free);
        completed += (free.len() - before) as u64;
    }
    report.sent = completed;
    Ok(report)
}
