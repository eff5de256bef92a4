//! One proxied connection: two legs, the bytes between them, its timers.

mod hello;
mod proxy;

use std::{io::Read, net::SocketAddr, time::Instant};

use rustls::pki_types::ServerName;

use super::{Attempt, ConnKey, Ctx, Io, Leg, Mode, ServiceSpec, Timeouts};
use crate::{
    access_log::{AccessRecord, CloseReason},
    buf::{Buf, BufPool, BufWriter},
    identity::{self, HandshakeFailure},
    metrics::{FdStage, ListenerRefusal, Peer},
    pool::EndpointId,
};

/// Which operation of a leg failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailedOp {
    Recv,
    Send,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a trusted load balancer's PROXY header, before anything
    /// else.
    Proxy,
    /// Reading the client's ClientHello to choose a service (a listener
    /// shared by services told apart by SNI).
    Hello,
    /// The client's TLS handshake (terminate modes).
    Handshake,
    /// Connecting the upstream leg (and its TLS handshake, originating).
    Connecting,
    /// Both legs up: bytes flow.
    Established,
    /// Sending a last TLS alert to the client, then closing.
    Failing,
    /// Closed; waiting for the driver to release the slot.
    Closed,
}

/// One leg's state.
#[derive(Default)]
struct Side {
    tls: Option<rustls::Connection>,
    /// Raw bytes received and not yet consumed (by rustls, or moved to the
    /// other leg).
    inbox: Buf,
    /// Raw bytes to send.
    outbox: Buf,
    /// A socket exists and is connected.
    open: bool,
    recv_armed: bool,
    send_armed: bool,
    /// TCP FIN seen.
    eof: bool,
    /// The peer sends no more: FIN (plain) or close_notify / FIN (TLS).
    read_done: bool,
    /// Our end is queued: close_notify (TLS) then FIN.
    write_done: bool,
    shutdown_sent: bool,
}

impl Side {
    fn release(&mut self, bufs: &mut BufPool) {
        self.inbox.release(bufs);
        self.outbox.release(bufs);
    }

    /// Gives back what no send can point into: the inbox always (receives
    /// land in the driver's buffers, never in it), the outbox only when no
    /// send from it is in flight. An outbox with a send in flight stays
    /// until [`Conn::release`], which the engine calls once the driver
    /// says the kernel has completed or cancelled everything.
    fn release_idle(&mut self, bufs: &mut BufPool) {
        self.inbox.release(bufs);
        if !self.send_armed {
            self.outbox.release(bufs);
        }
    }

    /// Whether rustls holds plaintext not yet taken.
    fn plaintext_pending(&mut self) -> bool {
        self.tls.as_mut().is_some_and(|t| {
            t.process_new_packets()
                .is_ok_and(|s| s.plaintext_bytes_to_read() > 0)
        })
    }

    /// Moves rustls's pending records into the outbox while it has room.
    fn flush_tls(&mut self, bufs: &mut BufPool) -> bool {
        let Some(tls) = &mut self.tls else {
            return false;
        };
        let mut moved = false;
        while tls.wants_write() {
            let mut w = BufWriter {
                buf: &mut self.outbox,
                pool: bufs,
            };
            match tls.write_tls(&mut w) {
                Ok(n) if n > 0 => moved = true,
                _ => break,
            }
        }
        moved
    }
}

