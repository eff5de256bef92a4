//! Several services on one listener, told apart by the ClientHello's SNI,
//! on virtual time: real rustls clients, each service with its own
//! certificate and its own client-certificate policy.

use std::{io::Write, sync::Arc, time::Duration};

use rustls::pki_types::ServerName;

use super::tests::{Sim, addr, plain_spec};
use super::tls_tests::{Pki, client_config, pki, pump};
use super::*;
use crate::identity::{
    ServerMaterialConfig, ServerTls, TlsVersions,
    ca::{Ca, Leaf},
};
use crate::metrics::ListenerRefusal;

/// A server certificate for `name`, issued by the lab CA.
fn server_cert(p: &Pki, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let ca = Ca::load(&p.pki.ca_cert, &p.pki.ca_key).unwrap();
    let mut leaf = Leaf::svid(&format!("spiffe://causeway.test/ns/lab/sa/{name}"));
    leaf.dns_names = vec![name.to_owned()];
    leaf.client = false;
    ca.issue(&leaf).unwrap().write(p._dir.path(), name).unwrap()
}

/// `alpha.test` (mTLS, the lab client only) to endpoint 1 and
/// `beta.test` (TLS, no client certificate) to endpoint 2, on one
/// listener; `default` names the service for other clients, if any.
fn two_services(p: &Pki, default: Option<usize>) -> Sim {
    let (alpha_cert, alpha_key) = server_cert(p, "alpha.test");
    let (beta_cert, beta_key) = server_cert(p, "beta.test");
    let mut alpha = plain_spec(vec![addr(1)]);
    alpha.name = "alpha".into();
    alpha.server_tls = Some(Arc::new(
        ServerTls::load(&ServerMaterialConfig {
            cert: alpha_cert,
            key: alpha_key,
            client_trust: Some(p.pki.ca_cert.clone()),
            allowed_identities: vec![p.pki.client.spiffe_id.clone()],
            versions: TlsVersions::Tls13,
            alpn: Vec::new(),
        })
        .unwrap(),
    ));
    let mut beta = plain_spec(vec![addr(2)]);
    beta.name = "beta".into();
    beta.server_tls = Some(Arc::new(
        ServerTls::load(&ServerMaterialConfig {
            cert: beta_cert,
            key: beta_key,
            client_trust: None,
            allowed_identities: Vec::new(),
            versions: TlsVersions::Tls13,
            alpn: Vec::new(),
        })
        .unwrap(),
    ));
    let listener = ListenerSpec {
        listen: "10.100.0.10:443".parse().unwrap(),
        accepts_for: 0,
        names: vec![("alpha.test".into(), 0), ("beta.test".into(), 1)],
        default,
        postgres: false,
    };
    Sim::routing(vec![alpha, beta], &[listener])
}

/// A client for `name` (`None`: an IP address, so no SNI), trusting the
/// lab CA, presenting the lab client certificate if `with_cert`.
fn client_for(p: &Pki, name: Option<&str>, with_cert: bool) -> rustls::ClientConnection {
    let config = client_config(p, with_cert, Vec::new());
    let server = match name {
        Some(n) => ServerName::try_from(n.to_owned()).unwrap(),
        None => ServerName::IpAddress(std::net::Ipv4Addr::new(10, 100, 0, 10).into()),
    };
    rustls::ClientConnection::new(config, server).unwrap()
}

/// Accepts a client, handshakes and echoes one message; what came back.
fn round_trip(sim: &mut Sim, c: &mut rustls::ClientConnection) -> (ConnKey, Vec<u8>) {
    let k = sim.accept();
    pump(sim, k, c);
    c.writer().write_all(b"ping").unwrap();
    (k, pump(sim, k, c))
}

#[test]
fn the_server_name_chooses_the_service_its_certificate_and_upstream() {
    let p = pki();
    let mut sim = two_services(&p, None);
    // alpha wants the lab client certificate; the client verifies that it
    // got alpha.test's certificate (its name is not in beta's).
    let mut a = client_for(&p, Some("alpha.test"), true);
    let (ka, echoed) = round_trip(&mut sim, &mut a);
    assert_eq!(echoed, b"ping");
    assert_eq!(
        sim.engine.identity(ka),
        Some(p.pki.client.spiffe_id.as_str())
    );
    // beta asks for no certificate.
    let mut b = client_for(&p, Some("BETA.test"), false);
    let (kb, echoed) = round_trip(&mut sim, &mut b);
    assert_eq!(echoed, b"ping");
    assert_eq!(sim.engine.identity(kb), None);
    assert_eq!(sim.connects, [addr(1), addr(2)], "each to its own upstream");
    // Each counted for its own service.
    for i in 0..2 {
        let c = sim.metrics.service(i);
        assert_eq!(c.open(), 1, "service {i}");
    }
}

