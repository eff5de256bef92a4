//! The XDP program (`bpf/causeway.bpf.c`): loading with aya, attaching to
//! the ports' interfaces, and its maps: XSK slots, own addresses, failsafe
//! ports, counters.

use std::{
    net::IpAddr,
    os::fd::{AsRawFd, RawFd},
};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf,
    maps::{
        HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, PerCpuValues, XskMap,
        lpm_trie::Key as LpmKey,
    },
    programs::{Xdp, XdpFlags},
};
use tracing::{info, warn};

use super::netlink::Netlink;
use crate::host::FailsafePort;

/// The compiled program, built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/causeway.bpf.o"));

const PROGRAM: &str = "causeway_xdp";
/// `max_entries` of the `failsafe_in` map.
pub const FAILSAFE_MAX: usize = 256;
const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;

/// How to attach the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver (fast); fail if the driver cannot.
    Native,
    /// In the generic (skb) path: works everywhere, slower.
    Generic,
    /// Native, falling back to generic with a warning.
    #[default]
    Auto,
}

/// The counters of the XDP program, summed over CPUs (indices mirror
/// `enum counter` in the C source).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct XdpCounters {
    /// Redirected to an AF_XDP socket.
    pub redirect: u64,
    /// ARP passed to the kernel.
    pub pass_arp: u64,
    /// IPv6 neighbour discovery passed to the kernel.
    pub pass_ndp: u64,
    /// Addressed to the appliance, to a failsafe port: passed to the kernel.
    pub pass_failsafe: u64,
    /// L2 multicast or broadcast: passed to the kernel.
    pub pass_multicast: u64,
    /// Neither IP nor ARP: passed to the kernel.
    pub pass_other: u64,
    /// Malformed L2/L3 header: dropped in the kernel.
    pub drop_malformed: u64,
    /// No AF_XDP socket for the queue (not started, or stopping): dropped.
    pub drop_no_socket: u64,
    /// Source denied by a doNotTrack rule: dropped by the prefilter.
    pub drop_prefilter: u64,
    /// Addressed to the appliance and taken by a kernel socket that is not
    /// a listener (a connection already admitted, a reply to one of the
    /// appliance's own): passed to the kernel.
    pub pass_socket: u64,
    /// Addressed to the appliance, anything else: redirected to the worker
    /// to be judged by the host endpoint's policy.
    pub host_judge: u64,
    /// Addressed to the appliance, an ICMP echo reply or error (what
    /// answers its own pings and connections): passed to the kernel.
    pub pass_icmp_reply: u64,
}

/// The loaded program and the interfaces it is attached to. Dropping it
/// detaches the program everywhere (the links are released).
pub struct XdpProgram {
    ebpf: Ebpf,
    xsks: XskMap<MapData>,
    slots: BpfHashMap<MapData, u32, u32>,
    own: BpfHashMap<MapData, [u8; 16], u8>,
    failsafe: BpfHashMap<MapData, [u8; 4], u8>,
    counters: PerCpuArray<MapData, u64>,
    deny_src: LpmTrie<MapData, [u8; 16], u32>,
    deny_counts: PerCpuArray<MapData, u64>,
    prefilter_len: usize,
    next_slot: u32,
    attached: Vec<String>,
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

impl XdpProgram {
    /// Loads the program into the kernel (not attached yet).
    ///
    /// # Errors
    /// The kernel refused the program or its maps (not root, no BPF).
    pub fn load() -> Result<Self> {
        let mut ebpf = Ebpf::load(OBJECT).context("loading the XDP program (are you root?)")?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .context("program missing from object")?
            .try_into()?;
        prog.load()
            .context("the kernel's verifier refused the XDP program")?;
        let xsks = XskMap::try_from(ebpf.take_map("xsks").context("map xsks")?)?;
        let slots = BpfHashMap::try_from(ebpf.take_map("port_slots").context("map port_slots")?)?;
        let own = BpfHashMap::try_from(ebpf.take_map("own_addrs").context("map own_addrs")?)?;
        let failsafe =
            BpfHashMap::try_from(ebpf.take_map("failsafe_in").context("map failsafe_in")?)?;
        let counters = PerCpuArray::try_from(ebpf.take_map("counters").context("map counters")?)?;
        let deny_src = LpmTrie::try_from(ebpf.take_map("deny_src").context("map deny_src")?)?;
        let deny_counts =
            PerCpuArray::try_from(ebpf.take_map("deny_counts").context("map deny_counts")?)?;
        Ok(Self {
            ebpf,
            xsks,
            slots,
            own,
            failsafe,
            counters,
            deny_src,
            deny_counts,
            prefilter_len: 0,
            next_slot: 0,
            attached: Vec::new(),
        })
    }

