//! TCP headers (RFC 9293 section 3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Acknowledgment Number                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//! |       |       |R|E|G|K|H|T|N|N|                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! TCP has no length field: a view's buffer must be exactly the segment (the
//! IP payload), because the payload and the checksum run to its end.

use std::net::IpAddr;

use super::{Error, IpProtocol, checksum, read_u16, read_u32, write_u16, write_u32};

mod field {
    use crate::wire::Field;

    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const SEQ_NUM: Field = 4..8;
    pub(super) const ACK_NUM: Field = 8..12;
    pub(super) const DATA_OFFSET: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WIN_SIZE: Field = 14..16;
    pub(super) const CHECKSUM: Field = 16..18;
    pub(super) const URGENT: Field = 18..20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// The control bits of the flags byte, as [`Packet::flags`] returns them.
pub mod flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field is significant.
    pub const URG: u8 = 0x20;
    /// ECN-Echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}

/// A view of a TCP segment.
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
    /// After this returns `Ok`, no accessor of the packet panics.
    ///
    /// # Errors
    ///
    /// As [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header, options included, fits the buffer.
    ///
    /// # Errors
    ///
    /// - [`Error::Truncated`] if the buffer is shorter than [`HEADER_LEN`] or
    ///   than the data offset;
    /// - [`Error::Malformed`] if the data offset is below 5 words.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::Malformed("TCP data offset below 5"));
        }
        if header_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The sequence number.
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    /// The acknowledgment number (meaningful when [`ack`](Self::ack) is set).
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// The header length in bytes: the data offset times 4, options
    /// included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The eight control bits (see [`flags`]); the reserved bits are left
    /// out.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The FIN flag.
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    /// The SYN flag.
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    /// The RST flag.
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    /// The PSH flag.
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    /// The ACK flag.
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    /// The URG flag.
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    /// The ECE flag.
    pub fn ece(&self) -> bool {
        self.flags() & flags::ECE != 0
    }

    /// The CWR flag.
    pub fn cwr(&self) -> bool {
        self.flags() & flags::CWR != 0
    }

    /// The window field (unscaled).
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT.start)
    }

    /// The options: the bytes between the fixed header and the data.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The data: from the end of the header to the end of the buffer.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum over the IP pseudo-header and the whole buffer
    /// is right; `false` if `src` and `dst` are of different families.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        segment_sum(self.buffer.as_ref(), src, dst) == Some(!0)
    }
}

/// The sum of the pseudo-header and `segment`, or `None` for mixed families.
fn segment_sum(segment: &[u8], src: IpAddr, dst: IpAddr) -> Option<u16> {
    // A segment longer than u32::MAX bytes cannot be in a buffer that an IP
    // header describes; saturate rather than wrap.
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    let pseudo = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            checksum::pseudo_header_v4(src, dst, IpProtocol::Tcp, len)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            checksum::pseudo_header_v6(src, dst, IpProtocol::Tcp, len)
        }
        _ => return None,
    };
    Some(checksum::combine(&[pseudo, checksum::data(segment)]))
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT.start, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT.start, port);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, seq: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM.start, seq);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, ack: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM.start, ack);
    }

    /// Sets the data offset from a header length in bytes (a multiple of 4,
    /// at most 60), clearing the reserved bits.
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFFSET] = ((len / 4) as u8 & 0x0f) << 4;
    }

    /// Sets all eight control bits (see [`flags`]).
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    fn set_flag(&mut self, flag: u8, value: bool) {
        let flags = self.flags() & !flag;
        self.set_flags(if value { flags | flag } else { flags });
    }

    /// Sets or clears FIN.
    pub fn set_fin(&mut self, value: bool) {
        self.set_flag(flags::FIN, value);
    }

    /// Sets or clears SYN.
    pub fn set_syn(&mut self, value: bool) {
        self.set_flag(flags::SYN, value);
    }

    /// Sets or clears RST.
    pub fn set_rst(&mut self, value: bool) {
        self.set_flag(flags::RST, value);
    }

    /// Sets or clears PSH.
    pub fn set_psh(&mut self, value: bool) {
        self.set_flag(flags::PSH, value);
    }

    /// Sets or clears ACK.
    pub fn set_ack(&mut self, value: bool) {
        self.set_flag(flags::ACK, value);
    }

    /// Sets or clears URG.
    pub fn set_urg(&mut self, value: bool) {
        self.set_flag(flags::URG, value);
    }

    /// Sets or clears ECE.
    pub fn set_ece(&mut self, value: bool) {
        self.set_flag(flags::ECE, value);
    }

    /// Sets or clears CWR.
    pub fn set_cwr(&mut self, value: bool) {
        self.set_flag(flags::CWR, value);
    }

    /// Sets the window field.
    pub fn set_window_len(&mut self, window: u16) {
        write_u16(self.buffer.as_mut(), field::WIN_SIZE.start, window);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT.start, value);
    }

    /// The data, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes the checksum over the IP pseudo-header and the whole buffer
    /// and writes it.
    ///
    /// # Panics
    ///
    /// If `src` and `dst` are of different address families (they come from
    /// one IP header, so that is a bug in the caller).
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let sum = segment_sum(self.buffer.as_ref(), src, dst)
            .expect("TCP checksum over addresses of different families");
        self.set_checksum(!sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of a TCP header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number (0 when ACK is not set).
    pub ack_number: u32,
    /// Control bits (see [`flags`]).
    pub flags: u8,
    /// Window field (unscaled).
    pub window_len: u16,
    /// Length of the data in bytes.
    pub payload_len: usize,
}

impl Repr {
    /// Reads the header of `packet` (whose buffer is the whole segment),
    /// checking its checksum; options are skipped.
    ///
    /// # Errors
    ///
    /// - as [`Packet::check_len`];
    /// - [`Error::Checksum`] if the checksum is wrong;
    /// - [`Error::Malformed`] if either port is 0.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<Self, Error> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        if packet.src_port() == 0 || packet.dst_port() == 0 {
            return Err(Error::Malformed("TCP port 0"));
        }
        Ok(Self {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            payload_len: packet.payload().len(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of the whole segment: header plus data.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header (no options, urgent pointer 0) into the start of
    /// `packet` and fills the checksum over the first
    /// [`buffer_len`](Self::buffer_len) bytes, so the data must already be in
    /// place after the header.
    ///
    /// # Panics
    ///
    /// If the packet's buffer is shorter than
    /// [`buffer_len`](Self::buffer_len), or `src` and `dst` are of different
    /// address families.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) {
        let segment = &mut packet.buffer.as_mut()[..self.buffer_len()];
        let mut packet = Packet::new_unchecked(segment);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(HEADER_LEN);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(0);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests;
