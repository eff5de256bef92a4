//! The tokio (epoll) driver: the fallback that carries out an [`Engine`]'s
//! IO where io_uring is unavailable (see [`crate::driver`]).
//!
//! It keeps the io_uring driver's semantics ([`crate::uring`]), so the
//! engine cannot tell the two apart: one receive per leg at a time and at
//! most [`CHUNK`] bytes per receive, a per-slot epoch that tells an aborted
//! upstream attempt's late completions from the current socket's, and a
//! slot handed back to the engine only when nothing of it is in flight.
//!
//! Shape, per worker thread:
//! - a current-thread runtime and a [`LocalSet`]; one loop owns the engine,
//!   feeds it what happened and carries out the [`Io`] it queues;
//! - socket waits run as local tasks (one accept loop per listener, and a
//!   readiness wait or a connect per operation) and report back over an
//!   unbounded channel. Each task carries a `Report` that sends when the
//!   task's future is dropped, finished or aborted alike, which is what
//!   makes the in-flight count exact;
//! - the loop itself does the reads and writes (`try_read` into one
//!   scratch chunk, `try_write` straight from the engine's outbox), so no
//!   byte is copied beyond what the engine copies itself and the only
//!   allocation per operation is its task; a would-block turns into a
//!   readiness wait. Receives always go through a task, so a connection
//!   whose peers are always ready still yields to the others;
//! - the loop wakes at the engine's next deadline, and at least every
//!   100 ms to look at the stop flag.
//!
//! Cancelling (Abort, Close) aborts the slot's tasks and drops the slot's
//! handle on the socket; the socket closes when the last task holding it
//! is gone, with an RST (`SO_LINGER` 0) where the engine asked for one.
//!
//! Everything here goes through tokio and socket2, so the module needs no
//! `unsafe`.

#![forbid(unsafe_code)]

use std::{
    future::Future,
    io,
    net::{SocketAddr, TcpListener as StdListener},
    rc::Rc,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::mpsc,
    task::{JoinHandle, LocalSet},
};

use crate::{
    buf::CHUNK,
    engine::{ConnKey, Engine, Io, Leg, is_local_exhaustion},
    uring::{Listen, listener},
};

/// The longest the loop sleeps before it looks at the stop flag again.
const TICK: Duration = Duration::from_millis(100);

/// What a socket task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// The leg's socket is readable (a receive is armed).
    Readable,
    /// The leg's socket is writable (a send would have blocked).
    Writable,
    /// The upstream connect.
    Connect,
}

/// How a socket task ended.
enum Outcome {
    /// Its future was dropped unfinished: aborted, or the runtime is going.
    Cancelled,
    /// A readiness wait finished.
    Ready(io::Result<()>),
    /// A connect finished.
    Connected(io::Result<TcpStream>),
}

/// A socket task's end, as reported to the loop.
struct Done {
    key: ConnKey,
    leg: Leg,
    epoch: u32,
    op: Op,
    outcome: Outcome,
}

enum Event {
    Accepted {
        listener: usize,
        stream: TcpStream,
        peer: SocketAddr,
    },
    /// An accept found no descriptor (EMFILE and the like).
    NoDescriptor {
        listener: usize,
    },
    Done(Done),
}

/// Sends its [`Done`] when dropped, so a task reports exactly once however
/// it ends.
struct Report {
    tx: mpsc::UnboundedSender<Event>,
    done: Option<Done>,
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            // The loop is gone only when the worker stops; nothing to tell.
            let _ = self.tx.send(Event::Done(done));
        }
    }
}

/// The driver's side of a connection slot.
#[derive(Default)]
struct Slot {
    key: Option<ConnKey>,
    socks: [Option<Rc<TcpStream>>; 2],
    /// The readiness wait of an armed receive, per leg.
    recv: [Option<JoinHandle<()>>; 2],
    /// The readiness wait of a send that would have blocked, per leg.
    send: [Option<JoinHandle<()>>; 2],
    connect: Option<JoinHandle<()>>,
    /// Bumped per upstream socket, so completions for an aborted attempt
    /// are told apart.
    epoch: u32,
    attempt: u32,
    /// Tasks whose [`Report`] has not come back yet.
    inflight: u32,
    closing: bool,
}

