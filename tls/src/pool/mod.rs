//! Upstream pools: which endpoint a connection goes to, whether it may be
//! retried, and which endpoints to leave alone for a while.
//!
//! Sans-IO like the rest of causeway (quinn-proto style): a [`Pool`] owns
//! no socket, no clock and no thread. Every call takes `now`, randomness
//! comes from a PRNG seeded at construction, and the connection state
//! machine reports what happened (`connect_started`, `connect_succeeded`,
//! …). The same event sequence with the same seed gives the same decisions,
//! so balancing, ejection and budgets are tested on virtual time.
//!
//! Thread-per-core: every terminator worker owns its own `Pool` per
//! service. Nothing is shared or locked; each worker balances on what it
//! sees itself, as Linkerd's per-proxy balancers do.
//!
//! The parts, each after a production design:
//!
//! - Balancing ([`Balancer`]): round robin; power of two choices over
//!   peak-EWMA latency × load (Linkerd's default, from Finagle; see
//!   `ewma.rs`); or Maglev consistent hashing on the client IP for affinity
//!   (see `maglev.rs`).
//! - Ejection (`health.rs`): `failures_to_eject` consecutive connect
//!   failures take an endpoint out for a jittered exponential backoff
//!   (Linkerd's `exp-backoff`); after it, one probe connection decides
//!   whether it comes back. When every endpoint is out, [`Pool::pick`]
//!   returns `None` and the caller refuses the client at once instead of
//!   queueing it behind a dead upstream (Linkerd's fail-fast).
//! - Retry budget (`budget.rs`): Finagle's `RetryBudget` — retries may add
//!   `ratio` of the recent new connections plus a small per-second floor,
//!   so retries cannot multiply the load of an upstream that is down.
//!
//! # The caller's contract
//!
//! For each client connection: [`Pool::on_new_connection`] once; then per
//! connect attempt, [`Pool::try_retry`] before any attempt but the first,
//! [`Pool::pick`] with the endpoints already tried, and
//! [`Pool::connect_started`] right after (before the next `pick`, so a
//! probing endpoint gets only its one trial). Every `connect_started` ends
//! in exactly one of [`Pool::connect_succeeded`], [`Pool::connect_failed`]
//! or [`Pool::connect_abandoned`]; a succeeded connection ends with
//! [`Pool::connection_closed`]. The endpoint's load (for P2C) is its
//! attempts in flight plus its open connections.
//!
//! # Where this departs from the references, and why
//!
//! - Retry budget reserve: Finagle and tower put `min_per_sec × ttl` reserve
//!   tokens into the deposit window, so a quiet service may burst 100
//!   retries (defaults) at once. Here the reserve is its own token bucket
//!   of `min_per_sec`, refilled at `min_per_sec` per second: 100 new
//!   connections in a second buy 20 + 10 retries, not 20 + 100.
//! - Peak EWMA reads are pure (Finagle and tower decay the estimate by
//!   mutating it on each read), so costs depend on the samples only.
//! - Maglev: the table covers all listed endpoints and is rebuilt only
//!   when the list changes; an ejected or tried endpoint's keys walk to the
//!   next usable slot, so nobody else's client moves during an ejection.
//!   Hashes are unseeded and placement is in address order, so every
//!   worker builds the same table.
//! - Jitter is Linkerd's: added, never subtracted (`[b, b·(1+jitter))`,
//!   capped at `backoff_max`); the backoff exponent resets after the
//!   endpoint has stayed healthy for `backoff_max`.
//! - Latency for P2C is the connect (handshake) latency reported by the
//!   caller, and load is attempts in flight plus open connections: a TCP
//!   terminator has no per-request RTT, unlike Linkerd's HTTP balancer.
//!
//! Events for an id the pool never issued are ignored. Events for a removed
//! endpoint only settle its load: its slot (and id) is reused for a new
//! address only once nothing is outstanding on it.
#![forbid(unsafe_code)]

mod budget;
mod ewma;
mod health;
mod maglev;
mod rng;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

pub use budget::BudgetConfig;

use budget::RetryBudget;
use ewma::PeakEwma;
use health::Health;
use maglev::Maglev;
use rng::WyRand;

/// An endpoint's index in its pool: stable while the endpoint stays in the
/// pool's endpoint list (see [`Pool::set_endpoints`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(pub u32);

/// How [`Pool::pick`] chooses among the usable endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balancer {
    /// In turn, from a random start per pool.
    RoundRobin,
    /// Power of two choices: two distinct random endpoints, the cheaper
    /// wins; cost = peak-EWMA connect latency × (load + 1). The EWMA uses
    /// Linkerd's defaults: decay 10 s, 30 ms for an endpoint with no sample.
    #[default]
    PeakEwma,
    /// Consistent hashing of the client IP over a 65537-slot Maglev table:
    /// a client keeps its endpoint while that endpoint is usable.
    Maglev,
}

