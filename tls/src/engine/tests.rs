//! The engine on virtual time, driven by a simulated network: no sockets,
//! no clock, every step deterministic.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use super::*;
use crate::{
    metrics::WorkerMetrics,
    pool::{EndpointId, PoolConfig},
};

/// What an upstream address does with a connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    Accept,
    Refuse,
    /// Never answers: only the connect timeout ends the attempt.
    Blackhole,
}

/// One end of a simulated TCP connection, seen from the test's side.
#[derive(Debug, Default)]
pub(crate) struct End {
    /// Bytes the test's peer sends to the engine.
    pub(crate) to_engine: VecDeque<u8>,
    /// FIN from the test's peer, delivered after `to_engine` drains.
    pub(crate) fin_to_engine: bool,
    fin_delivered: bool,
    /// Bytes the engine sent to the test's peer.
    pub(crate) from_engine: Vec<u8>,
    /// The engine shut its writing half.
    pub(crate) fin_from_engine: bool,
    recv_armed: bool,
    /// Sends are held (a peer that does not read).
    pub(crate) stalled: bool,
    send_pending: bool,
    /// Where the pending send's bytes are (address, length): what a
    /// kernel holding the send would read.
    pub(crate) in_flight: Option<(usize, usize)>,
}

#[derive(Debug, Default)]
pub(crate) struct SimConn {
    pub(crate) client: End,
    pub(crate) upstream: Option<(SocketAddr, End)>,
    pub(crate) closed: Option<bool>,
    /// Closed with a send still held: released only once the "kernel"
    /// cancels it ([`Sim::cancel_held_sends`]), as a real driver does.
    release_held: bool,
    /// Engine asked to connect and nothing answered yet.
    connecting: Option<(SocketAddr, u32)>,
}

pub(crate) struct Sim {
    pub(crate) engine: Engine,
    pub(crate) now: Instant,
    pub(crate) conns: HashMap<ConnKey, SimConn>,
    pub(crate) behaviour: HashMap<SocketAddr, Behaviour>,
    /// Upstreams echo what they receive, and their FIN.
    pub(crate) echo: bool,
    pub(crate) connects: Vec<SocketAddr>,
    pub(crate) paused: Vec<bool>,
    pub(crate) metrics: Arc<WorkerMetrics>,
    /// Upstream legs start stalled (their peer does not read).
    pub(crate) stall_upstreams: bool,
    /// Bytes one receive hands the engine at most ([`crate::buf::CHUNK`]
    /// is the drivers' most).
    pub(crate) recv_max: usize,
    /// Bytes one send takes at most (a short send, as a kernel with a
    /// full socket buffer makes).
    pub(crate) send_max: usize,
}

pub(crate) fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 2, 0, i], 8080))
}

pub(crate) fn plain_spec(endpoints: Vec<SocketAddr>) -> ServiceSpec {
    ServiceSpec {
        name: "demo".into(),
        server_tls: None,
        client_tls: None,
        upstream_hello: Default::default(),
        proxy: ProxyProtocol::off(SocketAddr::from(([10, 100, 0, 10], 443))),
        endpoints,
        pool: PoolConfig::default(),
        timeouts: Timeouts::default(),
        max_connections: 1000,
        max_connections_per_client: 1000,
    }
}

impl Sim {
    pub(crate) fn new(spec: ServiceSpec) -> Self {
        Self::routing(vec![spec], &[])
    }

    /// An engine with several `specs`, `listeners` routing by SNI.
    pub(crate) fn routing(specs: Vec<ServiceSpec>, listeners: &[ListenerSpec]) -> Self {
        let now = Instant::now();
        let metrics = Arc::new(
            WorkerMetrics::new(
                specs
                    .iter()
                    .map(|s| (s.name.as_str(), s.endpoints.as_slice())),
            )
            .with_listeners(listeners.iter().map(|l| l.listen)),
        );
        let behaviour = specs
            .iter()
            .flat_map(|s| &s.endpoints)
            .map(|&a| (a, Behaviour::Accept))
            .collect();
        let paused = vec![false; specs.len()];
        Self {
            engine: Engine::new(specs, 7, now, metrics.clone()).with_listeners(listeners),
            now,
            conns: HashMap::new(),
            behaviour,
            echo: true,
            connects: Vec::new(),
            paused,
            metrics,
            stall_upstreams: false,
            recv_max: crate::buf::CHUNK,
            send_max: usize::MAX,
        }
    }