    /// Attaches to interface `name` (index `index`) with `queues` RX queues
    /// and reserves its XSK slots; returns the first slot and whether native
    /// mode took. A program left attached through netlink (a crash of an old
    /// version, another tool) is replaced; one held by a live BPF link
    /// (another causeway running) is an error.
    ///
    /// # Errors
    /// The attach failed (in native mode, with `XdpMode::Native`).
    pub fn attach(
        &mut self,
        nl: &mut Netlink,
        name: &str,
        index: u32,
        queues: u32,
        mode: XdpMode,
    ) -> Result<(u32, bool)> {
        let prog: &mut Xdp = self.ebpf.program_mut(PROGRAM).expect("loaded").try_into()?;
        let try_attach = |prog: &mut Xdp, flags: XdpFlags| prog.attach_to_if_index(index, flags);
        let mut attempt = |prog: &mut Xdp, flags: XdpFlags| -> Result<()> {
            match try_attach(prog, flags) {
                Ok(_) => Ok(()),
                Err(first) => {
                    // Perhaps a stale program attached through netlink: remove it and retry once.
                    let removed = [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE]
                        .into_iter()
                        .filter(|m| nl.detach_xdp(index, *m).is_ok())
                        .count();
                    if removed == 0 {
                        return Err(anyhow::Error::new(first));
                    }
                    match try_attach(prog, flags) {
                        Ok(_) => {
                            warn!(interface = name, "replaced a stale XDP program");
                            Ok(())
                        }
                        Err(e) => Err(anyhow::Error::new(e).context(format!(
                            "{name} already has an XDP program that could not be replaced \
                             (another causeway running? see `ip link show {name}`)"
                        ))),
                    }
                }
            }
        };
        let native = match mode {
            XdpMode::Native => {
                attempt(prog, XdpFlags::DRV_MODE)
                    .with_context(|| format!("attaching XDP to {name} in native mode"))?;
                true
            }
            XdpMode::Generic => {
                attempt(prog, XdpFlags::SKB_MODE)
                    .with_context(|| format!("attaching XDP to {name} in generic mode"))?;
                false
            }
            XdpMode::Auto => match attempt(prog, XdpFlags::DRV_MODE) {
                Ok(()) => true,
                Err(e) => {
                    warn!(interface = name, error = %format!("{e:#}"), "native XDP failed; falling back to generic mode (slower)");
                    attempt(prog, XdpFlags::SKB_MODE)
                        .with_context(|| format!("attaching XDP to {name}"))?;
                    false
                }
            },
        };
        if self.next_slot + queues > self.xsks.len() {
            bail!(
                "too many queues: at most {} AF_XDP sockets in all",
                self.xsks.len()
            );
        }
        let first = self.next_slot;
        self.next_slot += queues;
        self.slots
            .insert(index, first, 0)
            .context("port_slots map")?;
        self.attached.push(name.to_owned());
        info!(
            interface = name,
            native,
            first_slot = first,
            queues,
            "XDP program attached"
        );
        Ok((first, native))
    }

    /// Puts an AF_XDP socket in slot `slot`: from now on its queue's packets
    /// are redirected to it.
    ///
    /// # Errors
    /// The map update failed.
    pub fn register_socket(&mut self, slot: u32, fd: RawFd) -> Result<()> {
        self.xsks
            .set(slot, BorrowedRaw(fd), 0)
            .context("xsks map")?;
        Ok(())
    }

