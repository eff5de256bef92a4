//! Ethernet II frames (IEEE 802.3 clause 3.2.6) and 802.1Q / 802.1ad VLAN
//! tags.
//!
//! ```text
//!  0                   6                  12     14
//! +-------------------+-------------------+------+---------
//! | destination       | source            | type | payload
//! +-------------------+-------------------+------+---------
//! ```
//!
//! A VLAN tag (IEEE 802.1Q-2018 section 9.6) sits where the EtherType was:
//! a 2-byte TPID (0x8100, or 0x88a8 for an 802.1ad service tag) then a
//! 2-byte TCI (3 bits PCP, 1 bit DEI, 12 bits VLAN ID), then the EtherType of
//! what follows.

use super::{Error, EtherType, EthernetAddress, read_u16, write_u16};

mod field {
    use crate::wire::{Field, Rest};

    pub(super) const DESTINATION: Field = 0..6;
    pub(super) const SOURCE: Field = 6..12;
    pub(super) const ETHERTYPE: Field = 12..14;
    pub(super) const PAYLOAD: Rest = 14..;

    /// Length of one VLAN tag: TPID and TCI.
    pub(super) const VLAN_TAG_LEN: usize = 4;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// The most VLAN tags [`l2_info`] accepts (an 802.1ad S-tag and a C-tag).
pub const MAX_VLAN_TAGS: usize = 2;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is
    /// shorter than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    ///
    /// After this returns `Ok`, no accessor of the frame panics.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if `buffer` is shorter than [`HEADER_LEN`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds a whole Ethernet header.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if the buffer is shorter than [`HEADER_LEN`].
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The length of a frame carrying `payload_len` bytes, without tags.
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// The destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// The source address.
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The outer EtherType: [`EtherType::Vlan`] or [`EtherType::QinQ`] for a
    /// tagged frame (use [`l2_info`] for the innermost one).
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), field::ETHERTYPE.start))
    }

    /// The bytes after the outer EtherType (VLAN tags included, if any).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the outer EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        write_u16(
            self.buffer.as_mut(),
            field::ETHERTYPE.start,
            ethertype.into(),
        );
    }

    /// The bytes after the outer EtherType, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of an untagged Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// EtherType of the payload.
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads the header of `frame`.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if the frame is shorter than [`HEADER_LEN`].
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Self, Error> {
        frame.check_len()?;
        Ok(Self {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of a frame with this header and `payload_len` bytes.
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Writes this header into the first [`HEADER_LEN`] bytes of `frame`.
    ///
    /// # Panics
    ///
    /// If the frame is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

/// Where the network layer of a frame starts, past up to [`MAX_VLAN_TAGS`]
/// VLAN tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L2Info {
    /// The innermost EtherType: the protocol at `l3_offset`.
    pub ethertype: EtherType,
    /// Offset of the network-layer header from the start of the frame.
    pub l3_offset: usize,
    /// The VLAN IDs (12 bits; 0 for a priority-only tag), outer tag first;
    /// `[None, None]` for an untagged frame.
    pub vlans: [Option<u16>; 2],
}

impl L2Info {
    /// How many VLAN tags the frame carries.
    pub fn vlan_count(&self) -> usize {
        self.vlans.iter().flatten().count()
    }
}

/// Walks the Ethernet header and up to two VLAN tags (TPID 0x8100 or 0x88a8,
/// in either order) of `frame`.
///
/// # Errors
///
/// - [`Error::Truncated`] if `frame` ends inside the Ethernet header or a
///   VLAN tag (the returned `l3_offset` is always `<= frame.len()`);
/// - [`Error::Malformed`] for a third VLAN tag.
pub fn l2_info(frame: &[u8]) -> Result<L2Info, Error> {
    let eth = Frame::new_checked(frame)?;
    let mut ethertype = eth.ethertype();
    let mut offset = HEADER_LEN;
    let mut vlans = [None; MAX_VLAN_TAGS];
    let mut tags = 0;
    while matches!(ethertype, EtherType::Vlan | EtherType::QinQ) {
        if tags == MAX_VLAN_TAGS {
            return Err(Error::Malformed("more than two VLAN tags"));
        }
        // `offset` points just past the TPID; the TCI and the next EtherType
        // follow.
        let tag = frame
            .get(offset..offset + field::VLAN_TAG_LEN)
            .ok_or(Error::Truncated)?;
        vlans[tags] = Some(read_u16(tag, 0) & 0x0fff);
        ethertype = EtherType::from(read_u16(tag, 2));
        offset += field::VLAN_TAG_LEN;
        tags += 1;
    }
    Ok(L2Info {
        ethertype,
        l3_offset: offset,
        vlans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata;

    #[test]
    fn parse_arp_request() {
        let frame = Frame::new_checked(&testdata::ARP_REQUEST[..]).unwrap();
        assert_eq!(frame.dst_addr(), EthernetAddress::BROADCAST);
        assert!(frame.dst_addr().is_broadcast());
        assert!(frame.dst_addr().is_multicast());
        assert_eq!(frame.src_addr().to_string(), "02:00:5e:10:00:01");
        assert!(frame.src_addr().is_unicast());
        assert!(frame.src_addr().is_local());
        assert_eq!(frame.ethertype(), EtherType::Arp);
        assert_eq!(frame.payload().len(), 28);
        let repr = Repr::parse(&frame).unwrap();
        assert_eq!(repr.ethertype, EtherType::Arp);
    }

    #[test]
    fn ipv6_multicast_destination() {
        let frame = Frame::new_checked(&testdata::IPV6_ICMP_NEIGHBOUR_SOLICIT[..]).unwrap();
        assert_eq!(frame.dst_addr().to_string(), "33:33:ff:00:00:02");
        assert!(frame.dst_addr().is_multicast());
        assert!(!frame.dst_addr().is_broadcast());
    }

    #[test]
    fn untagged_l2_info() {
        let info = l2_info(&testdata::IPV4_TCP_SYN).unwrap();
        assert_eq!(
            info,
            L2Info {
                ethertype: EtherType::Ipv4,
                l3_offset: 14,
                vlans: [None, None],
            }
        );
        assert_eq!(info.vlan_count(), 0);
        // Only the Ethernet header is needed.
        assert_eq!(
            l2_info(&testdata::IPV4_TCP_SYN[..14]).unwrap().l3_offset,
            14
        );
    }

    #[test]
    fn vlan_tagged_l2_info() {
        let info = l2_info(&testdata::VLAN_IPV4_ICMP_ECHO_REQUEST).unwrap();
        assert_eq!(info.ethertype, EtherType::Ipv4);
        assert_eq!(info.l3_offset, 18);
        assert_eq!(info.vlans, [Some(100), None]);
        let frame = Frame::new_checked(&testdata::VLAN_IPV4_ICMP_ECHO_REQUEST[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Vlan);
    }

    #[test]
    fn qinq_l2_info() {
        let info = l2_info(&testdata::QINQ_IPV4_ICMP_ECHO_REQUEST).unwrap();
        assert_eq!(info.ethertype, EtherType::Ipv4);
        assert_eq!(info.l3_offset, 22);
        assert_eq!(info.vlans, [Some(200), Some(10)]);
        assert_eq!(info.vlan_count(), 2);
    }

    #[test]
    fn vlan_id_masks_pcp_and_dei() {
        let mut frame = testdata::VLAN_IPV4_ICMP_ECHO_REQUEST;
        frame[14] = 0xf0; // PCP 7, DEI 1, VID high nibble 0
        assert_eq!(l2_info(&frame).unwrap().vlans, [Some(100), None]);
    }

    #[test]
    fn three_tags_are_malformed() {
        let qinq = &testdata::QINQ_IPV4_ICMP_ECHO_REQUEST;
        let mut frame = qinq[..12].to_vec();
        frame.extend_from_slice(&[0x88, 0xa8, 0x00, 0xc8, 0x81, 0x00, 0x00, 0x0a]);
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        frame.extend_from_slice(&qinq[20..]);
        assert_eq!(
            l2_info(&frame),
            Err(Error::Malformed("more than two VLAN tags"))
        );
        // Even when the frame ends right after the third TPID.
        assert!(matches!(l2_info(&frame[..22]), Err(Error::Malformed(_))));
    }

    #[test]
    fn truncated_prefixes() {
        let frame = &testdata::QINQ_IPV4_ICMP_ECHO_REQUEST;
        for len in 0..HEADER_LEN {
            assert_eq!(Frame::new_checked(&frame[..len]), Err(Error::Truncated));
        }
        for len in 0..22 {
            assert_eq!(l2_info(&frame[..len]), Err(Error::Truncated), "len {len}");
        }
        assert_eq!(l2_info(&frame[..22]).unwrap().l3_offset, 22);
    }

    #[test]
    fn emit_over_junk() {
        let repr = Repr {
            src_addr: EthernetAddress([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]),
            dst_addr: EthernetAddress([0x02, 0x00, 0x5e, 0x10, 0x00, 0x02]),
            ethertype: EtherType::Ipv4,
        };
        let mut buf = [0xa5; HEADER_LEN];
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        repr.emit(&mut frame);
        assert_eq!(buf[..], testdata::IPV4_TCP_SYN[..HEADER_LEN]);
        assert_eq!(repr.buffer_len(60), 74);
        assert_eq!(repr.header_len(), HEADER_LEN);
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = testdata::ARP_REQUEST;
        let mut frame = Frame::new_checked(&mut buf[..]).unwrap();
        let addr = EthernetAddress([1, 2, 3, 4, 5, 6]);
        frame.set_src_addr(addr);
        frame.set_dst_addr(addr);
        frame.set_ethertype(EtherType::Unknown(0x88cc));
        frame.payload_mut()[0] = 0xee;
        assert_eq!(frame.src_addr(), addr);
        assert_eq!(frame.dst_addr(), addr);
        assert_eq!(frame.ethertype(), EtherType::Unknown(0x88cc));
        assert_eq!(frame.into_inner()[HEADER_LEN], 0xee);
    }
}
