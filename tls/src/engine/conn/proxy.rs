//! The PROXY protocol v2 on a connection ([`crate::proxy`]): a trusted
//! load balancer's header is read before anything else (`Phase::Proxy`)
//! and names the client; a header from anyone else is refused; and the
//! header sent to an upstream names the client, and what its TLS session
//! proved, before the upstream's first byte.
//!
//! A refusal is counted against the service once the connection has
//! one, else against its listener, as `proxy_untrusted` or
//! `proxy_bad_header`.

use std::time::Instant;

use rustls::ProtocolVersion;

use super::{Conn, Ctx, Leg, hello};
use crate::{
    access_log::CloseReason,
    metrics::{ListenerRefusal, Refusal},
    proxy::{self, Decoded, Header, tlv},
};

/// What is left to do with PROXY headers from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// Nothing: the listener trusts no source, or it is done.
    Done,
    /// The client is a trusted source: read its header first.
    Read,
    /// The client is not trusted: refuse it if its first bytes are a
    /// header.
    Screen,
}

impl Conn {
    /// Refuses a client that is not a trusted source and starts with a
    /// PROXY header (either version); whether its bytes may go on.
    pub(super) fn screen_proxy(&mut self, cx: &mut Ctx<'_>, now: Instant) -> bool {
        if self.proxy != Inbound::Screen {
            return true;
        }
        let first = self.sides[Leg::Client as usize].inbox.readable();
        if first.is_empty() {
            return true;
        }
        if proxy::looks_like_header(first) {
            tracing::debug!(peer = %self.peer, "a PROXY header from a source not trusted; refused");
            self.count_proxy_refusal(cx, true);
            self.close(cx, true, CloseReason::Refused, now);
            return false;
        }
        self.proxy = Inbound::Done;
        true
    }

    /// Reads a trusted source's header; once whole, its source address is
    /// the client's and the connection begins. Whether anything moved.
    pub(super) fn read_proxy(&mut self, cx: &mut Ctx<'_>, now: Instant) -> bool {
        let mut moved = false;
        loop {
            let side = &mut self.sides[Leg::Client as usize];
            let ended = side.eof && side.inbox.is_empty();
            match proxy::decode(&self.proxy_head, ended) {
                Ok(Decoded::Need(n)) => {
                    // Exactly the header's bytes: what follows stays in
                    // the inbox for the TLS (or plain) leg.
                    let take = (n - self.proxy_head.len()).min(side.inbox.len());
                    if take == 0 {
                        return moved;
                    }
                    self.proxy_head
                        .extend_from_slice(&side.inbox.readable()[..take]);
                    side.inbox.consume(take);
                    moved = true;
                }
                Ok(Decoded::Header(header, _)) => {
                    if let Some((source, destination)) = header.addresses {
                        self.client = source;
                        self.local = destination;
                    }
                    tracing::debug!(peer = %self.peer, client = %self.client, "PROXY header read");
                    self.proxy_head = Vec::new();
                    self.proxy = Inbound::Done;
                    self.begin(cx, now);
                    return true;
                }
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "a trusted source's PROXY header is malformed; refused");
                    self.count_proxy_refusal(cx, false);
                    self.close(cx, true, CloseReason::Refused, now);
                    return true;
                }
            }
        }
    }

    /// Counts a PROXY refusal against the service, or, before one is
    /// chosen, the listener.
    pub(super) fn count_proxy_refusal(&self, cx: &Ctx<'_>, untrusted: bool) {
        let (service, listener) = if untrusted {
            (Refusal::ProxyUntrusted, ListenerRefusal::ProxyUntrusted)
        } else {
            (Refusal::ProxyBadHeader, ListenerRefusal::ProxyBadHeader)
        };
        if self.routed {
            cx.metrics.service(self.service).refused(service);
        } else {
            hello::count_refusal(cx, self.listener, listener);
        }
    }

    /// The header sent to the upstream: the client and the address it
    /// connected to and, when the client leg is TLS, its ALPN, SNI, TLS
    /// version and cipher, whether it showed a verified certificate, and
    /// its SPIFFE ID (see [`crate::proxy`] for the types).
    pub(super) fn proxy_header(&self) -> Vec<u8> {
        let mut h = Header::proxy(self.client, self.local);
        if let Some(tls) = &self.sides[Leg::Client as usize].tls {
            if let Some(alpn) = &self.alpn {
                h = h.with(tlv::ALPN, alpn.clone());
            }
            if let rustls::Connection::Server(s) = tls
                && let Some(sni) = s.server_name()
            {
                h = h.with(tlv::AUTHORITY, sni.as_bytes());
            }
            let version = match tls.protocol_version() {
                Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "",
            };
            let cipher = tls
                .negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str())
                .unwrap_or("");
            // A certificate that made it through the handshake was
            // verified (chain and SPIFFE ID).
            let cert = tls.peer_certificates().is_some();
            let flags = tlv::CLIENT_SSL
                | if cert {
                    tlv::CLIENT_CERT_CONN | tlv::CLIENT_CERT_SESS
                } else {
                    0
                };
            h = h.with(
                tlv::SSL,
                proxy::ssl_value(
                    flags,
                    cert,
                    &[
                        (tlv::SSL_VERSION, version.as_bytes()),
                        (tlv::SSL_CIPHER, cipher.as_bytes()),
                    ],
                ),
            );
            if let Some(id) = &self.identity {
                h = h.with(tlv::SPIFFE_ID, id.as_bytes());
            }
        }
        let mut out = Vec::new();
        h.emit(&mut out);
        out
    }
}
