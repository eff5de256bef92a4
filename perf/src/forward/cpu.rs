//! What a forwarded packet costs in CPU, apart from what the generator can
//! offer: per-CPU times from `/proc/stat` read around a run, causeway's
//! worker busy time from its stats, both divided by the packets forwarded;
//! and the rule that tells a point bound by the generator.
//!
//! - Linux and in-kernel XDP forward in the kernel: their cost is the
//!   system, irq and softirq time of the forwarder's CPU per packet (RPS
//!   puts Linux's forwarding there, a pinned NAPI thread XDP's).
//! - causeway's worker spins by design: the raw time of its CPU is the
//!   whole run, whatever it forwards. Its cost is its busy time (the polls
//!   that carried frames, `workers[].busy_ns` of `causeway stats`, the
//!   metric `causeway_worker_busy_seconds_total`) per packet. The raw
//!   figures are reported beside it, so the spinning is not hidden.
//!
//! Every point also gives the kernel time on the generator's CPU per
//! packet: that CPU runs the generator, the sink and, for causeway, the
//! XDP program and the copy into the UMEM (in `a0`'s NAPI, where the
//! generator's transmit schedules it), so only differences between
//! forwarders mean anything there.
#![forbid(unsafe_code)]

use std::{fs, process::Command};

use anyhow::Context;

/// A point is bound by the generator when the forwarder delivered at least
/// this share of what was offered: it kept up, so its rate says how fast
/// the generator is, not how fast it forwards.
const KEPT_UP: f64 = 0.99;

/// One CPU's times, in clock ticks (`USER_HZ`), as `/proc/stat` gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    pub(crate) user: u64,
    pub(crate) nice: u64,
    pub(crate) system: u64,
    pub(crate) idle: u64,
    pub(crate) iowait: u64,
    pub(crate) irq: u64,
    pub(crate) softirq: u64,
    pub(crate) steal: u64,
}

impl CpuTimes {
    /// Time spent in the kernel: system, irq and softirq.
    pub(crate) fn kernel(&self) -> u64 {
        self.system + self.irq + self.softirq
    }

    /// Time the CPU ran anything (user, kernel); idle, iowait and the time
    /// the hypervisor stole are not.
    pub(crate) fn busy(&self) -> u64 {
        self.user + self.nice + self.kernel()
    }

    /// The time from `before` to `self`.
    pub(crate) fn since(&self, before: &Self) -> Self {
        Self {
            user: self.user.saturating_sub(before.user),
            nice: self.nice.saturating_sub(before.nice),
            system: self.system.saturating_sub(before.system),
            idle: self.idle.saturating_sub(before.idle),
            iowait: self.iowait.saturating_sub(before.iowait),
            irq: self.irq.saturating_sub(before.irq),
            softirq: self.softirq.saturating_sub(before.softirq),
            steal: self.steal.saturating_sub(before.steal),
        }
    }
}

/// Each CPU's times from the text of `/proc/stat`, indexed by CPU number
/// (a CPU missing from the text, offline, reads as zero).
pub(crate) fn parse(stat: &str) -> Vec<CpuTimes> {
    let mut cpus = Vec::new();
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        // "cpu" (the sum of all) has no number.
        let Some(Ok(n)) = fields
            .next()
            .and_then(|name| name.strip_prefix("cpu"))
            .map(str::parse::<usize>)
        else {
            continue;
        };
        let v: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        if cpus.len() <= n {
            cpus.resize(n + 1, CpuTimes::default());
        }
        cpus[n] = CpuTimes {
            user: at(0),
            nice: at(1),
            system: at(2),
            idle: at(3),
            iowait: at(4),
            irq: at(5),
            softirq: at(6),
            steal: at(7),
        };
    }
    cpus
}

/// Every CPU's times now.
///
/// # Errors
/// `/proc/stat` cannot be read.
pub(crate) fn read() -> anyhow::Result<Vec<CpuTimes>> {
    Ok(parse(
        &fs::read_to_string("/proc/stat").context("reading /proc/stat")?,
    ))
}

/// The clock ticks per second of `/proc/stat` (`getconf CLK_TCK`; 100,
/// Linux's `USER_HZ` on every common architecture, if that fails).
pub(crate) fn ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

/// Whether the generator, asked for `asked_pps` (`None`: as fast as it
/// can), offered less than [`KEPT_UP`] of it: something held it back (its
/// CPU is shared with the sink and with kernel work of the forwarding),
/// so the point measures neither the generator nor the forwarder alone.
pub(crate) fn held_back(asked_pps: Option<f64>, offered_pps: f64) -> bool {
    asked_pps.is_some_and(|asked| offered_pps < asked * KEPT_UP)
}