/// A connection.
pub(crate) struct Conn {
    pub(crate) key: ConnKey,
    /// The service it belongs to: its listener's until its ClientHello
    /// chose one (see `routed`).
    pub(crate) service: usize,
    /// The service whose listener accepted it, which holds its accept
    /// slot and per-client count.
    pub(crate) listener: usize,
    /// Whether `service` is final: false while a shared listener's client
    /// has not yet named (by SNI) the service it wants. Nothing is counted
    /// for a service before.
    pub(crate) routed: bool,
    /// Reads the ClientHello in [`Phase::Hello`].
    acceptor: Option<Box<rustls::server::Acceptor>>,
    /// What [`Phase::Hello`] waits for.
    prelude: hello::Prelude,
    /// A PostgreSQL request's first bytes, while fewer than its length.
    pg_head: hello::PgHead,
    /// The socket's peer (per-client caps count it).
    pub(crate) peer: SocketAddr,
    /// The client: `peer`, or the source a trusted PROXY header named.
    pub(crate) client: SocketAddr,
    /// The address the client connected to: the service's, or the
    /// destination a trusted PROXY header named.
    local: SocketAddr,
    /// What is left to do with PROXY headers from the client.
    proxy: proxy::Inbound,
    /// A trusted PROXY header's bytes, while it is not whole.
    proxy_head: Vec<u8>,
    /// Why it ends if [`Phase::Failing`] ends it: a failed handshake, or
    /// a refusal.
    failing: CloseReason,
    /// Refused at accept (over the per-client cap): never started, not
    /// counted in the per-client table.
    pub(crate) refused: bool,
    /// When the client could start sending data: its accept, or the end of
    /// its TLS handshake. None: still handshaking.
    ready_at: Option<Instant>,
    /// The client has sent data (or FIN): the first-byte timeout is over.
    spoke: bool,
    mode: Mode,
    timeouts: Timeouts,
    opened: Instant,
    last_active: Instant,
    phase: Phase,
    sides: [Side; 2],
    /// Endpoints this connection failed to connect to.
    tried: Vec<EndpointId>,
    attempt: Option<Attempt>,
    attempts: u32,
    /// The endpoint of the established upstream leg.
    endpoint: Option<EndpointId>,
    pub(crate) identity: Option<String>,
    /// The application protocol the client negotiated with ALPN.
    pub(crate) alpn: Option<Vec<u8>>,
    /// Plaintext bytes moved from each leg to the other.
    moved: [u64; 2],
    /// Outboxes of abandoned upstream attempts whose send was in flight
    /// when the attempt was given up: the kernel may still read them until
    /// the cancel completes, so they go back to the pool only with the
    /// connection (at most one per attempt).
    retired: Vec<Buf>,
    /// When the engine's timer heap will next look at this connection.
    pub(crate) scheduled: Option<Instant>,
    pub(crate) closed: bool,
}

impl Conn {
    pub(crate) fn new(
        key: ConnKey,
        service: usize,
        spec: &ServiceSpec,
        peer: SocketAddr,
        now: Instant,
    ) -> Self {
        Self {
            key,
            service,
            listener: service,
            routed: true,
            acceptor: None,
            prelude: hello::Prelude::ClientHello,
            pg_head: hello::PgHead::default(),
            peer,
            client: peer,
            local: spec.proxy.local,
            proxy: proxy::Inbound::Done,
            proxy_head: Vec::new(),
            failing: CloseReason::HandshakeFailed,
            refused: false,
            ready_at: None,
            spoke: false,
            mode: spec.mode(),
            timeouts: spec.timeouts,
            opened: now,
            last_active: now,
            phase: Phase::Connecting,
            sides: Default::default(),
            tried: Vec::new(),
            attempt: None,
            attempts: 0,
            endpoint: None,
            identity: None,
            alpn: None,
            moved: [0; 2],
            retired: Vec::new(),
            scheduled: None,
            closed: false,
        }
    }

    fn terminates(&self) -> bool {
        matches!(self.mode, Mode::Terminate | Mode::TerminateOriginate)
    }

    fn originates(&self) -> bool {
        matches!(self.mode, Mode::Originate | Mode::TerminateOriginate)
    }

    /// The accepted connection begins: a trusted load balancer's PROXY
    /// header first, then a TLS handshake, or straight to the upstream.
    pub(crate) fn start(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        self.sides[Leg::Client as usize].open = true;
        let trusted = &cx.services[self.listener].spec.proxy.trusted;
        self.proxy = if trusted.is_empty() {
            proxy::Inbound::Done
        } else if trusted.iter().any(|c| c.contains(self.peer.ip())) {
            proxy::Inbound::Read
        } else {
            proxy::Inbound::Screen
        };
        if self.proxy == proxy::Inbound::Read {
            self.phase = Phase::Proxy;
        } else {
            self.begin(cx, now);
        }
        self.pump(cx, now);
    }