    pub(crate) fn accept(&mut self) -> ConnKey {
        self.accept_from([10, 1, 0, 2])
    }

    pub(crate) fn accept_from(&mut self, ip: [u8; 4]) -> ConnKey {
        let peer = SocketAddr::from((ip, 40000 + self.conns.len() as u16));
        let k = self.engine.accepted(0, peer, self.now);
        self.conns.insert(k, SimConn::default());
        self.run();
        k
    }

    pub(crate) fn client_send(&mut self, k: ConnKey, data: &[u8]) {
        self.conns
            .get_mut(&k)
            .unwrap()
            .client
            .to_engine
            .extend(data);
        self.run();
    }

    pub(crate) fn client_fin(&mut self, k: ConnKey) {
        self.conns.get_mut(&k).unwrap().client.fin_to_engine = true;
        self.run();
    }

    pub(crate) fn upstream(&mut self, k: ConnKey) -> &mut End {
        &mut self.conns.get_mut(&k).unwrap().upstream.as_mut().unwrap().1
    }

    pub(crate) fn conn(&self, k: ConnKey) -> &SimConn {
        &self.conns[&k]
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        // In steps, so that timers fire in order with IO in between.
        let end = self.now + d;
        while self.now < end {
            let next = self
                .engine
                .next_deadline()
                .filter(|&t| t > self.now && t < end)
                .unwrap_or(end);
            self.now = next;
            self.engine.tick(self.now);
            self.run();
        }
    }

    /// Carries out the engine's requests and delivers what the peers have
    /// for it until nothing moves.
    pub(crate) fn run(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            while let Some(io) = self.engine.poll_io() {
                moved = true;
                self.carry_out(io);
            }
            let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
            for k in keys {
                moved |= self.deliver(k);
            }
            if !moved {
                return;
            }
        }
        panic!("the simulation does not settle");
    }

    fn carry_out(&mut self, io: Io) {
        let now = self.now;
        match io {
            Io::Recv { conn, leg } => {
                let c = self.conns.get_mut(&conn).unwrap();
                end(c, leg).recv_armed = true;
            }
            Io::Send { conn, leg } => {
                let out = self.engine.outgoing(conn, leg);
                let range = (out.as_ptr() as usize, out.len());
                let data = out[..out.len().min(self.send_max)].to_vec();
                let c = self.conns.get_mut(&conn).unwrap();
                let e = end(c, leg);
                if e.stalled {
                    e.send_pending = true;
                    e.in_flight = Some(range);
                    return;
                }
                e.from_engine.extend_from_slice(&data);
                self.engine.sent(conn, leg, data.len(), now);
            }
            Io::Connect {
                conn,
                addr,
                attempt,
            } => {
                self.connects.push(addr);
                let c = self.conns.get_mut(&conn).unwrap();
                let end = End {
                    stalled: self.stall_upstreams,
                    ..End::default()
                };
                c.upstream = Some((addr, end));
                match self.behaviour[&addr] {
                    Behaviour::Accept => self.engine.connected(conn, attempt, Ok(()), now),
                    Behaviour::Refuse => {
                        self.engine
                            .connected(conn, attempt, Err(libc::ECONNREFUSED), now);
                    }
                    Behaviour::Blackhole => c.connecting = Some((addr, attempt)),
                }
            }
            Io::Shutdown { conn, leg } => {
                let c = self.conns.get_mut(&conn).unwrap();
                end(c, leg).fin_from_engine = true;
            }
            Io::Abort { conn } => {
                let c = self.conns.get_mut(&conn).unwrap();
                c.upstream = None;
                c.connecting = None;
            }
            Io::Close { conn, reset } => {
                let c = self.conns.get_mut(&conn).unwrap();
                c.closed = Some(reset);
                let held = c.client.send_pending
                    || c.upstream.as_ref().is_some_and(|(_, u)| u.send_pending);
                if held {
                    c.release_held = true;
                } else {
                    self.engine.released(conn);
                }
            }
            Io::PauseAccept { service } => self.paused[service] = true,
            Io::ResumeAccept { service } => self.paused[service] = false,
        }
    }

    fn deliver(&mut self, k: ConnKey) -> bool {
        let now = self.now;
        let echo = self.echo;
        let c = self.conns.get_mut(&k).unwrap();
        if c.closed.is_some() {
            return false;
        }
        let mut moved = false;
        // Echo upstream: what it got goes back, its FIN too.
        if echo && let Some((_, u)) = &mut c.upstream {
            {
                if !u.from_engine.is_empty() {
                    let data: Vec<u8> = std::mem::take(&mut u.from_engine);
                    u.to_engine.extend(data);
                    moved = true;
                }
                if u.fin_from_engine && !u.fin_to_engine {
                    u.fin_to_engine = true;
                    moved = true;
                }
            }
        }
        for leg in [Leg::Client, Leg::Upstream] {
            let c = self.conns.get_mut(&k).unwrap();
            if leg == Leg::Upstream && c.upstream.is_none() {
                continue;
            }
            let e = end(c, leg);
            if !e.recv_armed {
                continue;
            }
            if !e.to_engine.is_empty() {
                let n = e.to_engine.len().min(self.recv_max);
                let data: Vec<u8> = e.to_engine.drain(..n).collect();
                e.recv_armed = false;
                self.engine.received(k, leg, &data, now);
                moved = true;
            } else if e.fin_to_engine && !e.fin_delivered {
                e.fin_delivered = true;
                e.recv_armed = false;
                self.engine.received(k, leg, &[], now);
                moved = true;
            }
        }
        moved
    }

    /// Lets a stalled peer read again.
    pub(crate) fn unstall(&mut self, k: ConnKey, leg: Leg) {
        let now = self.now;
        let c = self.conns.get_mut(&k).unwrap();
        let e = end(c, leg);
        e.stalled = false;
        e.in_flight = None;
        if std::mem::take(&mut e.send_pending) {
            let data = self.engine.outgoing(k, leg).to_vec();
            let c = self.conns.get_mut(&k).unwrap();
            end(c, leg).from_engine.extend_from_slice(&data);
            self.engine.sent(k, leg, data.len(), now);
        }
        self.run();
    }

    /// The "kernel" cancels every send still held by a closed connection;
    /// the driver then releases it.
    pub(crate) fn cancel_held_sends(&mut self) {
        for (&k, c) in &mut self.conns {
            if std::mem::take(&mut c.release_held) {
                for e in std::iter::once(&mut c.client).chain(c.upstream.as_mut().map(|u| &mut u.1))
                {
                    e.send_pending = false;
                    e.in_flight = None;
                }
                self.engine.released(k);
            }
        }
        self.run();
    }

    /// Answers a blackholed connect now.
    pub(crate) fn answer_connect(&mut self, k: ConnKey, ok: bool) {
        let now = self.now;
        let c = self.conns.get_mut(&k).unwrap();
        if let Some((_, attempt)) = c.connecting.take() {
            let r = if ok { Ok(()) } else { Err(libc::ETIMEDOUT) };
            self.engine.connected(k, attempt, r, now);
        }
        self.run();
    }
}

