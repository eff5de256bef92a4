//! The io_uring driver: one ring per worker thread carries out an
//! [`Engine`]'s IO.
//!
//! Per worker:
//! - one `SO_REUSEPORT` listener per service, registered as a fixed file,
//!   accepting with a multishot accept (one SQE for all connections);
//! - a provided-buffer ring (`IORING_REGISTER_PBUF_RING`) that receives
//!   pick from, so an idle connection holds no receive buffer; the engine
//!   copies what arrived into its own chunks and the buffer goes straight
//!   back to the ring;
//! - sends straight from the engine's outboxes, connects, shutdowns,
//!   cancels, all as SQEs; one `io_uring_enter` per loop both submits and
//!   waits, with the engine's next deadline as its timeout.
//!
//! Accepted and upstream sockets are ordinary descriptors (TCP_NODELAY and
//! SO_LINGER need setsockopt, which direct descriptors cannot take before
//! Linux 6.7's socket uring commands); only the listeners are registered.
//!
//! A connection's slot is released to the engine only when no operation of
//! it is in flight, so the engine's buffers a send points into stay its own
//! until the kernel is done with them.

use std::{
    io,
    net::{SocketAddr, TcpListener},
    os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::{
    buf::CHUNK,
    engine::{ConnKey, Engine, Io, Leg, is_local_exhaustion},
};

/// How long accepting pauses after an accept found no descriptor, unless a
/// connection closes (freeing one) first.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Receive buffers in a worker's provided-buffer ring (a power of two).
/// A receive holds one only from its completion until the engine has
/// copied the bytes out, in the same loop turn, so 128 chunks (8.4 MiB)
/// serve any number of connections; a turn that finds the ring empty
/// retries the receive at the next.
const RING_BUFS: u16 = 128;
const BGID: u16 = 0;

// user_data layout: op (8 bits) | leg (1) | epoch (7) | generation (16) | index (32)
const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_CONNECT: u64 = 4;
const OP_SHUTDOWN: u64 = 5;
const OP_CANCEL: u64 = 6;
const OP_CANCEL_ACCEPT: u64 = 7;

fn pack(op: u64, leg: Leg, epoch: u8, key: ConnKey) -> u64 {
    (op << 56)
        | ((leg as u64) << 55)
        | (u64::from(epoch & 0x7f) << 48)
        | (u64::from(key.generation & 0xffff) << 32)
        | u64::from(key.index)
}

struct Unpacked {
    op: u64,
    leg: Leg,
    epoch: u8,
    generation: u16,
    index: u32,
}

fn unpack(u: u64) -> Unpacked {
    Unpacked {
        op: u >> 56,
        leg: if (u >> 55) & 1 == 1 {
            Leg::Upstream
        } else {
            Leg::Client
        },
        epoch: ((u >> 48) & 0x7f) as u8,
        generation: ((u >> 32) & 0xffff) as u16,
        index: u as u32,
    }
}

/// The provided-buffer ring: `RING_BUFS` buffers of `CHUNK` bytes the
/// kernel picks from for receives.
struct BufRing {
    entries: *mut types::BufRingEntry,
    ring_len: usize,
    bufs: Box<[u8]>,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring) -> io::Result<Self> {
        let ring_len = usize::from(RING_BUFS) * size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked for failure below.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if entries == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut me = Self {
            entries: entries.cast(),
            ring_len,
            bufs: vec![0; usize::from(RING_BUFS) * CHUNK].into_boxed_slice(),
            tail: 0,
        };
        // SAFETY: the ring memory is page aligned (mmap), lives as long as
        // `me`, which unregisters nothing but outlives the ring's use: the
        // worker drops the ring before the BufRing (field order in Worker).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, RING_BUFS, BGID, 0)?;
        }
        for bid in 0..RING_BUFS {
            me.push(bid);
        }
        me.publish();
        Ok(me)
    }

    /// Puts buffer `bid` back at the tail (visible after `publish`).
    fn push(&mut self, bid: u16) {
        let i = usize::from(self.tail & (RING_BUFS - 1));
        // SAFETY: `i` < RING_BUFS entries of the mapping.
        let entry = unsafe { &mut *self.entries.add(i) };
        entry.set_addr(self.bufs[usize::from(bid) * CHUNK..].as_ptr() as u64);
        entry.set_len(CHUNK as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes pushed buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of our mapping;
        // the kernel reads it with acquire semantics.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries.cast_const()).cast_mut();
            std::sync::atomic::AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    fn buf(&self, bid: u16, len: usize) -> &[u8] {
        &self.bufs[usize::from(bid) * CHUNK..][..len]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.entries.cast(), self.ring_len);
        }
    }
}