    /// What follows the accept, or a trusted PROXY header: the Hello
    /// phase, a TLS handshake, or a connect.
    fn begin(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        if !self.routed {
            self.acceptor = Some(Box::default());
            self.phase = Phase::Hello;
            if cx.services[self.listener]
                .router
                .as_ref()
                .is_some_and(|r| r.postgres)
            {
                self.prelude = hello::Prelude::Postgres;
            }
        } else if self.terminates() {
            let config = cx.services[self.service]
                .spec
                .server_tls
                .as_ref()
                .expect("terminate modes have server TLS")
                .current();
            match rustls::ServerConnection::new(config) {
                Ok(mut tls) => {
                    tls.set_buffer_limit(None);
                    self.sides[Leg::Client as usize].tls = Some(tls.into());
                    self.phase = Phase::Handshake;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a TLS session");
                    self.close(cx, true, CloseReason::Internal, now);
                }
            }
        } else {
            self.ready_at = Some(now);
            self.begin_connect(cx, false, now);
        }
    }

    /// Chooses an endpoint and asks for a connect, or refuses the client
    /// when there is none to choose or no retry budget left.
    fn begin_connect(&mut self, cx: &mut Ctx<'_>, retry: bool, now: Instant) {
        if self.closed {
            return;
        }
        let counters = cx.metrics.service(self.service);
        let svc = &mut cx.services[self.service];
        if retry {
            if !svc.pool.try_retry(now) {
                counters.budget_exhausted();
                tracing::debug!(peer = %self.peer, "retry budget exhausted; closing the client");
                self.close(cx, true, CloseReason::RetryBudget, now);
                return;
            }
            counters.retried();
        } else {
            svc.pool.on_new_connection(now);
        }
        let Some(endpoint) = svc.pool.pick(self.client.ip(), &self.tried, now) else {
            counters.no_endpoint();
            self.close(cx, true, CloseReason::NoEndpoint, now);
            return;
        };
        svc.pool.connect_started(endpoint, now);
        self.attempts += 1;
        self.attempt = Some(Attempt {
            endpoint,
            number: self.attempts,
            started: now,
        });
        self.phase = Phase::Connecting;
        cx.io.push_back(Io::Connect {
            conn: self.key,
            addr: svc.pool.addr(endpoint),
            attempt: self.attempts,
        });
    }

    /// The current attempt failed (refused, timed out, reset, or its TLS
    /// handshake failed): count it against the endpoint and retry
    /// elsewhere.
    fn attempt_failed(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        let svc = &mut cx.services[self.service];
        svc.pool.connect_failed(attempt.endpoint, now);
        cx.metrics
            .service(self.service)
            .endpoint(attempt.endpoint.0 as usize)
            .connect_failed(&svc.pool, attempt.endpoint, now);
        self.tried.push(attempt.endpoint);
        let up = &mut self.sides[Leg::Upstream as usize];
        if up.send_armed {
            // The abort cancels that send, but until its completion arrives
            // the kernel may still read the chunk.
            self.retired.push(std::mem::take(&mut up.outbox));
        }
        up.release(cx.bufs);
        *up = Side::default();
        cx.io.push_back(Io::Abort { conn: self.key });
        self.begin_connect(cx, true, now);
    }

    /// No socket could be opened for the upstream attempt: local pressure.
    pub(crate) fn on_no_socket(&mut self, cx: &mut Ctx<'_>, attempt: u32, now: Instant) {
        if self.phase != Phase::Connecting || self.attempt.is_none_or(|a| a.number != attempt) {
            return;
        }
        cx.metrics
            .service(self.service)
            .fd_exhausted(FdStage::Connect);
        tracing::debug!(
            peer = %self.peer,
            "no descriptor for an upstream socket; resetting the client (local pressure, not the upstream's fault)"
        );
        // Closing abandons the attempt: the endpoint is not charged.
        self.close(cx, true, CloseReason::NoDescriptor, now);
    }

