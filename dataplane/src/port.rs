//! Ports and the worker loop that moves frames between them.
//!
//! A [`Port`] is a pair of rings as AF_XDP has them: frames arrive on RX
//! (into buffers the port was given on its fill side), leave on TX, and come
//! back on completion. Frames live in a [`FrameMemory`] that every port of a
//! worker shares (one UMEM for AF_XDP), so forwarding moves a descriptor, not
//! bytes. Two implementations: the AF_XDP port ([`crate::xdp::socket`]) and
//! the in-memory port below, which tests and benchmarks drive without a NIC.
//!
//! [`Worker::poll`] is one turn of a worker: reclaim completed frames, refill
//! the fill rings, receive a batch from each port, run the
//! [`Pipeline`](crate::pipeline::Pipeline) on every frame, transmit; a
//! frame the host endpoint's policy admits to the appliance itself goes to
//! the worker's [`LocalStack`] (a TUN device under AF_XDP).
#![forbid(unsafe_code)]

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    pipeline::{DropReason, Pipeline, Verdict},
    route::NeighTable,
    topology::PortId,
};

/// Frames a worker holds while their next hop is resolved (Linux holds
/// 101 per neighbour, `unres_qlen`; this is per worker).
pub const HOLD_MAX: usize = 256;
/// How long a held frame waits before it is dropped (Linux gives up on a
/// neighbour after 3 probes a second apart).
pub const HOLD_FOR: Duration = Duration::from_secs(3);

/// The appliance's own kernel, as a worker hands it the packets addressed
/// to the appliance that policy allowed (see [`crate::host`]).
pub trait LocalStack: std::fmt::Debug {
    /// Hands over one IP packet (no link-layer header).
    ///
    /// # Errors
    /// The kernel did not take it (its queue is full): the packet is
    /// dropped and counted ([`DropReason::Local`]).
    fn deliver(&mut self, packet: &[u8]) -> std::io::Result<()>;
}

/// A local stack that keeps what it is given: for tests and benchmarks.
impl LocalStack for Vec<Vec<u8>> {
    fn deliver(&mut self, packet: &[u8]) -> std::io::Result<()> {
        self.push(packet.to_vec());
        Ok(())
    }
}

/// Where frames live. `Desc` names one frame buffer.
pub trait FrameMemory {
    /// A frame descriptor: cheap to copy, names a buffer in this memory.
    type Desc: Copy;

    /// Runs `f` on the frame's whole buffer and current length; `f` returns
    /// its result and the frame's new length.
    fn with_frame<R>(
        &mut self,
        desc: &mut Self::Desc,
        f: impl FnOnce(&mut [u8], usize) -> (R, usize),
    ) -> R;

    /// The frame's current length.
    fn frame_len(&self, desc: &Self::Desc) -> usize;
}

/// One port (for AF_XDP: one socket, i.e. one interface queue).
pub trait Port {
    /// The descriptor type of the memory the port's frames live in.
    type Desc: Copy;

    /// Moves up to `max` received frames to the end of `out`; returns how many.
    fn recv(&mut self, out: &mut Vec<Self::Desc>, max: usize) -> usize;

    /// Queues frames for transmission from the front of `frames`; returns how
    /// many it took (the rest did not fit in the TX ring).
    fn send(&mut self, frames: &[Self::Desc]) -> usize;

    /// Makes queued frames go: wakes the kernel if it asked to be woken.
    fn flush(&mut self);

    /// Moves transmitted frames back to `free`.
    fn reclaim(&mut self, free: &mut Vec<Self::Desc>);

    /// Gives frames from the end of `free` to the receive side, as many as
    /// it has room for.
    fn refill(&mut self, free: &mut Vec<Self::Desc>);
}

/// A worker: ports, their shared frame memory, and a pipeline.
#[derive(Debug)]
pub struct Worker<M: FrameMemory, P: Port<Desc = M::Desc>> {
    /// The frame memory the ports share.
    pub mem: M,
    /// The ports, indexed by [`PortId`].
    pub ports: Vec<P>,
    /// The pipeline every frame goes through.
    pub pipeline: Pipeline,
    free: Vec<M::Desc>,
    rx: Vec<M::Desc>,
    tx: Vec<Vec<M::Desc>>,
    batch: usize,
    /// Frames waiting for a next hop's MAC: (frame, ingress port, since).
    held: VecDeque<(M::Desc, PortId, Instant)>,
    retry_held: bool,
    /// Where allowed packets to the appliance itself go; none: dropped.
    local: Option<Box<dyn LocalStack + Send>>,
}

