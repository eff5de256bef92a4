//! The accepting side: who gets in, who does not, and why.

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, HandshakeKind, ProtocolVersion};

use super::super::ca::{Ca, KeyKind, Leaf};
use super::super::{HandshakeFailure, ServerTls, TlsVersions, classify, peer_identity};
use super::{Lab, connect, exchange, id, leaf_between, leaf_der, localhost, openssl, write_issued};

#[test]
fn mtls_handshake_names_both_peers() {
    let lab = Lab::new();
    let server = ServerTls::load(&lab.pki.server_material()).expect("server material");
    let client = lab.client(
        &lab.pki.client.cert,
        &lab.pki.client.key,
        TlsVersions::Tls13,
    );

    let (mut c, mut s, outcome) = connect(client.current(), localhost(), server.current());
    outcome.assert_ok();
    assert_eq!(peer_identity(&s).as_deref(), Some(id("client").as_str()));
    assert_eq!(peer_identity(&c).as_deref(), Some(id("gateway").as_str()));
    assert_eq!(c.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(c.alpn_protocol(), None);
    exchange(&mut c, &mut s, b"ping");
}

#[test]
fn client_without_certificate_is_refused() {
    let lab = Lab::new();
    let server = ServerTls::load(&lab.pki.server_material()).expect("server material");

    let (_, _, outcome) = connect(lab.anonymous_client(), localhost(), server.current());
    let err = outcome.server.expect_err("server must refuse");
    assert!(
        matches!(err, rustls::Error::NoCertificatesPresented),
        "{err:?}"
    );
    assert_eq!(classify(&err), HandshakeFailure::NoClientCert);
    let client_err = outcome.client.expect_err("client sees the refusal");
    assert_eq!(
        client_err,
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
    );
    assert_eq!(classify(&client_err), HandshakeFailure::NoClientCert);
}

#[test]
fn client_from_another_ca_is_refused() {
    let lab = Lab::new();
    let server = ServerTls::load(&lab.pki.server_material()).expect("server material");
    let rogue = Ca::new("rogue CA").expect("rogue CA");
    // Same SPIFFE ID as the real client: only the chain gives it away.
    let (cert, key) = write_issued(&rogue, lab.dir.path(), "rogue", &Leaf::svid(&id("client")));
    let client = lab.client(&cert, &key, TlsVersions::Tls13);

    let (_, _, outcome) = connect(client.current(), localhost(), server.current());
    let err = outcome.server.expect_err("server must refuse");
    assert_eq!(classify(&err), HandshakeFailure::UnknownCa, "{err:?}");
    let client_err = outcome.client.expect_err("client sees the refusal");
    assert_eq!(
        classify(&client_err),
        HandshakeFailure::UnknownCa,
        "{client_err:?}"
    );
}

#[test]
fn expired_and_not_yet_valid_clients_are_refused() {
    let lab = Lab::new();
    let server = ServerTls::load(&lab.pki.server_material()).expect("server material");
    for (stem, leaf, want) in [
        (
            "expired",
            leaf_between(&id("client"), -10, -1),
            HandshakeFailure::Expired,
        ),
        (
            "early",
            leaf_between(&id("client"), 1, 10),
            HandshakeFailure::NotYetValid,
        ),
    ] {
        let (cert, key) = lab.issue(stem, &leaf);
        let client = lab.client(&cert, &key, TlsVersions::Tls13);
        let (_, _, outcome) = connect(client.current(), localhost(), server.current());
        let err = outcome.server.expect_err("server must refuse");
        assert_eq!(classify(&err), want, "{stem}: {err:?}");
        // Both travel as certificate_expired (RFC 8446 §6.2).
        let client_err = outcome.client.expect_err("client sees the refusal");
        assert_eq!(
            classify(&client_err),
            HandshakeFailure::Expired,
            "{client_err:?}"
        );
    }
}

#[test]
fn identity_not_admitted_is_refused_with_access_denied() {
    let lab = Lab::new();
    let server = ServerTls::load(&lab.pki.server_material()).expect("server material");
    let mut no_id = Leaf::svid(&id("x"));
    no_id.spiffe_id = None;
    no_id.dns_names = vec!["client.lab.test".to_owned()];
    for (stem, leaf) in [("intruder", Leaf::svid(&id("intruder"))), ("noid", no_id)] {
        let (cert, key) = lab.issue(stem, &leaf);
        let client = lab.client(&cert, &key, TlsVersions::Tls13);
        let (_, _, outcome) = connect(client.current(), localhost(), server.current());
        let err = outcome.server.expect_err("server must refuse");
        assert_eq!(
            classify(&err),
            HandshakeFailure::IdentityNotAdmitted,
            "{stem}: {err:?}"
        );
        let client_err = outcome.client.expect_err("client sees the refusal");
        assert_eq!(
            client_err,
            rustls::Error::AlertReceived(AlertDescription::AccessDenied),
            "{stem}"
        );
        assert_eq!(classify(&client_err), HandshakeFailure::IdentityNotAdmitted);
    }
}

#[test]
fn empty_allow_list_admits_any_verified_client() {
    let lab = Lab::new();
    let mut material = lab.pki.server_material();
    material.allowed_identities.clear();
    let server = ServerTls::load(&material).expect("server material");
    let (cert, key) = lab.issue("other", &Leaf::svid(&id("other")));
    let client = lab.client(&cert, &key, TlsVersions::Tls13);

    let (_, s, outcome) = connect(client.current(), localhost(), server.current());
    outcome.assert_ok();
    assert_eq!(peer_identity(&s).as_deref(), Some(id("other").as_str()));
}

#[test]
fn plain_tls_asks_for_no_client_certificate() {
    let lab = Lab::new();
    let mut material = lab.pki.server_material();
    material.client_trust = None;
    material.allowed_identities.clear();
    let server = ServerTls::load(&material).expect("server material");

    let (mut c, mut s, outcome) = connect(lab.anonymous_client(), localhost(), server.current());
    outcome.assert_ok();
    assert_eq!(peer_identity(&s), None);
    assert_eq!(peer_identity(&c).as_deref(), Some(id("gateway").as_str()));
    exchange(&mut c, &mut s, b"plain");
}

#[test]
fn tls12_only_client_needs_tls12_allowed() {
    let lab = Lab::new();
    let tls12_client = lab.tls12_client();

    let server13 = ServerTls::load(&lab.pki.server_material()).expect("server material");
    let (_, _, outcome) = connect(tls12_client.clone(), localhost(), server13.current());
    let err = outcome.server.expect_err("1.3-only server must refuse 1.2");
    assert_eq!(classify(&err), HandshakeFailure::ProtocolVersion, "{err:?}");
    let client_err = outcome.client.expect_err("client sees the refusal");
    assert_eq!(
        classify(&client_err),
        HandshakeFailure::ProtocolVersion,
        "{client_err:?}"
    );

    let mut material = lab.pki.server_material();
    material.versions = TlsVersions::Tls12And13;
    let server12 = ServerTls::load(&material).expect("server material");
    let (c, s, outcome) = connect(tls12_client, localhost(), server12.current());
    outcome.assert_ok();
    assert_eq!(s.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(peer_identity(&s).as_deref(), Some(id("client").as_str()));
    assert_eq!(peer_identity(&c).as_deref(), Some(id("gateway").as_str()));
}

/// An RSA 2048 key: rcgen's own with aws-lc-rs, else `openssl genpkey`.
fn rsa_key(lab: &Lab) -> String {
    if cfg!(feature = "aws-lc-rs") {
        let issued = lab.ca.issue(&Leaf {
            key: KeyKind::Rsa2048,
            ..Leaf::svid(&id("rsa"))
        });
        return issued.expect("RSA with aws-lc-rs").key_pem;
    }
    let path = lab.path("rsa-src-key.pem");
    let path = path.to_str().expect("utf-8 path");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        path,
    ]);
    std::fs::read_to_string(path).expect("rsa key")
}