    pub(crate) fn on_connected(
        &mut self,
        cx: &mut Ctx<'_>,
        attempt: u32,
        result: Result<(), i32>,
        now: Instant,
    ) {
        let Some(current) = self.attempt else {
            return;
        };
        if self.phase != Phase::Connecting || current.number != attempt {
            return;
        }
        if result.is_err() {
            self.attempt_failed(cx, now);
            return;
        }
        let latency = now.saturating_duration_since(current.started);
        let svc = &mut cx.services[self.service];
        svc.pool.connect_succeeded(current.endpoint, latency, now);
        let counters = cx.metrics.service(self.service);
        counters.connect_latency(latency);
        counters
            .endpoint(current.endpoint.0 as usize)
            .connected(&svc.pool, current.endpoint, now);
        let originates = self.originates();
        // The PROXY header goes first, before any TLS.
        let header = svc.spec.proxy.send.then(|| self.proxy_header());
        let up = &mut self.sides[Leg::Upstream as usize];
        up.open = true;
        if let Some(header) = header {
            up.outbox.append(cx.bufs, &header);
        }
        self.last_active = now;
        if originates {
            let config = svc
                .spec
                .client_tls
                .as_ref()
                .expect("originate modes have client TLS")
                .current();
            let hello = &svc.spec.upstream_hello;
            let name = match &hello.server_name {
                Some(n) => match ServerName::try_from(n.clone()) {
                    Ok(n) => n,
                    Err(e) => {
                        // Validation admits DNS names only.
                        tracing::warn!(name = n, error = %e, "not a server name; sending none");
                        ServerName::IpAddress(svc.pool.addr(current.endpoint).ip().into())
                    }
                },
                None => ServerName::IpAddress(svc.pool.addr(current.endpoint).ip().into()),
            };
            // The configured protocols, or the client's, forwarded.
            let alpn = if hello.alpn.is_empty() {
                self.alpn.iter().cloned().collect()
            } else {
                hello.alpn.clone()
            };
            match rustls::ClientConnection::new_with_alpn(config, name, alpn) {
                Ok(mut tls) => {
                    tls.set_buffer_limit(None);
                    up.tls = Some(tls.into());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start an upstream TLS session");
                    self.attempt_failed(cx, now);
                    return;
                }
            }
        } else {
            self.establish(cx, now);
        }
        self.pump(cx, now);
    }

    /// Both legs are up.
    fn establish(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        self.endpoint = Some(attempt.endpoint);
        self.phase = Phase::Established;
        if let Some(tls) = &self.sides[Leg::Upstream as usize].tls {
            count_record_path(cx, self.service, Peer::Upstream, tls);
        }
        self.last_active = now;
        cx.metrics.service(self.service).upstream_opened();
    }

    pub(crate) fn on_received(&mut self, cx: &mut Ctx<'_>, leg: Leg, data: &[u8], now: Instant) {
        let side = &mut self.sides[leg as usize];
        side.recv_armed = false;
        if self.closed || !side.open {
            return;
        }
        self.last_active = now;
        if leg == Leg::Client && self.ready_at.is_some() {
            self.spoke = true;
        }
        if data.is_empty() {
            side.eof = true;
            if side.tls.is_none() {
                side.read_done = true;
            }
            if leg == Leg::Upstream && self.phase == Phase::Connecting {
                // The upstream hung up in its TLS handshake.
                self.attempt_failed(cx, now);
                return;
            }
        } else {
            let n = side.inbox.append(cx.bufs, data);
            debug_assert_eq!(n, data.len(), "a leg receives only into an empty inbox");
            cx.metrics.service(self.service).read(peer(leg), n);
        }
        self.pump(cx, now);
    }

    pub(crate) fn on_sent(&mut self, cx: &mut Ctx<'_>, leg: Leg, n: usize, now: Instant) {
        let side = &mut self.sides[leg as usize];
        if !side.send_armed {
            return;
        }
        side.send_armed = false;
        side.outbox.consume(n.min(side.outbox.len()));
        // Nothing of it is in flight now: the room comes back.
        side.outbox.settle(cx.bufs);
        cx.metrics.service(self.service).wrote(peer(leg), n);
        if n > 0 {
            self.last_active = now;
        }
        self.pump(cx, now);
    }

