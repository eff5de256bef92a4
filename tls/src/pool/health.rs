//! Passive health: eject an endpoint after consecutive connect failures,
//! bring it back through a single probe connection.
//!
//! The state machine per endpoint:
//!
//! ```text
//!            failures_to_eject consecutive failures
//!  Healthy ──────────────────────────────────────────▶ Ejected { until }
//!     ▲                                                   │ now ≥ until
//!     │ probe succeeded           probe failed            ▼
//!     └───────────────────── Probing ──────────────▶ Ejected { until' }
//!                         (one trial at a time)       (next backoff)
//! ```
//!
//! The backoff is Linkerd's `ExponentialBackoff` (`linkerd/exp-backoff`):
//! `base = min(backoff_min × 2^(n−1), backoff_max)` for the n-th ejection in
//! a row, plus a jitter drawn uniformly from `[0, base × jitter)`, the total
//! capped at `backoff_max`. The jitter is added, never subtracted, so an
//! endpoint is never back sooner than its base backoff; with the default
//! 0.5 the first ejection lasts 1–1.5 s. Ejections "in a row" are those not
//! separated by `backoff_max` of health: an endpoint that flaps keeps its
//! long backoff, one that stayed up for a minute starts again at 1 s.
//!
//! Verdicts from attempts that started before an ejection and report while
//! the endpoint is still ejected are ignored (they say nothing the ejection
//! did not). Once the backoff has expired, the first verdict to arrive is
//! taken as the probe's, whichever attempt it came from: it is news either
//! way. This is the ejection half of Envoy's and Linkerd's outlier
//! detection, reduced to the connect-failure signal a TCP terminator has.

use std::time::{Duration, Instant};

use super::{EndpointState, PoolConfig, rng::WyRand};

/// Where an endpoint is in the ejection cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Healthy,
    /// Ejected; eligible for one probe once `now ≥ until`.
    Ejected {
        until: Instant,
    },
    /// The probe connection is in flight (its backoff ended at `until`).
    Trial {
        until: Instant,
    },
}

/// An endpoint's passive-health state.
#[derive(Debug, Clone)]
pub(super) struct Health {
    phase: Phase,
    /// Consecutive connect failures while healthy.
    failures: u32,
    /// Ejections in the current streak: the backoff exponent.
    streak: u32,
    /// When the endpoint last came back from an ejection.
    recovered_at: Option<Instant>,
}

impl Health {
    pub(super) const fn new() -> Self {
        Self {
            phase: Phase::Healthy,
            failures: 0,
            streak: 0,
            recovered_at: None,
        }
    }

    pub(super) fn state(&self, now: Instant) -> EndpointState {
        match self.phase {
            Phase::Healthy => EndpointState::Healthy,
            Phase::Ejected { until } if now < until => EndpointState::Ejected { until },
            Phase::Ejected { .. } | Phase::Trial { .. } => EndpointState::Probing,
        }
    }

    /// May a new connection be sent here? Healthy, or probing with no trial
    /// in flight.
    pub(super) fn eligible(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Healthy => true,
            Phase::Ejected { until } => now >= until,
            Phase::Trial { .. } => false,
        }
    }

    /// A connect attempt started; returns true if it is the probe.
    pub(super) fn started(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Ejected { until } if now >= until => {
                self.phase = Phase::Trial { until };
                true
            }
            _ => false,
        }
    }

    /// A connect attempt succeeded; returns true if that ended an ejection.
    pub(super) fn succeeded(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Healthy => {
                self.failures = 0;
                false
            }
            Phase::Ejected { until } if now < until => false,
            Phase::Ejected { .. } | Phase::Trial { .. } => {
                self.phase = Phase::Healthy;
                self.failures = 0;
                self.recovered_at = Some(now);
                true
            }
        }
    }

    /// A connect attempt failed; returns true if the endpoint was (re-)ejected.
    pub(super) fn failed(&mut self, now: Instant, config: &PoolConfig, rng: &mut WyRand) -> bool {
        match self.phase {
            Phase::Healthy => {
                if config.failures_to_eject == 0 {
                    return false;
                }
                self.failures = self.failures.saturating_add(1);
                if self.failures < config.failures_to_eject {
                    return false;
                }
            }
            Phase::Ejected { until } if now < until => return false,
            Phase::Ejected { .. } | Phase::Trial { .. } => {}
        }
        self.eject(now, config, rng);
        true
    }

    /// A connect attempt ended with no verdict (the client left, the caller
    /// cancelled): if it was the probe, another may be tried.
    pub(super) fn abandoned(&mut self) {
        if let Phase::Trial { until } = self.phase {
            self.phase = Phase::Ejected { until };
        }
    }

    fn eject(&mut self, now: Instant, config: &PoolConfig, rng: &mut WyRand) {
        let streak_over = self
            .recovered_at
            .is_some_and(|t| now.saturating_duration_since(t) >= config.backoff_max);
        if streak_over {
            self.streak = 0;
        }
        self.streak = self.streak.saturating_add(1);
        self.failures = 0;
        let backoff = backoff(self.streak, config, rng);
        self.phase = Phase::Ejected {
            until: now.checked_add(backoff).unwrap_or(now),
        };
    }
}

