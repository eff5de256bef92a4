//! The cheap sink of `forward` (`--sink xdp`, the default): an XDP program
//! on island B's `eth0` (`bpf/xdp_sink.bpf.c`) that counts the generator's
//! frames in a per-CPU array and drops them in the driver.
//!
//! Island B's receive runs on the forwarder's CPU (it sends into the
//! island), so with a UDP socket there the forwarder paid for a socket's
//! receive path as much as for forwarding. Here it pays for one XDP
//! program run per frame: what it spends is forwarding. The count is read
//! from the map; ARP and everything not addressed to the sink's port go
//! up to island B's stack, which answers the gateway's neighbour lookups.
//!
//! It has no latency: the probes are dropped with the rest (`--sink udp`
//! measures latency). The program is attached through a `bpf_link` that
//! lives as long as this value, and goes with the namespace if the lab is
//! removed first.

use anyhow::Context;
use aya::{Ebpf, maps::PerCpuArray, programs::Xdp};

use super::xdp::attach_in;
use crate::lab::Lab;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_sink.bpf.o"));

/// The sink attached to a lab's island B; detached when dropped.
pub(crate) struct XdpSink {
    ebpf: Ebpf,
}

impl std::fmt::Debug for XdpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpSink").finish_non_exhaustive()
    }
}

impl XdpSink {
    /// Attaches the sink to island B's `eth0` of `lab`, in native mode.
    ///
    /// # Errors
    /// Loading or attaching fails (not root, a kernel without native XDP
    /// on veth).
    pub(crate) fn attach(lab: &Lab) -> anyhow::Result<Self> {
        let mut ebpf = Ebpf::load(OBJECT).context("loading the XDP sink (are you root?)")?;
        let prog: &mut Xdp = ebpf
            .program_mut("xdp_sink")
            .context("the XDP sink has no program xdp_sink")?
            .try_into()?;
        prog.load().context("verifying the XDP sink")?;
        let island_b = lab.ns("b");
        attach_in(&mut ebpf, "xdp_sink", &island_b, "eth0")?;
        Ok(Self { ebpf })
    }

    /// Frames counted and dropped so far, summed over the CPUs.
    ///
    /// # Errors
    /// The map cannot be read.
    pub(crate) fn count(&self) -> anyhow::Result<u64> {
        let map = self
            .ebpf
            .map("sink_count")
            .context("the XDP sink has no map sink_count")?;
        let counts: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let per_cpu = counts.get(&0, 0).context("reading the XDP sink's count")?;
        Ok(per_cpu.iter().sum())
    }
}
