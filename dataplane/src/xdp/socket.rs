//! The AF_XDP port: one socket (interface, queue) bound to the worker's UMEM,
//! with its RX, TX, fill and completion rings (xsk-rs over libxdp).
//!
//! Every socket of a worker shares one UMEM (`XDP_SHARED_UMEM`), so a frame
//! received on one port is transmitted on another by moving its descriptor.

use std::{
    ffi::CString,
    io,
    num::NonZeroU32,
    os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd},
};

use anyhow::{Context, Result};
use xsk_rs::{
    CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem,
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
};

use crate::port::{FLUSH_AT, FrameMemory, HEADROOM, MAX_FRAME, Port};

/// Ring sizes (descriptors) of every AF_XDP ring.
pub const RING_SIZE: u32 = 2048;
/// The size of one UMEM frame: headroom, then the packet (see [`XskMemory`]).
pub const FRAME_SIZE: u32 = 2048;
/// The headroom the kernel keeps in front of every packet it receives into
/// a UMEM frame for the XDP program (`XDP_PACKET_HEADROOM`,
/// include/uapi/linux/bpf.h).
pub const XDP_PACKET_HEADROOM: usize = 256;
/// The room for a received packet: what is left of a frame after our
/// headroom and the XDP program's.
pub const DATA_ROOM: usize = FRAME_SIZE as usize - HEADROOM - XDP_PACKET_HEADROOM;

// 2048 - 128 - 256 = 1664 >= 1522 (1500-byte MTU, Ethernet, two VLAN tags):
// a larger frame would be dropped by the kernel (`rx_dropped`).
const _: () = assert!(MAX_FRAME <= DATA_ROOM);
// The masks that find a frame from an address (here and in the kernel's
// aligned mode) need a power of two.
const _: () = assert!(FRAME_SIZE.is_power_of_two());

/// The UMEM of one worker.
///
/// Each frame is laid out as the kernel lays out an aligned UMEM chunk
/// registered with `frame_headroom` = [`HEADROOM`]:
///
/// ```text
/// | HEADROOM (128) | XDP_PACKET_HEADROOM (256) | packet ... DATA_ROOM (1664) |
/// ^ frame start      (the XDP program's)         ^ received data starts here
/// ```
///
/// A received packet therefore has `HEADROOM` + 256 bytes in front of it,
/// less any the XDP program pushed (`bpf_xdp_adjust_head`; ours pushes
/// none), and never fewer than `HEADROOM`. Once the frame is the worker's,
/// all of it is: [`FrameMemory::prepend`] moves the descriptor's address
/// back into either headroom, and the kernel transmits from any address
/// inside the frame.
#[derive(Debug)]
pub struct XskMemory {
    umem: Umem,
}

impl XskMemory {
    /// A UMEM of `frames` frames and their descriptors.
    ///
    /// # Errors
    /// The mmap or the UMEM registration failed.
    pub fn new(frames: u32) -> Result<(Self, Vec<FrameDesc>)> {
        let config = umem_config()?;
        let frames = NonZeroU32::new(frames).context("a UMEM needs frames")?;
        let (umem, descs) = Umem::new(config, frames, false).context("creating the UMEM")?;
        Ok((Self { umem }, descs))
    }
}

/// The UMEM's configuration: [`FRAME_SIZE`] frames with [`HEADROOM`] in
/// front of the XDP program's headroom.
fn umem_config() -> Result<UmemConfig> {
    Ok(UmemConfig::builder()
        .frame_size(FrameSize::new(FRAME_SIZE)?)
        .fill_queue_size(QueueSize::new(RING_SIZE)?)
        .comp_queue_size(QueueSize::new(RING_SIZE)?)
        .frame_headroom(HEADROOM as u32)
        .build()?)
}

impl FrameMemory for XskMemory {
    type Desc = FrameDesc;

    #[inline]
    fn with_frame<R>(
        &mut self,
        desc: &mut FrameDesc,
        f: impl FnOnce(&mut [u8], usize) -> (R, usize),
    ) -> R {
        let len = desc.lengths().data();
        // SAFETY: `desc` came from this UMEM (every descriptor a worker
        // handles does) and the worker holds it: it is on no ring, so
        // neither the kernel nor another reference touches the frame.
        let mut data = unsafe { self.umem.data_mut(desc) };
        let mut cursor = data.cursor();
        let capacity = cursor.buf_len();
        cursor.set_pos(capacity);
        let (r, new_len) = f(data.contents_mut(), len);
        data.cursor().set_pos(new_len);
        r
    }

