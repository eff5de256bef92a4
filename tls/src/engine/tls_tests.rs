//! The engine's TLS legs on virtual time: real rustls sessions on both
//! ends, the simulated network in between.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use rustls::pki_types::ServerName;

use super::tests::{Sim, addr, overlap, plain_spec};
use super::*;
use crate::identity::{
    ClientMaterialConfig, ClientTls, ServerMaterialConfig, ServerTls, TlsVersions,
    ca::{LabPki, lab_pki},
};

pub(crate) struct Pki {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) pki: LabPki,
}

pub(crate) fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let pki = lab_pki(
        dir.path(),
        "causeway.test",
        &[IpAddr::V4(Ipv4Addr::new(10, 100, 0, 10))],
    )
    .unwrap();
    Pki { _dir: dir, pki }
}

fn terminate_spec(p: &Pki) -> ServiceSpec {
    let mut spec = plain_spec(vec![addr(1)]);
    spec.server_tls = Some(Arc::new(ServerTls::load(&p.pki.server_material()).unwrap()));
    spec
}

/// A client session as the lab client (or with no certificate).
fn client(p: &Pki, with_cert: bool) -> rustls::ClientConnection {
    let config = client_config(p, with_cert, vec![p.pki.server.spiffe_id.clone()]);
    rustls::ClientConnection::new(
        config,
        ServerName::IpAddress(Ipv4Addr::new(10, 100, 0, 10).into()),
    )
    .unwrap()
}

/// A client config trusting the lab CA and admitting the servers
/// `upstream_identities` names (any, empty), presenting the lab client's
/// certificate if `with_cert`.
pub(crate) fn client_config(
    p: &Pki,
    with_cert: bool,
    upstream_identities: Vec<String>,
) -> Arc<rustls::ClientConfig> {
    if with_cert {
        return ClientTls::load(&ClientMaterialConfig {
            cert: p.pki.client.cert.clone(),
            key: p.pki.client.key.clone(),
            trust: p.pki.ca_cert.clone(),
            upstream_identities,
            versions: TlsVersions::Tls13,
        })
        .unwrap()
        .current();
    }
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&p.pki.ca_cert).unwrap();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(crate::identity::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

use rustls_pki_types::pem::PemObject;

/// Moves bytes between the client session and the simulated client leg
/// until nothing moves; returns the plaintext the client received.
pub(crate) fn pump(sim: &mut Sim, k: ConnKey, c: &mut rustls::ClientConnection) -> Vec<u8> {
    let mut plain = Vec::new();
    for _ in 0..100 {
        let mut moved = false;
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).unwrap();
        }
        if !out.is_empty() {
            moved = true;
            sim.conns.get_mut(&k).unwrap().client.to_engine.extend(out);
        }
        sim.run();
        let got = std::mem::take(&mut sim.conns.get_mut(&k).unwrap().client.from_engine);
        if !got.is_empty() {
            moved = true;
            let mut rd = &got[..];
            let mut buf = [0u8; 65536];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                if c.process_new_packets().is_err() {
                    return plain;
                }
                // Taken as it comes: rustls holds only so much.
                loop {
                    match c.reader().read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => plain.extend_from_slice(&buf[..n]),
                    }
                }
            }
        }
        if !moved {
            break;
        }
    }
    plain
}

#[test]
fn terminate_mtls_then_plain_to_the_upstream_and_back() {
    let p = pki();
    let mut sim = Sim::new(terminate_spec(&p));
    let k = sim.accept();
    assert!(sim.connects.is_empty(), "no upstream before the handshake");
    let mut c = client(&p, true);
    pump(&mut sim, k, &mut c);
    assert!(!c.is_handshaking());
    assert_eq!(sim.connects, [addr(1)], "upstream after the handshake");
    assert_eq!(
        sim.engine.identity(k),
        Some(p.pki.client.spiffe_id.as_str()),
        "the client's SPIFFE ID"
    );
    c.writer().write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let echoed = pump(&mut sim, k, &mut c);
    assert_eq!(
        echoed, b"GET / HTTP/1.0\r\n\r\n",
        "through TLS, plain upstream, back"
    );
    assert_eq!(
        sim.upstream(k).to_engine.len(),
        0,
        "the upstream saw plaintext and echoed it"
    );
    // close_notify → FIN upstream → echo FIN → close_notify + FIN to client.
    c.send_close_notify();
    pump(&mut sim, k, &mut c);
    assert!(sim.conn(k).client.fin_from_engine);
    assert_eq!(sim.conn(k).closed, Some(false));
    assert_eq!(sim.engine.buffers_in_use(), 0);
}

#[test]
fn a_large_transfer_arrives_byte_for_byte_whatever_the_record_and_io_sizes() {
    let p = pki();
    let data: Vec<u8> = (0..(1usize << 20) + 12_345)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    // Receives and sends of the drivers' sizes, then of odd sizes that
    // cut records and chunks anywhere.
    for (recv_max, send_max) in [(crate::buf::CHUNK, usize::MAX), (7919, 5003)] {
        let mut sim = Sim::new(terminate_spec(&p));
        sim.recv_max = recv_max;
        sim.send_max = send_max;
        let k = sim.accept();
        let mut c = client(&p, true);
        pump(&mut sim, k, &mut c);
        // Records from 1 byte to over a full-size one (rustls splits
        // those), through the echoing upstream and back.
        let pieces = [1, 100, 16_384, 16_385, 40_000, 3, 65_000];
        let (mut sent, mut got) = (0, Vec::new());
        for i in 0.. {
            if sent < data.len() {
                let n = pieces[i % pieces.len()].min(data.len() - sent);
                c.writer().write_all(&data[sent..sent + n]).unwrap();
                sent += n;
            }
            got.extend(pump(&mut sim, k, &mut c));
            if got.len() >= data.len() {
                break;
            }
            assert!(i < 10_000, "the transfer stalled at {} bytes", got.len());
        }
        let first_bad = got.iter().zip(&data).position(|(a, b)| a != b);
        assert_eq!(first_bad, None, "recv {recv_max}, send {send_max}");
        assert_eq!(got.len(), data.len());
        assert_eq!(sim.engine.buffers_in_use(), 0);
    }
}