fn end(c: &mut SimConn, leg: Leg) -> &mut End {
    match leg {
        Leg::Client => &mut c.client,
        Leg::Upstream => &mut c.upstream.as_mut().expect("an upstream leg").1,
    }
}

#[test]
fn bytes_flow_both_ways_and_a_client_half_close_ends_cleanly() {
    let mut sim = Sim::new(plain_spec(vec![addr(1)]));
    let k = sim.accept();
    assert_eq!(sim.connects, [addr(1)]);
    sim.client_send(k, b"hello upstream");
    assert_eq!(sim.conn(k).client.from_engine, b"hello upstream");
    assert_eq!(sim.conn(k).closed, None);
    // Client FIN → upstream FIN → echo FIN → client FIN → closed, no RST.
    sim.client_fin(k);
    assert!(sim.conn(k).client.fin_from_engine);
    assert_eq!(sim.conn(k).closed, Some(false));
    assert_eq!(sim.engine.live_connections(), 0);
    assert_eq!(sim.engine.buffers_in_use(), 0, "every chunk went back");
    let m = sim.metrics.service(0);
    assert_eq!(m.open(), 0);
}

#[test]
fn half_close_keeps_the_other_direction_open() {
    let mut sim = Sim::new(plain_spec(vec![addr(1)]));
    sim.echo = false;
    let k = sim.accept();
    sim.client_send(k, b"request");
    sim.client_fin(k);
    assert_eq!(sim.upstream(k).from_engine, b"request");
    assert!(sim.upstream(k).fin_from_engine, "the FIN went on");
    assert_eq!(sim.conn(k).closed, None, "the upstream may still answer");
    // The upstream answers after the client's half-close, then closes.
    sim.upstream(k).to_engine.extend(b"late answer");
    sim.run();
    assert_eq!(sim.conn(k).client.from_engine, b"late answer");
    assert!(!sim.conn(k).client.fin_from_engine);
    sim.upstream(k).fin_to_engine = true;
    sim.run();
    assert!(sim.conn(k).client.fin_from_engine);
    assert_eq!(sim.conn(k).closed, Some(false));
}

