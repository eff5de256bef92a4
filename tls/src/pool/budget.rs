//! The retry budget: retries may add at most `ratio` of the new connections
//! seen in the last `ttl`, plus a floor of `min_per_sec` per second.
//!
//! This is Finagle's `RetryBudget` (and tower's `TpsBudget`, which Linkerd
//! uses): every new connection deposits `ratio` tokens into a leaky bucket
//! whose deposits expire after `ttl`; a retry withdraws one token. Retries
//! stay a bounded fraction of the load, so an upstream outage cannot turn
//! into a retry storm that multiplies the traffic.
//!
//! Two deliberate differences from Finagle/tower:
//!
//! - **The reserve is per second, in its own token bucket.** Finagle adds a
//!   reserve of `min_per_sec × ttl` tokens into the same window, so a quiet
//!   service may burst `min_per_sec × ttl` retries (100 with the defaults) at
//!   once. Here the floor is a token bucket of capacity `min_per_sec`
//!   refilled at `min_per_sec` per second: never more than `min_per_sec`
//!   retries in any one second come from the reserve. A retry spends the
//!   reserve first (it refills anyway) and the deposits after.
//! - **Fixed-point integers.** Deposits are counted in thousandths of a token
//!   and the reserve in nanoseconds of credit, so nothing drifts.
//!
//! The window is [`BUCKETS`] time buckets of `ttl / BUCKETS` each (a ring):
//! O(1) per call, fixed memory. A bucket holds the net of its deposits and
//! the withdrawals paid from deposits, as in Finagle's `WindowedAdder`, so
//! over any window the deposit-paid retries never exceed `ratio` × the
//! connections. A deposit therefore expires between `ttl − ttl/BUCKETS` and
//! `ttl` after it was made.

use std::time::{Duration, Instant};

/// Number of time buckets the `ttl` window is cut into.
pub(super) const BUCKETS: usize = 10;