/// The driver's side of a connection slot.
#[derive(Default)]
struct Slot {
    key: Option<ConnKey>,
    fds: [Option<RawFd>; 2],
    /// Bumped per upstream socket, so completions for an aborted attempt
    /// are told apart.
    epoch: u8,
    attempt: u32,
    inflight: u32,
    closing: bool,
    reset: bool,
}

/// Tests set this to make the next worker loop fail as a broken ring
/// does (the error `io_uring_enter` would return), to exercise the
/// restart.
#[cfg(test)]
pub(crate) static INJECT_RING_FAILURE: AtomicBool = AtomicBool::new(false);

/// Where a worker's listeners are.
#[derive(Debug, Clone)]
pub struct Listen {
    /// The service's index in the engine.
    pub service: usize,
    /// The address to listen on.
    pub addr: SocketAddr,
}

/// Opens a `SO_REUSEPORT` listener on `addr` (with `IP_FREEBIND`, so a
/// service address may be configured after the terminator starts).
///
/// # Errors
///
/// The socket calls' errors, with the address.
pub fn listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket syscalls on a descriptor we own.
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let listener = TcpListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        for (level, opt) in [
            (libc::SOL_SOCKET, libc::SO_REUSEADDR),
            (libc::SOL_SOCKET, libc::SO_REUSEPORT),
            (libc::IPPROTO_IP, libc::IP_FREEBIND),
        ] {
            setsockopt(fd, level, opt, &one)?;
        }
        let (storage, len) = sockaddr(addr);
        if libc::bind(fd, (&raw const storage).cast(), len) < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("bind {addr}: {e}")));
        }
        if libc::listen(fd, backlog) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(listener)
    }
}

fn setsockopt<T>(fd: RawFd, level: i32, opt: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid T for the option's size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            std::ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `addr` as a C socket address.
pub(crate) fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: getpeername into a zeroed storage of the size we pass.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getpeername(fd, (&raw mut storage).cast(), &raw mut len) < 0 {
            return None;
        }
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                let sin: libc::sockaddr_in = std::ptr::read((&raw const storage).cast());
                Some(SocketAddr::from((
                    sin.sin_addr.s_addr.to_ne_bytes(),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let sin6: libc::sockaddr_in6 = std::ptr::read((&raw const storage).cast());
                Some(SocketAddr::from((
                    sin6.sin6_addr.s6_addr,
                    u16::from_be(sin6.sin6_port),
                )))
            }
            _ => None,
        }
    }
}

fn close_fd(fd: RawFd, reset: bool) {
    if reset {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &linger);
    }
    // SAFETY: we own `fd` and close it once.
    unsafe {
        libc::close(fd);
    }
}

/// One worker: a ring, its listeners, its engine.
pub struct Worker {
    // Field order matters: the ring goes before the buffer ring it uses.
    ring: IoUring,
    bufs: BufRing,
    engine: Engine,
    listeners: Vec<(Listen, TcpListener, bool)>,
    slots: Vec<Slot>,
    /// Receives that found the buffer ring empty, to try again.
    starved: Vec<(ConnKey, Leg)>,
    /// Accepting is paused until then: an accept found no descriptor.
    /// Re-arming at once would fail at once, for ever (the connection
    /// stays queued in the kernel), so the worker waits for one of its
    /// connections to close or for [`ACCEPT_BACKOFF`].
    accept_backoff: Option<Instant>,
}

