//! The in-kernel XDP peer of `forward`: what a user gets from XDP alone,
//! forwarding in the driver with the kernel's FIB (`bpf/xdp_fwd.bpf.c`, as
//! the kernel's `samples/bpf/xdp_fwd`), no AF_XDP and no policy.
//!
//! It goes on the Linux lab (the kernel's own forwarding stays on for
//! what XDP passes up: ARP, a neighbour not resolved yet):
//!
//! - `xdp_fwd` on the appliance namespace's `a0` in native mode; it
//!   redirects island A's frames to `b0`;
//! - `xdp_pass` on island B's `eth0`: a veth takes redirected frames only
//!   when its peer runs an XDP program (that gives the peer its NAPI).
//!   With the XDP sink ([`super::xdp_sink`]) already there, its program
//!   serves, and `xdp_pass` is not attached.
//!
//! `a0`'s NAPI (where the forwarding happens) runs as a kernel thread
//! (`threaded`) pinned to the forwarder's CPU, the one causeway's worker
//! has: otherwise it would run in softirq on the generator's CPU, where
//! the generator's transmit schedules it, and leave the forwarder's CPU
//! idle. Island B's NAPI is then scheduled from that thread, so it runs
//! `xdp_pass` and builds the skb on the forwarder's CPU too, and the rest
//! of island B's receive runs there as in the other labs (unless
//! `--island-b-rx-cpu` steers it elsewhere).
//! (Threading island B's NAPI onto the sink's CPU instead was measured:
//! that CPU, shared with the generator, could not drain the veth's
//! 256-frame XDP ring, and most frames were dropped there.)
//!
//! Dropping the peer detaches both programs (bpf_link) and turns the
//! threads off again, leaving the lab as it was for the nftables points.

use std::{collections::BTreeSet, fs, path::Path, thread};

use anyhow::{Context, bail};
use aya::{
    Ebpf,
    programs::{Xdp, XdpFlags},
};

use crate::{
    lab::{Lab, in_netns, run},
    sys,
};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_fwd.bpf.o"));

/// The XDP forwarder attached to a lab; detached when dropped.
pub(crate) struct XdpPeer {
    /// Holds the programs and their links.
    ebpf: Option<Ebpf>,
    /// The namespace whose `a0` NAPI was made threaded.
    threaded: Option<String>,
}

impl std::fmt::Debug for XdpPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpPeer")
            .field("threaded", &self.threaded)
            .finish_non_exhaustive()
    }
}

impl XdpPeer {
    /// Attaches the forwarder to `lab` (a Linux lab: no appliance), its
    /// forwarding NAPI on `forward_cpu`; `island_b_has_xdp`: an XDP
    /// program (the sink) already runs on island B's `eth0`.
    ///
    /// # Errors
    /// Loading or native attach fails (not root, a kernel without XDP on
    /// veth), or the NAPI threads cannot be made or pinned.
    pub(crate) fn attach(
        lab: &Lab,
        forward_cpu: usize,
        island_b_has_xdp: bool,
    ) -> anyhow::Result<Self> {
        let mut ebpf = Ebpf::load(OBJECT).context("loading the XDP peer (are you root?)")?;
        for name in ["xdp_fwd", "xdp_pass"] {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("the XDP peer has no program {name}"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("verifying the XDP peer's {name}"))?;
        }
        let (gw, b) = (lab.ns("gw"), lab.ns("b"));
        // Island B first: a redirect to b0 needs its peer's NAPI ready.
        if !island_b_has_xdp {
            attach_in(&mut ebpf, "xdp_pass", &b, "eth0")?;
        }
        attach_in(&mut ebpf, "xdp_fwd", &gw, "a0")?;
        let mut peer = Self {
            ebpf: Some(ebpf),
            threaded: None,
        };
        let before = napi_threads("a0");
        set_threaded(&gw, "a0", true)?;
        peer.threaded = Some(gw.clone());
        let new: Vec<u32> = napi_threads("a0").difference(&before).copied().collect();
        if new.is_empty() {
            bail!("no NAPI thread of a0 in {gw} appeared after `threaded` was turned on");
        }
        for pid in new {
            let (cpu, pid) = (forward_cpu.to_string(), pid.to_string());
            run(Path::new("taskset"), &["-p", "-c", &cpu, &pid])
                .with_context(|| format!("pinning a0's NAPI thread {pid} to CPU {cpu}"))?;
        }
        Ok(peer)
    }
}

impl Drop for XdpPeer {
    fn drop(&mut self) {
        // Threads off while the NAPI still exists (a veth has one only
        // while it runs XDP; writing `threaded` without one fails), then
        // detach.
        if let Some(ns) = self.threaded.take()
            && let Err(e) = set_threaded(&ns, "a0", false)
        {
            eprintln!("turning a0's threaded NAPI off in {ns}: {e:#}");
        }
        drop(self.ebpf.take());
    }
}

/// Attaches program `name` of `ebpf` to `iface` of namespace `ns`, in
/// native mode, from a thread inside `ns` (the link is made against the
/// calling thread's namespace; it lives as long as `ebpf`).
pub(super) fn attach_in(ebpf: &mut Ebpf, name: &str, ns: &str, iface: &str) -> anyhow::Result<()> {
    thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<()> {
            sys::enter_netns(ns)?;
            let prog: &mut Xdp = ebpf.program_mut(name).context("loaded")?.try_into()?;
            prog.attach(iface, XdpFlags::DRV_MODE)
                .with_context(|| format!("attaching {name} to {iface} in {ns} (native mode)"))?;
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread attaching {name} panicked"))?
    })
}

fn set_threaded(ns: &str, iface: &str, on: bool) -> anyhow::Result<()> {
    let v = u8::from(on);
    in_netns(
        ns,
        &[
            "sh",
            "-c",
            &format!("echo {v} > /sys/class/net/{iface}/threaded"),
        ],
    )
    .map(drop)
}

/// Pids of the kernel threads `napi/IFACE-N` (of any namespace).
fn napi_threads(iface: &str) -> BTreeSet<u32> {
    let prefix = format!("napi/{iface}-");
    let Ok(dir) = fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with(&prefix))
        })
        .collect()
}
