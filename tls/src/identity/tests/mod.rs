//! Real handshakes, in memory: rustls connections pumped into each other.

mod ca;
mod handshake;
mod originate;
mod reload;
mod s_client;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::{ClientConnectionData, WebPkiServerVerifier};
use rustls::pki_types::ServerName;
use rustls::server::ServerConnectionData;
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, RootCertStore, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tempfile::TempDir;

use super::ca::{Ca, Issued, LabPki, Leaf, lab_pki};
use super::{ClientMaterialConfig, ClientTls, TlsVersions, provider};

pub(super) const TD: &str = "lab.test";
pub(super) const DAY: Duration = Duration::from_secs(24 * 3600);

pub(super) fn id(sa: &str) -> String {
    format!("spiffe://{TD}/ns/lab/sa/{sa}")
}

/// A lab PKI in a fresh temporary directory.
pub(super) struct Lab {
    pub dir: TempDir,
    pub pki: LabPki,
    pub ca: Ca,
}

impl Lab {
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = lab_pki(dir.path(), TD, &[IpAddr::V4(Ipv4Addr::LOCALHOST)]).expect("lab pki");
        let ca = Ca::load(&pki.ca_cert, &pki.ca_key).expect("load lab CA");
        Self { dir, pki, ca }
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues `leaf` from the lab CA into `stem.pem`/`stem-key.pem`.
    pub(super) fn issue(&self, stem: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        write_issued(&self.ca, self.dir.path(), stem, leaf)
    }

    /// A downstream client speaking through [`ClientTls`]: presents
    /// `cert`/`key`, trusts the lab CA, admits only the gateway.
    pub(super) fn client(&self, cert: &Path, key: &Path, versions: TlsVersions) -> ClientTls {
        ClientTls::load(&ClientMaterialConfig {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            trust: self.pki.ca_cert.clone(),
            upstream_identities: vec![id("gateway")],
            versions,
        })
        .expect("client material")
    }

    /// An ordinary WebPKI client with no certificate (like curl without
    /// `--cert`), checking the gateway's name `localhost`.
    pub(super) fn anonymous_client(&self) -> Arc<ClientConfig> {
        self.webpki_client(None, rustls::ALL_VERSIONS)
    }

    /// An ordinary WebPKI client (hostname checked), presenting `identity`
    /// if given, offering `versions`.
    pub(super) fn webpki_client(
        &self,
        identity: Option<(&Path, &Path)>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.pki.ca_cert).expect("ca") {
            roots.add(cert.expect("ca cert")).expect("trust anchor");
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .expect("verifier");
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_webpki_verifier(verifier);
        Arc::new(match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .expect("cert")
                        .collect::<Result<_, _>>()
                        .expect("cert pem"),
                    PrivateKeyDer::from_pem_file(key).expect("key pem"),
                )
                .expect("client auth"),
        })
    }

    /// The lab client over TLS 1.2 only.
    pub(super) fn tls12_client(&self) -> Arc<ClientConfig> {
        let identity = (
            self.pki.client.cert.as_path(),
            self.pki.client.key.as_path(),
        );
        self.webpki_client(Some(identity), &[&rustls::version::TLS12])
    }
}

pub(super) fn write_issued(ca: &Ca, dir: &Path, stem: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let issued: Issued = ca.issue(leaf).expect("issue");
    issued.write(dir, stem).expect("write issued")
}

/// A client leaf valid over `[now + from, now + to]`.
pub(super) fn leaf_between(spiffe_id: &str, from: i64, to: i64) -> Leaf {
    let now = SystemTime::now();
    let at = |days: i64| {
        let d = DAY * days.unsigned_abs() as u32;
        if days < 0 { now - d } else { now + d }
    };
    Leaf {
        not_before: at(from),
        not_after: at(to),
        ..Leaf::svid(spiffe_id)
    }
}

pub(super) fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("name")
}

pub(super) fn connect(
    client: Arc<ClientConfig>,
    name: ServerName<'static>,
    server: Arc<rustls::ServerConfig>,
) -> (ClientConnection, ServerConnection, Outcome) {
    let mut c = ClientConnection::new(client, name).expect("client connection");
    let mut s = ServerConnection::new(server).expect("server connection");
    let outcome = pump(&mut c, &mut s);
    (c, s, outcome)
}

/// How a handshake ended on each side.
#[derive(Debug)]
pub(super) struct Outcome {
    pub client: Result<(), rustls::Error>,
    pub server: Result<(), rustls::Error>,
}

impl Outcome {
    pub(super) fn ok(&self) -> bool {
        self.client.is_ok() && self.server.is_ok()
    }

    #[track_caller]
    pub(super) fn assert_ok(&self) {
        assert!(self.ok(), "handshake failed: {self:?}");
    }
}

/// Moves bytes both ways until neither side has anything to send; records
/// the first error on each side.
pub(super) fn pump(client: &mut ClientConnection, server: &mut ServerConnection) -> Outcome {
    let mut client_err = None;
    let mut server_err = None;
    for _ in 0..100 {
        let to_server = transfer::<ClientConnectionData, ServerConnectionData>(client, server);
        if server_err.is_none() {
            server_err = server.process_new_packets().err();
        }
        let to_client = transfer::<ServerConnectionData, ClientConnectionData>(server, client);
        if client_err.is_none() {
            client_err = client.process_new_packets().err();
        }
        if to_server == 0 && to_client == 0 {
            break;
        }
    }
    let incomplete = |handshaking: bool, err: Option<rustls::Error>| match err {
        Some(e) => Err(e),
        None if handshaking => Err(rustls::Error::HandshakeNotComplete),
        None => Ok(()),
    };
    Outcome {
        client: incomplete(client.is_handshaking(), client_err),
        server: incomplete(server.is_handshaking(), server_err),
    }
}

fn transfer<A, B>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>) -> usize {
    let mut buf = Vec::new();
    while from.wants_write() {
        match from.write_tls(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let mut rest = &buf[..];
    while !rest.is_empty() {
        match to.read_tls(&mut rest) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    buf.len()
}

/// Sends `msg` each way over an established pair and checks it arrives.
pub(super) fn exchange(client: &mut ClientConnection, server: &mut ServerConnection, msg: &[u8]) {
    client.writer().write_all(msg).expect("client write");
    server.writer().write_all(msg).expect("server write");
    pump(client, server);
    let mut got = vec![0; msg.len()];
    server.reader().read_exact(&mut got).expect("server read");
    assert_eq!(got, msg);
    client.reader().read_exact(&mut got).expect("client read");
    assert_eq!(got, msg);
}

/// The leaf certificate in a PEM file.
pub(super) fn leaf_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("leaf pem")
}

/// Runs `openssl` with `args`, failing clearly if it is not installed.
pub(super) fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs the `openssl` command line tool (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
