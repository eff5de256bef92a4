//! The generator's frames: Ethernet / IPv4 / UDP with a 16-byte payload
//! header, built into a caller's buffer (sans-IO: no socket, no clock).
//!
//! Payload header, big-endian: magic (`u32`, [`MAGIC_DATA`] or
//! [`MAGIC_PROBE`]), sequence number (`u32`), then for probes the
//! CLOCK_MONOTONIC nanoseconds at which the frame was written (`u64`, zero
//! otherwise). The rest of the payload is zeros. Sizes are frame sizes as
//! RFC 2544 counts them, Ethernet header to FCS: 64 to 1518 bytes; the FCS
//! itself is the NIC's (here, nobody's), so the buffer gets `size - 4`.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

/// The first payload word of an ordinary frame.
pub(crate) const MAGIC_DATA: u32 = 0xca05_e0a0;
/// The first payload word of a timestamped probe.
pub(crate) const MAGIC_PROBE: u32 = 0xca05_e0a1;
/// The payload header's length.
pub(crate) const PAYLOAD_HEADER: usize = 16;
/// The smallest frame size (with FCS).
pub(crate) const MIN_SIZE: usize = 64;
/// The largest frame size (with FCS): a 1500-byte IP packet.
pub(crate) const MAX_SIZE: usize = 1518;
/// The FCS, counted in a frame's size but not built.
const FCS: usize = 4;
const ETH: usize = 14;
const IP: usize = 20;
const UDP: usize = 8;
/// Where the payload starts.
const PAYLOAD: usize = ETH + IP + UDP;

/// Addresses and ports shared by every frame of a run.
#[derive(Debug, Clone)]
pub(crate) struct FrameSpec {
    /// Source MAC (island A's `eth0`).
    pub(crate) src_mac: [u8; 6],
    /// Destination MAC (the gateway's `a0`).
    pub(crate) dst_mac: [u8; 6],
    /// Source address.
    pub(crate) src_ip: Ipv4Addr,
    /// Destination address.
    pub(crate) dst_ip: Ipv4Addr,
    /// The UDP destination port (the sink's).
    pub(crate) dst_port: u16,
    /// Flow `i` has source port `first_src_port + i`.
    pub(crate) first_src_port: u16,
}

/// What one payload header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The frame's sequence number (wraps at 2^32).
    pub(crate) seq: u32,
    /// For probes, the monotonic nanoseconds at transmission.
    pub(crate) sent_ns: Option<u64>,
}

