//! Fuzzes the terminator's engine fed hostile bytes: real rustls on the
//! engine's side, the peer's bytes from the input. Six services: mTLS
//! terminate (TLS 1.3), terminate admitting TLS 1.2, originate (a
//! hostile upstream answering the engine's ClientHello), PostgreSQL
//! (an SSLRequest or direct TLS first), and two on one listener told
//! apart by SNI (`causeway.test`, `*.test`, no default). The driver is
//! simulated, and keeps the engine's contract: bytes arrive on a leg only
//! when the engine asked to receive there; sends complete at once;
//! connects succeed unless told.
//!
//! The input is a sequence of operations, each an opcode byte and its
//! arguments: accept a connection on a service, bytes (or an EOF) on a
//! leg of a connection, a receive or connect failure, time passing.

#![no_main]

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use causeway_tls::{
    engine::{ConnKey, Engine, Io, Leg, ListenerSpec, ProxyProtocol, ServiceSpec, Timeouts},
    identity::{ClientMaterialConfig, ClientTls, ServerTls, TlsVersions, ca::lab_pki},
    metrics::WorkerMetrics,
    pool::PoolConfig,
};
use libfuzzer_sys::fuzz_target;

const UPSTREAM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 2, 0, 2)), 8443);

/// The services that have a listener of their own (the last one is
/// reached through the SNI listener of the one before).
const LISTENING: usize = 5;

/// The listeners that read first bytes: PostgreSQL's, and the SNI one.
fn listeners() -> [ListenerSpec; 2] {
    [
        ListenerSpec {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 100, 0, 10)), 5432),
            accepts_for: 3,
            names: Vec::new(),
            default: Some(3),
            postgres: true,
        },
        ListenerSpec {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 100, 0, 10)), 443),
            accepts_for: 4,
            names: vec![("causeway.test".into(), 4), ("*.test".into(), 5)],
            default: None,
            postgres: false,
        },
    ]
}

/// The services' specs, with the lab PKI loaded once.
fn specs() -> &'static Vec<ServiceSpec> {
    static SPECS: OnceLock<Vec<ServiceSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("causeway-fuzz-pki-{}", std::process::id()));
        let pki = lab_pki(
            &dir,
            "causeway.test",
            &[IpAddr::V4(Ipv4Addr::new(10, 100, 0, 10))],
        )
        .expect("the lab PKI");
        let mut material = pki.server_material();
        let server13 = Arc::new(ServerTls::load(&material).expect("server TLS"));
        material.versions = TlsVersions::Tls12And13;
        material.client_trust = None;
        material.allowed_identities.clear();
        let server12 = Arc::new(ServerTls::load(&material).expect("server TLS 1.2"));
        let client = Arc::new(
            ClientTls::load(&ClientMaterialConfig {
                cert: pki.server.cert.clone(),
                key: pki.server.key.clone(),
                trust: pki.ca_cert.clone(),
                upstream_identities: vec![pki.upstream.spiffe_id.clone()],
                versions: TlsVersions::Tls12And13,
            })
            .expect("client TLS"),
        );
        // Loaded: the files are not needed any more.
        let _ = std::fs::remove_dir_all(&dir);
        let spec = |name: &str, server_tls, client_tls| ServiceSpec {
            name: name.to_owned(),
            server_tls,
            client_tls,
            upstream_hello: Default::default(),
            proxy: ProxyProtocol::off(UPSTREAM),
            endpoints: vec![UPSTREAM],
            pool: PoolConfig::default(),
            timeouts: Timeouts::default(),
            max_connections: 8,
            max_connections_per_client: 4,
        };
        vec![
            spec("mtls", Some(server13.clone()), None),
            spec("tls12", Some(server12.clone()), None),
            spec("originate", None, Some(client)),
            spec("pg", Some(server13.clone()), None),
            spec("sni-a", Some(server13), None),
            spec("sni-b", Some(server12), None),
        ]
    })
}

