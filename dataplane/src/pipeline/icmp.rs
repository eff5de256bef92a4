//! ICMP errors built in place: the frame that caused the error becomes the
//! error, so no buffer is allocated. The layer-2 header (tags included) stays
//! and is turned around; the offending IP packet is moved back to make room
//! for the new IP and ICMP headers and quoted as the RFCs ask.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::{EthernetAddress, IpProtocol, checksum};

/// RFC 1812 §4.3.2.3: quote as much as fits in 576 bytes.
const V4_MAX_DATAGRAM: usize = 576;
/// RFC 4443 §2.4 (c): as much as fits in the minimum IPv6 MTU.
const V6_MIN_MTU: usize = 1280;

/// Turns the IPv4 packet at `buf[off..len]` into an ICMP time exceeded
/// (type 11, code 0) from `src`, sent back to where the packet came from.
/// Returns the new frame length, or `None` when the buffer has no room.
pub(super) fn time_exceeded_v4(
    buf: &mut [u8],
    len: usize,
    off: usize,
    mac: EthernetAddress,
    src: Ipv4Addr,
) -> Option<usize> {
    const HDRS: usize = 20 + 8;
    let ip = &buf[off..len];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let dst: [u8; 4] = ip[12..16].try_into().ok()?;
    let room = buf.len().checked_sub(off + HDRS)?;
    // At least the offending header and 8 bytes of its payload (RFC 792).
    let quote = total.min(V4_MAX_DATAGRAM - HDRS).min(room);
    if quote < (header_len + 8).min(total) {
        return None;
    }
    buf.copy_within(off..off + quote, off + HDRS);
    turn_around_l2(buf, mac);

    let ip_len = HDRS + quote;
    let h = &mut buf[off..off + 20];
    h[..12].copy_from_slice(&[
        0x45,
        0xc0,
        0,
        0,
        0,
        0,
        0,
        0,
        64,
        u8::from(IpProtocol::Icmp),
        0,
        0,
    ]);
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst);
    h[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    let sum = !checksum::data(h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());

    let icmp = &mut buf[off + 20..off + ip_len];
    icmp[..8].copy_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
    let sum = !checksum::data(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(off + ip_len)
}

/// Turns the IPv6 packet at `buf[off..len]` into an ICMPv6 time exceeded
/// (type 3, code 0: hop limit exceeded in transit, RFC 4443 §3.3) from `src`.
pub(super) fn time_exceeded_v6(
    buf: &mut [u8],
    len: usize,
    off: usize,
    mac: EthernetAddress,
    src: Ipv6Addr,
) -> Option<usize> {
    const HDRS: usize = 40 + 8;
    let ip = &buf[off..len];
    let total = (40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]))).min(ip.len());
    let dst: [u8; 16] = ip[8..24].try_into().ok()?;
    let room = buf.len().checked_sub(off + HDRS)?;
    let quote = total.min(V6_MIN_MTU - HDRS).min(room);
    if quote < 48.min(total) {
        return None;
    }
    buf.copy_within(off..off + quote, off + HDRS);
    turn_around_l2(buf, mac);

    let payload_len = 8 + quote;
    let h = &mut buf[off..off + 40];
    h[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, u8::from(IpProtocol::Icmpv6), 64]);
    h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst);

    let icmp = &mut buf[off + 40..off + 40 + payload_len];
    icmp[..8].copy_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
    let pseudo = checksum::pseudo_header_v6(
        src,
        Ipv6Addr::from(dst),
        IpProtocol::Icmpv6,
        payload_len as u32,
    );
    let sum = !checksum::combine(&[pseudo, checksum::data(icmp)]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(off + 40 + payload_len)
}

/// Sends the frame back where it came from: its source MAC becomes the
/// destination, the port's MAC the source.
fn turn_around_l2(buf: &mut [u8], mac: EthernetAddress) {
    let (dst, rest) = buf.split_at_mut(6);
    dst.copy_from_slice(&rest[..6]);
    rest[..6].copy_from_slice(&mac.0);
}
