//! The lab CA and its on-disk layout.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;

use super::super::ca::{Ca, CaError, KeyKind, Leaf, lab_pki};
use super::super::spiffe_id_of;
use super::{TD, id, leaf_der};

#[test]
fn lab_pki_reuses_what_is_valid_and_reissues_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let first = lab_pki(dir.path(), TD, &[ip]).expect("first");
    let snapshot = |paths: &[&std::path::Path]| {
        paths
            .iter()
            .map(|p| std::fs::read(p).expect("read"))
            .collect::<Vec<_>>()
    };
    let all = [
        first.ca_cert.as_path(),
        first.ca_key.as_path(),
        first.server.cert.as_path(),
        first.server.key.as_path(),
        first.client.cert.as_path(),
        first.client.key.as_path(),
        first.upstream.cert.as_path(),
        first.upstream.key.as_path(),
    ];
    let before = snapshot(&all);

    for key in [
        &first.ca_key,
        &first.server.key,
        &first.client.key,
        &first.upstream.key,
    ] {
        let mode = std::fs::metadata(key).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
    assert_eq!(first.server.spiffe_id, id("gateway"));
    assert_eq!(first.client.spiffe_id, id("client"));
    assert_eq!(first.upstream.spiffe_id, id("upstream"));
    for leaf in [&first.server, &first.client, &first.upstream] {
        assert_eq!(
            spiffe_id_of(&leaf_der(&leaf.cert)),
            Some(leaf.spiffe_id.clone())
        );
    }

    // Again: nothing rewritten.
    let second = lab_pki(dir.path(), TD, &[ip]).expect("second");
    assert_eq!(second, first);
    assert_eq!(snapshot(&all), before);

    // Other server IPs: only the server is reissued.
    let other_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    lab_pki(dir.path(), TD, &[ip, other_ip]).expect("third");
    let after = snapshot(&all);
    assert_eq!(after[..2], before[..2], "CA kept");
    assert_ne!(after[2], before[2], "server reissued");
    assert_eq!(after[4..], before[4..], "client and upstream kept");

    // A missing client leaf is reissued; a broken CA reissues everything.
    std::fs::remove_file(&first.client.cert).expect("rm");
    lab_pki(dir.path(), TD, &[ip, other_ip]).expect("fourth");
    assert_ne!(snapshot(&all)[4], before[4]);
    std::fs::write(&first.ca_key, b"junk").expect("break CA");
    lab_pki(dir.path(), TD, &[ip, other_ip]).expect("fifth");
    let rebuilt = snapshot(&all);
    assert_ne!(rebuilt[0], before[0]);
    assert_ne!(rebuilt[6], before[6], "upstream reissued under the new CA");
}

#[test]
fn a_loaded_ca_issues_like_the_original() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA").expect("CA");
    let (cert, key) = ca.write(dir.path(), "ca").expect("write");
    let loaded = Ca::load(&cert, &key).expect("load");
    assert_eq!(loaded.cert_pem(), ca.cert_pem());

    // Loading with someone else's key is refused.
    let (_, other_key) = Ca::new("other")
        .expect("CA")
        .write(dir.path(), "other")
        .expect("write");
    assert!(matches!(
        Ca::load(&cert, &other_key),
        Err(CaError::KeyMismatch { .. })
    ));

    let issued = loaded.issue(&Leaf::svid(&id("x"))).expect("issue");
    let (leaf, _) = issued.write(dir.path(), "x").expect("write");
    assert_eq!(spiffe_id_of(&leaf_der(&leaf)), Some(id("x")));
}

#[test]
fn issue_checks_its_inputs() {
    let ca = Ca::new("test CA").expect("CA");
    assert!(matches!(
        ca.issue(&Leaf::svid("https://not/spiffe")),
        Err(CaError::NotSpiffeId(_))
    ));
    assert!(matches!(
        lab_pki(std::path::Path::new("/nonexistent"), "Bad/Domain", &[]),
        Err(CaError::NotSpiffeId(_))
    ));
    let rsa = ca.issue(&Leaf {
        key: KeyKind::Rsa2048,
        ..Leaf::svid(&id("rsa"))
    });
    if cfg!(feature = "aws-lc-rs") {
        assert!(rsa.is_ok(), "{:?}", rsa.err());
    } else {
        let err = rsa.expect_err("ring cannot generate RSA");
        assert!(matches!(err, CaError::RsaUnavailable));
        assert!(err.to_string().contains("openssl genpkey"), "{err}");
    }
}