#[test]
fn each_service_keeps_its_own_client_certificate_policy() {
    let p = pki();
    let mut sim = two_services(&p, None);
    let mut a = client_for(&p, Some("alpha.test"), false);
    let k = sim.accept();
    pump(&mut sim, k, &mut a);
    assert!(sim.conn(k).closed.is_some(), "alpha requires a certificate");
    assert!(sim.connects.is_empty());
    assert_eq!(
        sim.metrics
            .service(0)
            .client_handshake_failures("no_client_cert"),
        1
    );
    assert_eq!(
        sim.metrics
            .service(1)
            .client_handshake_failures("no_client_cert"),
        0
    );
}

#[test]
fn unknown_and_absent_server_names_are_refused_and_counted_apart() {
    let p = pki();
    let mut sim = two_services(&p, None);
    let mut other = client_for(&p, Some("gamma.test"), true);
    let k = sim.accept();
    pump(&mut sim, k, &mut other);
    assert_eq!(sim.conn(k).closed, Some(false), "closed after the alert");
    assert_eq!(
        other.process_new_packets().unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnrecognisedName),
        "a fatal unrecognized_name alert"
    );
    let mut none = client_for(&p, None, true);
    let k = sim.accept();
    pump(&mut sim, k, &mut none);
    assert!(sim.conn(k).closed.is_some());
    assert!(sim.connects.is_empty(), "no upstream for either");
    let l = sim.metrics.listener(0);
    assert_eq!(l.refusals(ListenerRefusal::UnknownSni), 1);
    assert_eq!(l.refusals(ListenerRefusal::NoSni), 1);
    for i in 0..2 {
        assert_eq!(sim.metrics.service(i).open(), 0, "no service counted them");
    }
    assert_eq!(sim.engine.live_connections(), 0);
    assert_eq!(sim.engine.buffers_in_use(), 0);
}

#[test]
fn the_default_service_takes_clients_without_a_known_name() {
    let p = pki();
    let mut sim = two_services(&p, Some(1));
    let mut none = client_for(&p, None, false);
    // beta's certificate does not name 10.100.0.10: the client refuses it,
    // which proves the handshake reached beta and not a refusal.
    let k = sim.accept();
    pump(&mut sim, k, &mut none);
    let text = crate::metrics::render(&[&sim.metrics]);
    assert!(
        text.contains("causeway_terminator_tcp_open_total{service=\"beta\",peer=\"src\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("causeway_terminator_tcp_open_total{service=\"alpha\",peer=\"src\"} 0"),
        "{text}"
    );
    assert_eq!(sim.metrics.listener(0).refusals(ListenerRefusal::NoSni), 0);
}

#[test]
fn bytes_that_are_not_a_client_hello_are_refused_and_counted() {
    let p = pki();
    let mut sim = two_services(&p, None);
    let k = sim.accept();
    sim.client_send(k, b"GET / HTTP/1.1\r\nHost: alpha.test\r\n\r\n");
    assert!(sim.conn(k).closed.is_some());
    assert_eq!(
        sim.metrics.listener(0).refusals(ListenerRefusal::BadHello),
        1
    );
}

#[test]
fn a_silent_client_of_a_shared_listener_times_out_counted_there() {
    let p = pki();
    let mut sim = two_services(&p, None);
    let k = sim.accept();
    sim.advance(Duration::from_secs(11));
    assert_eq!(sim.conn(k).closed, Some(true));
    assert_eq!(
        sim.metrics.listener(0).refusals(ListenerRefusal::Timeout),
        1
    );
    assert!(!sim.paused[0], "the accept slot came back");
    assert_eq!(sim.engine.live_connections(), 0);
}

#[test]
fn metrics_render_the_listener_family() {
    let p = pki();
    let mut sim = two_services(&p, None);
    let k = sim.accept();
    sim.client_fin(k);
    let text = crate::metrics::render(&[&sim.metrics]);
    assert!(
        text.contains(
            "causeway_terminator_listener_refused_total{listen=\"10.100.0.10:443\",reason=\"eof\"} 1"
        ),
        "{text}"
    );
}

#[test]
fn the_per_client_cap_of_a_shared_listener_is_counted_there() {
    let p = pki();
    let mut sim = two_services(&p, None);
    for s in &mut sim.engine.services {
        s.spec.max_connections_per_client = 1;
    }
    let first = sim.accept();
    let second = sim.accept();
    assert_eq!(sim.conn(first).closed, None);
    assert_eq!(sim.conn(second).closed, Some(true), "reset at once");
    assert_eq!(
        sim.metrics
            .listener(0)
            .refusals(ListenerRefusal::ClientLimit),
        1
    );
    for i in 0..2 {
        assert_eq!(
            sim.metrics.service(i).refusals(Refusal::ClientLimit),
            0,
            "no service was chosen for it"
        );
    }
    // The first one goes; the address may connect again.
    sim.client_fin(first);
    let third = sim.accept();
    assert_eq!(sim.conn(third).closed, None);
}