    pub(crate) fn on_io_error(
        &mut self,
        cx: &mut Ctx<'_>,
        leg: Leg,
        op: FailedOp,
        errno: i32,
        now: Instant,
    ) {
        let side = &mut self.sides[leg as usize];
        // Only the operation that failed is over: a send may still be in
        // flight after a receive failed, and its chunk must stay lent.
        match op {
            FailedOp::Recv => side.recv_armed = false,
            FailedOp::Send => side.send_armed = false,
        }
        if self.closed {
            return;
        }
        if leg == Leg::Upstream && self.phase == Phase::Connecting {
            self.attempt_failed(cx, now);
            return;
        }
        tracing::debug!(peer = %self.peer, ?leg, errno, "socket error; closing");
        self.close(cx, true, CloseReason::SocketError, now);
    }

    pub(crate) fn on_timer(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        if self.closed {
            return;
        }
        match self.phase {
            Phase::Proxy | Phase::Hello | Phase::Handshake | Phase::Failing
                if now >= self.opened + self.timeouts.handshake =>
            {
                match self.phase {
                    Phase::Proxy => {
                        tracing::debug!(peer = %self.peer, "no whole PROXY header in time; refused");
                        self.count_proxy_refusal(cx, false);
                    }
                    Phase::Handshake => cx
                        .metrics
                        .service(self.service)
                        .handshake_failed(Peer::Client, "timeout"),
                    Phase::Hello => {
                        hello::count_refusal(cx, self.listener, ListenerRefusal::Timeout)
                    }
                    _ => {}
                }
                self.close(cx, true, CloseReason::HandshakeTimeout, now);
                return;
            }
            Phase::Connecting => {
                if let Some(a) = self.attempt
                    && now >= a.started + self.timeouts.connect
                {
                    cx.metrics
                        .service(self.service)
                        .endpoint(a.endpoint.0 as usize)
                        .timed_out();
                    self.attempt_failed(cx, now);
                    self.pump(cx, now);
                    return;
                }
            }
            _ => {}
        }
        if let Some(ready) = self.ready_at
            && !self.spoke
            && now >= ready + self.timeouts.first_byte
        {
            // Data that came with the handshake's last flight, or that
            // waits for an upstream still connecting, is a first byte too.
            self.spoke = self.moved[Leg::Client as usize] > 0
                || !self.sides[Leg::Client as usize].inbox.is_empty()
                || self.sides[Leg::Client as usize].plaintext_pending();
            if !self.spoke {
                cx.metrics.service(self.service).first_byte_closed();
                tracing::debug!(peer = %self.peer, "no first byte in time; closing");
                self.close(cx, false, CloseReason::FirstByteTimeout, now);
                return;
            }
        }
        if now >= self.last_active + self.timeouts.idle {
            cx.metrics.service(self.service).idle_closed();
            self.close(cx, false, CloseReason::IdleTimeout, now);
        }
    }