/// Carries out what the engine asks, as a driver whose sends complete at
/// once and whose connects succeed (unless `refuse`); the receives asked
/// for wait in `recvs` for the input's bytes.
fn drive(engine: &mut Engine, recvs: &mut HashSet<(ConnKey, Leg)>, now: Instant, refuse: bool) {
    for _ in 0..10_000 {
        let Some(io) = engine.poll_io() else {
            return;
        };
        match io {
            Io::Send { conn, leg } => {
                let n = engine.outgoing(conn, leg).len();
                engine.sent(conn, leg, n, now);
            }
            Io::Connect { conn, attempt, .. } => {
                let result = if refuse { Err(111) } else { Ok(()) };
                engine.connected(conn, attempt, result, now);
            }
            Io::Close { conn, .. } => {
                recvs.retain(|(c, _)| *c != conn);
                engine.released(conn);
            }
            Io::Abort { conn } => {
                recvs.remove(&(conn, Leg::Upstream));
            }
            Io::Recv { conn, leg } => {
                recvs.insert((conn, leg));
            }
            Io::Shutdown { .. } | Io::PauseAccept { .. } | Io::ResumeAccept { .. } => {}
        }
    }
    panic!("the engine asks for IO without end");
}

fuzz_target!(|data: &[u8]| {
    let specs = specs();
    let mut now = Instant::now();
    let listeners = listeners();
    let metrics = Arc::new(
        WorkerMetrics::new(
            specs
                .iter()
                .map(|s| (s.name.as_str(), s.endpoints.as_slice())),
        )
        .with_listeners(listeners.iter().map(|l| l.listen)),
    );
    let mut engine = Engine::new(specs.clone(), 7, now, metrics).with_listeners(&listeners);
    let mut conns: Vec<ConnKey> = Vec::new();
    let mut recvs = HashSet::new();
    let mut rest = data;
    while let [op, arg, tail @ ..] = rest {
        rest = tail;
        let conn =
            |conns: &[ConnKey]| (!conns.is_empty()).then(|| conns[usize::from(*arg) % conns.len()]);
        match op % 6 {
            0 => {
                let service = usize::from(*arg) % LISTENING;
                if engine.accepting(service) {
                    let peer = SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2 + arg / 64)),
                        40_000 + u16::from(*arg),
                    );
                    conns.push(engine.accepted(service, peer, now));
                }
                drive(&mut engine, &mut recvs, now, false);
            }
            1 | 2 => {
                // Bytes from the client (1) or the upstream (2): a length
                // byte, then that many bytes.
                let Some((&len, tail)) = rest.split_first() else {
                    return;
                };
                let len = usize::from(len).min(tail.len());
                let (bytes, tail) = tail.split_at(len);
                rest = tail;
                let leg = if op % 6 == 1 {
                    Leg::Client
                } else {
                    Leg::Upstream
                };
                if let Some(c) = conn(&conns)
                    && recvs.remove(&(c, leg))
                {
                    engine.received(c, leg, bytes, now);
                }
                drive(&mut engine, &mut recvs, now, false);
            }
            3 => {
                // An EOF or a reset on a leg.
                let leg = if arg & 0x80 == 0 {
                    Leg::Client
                } else {
                    Leg::Upstream
                };
                if let Some(c) = conn(&conns)
                    && recvs.remove(&(c, leg))
                {
                    if arg & 0x40 == 0 {
                        engine.received(c, leg, &[], now);
                    } else {
                        engine.recv_failed(c, leg, 104, now);
                    }
                }
                drive(&mut engine, &mut recvs, now, arg & 0x20 != 0);
            }
            4 => {
                now += Duration::from_millis(u64::from(*arg) * 50);
                engine.tick(now);
                drive(&mut engine, &mut recvs, now, arg & 1 == 1);
            }
            _ => {
                let _ = conn(&conns).map(|c| engine.identity(c).map(str::len));
                drive(&mut engine, &mut recvs, now, true);
            }
        }
    }
    engine.close_all(now);
    drive(&mut engine, &mut recvs, now, true);
});
