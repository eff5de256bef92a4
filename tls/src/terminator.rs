//! The running terminator: worker threads, their shared TLS material, the
//! reload loop, and the metrics of them all.
//!
//! Thread per core: each worker is pinned to its CPU, enters the
//! configured network namespace (the kernel side of the host port), opens
//! its own `SO_REUSEPORT` listener per service and runs its own engine and
//! ring; workers share nothing but the TLS material (read lock-free
//! through an atomic pointer) and the stop flag.

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};

use crate::{
    access_log::AccessLog,
    config::{BalancerName, MinVersion, ModeName, ProtocolName, ServiceConfig, TerminatorConfig},
    driver::{DriverKind, choose_driver},
    engine::{Engine, ListenerSpec, ProxyProtocol, ServiceSpec, Timeouts, UpstreamHello},
    identity::{
        ClientMaterialConfig, ClientTls, Reload, ServerMaterialConfig, ServerTls, TlsVersions,
    },
    metrics::{self, WorkerMetrics},
    pool::{Balancer, BudgetConfig, PoolConfig},
    tokio_driver::TokioWorker,
    uring::{Listen, Worker},
};

/// The first wait before a worker whose ring failed is built again; it
/// doubles with each failure in a row, up to [`RESTART_MAX`].
const RESTART_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two rebuilds of a failing worker.
const RESTART_MAX: Duration = Duration::from_secs(10);
/// A worker that ran this long before failing starts its backoff afresh.
const RESTART_RESET: Duration = Duration::from_secs(60);

/// How often certificate, key and trust bundle files are checked.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// One service's TLS material, shared by every worker.
struct Material {
    name: String,
    server: Option<Arc<ServerTls>>,
    client: Option<Arc<ClientTls>>,
}

/// The terminator while it runs; [`Terminator::stop`] drains and joins it.
pub struct Terminator {
    stop: Arc<AtomicBool>,
    workers: Vec<thread::JoinHandle<()>>,
    reloader: Option<thread::JoinHandle<()>>,
    metrics: Vec<Arc<WorkerMetrics>>,
    driver: DriverKind,
    access_log: Option<AccessLog>,
}

fn versions(v: MinVersion) -> TlsVersions {
    match v {
        MinVersion::Tls12 => TlsVersions::Tls12And13,
        MinVersion::Tls13 => TlsVersions::Tls13,
    }
}

fn pool_config(s: &ServiceConfig) -> PoolConfig {
    PoolConfig {
        balancer: match s.balancer {
            BalancerName::RoundRobin => Balancer::RoundRobin,
            BalancerName::PeakEwma => Balancer::PeakEwma,
            BalancerName::Maglev => Balancer::Maglev,
        },
        failures_to_eject: s.breaker.consecutive_failures,
        backoff_min: s.breaker.backoff_min,
        backoff_max: s.breaker.backoff_max,
        budget: BudgetConfig {
            ratio: s.retry_budget.ratio,
            min_per_sec: s.retry_budget.min_per_second,
            ttl: s.retry_budget.ttl,
        },
        ..PoolConfig::default()
    }
}

/// The listeners that read the client's first bytes before choosing a
/// service: every address shared by several services (told apart by SNI),
/// every address whose one service names the server names it answers (so
/// that others are refused), and every PostgreSQL service (to answer its
/// SSLRequest). Validation has made sure each such service terminates TLS
/// and that services sharing an address agree on the protocol.
fn listener_specs(cfg: &TerminatorConfig) -> Vec<ListenerSpec> {
    let mut out: Vec<ListenerSpec> = Vec::new();
    for (i, s) in cfg.services.iter().enumerate() {
        let shared = cfg.services.iter().filter(|o| o.listen == s.listen).count() > 1;
        if !(shared || s.reads_first_bytes()) {
            continue;
        }
        let l = match out.iter().position(|l| l.listen == s.listen) {
            Some(k) => &mut out[k],
            None => {
                out.push(ListenerSpec {
                    listen: s.listen,
                    accepts_for: i,
                    names: Vec::new(),
                    default: None,
                    postgres: s.protocol == ProtocolName::Postgres,
                });
                out.last_mut().expect("just pushed")
            }
        };
        if s.server_names.is_empty() {
            l.default = Some(i);
        }
        l.names
            .extend(s.server_names.iter().map(|n| (n.clone(), i)));
    }
    out
}