impl Slot {
    /// Aborts the upstream leg's tasks and lets go of its socket (with an
    /// RST, as the io_uring driver does).
    fn abort_upstream(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        let up = Leg::Upstream as usize;
        for task in [
            self.recv[up].take(),
            self.send[up].take(),
            self.connect.take(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
        if let Some(sock) = self.socks[up].take() {
            let _ = sock.set_zero_linger();
        }
    }
}

/// One worker on the tokio (epoll) driver: its listeners and its engine.
pub struct TokioWorker {
    engine: Engine,
    listeners: Vec<(Listen, StdListener)>,
}

impl TokioWorker {
    /// A worker with `engine`, listening on `listen` (sockets opened here,
    /// in the calling thread's network namespace, as
    /// [`crate::uring::Worker::new`] does).
    ///
    /// # Errors
    ///
    /// If a listener cannot be opened.
    pub fn new(engine: Engine, listen: &[Listen]) -> io::Result<Self> {
        let listeners = listen
            .iter()
            .map(|l| Ok((l.clone(), listener(l.addr, 4096)?)))
            .collect::<io::Result<_>>()?;
        Ok(Self { engine, listeners })
    }

    /// Runs until `stop` is set, then drains: no new connections, open ones
    /// may finish for up to `drain`, then the rest are closed (with an RST);
    /// returns once every connection is released.
    ///
    /// # Errors
    ///
    /// If the runtime cannot be built or a listener cannot be registered
    /// with epoll.
    pub fn run(&mut self, stop: &AtomicBool, drain: Duration) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        // Duplicates, so that the worker keeps its own listeners.
        let listeners = self
            .listeners
            .iter()
            .map(|(l, s)| Ok((l.service, s.try_clone()?)))
            .collect::<io::Result<Vec<_>>>()?;
        let engine = &mut self.engine;
        LocalSet::new().block_on(&rt, async move {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let mut driver = Driver::new(engine, listeners, tx)?;
            driver.run(&mut rx, stop, drain).await
        })
    }
}

/// The loop's state; lives inside the runtime, so every socket is
/// registered and dropped there.
struct Driver<'a> {
    engine: &'a mut Engine,
    /// Per listener: its service, the socket, the accept loop if armed.
    listeners: Vec<(usize, Rc<TcpListener>, Option<JoinHandle<()>>)>,
    slots: Vec<Slot>,
    tx: mpsc::UnboundedSender<Event>,
    /// Where receives land before the engine copies them.
    scratch: Box<[u8]>,
}

impl<'a> Driver<'a> {
    fn new(
        engine: &'a mut Engine,
        listeners: Vec<(usize, StdListener)>,
        tx: mpsc::UnboundedSender<Event>,
    ) -> io::Result<Self> {
        let listeners = listeners
            .into_iter()
            .map(|(service, l)| {
                l.set_nonblocking(true)?;
                Ok((service, Rc::new(TcpListener::from_std(l)?), None))
            })
            .collect::<io::Result<_>>()?;
        Ok(Self {
            engine,
            listeners,
            slots: Vec::new(),
            tx,
            scratch: vec![0; CHUNK].into_boxed_slice(),
        })
    }

