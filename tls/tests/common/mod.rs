//! Helpers the loopback driver tests share: echo backends, free ports, and
//! a worker of either driver on its own thread.

#![allow(dead_code, reason = "each test crate uses its own part of these")]

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use causeway_tls::{
    engine::{Engine, ProxyProtocol, ServiceSpec, Timeouts},
    metrics::WorkerMetrics,
    pool::PoolConfig,
    tokio_driver::TokioWorker,
    uring::{Listen, Worker},
};

/// Which driver a test runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Driver {
    IoUring,
    Tokio,
}

/// An upstream that answers every connection with its name, then echoes;
/// it half-closes when the client does.
pub(crate) fn backend(name: &'static str) -> SocketAddr {
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

/// A loopback address nothing listens on (connecting is refused).
pub(crate) fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A worker thread; dropping it stops the worker and waits for it.
pub(crate) struct Running {
    pub(crate) stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
    pub(crate) metrics: Arc<WorkerMetrics>,
}

impl Running {
    /// Sets the stop flag: the worker drains.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops the worker and waits (at most `limit`) for its thread to end.
    ///
    /// # Panics
    ///
    /// If the worker is still running after `limit`, or it failed.
    pub(crate) fn join(mut self, limit: Duration) {
        self.stop();
        let handle = self.handle.take().expect("joined once");
        let until = Instant::now() + limit;
        while !handle.is_finished() {
            assert!(Instant::now() < until, "the worker did not stop");
            thread::sleep(Duration::from_millis(10));
        }
        handle.join().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
        if let Some(h) = self.handle.take() {
            let r = h.join();
            if !thread::panicking() {
                r.unwrap();
            }
        }
    }
}

/// One plain service on `listen` balancing over `endpoints`, on `driver`,
/// draining for `drain` when stopped.
pub(crate) fn start(
    driver: Driver,
    listen: SocketAddr,
    endpoints: Vec<SocketAddr>,
    drain: Duration,
) -> Running {
    let spec = ServiceSpec {
        name: "echo".into(),
        server_tls: None,
        client_tls: None,
        upstream_hello: Default::default(),
        proxy: ProxyProtocol::off(listen),
        endpoints: endpoints.clone(),
        pool: PoolConfig::default(),
        timeouts: Timeouts::default(),
        max_connections: 10_000,
        max_connections_per_client: 10_000,
    };
    let metrics = Arc::new(WorkerMetrics::new([("echo", endpoints.as_slice())]));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = {
        let metrics = metrics.clone();
        let stop = stop.clone();
        thread::spawn(move || {
            let engine = Engine::new(vec![spec], 1, Instant::now(), metrics);
            let listen = [Listen {
                service: 0,
                addr: listen,
            }];
            match driver {
                Driver::IoUring => {
                    let mut w = Worker::new(engine, &listen)
                        .expect("io_uring worker (is io_uring enabled?)");
                    tx.send(()).unwrap();
                    w.run(&stop, drain).unwrap();
                }
                Driver::Tokio => {
                    let mut w = TokioWorker::new(engine, &listen).expect("tokio worker");
                    tx.send(()).unwrap();
                    w.run(&stop, drain).unwrap();
                }
            }
        })
    };
    rx.recv().unwrap();
    Running {
        stop,
        handle: Some(handle),
        metrics,
    }
}

/// A client sends 1 MB and half-closes; the backend's greeting and the
/// echo come back byte-exact, then EOF, and the connection is gone.
pub(crate) fn echo_with_half_close(driver: Driver) {
    let b = backend("b1:");
    let listen = free_port();
    let r = start(driver, listen, vec![b], Duration::from_secs(1));
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
    wait_until(Duration::from_secs(5), || r.metrics.service(0).open() == 0);
}

/// Connections go round the endpoints; the one that refuses is retried
/// elsewhere, so every client reaches a live backend.
pub(crate) fn spread_skipping_a_refused_endpoint(driver: Driver) {
    let b1 = backend("b1");
    let b2 = backend("b2");
    let dead = free_port();
    let listen = free_port();
    let r = start(driver, listen, vec![b1, dead, b2], Duration::from_secs(1));
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

/// Many clients at once, each echoing its own pattern: slots are shared
/// out and reused, and no connection's bytes end up in another's.
pub(crate) fn many_connections_at_once(driver: Driver) {
    let b = backend("b1:");
    let listen = free_port();
    let r = start(driver, listen, vec![b], Duration::from_secs(1));
    let clients: Vec<_> = (0..40u8)
        .map(|id| {
            thread::spawn(move || {
                let mut c = TcpStream::connect(listen).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8 ^ id).collect();
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
                assert!(
                    got[3..] == payload[..],
                    "client {id}: the echo is byte-exact"
                );
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    wait_until(Duration::from_secs(5), || r.metrics.service(0).open() == 0);
}

/// Stopping drains: an open connection keeps working until the drain
/// timeout, then is closed, and the worker returns.
pub(crate) fn drain_then_close(driver: Driver) {
    let drain = Duration::from_secs(1);
    let b = backend("b1:");
    let listen = free_port();
    let r = start(driver, listen, vec![b], drain);
    let mut c = TcpStream::connect(listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 3];
    c.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"b1:");

    let stopped = Instant::now();
    r.stop();
    thread::sleep(drain / 4);
    c.write_all(b"still here").unwrap();
    let mut echo = [0u8; 10];
    c.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"still here", "a draining connection still works");

    // The drain ends with the connection closed (reset) under us.
    let mut rest = Vec::new();
    let end = c.read_to_end(&mut rest);
    assert!(
        stopped.elapsed() >= drain,
        "closed before the drain timeout"
    );
    match end {
        Ok(_) => assert!(rest.is_empty(), "{rest:?}"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
    r.join(Duration::from_secs(10));
}

/// When every endpoint refuses, the client is refused with an RST, not a
/// polite FIN: it must not take the close for an empty answer.
pub(crate) fn refused_everywhere_resets_the_client(driver: Driver) {
    let listen = free_port();
    let _r = start(
        driver,
        listen,
        vec![free_port(), free_port()],
        Duration::from_secs(1),
    );
    let mut c = TcpStream::connect(listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    let err = c
        .read(&mut buf)
        .expect_err("the terminator resets the client");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

/// Polls `cond` every 10 ms until it holds.
///
/// # Panics
///
/// If it still does not after `limit`.
pub(crate) fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "condition not met in {limit:?}");
        thread::sleep(Duration::from_millis(10));
    }
}
