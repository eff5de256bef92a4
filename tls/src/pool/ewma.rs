//! Peak-EWMA latency estimate: the cost P2C compares.
//!
//! As Finagle's `PeakEwma` and tower's `PeakEwma` (which Linkerd's balancer
//! uses): a sample above the current estimate replaces it at once (the
//! *peak*: a slow endpoint is penalised immediately), a lower sample is
//! blended in with weight `1 − e^(−Δt/τ)` where `Δt` is the time since the
//! previous sample (a fast endpoint earns its traffic back gradually), and
//! with no samples the estimate decays toward zero with time constant `τ`
//! (an idle or slow endpoint eventually looks cheap again and gets a trial).
//!
//! One difference: Finagle and tower apply the decay by *mutating* the
//! estimate on every read (`observe(0)`). Here a read is pure — the decay is
//! computed from the time since the last sample — so the cost is a function
//! of the sample history alone and picks stay reproducible under a seed.
//! An endpoint with no sample yet starts at the default RTT (30 ms in
//! Linkerd), stamped when it joined the pool.

use std::time::{Duration, Instant};

/// Linkerd's default decay time constant.
pub(super) const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// Linkerd's default RTT for an endpoint that has no sample yet.
pub(super) const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// A peak-EWMA round-trip estimate in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeakEwma {
    rtt_ns: f64,
    stamp: Instant,
}

impl PeakEwma {
    pub(super) fn new(initial: Duration, now: Instant) -> Self {
        Self {
            rtt_ns: initial.as_nanos() as f64,
            stamp: now,
        }
    }

    /// The estimate at `now`, decayed toward zero since the last sample.
    pub(super) fn estimate_ns(&self, now: Instant, decay: Duration) -> f64 {
        self.rtt_ns * self.weight(now, decay)
    }

    /// Feeds one latency sample taken at `now`.
    pub(super) fn observe(&mut self, sample: Duration, now: Instant, decay: Duration) {
        let sample = sample.as_nanos() as f64;
        if sample > self.rtt_ns {
            self.rtt_ns = sample;
        } else {
            let w = self.weight(now, decay);
            self.rtt_ns = self.rtt_ns * w + sample * (1.0 - w);
        }
        self.stamp = self.stamp.max(now);
    }

    /// `e^(−Δt/τ)`; 1 for no elapsed time, 0 for a zero `τ`.
    fn weight(&self, now: Instant, decay: Duration) -> f64 {
        let elapsed = now.saturating_duration_since(self.stamp).as_nanos() as f64;
        let tau = decay.as_nanos() as f64;
        if elapsed == 0.0 {
            1.0
        } else if tau == 0.0 {
            0.0
        } else {
            (-elapsed / tau).exp()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    #[test]
    fn peaks_are_taken_at_once() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(DEFAULT_RTT, t0);
        e.observe(Duration::from_millis(200), t0, DEFAULT_DECAY);
        assert_eq!(e.estimate_ns(t0, DEFAULT_DECAY), 200.0 * MS);
    }

    #[test]
    fn lower_samples_blend_by_elapsed_time() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(Duration::from_millis(100), t0);
        // One time constant later: weight e^-1 on the old estimate.
        e.observe(Duration::from_millis(10), t0 + DEFAULT_DECAY, DEFAULT_DECAY);
        let w = (-1.0f64).exp();
        let want = 100.0 * MS * w + 10.0 * MS * (1.0 - w);
        let got = e.estimate_ns(t0 + DEFAULT_DECAY, DEFAULT_DECAY);
        assert!((got - want).abs() < 1.0, "{got} vs {want}");
        // Back-to-back samples barely move it.
        let mut e = PeakEwma::new(Duration::from_millis(100), t0);
        e.observe(Duration::from_millis(10), t0, DEFAULT_DECAY);
        assert_eq!(e.estimate_ns(t0, DEFAULT_DECAY), 100.0 * MS);
    }

    #[test]
    fn idle_estimates_decay_toward_zero() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let e = PeakEwma::new(DEFAULT_RTT, t0);
        let later = e.estimate_ns(t0 + Duration::from_secs(30), DEFAULT_DECAY);
        assert!(later < 30.0 * MS * 0.06 && later > 0.0, "{later}");
        // Reads are pure and time going backwards reads as no time.
        assert_eq!(
            e.estimate_ns(t0 - Duration::from_secs(1), DEFAULT_DECAY),
            30.0 * MS
        );
    }
}
