//! The PROXY protocol v2 on virtual time: the header sent upstream, the
//! header read from a trusted load balancer, and each refusal counted.

use std::{io::Write, sync::Arc, time::Duration};

use rustls::pki_types::ServerName;

use super::tests::{Sim, addr, plain_spec};
use super::tls_tests::{pki, pump};
use super::*;
use crate::{
    identity::{ClientMaterialConfig, ServerMaterialConfig, TlsVersions},
    metrics::Refusal,
    proxy::{self, Command, Decoded, Header, tlv},
};

const LISTEN: ([u8; 4], u16) = ([10, 100, 0, 10], 443);
const LB: [u8; 4] = [10, 9, 0, 5];

fn spec(send: bool, trusted: &[&str]) -> ServiceSpec {
    let mut spec = plain_spec(vec![addr(1)]);
    spec.proxy = ProxyProtocol {
        local: LISTEN.into(),
        send,
        trusted: trusted.iter().map(|c| c.parse().unwrap()).collect(),
    };
    spec
}

/// The header at the start of what the upstream of `k` received, and
/// the bytes after it.
fn upstream_header(sim: &mut Sim, k: ConnKey) -> (Header, Vec<u8>) {
    let got = sim.upstream(k).from_engine.clone();
    match proxy::decode(&got, true) {
        Ok(Decoded::Header(h, n)) => (h, got[n..].to_vec()),
        other => panic!("no header upstream: {other:?} in {got:02x?}"),
    }
}

fn refusals(sim: &Sim, why: Refusal) -> u64 {
    sim.metrics.service(0).refusals(why)
}

#[test]
fn the_upstream_gets_the_clients_address_first_then_its_bytes() {
    let mut sim = Sim::new(spec(true, &[]));
    sim.echo = false;
    let k = sim.accept();
    sim.client_send(k, b"hello");
    let (h, rest) = upstream_header(&mut sim, k);
    assert_eq!(h.command, Command::Proxy);
    assert_eq!(
        h.addresses,
        Some(("10.1.0.2:40000".parse().unwrap(), LISTEN.into()))
    );
    assert!(h.tlvs.is_empty(), "a plain client has no TLS facts");
    assert_eq!(rest, b"hello");
}

#[test]
fn a_trusted_balancers_header_names_the_client_everywhere_after() {
    let mut sim = Sim::new(spec(true, &["10.9.0.0/16"]));
    sim.echo = false;
    let k = sim.accept_from(LB);
    assert!(sim.connects.is_empty(), "nothing before the header");
    let mut lb = Vec::new();
    Header::proxy(
        "198.51.100.7:4242".parse().unwrap(),
        "203.0.113.1:443".parse().unwrap(),
    )
    .emit(&mut lb);
    // Split inside the fixed part, the rest with the client's first bytes.
    sim.client_send(k, &lb[..7]);
    assert!(sim.connects.is_empty());
    let mut tail = lb[7..].to_vec();
    tail.extend_from_slice(b"GET /");
    sim.client_send(k, &tail);
    assert_eq!(sim.connects, [addr(1)]);
    assert_eq!(
        sim.engine.client(k),
        Some("198.51.100.7:4242".parse().unwrap())
    );
    let (h, rest) = upstream_header(&mut sim, k);
    assert_eq!(
        h.addresses,
        Some((
            "198.51.100.7:4242".parse().unwrap(),
            "203.0.113.1:443".parse().unwrap()
        )),
        "the balancer's view is passed on"
    );
    assert_eq!(
        rest, b"GET /",
        "the bytes after the header are the client's"
    );
    assert_eq!(refusals(&sim, Refusal::ProxyBadHeader), 0);
}