#[test]
fn an_upstream_half_close_reaches_the_client_who_can_still_send() {
    let mut sim = Sim::new(plain_spec(vec![addr(1)]));
    sim.echo = false;
    let k = sim.accept();
    sim.upstream(k).to_engine.extend(b"banner");
    sim.upstream(k).fin_to_engine = true;
    sim.run();
    assert_eq!(sim.conn(k).client.from_engine, b"banner");
    assert!(sim.conn(k).client.fin_from_engine);
    sim.client_send(k, b"still talking");
    assert_eq!(sim.upstream(k).from_engine, b"still talking");
    sim.client_fin(k);
    assert_eq!(sim.conn(k).closed, Some(false));
}

#[test]
fn a_slow_reader_stops_the_other_side_and_memory_stays_bounded() {
    let mut sim = Sim::new(plain_spec(vec![addr(1)]));
    sim.echo = false;
    let k = sim.accept();
    sim.upstream(k).stalled = true;
    sim.client_send(k, &vec![1u8; 1 << 20]);
    // The outbox towards the upstream and the client's inbox are full; the
    // rest waits in the "kernel" (the peer's queue).
    assert!(sim.conn(k).client.to_engine.len() > (1 << 20) - 3 * crate::buf::CHUNK);
    assert!(sim.engine.buffers_in_use() <= 4);
    sim.unstall(k, Leg::Upstream);
    // Keep unstalling until the megabyte is through.
    for _ in 0..200 {
        if sim.upstream(k).from_engine.len() == 1 << 20 {
            break;
        }
        sim.run();
    }
    assert_eq!(sim.upstream(k).from_engine.len(), 1 << 20);
}

#[test]
fn a_refused_connect_is_retried_on_another_endpoint() {
    let mut sim = Sim::new(plain_spec(vec![addr(1), addr(2)]));
    sim.behaviour.insert(addr(1), Behaviour::Refuse);
    let k = sim.accept();
    assert_eq!(sim.conn(k).upstream.as_ref().unwrap().0, addr(2));
    sim.client_send(k, b"x");
    assert_eq!(sim.conn(k).client.from_engine, b"x");
    let (retries, exhausted, refused) = sim.metrics.service(0).retry_figures();
    assert_eq!(
        (retries, exhausted, refused),
        (sim.connects.len() as u64 - 1, 0, 0)
    );
    assert!(sim.connects.contains(&addr(1)) || retries == 0);
}

#[test]
fn a_connect_that_hangs_times_out_and_is_retried() {
    let mut sim = Sim::new(plain_spec(vec![addr(1), addr(2)]));
    sim.behaviour.insert(addr(1), Behaviour::Blackhole);
    sim.behaviour.insert(addr(2), Behaviour::Blackhole);
    let k = sim.accept();
    let first = sim.connects[0];
    sim.behaviour.insert(
        if first == addr(1) { addr(2) } else { addr(1) },
        Behaviour::Accept,
    );
    sim.advance(Duration::from_millis(999));
    assert_eq!(sim.connects.len(), 1, "still waiting on the first attempt");
    sim.advance(Duration::from_millis(2));
    assert_eq!(sim.connects.len(), 2, "timed out and retried");
    assert_ne!(sim.connects[1], first);
    sim.client_send(k, b"ok");
    assert_eq!(sim.conn(k).client.from_engine, b"ok");
}

#[test]
fn the_idle_timeout_closes_a_quiet_connection() {
    let mut spec = plain_spec(vec![addr(1)]);
    spec.timeouts.idle = Duration::from_secs(30);
    // The client's first byte comes at 20 s; the first-byte timeout is
    // not what this test is about.
    spec.timeouts.first_byte = Duration::from_secs(60);
    let mut sim = Sim::new(spec);
    let k = sim.accept();
    sim.advance(Duration::from_secs(20));
    sim.client_send(k, b"keepalive");
    sim.advance(Duration::from_secs(20));
    assert_eq!(sim.conn(k).closed, None, "activity pushed the deadline");
    sim.advance(Duration::from_secs(11));
    assert_eq!(sim.conn(k).closed, Some(false));
}