/// Nanoseconds per packet of `ticks` clock ticks (at `hz` a second) spent
/// over `packets` packets; `None` when nothing was forwarded.
pub(crate) fn ticks_per_packet_ns(ticks: u64, hz: u64, packets: u64) -> Option<f64> {
    (packets > 0 && hz > 0).then(|| ticks as f64 * 1e9 / hz as f64 / packets as f64)
}

/// Nanoseconds per packet of `ns` nanoseconds spent over `packets`
/// packets; `None` when nothing was forwarded.
pub(crate) fn ns_per_packet(ns: u64, packets: u64) -> Option<f64> {
    (packets > 0).then(|| ns as f64 / packets as f64)
}

/// Whether a point with `forwarded` of `offered` frames delivered is bound
/// by the generator: the forwarder kept up with all of it (see
/// [`KEPT_UP`]). Nothing offered is not bound: there was no point.
pub(crate) fn generator_bound(offered: u64, forwarded: u64) -> bool {
    offered > 0 && forwarded as f64 >= offered as f64 * KEPT_UP
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
cpu  100 0 50 1000 0 0 20 0 0 0
cpu0 60 0 30 500 0 0 10 0 0 0
cpu1 40 0 20 500 0 0 10 0 0 0
intr 12345
ctxt 999
";
    const AFTER: &str = "\
cpu  300 0 90 1100 0 0 80 0 0 0
cpu0 250 0 40 520 0 0 15 0 0 0
cpu1 50 0 50 580 1 2 65 3 0 0
intr 12399
";

    #[test]
    fn per_cpu_lines_are_read_and_the_total_skipped() {
        let cpus = parse(BEFORE);
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].user, 60);
        assert_eq!(cpus[1].softirq, 10);
        // An offline CPU leaves a gap that reads as zero.
        let gap = parse("cpu0 1 2 3 4\ncpu2 5 6 7 8 9 10 11 12\n");
        assert_eq!(gap.len(), 3);
        assert_eq!(gap[1], CpuTimes::default());
        assert_eq!(gap[2].steal, 12);
        assert_eq!(gap[0].iowait, 0, "short lines read missing fields as 0");
    }

    #[test]
    fn deltas_split_kernel_from_everything_busy() {
        let (b, a) = (parse(BEFORE), parse(AFTER));
        let d = a[1].since(&b[1]);
        assert_eq!(d.kernel(), 30 + 2 + 55);
        assert_eq!(d.busy(), 10 + 30 + 2 + 55);
        assert_eq!(d.idle, 80);
        assert_eq!(d.steal, 3, "steal is not busy");
        // A counter that went backwards (a CPU hot-plugged) is no time.
        assert_eq!(b[1].since(&a[1]), CpuTimes::default());
    }

    #[test]
    fn per_packet_cost_from_ticks_and_from_nanoseconds() {
        // 87 ticks at 100 Hz = 870 ms over 250 000 packets = 3480 ns each.
        let ns = ticks_per_packet_ns(87, 100, 250_000).unwrap();
        assert!((ns - 3480.0).abs() < 1e-9, "{ns}");
        assert_eq!(ticks_per_packet_ns(87, 100, 0), None);
        assert_eq!(ns_per_packet(1_000_000, 4000), Some(250.0));
        assert_eq!(ns_per_packet(1_000_000, 0), None);
    }

    #[test]
    fn bound_by_the_generator_when_the_forwarder_kept_up() {
        assert!(generator_bound(250_000, 250_000));
        assert!(generator_bound(250_000, 247_500), "1% short still kept up");
        assert!(!generator_bound(250_000, 247_499));
        assert!(!generator_bound(1_000_000, 400_000));
        // A few frames more (ARP, a late warm-up frame) still kept up.
        assert!(generator_bound(1000, 1003));
        assert!(!generator_bound(0, 0), "nothing offered: no point");
    }

    #[test]
    fn held_back_when_the_rate_asked_was_not_offered() {
        assert!(
            !held_back(None, 26_000.0),
            "as fast as it can: no rate to miss"
        );
        assert!(!held_back(Some(250_000.0), 249_994.0));
        assert!(!held_back(Some(250_000.0), 247_500.0));
        assert!(held_back(Some(250_000.0), 26_022.0));
    }
}
