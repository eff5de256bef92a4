//! The terminator's proxy logic, sans-IO: connections in, IO requests out.
//!
//! One [`Engine`] per worker owns every connection that worker accepted,
//! the worker's upstream pool per service and its timers. A driver (io_uring
//! in production, tokio where io_uring is unavailable, a simulated network
//! in tests) feeds it what happened — a connection accepted, bytes
//! received, a send or connect completed, time passed — and carries out the
//! [`Io`] requests it queues. Everything the issue calls "proxy logic"
//! lives here and is tested on virtual time: the TLS handshakes (rustls is
//! itself sans-IO), half-close in each direction, the handshake, connect and
//! idle timeouts, retries within the budget, ejection and probing (through
//! [`crate::pool::Pool`]).
//!
//! A connection has two legs: the client leg (the accepted socket) and the
//! upstream leg (the socket the engine asks the driver to connect). Each leg
//! is plain TCP or TLS; which is set by the service's mode. Bytes move
//! client → upstream and upstream → client through per-leg inboxes and
//! outboxes ([`crate::buf::Buf`]), each at most one chunk: a leg reads only
//! when its inbox is empty, so a slow peer stops the other side's reads and
//! TCP's own flow control does the rest. Memory per connection is bounded
//! by four chunks plus rustls's state.
//!
//! Some listeners read the client's first bytes before a service is
//! chosen ([`ListenerSpec`]): an address shared by services told apart by
//! the ClientHello's server name (SNI), and a PostgreSQL service, whose
//! client asks for TLS with an SSLRequest first. Such a connection starts
//! in a Hello phase (`conn/hello.rs`) and belongs to no service until its
//! ClientHello names one; a refusal there is counted against the listener.

#[cfg(test)]
mod access_log_tests;
#[cfg(test)]
mod alpn_tests;
mod conn;
#[cfg(test)]
mod pg_tests;
#[cfg(test)]
mod proxy_tests;
mod route;
#[cfg(test)]
mod sni_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    access_log::{AccessLogSender, CloseReason},
    buf::BufPool,
    identity::{ClientTls, ServerTls},
    ktls::KtlsSupport,
    metrics::{FdStage, ListenerRefusal, Refusal, WorkerMetrics},
    pool::{EndpointId, Pool, PoolConfig},
};

use conn::{Conn, FailedOp};
pub use route::ListenerSpec;
use route::Router;

/// Whether `errno`, from `accept` or `socket`, means this process or the
/// system ran out of something local: descriptors (`EMFILE` per process,
/// `ENFILE` system-wide) or socket memory (`ENOBUFS`, `ENOMEM`). Such a
/// failure says nothing about the client or the upstream.
#[must_use]
pub fn is_local_exhaustion(errno: i32) -> bool {
    matches!(
        errno,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
    )
}

/// Which socket of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The accepted socket, towards the client.
    Client = 0,
    /// The socket the terminator connected, towards the upstream endpoint.
    Upstream = 1,
}

impl Leg {
    /// The other leg.
    #[must_use]
    pub fn other(self) -> Self {
        match self {
            Self::Client => Self::Upstream,
            Self::Upstream => Self::Client,
        }
    }
}

/// A connection's handle: a slot index and the generation of the slot, so
/// that a late completion for a connection that is gone is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    /// Slot in the engine's table (and the driver's).
    pub index: u32,
    /// Bumped each time the slot is reused.
    pub generation: u32,
}

/// What the engine asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Io {
    /// Receive on `leg` (one receive at a time per leg); report with
    /// [`Engine::received`] or [`Engine::recv_failed`].
    Recv { conn: ConnKey, leg: Leg },
    /// Send [`Engine::outgoing`] on `leg`; report with [`Engine::sent`] or
    /// [`Engine::send_failed`]. The bytes stay where they are, unchanged,
    /// until then, or until [`Engine::released`] if the connection closes
    /// first: the driver may hand the kernel a pointer into them.
    Send { conn: ConnKey, leg: Leg },
    /// Open a socket and connect it to `addr` as the upstream leg; report
    /// with [`Engine::connected`], quoting `attempt`.
    Connect {
        conn: ConnKey,
        addr: SocketAddr,
        attempt: u32,
    },
    /// Shut down the writing half of `leg` (TCP FIN).
    Shutdown { conn: ConnKey, leg: Leg },
    /// Give up the upstream leg's current attempt: cancel what is in flight
    /// on it and close its socket. Completions for it may still arrive and
    /// are ignored.
    Abort { conn: ConnKey },
    /// Close both legs (`reset`: with an RST, for refusals and errors).
    /// When nothing is in flight any more, call [`Engine::released`].
    Close { conn: ConnKey, reset: bool },
    /// Stop accepting on `service` (it is at its connection limit, or
    /// draining).
    PauseAccept { service: usize },
    /// Accept on `service` again.
    ResumeAccept { service: usize },
}

