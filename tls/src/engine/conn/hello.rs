//! [`Phase::Hello`]: the client's first bytes are read before any service
//! or TLS session is started, on two kinds of listener (see
//! [`crate::engine::ListenerSpec`]):
//!
//! - one shared by several services: rustls's
//!   [`rustls::server::Acceptor`] reads the ClientHello, whose server name
//!   (SNI) chooses the service, whose own `ServerConfig` (certificate,
//!   client CA, identities, versions) then takes over the same handshake;
//! - one speaking PostgreSQL: the client first sends an SSLRequest,
//!   answered `S`, and then its ClientHello; or, from PostgreSQL 17 on
//!   (`sslnegotiation=direct`), a ClientHello at once, which must offer
//!   ALPN `postgresql` as the PostgreSQL server itself requires, so that
//!   TLS meant for another protocol is not taken for PostgreSQL.
//!
//! Nothing is counted for a service before it is chosen: a client refused
//! here is counted against its listener ([`ListenerRefusal`]).

use std::{sync::Arc, time::Instant};

use super::{Conn, Ctx, Leg, Phase};
use crate::{
    access_log::CloseReason,
    buf::BufWriter,
    identity::{self, HandshakeFailure},
    metrics::{ListenerRefusal, Peer},
};

/// A fatal `unrecognized_name` alert (RFC 6066 section 3: "it MAY send a
/// fatal unrecognized_name(112) alert"), as one TLS 1.2-framed record, which
/// TLS 1.3 clients read before any key is agreed (RFC 8446 section 5.1).
const UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// A fatal `no_application_protocol` alert (RFC 7301 section 3.2), framed
/// as [`UNRECOGNIZED_NAME`].
const NO_APPLICATION_PROTOCOL: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 120];

/// The ALPN protocol of PostgreSQL over direct TLS.
pub(crate) const POSTGRES_ALPN: &[u8] = b"postgresql";

/// The TLS record type of a handshake message: a ClientHello's first byte.
const TLS_HANDSHAKE: u8 = 0x16;

/// PostgreSQL's SSLRequest and GSSENCRequest (PostgreSQL documentation,
/// "Message Formats"): an Int32 length of 8, then this Int32 code.
const PG_SSL_REQUEST: u32 = 80_877_103;
const PG_GSSENC_REQUEST: u32 = 80_877_104;

/// What a connection in [`Phase::Hello`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prelude {
    /// A ClientHello.
    ClientHello,
    /// PostgreSQL's first message: an SSLRequest (answered `S`), a
    /// GSSENCRequest (answered `N`), or a ClientHello (direct TLS).
    Postgres,
    /// PostgreSQL after `S`: a ClientHello.
    PostgresNegotiated,
    /// PostgreSQL direct TLS: a ClientHello that must offer ALPN
    /// `postgresql`.
    PostgresDirect,
}

/// The first bytes of a PostgreSQL request, gathered until there are 8.
#[derive(Debug, Default)]
pub(crate) struct PgHead {
    bytes: [u8; 8],
    len: usize,
}

/// Counts `why` against the listener of service `listener`.
pub(super) fn count_refusal(cx: &Ctx<'_>, listener: usize, why: ListenerRefusal) {
    if let Some(r) = &cx.services[listener].router {
        cx.metrics.listener(r.metrics).refused(why);
    }
}

/// A FATAL ErrorResponse (PostgreSQL documentation, "Message Formats")
/// with SQLSTATE 28000, as the server sends when pg_hba.conf admits only
/// `hostssl`.
fn pg_fatal(message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (code, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28000"),
        (b'M', message),
    ] {
        fields.push(code);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    let len = u32::try_from(fields.len() + 4).expect("a short message");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&fields);
    out
}