#[test]
fn a_trusted_source_without_a_good_header_is_refused_and_counted() {
    let mut sim = Sim::new(spec(false, &["10.9.0.5"]));
    // A ClientHello where the header should be.
    let k = sim.accept_from(LB);
    sim.client_send(k, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    assert_eq!(sim.conn(k).closed, Some(true), "reset");
    // A header cut short by FIN.
    let k = sim.accept_from(LB);
    sim.client_send(k, &proxy::SIGNATURE[..10]);
    assert_eq!(sim.conn(k).closed, None, "waiting for the rest");
    sim.client_fin(k);
    assert_eq!(sim.conn(k).closed, Some(true));
    // A header with an unknown family.
    let k = sim.accept_from(LB);
    sim.client_send(k, &[&proxy::SIGNATURE[..], &[0x21, 0x51, 0, 0]].concat());
    assert_eq!(sim.conn(k).closed, Some(true));
    // Nothing at all within the handshake timeout.
    let k = sim.accept_from(LB);
    sim.advance(Duration::from_secs(11));
    assert_eq!(sim.conn(k).closed, Some(true));
    assert!(sim.connects.is_empty(), "no upstream for any of them");
    assert_eq!(refusals(&sim, Refusal::ProxyBadHeader), 4);
}

#[test]
fn a_header_from_an_untrusted_source_is_refused_and_others_pass() {
    let mut sim = Sim::new(spec(false, &["10.9.0.0/16"]));
    let k = sim.accept();
    let mut forged = Vec::new();
    Header::proxy("192.0.2.1:1".parse().unwrap(), LISTEN.into()).emit(&mut forged);
    sim.client_send(k, &forged);
    assert_eq!(sim.conn(k).closed, Some(true));
    let k = sim.accept();
    sim.client_send(k, b"PROXY TCP4 192.0.2.1 10.100.0.10 1 443\r\n");
    assert_eq!(sim.conn(k).closed, Some(true), "version 1 too");
    assert_eq!(refusals(&sim, Refusal::ProxyUntrusted), 2);
    // A client that sends anything else is served, its address its own.
    let k = sim.accept();
    sim.client_send(k, b"PUT / HTTP/1.1\r\n");
    assert_eq!(sim.conn(k).closed, None);
    assert_eq!(
        sim.conn(k).client.from_engine,
        b"PUT / HTTP/1.1\r\n",
        "echoed"
    );
    assert_eq!(
        sim.engine.client(k),
        Some("10.1.0.2:40002".parse().unwrap())
    );
}

#[test]
fn a_tls_clients_header_carries_its_spiffe_id_alpn_sni_and_tls_facts() {
    let p = pki();
    let mut s = spec(true, &[]);
    s.server_tls = Some(Arc::new(
        ServerTls::load(&ServerMaterialConfig {
            alpn: vec![b"h2".to_vec()],
            ..p.pki.server_material()
        })
        .unwrap(),
    ));
    let mut sim = Sim::new(s);
    sim.echo = false;
    let k = sim.accept();
    let config = ClientTls::load(&ClientMaterialConfig {
        cert: p.pki.client.cert.clone(),
        key: p.pki.client.key.clone(),
        trust: p.pki.ca_cert.clone(),
        upstream_identities: Vec::new(),
        versions: TlsVersions::Tls13,
    })
    .unwrap()
    .current();
    let mut c = rustls::ClientConnection::new_with_alpn(
        config,
        ServerName::try_from("gw.causeway.test").unwrap(),
        vec![b"h2".to_vec()],
    )
    .unwrap();
    pump(&mut sim, k, &mut c);
    c.writer().write_all(b"PRI").unwrap();
    pump(&mut sim, k, &mut c);
    let (h, rest) = upstream_header(&mut sim, k);
    assert_eq!(rest, b"PRI");
    assert_eq!(h.tlv(tlv::ALPN), Some(&b"h2"[..]));
    assert_eq!(h.tlv(tlv::AUTHORITY), Some(&b"gw.causeway.test"[..]));
    assert_eq!(
        h.tlv(tlv::SPIFFE_ID),
        Some(p.pki.client.spiffe_id.as_bytes())
    );
    let ssl = h.tlv(tlv::SSL).expect("PP2_TYPE_SSL");
    assert_eq!(
        ssl[0],
        tlv::CLIENT_SSL | tlv::CLIENT_CERT_CONN | tlv::CLIENT_CERT_SESS
    );
    assert_eq!(&ssl[1..5], &[0, 0, 0, 0], "verified");
    let subs = proxy::decode_tlvs(&ssl[5..], 0).unwrap();
    assert_eq!(subs[0].kind, tlv::SSL_VERSION);
    assert_eq!(subs[0].value, b"TLSv1.3");
    assert_eq!(subs[1].kind, tlv::SSL_CIPHER);
    assert!(subs[1].value.starts_with(b"TLS13_"), "{:?}", subs[1].value);
}