    #[inline]
    fn frame_len(&self, desc: &FrameDesc) -> usize {
        desc.lengths().data()
    }

    #[inline]
    fn prepend(&mut self, desc: &mut FrameDesc, n: usize) -> bool {
        // Frames are FRAME_SIZE-aligned offsets into the UMEM, so this is
        // how far the packet starts into its frame.
        let room = desc.addr() % FRAME_SIZE as usize;
        if n > room {
            return false;
        }
        let len = desc.lengths().data();
        desc.set_addr(desc.addr() - n);
        // SAFETY: as in `with_frame`: `desc` is this UMEM's, held by the
        // worker and on no ring, and its new address is in the same frame.
        let mut data = unsafe { self.umem.data_mut(desc) };
        data.cursor().set_pos(len + n);
        true
    }
}

/// The kernel's counters of one AF_XDP socket (`XDP_STATISTICS`): where
/// frames the XDP program redirected to it were lost before the worker
/// saw them, and what its TX ring refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct XskStats {
    /// Dropped for other reasons (e.g. a frame too large for a UMEM frame).
    pub rx_dropped: u64,
    /// Fill ring descriptors the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel found invalid.
    pub tx_invalid_descs: u64,
    /// Dropped because the RX ring was full: the worker did not keep up.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty: no frame to receive
    /// into, so the frame was dropped.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty when the kernel was woken to send.
    pub tx_ring_empty_descs: u64,
}

impl XskStats {
    /// Reads the counters of the AF_XDP socket `fd`.
    ///
    /// # Errors
    /// `getsockopt(SOL_XDP, XDP_STATISTICS)` failed (not an AF_XDP socket).
    pub fn read(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let mut raw = libc::xdp_statistics {
            rx_dropped: 0,
            rx_invalid_descs: 0,
            tx_invalid_descs: 0,
            rx_ring_full: 0,
            rx_fill_ring_empty_descs: 0,
            tx_ring_empty_descs: 0,
        };
        let mut len = size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `raw` is a live, writable xdp_statistics and `len` its
        // size; the kernel writes at most `len` bytes and updates `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                std::ptr::from_mut(&mut raw).cast(),
                &raw mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            rx_dropped: raw.rx_dropped,
            rx_invalid_descs: raw.rx_invalid_descs,
            tx_invalid_descs: raw.tx_invalid_descs,
            rx_ring_full: raw.rx_ring_full,
            rx_fill_ring_empty_descs: raw.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: raw.tx_ring_empty_descs,
        })
    }

    /// Each counter by its kernel name.
    pub fn events(&self) -> [(&'static str, u64); 6] {
        [
            ("rx_dropped", self.rx_dropped),
            ("rx_invalid_descs", self.rx_invalid_descs),
            ("tx_invalid_descs", self.tx_invalid_descs),
            ("rx_ring_full", self.rx_ring_full),
            ("rx_fill_ring_empty_descs", self.rx_fill_ring_empty_descs),
            ("tx_ring_empty_descs", self.tx_ring_empty_descs),
        ]
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Self) {
        self.rx_dropped += other.rx_dropped;
        self.rx_invalid_descs += other.rx_invalid_descs;
        self.tx_invalid_descs += other.tx_invalid_descs;
        self.rx_ring_full += other.rx_ring_full;
        self.rx_fill_ring_empty_descs += other.rx_fill_ring_empty_descs;
        self.tx_ring_empty_descs += other.tx_ring_empty_descs;
    }
}

/// One AF_XDP socket as a [`Port`].
pub struct XskPort {
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    comp: CompQueue,
    fd: RawFd,
    scratch: Vec<FrameDesc>,
    /// Frames on the TX ring not yet completed.
    in_flight: usize,
    /// Frames queued since the last kick.
    unkicked: usize,
}

