//! IPv6 headers (RFC 8200 section 3) and the walk over extension headers to
//! the upper layer (RFC 8200 section 4).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Source Address (128 bits)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Destination Address (128 bits)           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv6Addr;

use super::{Error, IpProtocol, read_u16, read_u32, write_u16, write_u32};

mod field {
    use crate::wire::Field;

    pub(super) const VER_TC_FLOW: Field = 0..4;
    pub(super) const LENGTH: Field = 4..6;
    pub(super) const NXT_HDR: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC_ADDR: Field = 8..24;
    pub(super) const DST_ADDR: Field = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The most extension headers [`upper_layer`] walks before it gives up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Next-header values of the extension headers [`upper_layer`] walks
/// (IANA "IPv6 Extension Header Types").
mod ext {
    pub(super) const HOP_BY_HOP: u8 = 0;
    pub(super) const ROUTING: u8 = 43;
    pub(super) const FRAGMENT: u8 = 44;
    pub(super) const DESTINATION_OPTIONS: u8 = 60;
    /// Length of a Fragment header (RFC 8200 section 4.5).
    pub(super) const FRAGMENT_LEN: usize = 8;
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it would
    /// not pass [`check_len`](Self::check_len).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    ///
    /// After this returns `Ok`, no accessor of the packet panics, and
    /// [`payload`](Self::payload) is the `payload_len` bytes the header
    /// claims (bytes past them, such as Ethernet padding, are left out).
    ///
    /// # Errors
    ///
    /// As [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version and that the payload length fits the buffer.
    ///
    /// A payload length of zero is an empty payload: jumbograms (RFC 2675)
    /// are not supported.
    ///
    /// # Errors
    ///
    /// - [`Error::Truncated`] if the buffer is shorter than [`HEADER_LEN`]
    ///   plus the payload length;
    /// - [`Error::Malformed`] if the version is not 6.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed("IPv6 version is not 6"));
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW.start)
    }

    /// The version field (6 for a checked packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }

    /// The traffic class: DSCP (six bits) and ECN (two bits).
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// The payload length field: extension headers and upper layer, in bytes.
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// The next-header field: the first extension header or the upper layer.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr_bytes(&self.buffer.as_ref()[field::SRC_ADDR]))
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr_bytes(&self.buffer.as_ref()[field::DST_ADDR]))
    }

    /// The payload: [`payload_len`](Self::payload_len) bytes after the fixed
    /// header, extension headers included.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