#[test]
fn ecdsa_and_rsa_server_keys_in_every_pem_format() {
    let lab = Lab::new();
    let client = lab.client(
        &lab.pki.client.cert,
        &lab.pki.client.key,
        TlsVersions::Tls13,
    );
    let ecdsa = Leaf::svid(&id("gateway"));
    let rsa = Leaf {
        key: KeyKind::Pem(rsa_key(&lab)),
        ..Leaf::svid(&id("gateway"))
    };
    // PKCS#8 as issued, then the traditional form: SEC1 for EC, PKCS#1 for
    // RSA.
    for (stem, leaf, traditional_header) in [
        ("ecdsa", ecdsa, "BEGIN EC PRIVATE KEY"),
        ("rsa", rsa, "BEGIN RSA PRIVATE KEY"),
    ] {
        let (cert, key) = lab.issue(stem, &leaf);
        let traditional = lab.path(&format!("{stem}-trad-key.pem"));
        let (key_s, trad_s) = (
            key.to_str().expect("utf-8"),
            traditional.to_str().expect("utf-8"),
        );
        openssl(&["pkey", "-in", key_s, "-traditional", "-out", trad_s]);
        let trad_pem = std::fs::read_to_string(&traditional).expect("traditional key");
        assert!(trad_pem.contains(traditional_header), "{stem}: {trad_pem}");

        for key in [&key, &traditional] {
            let mut material = lab.pki.server_material();
            material.cert = cert.clone();
            material.key = key.clone();
            let server = ServerTls::load(&material).expect("server material");
            let (mut c, mut s, outcome) = connect(client.current(), localhost(), server.current());
            outcome.assert_ok();
            let presented = c.peer_certificates().expect("server chain")[0].clone();
            assert_eq!(presented, leaf_der(&cert), "{stem} {}", key.display());
            exchange(&mut c, &mut s, stem.as_bytes());
        }
    }
}

