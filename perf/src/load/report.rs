//! What one generator run reports (`load --json`), and the generator's
//! own CPU time.

use std::{fmt, time::Duration, time::Instant};

use serde::{Deserialize, Serialize};

use super::Tally;

/// One generator run, as `causeway-perf load --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LoadReport {
    /// Requests completed in the measured window.
    pub(crate) ok: u64,
    /// Requests completed, warm-up included.
    pub(crate) ok_total: u64,
    /// Requests failed (connect, handshake, timeout, bad response).
    pub(crate) errors: u64,
    /// The measured window, seconds.
    pub(crate) seconds: f64,
    /// `ok / seconds`.
    pub(crate) per_sec: f64,
    /// Response body bits per second in the window.
    pub(crate) bits_per_sec: f64,
    /// Latency percentiles of measured requests, microseconds.
    pub(crate) p50_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// Slowest.
    pub(crate) max_us: f64,
    /// The generator's CPU time over its wall time (1.0: one CPU busy).
    pub(crate) cpu_util: f64,
    /// The whole run's wall time, seconds.
    pub(crate) wall_seconds: f64,
    /// TLS suite and key exchange of the first connection.
    pub(crate) negotiated: Option<String>,
    /// The first failure, for the operator.
    pub(crate) first_error: Option<String>,
}

impl LoadReport {
    pub(super) fn new(
        t: &Tally,
        warm_end: Instant,
        wall: Duration,
        negotiated: Option<String>,
    ) -> Self {
        let ok = t.hist.len();
        let seconds = t
            .last_done
            .map_or(0.0, |d| d.duration_since(warm_end).as_secs_f64());
        let rate = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
        Self {
            ok,
            ok_total: t.ok_total,
            errors: t.errors,
            seconds,
            per_sec: rate(ok as f64),
            bits_per_sec: rate(t.bytes as f64 * 8.0),
            p50_us: t.hist.value_at_quantile(0.5) as f64,
            p99_us: t.hist.value_at_quantile(0.99) as f64,
            max_us: t.hist.max() as f64,
            cpu_util: t.cpu_ns as f64 / 1e9 / wall.as_secs_f64(),
            wall_seconds: wall.as_secs_f64(),
            negotiated,
            first_error: t.first_error.clone(),
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ok in {:.2} s: {:.0}/s, {:.3} Gbit/s, p50 {} us, p99 {} us, max {} us; \
             {} errors; generator CPU {:.0}%",
            self.ok,
            self.seconds,
            self.per_sec,
            self.bits_per_sec / 1e9,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.errors,
            self.cpu_util * 100.0
        )?;
        if let Some(n) = &self.negotiated {
            write!(f, "; {n}")?;
        }
        if let Some(e) = &self.first_error {
            write!(f, "; first error: {e}")?;
        }
        Ok(())
    }
}

/// CPU time of the calling thread so far, nanoseconds
/// (`/proc/thread-self/schedstat`); 0 where it cannot be read.
pub(super) fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
