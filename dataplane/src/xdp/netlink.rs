//! A minimal rtnetlink client: the dataplane's one door to the kernel's
//! links, addresses and neighbours.
//!
//! It speaks just the messages the dataplane needs (RFC 3549 framing, the
//! `rtnetlink(7)` payloads): dumps of links, addresses and neighbours; the
//! neighbour multicast group; adding a *managed* neighbour so the kernel
//! resolves and keeps it fresh (`NTF_EXT_MANAGED`, Linux 5.16); removing an
//! XDP program attached through netlink (a stale one left by a crash).

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use crate::wire::EthernetAddress;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NDA_FLAGS_EXT: u16 = 15;
const NTF_EXT_MANAGED: u32 = 1;
const NLA_F_NESTED: u16 = 1 << 15;

const RTNLGRP_NEIGH: u32 = 3;

/// Neighbour states with a usable link-layer address (`NUD_VALID` less
/// `NUD_NOARP` entries without one, which never carry a MAC).
const NUD_USABLE: u16 = 0x02 /* REACHABLE */ | 0x04 /* STALE */ | 0x08 /* DELAY */
    | 0x10 /* PROBE */ | 0x40 /* NOARP */ | 0x80 /* PERMANENT */;

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The interface index.
    pub index: u32,
    /// The interface name.
    pub name: String,
    /// The MAC, for Ethernet-like links.
    pub mac: Option<EthernetAddress>,
}

/// An address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    /// The interface index.
    pub index: u32,
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
}

/// A neighbour entry or change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neigh {
    /// The interface index.
    pub index: u32,
    /// The neighbour's address.
    pub addr: IpAddr,
    /// Its MAC, when the entry is usable; `None` when it is not (or gone).
    pub mac: Option<EthernetAddress>,
}

