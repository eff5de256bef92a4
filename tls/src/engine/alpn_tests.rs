//! ALPN on virtual time: a service announces its protocols, the client's
//! choice is known to the connection, a client with nothing in common is
//! refused with `no_application_protocol`, and an originating leg sends
//! its SNI and forwards (or sets) ALPN to the upstream.

use std::{
    io::{Read, Write},
    net::Ipv4Addr,
    sync::Arc,
};

use rustls::pki_types::ServerName;

use super::tests::{Sim, addr, plain_spec};
use super::tls_tests::{Pki, pki, pump};
use super::*;
use crate::identity::{ClientMaterialConfig, ServerMaterialConfig, TlsVersions};

/// The lab's mTLS service announcing `alpn`; with `originate`, mTLS to
/// the upstream too, saying `hello`.
fn service(p: &Pki, alpn: &[&[u8]], upstream: Option<UpstreamHello>) -> ServiceSpec {
    let mut spec = plain_spec(vec![addr(1)]);
    spec.server_tls = Some(Arc::new(
        ServerTls::load(&ServerMaterialConfig {
            alpn: alpn.iter().map(|a| a.to_vec()).collect(),
            ..p.pki.server_material()
        })
        .unwrap(),
    ));
    if let Some(hello) = upstream {
        spec.client_tls = Some(Arc::new(
            ClientTls::load(&p.pki.upstream_material()).unwrap(),
        ));
        spec.upstream_hello = hello;
    }
    spec
}

/// The lab client, offering `alpn`.
fn client(p: &Pki, alpn: &[&[u8]]) -> rustls::ClientConnection {
    let base = ClientTls::load(&ClientMaterialConfig {
        cert: p.pki.client.cert.clone(),
        key: p.pki.client.key.clone(),
        trust: p.pki.ca_cert.clone(),
        upstream_identities: Vec::new(),
        versions: TlsVersions::Tls13,
    })
    .unwrap()
    .current();
    rustls::ClientConnection::new_with_alpn(
        base,
        ServerName::IpAddress(Ipv4Addr::new(10, 100, 0, 10).into()),
        alpn.iter().map(|a| a.to_vec()).collect(),
    )
    .unwrap()
}

#[test]
fn the_services_preference_among_the_clients_protocols_wins_and_is_known() {
    let p = pki();
    let mut sim = Sim::new(service(&p, &[b"h2", b"http/1.1"], None));
    let k = sim.accept();
    let mut c = client(&p, &[b"http/1.1", b"h2"]);
    pump(&mut sim, k, &mut c);
    assert!(!c.is_handshaking());
    // rustls, as RFC 7301 section 3.2 lets a server, picks by its own
    // preference among what the client offers.
    assert_eq!(c.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        sim.engine.alpn(k),
        Some(&b"h2"[..]),
        "known to the connection"
    );
    c.writer().write_all(b"PRI * HTTP/2.0").unwrap();
    assert_eq!(pump(&mut sim, k, &mut c), b"PRI * HTTP/2.0", "and it flows");
}

#[test]
fn a_client_offering_no_alpn_is_served_with_none() {
    let p = pki();
    let mut sim = Sim::new(service(&p, &[b"h2"], None));
    let k = sim.accept();
    let mut c = client(&p, &[]);
    pump(&mut sim, k, &mut c);
    assert!(!c.is_handshaking());
    assert_eq!(sim.engine.alpn(k), None);
    assert_eq!(sim.connects, [addr(1)]);
}

#[test]
fn a_client_with_no_protocol_in_common_gets_no_application_protocol() {
    let p = pki();
    let mut sim = Sim::new(service(&p, &[b"h2"], None));
    let k = sim.accept();
    let mut c = client(&p, &[b"http/1.1"]);
    pump(&mut sim, k, &mut c);
    assert_eq!(
        c.process_new_packets().unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol),
        "the fatal alert of RFC 7301 section 3.2"
    );
    assert!(sim.conn(k).closed.is_some(), "refused");
    assert!(sim.connects.is_empty(), "never reached an upstream");
    assert_eq!(
        sim.metrics
            .service(0)
            .client_handshake_failures("no_application_protocol"),
        1
    );
}