    /// When the connection next needs [`Conn::on_timer`].
    pub(crate) fn deadline(&self, _now: Instant) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let idle = self.last_active + self.timeouts.idle;
        let phase = match self.phase {
            Phase::Proxy | Phase::Hello | Phase::Handshake | Phase::Failing => {
                Some(self.opened + self.timeouts.handshake)
            }
            Phase::Connecting => self.attempt.map(|a| a.started + self.timeouts.connect),
            Phase::Established | Phase::Closed => None,
        };
        let first_byte = self
            .ready_at
            .filter(|_| !self.spoke)
            .map(|r| r + self.timeouts.first_byte);
        Some(
            [phase, first_byte]
                .into_iter()
                .flatten()
                .fold(idle, Instant::min),
        )
    }

    /// The protocol the upstream leg's TLS negotiated with ALPN.
    pub(crate) fn upstream_alpn(&self) -> Option<&[u8]> {
        self.sides[Leg::Upstream as usize]
            .tls
            .as_ref()
            .and_then(|t| t.alpn_protocol())
    }

    pub(crate) fn outgoing(&self, leg: Leg) -> &[u8] {
        self.sides[leg as usize].outbox.readable()
    }

    /// A TLS session on `leg` failed: count why, send rustls's alert to a
    /// client, fail the attempt of an upstream.
    fn tls_failed(&mut self, cx: &mut Ctx<'_>, leg: Leg, err: &rustls::Error, now: Instant) {
        let reason: HandshakeFailure = identity::classify(err);
        let counters = cx.metrics.service(self.service);
        counters.handshake_failed(peer(leg), reason.as_str());
        tracing::debug!(peer = %self.peer, ?leg, error = %err, reason = reason.as_str(), "TLS failed");
        match leg {
            Leg::Upstream if self.phase == Phase::Connecting => self.attempt_failed(cx, now),
            Leg::Upstream => self.close(cx, true, CloseReason::UpstreamTls, now),
            Leg::Client => {
                let side = &mut self.sides[Leg::Client as usize];
                side.flush_tls(cx.bufs);
                self.phase = Phase::Failing;
                // The upstream leg, if any, goes now; the client gets its
                // alert first.
                self.after_pump(cx, now);
            }
        }
    }

    /// Moves what can move, then arms the IO that is wanted.
    fn pump(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        for _ in 0..64 {
            if self.closed || self.phase == Phase::Failing {
                break;
            }
            let a = self.flow(cx, Leg::Client, now);
            let b = self.flow(cx, Leg::Upstream, now);
            if !(a || b) {
                break;
            }
        }
        self.after_pump(cx, now);
    }

    /// One step of moving bytes from leg `src` towards the other leg;
    /// whether anything moved.
    fn flow(&mut self, cx: &mut Ctx<'_>, src: Leg, now: Instant) -> bool {
        if self.closed || self.phase == Phase::Failing {
            return false;
        }
        if src == Leg::Client && !self.screen_proxy(cx, now) {
            return false;
        }
        if self.phase == Phase::Proxy {
            return src == Leg::Client && self.read_proxy(cx, now);
        }
        if self.phase == Phase::Hello {
            return src == Leg::Client && self.read_hello(cx, now);
        }
        let mut moved = false;
        // 1. Raw bytes into rustls.
        let side = &mut self.sides[src as usize];
        if let Some(tls) = &mut side.tls {
            if !side.inbox.is_empty() && tls.wants_read() {
                let mut rd = side.inbox.readable();
                let before = rd.len();
                let _ = tls.read_tls(&mut rd);
                let n = before - rd.len();
                side.inbox.consume(n);
                moved |= n > 0;
                match tls.process_new_packets() {
                    Err(e) => {
                        self.tls_failed(cx, src, &e, now);
                        return false;
                    }
                    Ok(state) => {
                        if state.peer_has_closed() {
                            side.read_done = true;
                        }
                    }
                }
            } else if !side.inbox.is_empty() && !tls.wants_read() && side.read_done {
                // Bytes after close_notify mean nothing.
                let n = side.inbox.len();
                side.inbox.consume(n);
            }
            if side.eof && side.inbox.is_empty() {
                side.read_done = true;
            }
            moved |= side.flush_tls(cx.bufs);
            let handshaking = side.tls.as_ref().is_some_and(|t| t.is_handshaking());
            if !handshaking {
                match (src, self.phase) {
                    (Leg::Client, Phase::Handshake) => {
                        self.handshake_done(cx, now);
                        moved = true;
                    }
                    (Leg::Upstream, Phase::Connecting) if self.attempt.is_some() => {
                        self.establish(cx, now);
                        moved = true;
                    }
                    _ => {}
                }
            } else if side.eof && side.inbox.is_empty() {
                // EOF in the middle of a handshake.
                match src {
                    Leg::Client => {
                        cx.metrics
                            .service(self.service)
                            .handshake_failed(Peer::Client, "eof");
                        self.close(cx, false, CloseReason::HandshakeFailed, now);
                    }
                    Leg::Upstream => self.attempt_failed(cx, now),
                }
                return false;
            }
        }
        if self.closed {
            return moved;
        }
        // 2. Plaintext across.
        let dst = src.other();
        if self.phase != Phase::Established || self.sides[dst as usize].write_done {
            return moved;
        }
        let room = {
            let d = &self.sides[dst as usize];
            match &d.tls {
                Some(t) if t.wants_write() || t.is_handshaking() => 0,
                // What rustls makes of it must fit the outbox, so that
                // rustls holds nothing back (its buffer is unlimited).
                Some(_) => {
                    let room = crate::buf::plaintext_room(d.outbox.room());
                    let s = &self.sides[src as usize];
                    if s.tls.is_none() && s.inbox.len() > room {
                        // Only full-size records while more is waiting: a
                        // short one now would be one more record, segment
                        // and send for the same bytes.
                        room - room % crate::buf::RECORD_PLAINTEXT
                    } else {
                        room
                    }
                }
                None => d.outbox.room(),
            }
        };
        if room == 0 {
            return moved;
        }
        let (s, d) = split(&mut self.sides, src);
        // rustls hands its records over one by one: the chunk is chosen
        // for all of them here, before the first.
        let plain = match &s.tls {
            Some(_) => room,
            None => s.inbox.len().min(room),
        };
        if d.tls.is_some() && plain > 0 {
            let records = plain.div_ceil(crate::buf::RECORD_PLAINTEXT);
            d.outbox
                .reserve(cx.bufs, plain + records * crate::buf::RECORD_OVERHEAD);
        }
        let n = if let Some(tls) = &mut s.tls {
            let buf = &mut cx.scratch[..room];
            match tls.reader().read(buf) {
                Ok(0) => {
                    s.read_done = true;
                    0
                }
                Ok(n) => {
                    deliver(d, cx.bufs, &buf[..n]);
                    n
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                Err(_) => {
                    s.read_done = true;
                    0
                }
            }
        } else {
            let n = s.inbox.len().min(room);
            if n > 0 {
                deliver(d, cx.bufs, &s.inbox.readable()[..n]);
                s.inbox.consume(n);
            }
            n
        };
        if n > 0 {
            d.flush_tls(cx.bufs);
            self.moved[src as usize] += n as u64;
        }
        moved || n > 0
    }

    /// The client's TLS handshake completed: who is it, then the upstream.
    fn handshake_done(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        if let Some(tls) = &self.sides[Leg::Client as usize].tls {
            self.identity = identity::peer_identity(tls);
            self.alpn = tls.alpn_protocol().map(<[u8]>::to_vec);
            count_record_path(cx, self.service, Peer::Client, tls);
        }
        self.ready_at = Some(now);
        cx.metrics.service(self.service).handshake_ok();
        self.begin_connect(cx, false, now);
    }

    /// Arms receives and sends, passes half-closes on, and closes when both
    /// directions are done.
    fn after_pump(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        if self.closed {
            return;
        }
        if self.phase == Phase::Failing {
            let c = &mut self.sides[Leg::Client as usize];
            if c.outbox.is_empty() && !c.send_armed {
                self.close(cx, false, self.failing, now);
            } else if !c.send_armed {
                c.send_armed = true;
                cx.io.push_back(Io::Send {
                    conn: self.key,
                    leg: Leg::Client,
                });
            }
            return;
        }
        for leg in [Leg::Client, Leg::Upstream] {
            // A half-close from the other leg, once all it sent is through.
            if self.phase == Phase::Established {
                let (side, other) = split(&mut self.sides, leg);
                if other.read_done
                    && other.inbox.is_empty()
                    && !side.write_done
                    && !other.plaintext_pending()
                {
                    side.write_done = true;
                    if let Some(tls) = &mut side.tls {
                        tls.send_close_notify();
                    }
                    side.flush_tls(cx.bufs);
                }
            }
            let side = &mut self.sides[leg as usize];
            if !side.open {
                continue;
            }
            if !side.send_armed && !side.outbox.is_empty() {
                side.send_armed = true;
                cx.io.push_back(Io::Send {
                    conn: self.key,
                    leg,
                });
            }
            if !side.send_armed {
                side.outbox.settle(cx.bufs);
            }
            if !side.recv_armed {
                side.inbox.settle(cx.bufs);
            }
            let tls_idle = side.tls.as_ref().is_none_or(|t| !t.wants_write());
            if side.write_done
                && !side.shutdown_sent
                && side.outbox.is_empty()
                && !side.send_armed
                && tls_idle
            {
                side.shutdown_sent = true;
                cx.io.push_back(Io::Shutdown {
                    conn: self.key,
                    leg,
                });
            }
            let reading = match leg {
                Leg::Client => true,
                // The upstream is read from its connect on (TLS handshake).
                Leg::Upstream => self.phase == Phase::Established || side.tls.is_some(),
            };
            if reading && !side.recv_armed && side.inbox.is_empty() && !side.eof {
                side.recv_armed = true;
                cx.io.push_back(Io::Recv {
                    conn: self.key,
                    leg,
                });
            }
        }
        let done = self.phase == Phase::Established
            && self
                .sides
                .iter()
                .all(|s| s.read_done && s.shutdown_sent && !s.send_armed && s.outbox.is_empty());
        if done {
            self.close(cx, false, CloseReason::Done, now);
        }
    }

    /// Ends the connection for `why`: asks the driver to close both legs.
    pub(crate) fn close(&mut self, cx: &mut Ctx<'_>, reset: bool, why: CloseReason, now: Instant) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.phase = Phase::Closed;
        let svc = &mut cx.services[self.service];
        if let Some(a) = self.attempt.take() {
            // The client left while an attempt was in flight.
            svc.pool.connect_abandoned(a.endpoint, now);
        }
        let counters = cx.metrics.service(self.service);
        if let Some(ep) = self.endpoint {
            svc.pool.connection_closed(ep, now);
            counters.upstream_closed();
        }
        // A client refused before its ClientHello chose a service is
        // counted against its listener only.
        if self.routed {
            counters.closed(now.saturating_duration_since(self.opened));
            if crate::flows::TAP.is_on() {
                crate::flows::TAP.push(crate::flows::FlowRecord {
                    at: std::time::SystemTime::now(),
                    service: svc.spec.name.clone(),
                    client: self.client,
                    upstream: self.endpoint.map(|ep| svc.pool.addr(ep)),
                    bytes: self.moved,
                    identity: self.identity.clone(),
                });
            }
        }
        if let Some(log) = cx.access_log {
            let taken = log.offer(AccessRecord {
                closed: now,
                service: self.routed.then(|| svc.name.clone()),
                client: self.client,
                identity: self.identity.clone(),
                alpn: self
                    .alpn
                    .as_deref()
                    .map(|a| String::from_utf8_lossy(a).into_owned()),
                upstream: self.endpoint.map(|ep| svc.pool.addr(ep)),
                bytes_from_client: self.moved[Leg::Client as usize],
                bytes_to_client: self.moved[Leg::Upstream as usize],
                duration: now.saturating_duration_since(self.opened),
                close: why,
            });
            if !taken {
                cx.metrics.access_log_dropped();
            }
        }
        for side in &mut self.sides {
            side.release_idle(cx.bufs);
        }
        cx.io.push_back(Io::Close {
            conn: self.key,
            reset,
        });
    }

    /// Gives every chunk back: call only when the driver has released the
    /// connection (nothing of it is in flight).
    pub(crate) fn release(&mut self, bufs: &mut BufPool) {
        for side in &mut self.sides {
            side.release(bufs);
        }
        for mut b in self.retired.drain(..) {
            b.release(bufs);
        }
    }
}

