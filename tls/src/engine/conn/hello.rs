//! [`Phase::Hello`]: a client of a listener shared by several services
//! (see [`crate::engine::ListenerSpec`]) sends its ClientHello before any
//! service is chosen. rustls's [`rustls::server::Acceptor`] reads it; its
//! server name (SNI) chooses the service, whose own `ServerConfig`
//! (certificate, client CA, identities, versions) then takes over the
//! same handshake. Nothing is counted for a service before that: a client
//! refused here is counted against its listener
//! ([`ListenerRefusal`]).

use std::time::Instant;

use super::{Conn, Ctx, Leg, Phase};
use crate::{
    buf::BufWriter,
    identity::{self, HandshakeFailure},
    metrics::{ListenerRefusal, Peer},
};

/// A fatal `unrecognized_name` alert (RFC 6066 section 3: "it MAY send a
/// fatal unrecognized_name(112) alert"), as one TLS 1.2-framed record, which
/// TLS 1.3 clients read before any key is agreed (RFC 8446 section 5.1).
const UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// Counts `why` against the listener of service `listener`.
pub(super) fn count_refusal(cx: &Ctx<'_>, listener: usize, why: ListenerRefusal) {
    if let Some(r) = &cx.services[listener].router {
        cx.metrics.listener(r.metrics).refused(why);
    }
}

impl Conn {
    /// Feeds the client's bytes to the acceptor and, once the ClientHello
    /// is whole, routes the connection; whether anything moved.
    pub(super) fn read_hello(&mut self, cx: &mut Ctx<'_>, now: Instant) -> bool {
        let side = &mut self.sides[Leg::Client as usize];
        let Some(acceptor) = self.acceptor.as_mut() else {
            return false;
        };
        let mut moved = false;
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
                let router = cx.services[self.listener]
                    .router
                    .as_ref()
                    .expect("a connection in Hello has a routing listener");
                match router.choose(accepted.client_hello().server_name()) {
                    Ok(service) => self.route(cx, service, accepted, now),
                    Err(why) => {
                        tracing::debug!(
                            peer = %self.peer,
                            sni = accepted.client_hello().server_name(),
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

    /// The ClientHello chose `service`: the connection is that service's
    /// from now on, and its TLS session starts from the ClientHello read.
    fn route(
        &mut self,
        cx: &mut Ctx<'_>,
        service: usize,
        accepted: rustls::server::Accepted,
        now: Instant,
    ) {
        let spec = &cx.services[service].spec;
        self.service = service;
        self.mode = spec.mode();
        self.timeouts = spec.timeouts;
        self.routed = true;
        let counters = cx.metrics.service(service);
        counters.accepted();
        let Some(server_tls) = &spec.server_tls else {
            // Validation lets only terminating services share a listener.
            tracing::warn!(service = spec.name, "a routed service has no TLS; closing");
            self.close(cx, true, now);
            return;
        };
        match accepted.into_connection(server_tls.current()) {
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
    /// the listener; `alert` (and whatever rustls queued) is sent first.
    fn refuse(&mut self, cx: &mut Ctx<'_>, why: ListenerRefusal, alert: &[u8], now: Instant) {
        count_refusal(cx, self.listener, why);
        self.acceptor = None;
        let side = &mut self.sides[Leg::Client as usize];
        side.outbox.append(cx.bufs, alert);
        if side.outbox.is_empty() || side.eof {
            self.close(cx, false, now);
        } else {
            self.phase = Phase::Failing;
        }
    }
}