#[test]
fn second_handshake_resumes_and_keeps_the_identity() {
    let lab = Lab::new();
    let server = ServerTls::load(&lab.pki.server_material()).expect("server material");
    let client = lab.client(
        &lab.pki.client.cert,
        &lab.pki.client.key,
        TlsVersions::Tls13,
    );
    let config = client.current();

    let (_, _, first) = connect(config.clone(), localhost(), server.current());
    first.assert_ok();
    let (mut c, mut s, second) = connect(config, localhost(), server.current());
    second.assert_ok();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(s.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(peer_identity(&s).as_deref(), Some(id("client").as_str()));
    exchange(&mut c, &mut s, b"again");
}

#[test]
fn tls12_resumes_too() {
    let lab = Lab::new();
    let mut material = lab.pki.server_material();
    material.versions = TlsVersions::Tls12And13;
    let server = ServerTls::load(&material).expect("server material");
    let config = lab.tls12_client();
    let name = ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]));

    connect(config.clone(), name.clone(), server.current())
        .2
        .assert_ok();
    let (_, s, second) = connect(config, name, server.current());
    second.assert_ok();
    assert_eq!(s.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(peer_identity(&s).as_deref(), Some(id("client").as_str()));
}

#[test]
fn failure_labels_are_distinct_and_index_in_order() {
    let mut labels: Vec<_> = HandshakeFailure::ALL.iter().map(|f| f.as_str()).collect();
    for (i, f) in HandshakeFailure::ALL.iter().enumerate() {
        assert_eq!(f.index(), i);
    }
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), HandshakeFailure::ALL.len());
}

#[test]
fn fixed_configs_serve_as_given() {
    let lab = Lab::new();
    let loaded = ServerTls::load(&lab.pki.server_material()).expect("server material");
    let fixed = ServerTls::fixed(loaded.current());
    assert!(std::sync::Arc::ptr_eq(&fixed.current(), &loaded.current()));
    assert!(fixed.material().is_none());
    assert!(matches!(
        fixed.reload_if_changed(),
        super::super::Reload::Unchanged
    ));
    let client = lab.client(
        &lab.pki.client.cert,
        &lab.pki.client.key,
        TlsVersions::Tls13,
    );
    let client = super::super::ClientTls::fixed(client.current());
    connect(client.current(), localhost(), fixed.current())
        .2
        .assert_ok();
}