/// Hands plaintext to the destination leg: to rustls (which encrypts on
/// flush) or straight to the outbox.
fn deliver(d: &mut Side, bufs: &mut BufPool, data: &[u8]) {
    match &mut d.tls {
        Some(tls) => {
            use std::io::Write;
            // Unlimited rustls buffer: the caller only hands over a chunk
            // when rustls has nothing queued, which is the bound.
            let _ = tls.writer().write_all(data);
        }
        None => {
            let n = d.outbox.append(bufs, data);
            debug_assert_eq!(n, data.len(), "delivery never exceeds the outbox's room");
        }
    }
}

/// Counts which path `tls`'s records take (see [`crate::ktls`]), once
/// its handshake is done.
fn count_record_path(cx: &Ctx<'_>, service: usize, peer: Peer, tls: &rustls::Connection) {
    let suite = tls.negotiated_cipher_suite().map(|s| s.suite());
    let why = crate::ktls::record_path(cx.ktls, suite);
    cx.metrics.service(service).record_path(peer, why);
}

/// `leg`'s side and the other one, both mutable.
fn split(sides: &mut [Side; 2], leg: Leg) -> (&mut Side, &mut Side) {
    let [c, u] = sides;
    match leg {
        Leg::Client => (c, u),
        Leg::Upstream => (u, c),
    }
}

fn peer(leg: Leg) -> Peer {
    match leg {
        Leg::Client => Peer::Client,
        Leg::Upstream => Peer::Upstream,
    }
}
