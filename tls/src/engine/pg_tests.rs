//! A PostgreSQL service on virtual time: the SSLRequest answered `S`,
//! PostgreSQL 17's direct TLS with ALPN, and what is refused (plaintext,
//! direct TLS without ALPN, bytes pipelined behind a request).

use std::{io::Write, net::Ipv4Addr, sync::Arc};

use rustls::pki_types::ServerName;

use super::tests::{Sim, addr, plain_spec};
use super::tls_tests::{Pki, pki, pump};
use super::*;
use crate::{identity::ClientTls, identity::ServerTls, metrics::ListenerRefusal};

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

/// The lab's mTLS service, speaking PostgreSQL, alone on its listener.
fn postgres(p: &Pki) -> Sim {
    let mut spec = plain_spec(vec![addr(1)]);
    spec.name = "pg".into();
    spec.server_tls = Some(Arc::new(ServerTls::load(&p.pki.server_material()).unwrap()));
    let listener = ListenerSpec {
        listen: "10.100.0.10:5432".parse().unwrap(),
        accepts_for: 0,
        names: Vec::new(),
        default: Some(0),
        postgres: true,
    };
    Sim::routing(vec![spec], &[listener])
}

/// The lab client, offering `alpn`.
fn client(p: &Pki, alpn: &[&[u8]]) -> rustls::ClientConnection {
    let base = ClientTls::load(&crate::identity::ClientMaterialConfig {
        cert: p.pki.client.cert.clone(),
        key: p.pki.client.key.clone(),
        trust: p.pki.ca_cert.clone(),
        upstream_identities: Vec::new(),
        versions: crate::identity::TlsVersions::Tls13,
    })
    .unwrap()
    .current();
    let mut config = (*base).clone();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::IpAddress(Ipv4Addr::new(10, 100, 0, 10).into()),
    )
    .unwrap()
}

fn refusals(sim: &Sim, why: ListenerRefusal) -> u64 {
    sim.metrics.listener(0).refusals(why)
}

/// What the engine sent the client so far, taken.
fn answer(sim: &mut Sim, k: ConnKey) -> Vec<u8> {
    std::mem::take(&mut sim.conns.get_mut(&k).unwrap().client.from_engine)
}

#[test]
fn an_ssl_request_is_answered_s_and_tls_follows_to_a_plain_upstream() {
    let p = pki();
    let mut sim = postgres(&p);
    let k = sim.accept();
    // Split, as TCP may deliver it.
    sim.client_send(k, &SSL_REQUEST[..3]);
    assert_eq!(answer(&mut sim, k), b"", "nothing before the whole request");
    sim.client_send(k, &SSL_REQUEST[3..]);
    assert_eq!(answer(&mut sim, k), b"S");
    let mut c = client(&p, &[]);
    pump(&mut sim, k, &mut c);
    assert!(!c.is_handshaking());
    assert_eq!(
        sim.engine.identity(k),
        Some(p.pki.client.spiffe_id.as_str())
    );
    c.writer().write_all(b"startup").unwrap();
    assert_eq!(
        pump(&mut sim, k, &mut c),
        b"startup",
        "echoed in plaintext upstream"
    );
    assert_eq!(sim.connects, [addr(1)]);
    assert_eq!(sim.metrics.service(0).open(), 1);
}

#[test]
fn direct_tls_offering_alpn_postgresql_is_served_with_it() {
    let p = pki();
    let mut sim = postgres(&p);
    let k = sim.accept();
    let mut c = client(&p, &[b"postgresql"]);
    pump(&mut sim, k, &mut c);
    assert!(!c.is_handshaking());
    assert_eq!(c.alpn_protocol(), Some(&b"postgresql"[..]));
    c.writer().write_all(b"startup").unwrap();
    assert_eq!(pump(&mut sim, k, &mut c), b"startup");
}

#[test]
fn direct_tls_without_alpn_postgresql_is_refused_and_counted() {
    let p = pki();
    let mut sim = postgres(&p);
    for alpn in [&[][..], &[&b"http/1.1"[..]][..]] {
        let k = sim.accept();
        let mut c = client(&p, alpn);
        pump(&mut sim, k, &mut c);
        assert_eq!(
            c.process_new_packets().unwrap_err(),
            rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol),
            "{alpn:?}"
        );
        assert!(sim.conn(k).closed.is_some());
    }
    assert_eq!(refusals(&sim, ListenerRefusal::PostgresNoAlpn), 2);
    assert!(sim.connects.is_empty());
}

#[test]
fn a_plaintext_startup_gets_a_fatal_error_response_and_is_counted() {
    let p = pki();
    let mut sim = postgres(&p);
    let k = sim.accept();
    // StartupMessage: length, protocol 3.0, user postgres.
    let mut startup = Vec::new();
    let body = b"\x00\x03\x00\x00user\x00postgres\x00\x00";
    startup.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
    startup.extend_from_slice(body);
    sim.client_send(k, &startup);
    let got = answer(&mut sim, k);
    assert_eq!(got[0], b'E', "{got:?}");
    let len = u32::from_be_bytes(got[1..5].try_into().unwrap()) as usize;
    assert_eq!(len + 1, got.len(), "one whole message");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("SFATAL\0") && text.contains("C28000\0"),
        "{text}"
    );
    assert!(text.contains("sslmode=require"), "{text}");
    assert_eq!(sim.conn(k).closed, Some(false));
    assert_eq!(refusals(&sim, ListenerRefusal::PostgresNotTls), 1);
    assert!(sim.connects.is_empty());
    assert_eq!(sim.metrics.service(0).open(), 0);
}

#[test]
fn gssapi_encryption_is_declined_and_ssl_may_follow() {
    let p = pki();
    let mut sim = postgres(&p);
    let k = sim.accept();
    sim.client_send(k, &GSSENC_REQUEST);
    assert_eq!(answer(&mut sim, k), b"N");
    sim.client_send(k, &SSL_REQUEST);
    assert_eq!(answer(&mut sim, k), b"S");
    let mut c = client(&p, &[]);
    pump(&mut sim, k, &mut c);
    assert!(!c.is_handshaking());
}

#[test]
fn bytes_pipelined_behind_an_ssl_request_are_refused_unanswered() {
    let p = pki();
    let mut sim = postgres(&p);
    let k = sim.accept();
    let mut sent = SSL_REQUEST.to_vec();
    sent.extend_from_slice(b"\x16\x03\x01 injected");
    sim.client_send(k, &sent);
    assert_eq!(answer(&mut sim, k), b"", "no S for them");
    assert!(sim.conn(k).closed.is_some());
    assert_eq!(refusals(&sim, ListenerRefusal::PostgresNotTls), 1);
}