#[test]
fn the_connection_limit_pauses_and_resumes_accepting() {
    let mut spec = plain_spec(vec![addr(1)]);
    spec.max_connections = 2;
    let mut sim = Sim::new(spec);
    let a = sim.accept();
    assert!(!sim.paused[0]);
    let _b = sim.accept();
    assert!(sim.paused[0]);
    assert!(!sim.engine.accepting(0));
    sim.client_fin(a);
    assert_eq!(sim.conn(a).closed, Some(false));
    assert!(!sim.paused[0]);
    assert!(sim.engine.accepting(0));
}

#[test]
fn drain_stops_accepting_and_close_all_ends_the_rest() {
    let mut sim = Sim::new(plain_spec(vec![addr(1)]));
    let k = sim.accept();
    sim.engine.drain();
    sim.run();
    assert!(sim.paused[0]);
    sim.client_send(k, b"still served");
    assert_eq!(sim.conn(k).client.from_engine, b"still served");
    sim.engine.close_all(sim.now);
    sim.run();
    assert_eq!(sim.conn(k).closed, Some(true));
    assert_eq!(sim.engine.live_connections(), 0);
}

#[test]
fn stale_completions_for_a_reused_slot_are_ignored() {
    let mut sim = Sim::new(plain_spec(vec![addr(1)]));
    let a = sim.accept();
    sim.client_fin(a);
    let b = sim.accept();
    assert_eq!(a.index, b.index, "the slot is reused");
    assert_ne!(a.generation, b.generation);
    // A late completion for the old connection changes nothing.
    sim.engine.received(a, Leg::Client, b"ghost", sim.now);
    sim.engine.connected(a, 1, Err(libc::ECONNREFUSED), sim.now);
    sim.run();
    assert!(sim.upstream(b).from_engine.is_empty());
    assert_eq!(sim.conn(b).closed, None);
}

#[test]
fn a_late_answer_to_a_timed_out_connect_is_ignored() {
    let mut sim = Sim::new(plain_spec(vec![addr(1)]));
    sim.behaviour.insert(addr(1), Behaviour::Blackhole);
    let k = sim.accept();
    sim.advance(Duration::from_millis(1001));
    // The retry went to the same (only) endpoint and hangs too; the first
    // attempt's answer arrives late and must not count as the second's.
    assert_eq!(sim.connects.len(), 2);
    let retried = sim.conns[&k].connecting.unwrap().1;
    assert_eq!(retried, 2);
    sim.engine.connected(k, 1, Ok(()), sim.now);
    sim.run();
    assert!(
        sim.conns[&k].connecting.is_some(),
        "still waiting on attempt 2"
    );
    sim.answer_connect(k, true);
    sim.client_send(k, b"finally");
    assert_eq!(sim.conn(k).client.from_engine, b"finally");
}

fn rr_spec(endpoints: Vec<SocketAddr>) -> ServiceSpec {
    let mut spec = plain_spec(endpoints);
    spec.pool.balancer = crate::pool::Balancer::RoundRobin;
    spec
}

#[test]
fn an_endpoint_that_keeps_refusing_is_ejected_then_probed_back() {
    let mut sim = Sim::new(rr_spec(vec![addr(1), addr(2)]));
    sim.behaviour.insert(addr(1), Behaviour::Refuse);
    // Every client is served (retried onto addr 2) while addr 1 fails.
    let ejected = |sim: &Sim| {
        matches!(
            sim.engine.pool(0).state(EndpointId(0), sim.now),
            crate::pool::EndpointState::Ejected { .. }
        )
    };
    for _ in 0..50 {
        if ejected(&sim) {
            break;
        }
        let k = sim.accept();
        assert_eq!(sim.conn(k).upstream.as_ref().unwrap().0, addr(2));
        assert_eq!(sim.conn(k).closed, None);
    }
    assert!(ejected(&sim));
    let refused = sim.connects.iter().filter(|&&a| a == addr(1)).count();
    assert_eq!(refused, 7, "ejected at the seventh consecutive failure");
    assert_eq!(sim.metrics.service(0).endpoint(0).state(), "ejected");
    assert_eq!(sim.metrics.service(0).endpoint(0).ejections(), 1);
    // Ejected: no more attempts on it.
    let before = sim.connects.len();
    for _ in 0..4 {
        sim.accept();
    }
    assert_eq!(sim.connects.len(), before + 4);
    assert!(sim.connects[before..].iter().all(|&a| a == addr(2)));
    // It comes back; after the backoff (1 s, up to +50% jitter) a probe
    // finds it healthy.
    sim.behaviour.insert(addr(1), Behaviour::Accept);
    sim.advance(Duration::from_millis(1600));
    for _ in 0..4 {
        sim.accept();
    }
    assert!(sim.connects[before + 4..].contains(&addr(1)), "probed back");
    assert!(matches!(
        sim.engine.pool(0).state(EndpointId(0), sim.now),
        crate::pool::EndpointState::Healthy
    ));
}

