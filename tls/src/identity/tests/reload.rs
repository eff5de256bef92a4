//! Reloading: new files take effect, bad files do not, old connections live.

use std::sync::Arc;

use super::super::ca::Leaf;
use super::super::{
    MaterialError, Reload, ServerMaterialConfig, ServerTls, TlsVersions, peer_identity,
};
use super::{Lab, connect, exchange, id, leaf_der, localhost, pump};

fn server(lab: &Lab) -> ServerTls {
    ServerTls::load(&lab.pki.server_material()).expect("server material")
}

#[test]
fn new_files_are_served_and_old_connections_keep_working() {
    let lab = Lab::new();
    let server = server(&lab);
    let client = lab.client(
        &lab.pki.client.cert,
        &lab.pki.client.key,
        TlsVersions::Tls13,
    );
    let old_leaf = leaf_der(&lab.pki.server.cert);
    assert!(matches!(server.reload_if_changed(), Reload::Unchanged));

    // A connection made before the rotation, and the config it came from.
    let old_config = server.current();
    let (mut old_c, mut old_s, outcome) =
        connect(client.current(), localhost(), old_config.clone());
    outcome.assert_ok();

    // Rotate: a new key and certificate over the same paths.
    lab.issue("server", &Leaf::svid(&id("gateway")));
    let new_leaf = leaf_der(&lab.pki.server.cert);
    assert_ne!(new_leaf, old_leaf);
    assert!(matches!(server.reload_if_changed(), Reload::Reloaded));
    assert!(!Arc::ptr_eq(&server.current(), &old_config));
    assert!(matches!(server.reload_if_changed(), Reload::Unchanged));

    // New handshakes present the new certificate ...
    let (_, _, outcome) = connect(client.current(), localhost(), server.current());
    outcome.assert_ok();
    let (c, _, _) = connect(client.current(), localhost(), server.current());
    assert_eq!(c.peer_certificates().expect("chain")[0], new_leaf);

    // ... while the old connection still carries data, and the old config
    // still makes connections with the old certificate.
    exchange(&mut old_c, &mut old_s, b"still here");
    let (c, _, outcome) = connect(client.current(), localhost(), old_config);
    outcome.assert_ok();
    assert_eq!(c.peer_certificates().expect("chain")[0], old_leaf);
}

#[test]
fn rewriting_the_same_bytes_is_unchanged() {
    let lab = Lab::new();
    let server = server(&lab);
    let before = server.current();
    let bytes = std::fs::read(&lab.pki.server.cert).expect("read");
    std::fs::write(&lab.pki.server.cert, bytes).expect("rewrite");
    assert!(matches!(server.reload_if_changed(), Reload::Unchanged));
    assert!(Arc::ptr_eq(&server.current(), &before));
}