impl<M: FrameMemory, P: Port<Desc = M::Desc>> Worker<M, P> {
    /// A worker over `ports`, with `free` frame buffers, receiving at most
    /// `batch` frames per port per turn.
    pub fn new(
        mem: M,
        ports: Vec<P>,
        free: Vec<M::Desc>,
        pipeline: Pipeline,
        batch: usize,
    ) -> Self {
        let tx = (0..ports.len())
            .map(|_| Vec::with_capacity(batch * ports.len()))
            .collect();
        Self {
            mem,
            ports,
            pipeline,
            free,
            rx: Vec::with_capacity(batch),
            tx,
            batch,
            held: VecDeque::new(),
            retry_held: false,
            local: None,
        }
    }

    /// Sets where packets to the appliance itself that policy allowed go
    /// (without one they are dropped as [`DropReason::Local`]).
    pub fn set_local_stack(&mut self, local: Box<dyn LocalStack + Send>) {
        self.local = Some(local);
    }

    /// Adopts a newer neighbour snapshot; held frames are tried again at
    /// the next [`Self::poll`].
    pub fn set_neighbours(&mut self, neigh: Arc<NeighTable>) {
        self.pipeline.set_neighbours(neigh);
        self.retry_held = !self.held.is_empty();
    }

    /// Frames held for an unresolved next hop.
    pub fn held_frames(&self) -> usize {
        self.held.len()
    }

    /// One turn over every port; returns the number of frames received.
    pub fn poll(&mut self, now: Instant) -> usize {
        for port in &mut self.ports {
            port.reclaim(&mut self.free);
            port.refill(&mut self.free);
        }
        self.expire_held(now);
        if std::mem::take(&mut self.retry_held) {
            for _ in 0..self.held.len() {
                let Some((mut desc, ingress, since)) = self.held.pop_front() else {
                    break;
                };
                let pipeline = &mut self.pipeline;
                let verdict = self.mem.with_frame(&mut desc, |buf, len| {
                    (pipeline.retry(ingress, buf, len, now), len)
                });
                self.dispatch(desc, ingress, since, verdict);
            }
        }
        let mut received = 0;
        for i in 0..self.ports.len() {
            self.rx.clear();
            received += self.ports[i].recv(&mut self.rx, self.batch);
            let ingress = PortId(i as u16);
            for k in 0..self.rx.len() {
                let mut desc = self.rx[k];
                let pipeline = &mut self.pipeline;
                let verdict = self.mem.with_frame(&mut desc, |buf, len| {
                    let v = pipeline.process(ingress, buf, len, now);
                    let new_len = match v {
                        Verdict::Tx { len, .. } => len,
                        Verdict::Drop(_) | Verdict::Unresolved | Verdict::Local { .. } => len,
                    };
                    (v, new_len)
                });
                self.dispatch(desc, ingress, now, verdict);
            }
        }
        for (i, queue) in self.tx.iter_mut().enumerate() {
            if queue.is_empty() {
                continue;
            }
            let sent = self.ports[i].send(queue);
            let counters = &mut self.pipeline.counters_mut()[i];
            for desc in &queue[..sent] {
                counters.tx_packets += 1;
                counters.tx_bytes += self.mem.frame_len(desc) as u64;
            }
            for _ in sent..queue.len() {
                counters.drop(DropReason::TxRingFull);
            }
            self.free.extend(queue.drain(..).skip(sent));
            self.ports[i].flush();
        }
        received
    }

    /// Sends a frame where its verdict says: a TX queue, the held queue, or
    /// back to the free frames.
    #[inline]
    fn dispatch(&mut self, desc: M::Desc, ingress: PortId, since: Instant, verdict: Verdict) {
        match verdict {
            Verdict::Tx { port, .. } => self.tx[port.index()].push(desc),
            Verdict::Drop(_) => self.free.push(desc),
            Verdict::Local { l3, end } => {
                self.deliver_local(desc, ingress, l3, end);
                self.free.push(desc);
            }
            Verdict::Unresolved if self.held.len() < HOLD_MAX => {
                self.held.push_back((desc, ingress, since));
            }
            Verdict::Unresolved => {
                self.pipeline.counters_mut()[ingress.index()].drop(DropReason::NoNeighbour);
                self.free.push(desc);
            }
        }
    }

    /// Hands `desc`'s IP packet (`l3..end`) to the local stack, counting it
    /// delivered or dropped on the ingress port.
    #[cold]
    fn deliver_local(&mut self, mut desc: M::Desc, ingress: PortId, l3: usize, end: usize) {
        let delivered = match &mut self.local {
            Some(local) => self.mem.with_frame(&mut desc, |buf, len| {
                let ok = buf
                    .get(l3..end.min(len))
                    .is_some_and(|packet| local.deliver(packet).is_ok());
                (ok, len)
            }),
            None => false,
        };
        let counters = &mut self.pipeline.counters_mut()[ingress.index()];
        if delivered {
            counters.host_delivered += 1;
        } else {
            counters.drop(DropReason::Local);
        }
    }