#[test]
fn when_every_endpoint_is_ejected_clients_are_refused_fast() {
    let mut sim = Sim::new(rr_spec(vec![addr(1)]));
    sim.behaviour.insert(addr(1), Behaviour::Refuse);
    let mut refused = 0;
    for _ in 0..20 {
        let k = sim.accept();
        if sim.conn(k).closed == Some(true) {
            refused += 1;
        }
    }
    assert_eq!(refused, 20, "each client is reset, none hangs");
    let (_, _, no_endpoint) = sim.metrics.service(0).retry_figures();
    assert!(no_endpoint > 0, "after ejection, refusals need no connect");
    let attempts = sim.connects.len();
    let k = sim.accept();
    assert_eq!(sim.conn(k).closed, Some(true));
    assert_eq!(sim.connects.len(), attempts, "refused without a connect");
}

#[test]
fn retries_stop_when_the_budget_is_spent() {
    let mut spec = rr_spec(vec![addr(1), addr(2), addr(3)]);
    spec.pool.failures_to_eject = 0; // never eject: only the budget limits
    spec.pool.budget.min_per_sec = 0;
    spec.pool.budget.ratio = 0.2;
    let mut sim = Sim::new(spec);
    for a in [addr(1), addr(2), addr(3)] {
        sim.behaviour.insert(a, Behaviour::Refuse);
    }
    for _ in 0..50 {
        sim.accept();
    }
    let (retries, exhausted, _) = sim.metrics.service(0).retry_figures();
    // 50 connections deposit 10 retries' worth.
    assert!((9..=10).contains(&retries), "retries {retries}");
    assert!(exhausted >= 40, "exhausted {exhausted}");
}