/// How a service's legs are secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain TCP both ways (a balancing TCP proxy).
    Plain,
    /// TLS or mTLS from the client, plain TCP to the upstream.
    Terminate,
    /// Plain TCP from the client, mTLS to the upstream.
    Originate,
    /// mTLS on both legs.
    TerminateOriginate,
}

/// Timeouts of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// One upstream connect attempt (TCP, and TLS when originating).
    pub connect: Duration,
    /// The client's TLS handshake, from its accept.
    pub handshake: Duration,
    /// From when the client may send data (accept, or the end of its TLS
    /// handshake) to its first byte of data.
    pub first_byte: Duration,
    /// No byte either way for this long closes the connection.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            // Linkerd's default connect timeout; Envoy's 5 s is for WANs.
            connect: Duration::from_secs(1),
            handshake: Duration::from_secs(10),
            first_byte: Duration::from_secs(10),
            // Envoy's tcp_proxy default idle timeout.
            idle: Duration::from_secs(3600),
        }
    }
}

/// What the engine says in its ClientHello to an upstream (originate
/// modes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamHello {
    /// The server name sent as SNI; `None`: none (the upstream is dialled
    /// by address, and rustls sends no SNI for an address). The upstream
    /// is verified by chain and SPIFFE ID whatever this says.
    pub server_name: Option<String>,
    /// ALPN protocols offered, most preferred first. Empty: the protocol
    /// negotiated with the client, if the client leg is TLS and one was
    /// (ALPN forwarded); otherwise none.
    pub alpn: Vec<Vec<u8>>,
}

/// The PROXY protocol v2 ([`crate::proxy`]) on a service's legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// The address the service listens on: the destination named in the
    /// header sent upstream, unless a trusted header named another.
    pub local: SocketAddr,
    /// Send a header to each upstream connection, before anything else
    /// (before the TLS ClientHello, originating).
    pub send: bool,
    /// Sources (load balancers) whose header is read first, and whose
    /// client address then stands for the connection's. A client from
    /// elsewhere that starts with a header is refused. Empty: no header
    /// is read or looked for.
    pub trusted: Vec<crate::proxy::Cidr>,
}

impl ProxyProtocol {
    /// Neither sent nor read.
    #[must_use]
    pub fn off(local: SocketAddr) -> Self {
        Self {
            local,
            send: false,
            trusted: Vec::new(),
        }
    }
}

/// One service as the engine needs it.
#[derive(Clone)]
pub struct ServiceSpec {
    /// The service's name, for metrics and logs.
    pub name: String,
    /// TLS towards clients (terminate modes).
    pub server_tls: Option<Arc<ServerTls>>,
    /// TLS towards upstreams (originate modes).
    pub client_tls: Option<Arc<ClientTls>>,
    /// The SNI and ALPN offered to upstreams (originate modes).
    pub upstream_hello: UpstreamHello,
    /// The PROXY protocol towards upstreams and from load balancers.
    pub proxy: ProxyProtocol,
    /// The upstream endpoints.
    pub endpoints: Vec<SocketAddr>,
    /// Balancer, ejection and retry budget.
    pub pool: PoolConfig,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Connections this worker holds open at most; beyond, it stops
    /// accepting until one closes.
    pub max_connections: usize,
    /// Connections one client address holds open at most on this worker;
    /// beyond, new ones are reset at once and counted.
    pub max_connections_per_client: usize,
}

impl ServiceSpec {
    /// The mode the TLS settings amount to.
    #[must_use]
    pub fn mode(&self) -> Mode {
        match (self.server_tls.is_some(), self.client_tls.is_some()) {
            (false, false) => Mode::Plain,
            (true, false) => Mode::Terminate,
            (false, true) => Mode::Originate,
            (true, true) => Mode::TerminateOriginate,
        }
    }
}

/// A service's live state in one worker.
pub(crate) struct Service {
    pub(crate) spec: ServiceSpec,
    /// `spec.name`, shared into access log records.
    pub(crate) name: Arc<str>,
    pub(crate) pool: Pool,
    pub(crate) open: usize,
    pub(crate) paused: bool,
    /// Open connections per client address (entries at zero are removed).
    pub(crate) per_client: HashMap<IpAddr, usize>,
    /// Present when this service's listener is shared by several services
    /// (or routes by SNI, or speaks PostgreSQL): how its clients are told
    /// apart.
    pub(crate) router: Option<Router>,
    /// The PostgreSQL form of `spec.server_tls`'s current config (with
    /// ALPN `postgresql`), and the config it was made from: made again
    /// only when the material reloads.
    pub(crate) postgres_tls: Option<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>)>,
}

