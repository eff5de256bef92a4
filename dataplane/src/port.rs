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

/// Bytes every received frame has free in front of it, so a tunnel port can
/// prepend its encapsulation ([`FrameMemory::prepend`]) without copying the
/// packet: outer Ethernet and a VLAN tag (18), IPv6 (40), UDP (8) and a
/// Geneve header (8) leave 54 bytes for Geneve options; VXLAN (8) and a
/// WireGuard-like header (16) need less. The AF_XDP UMEM registers it as
/// its frame headroom ([`crate::xdp::socket::XskMemory`]).
pub const HEADROOM: usize = 128;

/// A port flushed (the kernel woken to transmit) as soon as this many
/// frames wait on its TX ring, however short the worker's TX hold: what
/// one copy-mode `sendto(2)` transmits (TX_BATCH_SIZE in net/xdp/xsk.c).
pub const FLUSH_AT: usize = 32;

/// The largest frame a port must carry: a 1500-byte MTU packet behind an
/// Ethernet header (14) and two VLAN tags (QinQ, 2 × 4). XDP and AF_XDP
/// never see the FCS.
pub const MAX_FRAME: usize = 1500 + 14 + 2 * 4;

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
///
/// A frame starts somewhere inside its buffer: a received frame has at least
/// [`HEADROOM`] bytes in front of it, which [`Self::prepend`] hands out.
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

    /// Moves the frame's start `n` bytes earlier, into its headroom, and
    /// grows its length by `n`: the packet's bytes stay where they are and
    /// are not copied. The `n` new bytes in front hold whatever was there;
    /// the caller writes the new header through [`Self::with_frame`].
    ///
    /// Returns `false`, changing nothing, if fewer than `n` bytes are free
    /// in front of the frame (a received frame has at least [`HEADROOM`]).
    fn prepend(&mut self, desc: &mut Self::Desc, n: usize) -> bool;
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
    /// How long frames queued for transmission may wait for more before
    /// their port is flushed ([`Self::set_tx_hold`]).
    tx_hold: Duration,
    /// Per port: frames queued since its last flush, and when the first
    /// of them was queued (`None`: nothing waits).
    unflushed: Vec<(usize, Option<Instant>)>,
    /// Ports flushed by the last turn.
    flushes: usize,
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
        let ports_len = ports.len();
        let tx = (0..ports_len)
            .map(|_| Vec::with_capacity(batch * ports_len))
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
            tx_hold: Duration::ZERO,
            unflushed: vec![(0, None); ports_len],
            flushes: 0,
        }
    }

    /// Lets frames queued for transmission wait up to `hold` for more
    /// before their port is flushed, or until [`FLUSH_AT`] wait: one
    /// wake-up of the kernel then carries several frames at rates where
    /// each turn receives one or two. Zero (the default) flushes in the
    /// turn that queued them. The worker must keep turning while frames
    /// wait ([`Self::unflushed_frames`]).
    pub fn set_tx_hold(&mut self, hold: Duration) {
        self.tx_hold = hold;
    }

    /// Frames queued for transmission whose port was not flushed yet.
    pub fn unflushed_frames(&self) -> usize {
        self.unflushed.iter().map(|(n, _)| n).sum()
    }

    /// How many ports the last [`Self::poll`] flushed: a turn that
    /// received nothing may still have woken the kernel to transmit.
    pub fn flushes(&self) -> usize {
        self.flushes
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
            let waiting = &mut self.unflushed[i];
            waiting.0 += sent;
            // Also when the ring took nothing: the flush makes it go.
            waiting.1.get_or_insert(now);
        }
        self.flushes = 0;
        for (i, (count, since)) in self.unflushed.iter_mut().enumerate() {
            let Some(first) = *since else { continue };
            if *count >= FLUSH_AT || now.saturating_duration_since(first) >= self.tx_hold {
                self.ports[i].flush();
                (*count, *since) = (0, None);
                self.flushes += 1;
            }
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

/// Frame buffers on the heap, for the in-memory port. Like a UMEM frame,
/// each buffer is [`HEADROOM`] bytes of headroom and then the frame, whose
/// start [`FrameMemory::prepend`] moves back.
#[derive(Debug)]
pub struct HeapMemory {
    frames: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    /// Where each frame starts in its buffer: [`HEADROOM`] until prepended to.
    starts: Vec<usize>,
}

impl HeapMemory {
    /// `count` buffers with `size` bytes of room for a frame behind
    /// [`HEADROOM`] bytes of headroom, and their descriptors.
    pub fn new(count: usize, size: usize) -> (Self, Vec<u32>) {
        let frames = (0..count)
            .map(|_| vec![0u8; HEADROOM + size].into_boxed_slice())
            .collect();
        (
            Self {
                frames,
                lens: vec![0; count],
                starts: vec![HEADROOM; count],
            },
            (0..count as u32).collect(),
        )
    }

    /// The bytes of a frame.
    pub fn frame(&self, desc: u32) -> &[u8] {
        let i = desc as usize;
        &self.frames[i][self.starts[i]..][..self.lens[i]]
    }

    /// Empties a frame and gives it its whole headroom back, as receiving
    /// into a UMEM frame does.
    fn rewind(&mut self, desc: u32) {
        let i = desc as usize;
        self.starts[i] = HEADROOM;
        self.lens[i] = 0;
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
        let (r, len) = f(&mut self.frames[i][self.starts[i]..], self.lens[i]);
        self.lens[i] = len;
        r
    }

    #[inline]
    fn frame_len(&self, desc: &u32) -> usize {
        self.lens[*desc as usize]
    }

    #[inline]
    fn prepend(&mut self, desc: &mut u32, n: usize) -> bool {
        let i = *desc as usize;
        if n > self.starts[i] {
            return false;
        }
        self.starts[i] -= n;
        self.lens[i] += n;
        true
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
    /// Times the worker flushed the port (woke the kernel, under AF_XDP).
    pub flushes: usize,
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

    fn flush(&mut self) {
        self.flushes += 1;
    }

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
        self.mem.rewind(desc);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Puts `bytes` in `desc` as a port receives a frame: at the start of
    /// its buffer's frame room, behind the whole headroom.
    fn receive(mem: &mut HeapMemory, mut desc: u32, bytes: &[u8]) {
        mem.rewind(desc);
        mem.with_frame(&mut desc, |buf, _| {
            buf[..bytes.len()].copy_from_slice(bytes);
            ((), bytes.len())
        });
    }

    #[test]
    fn prepend_moves_the_start_back_and_leaves_the_packet_in_place() {
        let (mut mem, free) = HeapMemory::new(2, MAX_FRAME);
        let mut desc = free[0];
        let packet: Vec<u8> = (0..64).collect();
        receive(&mut mem, desc, &packet);
        let packet_at = mem.frame(desc).as_ptr();

        assert!(mem.prepend(&mut desc, 50));
        assert_eq!(mem.frame_len(&desc), 50 + packet.len());
        mem.with_frame(&mut desc, |buf, len| {
            buf[..50].fill(0xee);
            ((), len)
        });

        let frame = mem.frame(desc);
        assert!(frame[..50].iter().all(|&b| b == 0xee));
        assert_eq!(
            &frame[50..],
            &packet[..],
            "the packet's bytes are untouched"
        );
        assert_eq!(
            frame[50..].as_ptr(),
            packet_at,
            "the packet was not copied: it is at the same address"
        );
        assert_eq!(mem.frame(free[1]).len(), 0, "the other frame is untouched");
    }

    #[test]
    fn prepend_beyond_the_headroom_is_refused_and_changes_nothing() {
        let (mut mem, free) = HeapMemory::new(1, MAX_FRAME);
        let mut desc = free[0];
        let packet = [0xab; 60];
        receive(&mut mem, desc, &packet);
        let packet_at = mem.frame(desc).as_ptr();

        assert!(!mem.prepend(&mut desc, HEADROOM + 1));
        assert_eq!(mem.frame(desc), &packet[..]);
        assert_eq!(mem.frame(desc).as_ptr(), packet_at);

        // The headroom is used up in steps, exactly.
        assert!(mem.prepend(&mut desc, HEADROOM - 8));
        assert!(!mem.prepend(&mut desc, 9));
        assert!(mem.prepend(&mut desc, 8));
        assert!(!mem.prepend(&mut desc, 1));
        assert_eq!(mem.frame_len(&desc), HEADROOM + packet.len());
        assert_eq!(mem.frame(desc)[HEADROOM..].as_ptr(), packet_at);

        // Receiving into the buffer again gives the headroom back.
        receive(&mut mem, desc, &packet);
        assert_eq!(mem.frame(desc).as_ptr(), packet_at);
        assert!(mem.prepend(&mut desc, HEADROOM));
    }

    #[test]
    fn a_largest_frame_fits_behind_the_headroom() {
        let (mut mem, free) = HeapMemory::new(1, MAX_FRAME);
        let mut desc = free[0];
        receive(&mut mem, desc, &[0x5a; MAX_FRAME]);
        assert!(mem.prepend(&mut desc, HEADROOM));
        assert_eq!(mem.frame_len(&desc), HEADROOM + MAX_FRAME);
    }
}