impl Worker {
    /// A worker with `engine`, listening on `listen` (sockets opened here,
    /// in the calling thread's network namespace).
    ///
    /// # Errors
    ///
    /// If io_uring is unavailable (seccomp, old kernel) or a listener
    /// cannot be opened.
    pub fn new(engine: Engine, listen: &[Listen]) -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_defer_taskrun()
            .setup_cqsize(16_384)
            .build(4096)?;
        let bufs = BufRing::new(&ring)?;
        let mut listeners = Vec::new();
        for l in listen {
            listeners.push((l.clone(), listener(l.addr, 4096)?, false));
        }
        let fds: Vec<RawFd> = listeners.iter().map(|(_, s, _)| s.as_raw_fd()).collect();
        if !fds.is_empty() {
            ring.submitter().register_files(&fds)?;
        }
        Ok(Self {
            ring,
            bufs,
            engine,
            listeners,
            slots: Vec::new(),
            starved: Vec::new(),
            accept_backoff: None,
        })
    }

    /// Runs until `stop` is set, then drains: no new connections, open ones
    /// may finish for up to `drain`, then the rest are closed.
    ///
    /// # Errors
    ///
    /// Only if the ring itself fails.
    pub fn run(&mut self, stop: &AtomicBool, drain: Duration) -> io::Result<()> {
        for i in 0..self.listeners.len() {
            self.arm_accept(i)?;
        }
        let mut drain_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            self.engine.tick(now);
            self.carry_out()?;
            if drain_until.is_none() && stop.load(Ordering::Relaxed) {
                self.engine.drain();
                drain_until = Some(now + drain);
                self.carry_out()?;
            }
            if let Some(until) = drain_until {
                if now >= until {
                    self.engine.close_all(now);
                    self.carry_out()?;
                }
                if self.engine.live_connections() == 0 && self.accepts_armed() == 0 {
                    return Ok(());
                }
            }
            let wait = self
                .engine
                .next_deadline()
                .into_iter()
                .chain(self.accept_backoff)
                .min()
                .map_or(Duration::from_millis(100), |d| {
                    d.saturating_duration_since(now)
                })
                .min(Duration::from_millis(100));
            let ts = types::Timespec::new()
                .sec(wait.as_secs())
                .nsec(wait.subsec_nanos());
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
            #[cfg(test)]
            if INJECT_RING_FAILURE.swap(false, Ordering::Relaxed) {
                return Err(io::Error::other("injected ring failure"));
            }
            self.complete()?;
            for (key, leg) in std::mem::take(&mut self.starved) {
                self.submit_recv(key, leg)?;
            }
            if self.accept_backoff.is_some_and(|t| Instant::now() >= t) {
                self.accept_backoff = None;
                for i in 0..self.listeners.len() {
                    self.arm_accept(i)?;
                }
            }
        }
    }

    fn accepts_armed(&self) -> usize {
        self.listeners.iter().filter(|l| l.2).count()
    }

    fn push(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every buffer and address an SQE points to outlives
            // the operation: engine outboxes stay put until the slot is
            // released (after its last completion), receive buffers belong
            // to the buffer ring, connect addresses are copied by the
            // kernel at submission.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Out of descriptors: stop every accept until one of this worker's
    /// connections closes or [`ACCEPT_BACKOFF`] passes.
    fn pause_accepting(&mut self, now: Instant) -> io::Result<()> {
        if self.accept_backoff.is_some() {
            return Ok(());
        }
        self.accept_backoff = Some(now + ACCEPT_BACKOFF);
        for i in 0..self.listeners.len() {
            if self.listeners[i].2 {
                let sqe = opcode::AsyncCancel::new((OP_ACCEPT << 56) | i as u64)
                    .build()
                    .user_data(OP_CANCEL_ACCEPT << 56);
                self.push(sqe)?;
            }
        }
        Ok(())
    }

    fn arm_accept(&mut self, i: usize) -> io::Result<()> {
        if self.listeners[i].2
            || self.accept_backoff.is_some()
            || !self.engine.accepting(self.listeners[i].0.service)
        {
            return Ok(());
        }
        self.listeners[i].2 = true;
        let sqe = opcode::AcceptMulti::new(types::Fixed(i as u32))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data((OP_ACCEPT << 56) | i as u64);
        self.push(sqe)
    }

    fn slot(&mut self, key: ConnKey) -> &mut Slot {
        let i = key.index as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, Slot::default);
        }
        &mut self.slots[i]
    }

    /// Turns the engine's queued requests into SQEs.
    fn carry_out(&mut self) -> io::Result<()> {
        while let Some(io) = self.engine.poll_io() {
            match io {
                Io::Recv { conn, leg } => self.submit_recv(conn, leg)?,
                Io::Send { conn, leg } => {
                    let out = self.engine.outgoing(conn, leg);
                    let (ptr, len) = (out.as_ptr(), out.len() as u32);
                    let slot = self.slot(conn);
                    let Some(fd) = slot.fds[leg as usize] else {
                        self.engine
                            .send_failed(conn, leg, libc::EBADF, Instant::now());
                        continue;
                    };
                    slot.inflight += 1;
                    let ud = pack(OP_SEND, leg, slot.epoch, conn);
                    let sqe = opcode::Send::new(types::Fd(fd), ptr, len)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                        .user_data(ud);
                    self.push(sqe)?;
                }
                Io::Connect {
                    conn,
                    addr,
                    attempt,
                } => {
                    let domain = if addr.is_ipv4() {
                        libc::AF_INET
                    } else {
                        libc::AF_INET6
                    };
                    // SAFETY: a new socket we own.
                    let fd =
                        unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
                    if fd < 0 {
                        let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                        if is_local_exhaustion(e) {
                            let now = Instant::now();
                            self.engine.connect_no_descriptor(conn, attempt, now);
                            // A client accepted now could not be served
                            // either: leave the rest queued in the kernel.
                            self.pause_accepting(now)?;
                        } else {
                            self.engine.connected(conn, attempt, Err(e), Instant::now());
                        }
                        continue;
                    }
                    let one: libc::c_int = 1;
                    let _ = setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one);
                    let slot = self.slot(conn);
                    slot.epoch = slot.epoch.wrapping_add(1) & 0x7f;
                    slot.attempt = attempt;
                    slot.fds[1] = Some(fd);
                    slot.inflight += 1;
                    let ud = pack(OP_CONNECT, Leg::Upstream, slot.epoch, conn);
                    let (storage, len) = sockaddr(addr);
                    let sqe = opcode::Connect::new(types::Fd(fd), (&raw const storage).cast(), len)
                        .build()
                        .user_data(ud);
                    // The kernel copies the address when it prepares the
                    // SQE, which happens in this submit.
                    self.push(sqe)?;
                    self.ring.submit()?;
                }
                Io::Shutdown { conn, leg } => {
                    let slot = self.slot(conn);
                    let Some(fd) = slot.fds[leg as usize] else {
                        continue;
                    };
                    slot.inflight += 1;
                    let ud = pack(OP_SHUTDOWN, leg, slot.epoch, conn);
                    let sqe = opcode::Shutdown::new(types::Fd(fd), libc::SHUT_WR)
                        .build()
                        .user_data(ud);
                    self.push(sqe)?;
                }
                Io::Abort { conn } => {
                    let slot = self.slot(conn);
                    if let Some(fd) = slot.fds[1].take() {
                        slot.inflight += 1;
                        let ud = pack(OP_CANCEL, Leg::Upstream, slot.epoch, conn);
                        slot.epoch = slot.epoch.wrapping_add(1) & 0x7f;
                        let sqe = opcode::AsyncCancel2::new(
                            types::CancelBuilder::fd(types::Fd(fd)).all(),
                        )
                        .build()
                        .user_data(ud);
                        self.push(sqe)?;
                        self.ring.submit()?;
                        // In-flight operations hold their own reference to
                        // the file; closing now frees the descriptor.
                        close_fd(fd, true);
                    }
                }
                Io::Close { conn, reset } => {
                    let slot = self.slot(conn);
                    slot.closing = true;
                    slot.reset = reset;
                    if slot.inflight > 0 {
                        let (fds, epoch) = (slot.fds, slot.epoch);
                        for (fd, leg) in fds.into_iter().zip([Leg::Client, Leg::Upstream]) {
                            let Some(fd) = fd else { continue };
                            self.slot(conn).inflight += 1;
                            let sqe = opcode::AsyncCancel2::new(
                                types::CancelBuilder::fd(types::Fd(fd)).all(),
                            )
                            .build()
                            .user_data(pack(OP_CANCEL, leg, epoch, conn));
                            self.push(sqe)?;
                        }
                    }
                    self.maybe_release(conn);
                }
                Io::PauseAccept { service } => {
                    for i in 0..self.listeners.len() {
                        if self.listeners[i].0.service == service && self.listeners[i].2 {
                            let sqe = opcode::AsyncCancel::new((OP_ACCEPT << 56) | i as u64)
                                .build()
                                .user_data(OP_CANCEL_ACCEPT << 56);
                            self.push(sqe)?;
                        }
                    }
                }
                Io::ResumeAccept { service } => {
                    for i in 0..self.listeners.len() {
                        if self.listeners[i].0.service == service {
                            self.arm_accept(i)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn submit_recv(&mut self, conn: ConnKey, leg: Leg) -> io::Result<()> {
        let slot = self.slot(conn);
        if slot.closing || slot.key.is_none_or(|k| k != conn) {
            return Ok(());
        }
        let Some(fd) = slot.fds[leg as usize] else {
            return Ok(());
        };
        slot.inflight += 1;
        let ud = pack(OP_RECV, leg, slot.epoch, conn);
        let sqe = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), CHUNK as u32)
            .buf_group(BGID)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(ud);
        self.push(sqe)
    }

    /// Closes a closing slot's sockets once nothing of it is in flight, and
    /// hands the slot back to the engine.
    fn maybe_release(&mut self, conn: ConnKey) {
        let slot = self.slot(conn);
        if !slot.closing || slot.inflight > 0 {
            return;
        }
        let reset = slot.reset;
        let mut freed = 0;
        for fd in slot.fds.iter_mut().filter_map(Option::take) {
            close_fd(fd, reset);
            freed += 1;
        }
        *slot = Slot::default();
        self.engine.released(conn);
        if freed == 2 && self.accept_backoff.is_some() {
            // The descriptors a new connection needs (client and
            // upstream) are free again: accept at the next turn. A
            // connection refused for want of its upstream socket frees
            // only one, and waits out the backoff.
            self.accept_backoff = Some(Instant::now());
        }
    }

    /// Hands every completion to the engine.
    fn complete(&mut self) -> io::Result<()> {
        let mut returned = false;
        loop {
            let Some(cqe) = self.ring.completion().next() else {
                break;
            };
            let now = Instant::now();
            let u = unpack(cqe.user_data());
            let res = cqe.result();
            let flags = cqe.flags();
            match u.op {
                OP_ACCEPT => {
                    let i = u.index as usize;
                    if !cqueue::more(flags) {
                        self.listeners[i].2 = false;
                    }
                    let service = self.listeners[i].0.service;
                    if res >= 0 {
                        self.accepted(service, res, now);
                    } else if is_local_exhaustion(-res) {
                        // The connection stays queued in the kernel; take
                        // it when a descriptor is free, not in a loop.
                        self.engine.accept_no_descriptor(service);
                        tracing::debug!(errno = -res, "accept: no descriptor; accepting pauses");
                        self.pause_accepting(now)?;
                    } else if res != -libc::ECANCELED {
                        tracing::debug!(errno = -res, "accept failed");
                    }
                    if !self.listeners[i].2 {
                        self.arm_accept(i)?;
                    }
                }
                OP_CANCEL_ACCEPT => {}
                _ => {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        if u.op == OP_RECV && res > 0 {
                            self.slot_completion(&u, res, Some(bid), now);
                        } else {
                            self.slot_completion(&u, res, None, now);
                        }
                        self.bufs.push(bid);
                        returned = true;
                    } else {
                        self.slot_completion(&u, res, None, now);
                    }
                }
            }
            self.carry_out()?;
        }
        if returned {
            self.bufs.publish();
        }
        Ok(())
    }

    fn accepted(&mut self, service: usize, fd: RawFd, now: Instant) {
        let one: libc::c_int = 1;
        let _ = setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one);
        let Some(peer) = peer_addr(fd) else {
            close_fd(fd, true);
            return;
        };
        let key = self.engine.accepted(service, peer, now);
        let slot = self.slot(key);
        *slot = Slot {
            key: Some(key),
            fds: [Some(fd), None],
            ..Slot::default()
        };
    }

    fn slot_completion(&mut self, u: &Unpacked, res: i32, bid: Option<u16>, now: Instant) {
        let Some(slot) = self.slots.get_mut(u.index as usize) else {
            return;
        };
        let Some(key) = slot.key else {
            return;
        };
        if (key.generation & 0xffff) as u16 != u.generation {
            return;
        }
        slot.inflight = slot.inflight.saturating_sub(1);
        let stale = u.leg == Leg::Upstream && u.epoch != slot.epoch;
        if slot.closing || stale || u.op == OP_CANCEL {
            self.maybe_release(key);
            return;
        }
        match u.op {
            OP_RECV => {
                if res == -libc::ENOBUFS {
                    self.starved.push((key, u.leg));
                } else if res < 0 {
                    self.engine.recv_failed(key, u.leg, -res, now);
                } else {
                    let data = bid.map_or(&[][..], |b| self.bufs.buf(b, res as usize));
                    self.engine.received(key, u.leg, data, now);
                }
            }
            OP_SEND => {
                if res < 0 {
                    self.engine.send_failed(key, u.leg, -res, now);
                } else {
                    self.engine.sent(key, u.leg, res as usize, now);
                }
            }
            OP_CONNECT => {
                let attempt = slot.attempt;
                let r = if res < 0 { Err(-res) } else { Ok(()) };
                self.engine.connected(key, attempt, r, now);
            }
            OP_SHUTDOWN => {}
            _ => {}
        }
    }
}