#[test]
fn each_tls_leg_counts_the_record_path_it_took() {
    use crate::{ktls::Userspace, metrics::Peer};
    let p = pki();
    let mut sim = Sim::new(terminate_spec(&p));
    sim.engine = Engine::new(vec![terminate_spec(&p)], 7, sim.now, sim.metrics.clone())
        .with_ktls(KtlsSupport::NoTlsUlp);
    for _ in 0..2 {
        let k = sim.accept();
        let mut c = client(&p, true);
        pump(&mut sim, k, &mut c);
        assert!(!c.is_handshaking());
    }
    let counters = sim.metrics.service(0);
    assert_eq!(counters.record_paths(Peer::Client, Userspace::NoTlsUlp), 2);
    assert_eq!(
        counters.record_paths(Peer::Upstream, Userspace::NoTlsUlp),
        0
    );
    let text = crate::metrics::render(&[&sim.metrics]);
    assert!(
        text.contains(
            "causeway_terminator_tls_record_path_total{service=\"demo\",peer=\"src\",path=\"userspace\",reason=\"no_tls_ulp\"} 2"
        ),
        "{text}"
    );
}

#[test]
fn a_client_without_a_certificate_is_refused_and_counted() {
    let p = pki();
    let mut sim = Sim::new(terminate_spec(&p));
    let k = sim.accept();
    let mut c = client(&p, false);
    pump(&mut sim, k, &mut c);
    assert!(sim.conn(k).closed.is_some(), "refused");
    assert!(sim.connects.is_empty(), "never reached an upstream");
    assert_eq!(
        sim.metrics
            .service(0)
            .client_handshake_failures("no_client_cert"),
        1
    );
}

#[test]
fn a_silent_client_hits_the_handshake_timeout() {
    let p = pki();
    let mut sim = Sim::new(terminate_spec(&p));
    let k = sim.accept();
    sim.advance(Duration::from_secs(9));
    assert_eq!(sim.conn(k).closed, None);
    sim.advance(Duration::from_secs(2));
    assert_eq!(sim.conn(k).closed, Some(true));
    assert_eq!(
        sim.metrics.service(0).client_handshake_failures("timeout"),
        1
    );
}

#[test]
fn originate_speaks_mtls_to_the_upstream() {
    let p = pki();
    let mut spec = plain_spec(vec![addr(1)]);
    spec.client_tls = Some(Arc::new(
        ClientTls::load(&p.pki.upstream_material()).unwrap(),
    ));
    let mut sim = Sim::new(spec);
    sim.echo = false;
    let k = sim.accept();
    // The upstream: a rustls server with the lab's upstream identity that
    // requires the gateway's client certificate.
    let upstream_cfg = ServerTls::load(&ServerMaterialConfig {
        cert: p.pki.upstream.cert.clone(),
        key: p.pki.upstream.key.clone(),
        client_trust: Some(p.pki.ca_cert.clone()),
        allowed_identities: vec![p.pki.server.spiffe_id.clone()],
        versions: TlsVersions::Tls13,
        alpn: Vec::new(),
    })
    .unwrap()
    .current();
    let mut server = rustls::ServerConnection::new(upstream_cfg).unwrap();
    sim.client_send(k, b"plain from the client");
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
    assert!(!server.is_handshaking());
    assert_eq!(
        got, b"plain from the client",
        "encrypted on the wire, plain at the server"
    );
    assert_eq!(
        crate::identity::peer_identity(&server).as_deref(),
        Some(p.pki.server.spiffe_id.as_str()),
        "the gateway presented its identity"
    );
    server.writer().write_all(b"answer").unwrap();
    let mut back = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut back).unwrap();
    }
    sim.upstream(k).to_engine.extend(back);
    sim.run();
    assert_eq!(sim.conn(k).client.from_engine, b"answer");
}

#[test]
fn an_abandoned_attempt_keeps_its_outbox_while_its_send_is_in_flight() {
    let p = pki();
    let mut spec = plain_spec(vec![addr(1), addr(2)]);
    spec.client_tls = Some(Arc::new(
        ClientTls::load(&p.pki.upstream_material()).unwrap(),
    ));
    let mut sim = Sim::new(spec);
    // Upstreams accept the TCP connect but never read: the ClientHello's
    // send stays in the "kernel".
    sim.stall_upstreams = true;
    let k = sim.accept();
    let first = sim.upstream(k).in_flight.expect("the ClientHello is held");
    let in_use = sim.engine.buffers_in_use();
    // The TLS handshake never finishes: the attempt times out and is
    // abandoned (Io::Abort; the driver cancels the send, which completes
    // later), and the next endpoint is tried.
    sim.advance(Duration::from_millis(1100));
    assert_eq!(sim.connects.len(), 2, "retried elsewhere");
    let second = sim
        .upstream(k)
        .in_flight
        .expect("the new ClientHello is held");
    assert!(
        !overlap(first, second),
        "the new attempt's ClientHello was written into the chunk the old send reads"
    );
    assert!(
        sim.engine.buffers_in_use() > in_use,
        "the abandoned outbox is still lent"
    );
    sim.engine.close_all(sim.now);
    sim.run();
    sim.cancel_held_sends();
    assert_eq!(sim.engine.live_connections(), 0);
    assert_eq!(sim.engine.buffers_in_use(), 0, "every chunk went back");
}