/// ALPN protocol names as the wire carries them.
fn alpn(names: &[String]) -> Vec<Vec<u8>> {
    names.iter().map(|n| n.as_bytes().to_vec()).collect()
}

/// What `s` says to its upstreams in its ClientHello.
fn upstream_hello(s: &ServiceConfig) -> UpstreamHello {
    s.upstream_tls
        .as_ref()
        .map(|t| UpstreamHello {
            server_name: t.server_name.clone(),
            alpn: alpn(&t.alpn),
        })
        .unwrap_or_default()
}

/// The PROXY protocol of `s` (validation has parsed its sources).
fn proxy_protocol(s: &ServiceConfig) -> ProxyProtocol {
    let Some(p) = &s.proxy_protocol else {
        return ProxyProtocol::off(s.listen);
    };
    ProxyProtocol {
        local: s.listen,
        send: p.send,
        trusted: p
            .trusted_sources
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
    }
}

fn load_material(s: &ServiceConfig) -> Result<Material> {
    let server = match (&s.tls, s.mode) {
        (Some(t), ModeName::Terminate | ModeName::TerminateOriginate) => Some(Arc::new(
            ServerTls::load(&ServerMaterialConfig {
                cert: t.cert.clone(),
                key: t.key.clone(),
                client_trust: t.client_ca.clone(),
                allowed_identities: t.allowed_identities.clone(),
                versions: versions(t.min_version),
                alpn: alpn(&t.alpn),
            })
            .with_context(|| format!("service {}: tls", s.name))?,
        )),
        _ => None,
    };
    let client = match (&s.upstream_tls, s.mode) {
        (Some(t), ModeName::Originate | ModeName::TerminateOriginate) => Some(Arc::new(
            ClientTls::load(&ClientMaterialConfig {
                cert: t.cert.clone(),
                key: t.key.clone(),
                trust: t.ca.clone(),
                upstream_identities: t.identities.clone(),
                versions: versions(t.min_version),
            })
            .with_context(|| format!("service {}: upstream_tls", s.name))?,
        )),
        _ => None,
    };
    Ok(Material {
        name: s.name.clone(),
        server,
        client,
    })
}

/// Loads `s`'s certificate, key and trust files as a start would,
/// without starting anything: whether the service could be served.
///
/// # Errors
/// The first file that does not load, naming the service and the section
/// (`tls`, `upstream_tls`).
pub fn check_service_material(s: &ServiceConfig) -> Result<()> {
    load_material(s).map(drop)
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays in its bounds for
    // cpu < CPU_SETSIZE, and sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
                tracing::warn!(cpu, "could not pin the terminator worker");
            }
        }
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter_netns(path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening netns {}", path.display()))?;
    // SAFETY: setns on a descriptor we hold open; affects this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "entering netns {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to its hard limit and
/// logs both. Every proxied connection costs two descriptors; the usual
/// soft limit (1024) would cap the terminator near 500 connections while
/// the hard limit (524288 under systemd, for one) allows far more. What
/// the hard limit still refuses is met as local pressure: counted
/// (`fd_exhausted_total`), never blamed on an upstream, and accepting
/// backs off.
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read RLIMIT_NOFILE");
        return;
    }
    let (soft, hard) = (lim.rlim_cur, lim.rlim_max);
    if soft >= hard {
        tracing::info!(
            soft,
            hard,
            "RLIMIT_NOFILE: the soft limit is already the hard limit"
        );
        return;
    }
    lim.rlim_cur = hard;
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) } == 0 {
        tracing::info!(
            soft_before = soft,
            soft = hard,
            hard,
            "RLIMIT_NOFILE: soft limit raised to the hard limit"
        );
    } else {
        tracing::warn!(
            soft,
            hard,
            error = %std::io::Error::last_os_error(),
            "RLIMIT_NOFILE: could not raise the soft limit"
        );
    }
}

