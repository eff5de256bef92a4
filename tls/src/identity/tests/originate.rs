//! The originating side: upstreams verified by chain and SPIFFE ID, not name.

use std::net::IpAddr;

use rustls::pki_types::ServerName;

use super::super::ca::{Ca, Leaf};
use super::super::{
    ClientMaterialConfig, ClientTls, HandshakeFailure, ServerMaterialConfig, ServerTls,
    TlsVersions, classify, peer_identity,
};
use super::{Lab, connect, exchange, id, write_issued};

/// An upstream presenting `cert`/`key`, requiring mTLS from the lab CA.
fn upstream(lab: &Lab, cert: &std::path::Path, key: &std::path::Path) -> ServerTls {
    ServerTls::load(&ServerMaterialConfig {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        client_trust: Some(lab.pki.ca_cert.clone()),
        allowed_identities: vec![id("gateway")],
        versions: TlsVersions::Tls13,
        alpn: Vec::new(),
    })
    .expect("upstream material")
}

fn gateway(lab: &Lab) -> ClientTls {
    ClientTls::load(&lab.pki.upstream_material()).expect("gateway client material")
}

/// Names that are not in the upstream's certificate (it has no DNS or IP
/// SANs at all).
fn names() -> [ServerName<'static>; 2] {
    [
        ServerName::from(IpAddr::from([10, 0, 0, 9])),
        ServerName::try_from("not-the-name.example").expect("name"),
    ]
}

#[test]
fn upstream_is_verified_by_identity_not_hostname() {
    let lab = Lab::new();
    let up = upstream(&lab, &lab.pki.upstream.cert, &lab.pki.upstream.key);
    let gw = gateway(&lab);
    for name in names() {
        let (mut c, mut s, outcome) = connect(gw.current(), name, up.current());
        outcome.assert_ok();
        assert_eq!(peer_identity(&c).as_deref(), Some(id("upstream").as_str()));
        assert_eq!(peer_identity(&s).as_deref(), Some(id("gateway").as_str()));
        exchange(&mut c, &mut s, b"upstream");
    }
}

#[test]
fn upstream_outside_the_identities_is_refused() {
    let lab = Lab::new();
    // The gateway's own certificate has serverAuth, a good chain and the
    // wrong identity for an upstream.
    let up = upstream(&lab, &lab.pki.server.cert, &lab.pki.server.key);
    let gw = gateway(&lab);
    let (_, _, outcome) = connect(gw.current(), names()[0].clone(), up.current());
    let err = outcome.client.expect_err("gateway must refuse");
    assert_eq!(
        classify(&err),
        HandshakeFailure::IdentityNotAdmitted,
        "{err:?}"
    );
    let server_err = outcome.server.expect_err("upstream sees the refusal");
    assert_eq!(classify(&server_err), HandshakeFailure::IdentityNotAdmitted);

    // With no identities listed, any chain from the trust bundle will do.
    let any = ClientTls::load(&ClientMaterialConfig {
        upstream_identities: Vec::new(),
        ..lab.pki.upstream_material()
    })
    .expect("material");
    let (c, _, outcome) = connect(any.current(), names()[0].clone(), up.current());
    outcome.assert_ok();
    assert_eq!(peer_identity(&c).as_deref(), Some(id("gateway").as_str()));
}

#[test]
fn upstream_from_another_ca_is_refused() {
    let lab = Lab::new();
    let rogue = Ca::new("rogue CA").expect("CA");
    let (cert, key) = write_issued(
        &rogue,
        lab.dir.path(),
        "rogue",
        &Leaf::svid(&id("upstream")),
    );
    let up = upstream(&lab, &cert, &key);
    let (_, _, outcome) = connect(gateway(&lab).current(), names()[0].clone(), up.current());
    let err = outcome.client.expect_err("gateway must refuse");
    assert_eq!(classify(&err), HandshakeFailure::UnknownCa, "{err:?}");
}

#[test]
fn upstream_certificate_without_server_auth_is_refused() {
    let lab = Lab::new();
    // The lab client's certificate: right CA, clientAuth only.
    let mut leaf = Leaf::svid(&id("upstream"));
    leaf.server = false;
    let (cert, key) = lab.issue("clientonly", &leaf);
    let up = upstream(&lab, &cert, &key);
    let (_, _, outcome) = connect(gateway(&lab).current(), names()[0].clone(), up.current());
    let err = outcome.client.expect_err("gateway must refuse");
    assert_eq!(classify(&err), HandshakeFailure::BadCertificate, "{err:?}");
}

#[test]
fn expired_upstream_is_refused() {
    let lab = Lab::new();
    let (cert, key) = lab.issue("old", &super::leaf_between(&id("upstream"), -5, -1));
    let up = upstream(&lab, &cert, &key);
    let (_, _, outcome) = connect(gateway(&lab).current(), names()[0].clone(), up.current());
    let err = outcome.client.expect_err("gateway must refuse");
    assert_eq!(classify(&err), HandshakeFailure::Expired, "{err:?}");
}