/// Whether `a` and `b` (address, length) overlap.
pub(crate) fn overlap(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

#[test]
fn a_chunk_with_a_send_in_flight_is_not_lent_again_until_the_send_is_cancelled() {
    let mut sim = Sim::new(plain_spec(vec![addr(1)]));
    sim.echo = false;
    // Connection a: its client stops reading, so a send towards it stays in
    // the "kernel" with a pointer into a's outbox chunk.
    let a = sim.accept();
    sim.conns.get_mut(&a).unwrap().client.stalled = true;
    sim.upstream(a).to_engine.extend(b"secret for a only");
    sim.run();
    let held = sim.conn(a).client.in_flight.expect("a send is held");
    // The upstream resets: a closes while that send is still in flight.
    sim.engine
        .recv_failed(a, Leg::Upstream, libc::ECONNRESET, sim.now);
    sim.run();
    assert_eq!(sim.conn(a).closed, Some(true));
    assert_eq!(sim.engine.live_connections(), 1, "a is not released yet");
    assert!(
        sim.engine.buffers_in_use() >= 1,
        "the chunk the kernel may still read is still lent to a"
    );
    // Connection b now moves bytes both ways; none of its sends may point
    // into the chunk a's send still reads from.
    let b = sim.accept();
    for i in 0..8u8 {
        sim.client_send(b, &[i; 1000]);
        sim.upstream(b).to_engine.extend([i; 700]);
        sim.run();
        for leg in [Leg::Client, Leg::Upstream] {
            let out = sim.engine.outgoing(b, leg);
            if !out.is_empty() {
                let range = (out.as_ptr() as usize, out.len());
                assert!(!overlap(range, held), "b writes into a's in-flight send");
            }
        }
    }
    // Sends b made while stalled are checked the same way.
    sim.upstream(b).stalled = true;
    sim.client_send(b, b"after");
    let b_held = sim.upstream(b).in_flight.expect("b's send is held");
    assert!(!overlap(b_held, held), "b's send points into a's chunk");
    // Once the kernel has cancelled a's send, a is released and its chunk
    // goes back.
    let before = sim.engine.buffers_in_use();
    sim.cancel_held_sends();
    assert_eq!(sim.engine.live_connections(), 1, "only b is left");
    assert!(sim.engine.buffers_in_use() < before, "a's chunk went back");
}

#[test]
fn a_client_that_never_speaks_is_closed_at_the_first_byte_timeout() {
    let mut spec = plain_spec(vec![addr(1)]);
    spec.timeouts.first_byte = Duration::from_secs(5);
    let mut sim = Sim::new(spec);
    let silent = sim.accept();
    let talker = sim.accept();
    sim.advance(Duration::from_secs(3));
    sim.client_send(talker, b"hello");
    sim.advance(Duration::from_millis(1999));
    assert_eq!(sim.conn(silent).closed, None);
    sim.advance(Duration::from_millis(2));
    assert_eq!(sim.conn(silent).closed, Some(false), "no first byte in 5 s");
    assert_eq!(sim.metrics.service(0).first_byte_timeouts(), 1);
    // The one that spoke lives on, to its idle timeout.
    sim.advance(Duration::from_secs(60));
    assert_eq!(sim.conn(talker).closed, None);
    let text = crate::metrics::render(&[&sim.metrics]);
    assert!(
        text.contains("causeway_terminator_first_byte_timeouts_total{service=\"demo\"} 1"),
        "{text}"
    );
}

#[test]
fn the_per_client_cap_refuses_the_next_connection_and_counts_it() {
    let mut spec = plain_spec(vec![addr(1)]);
    spec.max_connections_per_client = 2;
    let mut sim = Sim::new(spec);
    let a = sim.accept_from([10, 1, 0, 2]);
    let _b = sim.accept_from([10, 1, 0, 2]);
    let third = sim.accept_from([10, 1, 0, 2]);
    assert_eq!(sim.conn(third).closed, Some(true), "reset at once");
    assert!(
        sim.conn(third).upstream.is_none(),
        "never reached an upstream"
    );
    let other = sim.accept_from([10, 1, 0, 3]);
    assert_eq!(
        sim.conn(other).closed,
        None,
        "another address is not capped"
    );
    let metrics = sim.metrics.clone();
    let m = metrics.service(0);
    assert_eq!(m.refusals(Refusal::ClientLimit), 1);
    // One closes: the address may open one more.
    sim.client_fin(a);
    assert_eq!(sim.conn(a).closed, Some(false));
    let again = sim.accept_from([10, 1, 0, 2]);
    assert_eq!(sim.conn(again).closed, None);
    let fourth = sim.accept_from([10, 1, 0, 2]);
    assert_eq!(sim.conn(fourth).closed, Some(true));
    assert_eq!(m.refusals(Refusal::ClientLimit), 2);
    let text = crate::metrics::render(&[&sim.metrics]);
    assert!(
        text.contains(
            "causeway_terminator_refused_total{service=\"demo\",reason=\"client_limit\"} 2"
        ),
        "{text}"
    );
}

#[test]
fn no_descriptor_for_an_upstream_socket_is_local_pressure_never_the_endpoints_fault() {
    let mut spec = plain_spec(vec![addr(1)]);
    spec.pool.failures_to_eject = 2;
    let mut sim = Sim::new(spec);
    sim.behaviour.insert(addr(1), Behaviour::Blackhole);
    for _ in 0..5 {
        let k = sim.accept();
        // The driver's socket() said EMFILE for this attempt.
        sim.conns.get_mut(&k).unwrap().connecting = None;
        sim.engine.connect_no_descriptor(k, 1, sim.now);
        sim.run();
        assert_eq!(sim.conn(k).closed, Some(true), "the client is reset");
    }
    let m = sim.metrics.service(0);
    assert_eq!(m.fd_exhaustions(FdStage::Connect), 5);
    assert_eq!(
        m.retry_figures().0,
        0,
        "no retry: any endpoint would meet the same limit"
    );
    assert_eq!(m.endpoint(0).ejections(), 0, "never an ejection");
    assert_eq!(
        sim.engine.pool(0).state(EndpointId(0), sim.now),
        crate::pool::EndpointState::Healthy
    );
}