#[test]
fn bad_files_are_refused_and_the_old_config_stays() {
    let lab = Lab::new();
    let server = server(&lab);
    let client = lab.client(
        &lab.pki.client.cert,
        &lab.pki.client.key,
        TlsVersions::Tls13,
    );
    let before = server.current();
    let cert = lab.pki.server.cert.clone();
    let key = lab.pki.server.key.clone();
    let good_cert = std::fs::read(&cert).expect("cert");
    let good_key = std::fs::read(&key).expect("key");
    let trust = lab.pki.ca_cert.clone();
    let good_trust = std::fs::read(&trust).expect("trust");

    let refused = |what: &str, check: &dyn Fn(&MaterialError) -> bool| {
        match server.reload_if_changed() {
            Reload::Refused(e) => {
                assert!(check(&e), "{what}: unexpected error {e:?}");
                assert!(
                    e.to_string().contains("/"),
                    "{what}: message names no file: {e}"
                );
            }
            other => panic!("{what}: expected Refused, got {other:?}"),
        }
        assert!(
            Arc::ptr_eq(&server.current(), &before),
            "{what}: config replaced"
        );
        let (_, _, outcome) = connect(client.current(), localhost(), server.current());
        outcome.assert_ok();
    };

    std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nnot base64!\n").expect("write");
    refused(
        "truncated PEM",
        &|e| matches!(e, MaterialError::Pem { path, .. } if *path == cert),
    );
    // Asked again with the same bad file: still refused (warned only once).
    refused("same bad PEM", &|e| matches!(e, MaterialError::Pem { .. }));

    std::fs::write(&cert, b"no pem here\n").expect("write");
    refused(
        "no certificate",
        &|e| matches!(e, MaterialError::NoCertificate { path } if *path == cert),
    );

    std::fs::write(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    refused(
        "garbage DER",
        &|e| matches!(e, MaterialError::BadCertificate { path, .. } if *path == cert),
    );

    // A new certificate whose key has not been written yet.
    let fresh = lab.ca.issue(&Leaf::svid(&id("gateway"))).expect("issue");
    std::fs::write(&cert, &fresh.cert_pem).expect("write");
    refused("key mismatch", &|e| {
        matches!(e, MaterialError::KeyMismatch { .. })
    });

    std::fs::write(&cert, &good_cert).expect("restore cert");
    std::fs::write(&key, b"").expect("write");
    refused(
        "empty key",
        &|e| matches!(e, MaterialError::NoKey { path } if *path == key),
    );
    std::fs::write(&key, &good_key).expect("restore key");

    std::fs::write(&trust, b"").expect("write");
    refused(
        "empty bundle",
        &|e| matches!(e, MaterialError::EmptyTrust { path } if *path == trust),
    );

    std::fs::remove_file(&trust).expect("remove");
    refused(
        "missing bundle",
        &|e| matches!(e, MaterialError::Read { path, .. } if *path == trust),
    );

    // Back to the good files: nothing changed from what is served.
    std::fs::write(&trust, &good_trust).expect("restore trust");
    assert!(matches!(server.reload_if_changed(), Reload::Unchanged));

    // And a complete rotation after all that goes through.
    lab.issue("server", &Leaf::svid(&id("gateway")));
    assert!(matches!(server.reload_if_changed(), Reload::Reloaded));
}

#[test]
fn reloaded_trust_bundle_and_policy_apply_to_new_handshakes() {
    let lab = Lab::new();
    let server = server(&lab);
    let client = lab.client(
        &lab.pki.client.cert,
        &lab.pki.client.key,
        TlsVersions::Tls13,
    );
    let config = client.current();
    let (_, _, outcome) = connect(config.clone(), localhost(), server.current());
    outcome.assert_ok();

    // Swap the trust bundle for another CA's: the lab client is now unknown,
    // even with a session ticket from before.
    let other = super::super::ca::Ca::new("other CA").expect("CA");
    std::fs::write(&lab.pki.ca_cert, other.cert_pem()).expect("write bundle");
    assert!(matches!(server.reload_if_changed(), Reload::Reloaded));
    let (mut c, mut s, outcome) = connect(config, localhost(), server.current());
    assert!(outcome.server.is_err(), "{outcome:?}");
    assert!(peer_identity(&s).is_none());
    let _ = pump(&mut c, &mut s);
}

#[test]
fn load_errors_name_what_to_fix() {
    let lab = Lab::new();
    let base = lab.pki.server_material();

    let bad_id = ServerMaterialConfig {
        allowed_identities: vec!["client".to_owned()],
        ..base.clone()
    };
    let err = ServerTls::load(&bad_id).err().expect("not a SPIFFE ID");
    assert!(matches!(
        err,
        MaterialError::NotSpiffeId {
            field: "allowed_identities",
            ..
        }
    ));
    assert!(err.to_string().contains("spiffe://"), "{err}");

    let no_trust = ServerMaterialConfig {
        client_trust: None,
        ..base.clone()
    };
    let err = ServerTls::load(&no_trust)
        .err()
        .expect("identities without trust");
    assert!(matches!(err, MaterialError::IdentitiesWithoutTrust));

    let missing = ServerMaterialConfig {
        key: lab.path("nope-key.pem"),
        ..base
    };
    let err = ServerTls::load(&missing).err().expect("missing key");
    assert!(err.to_string().contains("nope-key.pem"), "{err}");
    assert_eq!(err.path(), Some(lab.path("nope-key.pem").as_path()));
}

#[test]
fn a_device_a_fifo_or_a_huge_file_is_refused_before_it_is_read() {
    let lab = Lab::new();
    let base = lab.pki.server_material();
    // /dev/zero never ends: read whole, it would fill memory.
    let started = std::time::Instant::now();
    for (cert, key) in [
        (std::path::PathBuf::from("/dev/zero"), base.key.clone()),
        (base.cert.clone(), std::path::PathBuf::from("/dev/zero")),
    ] {
        let err = ServerTls::load(&ServerMaterialConfig {
            cert,
            key,
            ..base.clone()
        })
        .err()
        .expect("/dev/zero refused");
        assert!(matches!(err, MaterialError::NotAFile { .. }), "{err}");
        assert!(err.to_string().contains("/dev/zero"), "{err}");
    }
    // A FIFO with no writer: opening it must not wait.
    let fifo = lab.path("fifo.pem");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = ServerTls::load(&ServerMaterialConfig {
        key: fifo,
        ..base.clone()
    })
    .err()
    .expect("a FIFO refused");
    assert!(matches!(err, MaterialError::NotAFile { .. }), "{err}");
    // A file past the limit.
    let huge = lab.path("huge.pem");
    std::fs::write(
        &huge,
        vec![b'A'; usize::try_from(super::super::MAX_MATERIAL_FILE).unwrap() + 1],
    )
    .unwrap();
    let err = ServerTls::load(&ServerMaterialConfig {
        cert: huge.clone(),
        ..base
    })
    .err()
    .expect("too large");
    assert!(matches!(err, MaterialError::TooLarge { .. }), "{err}");
    assert_eq!(err.path(), Some(huge.as_path()));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "refusals took {:?}",
        started.elapsed()
    );
}