/// Runs the upstream leg of `k` against `server` until nothing moves;
/// the plaintext the server read.
fn serve_upstream(sim: &mut Sim, k: ConnKey, server: &mut rustls::ServerConnection) -> Vec<u8> {
    let mut got = Vec::new();
    for _ in 0..50 {
        let out = std::mem::take(&mut sim.upstream(k).from_engine);
        let mut rd = &out[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
            server.process_new_packets().unwrap();
        }
        let mut buf = [0u8; 4096];
        while let Ok(n) = server.reader().read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let mut back = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut back).unwrap();
        }
        if out.is_empty() && back.is_empty() {
            break;
        }
        sim.upstream(k).to_engine.extend(back);
        sim.run();
    }
    got
}

/// An upstream with the lab's upstream identity, announcing `alpn`.
fn upstream(p: &Pki, alpn: &[&[u8]]) -> rustls::ServerConnection {
    let cfg = ServerTls::load(&ServerMaterialConfig {
        cert: p.pki.upstream.cert.clone(),
        key: p.pki.upstream.key.clone(),
        client_trust: Some(p.pki.ca_cert.clone()),
        allowed_identities: Vec::new(),
        versions: TlsVersions::Tls13,
        alpn: alpn.iter().map(|a| a.to_vec()).collect(),
    })
    .unwrap()
    .current();
    rustls::ServerConnection::new(cfg).unwrap()
}

#[test]
fn terminate_originate_forwards_the_clients_protocol_and_sends_sni() {
    let p = pki();
    let hello = UpstreamHello {
        server_name: Some("grpc.upstream.test".into()),
        alpn: Vec::new(),
    };
    let mut sim = Sim::new(service(&p, &[b"h2", b"http/1.1"], Some(hello)));
    sim.echo = false;
    let k = sim.accept();
    let mut c = client(&p, &[b"h2"]);
    pump(&mut sim, k, &mut c);
    assert_eq!(sim.engine.alpn(k), Some(&b"h2"[..]));
    c.writer().write_all(b"PRI * HTTP/2.0").unwrap();
    pump(&mut sim, k, &mut c);
    let mut server = upstream(&p, &[b"http/1.1", b"h2"]);
    assert_eq!(serve_upstream(&mut sim, k, &mut server), b"PRI * HTTP/2.0");
    assert_eq!(server.server_name(), Some("grpc.upstream.test"), "SNI sent");
    assert_eq!(
        server.alpn_protocol(),
        Some(&b"h2"[..]),
        "only the client's protocol was offered, though the upstream prefers http/1.1"
    );
    assert_eq!(sim.engine.upstream_alpn(k), Some(&b"h2"[..]));
}

#[test]
fn a_configured_upstream_alpn_list_is_offered_as_is() {
    let p = pki();
    let hello = UpstreamHello {
        server_name: None,
        alpn: vec![b"http/1.1".to_vec()],
    };
    let mut sim = Sim::new(service(&p, &[b"h2"], Some(hello)));
    sim.echo = false;
    let k = sim.accept();
    let mut c = client(&p, &[b"h2"]);
    pump(&mut sim, k, &mut c);
    c.writer().write_all(b"x").unwrap();
    pump(&mut sim, k, &mut c);
    let mut server = upstream(&p, &[b"h2", b"http/1.1"]);
    assert_eq!(serve_upstream(&mut sim, k, &mut server), b"x");
    assert_eq!(server.server_name(), None, "an address gets no SNI");
    assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn an_upstream_with_no_protocol_in_common_fails_the_attempt_counted() {
    let p = pki();
    let hello = UpstreamHello {
        server_name: None,
        alpn: vec![b"h2".to_vec()],
    };
    let mut spec = service(&p, &[], Some(hello));
    spec.server_tls = None;
    let mut sim = Sim::new(spec);
    sim.echo = false;
    let k = sim.accept();
    sim.client_send(k, b"x");
    let mut server = upstream(&p, &[b"http/1.1"]);
    let out = std::mem::take(&mut sim.upstream(k).from_engine);
    let mut rd = &out[..];
    server.read_tls(&mut rd).unwrap();
    assert_eq!(
        server.process_new_packets().unwrap_err(),
        rustls::Error::NoApplicationProtocol
    );
    let mut back = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut back).unwrap();
    }
    sim.upstream(k).to_engine.extend(back);
    sim.run();
    assert_eq!(
        sim.metrics
            .service(0)
            .upstream_handshake_failures("no_application_protocol"),
        1
    );
}