/// Thousandths of a token per token.
const MILLI: i64 = 1000;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Retry budget settings (Finagle's `RetryBudget` parameters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Tokens deposited per new client connection; a retry costs one. 0.2
    /// lets retries add at most 20 % to the connect attempts. Negative or
    /// NaN counts as 0.
    pub ratio: f64,
    /// Retries per second allowed whatever the traffic (the reserve), so a
    /// quiet service can still retry. 0 disables the reserve.
    pub min_per_sec: u32,
    /// How long a deposit counts. Finagle's and Linkerd's default is 10 s.
    pub ttl: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

/// The budget's state: a ring of deposit buckets plus the reserve bucket.
#[derive(Debug, Clone)]
pub(super) struct RetryBudget {
    /// Thousandths of a token deposited per connection.
    deposit: i64,
    /// Net thousandths per time bucket; `buckets[epoch % BUCKETS]` is current.
    buckets: [i64; BUCKETS],
    /// Bucket width in nanoseconds (at least 1).
    width_ns: u128,
    /// Time zero of the epochs.
    origin: Instant,
    /// The current bucket's epoch (number of widths since `origin`).
    epoch: u128,
    /// Reserve credit in nanoseconds, capped at one second.
    reserve_ns: u64,
    /// Nanoseconds of credit one reserve retry costs; 0 = no reserve.
    reserve_cost_ns: u64,
    /// When the reserve was last refilled.
    reserve_at: Instant,
}

impl RetryBudget {
    pub(super) fn new(config: &BudgetConfig, now: Instant) -> Self {
        let ratio = if config.ratio.is_finite() && config.ratio > 0.0 {
            config.ratio
        } else {
            0.0
        };
        // `as` saturates for huge ratios, which is the right answer.
        let deposit = (ratio * MILLI as f64).round() as i64;
        let width_ns = (config.ttl.as_nanos() / BUCKETS as u128).max(1);
        let reserve_cost_ns = match config.min_per_sec {
            0 => 0,
            n => (NANOS_PER_SEC / u64::from(n)).max(1),
        };
        Self {
            deposit,
            buckets: [0; BUCKETS],
            width_ns,
            origin: now,
            epoch: 0,
            // Start full: a fresh pool can retry at once.
            reserve_ns: NANOS_PER_SEC,
            reserve_cost_ns,
            reserve_at: now,
        }
    }

    /// A new client connection: deposit `ratio` tokens.
    pub(super) fn deposit(&mut self, now: Instant) {
        let cur = self.advance(now);
        self.buckets[cur] = self.buckets[cur].saturating_add(self.deposit);
    }

    /// Withdraws one retry; `false` if neither the reserve nor the deposits
    /// can pay for it.
    pub(super) fn withdraw(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.reserve_cost_ns > 0 && self.reserve_ns >= self.reserve_cost_ns {
            self.reserve_ns -= self.reserve_cost_ns;
            return true;
        }
        let cur = self.advance(now);
        if self.balance_milli() >= MILLI {
            self.buckets[cur] -= MILLI;
            true
        } else {
            false
        }
    }

    /// Whole retries the deposits (not the reserve) would pay for now.
    #[cfg(test)]
    pub(super) fn deposited(&mut self, now: Instant) -> i64 {
        self.advance(now);
        self.balance_milli().max(0) / MILLI
    }

    fn balance_milli(&self) -> i64 {
        self.buckets
            .iter()
            .fold(0i64, |sum, b| sum.saturating_add(*b))
    }

    /// Moves the ring to `now`, clearing the buckets that expired, and
    /// returns the current bucket's index. A `now` earlier than the last one
    /// counts as the last one.
    fn advance(&mut self, now: Instant) -> usize {
        let epoch = now.saturating_duration_since(self.origin).as_nanos() / self.width_ns;
        if epoch > self.epoch {
            let expired = (epoch - self.epoch).min(BUCKETS as u128);
            for step in 1..=expired {
                self.buckets[((self.epoch + step) % BUCKETS as u128) as usize] = 0;
            }
            self.epoch = epoch;
        }
        (self.epoch % BUCKETS as u128) as usize
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.reserve_at);
        let elapsed_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.reserve_ns = self
            .reserve_ns
            .saturating_add(elapsed_ns)
            .min(NANOS_PER_SEC);
        self.reserve_at = self.reserve_at.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(budget: &mut RetryBudget, now: Instant) -> u32 {
        let mut n = 0;
        while budget.withdraw(now) {
            n += 1;
            assert!(n < 1_000_000, "budget never runs out");
        }
        n
    }

    #[test]
    fn hundred_connections_buy_twenty_retries_plus_the_reserve() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(&BudgetConfig::default(), t0);
        for i in 0..100 {
            b.deposit(t0 + Duration::from_millis(i * 10));
        }
        assert_eq!(drain(&mut b, t0 + Duration::from_secs(1)), 20 + 10);
    }

    #[test]
    fn deposits_expire_after_ttl() {
        let t0 = Instant::now();
        let config = BudgetConfig {
            min_per_sec: 0,
            ..BudgetConfig::default()
        };
        let mut b = RetryBudget::new(&config, t0);
        for _ in 0..100 {
            b.deposit(t0);
        }
        // Still there a bucket short of the ttl, gone at the ttl.
        assert_eq!(b.deposited(t0 + Duration::from_millis(9_999)), 20);
        assert_eq!(b.deposited(t0 + Duration::from_secs(10)), 0);
        assert!(!b.withdraw(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn reserve_allows_min_per_sec_with_no_traffic() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(&BudgetConfig::default(), t0);
        assert_eq!(drain(&mut b, t0), 10);
        // Half a second refills half the reserve, a long pause only a full one.
        assert_eq!(drain(&mut b, t0 + Duration::from_millis(500)), 5);
        assert_eq!(drain(&mut b, t0 + Duration::from_secs(100)), 10);
        // Spread over time it sustains exactly min_per_sec.
        let start = t0 + Duration::from_secs(100);
        let mut allowed = 0;
        for ms in 1..=10_000u64 {
            allowed += u32::from(b.withdraw(start + Duration::from_millis(ms)));
        }
        assert_eq!(allowed, 100);
    }

    #[test]
    fn deposit_paid_retries_stay_within_the_ratio() {
        let t0 = Instant::now();
        let config = BudgetConfig {
            min_per_sec: 0,
            ..BudgetConfig::default()
        };
        let mut b = RetryBudget::new(&config, t0);
        for _ in 0..50 {
            b.deposit(t0);
        }
        assert_eq!(drain(&mut b, t0), 10);
        // New traffic later in the window buys only its own share.
        let t1 = t0 + Duration::from_secs(5);
        for _ in 0..50 {
            b.deposit(t1);
        }
        assert_eq!(drain(&mut b, t1), 10);
    }

    #[test]
    fn zero_ratio_and_zero_reserve_refuse_everything() {
        let t0 = Instant::now();
        let config = BudgetConfig {
            ratio: f64::NAN,
            min_per_sec: 0,
            ttl: Duration::ZERO,
        };
        let mut b = RetryBudget::new(&config, t0);
        for _ in 0..10 {
            b.deposit(t0);
        }
        assert!(!b.withdraw(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn time_going_backwards_does_not_panic() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut b = RetryBudget::new(&BudgetConfig::default(), t0);
        b.deposit(t0 - Duration::from_secs(50));
        let _ = b.withdraw(t0 - Duration::from_secs(99));
        b.deposit(t0 + Duration::from_secs(3));
        let _ = b.withdraw(t0 + Duration::from_secs(1));
    }
}
