//! Zero-copy packet views, one module per protocol, in the shape of smoltcp's
//! `src/wire`.
//!
//! Each protocol module has:
//!
//! - a view (`Packet<T>`, or [`EthernetFrame`] for Ethernet) over any
//!   `T: AsRef<[u8]>`, with getters, and setters where `T: AsMut<[u8]>`;
//! - `new_unchecked` for bytes that are known good (ones we built) and
//!   `new_checked` for untrusted input. **Once `new_checked` (or `check_len`)
//!   has succeeded, no accessor of that view panics**; accessors of a view
//!   built with `new_unchecked` over bytes that would not pass `check_len` may
//!   panic;
//! - a `Repr`, the high-level meaning of a header, with `parse` and `emit`.
//!
//! Wire numbers this code does not know become `Unknown(n)` variants rather
//! than errors, so that policy (drop, pass, count) is decided by the caller.
//!
//! [`parse_frame`] is the one-call parser of a whole Ethernet frame used by the
//! fuzz target and the tests.

#![forbid(unsafe_code)]

use core::fmt;

pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
mod parse;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod testdata;
#[cfg(test)]
mod tests;

pub use ethernet::{Frame as EthernetFrame, L2Info, Repr as EthernetRepr, l2_info};
pub use icmpv4::{Message as Icmpv4Message, Packet as Icmpv4Packet, Repr as Icmpv4Repr};
pub use icmpv6::{Message as Icmpv6Message, Packet as Icmpv6Packet, Repr as Icmpv6Repr};
pub use ipv4::{Packet as Ipv4Packet, Repr as Ipv4Repr};
pub use ipv6::{Packet as Ipv6Packet, Repr as Ipv6Repr, UpperLayer, upper_layer};
pub use parse::{L3, L4, Parsed, parse_frame};
pub use tcp::{Packet as TcpPacket, Repr as TcpRepr};
pub use udp::{Packet as UdpPacket, Repr as UdpRepr};

/// A byte range of a fixed-size header field.
type Field = core::ops::Range<usize>;
/// The bytes from an offset to the end of the buffer.
type Rest = core::ops::RangeFrom<usize>;

/// Why bytes could not be read as a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before the header or the length a header field claims.
    #[error("truncated packet")]
    Truncated,
    /// A header field holds a value the protocol forbids.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The checksum does not match the bytes.
    #[error("bad checksum")]
    Checksum,
    /// A valid packet that this `Repr` cannot describe (an IPv4 fragment, an
    /// ICMP message type without a `Repr` variant); use the view instead.
    #[error("not representable: {0}")]
    Unsupported(&'static str),
}

macro_rules! wire_enum {
    (
        $(#[$attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vattr:meta])* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vattr])* $variant, )+
            /// A value this code has no name for.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => Self::$variant, )+
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum! {
    /// The EtherType of an Ethernet frame or of a VLAN tag's payload (IEEE 802
    /// numbers).
    ///
    /// `EtherType::Unknown(0x0800)` is never produced by `From<u16>`; build
    /// values with `EtherType::from` to keep them canonical.
    pub enum EtherType(u16) {
        /// IPv4, RFC 894.
        Ipv4 = 0x0800,
        /// ARP, RFC 826.
        Arp = 0x0806,
        /// IPv6, RFC 2464.
        Ipv6 = 0x86dd,
        /// An IEEE 802.1Q VLAN tag (C-tag).
        Vlan = 0x8100,
        /// An IEEE 802.1ad service tag (S-tag, "QinQ").
        QinQ = 0x88a8,
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ipv4 => f.write_str("IPv4"),
            Self::Arp => f.write_str("ARP"),
            Self::Ipv6 => f.write_str("IPv6"),
            Self::Vlan => f.write_str("802.1Q"),
            Self::QinQ => f.write_str("802.1ad"),
            Self::Unknown(n) => write!(f, "0x{n:04x}"),
        }
    }
}

wire_enum! {
    /// An IP protocol number (IPv4 "Protocol", IPv6 "Next Header"), from the
    /// IANA registry.
    pub enum IpProtocol(u8) {
        /// IPv6 Hop-by-Hop Options, RFC 8200 section 4.3.
        HopByHop = 0,
        /// ICMP for IPv4, RFC 792.
        Icmp = 1,
        /// TCP, RFC 9293.
        Tcp = 6,
        /// UDP, RFC 768.
        Udp = 17,
        /// ICMP for IPv6, RFC 4443.
        Icmpv6 = 58,
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HopByHop => f.write_str("Hop-by-Hop"),
            Self::Icmp => f.write_str("ICMP"),
            Self::Tcp => f.write_str("TCP"),
            Self::Udp => f.write_str("UDP"),
            Self::Icmpv6 => f.write_str("ICMPv6"),
            Self::Unknown(n) => write!(f, "{n}"),
        }
    }
}

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Self = Self([0xff; 6]);

    /// The address in `bytes`.
    ///
    /// # Panics
    ///
    /// If `bytes` is not exactly six bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut addr = [0; 6];
        addr.copy_from_slice(bytes);
        Self(addr)
    }

    /// The six bytes of the address.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the I/G bit (the least significant bit of the first octet) is
    /// set; broadcast is a multicast address too.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is an individual (unicast) address.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Whether the U/L bit is set (a locally administered address).
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl From<[u8; 6]> for EthernetAddress {
    fn from(bytes: [u8; 6]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Reads a big-endian `u16` at `at`. Panics if out of bounds; callers check.
#[inline]
fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Writes a big-endian `u16` at `at`. Panics if out of bounds; callers check.
#[inline]
fn write_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Reads a big-endian `u32` at `at`. Panics if out of bounds; callers check.
#[inline]
fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Writes a big-endian `u32` at `at`. Panics if out of bounds; callers check.
#[inline]
fn write_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}