/// A netlink route socket.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a route socket; with `neigh_events`, also joins the neighbour
    /// multicast group so [`Self::recv_neigh_events`] sees changes.
    ///
    /// # Errors
    /// The socket or bind system call failed.
    pub fn open(neigh_events: bool) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain old data; zeroed is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        if neigh_events {
            sa.nl_groups = 1 << (RTNLGRP_NEIGH - 1);
        }
        // SAFETY: `sa` is a valid sockaddr_nl and the length matches it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sa).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            seq: 1,
            buf: vec![0; 64 * 1024],
        })
    }

    /// The socket, for poll(2).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Every interface.
    ///
    /// # Errors
    /// The kernel refused the dump or the socket failed.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let mut out = Vec::new();
        // struct ifinfomsg: family, pad, type, index, flags, change (16 bytes).
        self.dump(RTM_GETLINK, &[0u8; 16], |ty, payload| {
            if ty != RTM_NEWLINK || payload.len() < 16 {
                return;
            }
            let index = u32::from_ne_bytes(payload[4..8].try_into().unwrap());
            let mut link = Link {
                index,
                name: String::new(),
                mac: None,
            };
            for (t, v) in attrs(&payload[16..]) {
                match t {
                    IFLA_IFNAME => {
                        link.name =
                            String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(v)).into()
                    }
                    IFLA_ADDRESS if v.len() == 6 => {
                        link.mac = Some(EthernetAddress(v.try_into().unwrap()))
                    }
                    _ => {}
                }
            }
            out.push(link);
        })?;
        Ok(out)
    }

    /// Every address of every interface.
    ///
    /// # Errors
    /// The kernel refused the dump or the socket failed.
    pub fn addrs(&mut self) -> io::Result<Vec<Addr>> {
        let mut out = Vec::new();
        // struct ifaddrmsg: family, prefixlen, flags, scope, index (8 bytes).
        self.dump(RTM_GETADDR, &[0u8; 8], |ty, payload| {
            if ty != RTM_NEWADDR || payload.len() < 8 {
                return;
            }
            let prefix_len = payload[1];
            let index = u32::from_ne_bytes(payload[4..8].try_into().unwrap());
            let mut local = None;
            let mut address = None;
            for (t, v) in attrs(&payload[8..]) {
                match t {
                    IFA_LOCAL => local = ip_from(v),
                    IFA_ADDRESS => address = ip_from(v),
                    _ => {}
                }
            }
            if let Some(addr) = local.or(address) {
                out.push(Addr {
                    index,
                    addr,
                    prefix_len,
                });
            }
        })?;
        Ok(out)
    }

    /// Every neighbour entry (usable or not; see [`Neigh::mac`]).
    ///
    /// # Errors
    /// The kernel refused the dump or the socket failed.
    pub fn neighbours(&mut self) -> io::Result<Vec<Neigh>> {
        let mut out = Vec::new();
        // struct ndmsg: family, pad1, pad2, ifindex, state, flags, type (12 bytes).
        self.dump(RTM_GETNEIGH, &[0u8; 12], |ty, payload| {
            if let Some(n) = parse_neigh(ty, payload) {
                out.push(n);
            }
        })?;
        Ok(out)
    }

    /// Reads pending neighbour events without blocking (the socket must have
    /// been opened with `neigh_events`).
    ///
    /// # Errors
    /// The socket failed (not: nothing pending).
    pub fn recv_neigh_events(&mut self, out: &mut Vec<Neigh>) -> io::Result<()> {
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    // The kernel dropped events (ENOBUFS): the caller re-dumps.
                    _ if e.raw_os_error() == Some(libc::ENOBUFS) => Err(e),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            for (ty, _flags, payload) in messages(&self.buf[..n as usize]) {
                if let Some(n) = parse_neigh(ty, payload) {
                    out.push(n);
                }
            }
        }
    }

    /// Asks the kernel to resolve `addr` on interface `index` and keep it
    /// resolved: a managed neighbour entry (`ip neigh replace ADDR dev IF managed`).
    ///
    /// Minimum kernel: 5.16.
    ///
    /// # Errors
    /// The kernel refused the entry.
    pub fn add_managed_neighbour(&mut self, index: u32, addr: IpAddr) -> io::Result<()> {
        // State NUD_NONE: the kernel resolves.
        let mut msg = neighbour_message(index, addr);
        push_attr(&mut msg, NDA_FLAGS_EXT, &NTF_EXT_MANAGED.to_ne_bytes());
        self.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &msg)
    }

    /// Removes the neighbour entry of `addr` on interface `index`
    /// (`ip neigh del ADDR dev IF`): a managed entry that never resolved.
    ///
    /// # Errors
    /// The kernel refused (ENOENT if the entry is already gone).
    pub fn del_neighbour(&mut self, index: u32, addr: IpAddr) -> io::Result<()> {
        let msg = neighbour_message(index, addr);
        self.request(RTM_DELNEIGH, 0, &msg)
    }

    /// Removes an XDP program attached to interface `index` through netlink
    /// in `mode` (`XDP_FLAGS_DRV_MODE` or `XDP_FLAGS_SKB_MODE`). A program
    /// attached through a BPF link is not removed this way (the kernel says
    /// EBUSY): its owner still holds it.
    ///
    /// # Errors
    /// The kernel refused.
    pub fn detach_xdp(&mut self, index: u32, mode: u32) -> io::Result<()> {
        let mut msg = Vec::with_capacity(48);
        msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        msg.extend_from_slice(&(index as i32).to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // flags
        msg.extend_from_slice(&0u32.to_ne_bytes()); // change
        let mut nested = Vec::new();
        push_attr(&mut nested, IFLA_XDP_FD, &(-1i32).to_ne_bytes());
        push_attr(&mut nested, IFLA_XDP_FLAGS, &mode.to_ne_bytes());
        push_attr(&mut msg, IFLA_XDP | NLA_F_NESTED, &nested);
        self.request(RTM_SETLINK, 0, &msg)
    }

    fn send(&mut self, ty: u16, flags: u16, payload: &[u8]) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = Vec::with_capacity(NLMSG_HDRLEN + payload.len());
        msg.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        // SAFETY: `msg` is valid for reads of its length; the kernel is the
        // default destination of a netlink socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.seq)
    }

    /// Reads replies to `seq` until `done` says so, feeding each message to `f`.
    fn replies(
        &mut self,
        seq: u32,
        mut f: impl FnMut(u16, &[u8]) -> Option<io::Result<()>>,
    ) -> io::Result<()> {
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let buf = &self.buf[..n as usize];
            let mut off = 0;
            while off + NLMSG_HDRLEN <= buf.len() {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
                let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
                let mseq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
                if len < NLMSG_HDRLEN || off + len > buf.len() {
                    break;
                }
                let payload = &buf[off + NLMSG_HDRLEN..off + len];
                off += align4(len);
                if mseq != seq {
                    continue; // a multicast event or a stale reply
                }
                if let Some(r) = f(ty, payload) {
                    return r;
                }
            }
        }
    }

    fn dump(&mut self, ty: u16, header: &[u8], mut f: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let seq = self.send(ty, NLM_F_DUMP, header)?;
        self.replies(seq, |ty, payload| match ty {
            NLMSG_DONE => Some(Ok(())),
            NLMSG_ERROR => Some(ack(payload)),
            _ => {
                f(ty, payload);
                None
            }
        })
    }

    fn request(&mut self, ty: u16, flags: u16, payload: &[u8]) -> io::Result<()> {
        let seq = self.send(ty, flags | NLM_F_ACK, payload)?;
        self.replies(seq, |ty, payload| (ty == NLMSG_ERROR).then(|| ack(payload)))
    }
}