    /// Drops held frames whose next hop stayed unresolved for [`HOLD_FOR`].
    fn expire_held(&mut self, now: Instant) {
        while let Some((desc, ingress, since)) = self.held.front().copied() {
            if now.saturating_duration_since(since) < HOLD_FOR {
                break;
            }
            self.held.pop_front();
            self.pipeline.counters_mut()[ingress.index()].drop(DropReason::NoNeighbour);
            self.free.push(desc);
        }
    }

    /// Frames not currently given to a port.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }
}

/// Frame buffers on the heap, for the in-memory port.
#[derive(Debug)]
pub struct HeapMemory {
    frames: Vec<Box<[u8]>>,
    lens: Vec<usize>,
}

impl HeapMemory {
    /// `count` buffers of `size` bytes, and their descriptors.
    pub fn new(count: usize, size: usize) -> (Self, Vec<u32>) {
        let frames = (0..count)
            .map(|_| vec![0u8; size].into_boxed_slice())
            .collect();
        (
            Self {
                frames,
                lens: vec![0; count],
            },
            (0..count as u32).collect(),
        )
    }

    /// The bytes of a frame.
    pub fn frame(&self, desc: u32) -> &[u8] {
        &self.frames[desc as usize][..self.lens[desc as usize]]
    }
}

impl FrameMemory for HeapMemory {
    type Desc = u32;

    #[inline]
    fn with_frame<R>(
        &mut self,
        desc: &mut u32,
        f: impl FnOnce(&mut [u8], usize) -> (R, usize),
    ) -> R {
        let i = *desc as usize;
        let (r, len) = f(&mut self.frames[i], self.lens[i]);
        self.lens[i] = len;
        r
    }

    #[inline]
    fn frame_len(&self, desc: &u32) -> usize {
        self.lens[*desc as usize]
    }
}

/// An in-memory port: what tests inject arrives on RX; what the worker
/// transmits waits in `sent` until taken.
#[derive(Debug, Default)]
pub struct MemPort {
    /// Frames waiting to be received.
    pub inbox: VecDeque<u32>,
    /// Frames transmitted and not yet taken.
    pub sent: Vec<u32>,
    /// The TX ring's capacity: frames beyond it are refused.
    pub tx_capacity: usize,
}

impl MemPort {
    /// A port whose TX ring holds `tx_capacity` frames.
    pub fn new(tx_capacity: usize) -> Self {
        Self {
            tx_capacity,
            ..Self::default()
        }
    }
}

impl Port for MemPort {
    type Desc = u32;

    fn recv(&mut self, out: &mut Vec<u32>, max: usize) -> usize {
        let n = max.min(self.inbox.len());
        out.extend(self.inbox.drain(..n));
        n
    }

    fn send(&mut self, frames: &[u32]) -> usize {
        let n = frames
            .len()
            .min(self.tx_capacity.saturating_sub(self.sent.len()));
        self.sent.extend_from_slice(&frames[..n]);
        n
    }

    fn flush(&mut self) {}

    fn reclaim(&mut self, _free: &mut Vec<u32>) {}

    fn refill(&mut self, _free: &mut Vec<u32>) {}
}

impl Worker<HeapMemory, MemPort> {
    /// Puts a copy of `frame` on `port`'s receive side.
    ///
    /// # Panics
    /// If no buffer is free or the frame does not fit in one.
    pub fn inject(&mut self, port: PortId, frame: &[u8]) {
        let mut desc = self.free.pop().expect("a free frame buffer");
        self.mem.with_frame(&mut desc, |buf, _| {
            buf[..frame.len()].copy_from_slice(frame);
            ((), frame.len())
        });
        self.ports[port.index()].inbox.push_back(desc);
    }

    /// Takes what `port` transmitted, as bytes, freeing the buffers.
    pub fn take_sent(&mut self, port: PortId) -> Vec<Vec<u8>> {
        let sent = std::mem::take(&mut self.ports[port.index()].sent);
        let out = sent.iter().map(|d| self.mem.frame(*d).to_vec()).collect();
        self.free.extend(sent);
        out
    }

    /// Frees what `port` transmitted without copying it (benchmarks).
    pub fn discard_sent(&mut self, port: PortId) -> usize {
        let sent = std::mem::take(&mut self.ports[port.index()].sent);
        let n = sent.len();
        self.free.extend(sent);
        n
    }
}