impl Drop for Worker {
    /// A worker dropped with connections open (its ring failed; a clean
    /// run drains them all first): every descriptor it holds is closed,
    /// with an RST, so neither clients nor upstreams are left hanging on a
    /// worker that is gone. The listeners close with their `TcpListener`.
    ///
    /// Before that, what the ring still has in flight is cancelled and
    /// waited for, briefly, so the kernel is done with the engine's
    /// buffers before they are freed. A ring that fails this too is
    /// beyond help: closing it makes the kernel cancel the rest.
    fn drop(&mut self) {
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any().all())
            .build()
            .user_data(OP_CANCEL_ACCEPT << 56);
        // SAFETY: a cancel points at no memory.
        if unsafe { self.ring.submission().push(&cancel) }.is_ok() {
            let ts = types::Timespec::new().nsec(50_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            for _ in 0..4 {
                if self.ring.submitter().submit_with_args(1, &args).is_err() {
                    break;
                }
                let drained = self.ring.completion().count();
                if drained == 0 {
                    break;
                }
            }
        }
        let mut closed = 0;
        for slot in &mut self.slots {
            for fd in slot.fds.iter_mut().filter_map(Option::take) {
                close_fd(fd, true);
                closed += 1;
            }
        }
        if closed > 0 {
            tracing::warn!(closed, "terminator worker gone: its connections were reset");
        }
    }
}

/// Hands `listener`'s descriptor over (used by tests that pre-bind).
#[doc(hidden)]
pub fn into_fd(listener: TcpListener) -> RawFd {
    listener.into_raw_fd()
}

/// Stops workers: set once, read by every worker loop.
pub type StopFlag = Arc<AtomicBool>;
