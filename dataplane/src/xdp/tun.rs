//! The door from the workers to the appliance's own kernel: a TUN device
//! (`IFF_TUN | IFF_NO_PI`, up) whose packets the kernel receives as if they
//! had arrived on an interface, so a packet to one of the appliance's
//! addresses that the host endpoint's policy allowed reaches its sockets
//! (see [`crate::host`]). The kernel's replies leave by its routes, through
//! the ports, as before; nothing is ever routed to the TUN device (it has no
//! address).
//!
//! Its reverse-path filter is off (0): the sources of what it carries are
//! reached through the ports, never through it, and Linux's check of a
//! device with no IPv4 address fails in both strict and loose mode
//! (`__fib_validate_source`). Linux takes the larger of `all` and the
//! device's value, so `net.ipv4.conf.all.rp_filter` must be 0 as well in
//! the appliance's namespace (the kernel's default; a warning says so
//! otherwise). No IPv6 link-local address is made for it
//! (`addr_gen_mode` 1): the appliance has no address there.
//!
//! The device lives as long as the [`Tun`] (it is not persistent): a crash
//! leaves nothing behind.

use std::{
    fs::OpenOptions,
    io,
    os::fd::{AsRawFd, OwnedFd},
    os::unix::fs::OpenOptionsExt,
};

use anyhow::{Context, Result, bail};

use crate::port::LocalStack;

/// The TUN device's name in the appliance's network namespace.
pub const TUN_NAME: &str = "cw-host";

/// `TUNSETIFF`, `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// A TUN device the workers write allowed packets to; shared by all of
/// them (each write is one whole packet).
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
}

impl Tun {
    /// Creates the device `name`, brings it up and relaxes its
    /// reverse-path filter.
    ///
    /// # Errors
    /// No `/dev/net/tun`, not permitted (CAP_NET_ADMIN), or the name is
    /// taken by another device (another causeway in this namespace?).
    pub fn create(name: &str) -> Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            bail!("`{name}` is not an interface name (1 to 15 characters)");
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .context(
                "opening /dev/net/tun for the host endpoint: the service's user must be able \
                 to read and write it (udev's default mode is 0666; under systemd, \
                 DeviceAllow=/dev/net/tun rw without PrivateDevices), and the tun module loaded",
            )?;
        let fd = OwnedFd::from(file);
        let mut req = ifreq(name);
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which lives on our
        // stack for the call; the descriptor is ours.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &raw mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error()).with_context(|| {
                format!("creating the TUN device {name} (is another causeway running in this namespace?)")
            });
        }
        // IPv6 may be off by default; the device must take IPv6 packets
        // (a system without IPv6 has neither file).
        let v6 = format!("/proc/sys/net/ipv6/conf/{name}");
        let _ = std::fs::write(format!("{v6}/addr_gen_mode"), "1");
        let _ = std::fs::write(format!("{v6}/disable_ipv6"), "0");
        set_up(name).with_context(|| format!("bringing {name} up"))?;
        // Written only when it is not 0 already (net.ipv4.conf.default), so
        // a service whose /proc/sys is read-only needs no write.
        let sysctl = format!("/proc/sys/net/ipv4/conf/{name}/rp_filter");
        if std::fs::read_to_string(&sysctl)
            .map(|v| v.trim().to_owned())
            .ok()
            .as_deref()
            != Some("0")
        {
            std::fs::write(&sysctl, "0").with_context(|| {
                format!(
                    "writing 0 to {sysctl} (or set net.ipv4.conf.default.rp_filter to 0 in the \
                     appliance's namespace)"
                )
            })?;
        }
        let all = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter");
        if all.as_deref().map(str::trim).is_ok_and(|v| v != "0") {
            tracing::warn!(
                device = name,
                "net.ipv4.conf.all.rp_filter is not 0 in the appliance's namespace: the kernel \
                 drops the IPv4 packets the host endpoint's policy allows; set it to 0 (the \
                 dataplane does its own reverse-path check on the ports)"
            );
        }
        Ok(Self {
            fd,
            name: name.to_owned(),
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes one IP packet: the kernel receives it on the device.
    ///
    /// # Errors
    /// The device's queue is full (`EAGAIN`), or the packet is refused.
    pub fn write(&self, packet: &[u8]) -> io::Result<()> {
        // SAFETY: writes `packet.len()` bytes from a live slice to a
        // descriptor we own.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl LocalStack for std::sync::Arc<Tun> {
    fn deliver(&mut self, packet: &[u8]) -> io::Result<()> {
        self.write(packet)
    }
}

/// An `ifreq` naming `name` (at most 15 bytes, checked by the caller).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req
}

/// Sets IFF_UP on interface `name`.
fn set_up(name: &str) -> io::Result<()> {
    // SAFETY: socket(2) takes no pointers; a non-negative result is a new
    // descriptor that we own.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `sock` is a fresh descriptor owned by nobody else.
    let sock: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(sock) };
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS read and write one ifreq on our
    // stack; the flags member is the one they use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &raw mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &raw mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