/// Runs worker `w` until `stop`, building it again when its ring fails.
///
/// `run_once` builds a fresh engine and driver worker, calls its argument
/// once it listens, and runs it: `Err` means it could not be built,
/// `Ok(Err)` that its ring failed, `Ok(Ok)` a clean stop. The first
/// build's outcome goes to `ready` (a first build that fails is not
/// retried: the start fails with it). After a failure the worker is gone
/// — dropping it reset its connections and closed its descriptors — and
/// after a backoff it is built again, counted in `worker_restarts_total`.
pub(crate) fn supervise(
    w: usize,
    stop: &AtomicBool,
    metrics: &WorkerMetrics,
    mut run_once: impl FnMut(&mut dyn FnMut()) -> std::io::Result<std::io::Result<()>>,
    mut ready: impl FnMut(std::result::Result<(), std::io::Error>),
) {
    let mut announced = false;
    let mut backoff = RESTART_MIN;
    loop {
        let started = Instant::now();
        let outcome = run_once(&mut || {
            if !announced {
                announced = true;
                ready(Ok(()));
            }
        });
        match outcome {
            Ok(Ok(())) => return,
            Err(e) if !announced => {
                ready(Err(e));
                return;
            }
            Err(e) => {
                tracing::error!(worker = w, error = %e, "terminator worker could not be rebuilt")
            }
            Ok(Err(e)) => tracing::error!(
                worker = w,
                error = %e,
                "terminator worker's ring failed; its connections were reset"
            ),
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if started.elapsed() >= RESTART_RESET {
            backoff = RESTART_MIN;
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(Duration::from_millis(20).min(backoff));
        }
        backoff = (backoff * 2).min(RESTART_MAX);
        metrics.restarted();
        tracing::warn!(worker = w, "restarting terminator worker");
    }
}

impl Terminator {
    /// Loads every service's TLS material, then starts one worker per
    /// configured core; returns once every worker listens.
    ///
    /// # Errors
    ///
    /// A certificate, key or bundle that cannot be loaded (naming the
    /// service and file), a namespace that cannot be entered, a listener
    /// that cannot be opened, or no usable driver.
    pub fn start(cfg: &TerminatorConfig) -> Result<Self> {
        raise_nofile_limit();
        let material: Vec<Material> = cfg
            .services
            .iter()
            .map(load_material)
            .collect::<Result<_>>()?;
        let driver = choose_driver(cfg.driver);
        let ktls = crate::ktls::probe();
        tracing::info!(
            ktls = %ktls,
            "TLS records are sealed and opened in user space (rustls); see tls_record_path_total"
        );
        // The access log's writer, before any connection can close.
        let access_log = cfg
            .access_log
            .as_ref()
            .map(|a| AccessLog::open(&a.sink(), a.capacity))
            .transpose()
            .context("terminator.access_log.to")?;
        let stop = Arc::new(AtomicBool::new(false));
        // One listener per address; the services sharing one are told
        // apart by SNI.
        let routing = listener_specs(cfg);
        let listen: Vec<Listen> = cfg
            .services
            .iter()
            .enumerate()
            .filter(|&(i, s)| cfg.services[..i].iter().all(|o| o.listen != s.listen))
            .map(|(service, s)| Listen {
                service,
                addr: s.listen,
            })
            .collect();
        let mut workers = Vec::new();
        let mut all_metrics = Vec::new();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        for (w, &cpu) in cfg.cores.iter().enumerate() {
            let specs: Vec<ServiceSpec> = cfg
                .services
                .iter()
                .zip(&material)
                .map(|(s, m)| ServiceSpec {
                    name: s.name.clone(),
                    server_tls: m.server.clone(),
                    client_tls: m.client.clone(),
                    upstream_hello: upstream_hello(s),
                    proxy: proxy_protocol(s),
                    endpoints: s.upstreams.clone(),
                    pool: pool_config(s),
                    timeouts: Timeouts {
                        connect: s.timeouts.connect,
                        handshake: s.timeouts.handshake,
                        first_byte: s.timeouts.first_byte,
                        idle: s.timeouts.idle,
                    },
                    max_connections: s.max_connections,
                    max_connections_per_client: s.max_connections_per_client,
                })
                .collect();
            let metrics = Arc::new(
                WorkerMetrics::new(
                    cfg.services
                        .iter()
                        .map(|s| (s.name.as_str(), s.upstreams.as_slice())),
                )
                .with_listeners(routing.iter().map(|l| l.listen)),
            );
            all_metrics.push(metrics.clone());
            let log = access_log.as_ref().map(AccessLog::sender);
            let (stop, ready, listen, routing, netns, drain) = (
                stop.clone(),
                ready_tx.clone(),
                listen.clone(),
                routing.clone(),
                cfg.netns.clone(),
                cfg.drain_timeout,
            );
            let handle = thread::Builder::new()
                .name(format!("terminator-{w}"))
                .spawn(move || {
                    pin(cpu);
                    if let Some(ns) = &netns
                        && let Err(e) = enter_netns(ns)
                    {
                        let _ = ready.send(Err(e));
                        return;
                    }
                    let worker_metrics = metrics.clone();
                    let run_once = |listening: &mut dyn FnMut()| {
                        // A fresh engine each time: the connections of a
                        // failed ring are gone with it.
                        let engine = Engine::new(
                            specs.clone(),
                            w as u64 + 1,
                            Instant::now(),
                            worker_metrics.clone(),
                        )
                        .with_listeners(&routing)
                        .with_access_log(log.clone())
                        .with_ktls(ktls);
                        match driver {
                            DriverKind::IoUring => {
                                let mut worker = Worker::new(engine, &listen)?;
                                listening();
                                Ok(worker.run(&stop, drain))
                            }
                            DriverKind::Tokio => {
                                let mut worker = TokioWorker::new(engine, &listen)?;
                                listening();
                                Ok(worker.run(&stop, drain))
                            }
                        }
                    };
                    supervise(w, &stop, &metrics, run_once, |first| {
                        let _ =
                            ready.send(first.map_err(|e| anyhow!("terminator worker {w}: {e}")));
                    });
                })
                .context("spawning a terminator worker")?;
            workers.push(handle);
        }
        drop(ready_tx);
        let mut me = Self {
            stop: stop.clone(),
            workers,
            reloader: None,
            metrics: all_metrics,
            driver,
            access_log,
        };
        for _ in 0..cfg.cores.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    me.shutdown();
                    return Err(e);
                }
                Err(_) => {
                    me.shutdown();
                    bail!("a terminator worker ended before it listened");
                }
            }
        }
        me.reloader = Some(
            thread::Builder::new()
                .name("terminator-reload".into())
                .spawn(move || reload_loop(&material, &stop))
                .context("spawning the reload thread")?,
        );
        tracing::info!(
            services = cfg.services.len(),
            workers = cfg.cores.len(),
            driver = ?driver,
            "terminator listening"
        );
        Ok(me)
    }

    /// The driver the workers run on.
    #[must_use]
    pub fn driver(&self) -> DriverKind {
        self.driver
    }

    /// Every worker's figures summed, as Prometheus text.
    #[must_use]
    pub fn render_metrics(&self) -> String {
        let refs: Vec<&WorkerMetrics> = self.metrics.iter().map(AsRef::as_ref).collect();
        metrics::render(&refs)
    }

    /// Each worker's figures.
    #[must_use]
    pub fn worker_metrics(&self) -> &[Arc<WorkerMetrics>] {
        &self.metrics
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(r) = self.reloader.take() {
            let _ = r.join();
        }
        // The workers, and their senders, are gone: what is queued is
        // written, then the writer ends.
        if let Some(log) = self.access_log.take() {
            log.close();
        }
    }

    /// Stops accepting, lets open connections drain (up to the configured
    /// drain timeout), then joins the workers.
    pub fn stop(mut self) {
        self.shutdown();
    }
}