fn addr_bytes(b: &[u8]) -> [u8; 16] {
    let mut addr = [0; 16];
    addr.copy_from_slice(b);
    addr
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_ver_tc_flow(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::VER_TC_FLOW.start, value);
    }

    /// Sets the version field.
    pub fn set_version(&mut self, version: u8) {
        let word = self.ver_tc_flow() & 0x0fff_ffff;
        self.set_ver_tc_flow(word | u32::from(version) << 28);
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let word = self.ver_tc_flow() & 0xf00f_ffff;
        self.set_ver_tc_flow(word | u32::from(tc) << 20);
    }

    /// Sets the flow label (the low 20 bits of `label`).
    pub fn set_flow_label(&mut self, label: u32) {
        let word = self.ver_tc_flow() & 0xfff0_0000;
        self.set_ver_tc_flow(word | (label & 0x000f_ffff));
    }

    /// Sets the payload length field.
    pub fn set_payload_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets the next-header field.
    pub fn set_next_header(&mut self, proto: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = proto.into();
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload, mutably: [`payload_len`](Packet::payload_len) bytes after
    /// the fixed header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of a fixed IPv6 header; extension headers are payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// The next-header field.
    pub next_header: IpProtocol,
    /// Length of the payload in bytes, extension headers included.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Repr {
    /// Reads the fixed header of `packet`.
    ///
    /// # Errors
    ///
    /// As [`Packet::check_len`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        packet.check_len()?;
        Ok(Self {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of the whole packet: header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the fixed header (traffic class 0, flow label 0) into the start
    /// of `packet`.
    ///
    /// # Panics
    ///
    /// If the packet's buffer is shorter than [`HEADER_LEN`], or if the
    /// payload length does not fit 16 bits (jumbograms are not supported).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let payload_len =
            u16::try_from(self.payload_len).expect("IPv6 payload longer than 65535 bytes");
        packet.set_ver_tc_flow(6 << 28);
        packet.set_payload_len(payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

/// Where the upper-layer header of an IPv6 packet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpperLayer {
    /// The protocol after the last extension header walked. For a non-first
    /// fragment, the next header of the Fragment header.
    pub protocol: IpProtocol,
    /// Offset of that protocol's header (or, for a non-first fragment, of the
    /// fragment data) from the start of the IPv6 header; at most
    /// `HEADER_LEN + payload_len`.
    pub offset: usize,
    /// A Fragment header was seen.
    pub fragment: bool,
    /// A Fragment header with a non-zero offset was seen: what follows it is
    /// the middle of a datagram, not an upper-layer header.
    pub non_first_fragment: bool,
}

/// Walks the extension headers of the IPv6 packet `packet` (starting at its
/// fixed header) to the upper layer.
///
/// Hop-by-Hop Options (0), Routing (43), Destination Options (60) and
/// Fragment (44) headers are skipped (RFC 8200 sections 4.3 to 4.6); any
/// other next-header value, including No Next Header (59), AH and ESP, is
/// returned as the upper layer. The walk stops at a Fragment header with a
/// non-zero offset. Lengths are bounded by the payload length, not the
/// buffer.
///
/// # Errors
///
/// - as [`Packet::check_len`];
/// - [`Error::Truncated`] if an extension header runs past the payload;
/// - [`Error::Malformed`] for a Hop-by-Hop header that does not directly
///   follow the fixed header (RFC 8200 section 4.1), or for more than
///   [`MAX_EXTENSION_HEADERS`] extension headers.
pub fn upper_layer(packet: &[u8]) -> Result<UpperLayer, Error> {
    let ip = Packet::new_checked(packet)?;
    let end = HEADER_LEN + usize::from(ip.payload_len());
    let mut next = u8::from(ip.next_header());
    let mut offset = HEADER_LEN;
    let mut fragment = false;
    for seen in 0..=MAX_EXTENSION_HEADERS {
        let is_extension = matches!(
            next,
            ext::HOP_BY_HOP | ext::ROUTING | ext::DESTINATION_OPTIONS | ext::FRAGMENT
        );
        if !is_extension {
            break;
        }
        if seen == MAX_EXTENSION_HEADERS {
            return Err(Error::Malformed("more than 8 IPv6 extension headers"));
        }
        if next == ext::HOP_BY_HOP && seen != 0 {
            return Err(Error::Malformed("IPv6 Hop-by-Hop header not first"));
        }
        // Every extension header starts with Next Header; all but Fragment
        // follow with Hdr Ext Len, in 8-octet units not counting the first 8.
        let header = packet.get(offset..end).ok_or(Error::Truncated)?;
        if header.len() < 2 {
            return Err(Error::Truncated);
        }
        let len = if next == ext::FRAGMENT {
            ext::FRAGMENT_LEN
        } else {
            (usize::from(header[1]) + 1) * 8
        };
        if header.len() < len {
            return Err(Error::Truncated);
        }
        if next == ext::FRAGMENT {
            fragment = true;
            // RFC 8200 section 4.5: Fragment Offset is the high 13 bits of
            // bytes 2 and 3, in 8-octet units.
            let frag_offset = read_u16(header, 2) >> 3;
            if frag_offset != 0 {
                return Ok(UpperLayer {
                    protocol: IpProtocol::from(header[0]),
                    offset: offset + len,
                    fragment,
                    non_first_fragment: true,
                });
            }
        }
        next = header[0];
        offset += len;
    }
    Ok(UpperLayer {
        protocol: IpProtocol::from(next),
        offset,
        fragment,
        non_first_fragment: false,
    })
}

#[cfg(test)]
mod tests;
