//! The io_uring driver on loopback, plain TCP: a real kernel, real sockets,
//! the same engine as on the appliance.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{Arc, atomic::AtomicBool},
    thread,
    time::Duration,
};

use causeway_tls::{
    engine::{Engine, ServiceSpec, Timeouts},
    metrics::WorkerMetrics,
    pool::PoolConfig,
    uring::{Listen, Worker},
};

/// An upstream that answers every connection with its name, then echoes.
fn backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let _ = s.write_all(name.as_bytes());
                let mut buf = [0u8; 65536];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = s.shutdown(Shutdown::Write);
                            return;
                        }
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Running {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
    metrics: Arc<WorkerMetrics>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

fn start(listen: SocketAddr, endpoints: Vec<SocketAddr>) -> Running {
    let spec = ServiceSpec {
        name: "echo".into(),
        server_tls: None,
        client_tls: None,
        endpoints: endpoints.clone(),
        pool: PoolConfig::default(),
        timeouts: Timeouts::default(),
        max_connections: 10_000,
    };
    let metrics = Arc::new(WorkerMetrics::new([("echo", endpoints.as_slice())]));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = {
        let metrics = metrics.clone();
        let stop = stop.clone();
        thread::spawn(move || {
            let engine = Engine::new(vec![spec], 1, std::time::Instant::now(), metrics);
            let mut w = Worker::new(
                engine,
                &[Listen {
                    service: 0,
                    addr: listen,
                }],
            )
            .expect("io_uring worker (is io_uring enabled?)");
            tx.send(()).unwrap();
            w.run(&stop, Duration::from_secs(1)).unwrap();
        })
    };
    rx.recv().unwrap();
    Running {
        stop,
        handle: Some(handle),
        metrics,
    }
}

#[test]
fn bytes_go_through_both_ways_with_half_close() {
    let b = backend("b1:");
    let listen = free_port();
    let r = start(listen, vec![b]);
    let mut c = TcpStream::connect(listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let mut c = c.try_clone().unwrap();
        let payload = payload.clone();
        thread::spawn(move || {
            c.write_all(&payload).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(&got[..3], b"b1:");
    assert_eq!(got.len(), 3 + payload.len());
    assert!(got[3..] == payload[..], "the echo is byte-exact");
    drop(c);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(r.metrics.service(0).open(), 0);
}

#[test]
fn connections_spread_over_endpoints_and_a_dead_one_is_skipped() {
    let b1 = backend("b1");
    let b2 = backend("b2");
    let dead = free_port(); // nothing listens: connection refused
    let listen = free_port();
    let r = start(listen, vec![b1, dead, b2]);
    let mut seen = std::collections::HashMap::new();
    for _ in 0..30 {
        let mut c = TcpStream::connect(listen).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut name = [0u8; 2];
        c.read_exact(&mut name).unwrap();
        *seen.entry(name).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|&n| n >= 5), "{seen:?}");
    let text = causeway_tls::metrics::render(&[&r.metrics]);
    assert!(
        text.contains("causeway_terminator_retries_total{service=\"echo\"}"),
        "{text}"
    );
}