/// A pool's settings. The defaults are Linkerd's where Linkerd has one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolConfig {
    /// The balancing algorithm.
    pub balancer: Balancer,
    /// Consecutive connect failures that eject an endpoint (7). 0 never
    /// ejects.
    pub failures_to_eject: u32,
    /// The first ejection's backoff (1 s); it doubles per ejection in a row.
    pub backoff_min: Duration,
    /// The longest backoff, jitter included (60 s).
    pub backoff_max: Duration,
    /// Linkerd's jitter: a backoff of base `b` lasts `b + U[0, b·jitter)`,
    /// capped at `backoff_max`. Upward only, so 0.5 (the default) means
    /// 1–1.5× the base. Clamped to `[0, 100]`; NaN counts as 0.
    pub jitter: f64,
    /// The retry budget.
    pub budget: BudgetConfig,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            balancer: Balancer::default(),
            failures_to_eject: 7,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            jitter: 0.5,
            budget: BudgetConfig::default(),
        }
    }
}

/// An endpoint's health as [`Pool::pick`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// Takes connections.
    Healthy,
    /// Out until `until`, after too many connect failures.
    Ejected {
        /// When the backoff ends and the endpoint becomes `Probing`.
        until: Instant,
    },
    /// The backoff is over: one trial connection at a time may be sent; its
    /// success makes the endpoint `Healthy`, its failure ejects it again.
    /// `pick` returns it only while no trial is in flight.
    Probing,
    /// Not (or no longer) in the pool's endpoint list.
    Removed,
}

/// Counters, for metrics. They only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Retries the budget allowed.
    pub retries: u64,
    /// Retries the budget refused.
    pub budget_exhausted: u64,
    /// Ejections, re-ejections after a failed probe included.
    pub ejections: u64,
    /// Probe connections started.
    pub probes: u64,
    /// Ejected endpoints that came back.
    pub recoveries: u64,
    /// Picks that found no usable endpoint (the client was refused).
    pub unavailable: u64,
    /// Ejections per endpoint, indexed by id; reset when a slot is reused.
    endpoint_ejections: Vec<u64>,
}

impl PoolStats {
    /// Ejections of one endpoint (0 for an id never issued).
    pub fn endpoint_ejections(&self, id: EndpointId) -> u64 {
        self.endpoint_ejections
            .get(id.0 as usize)
            .copied()
            .unwrap_or(0)
    }
}

/// One endpoint slot; removed endpoints stay as tombstones until reused.
#[derive(Debug, Clone)]
struct Slot {
    addr: SocketAddr,
    /// In the current endpoint list.
    live: bool,
    health: Health,
    ewma: PeakEwma,
    /// Connect attempts in flight plus open connections.
    outstanding: u32,
}

impl Slot {
    fn new(addr: SocketAddr, now: Instant) -> Self {
        Self {
            addr,
            live: true,
            health: Health::new(),
            ewma: PeakEwma::new(ewma::DEFAULT_RTT, now),
            outstanding: 0,
        }
    }

    fn usable(&self, now: Instant) -> bool {
        self.live && self.health.eligible(now)
    }

    /// P2C cost: the latency estimate scaled by the load.
    fn cost(&self, now: Instant) -> f64 {
        self.ewma.estimate_ns(now, ewma::DEFAULT_DECAY) * (f64::from(self.outstanding) + 1.0)
    }
}

/// Which endpoints a pick may return.
#[derive(Clone, Copy)]
struct Filter<'a> {
    tried: &'a [EndpointId],
    /// False when every usable endpoint was tried: then a tried one will do.
    skip_tried: bool,
    now: Instant,
}

impl Filter<'_> {
    fn admits(&self, slots: &[Slot], i: usize) -> bool {
        slots.get(i).is_some_and(|s| s.usable(self.now))
            && !(self.skip_tried && self.tried.contains(&EndpointId(i as u32)))
    }
}

/// One service's upstream endpoints on one worker: balancing, passive
/// health and the retry budget. See the module docs for the call contract.
#[derive(Debug)]
pub struct Pool {
    config: PoolConfig,
    slots: Vec<Slot>,
    /// The Maglev table, when that is the balancer.
    maglev: Option<Maglev>,
    /// Round robin's next slot.
    cursor: usize,
    budget: RetryBudget,
    rng: WyRand,
    /// P2C's candidate list, kept to avoid an allocation per pick.
    scratch: Vec<u32>,
    stats: PoolStats,
}