impl Drop for Terminator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Re-reads changed certificate, key and bundle files every second: new
/// handshakes take the new material, established sessions keep theirs, a
/// bad file is refused and the old material stays.
fn reload_loop(material: &[Material], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(RELOAD_EVERY);
        for m in material {
            if let Some(s) = &m.server {
                log_reload(&m.name, "tls", s.reload_if_changed());
            }
            if let Some(c) = &m.client {
                log_reload(&m.name, "upstream_tls", c.reload_if_changed());
            }
        }
    }
}

fn log_reload(service: &str, section: &str, r: Reload) {
    match r {
        Reload::Unchanged => {}
        Reload::Reloaded => tracing::info!(service, section, "new TLS material in force"),
        // The identity module warns once per distinct bad file; repeating
        // it every second would drown the log.
        Reload::Refused(e) => tracing::debug!(
            service,
            section,
            error = %e,
            "new TLS material still refused; the old material stays in force"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{ErrorKind, Read, Write},
        net::{SocketAddr, TcpListener, TcpStream},
        sync::Arc,
    };

    use super::*;
    use crate::{
        engine::Timeouts,
        pool::PoolConfig,
        uring::{INJECT_RING_FAILURE, Listen, Worker},
    };

    /// An upstream on loopback that echoes every connection.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(listen: SocketAddr, what: &[u8]) -> TcpStream {
        let mut c = TcpStream::connect(listen).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(what).unwrap();
        let mut got = vec![0; what.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, what);
        c
    }

    #[test]
    fn a_worker_whose_ring_fails_resets_its_connections_and_is_built_again() {
        let upstream = echo();
        let listen = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let spec = ServiceSpec {
            name: "echo".into(),
            server_tls: None,
            client_tls: None,
            upstream_hello: Default::default(),
            proxy: ProxyProtocol::off(listen),
            endpoints: vec![upstream],
            pool: PoolConfig::default(),
            timeouts: Timeouts::default(),
            max_connections: 100,
            max_connections_per_client: 100,
        };
        let metrics = Arc::new(WorkerMetrics::new([("echo", &[upstream][..])]));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let handle = {
            let (metrics, stop) = (metrics.clone(), stop.clone());
            thread::spawn(move || {
                let listen = [Listen {
                    service: 0,
                    addr: listen,
                }];
                let run_once = |listening: &mut dyn FnMut()| {
                    let engine =
                        Engine::new(vec![spec.clone()], 1, Instant::now(), metrics.clone());
                    let mut worker = Worker::new(engine, &listen)?;
                    listening();
                    Ok(worker.run(&stop, Duration::from_millis(100)))
                };
                supervise(0, &stop, &metrics, run_once, |r| {
                    tx.send(r.is_ok()).unwrap()
                });
            })
        };
        assert!(
            rx.recv().unwrap(),
            "the worker listens (is io_uring enabled?)"
        );
        let mut before = round_trip(listen, b"before");

        INJECT_RING_FAILURE.store(true, Ordering::Relaxed);
        // The connection of the failed worker is reset, not left hanging.
        let mut buf = [0u8; 16];
        match before.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("the old connection should be gone: {other:?}"),
        }
        // Built again after its backoff; it serves new clients.
        let until = Instant::now() + Duration::from_secs(5);
        while metrics.restarts() == 0 {
            assert!(Instant::now() < until, "the worker was not restarted");
            thread::sleep(Duration::from_millis(10));
        }
        let _after = round_trip(listen, b"after");
        assert_eq!(metrics.restarts(), 1);
        assert!(
            metrics::render(&[&metrics]).contains("causeway_terminator_worker_restarts_total 1")
        );
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }
}