impl std::fmt::Debug for XskPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskPort")
            .field("fd", &self.fd)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl XskPort {
    /// Binds a socket to `(interface, queue)` on `mem`'s UMEM. The XDP
    /// program must be attached by us ([`super::XdpProgram`]), so libxdp is
    /// told not to load its own.
    ///
    /// # Errors
    /// The bind failed (interface missing, queue out of range, not root).
    pub fn bind(mem: &XskMemory, interface: &str, queue: u32) -> Result<Self> {
        let config = SocketConfig::builder()
            .rx_queue_size(QueueSize::new(RING_SIZE)?)
            .tx_queue_size(QueueSize::new(RING_SIZE)?)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        let name =
            Interface::new(CString::new(interface).context("interface name has a NUL byte")?);
        // SAFETY: XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD is set, as `Socket::new`
        // requires when a UMEM is shared.
        let (tx, rx, rings) = unsafe { Socket::new(config, &mem.umem, &name, queue) }
            .with_context(|| format!("binding an AF_XDP socket to {interface} queue {queue}"))?;
        let (fill, comp) = rings
            .context("libxdp returned no fill/completion rings for a new (interface, queue)")?;
        let fd = rx.fd().as_raw_fd();
        Ok(Self {
            tx,
            rx,
            fill,
            comp,
            fd,
            scratch: vec![FrameDesc::default(); RING_SIZE as usize],
            in_flight: 0,
            unkicked: 0,
        })
    }

    /// The socket's file descriptor (XSKMAP entry, poll(2)).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// A second descriptor of the socket, to read its [`XskStats`] from
    /// another thread for as long as it is held (the socket outlives the
    /// worker's port until both are closed).
    ///
    /// # Errors
    /// `dup` failed (out of descriptors).
    pub fn stats_fd(&self) -> io::Result<OwnedFd> {
        // SAFETY: `self.fd` is the descriptor of the socket `self.rx`
        // holds open for as long as `self` lives.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        fd.try_clone_to_owned()
    }

    /// Whether the kernel asked to be woken to use the fill ring.
    pub fn fill_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }
}

impl Port for XskPort {
    type Desc = FrameDesc;

    #[inline]
    fn recv(&mut self, out: &mut Vec<FrameDesc>, max: usize) -> usize {
        let start = out.len();
        out.resize(start + max, FrameDesc::default());
        // SAFETY: the RX ring only ever holds frames of this worker's UMEM.
        let n = unsafe { self.rx.consume(&mut out[start..]) };
        out.truncate(start + n);
        n
    }

    #[inline]
    fn send(&mut self, frames: &[FrameDesc]) -> usize {
        let room = self.tx.nb_free(frames.len() as u32) as usize;
        let n = room.min(frames.len());
        // SAFETY: the frames are this UMEM's and the worker gives them up:
        // none is on another ring until it comes back on completion.
        let sent = unsafe { self.tx.produce(&frames[..n]) };
        self.in_flight += sent;
        self.unkicked += sent;
        sent
    }

    #[inline]
    fn flush(&mut self) {
        if self.unkicked == 0 && self.in_flight == 0 {
            return;
        }
        // In copy mode each sendto(2) transmits at most FLUSH_AT frames
        // (TX_BATCH_SIZE in net/xdp/xsk.c): kick once per FLUSH_AT.
        if self.tx.needs_wakeup() {
            for _ in 0..self.unkicked.div_ceil(FLUSH_AT).max(1) {
                if self.tx.wakeup().is_err() {
                    break;
                }
            }
        }
        self.unkicked = 0;
    }

    #[inline]
    fn reclaim(&mut self, free: &mut Vec<FrameDesc>) {
        if self.in_flight == 0 {
            return;
        }
        // SAFETY: the completion ring only holds frames of this UMEM.
        let n = unsafe { self.comp.consume(&mut self.scratch) };
        self.in_flight -= n;
        free.extend_from_slice(&self.scratch[..n]);
        if self.in_flight > self.unkicked && self.tx.needs_wakeup() {
            // Frames kicked but not all sent: keep the copy-mode
            // transmitter going (frames not kicked yet wait for a flush).
            let _ = self.tx.wakeup();
        }
    }

    #[inline]
    fn refill(&mut self, free: &mut Vec<FrameDesc>) {
        if free.is_empty() {
            return;
        }
        let n = (self.fill.nb_free(free.len() as u32) as usize).min(free.len());
        if n == 0 {
            return;
        }
        let from = free.len() - n;
        // SAFETY: free frames belong to this UMEM and to no ring.
        let given = unsafe { self.fill.produce(&free[from..]) };
        free.truncate(free.len() - given);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_umem_layout_leaves_room_for_the_largest_frame() {
        let config = umem_config().expect("a valid UMEM config");
        assert_eq!(config.frame_size().get(), FRAME_SIZE);
        assert_eq!(config.frame_headroom() as usize, HEADROOM);
        assert_eq!(config.xdp_headroom() as usize, XDP_PACKET_HEADROOM);
        assert_eq!(config.mtu() as usize, DATA_ROOM);
        // 2048 - 128 - 256; the const assertion beside DATA_ROOM holds the
        // MAX_FRAME (1522) bound at compile time.
        assert_eq!(DATA_ROOM, 1664);
    }
}