impl Conn {
    /// Reads the client's first bytes: a PostgreSQL request, then the
    /// ClientHello; once it is whole, routes the connection. Whether
    /// anything moved.
    pub(super) fn read_hello(&mut self, cx: &mut Ctx<'_>, now: Instant) -> bool {
        let mut moved = false;
        if self.prelude == Prelude::Postgres {
            moved = self.read_postgres_request(cx, now);
            if self.prelude == Prelude::Postgres || self.closed || self.phase != Phase::Hello {
                return moved;
            }
        }
        let side = &mut self.sides[Leg::Client as usize];
        let Some(acceptor) = self.acceptor.as_mut() else {
            return moved;
        };
        while !side.inbox.is_empty() {
            let mut rd = side.inbox.readable();
            let before = rd.len();
            if acceptor.read_tls(&mut rd).is_err() {
                // More than a ClientHello's worth of bytes before one was
                // whole.
                self.refuse(cx, ListenerRefusal::BadHello, &[], now);
                return false;
            }
            let n = before - rd.len();
            side.inbox.consume(n);
            moved |= n > 0;
            if n == 0 {
                break;
            }
        }
        match acceptor.accept() {
            Ok(None) => {
                if side.eof && side.inbox.is_empty() {
                    self.refuse(cx, ListenerRefusal::Eof, &[], now);
                    return false;
                }
                moved
            }
            Ok(Some(accepted)) => {
                self.acceptor = None;
                let hello = accepted.client_hello();
                if self.prelude == Prelude::PostgresDirect
                    && !hello
                        .alpn()
                        .is_some_and(|mut offered| offered.any(|p| p == POSTGRES_ALPN))
                {
                    tracing::debug!(peer = %self.peer, "direct TLS to PostgreSQL without ALPN postgresql; refused");
                    self.refuse(
                        cx,
                        ListenerRefusal::PostgresNoAlpn,
                        &NO_APPLICATION_PROTOCOL,
                        now,
                    );
                    return true;
                }
                let router = cx.services[self.listener]
                    .router
                    .as_ref()
                    .expect("a connection in Hello has a routing listener");
                match router.choose(hello.server_name()) {
                    Ok(service) => self.route(cx, service, accepted, now),
                    Err(why) => {
                        tracing::debug!(
                            peer = %self.peer,
                            sni = hello.server_name(),
                            reason = why.as_str(),
                            "no service for this server name; refused"
                        );
                        self.refuse(cx, why, &UNRECOGNIZED_NAME, now);
                    }
                }
                true
            }
            Err((e, mut alert)) => {
                self.acceptor = None;
                tracing::debug!(peer = %self.peer, error = %e, "unreadable ClientHello; refused");
                let mut w = BufWriter {
                    buf: &mut side.outbox,
                    pool: cx.bufs,
                };
                let _ = alert.write_all(&mut w);
                self.refuse(cx, ListenerRefusal::BadHello, &[], now);
                true
            }
        }
    }

    /// PostgreSQL's first message (PostgreSQL documentation, "SSL Session
    /// Encryption"): an SSLRequest is answered `S` and the ClientHello
    /// follows; a ClientHello at once is direct TLS; a GSSENCRequest is
    /// declined with `N` (the client may then ask for SSL); anything else
    /// — a startup or cancel request in the clear — is refused with a
    /// FATAL ErrorResponse. A client that sends more after its request
    /// before it has the answer is refused too: those bytes would be read
    /// as if they came inside TLS (CVE-2021-23214 in PostgreSQL itself).
    fn read_postgres_request(&mut self, cx: &mut Ctx<'_>, now: Instant) -> bool {
        let side = &mut self.sides[Leg::Client as usize];
        let head = &mut self.pg_head;
        if head.len == 0 && side.inbox.readable().first() == Some(&TLS_HANDSHAKE) {
            self.prelude = Prelude::PostgresDirect;
            return false;
        }
        let n = (8 - head.len).min(side.inbox.len());
        head.bytes[head.len..head.len + n].copy_from_slice(&side.inbox.readable()[..n]);
        head.len += n;
        side.inbox.consume(n);
        if head.len < 8 {
            if side.eof {
                self.refuse(cx, ListenerRefusal::Eof, &[], now);
            }
            return n > 0;
        }
        let [l0, l1, l2, l3, c0, c1, c2, c3] = head.bytes;
        let (len, code) = (
            u32::from_be_bytes([l0, l1, l2, l3]),
            u32::from_be_bytes([c0, c1, c2, c3]),
        );
        *head = PgHead::default();
        let answer: &[u8] = match (len, code) {
            (8, PG_SSL_REQUEST) => b"S",
            (8, PG_GSSENC_REQUEST) => b"N",
            _ => {
                tracing::debug!(peer = %self.peer, len, code, "a PostgreSQL client without TLS; refused");
                let fatal = pg_fatal(
                    "this service accepts PostgreSQL over TLS only: connect with sslmode=require or stronger",
                );
                self.refuse(cx, ListenerRefusal::PostgresNotTls, &fatal, now);
                return true;
            }
        };
        if !side.inbox.is_empty() {
            tracing::debug!(peer = %self.peer, "PostgreSQL bytes pipelined after an encryption request; refused");
            self.refuse(cx, ListenerRefusal::PostgresNotTls, &[], now);
            return true;
        }
        side.outbox.append(cx.bufs, answer);
        if code == PG_SSL_REQUEST {
            self.prelude = Prelude::PostgresNegotiated;
        }
        true
    }