impl FrameSpec {
    /// Writes a frame of `size` bytes (with FCS, [`MIN_SIZE`]..=[`MAX_SIZE`])
    /// of flow `flow` into `buf` and returns its length (`size - 4`).
    ///
    /// # Panics
    /// If `size` is out of range or `buf` is too short.
    pub(crate) fn write(&self, buf: &mut [u8], size: usize, flow: u16, stamp: Stamp) -> usize {
        assert!((MIN_SIZE..=MAX_SIZE).contains(&size), "frame size {size}");
        let len = size - FCS;
        let frame = &mut buf[..len];
        // Ethernet.
        frame[0..6].copy_from_slice(&self.dst_mac);
        frame[6..12].copy_from_slice(&self.src_mac);
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        // IPv4: no options, DF, TTL 64, UDP.
        let ip_len = (len - ETH) as u16;
        let ip = &mut frame[ETH..ETH + IP];
        ip[0] = 0x45;
        ip[1] = 0;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[4..6].copy_from_slice(&(stamp.seq as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[10..12].copy_from_slice(&[0, 0]);
        ip[12..16].copy_from_slice(&self.src_ip.octets());
        ip[16..20].copy_from_slice(&self.dst_ip.octets());
        let sum = fold(sum16(ip));
        ip[10..12].copy_from_slice(&(!sum).to_be_bytes());
        // Payload header, then zeros.
        let (magic, sent) = match stamp.sent_ns {
            Some(ns) => (MAGIC_PROBE, ns),
            None => (MAGIC_DATA, 0),
        };
        let payload = &mut frame[PAYLOAD..];
        payload[0..4].copy_from_slice(&magic.to_be_bytes());
        payload[4..8].copy_from_slice(&stamp.seq.to_be_bytes());
        payload[8..16].copy_from_slice(&sent.to_be_bytes());
        payload[PAYLOAD_HEADER..].fill(0);
        // UDP, checksummed over the pseudo-header (RFC 768).
        let udp_len = (len - ETH - IP) as u16;
        let sport = self.first_src_port.wrapping_add(flow);
        let udp = &mut frame[ETH + IP..PAYLOAD];
        udp[0..2].copy_from_slice(&sport.to_be_bytes());
        udp[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        udp[6..8].copy_from_slice(&[0, 0]);
        let pseudo =
            sum16(&self.src_ip.octets()) + sum16(&self.dst_ip.octets()) + 17 + u32::from(udp_len);
        // The zeros after the payload header add nothing to the sum.
        let sum = fold(
            pseudo + sum16(&frame[ETH + IP..PAYLOAD]) + sum16(&frame[PAYLOAD..][..PAYLOAD_HEADER]),
        );
        // RFC 768: a computed zero is sent as all ones.
        let check = match !sum {
            0 => 0xffff,
            c => c,
        };
        frame[ETH + IP + 6..ETH + IP + 8].copy_from_slice(&check.to_be_bytes());
        len
    }
}

/// Reads the payload header of a received UDP payload; `None` if it is not
/// one of ours.
pub(crate) fn read_stamp(payload: &[u8]) -> Option<Stamp> {
    let word = |r: std::ops::Range<usize>| payload.get(r);
    let magic = u32::from_be_bytes(word(0..4)?.try_into().ok()?);
    let seq = u32::from_be_bytes(word(4..8)?.try_into().ok()?);
    let sent = u64::from_be_bytes(word(8..16)?.try_into().ok()?);
    match magic {
        MAGIC_DATA => Some(Stamp { seq, sent_ns: None }),
        MAGIC_PROBE => Some(Stamp {
            seq,
            sent_ns: Some(sent),
        }),
        _ => None,
    }
}

/// The one's-complement sum of `bytes` as 16-bit big-endian words, unfolded
/// (an odd last byte is padded with zero).
fn sum16(bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    let mut sum: u32 = chunks
        .by_ref()
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Folds the carries of a one's-complement sum into 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use causeway_dataplane::wire::{ipv4, udp};

    use super::*;

    fn spec() -> FrameSpec {
        FrameSpec {
            src_mac: [2, 0, 0, 0, 0, 0xa],
            dst_mac: [2, 0, 0, 0, 0, 0xb],
            src_ip: Ipv4Addr::new(10, 1, 0, 2),
            dst_ip: Ipv4Addr::new(10, 2, 0, 2),
            dst_port: 9,
            first_src_port: 1024,
        }
    }

    /// Every size, flow and stamp gives a frame the dataplane's own parsers
    /// accept, with both checksums right, even over a buffer of junk.
    #[test]
    fn frames_parse_with_correct_checksums_at_every_size() {
        let spec = spec();
        let mut buf = vec![0xa5u8; 2048];
        for size in (MIN_SIZE..=MAX_SIZE).step_by(7).chain([MAX_SIZE]) {
            for (flow, stamp) in [
                (
                    0,
                    Stamp {
                        seq: 0,
                        sent_ns: None,
                    },
                ),
                (
                    513,
                    Stamp {
                        seq: u32::MAX,
                        sent_ns: Some(u64::MAX - 3),
                    },
                ),
                (
                    65535,
                    Stamp {
                        seq: 77,
                        sent_ns: Some(1),
                    },
                ),
            ] {
                buf.fill(0xa5);
                let len = spec.write(&mut buf, size, flow, stamp);
                assert_eq!(len, size - 4);
                let ip = ipv4::Packet::new_checked(&buf[14..len]).expect("IPv4");
                assert!(ip.verify_checksum(), "IP checksum at size {size}");
                assert_eq!(usize::from(ip.total_len()), len - 14);
                assert_eq!(ip.dst_addr(), spec.dst_ip);
                let u = udp::Packet::new_checked(ip.payload()).expect("UDP");
                assert!(
                    u.verify_checksum(IpAddr::V4(spec.src_ip), IpAddr::V4(spec.dst_ip)),
                    "UDP checksum at size {size} flow {flow}"
                );
                assert_eq!(u.src_port(), 1024u16.wrapping_add(flow));
                assert_eq!(u.dst_port(), 9);
                assert_eq!(read_stamp(u.payload()), Some(stamp));
                assert!(u.payload()[PAYLOAD_HEADER..].iter().all(|&b| b == 0));
            }
        }
    }

    #[test]
    fn foreign_payloads_are_not_stamps() {
        assert_eq!(read_stamp(b"hello, world, this is long"), None);
        assert_eq!(read_stamp(&MAGIC_DATA.to_be_bytes()), None);
    }
}
