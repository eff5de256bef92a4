//! The sink at island B: a UDP socket bound to the generator's destination
//! inside the island's namespace, counting what reaches it and turning the
//! probes' timestamps into a latency histogram.
//!
//! Why a plain UDP socket: it is the simplest receiver that is certainly
//! right (the kernel checks both checksums and the address before handing
//! a datagram over), and it answers no ICMP "port unreachable" back through
//! the gateway. It is slower than the gateway under test can be, so the
//! scenarios do not count forwarded packets here: they read island B's
//! interface counter, which sees every frame the gateway delivered whether
//! or not the socket kept up. The sink gives the delivered count and the
//! latency, which includes the wait in the socket's queue: at full load that
//! is queueing delay, and the figures say so.
#![forbid(unsafe_code)]

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::{pktgen::frame::read_stamp, sys};

/// What the sink saw.
#[derive(Debug, Clone)]
pub(crate) struct SinkReport {
    /// Latency of the probes received, in nanoseconds.
    pub(crate) latency_ns: Histogram<u64>,
}

/// A sink running on a thread of its own.
#[derive(Debug)]
pub(crate) struct Sink {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<SinkReport>>,
}

impl Sink {
    /// Starts a sink in namespace `netns`, bound to `addr`, pinned to
    /// `cpu`; returns once it listens.
    ///
    /// # Errors
    /// The namespace, CPU or address cannot be had.
    pub(crate) fn start(netns: &str, addr: SocketAddr, cpu: Option<usize>) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let netns = netns.to_owned();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("perf-sink".to_owned())
            .spawn(move || {
                let socket = (|| {
                    if let Some(cpu) = cpu {
                        sys::pin_to(cpu)?;
                    }
                    sys::enter_netns(&netns)?;
                    let s = UdpSocket::bind(addr)
                        .with_context(|| format!("binding the sink to {addr} in {netns}"))?;
                    s.set_read_timeout(Some(Duration::from_millis(20)))?;
                    anyhow::Ok(s)
                })();
                let socket = match socket {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                receive(&socket, &flag)
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { stop, thread }),
            Ok(Err(e)) => anyhow::bail!("the sink did not start: {e}"),
            Err(_) => anyhow::bail!("the sink thread died before listening"),
        }
    }

    /// Stops the sink and returns what it saw.
    ///
    /// # Errors
    /// The sink failed while receiving.
    pub(crate) fn finish(self) -> anyhow::Result<SinkReport> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the sink thread panicked"))?
    }
}

/// Receives until `stop`, recording the latency of every probe of ours.
fn receive(socket: &UdpSocket, stop: &AtomicBool) -> anyhow::Result<SinkReport> {
    // Up to 10 s at 3 significant digits.
    let mut latency_ns = Histogram::new_with_max(10_000_000_000, 3)?;
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e).context("sink recv"),
        };
        let Some(stamp) = read_stamp(&buf[..n]) else {
            continue;
        };
        if let Some(sent) = stamp.sent_ns {
            let now = sys::monotonic_ns();
            latency_ns.saturating_record(now.saturating_sub(sent));
        }
    }
    Ok(SinkReport { latency_ns })
}