    async fn run(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        stop: &AtomicBool,
        drain: Duration,
    ) -> io::Result<()> {
        for i in 0..self.listeners.len() {
            self.arm_accept(i);
        }
        let mut drain_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            self.engine.tick(now);
            self.carry_out();
            if drain_until.is_none() && stop.load(Ordering::Relaxed) {
                self.engine.drain();
                drain_until = Some(now + drain);
                self.carry_out();
            }
            if let Some(until) = drain_until {
                if now >= until {
                    self.engine.close_all(now);
                    self.carry_out();
                }
                if self.engine.live_connections() == 0 {
                    return Ok(());
                }
            }
            let wait = self
                .engine
                .next_deadline()
                .map_or(TICK, |d| d.saturating_duration_since(now))
                .min(TICK);
            // Waiting yields to the socket tasks; the channel never closes
            // while the loop holds a sender.
            if let Ok(Some(event)) = tokio::time::timeout(wait, rx.recv()).await {
                self.handle(event);
                self.carry_out();
            }
            while let Ok(event) = rx.try_recv() {
                self.handle(event);
                self.carry_out();
            }
        }
    }

    /// Starts the accept loop of listener `i`, unless it runs or its
    /// service takes no connections now.
    fn arm_accept(&mut self, i: usize) {
        let (service, listener, task) = &mut self.listeners[i];
        if task.is_some() || !self.engine.accepting(*service) {
            return;
        }
        let listener = listener.clone();
        let tx = self.tx.clone();
        *task = Some(tokio::task::spawn_local(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let event = Event::Accepted {
                            listener: i,
                            stream,
                            peer,
                        };
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // EMFILE and the like: back off rather than spin.
                        tracing::debug!(error = %e, "accept failed");
                        let local = e.raw_os_error().is_some_and(is_local_exhaustion);
                        if local && tx.send(Event::NoDescriptor { listener: i }).is_err() {
                            return;
                        }
                        let pause = if local { 100 } else { 10 };
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                }
            }
        }));
    }

    fn slot_mut(&mut self, key: ConnKey) -> &mut Slot {
        let i = key.index as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, Slot::default);
        }
        &mut self.slots[i]
    }

    /// The slot of `key` if it is that connection's and not closing.
    fn live(&mut self, key: ConnKey) -> Option<&mut Slot> {
        self.slots
            .get_mut(key.index as usize)
            .filter(|s| s.key == Some(key) && !s.closing)
    }

    /// Runs `wait` as a local task that reports its outcome (or its
    /// cancellation) for `key`'s `leg`.
    fn spawn_op(
        &self,
        key: ConnKey,
        leg: Leg,
        epoch: u32,
        op: Op,
        wait: impl Future<Output = Outcome> + 'static,
    ) -> JoinHandle<()> {
        let mut report = Report {
            tx: self.tx.clone(),
            done: Some(Done {
                key,
                leg,
                epoch,
                op,
                outcome: Outcome::Cancelled,
            }),
        };
        tokio::task::spawn_local(async move {
            let outcome = wait.await;
            if let Some(done) = &mut report.done {
                done.outcome = outcome;
            }
            drop(report);
        })
    }

    /// Carries out the engine's queued requests.
    fn carry_out(&mut self) {
        while let Some(io) = self.engine.poll_io() {
            match io {
                Io::Recv { conn, leg } => self.recv(conn, leg),
                Io::Send { conn, leg } => self.send(conn, leg),
                Io::Connect {
                    conn,
                    addr,
                    attempt,
                } => self.connect(conn, addr, attempt),
                Io::Shutdown { conn, leg } => {
                    if let Some(sock) = self.live(conn).and_then(|s| s.socks[leg as usize].clone())
                    {
                        shutdown_write(&sock);
                    }
                }
                Io::Abort { conn } => {
                    if let Some(slot) = self.live(conn) {
                        slot.abort_upstream();
                    }
                }
                Io::Close { conn, reset } => self.close(conn, reset),
                Io::PauseAccept { service } => {
                    for (s, _, task) in &mut self.listeners {
                        if *s == service
                            && let Some(task) = task.take()
                        {
                            task.abort();
                        }
                    }
                }
                Io::ResumeAccept { service } => {
                    for i in 0..self.listeners.len() {
                        if self.listeners[i].0 == service {
                            self.arm_accept(i);
                        }
                    }
                }
            }
        }
    }

    /// Arms a receive: a task waits until `leg` is readable, then
    /// [`Driver::read`] takes the bytes.
    fn recv(&mut self, key: ConnKey, leg: Leg) {
        let Some(slot) = self.live(key) else { return };
        let Some(sock) = slot.socks[leg as usize].clone() else {
            return;
        };
        let epoch = slot.epoch;
        let task = self.spawn_op(key, leg, epoch, Op::Readable, async move {
            Outcome::Ready(sock.readable().await)
        });
        let slot = self.slot_mut(key);
        slot.recv[leg as usize] = Some(task);
        slot.inflight += 1;
    }

    /// `leg` is readable: at most one chunk into the engine.
    fn read(&mut self, key: ConnKey, leg: Leg) {
        let Some(sock) = self.live(key).and_then(|s| s.socks[leg as usize].clone()) else {
            return;
        };
        let now = Instant::now();
        match sock.try_read(&mut self.scratch) {
            Ok(n) => self.engine.received(key, leg, &self.scratch[..n], now),
            Err(e) if retry(&e) => self.recv(key, leg),
            Err(e) => self.engine.recv_failed(key, leg, errno(&e), now),
        }
    }

    /// Sends what the engine has for `leg`, or waits until it can.
    fn send(&mut self, key: ConnKey, leg: Leg) {
        let Some(slot) = self.live(key) else { return };
        let now = Instant::now();
        let Some(sock) = slot.socks[leg as usize].clone() else {
            self.engine.send_failed(key, leg, libc::EBADF, now);
            return;
        };
        let epoch = slot.epoch;
        match sock.try_write(self.engine.outgoing(key, leg)) {
            Ok(n) => self.engine.sent(key, leg, n, now),
            Err(e) if retry(&e) => {
                let task = self.spawn_op(key, leg, epoch, Op::Writable, async move {
                    Outcome::Ready(sock.writable().await)
                });
                let slot = self.slot_mut(key);
                slot.send[leg as usize] = Some(task);
                slot.inflight += 1;
            }
            Err(e) => self.engine.send_failed(key, leg, errno(&e), now),
        }
    }

    /// Opens the upstream socket and connects it in a task.
    fn connect(&mut self, key: ConnKey, addr: SocketAddr, attempt: u32) {
        let Some(slot) = self.live(key) else { return };
        if slot.socks[1].is_some() || slot.connect.is_some() {
            // The engine aborts before it reconnects; stay safe if not.
            slot.abort_upstream();
        }
        slot.epoch = slot.epoch.wrapping_add(1);
        slot.attempt = attempt;
        let epoch = slot.epoch;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        };
        let socket = match socket {
            Ok(s) => s,
            Err(e) if is_local_exhaustion(errno(&e)) => {
                self.engine
                    .connect_no_descriptor(key, attempt, Instant::now());
                return;
            }
            Err(e) => {
                self.engine
                    .connected(key, attempt, Err(errno(&e)), Instant::now());
                return;
            }
        };
        let _ = socket.set_nodelay(true);
        let task = self.spawn_op(key, Leg::Upstream, epoch, Op::Connect, async move {
            Outcome::Connected(socket.connect(addr).await)
        });
        let slot = self.slot_mut(key);
        slot.connect = Some(task);
        slot.inflight += 1;
    }

    /// Closes both legs: aborts what is in flight, lets go of the sockets,
    /// and releases the slot once every task has reported.
    fn close(&mut self, key: ConnKey, reset: bool) {
        let Some(slot) = self.live(key) else { return };
        slot.closing = true;
        for task in slot
            .recv
            .iter_mut()
            .chain(&mut slot.send)
            .chain([&mut slot.connect])
            .filter_map(Option::take)
        {
            task.abort();
        }
        for sock in slot.socks.iter_mut().filter_map(Option::take) {
            if reset {
                let _ = sock.set_zero_linger();
            }
        }
        self.maybe_release(key);
    }

    /// Hands a closing slot back to the engine once nothing of it is in
    /// flight.
    fn maybe_release(&mut self, key: ConnKey) {
        let slot = self.slot_mut(key);
        if slot.key != Some(key) || !slot.closing || slot.inflight > 0 {
            return;
        }
        *slot = Slot::default();
        self.engine.released(key);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Accepted {
                listener,
                stream,
                peer,
            } => {
                let _ = stream.set_nodelay(true);
                let service = self.listeners[listener].0;
                let key = self.engine.accepted(service, peer, Instant::now());
                *self.slot_mut(key) = Slot {
                    key: Some(key),
                    socks: [Some(Rc::new(stream)), None],
                    ..Slot::default()
                };
            }
            Event::NoDescriptor { listener } => {
                self.engine.accept_no_descriptor(self.listeners[listener].0);
            }
            Event::Done(done) => self.done(done),
        }
    }

    /// A socket task ended: account for it, then tell the engine what came
    /// of it, unless it belongs to an aborted attempt or a closing slot.
    fn done(&mut self, done: Done) {
        let Done {
            key,
            leg,
            epoch,
            op,
            outcome,
        } = done;
        let Some(slot) = self.slots.get_mut(key.index as usize) else {
            return;
        };
        if slot.key != Some(key) {
            return;
        }
        slot.inflight -= 1;
        let current = leg == Leg::Client || epoch == slot.epoch;
        if slot.closing || !current {
            if let Outcome::Connected(Ok(stale)) = outcome {
                let _ = stale.set_zero_linger();
            }
            self.maybe_release(key);
            return;
        }
        match op {
            Op::Readable => slot.recv[leg as usize] = None,
            Op::Writable => slot.send[leg as usize] = None,
            Op::Connect => slot.connect = None,
        }
        let now = Instant::now();
        match (op, outcome) {
            (_, Outcome::Cancelled) => {}
            (Op::Readable, Outcome::Ready(Ok(()))) => self.read(key, leg),
            (Op::Readable, Outcome::Ready(Err(e))) => {
                self.engine.recv_failed(key, leg, errno(&e), now);
            }
            (Op::Writable, Outcome::Ready(Ok(()))) => self.send(key, leg),
            (Op::Writable, Outcome::Ready(Err(e))) => {
                self.engine.send_failed(key, leg, errno(&e), now);
            }
            (Op::Connect, Outcome::Connected(result)) => {
                let attempt = slot.attempt;
                let result = result.map(|stream| {
                    slot.socks[Leg::Upstream as usize] = Some(Rc::new(stream));
                });
                self.engine
                    .connected(key, attempt, result.map_err(|e| errno(&e)), now);
            }
            (Op::Connect, Outcome::Ready(_)) | (_, Outcome::Connected(_)) => {
                unreachable!("each op has its own outcome")
            }
        }
    }
}

/// Whether `e` means "not now, wait for readiness".
fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// TCP FIN on `sock`, keeping it open for reading. tokio offers this only
/// as `AsyncWrite::poll_shutdown`, which needs the stream to itself, and
/// here the stream is shared with its readiness tasks.
fn shutdown_write(sock: &TcpStream) {
    if let Err(e) = socket2::SockRef::from(sock).shutdown(std::net::Shutdown::Write) {
        // ENOTCONN when the peer reset first; the receive side reports it.
        tracing::trace!(error = %e, "shutdown failed");
    }
}