    /// Marks `addrs` as the appliance's own: the program passes packets to
    /// them to the kernel.
    ///
    /// # Errors
    /// The map update failed.
    pub fn add_own_addresses(&mut self, addrs: &[IpAddr]) -> Result<()> {
        for a in addrs {
            let key = match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            self.own.insert(key, 1, 0).context("own_addrs map")?;
        }
        Ok(())
    }

    /// Replaces the failsafe inbound ports: TCP or UDP to one of them,
    /// addressed to the appliance, is passed to the kernel unjudged.
    ///
    /// # Errors
    /// A map update failed, or there are more ports than the map holds.
    pub fn set_failsafe(&mut self, ports: &[FailsafePort]) -> Result<()> {
        if ports.len() > FAILSAFE_MAX {
            bail!(
                "{} failsafe ports: the XDP map holds {FAILSAFE_MAX}",
                ports.len()
            );
        }
        let old: Vec<_> = self.failsafe.keys().filter_map(Result::ok).collect();
        for k in old {
            let _ = self.failsafe.remove(&k);
        }
        for p in ports {
            // struct failsafe_key: proto, pad, port in network order.
            let [hi, lo] = p.port.to_be_bytes();
            let key = [p.protocol.number(), 0, hi, lo];
            self.failsafe.insert(key, 1, 0).context("failsafe_in map")?;
        }
        Ok(())
    }

    /// Replaces the prefilter: entry *i* drops its source prefix and counts
    /// in slot *i* (counters restart from zero).
    ///
    /// # Errors
    /// A map update failed, or there are more entries than the map holds.
    pub fn set_prefilter(
        &mut self,
        entries: &[(crate::route::IpPrefix, crate::policy::program::RuleId)],
    ) -> Result<()> {
        let max = self.deny_counts.len() as usize;
        if entries.len() > max {
            bail!(
                "{} prefilter entries: the XDP map holds {max}",
                entries.len()
            );
        }
        let old: Vec<_> = self.deny_src.keys().filter_map(Result::ok).collect();
        for k in old {
            let _ = self.deny_src.remove(&k);
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        for slot in 0..self.prefilter_len.max(entries.len()) {
            self.deny_counts
                .set(slot as u32, PerCpuValues::try_from(vec![0u64; cpus])?, 0)?;
        }
        for (slot, (prefix, _)) in entries.iter().enumerate() {
            let (addr, len) = match prefix.addr() {
                IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), u32::from(prefix.len()) + 96),
                IpAddr::V6(a) => (a.octets(), u32::from(prefix.len())),
            };
            let key = LpmKey::new(len, addr);
            // The first rule for a prefix counts it.
            if self.deny_src.get(&key, 0).is_err() {
                self.deny_src
                    .insert(&key, slot as u32, 0)
                    .context("deny_src map")?;
            }
        }
        self.prefilter_len = entries.len();
        Ok(())
    }

    /// Packets dropped by each prefilter entry, summed over CPUs.
    ///
    /// # Errors
    /// A map read failed.
    pub fn prefilter_counters(&self) -> Result<Vec<u64>> {
        (0..self.prefilter_len as u32)
            .map(|i| Ok(self.deny_counts.get(&i, 0)?.iter().sum()))
            .collect()
    }

    /// The program's counters, summed over CPUs.
    ///
    /// # Errors
    /// The map read failed.
    pub fn counters(&self) -> Result<XdpCounters> {
        let mut v = [0u64; 12];
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = self.counters.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(XdpCounters {
            redirect: v[0],
            pass_arp: v[1],
            pass_ndp: v[2],
            pass_failsafe: v[3],
            pass_multicast: v[4],
            pass_other: v[5],
            drop_malformed: v[6],
            drop_no_socket: v[7],
            drop_prefilter: v[8],
            pass_socket: v[9],
            host_judge: v[10],
            pass_icmp_reply: v[11],
        })
    }
}

/// A raw fd for aya's `AsRawFd` parameter; the socket outlives the call.
struct BorrowedRaw(RawFd);

impl AsRawFd for BorrowedRaw {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}