enum Slot {
    Free { generation: u32 },
    Busy(Box<Conn>),
}

/// Shared state a connection needs while it runs, borrowed alongside it.
pub(crate) struct Ctx<'a> {
    pub(crate) services: &'a mut [Service],
    pub(crate) bufs: &'a mut BufPool,
    pub(crate) io: &'a mut VecDeque<Io>,
    pub(crate) metrics: &'a WorkerMetrics,
    pub(crate) scratch: &'a mut [u8],
    pub(crate) access_log: Option<&'a AccessLogSender>,
    pub(crate) ktls: KtlsSupport,
}

/// All connections of one worker.
pub struct Engine {
    services: Vec<Service>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    bufs: BufPool,
    io: VecDeque<Io>,
    timers: BinaryHeap<Reverse<(Instant, ConnKey)>>,
    metrics: Arc<WorkerMetrics>,
    scratch: Box<[u8]>,
    draining: bool,
    live: usize,
    access_log: Option<AccessLogSender>,
    ktls: KtlsSupport,
}

impl Engine {
    /// An engine for `services`, counting into `metrics`; `seed` feeds the
    /// balancers' randomness (differs per worker).
    #[must_use]
    pub fn new(
        services: Vec<ServiceSpec>,
        seed: u64,
        now: Instant,
        metrics: Arc<WorkerMetrics>,
    ) -> Self {
        let services = services
            .into_iter()
            .enumerate()
            .map(|(i, spec)| Service {
                pool: Pool::new(
                    spec.endpoints.clone(),
                    spec.pool,
                    seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    now,
                ),
                name: Arc::from(spec.name.as_str()),
                spec,
                open: 0,
                paused: false,
                per_client: HashMap::new(),
                router: None,
                postgres_tls: None,
            })
            .collect();
        Self {
            services,
            slots: Vec::new(),
            free: Vec::new(),
            bufs: BufPool::new(256),
            io: VecDeque::new(),
            timers: BinaryHeap::new(),
            metrics,
            scratch: vec![0; crate::buf::CHUNK].into_boxed_slice(),
            draining: false,
            live: 0,
            access_log: None,
            ktls: KtlsSupport::Unprobed,
        }
    }

    /// What [`crate::ktls::probe`] found: each TLS leg counts which record
    /// path it takes, and why, from it.
    #[must_use]
    pub fn with_ktls(mut self, support: KtlsSupport) -> Self {
        self.ktls = support;
        self
    }

    /// Offers a record of each connection that closes to `log`.
    #[must_use]
    pub fn with_access_log(mut self, log: Option<AccessLogSender>) -> Self {
        self.access_log = log;
        self
    }

    /// Routes the clients of `listeners` by the server name of their
    /// ClientHello (see [`ListenerSpec`]); listener `i` counts into the
    /// metrics' listener `i` ([`WorkerMetrics::with_listeners`]).
    ///
    /// # Panics
    ///
    /// A listener names a service this engine does not have.
    #[must_use]
    pub fn with_listeners(mut self, listeners: &[ListenerSpec]) -> Self {
        for (i, l) in listeners.iter().enumerate() {
            let n = self.services.len();
            let names = l.names.iter().map(|(_, s)| s);
            assert!(
                names
                    .chain(l.default.iter())
                    .chain([&l.accepts_for])
                    .all(|&s| s < n),
                "a listener names a service the engine does not have"
            );
            self.services[l.accepts_for].router = Some(Router::new(l, i));
        }
        self
    }

    /// The next thing to do, if any.
    pub fn poll_io(&mut self) -> Option<Io> {
        self.io.pop_front()
    }

    /// Whether `service` takes new connections now.
    #[must_use]
    pub fn accepting(&self, service: usize) -> bool {
        !self.draining && !self.services[service].paused
    }

    /// Connections not yet released.
    #[must_use]
    pub fn live_connections(&self) -> usize {
        self.live
    }

    /// Buffer chunks lent to connections right now.
    #[must_use]
    pub fn buffers_in_use(&self) -> usize {
        self.bufs.lent()
    }

    /// The pool of `service` (for metrics and tests).
    #[must_use]
    pub fn pool(&self, service: usize) -> &Pool {
        &self.services[service].pool
    }

    /// The client identity of `conn`, once its TLS handshake is done.
    #[must_use]
    pub fn identity(&self, conn: ConnKey) -> Option<&str> {
        self.conn(conn).and_then(|c| c.identity.as_deref())
    }

