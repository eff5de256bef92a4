//! A real client: `openssl s_client` against a listener built from
//! [`ServerTls`], over loopback TCP.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;

use rustls::{ServerConfig, ServerConnection};

use super::super::ca::Leaf;
use super::super::{HandshakeFailure, ServerTls, classify, peer_identity};
use super::{Lab, id};

/// What the server saw of one connection: the handshake's error, if any,
/// and the client's SPIFFE ID.
type Served = (Option<rustls::Error>, Option<String>);

/// Serves one connection on a loopback port.
fn serve_one(config: Arc<ServerConfig>) -> (u16, thread::JoinHandle<Served>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    let handle = thread::spawn(move || {
        let (mut sock, _) = listener.accept().expect("accept");
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let mut conn = ServerConnection::new(config).expect("server connection");
        let mut error = None;
        while conn.is_handshaking() {
            match conn.complete_io(&mut sock) {
                Ok(_) => {}
                Err(e) => {
                    error = e
                        .into_inner()
                        .and_then(|e| e.downcast::<rustls::Error>().ok())
                        .map(|e| *e);
                    break;
                }
            }
        }
        // Flush the alert, or say hello, then close.
        if error.is_none() {
            let _ = conn.writer().write_all(b"hello\n");
        }
        while conn.wants_write() && conn.write_tls(&mut sock).is_ok_and(|n| n > 0) {}
        (error, peer_identity(&conn))
    });
    (port, handle)
}

fn s_client(lab: &Lab, port: u16, cert: &Path, key: &Path) -> String {
    let connect = format!("127.0.0.1:{port}");
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &connect,
            "-ign_eof",
            "-verify_return_error",
        ])
        .arg("-CAfile")
        .arg(&lab.pki.ca_cert)
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("this test needs the `openssl` command line tool (apt-get install openssl): {e}")
        });
    let _ = child.stdin.take();
    let out = child.wait_with_output().expect("s_client output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn openssl_s_client_is_admitted_or_sees_access_denied() {
    let lab = Lab::new();
    let server = ServerTls::load(&lab.pki.server_material()).expect("server material");

    let (port, handle) = serve_one(server.current());
    let out = s_client(&lab, port, &lab.pki.client.cert, &lab.pki.client.key);
    let (error, identity) = handle.join().expect("server thread");
    assert!(error.is_none(), "{error:?}\n{out}");
    assert_eq!(identity.as_deref(), Some(id("client").as_str()));
    assert!(out.contains("hello"), "{out}");

    let (cert, key) = lab.issue("intruder", &Leaf::svid(&id("intruder")));
    let (port, handle) = serve_one(server.current());
    let out = s_client(&lab, port, &cert, &key);
    let (error, _) = handle.join().expect("server thread");
    let error = error.expect("intruder refused");
    assert_eq!(classify(&error), HandshakeFailure::IdentityNotAdmitted);
    assert!(out.contains("access denied"), "s_client output:\n{out}");
}