impl Pool {
    /// A pool over `endpoints` (duplicates are dropped; ids follow the
    /// order of first appearance). `seed` drives P2C, the round-robin start
    /// and the backoff jitter; give each worker its own.
    pub fn new(endpoints: Vec<SocketAddr>, config: PoolConfig, seed: u64, now: Instant) -> Self {
        let mut rng = WyRand::new(seed);
        let cursor = rng.below(endpoints.len().max(1));
        let mut pool = Self {
            config,
            slots: Vec::new(),
            maglev: None,
            cursor,
            budget: RetryBudget::new(&config.budget, now),
            rng,
            scratch: Vec::new(),
            stats: PoolStats::default(),
        };
        pool.set_endpoints(endpoints, now);
        pool
    }

    /// Replaces the endpoint list. Endpoints present before and after keep
    /// their id, health, latency estimate and load. Removed endpoints are
    /// never picked again and read as [`EndpointState::Removed`]; their id
    /// is given to a new address only once their load is back to zero.
    /// An address removed and re-added before that gets its old slot back,
    /// state and all. Rebuilds the Maglev table when the set changed.
    pub fn set_endpoints(&mut self, endpoints: Vec<SocketAddr>, now: Instant) {
        let index: HashMap<SocketAddr, usize> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.addr, i))
            .collect();
        let mut wanted = vec![false; self.slots.len()];
        let mut seen = HashSet::with_capacity(endpoints.len());
        let mut fresh = Vec::new();
        for addr in endpoints {
            if !seen.insert(addr) {
                continue;
            }
            match index.get(&addr) {
                Some(&i) => wanted[i] = true,
                None => fresh.push(addr),
            }
        }
        let mut changed = !fresh.is_empty();
        for (slot, want) in self.slots.iter_mut().zip(wanted) {
            changed |= slot.live != want;
            slot.live = want;
        }
        // New addresses take idle tombstones first (lowest id first), then
        // new slots.
        let mut free = (0..self.slots.len())
            .filter(|&i| !self.slots[i].live && self.slots[i].outstanding == 0)
            .collect::<Vec<_>>()
            .into_iter();
        for addr in fresh {
            let slot = Slot::new(addr, now);
            match free.next() {
                Some(i) => {
                    self.slots[i] = slot;
                    self.stats.endpoint_ejections[i] = 0;
                }
                None => {
                    self.slots.push(slot);
                    self.stats.endpoint_ejections.push(0);
                }
            }
        }
        if changed && self.config.balancer == Balancer::Maglev {
            let members: Vec<(SocketAddr, u32)> = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.live)
                .map(|(i, s)| (s.addr, i as u32))
                .collect();
            self.maglev = Some(Maglev::build(&members));
        }
    }

    /// The endpoints in the list (removed ones excluded), with their state
    /// at `now`.
    pub fn endpoints(
        &self,
        now: Instant,
    ) -> impl Iterator<Item = (EndpointId, SocketAddr, EndpointState)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live)
            .map(move |(i, s)| (EndpointId(i as u32), s.addr, s.health.state(now)))
    }

    /// The address behind `id`; for a removed endpoint, its last address.
    ///
    /// # Panics
    ///
    /// If this pool never issued `id`.
    pub fn addr(&self, id: EndpointId) -> SocketAddr {
        match self.slots.get(id.0 as usize) {
            Some(slot) => slot.addr,
            None => panic!("{id:?} was never issued by this pool"),
        }
    }

    /// A new client connection arrived: deposits into the retry budget.
    pub fn on_new_connection(&mut self, now: Instant) {
        self.budget.deposit(now);
    }

    /// Chooses the endpoint for a connect attempt. `client` is the client's
    /// IP (the Maglev key; ignored by the other balancers). `tried` are the
    /// endpoints this client connection already failed on: they are chosen
    /// again only if no other endpoint is usable.
    ///
    /// Usable means in the list and healthy, or probing with no trial in
    /// flight. `None` when nothing is usable (every endpoint ejected, or the
    /// list is empty): refuse the client at once.
    pub fn pick(
        &mut self,
        client: IpAddr,
        tried: &[EndpointId],
        now: Instant,
    ) -> Option<EndpointId> {
        let (mut usable, mut untried) = (0usize, 0usize);
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.usable(now) {
                usable += 1;
                untried += usize::from(!tried.contains(&EndpointId(i as u32)));
            }
        }
        if usable == 0 {
            self.stats.unavailable += 1;
            return None;
        }
        let filter = Filter {
            tried,
            skip_tried: untried > 0,
            now,
        };
        let picked = match self.config.balancer {
            Balancer::RoundRobin => self.pick_round_robin(filter),
            Balancer::PeakEwma => self.pick_p2c(filter),
            Balancer::Maglev => self.pick_maglev(client, filter),
        };
        debug_assert!(picked.is_some(), "a usable endpoint exists");
        if picked.is_none() {
            self.stats.unavailable += 1;
        }
        picked.map(EndpointId)
    }

    fn pick_round_robin(&mut self, filter: Filter<'_>) -> Option<u32> {
        let n = self.slots.len();
        let i = (0..n)
            .map(|k| (self.cursor + k) % n)
            .find(|&i| filter.admits(&self.slots, i))?;
        self.cursor = (i + 1) % n;
        Some(i as u32)
    }

    fn pick_p2c(&mut self, filter: Filter<'_>) -> Option<u32> {
        self.scratch.clear();
        self.scratch.extend(
            (0..self.slots.len())
                .filter(|&i| filter.admits(&self.slots, i))
                .map(|i| i as u32),
        );
        let n = self.scratch.len();
        if n < 2 {
            return self.scratch.first().copied();
        }
        let a = self.rng.below(n);
        let mut b = self.rng.below(n - 1);
        if b >= a {
            b += 1;
        }
        let (a, b) = (self.scratch[a], self.scratch[b]);
        let cost = |i: u32| self.slots[i as usize].cost(filter.now);
        Some(if cost(a) <= cost(b) { a } else { b })
    }

    fn pick_maglev(&self, client: IpAddr, filter: Filter<'_>) -> Option<u32> {
        self.maglev
            .as_ref()?
            .walk(client)
            .find(|&i| filter.admits(&self.slots, i as usize))
    }

    /// A connect attempt to `id` started: its load grows by one. If `id` is
    /// probing this is its trial, and it is not picked again until the
    /// trial's verdict.
    pub fn connect_started(&mut self, id: EndpointId, now: Instant) {
        let Some(slot) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        slot.outstanding = slot.outstanding.saturating_add(1);
        if slot.live && slot.health.started(now) {
            self.stats.probes += 1;
        }
    }

    /// The attempt connected after `latency` (the TCP, or TCP + TLS,
    /// handshake time): resets the consecutive failures, feeds the latency
    /// estimate, and ends a probe with the endpoint `Healthy`. The
    /// connection stays in the load until [`Pool::connection_closed`].
    pub fn connect_succeeded(&mut self, id: EndpointId, latency: Duration, now: Instant) {
        let Some(slot) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        if !slot.live {
            return;
        }
        slot.ewma.observe(latency, now, ewma::DEFAULT_DECAY);
        if slot.health.succeeded(now) {
            self.stats.recoveries += 1;
        }
    }

    /// The attempt failed (refused, timed out, handshake failed): it leaves
    /// the load, and counts toward ejection. The `failures_to_eject`-th
    /// consecutive failure ejects the endpoint for the next backoff; a
    /// failed probe ejects it again at once with the next backoff.
    pub fn connect_failed(&mut self, id: EndpointId, now: Instant) {
        let i = id.0 as usize;
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        slot.outstanding = slot.outstanding.saturating_sub(1);
        if slot.live && slot.health.failed(now, &self.config, &mut self.rng) {
            self.stats.ejections += 1;
            self.stats.endpoint_ejections[i] += 1;
        }
    }

    /// The attempt ended with no verdict on the endpoint (the client went
    /// away, the caller gave up for its own reasons): it leaves the load,
    /// and if it was a probe another probe may be sent.
    pub fn connect_abandoned(&mut self, id: EndpointId, _now: Instant) {
        let Some(slot) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        slot.outstanding = slot.outstanding.saturating_sub(1);
        slot.health.abandoned();
    }

    /// A connection that had succeeded closed: it leaves the load.
    pub fn connection_closed(&mut self, id: EndpointId, _now: Instant) {
        if let Some(slot) = self.slots.get_mut(id.0 as usize) {
            slot.outstanding = slot.outstanding.saturating_sub(1);
        }
    }

    /// Withdraws one retry from the budget. `false` means the budget is
    /// exhausted (counted in [`PoolStats::budget_exhausted`]): fail the
    /// client instead of retrying.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        let allowed = self.budget.withdraw(now);
        if allowed {
            self.stats.retries += 1;
        } else {
            self.stats.budget_exhausted += 1;
        }
        allowed
    }

    /// `id`'s state at `now`; [`EndpointState::Removed`] for an id not in
    /// the list (removed, or never issued).
    pub fn state(&self, id: EndpointId, now: Instant) -> EndpointState {
        match self.slots.get(id.0 as usize) {
            Some(slot) if slot.live => slot.health.state(now),
            _ => EndpointState::Removed,
        }
    }

    /// The counters.
    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }
}