/// An NLMSG_ERROR payload: error 0 is an acknowledgement.
fn ack(payload: &[u8]) -> io::Result<()> {
    let code = payload
        .get(..4)
        .map_or(-libc::EPROTO, |b| i32::from_ne_bytes(b.try_into().unwrap()));
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(-code))
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The netlink messages in a datagram: (type, flags, payload).
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + NLMSG_HDRLEN > buf.len() {
            return None;
        }
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return None;
        }
        let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
        let flags = u16::from_ne_bytes(buf[off + 6..off + 8].try_into().unwrap());
        let payload = &buf[off + NLMSG_HDRLEN..off + len];
        off += align4(len);
        Some((ty, flags, payload))
    })
}

/// The route attributes in `buf`: (type without flag bits, value).
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + 4 > buf.len() {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes(buf[off..off + 2].try_into().unwrap()));
        let ty = u16::from_ne_bytes(buf[off + 2..off + 4].try_into().unwrap()) & 0x3fff;
        if len < 4 || off + len > buf.len() {
            return None;
        }
        let v = &buf[off + 4..off + len];
        off += align4(len);
        Some((ty, v))
    })
}

/// A neighbour message (`struct ndmsg`, state NUD_NONE, no flags) for
/// `addr` on interface `index`, with its `NDA_DST`.
fn neighbour_message(index: u32, addr: IpAddr) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    } as u8;
    msg.extend_from_slice(&[family, 0, 0, 0]);
    msg.extend_from_slice(&index.to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes()); // state
    msg.extend_from_slice(&[0, 0]); // flags, type
    push_attr(&mut msg, NDA_DST, &ip_bytes(addr));
    msg
}

fn push_attr(msg: &mut Vec<u8>, ty: u16, value: &[u8]) {
    msg.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(value);
    msg.resize(align4(msg.len()), 0);
}

fn ip_from(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?))),
        _ => None,
    }
}

fn ip_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn parse_neigh(ty: u16, payload: &[u8]) -> Option<Neigh> {
    if !(ty == RTM_NEWNEIGH || ty == RTM_DELNEIGH) || payload.len() < 12 {
        return None;
    }
    let index = u32::from_ne_bytes(payload[4..8].try_into().ok()?);
    let state = u16::from_ne_bytes(payload[8..10].try_into().ok()?);
    let mut addr = None;
    let mut mac = None;
    for (t, v) in attrs(&payload[12..]) {
        match t {
            NDA_DST => addr = ip_from(v),
            NDA_LLADDR if v.len() == 6 => mac = Some(EthernetAddress(v.try_into().ok()?)),
            _ => {}
        }
    }
    let usable = ty == RTM_NEWNEIGH && state & NUD_USABLE != 0;
    Some(Neigh {
        index,
        addr: addr?,
        mac: if usable { mac } else { None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let mut msg = Vec::new();
        push_attr(&mut msg, NDA_DST, &[10, 2, 0, 2]);
        push_attr(&mut msg, NDA_LLADDR, &[2, 0, 0, 0, 0, 1]);
        let got: Vec<_> = attrs(&msg).collect();
        assert_eq!(
            got,
            vec![
                (NDA_DST, &[10u8, 2, 0, 2][..]),
                (NDA_LLADDR, &[2u8, 0, 0, 0, 0, 1][..])
            ]
        );
    }

    #[test]
    fn neighbour_messages_parse_and_truncation_is_harmless() {
        let mut p = vec![libc::AF_INET as u8, 0, 0, 0];
        p.extend_from_slice(&7u32.to_ne_bytes());
        p.extend_from_slice(&0x02u16.to_ne_bytes()); // REACHABLE
        p.extend_from_slice(&[0, 1]);
        push_attr(&mut p, NDA_DST, &[10, 2, 0, 2]);
        push_attr(&mut p, NDA_LLADDR, &[2, 0, 0, 0, 0, 1]);
        let n = parse_neigh(RTM_NEWNEIGH, &p).unwrap();
        assert_eq!(n.index, 7);
        assert_eq!(n.addr, IpAddr::V4(Ipv4Addr::new(10, 2, 0, 2)));
        assert_eq!(n.mac, Some(EthernetAddress([2, 0, 0, 0, 0, 1])));
        assert_eq!(parse_neigh(RTM_DELNEIGH, &p).unwrap().mac, None);
        for cut in 0..p.len() {
            let _ = parse_neigh(RTM_NEWNEIGH, &p[..cut]);
        }
    }
}