/// The `n`-th backoff in a row (n ≥ 1), jittered as Linkerd does.
pub(super) fn backoff(n: u32, config: &PoolConfig, rng: &mut WyRand) -> Duration {
    let (min, max) = (config.backoff_min, config.backoff_max);
    let base = min
        .checked_mul(2u32.saturating_pow(n.saturating_sub(1)))
        .unwrap_or(max)
        .min(max);
    let jitter = if config.jitter.is_finite() {
        config.jitter.clamp(0.0, 100.0)
    } else {
        0.0
    };
    let extra = base.mul_f64(jitter * rng.unit());
    base + extra.min(max.saturating_sub(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PoolConfig {
        PoolConfig {
            failures_to_eject: 3,
            ..PoolConfig::default()
        }
    }

    fn fail_n(h: &mut Health, n: u32, now: Instant, rng: &mut WyRand) -> bool {
        (0..n).fold(false, |_, _| h.failed(now, &config(), rng))
    }

    #[test]
    fn ejects_after_exactly_n_consecutive_failures() {
        let (t0, mut rng) = (Instant::now(), WyRand::new(1));
        let mut h = Health::new();
        assert!(!fail_n(&mut h, 2, t0, &mut rng));
        assert!(!h.succeeded(t0));
        assert!(!fail_n(&mut h, 2, t0, &mut rng));
        assert_eq!(h.state(t0), EndpointState::Healthy);
        assert!(h.failed(t0, &config(), &mut rng));
        assert!(matches!(h.state(t0), EndpointState::Ejected { .. }));
        assert!(!h.eligible(t0));
    }

    #[test]
    fn zero_failures_to_eject_never_ejects() {
        let (t0, mut rng) = (Instant::now(), WyRand::new(1));
        let cfg = PoolConfig {
            failures_to_eject: 0,
            ..PoolConfig::default()
        };
        let mut h = Health::new();
        for _ in 0..100 {
            assert!(!h.failed(t0, &cfg, &mut rng));
        }
        assert_eq!(h.state(t0), EndpointState::Healthy);
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_in_bounds() {
        let mut rng = WyRand::new(9);
        let cfg = PoolConfig::default();
        for n in 1..=12u32 {
            let base = Duration::from_secs((1u64 << (n - 1)).min(60));
            let hi = base.mul_f64(1.5).min(Duration::from_secs(60));
            for _ in 0..200 {
                let b = backoff(n, &cfg, &mut rng);
                assert!(
                    b >= base && b <= hi,
                    "n={n}: {b:?} not in {base:?}..={hi:?}"
                );
            }
        }
        assert_eq!(backoff(u32::MAX, &cfg, &mut rng), Duration::from_secs(60));
        let none = PoolConfig { jitter: 0.0, ..cfg };
        assert_eq!(backoff(3, &none, &mut rng), Duration::from_secs(4));
    }

    #[test]
    fn probe_cycle() {
        let (t0, mut rng) = (Instant::now(), WyRand::new(3));
        let mut h = Health::new();
        assert!(fail_n(&mut h, 3, t0, &mut rng));
        let EndpointState::Ejected { until } = h.state(t0) else {
            panic!("not ejected");
        };
        // Stale verdicts while ejected change nothing.
        assert!(!h.succeeded(t0));
        assert!(!h.failed(t0, &config(), &mut rng));
        assert_eq!(h.state(t0), EndpointState::Ejected { until });
        // Backoff over: probing, one trial at a time.
        assert_eq!(h.state(until), EndpointState::Probing);
        assert!(h.eligible(until));
        assert!(h.started(until));
        assert!(!h.eligible(until));
        assert_eq!(h.state(until), EndpointState::Probing);
        // An abandoned trial frees the slot.
        h.abandoned();
        assert!(h.eligible(until));
        assert!(h.started(until));
        // A failed probe re-ejects with the next (doubled) backoff.
        assert!(h.failed(until, &config(), &mut rng));
        let EndpointState::Ejected { until: again } = h.state(until) else {
            panic!("not re-ejected");
        };
        assert!(again - until >= Duration::from_secs(2));
        assert!(h.started(again));
        assert!(h.succeeded(again));
        assert_eq!(h.state(again), EndpointState::Healthy);
    }

    #[test]
    fn streak_resets_after_a_healthy_minute() {
        let (t0, mut rng) = (Instant::now(), WyRand::new(5));
        let cfg = PoolConfig {
            jitter: 0.0,
            ..config()
        };
        let mut h = Health::new();
        let eject = |h: &mut Health, now: Instant, rng: &mut WyRand| {
            for _ in 0..3 {
                h.failed(now, &cfg, rng);
            }
            let EndpointState::Ejected { until } = h.state(now) else {
                panic!("not ejected");
            };
            assert!(h.succeeded(until));
            until - now
        };
        assert_eq!(eject(&mut h, t0, &mut rng), Duration::from_secs(1));
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(eject(&mut h, t1, &mut rng), Duration::from_secs(2));
        let t2 = t1 + Duration::from_secs(3);
        assert_eq!(eject(&mut h, t2, &mut rng), Duration::from_secs(4));
        let t3 = t2 + Duration::from_secs(4 + 60);
        assert_eq!(eject(&mut h, t3, &mut rng), Duration::from_secs(1));
    }
}