    /// The ClientHello chose `service`: the connection is that service's
    /// from now on, and its TLS session starts from the ClientHello read.
    fn route(
        &mut self,
        cx: &mut Ctx<'_>,
        service: usize,
        accepted: rustls::server::Accepted,
        now: Instant,
    ) {
        let postgres = self.prelude != Prelude::ClientHello;
        let svc = &mut cx.services[service];
        self.service = service;
        self.mode = svc.spec.mode();
        self.timeouts = svc.spec.timeouts;
        self.routed = true;
        let counters = cx.metrics.service(service);
        counters.accepted();
        let Some(server_tls) = &svc.spec.server_tls else {
            // Validation lets only terminating services read first bytes.
            tracing::warn!(
                service = svc.spec.name,
                "a routed service has no TLS; closing"
            );
            self.close(cx, true, CloseReason::Internal, now);
            return;
        };
        let mut config = server_tls.current();
        if postgres {
            config = match &svc.postgres_tls {
                Some((base, derived)) if Arc::ptr_eq(base, &config) => derived.clone(),
                _ => {
                    let mut derived = (*config).clone();
                    derived.alpn_protocols = vec![POSTGRES_ALPN.to_vec()];
                    let derived = Arc::new(derived);
                    svc.postgres_tls = Some((config, derived.clone()));
                    derived
                }
            };
        }
        match accepted.into_connection(config) {
            Ok(mut tls) => {
                tls.set_buffer_limit(None);
                self.sides[Leg::Client as usize].tls = Some(tls.into());
                self.phase = Phase::Handshake;
            }
            Err((e, mut alert)) => {
                let reason: HandshakeFailure = identity::classify(&e);
                counters.handshake_failed(Peer::Client, reason.as_str());
                tracing::debug!(peer = %self.peer, error = %e, "TLS failed");
                let side = &mut self.sides[Leg::Client as usize];
                let mut w = BufWriter {
                    buf: &mut side.outbox,
                    pool: cx.bufs,
                };
                let _ = alert.write_all(&mut w);
                self.phase = Phase::Failing;
            }
        }
    }

    /// Refuses the client before any service was chosen: counted against
    /// the listener; `answer` (and whatever rustls queued) is sent first.
    fn refuse(&mut self, cx: &mut Ctx<'_>, why: ListenerRefusal, answer: &[u8], now: Instant) {
        count_refusal(cx, self.listener, why);
        self.acceptor = None;
        let side = &mut self.sides[Leg::Client as usize];
        side.outbox.append(cx.bufs, answer);
        if side.outbox.is_empty() || side.eof {
            self.close(cx, false, CloseReason::Refused, now);
        } else {
            self.failing = CloseReason::Refused;
            self.phase = Phase::Failing;
        }
    }
}
