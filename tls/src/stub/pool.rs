//! TEMPORARY stub of helper's pool API (replaced at merge).
#![allow(missing_docs, unreachable_pub, dead_code, clippy::all)]
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointId(pub u32);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Balancer {
    #[default]
    RoundRobin,
    PeakEwma,
    Maglev,
}
#[derive(Clone, Debug, Default)]
pub struct PoolConfig {
    pub balancer: Balancer,
    pub failures_to_eject: u32,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    Healthy,
    Ejected { until: Instant },
    Probing,
}
#[derive(Default, Debug)]
pub struct PoolStats {
    pub retries: u64,
    pub budget_exhausted: u64,
    pub ejections: u64,
}
pub struct Pool {
    eps: Vec<SocketAddr>,
    next: usize,
    fails: Vec<u32>,
    ejected: Vec<bool>,
    stats: PoolStats,
}
impl Pool {
    pub fn new(endpoints: Vec<SocketAddr>, _c: PoolConfig, _seed: u64, _now: Instant) -> Self {
        let n = endpoints.len();
        Self {
            eps: endpoints,
            next: 0,
            fails: vec![0; n],
            ejected: vec![false; n],
            stats: PoolStats::default(),
        }
    }
    pub fn addr(&self, id: EndpointId) -> SocketAddr {
        self.eps[id.0 as usize]
    }
    pub fn on_new_connection(&mut self, _now: Instant) {}
    pub fn pick(
        &mut self,
        _client: IpAddr,
        tried: &[EndpointId],
        _now: Instant,
    ) -> Option<EndpointId> {
        for _ in 0..self.eps.len() {
            let i = self.next % self.eps.len();
            self.next += 1;
            if !self.ejected[i] && !tried.contains(&EndpointId(i as u32)) {
                return Some(EndpointId(i as u32));
            }
        }
        (0..self.eps.len()).find(|&i| !self.ejected[i]).map(|i| EndpointId(i as u32))
    }
    pub fn connect_started(&mut self, _id: EndpointId, _now: Instant) {}
    pub fn connect_succeeded(&mut self, id: EndpointId, _l: Duration, _now: Instant) {
        self.fails[id.0 as usize] = 0;
    }
    pub fn connect_failed(&mut self, id: EndpointId, _now: Instant) {
        let f = &mut self.fails[id.0 as usize];
        *f += 1;
        if *f >= 7 {
            self.ejected[id.0 as usize] = true;
            self.stats.ejections += 1;
        }
    }
    pub fn connection_closed(&mut self, _id: EndpointId, _now: Instant) {}
    pub fn try_retry(&mut self, _now: Instant) -> bool {
        self.stats.retries += 1;
        true
    }
    pub fn state(&self, id: EndpointId, _now: Instant) -> EndpointState {
        if self.ejected[id.0 as usize] {
            EndpointState::Ejected { until: _now }
        } else {
            EndpointState::Healthy
        }
    }
    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }
    pub fn endpoints(&self) -> impl Iterator<Item = (EndpointId, SocketAddr, EndpointState)> + '_ {
        self.eps
            .iter()
            .enumerate()
            .map(|(i, a)| (EndpointId(i as u32), *a, EndpointState::Healthy))
    }
}