    /// The client of `conn`: its socket's peer, or the address a trusted
    /// load balancer's PROXY header named.
    #[must_use]
    pub fn client(&self, conn: ConnKey) -> Option<SocketAddr> {
        self.conn(conn).map(|c| c.client)
    }

    /// The application protocol `conn`'s client negotiated with ALPN,
    /// once its TLS handshake is done (`None`: none was).
    #[must_use]
    pub fn alpn(&self, conn: ConnKey) -> Option<&[u8]> {
        self.conn(conn).and_then(|c| c.alpn.as_deref())
    }

    /// The application protocol `conn`'s upstream leg negotiated with
    /// ALPN, once its TLS handshake is done (originate modes).
    #[must_use]
    pub fn upstream_alpn(&self, conn: ConnKey) -> Option<&[u8]> {
        self.conn(conn).and_then(Conn::upstream_alpn)
    }

    /// A connection was accepted on `service` from `peer`. One over the
    /// service's per-client cap is closed at once (reset), counted as
    /// refused: carry out the queued [`Io::Close`] as for any other.
    pub fn accepted(&mut self, service: usize, peer: SocketAddr, now: Instant) -> ConnKey {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::Free { generation: 0 });
            (self.slots.len() - 1) as u32
        });
        let generation = match &self.slots[index as usize] {
            Slot::Free { generation } => generation.wrapping_add(1),
            Slot::Busy(_) => unreachable!("a free index names a free slot"),
        };
        let key = ConnKey { index, generation };
        self.live += 1;
        let svc = &mut self.services[service];
        svc.open += 1;
        let mut conn = Conn::new(key, service, &svc.spec, peer, now);
        let routed_later = svc.router.as_ref().map(|r| r.metrics);
        conn.routed = routed_later.is_none();
        let from_client = svc.per_client.entry(peer.ip()).or_default();
        let refuse = *from_client >= svc.spec.max_connections_per_client;
        if refuse {
            conn.refused = true;
        } else {
            *from_client += 1;
        }
        self.slots[index as usize] = Slot::Busy(Box::new(conn));
        let counters = self.metrics.service(service);
        // A client of a shared listener counts for its service once its
        // ClientHello chose one.
        if routed_later.is_none() {
            counters.accepted();
        }
        if svc.open >= svc.spec.max_connections && !svc.paused {
            svc.paused = true;
            counters.service_limit_reached();
            self.io.push_back(Io::PauseAccept { service });
        }
        if refuse {
            match routed_later {
                Some(l) => self
                    .metrics
                    .listener(l)
                    .refused(ListenerRefusal::ClientLimit),
                None => counters.refused(Refusal::ClientLimit),
            }
            tracing::debug!(%peer, "client at its connection cap; refused");
            self.with_conn(key, now, |c, cx| {
                c.close(cx, true, CloseReason::Refused, now);
            });
        } else {
            self.with_conn(key, now, |c, cx| c.start(cx, now));
        }
        key
    }

    /// Bytes arrived on `leg` (`data` empty: the peer sent FIN).
    pub fn received(&mut self, conn: ConnKey, leg: Leg, data: &[u8], now: Instant) {
        self.with_conn(conn, now, |c, cx| c.on_received(cx, leg, data, now));
    }

    /// A receive on `leg` failed with `errno`.
    pub fn recv_failed(&mut self, conn: ConnKey, leg: Leg, errno: i32, now: Instant) {
        self.with_conn(conn, now, |c, cx| {
            c.on_io_error(cx, leg, FailedOp::Recv, errno, now);
        });
    }

    /// `n` bytes of [`Engine::outgoing`] on `leg` were sent.
    pub fn sent(&mut self, conn: ConnKey, leg: Leg, n: usize, now: Instant) {
        self.with_conn(conn, now, |c, cx| c.on_sent(cx, leg, n, now));
    }

    /// A send on `leg` failed with `errno`.
    pub fn send_failed(&mut self, conn: ConnKey, leg: Leg, errno: i32, now: Instant) {
        self.with_conn(conn, now, |c, cx| {
            c.on_io_error(cx, leg, FailedOp::Send, errno, now);
        });
    }

    /// The upstream connect `attempt` finished (`Err(errno)` on failure).
    pub fn connected(
        &mut self,
        conn: ConnKey,
        attempt: u32,
        result: Result<(), i32>,
        now: Instant,
    ) {
        self.with_conn(conn, now, |c, cx| c.on_connected(cx, attempt, result, now));
    }

    /// The driver could not open the upstream socket for `attempt`: this
    /// process or the system is out of descriptors or socket memory (see
    /// [`is_local_exhaustion`]). Local pressure, not the endpoint's fault:
    /// the endpoint is not charged with a failure (so never ejected for
    /// it), no retry is made (any endpoint would meet the same limit), the
    /// client is reset and the shortage counted.
    pub fn connect_no_descriptor(&mut self, conn: ConnKey, attempt: u32, now: Instant) {
        self.with_conn(conn, now, |c, cx| c.on_no_socket(cx, attempt, now));
    }

    /// An accept on `service` failed for want of a descriptor (see
    /// [`is_local_exhaustion`]): counted; the driver backs off.
    pub fn accept_no_descriptor(&mut self, service: usize) {
        self.metrics.service(service).fd_exhausted(FdStage::Accept);
    }

    /// The bytes to send on `leg` (valid until the next call into the
    /// engine for this connection).
    #[must_use]
    pub fn outgoing(&self, conn: ConnKey, leg: Leg) -> &[u8] {
        self.conn(conn).map_or(&[], |c| c.outgoing(leg))
    }

    /// The driver closed both sockets of `conn` and nothing of it is in
    /// flight: its slot may be reused.
    pub fn released(&mut self, conn: ConnKey) {
        let Some(Slot::Busy(c)) = self.slots.get_mut(conn.index as usize) else {
            return;
        };
        if c.key != conn {
            return;
        }
        let mut c = std::mem::replace(
            &mut self.slots[conn.index as usize],
            Slot::Free {
                generation: conn.generation,
            },
        );
        if let Slot::Busy(c) = &mut c {
            c.release(&mut self.bufs);
        }
        self.free.push(conn.index);
        self.live -= 1;
    }

    /// When [`Engine::tick`] next has something to do.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Time has passed: fire the timeouts due by `now`.
    pub fn tick(&mut self, now: Instant) {
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.with_conn(key, now, |c, cx| {
                c.scheduled = None;
                c.on_timer(cx, now);
            });
        }
    }

    /// Stop accepting everywhere; connections run on until they end or
    /// [`Engine::close_all`].
    pub fn drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        for (service, s) in self.services.iter_mut().enumerate() {
            if !s.paused {
                s.paused = true;
                self.io.push_back(Io::PauseAccept { service });
            }
        }
    }

    /// Close every connection now (the end of a drain).
    pub fn close_all(&mut self, now: Instant) {
        let keys: Vec<ConnKey> = self
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Busy(c) => Some(c.key),
                Slot::Free { .. } => None,
            })
            .collect();
        for key in keys {
            self.with_conn(key, now, |c, cx| {
                c.close(cx, true, CloseReason::Shutdown, now);
            });
        }
    }

    fn conn(&self, key: ConnKey) -> Option<&Conn> {
        match self.slots.get(key.index as usize) {
            Some(Slot::Busy(c)) if c.key == key => Some(c),
            _ => None,
        }
    }

    /// Runs `f` on the connection `key` if it is still the same
    /// connection, then settles its timer and frees its service's accept
    /// slot if it closed.
    fn with_conn(&mut self, key: ConnKey, now: Instant, f: impl FnOnce(&mut Conn, &mut Ctx<'_>)) {
        let Some(Slot::Busy(c)) = self.slots.get_mut(key.index as usize) else {
            return;
        };
        if c.key != key {
            return;
        }
        let was_open = !c.closed;
        let mut cx = Ctx {
            services: &mut self.services,
            bufs: &mut self.bufs,
            io: &mut self.io,
            metrics: &self.metrics,
            scratch: &mut self.scratch,
            access_log: self.access_log.as_ref(),
            ktls: self.ktls,
        };
        f(c, &mut cx);
        if was_open && c.closed {
            // Accepts are limited per listener: give the slot back there.
            let service = c.listener;
            let s = &mut self.services[service];
            s.open -= 1;
            let ip = c.peer.ip();
            if let Some(n) = s.per_client.get_mut(&ip) {
                if !c.refused {
                    *n -= 1;
                }
                if *n == 0 {
                    s.per_client.remove(&ip);
                }
            }
            if s.paused && !self.draining && s.open < s.spec.max_connections {
                s.paused = false;
                self.io.push_back(Io::ResumeAccept { service });
            }
        }
        if let Some(at) = c.deadline(now)
            && c.scheduled.is_none_or(|s| at < s)
        {
            c.scheduled = Some(at);
            self.timers.push(Reverse((at, key)));
        }
    }
}

/// An endpoint chosen for a connect attempt, with when it started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    pub(crate) endpoint: EndpointId,
    pub(crate) number: u32,
    pub(crate) started: Instant,
}
