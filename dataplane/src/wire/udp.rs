//! UDP headers (RFC 768).
//!
//! ```text
//!  0      7 8     15 16    23 24    31
//! +--------+--------+--------+--------+
//! |     Source      |   Destination   |
//! |      Port       |      Port       |
//! +--------+--------+--------+--------+
//! |                 |                 |
//! |     Length      |    Checksum     |
//! +--------+--------+--------+--------+
//! ```

use std::net::IpAddr;

use super::{Error, IpProtocol, checksum, read_u16, write_u16};

mod field {
    use crate::wire::Field;

    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const LENGTH: Field = 4..6;
    pub(super) const CHECKSUM: Field = 6..8;
}

/// Length of a UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view of a UDP datagram.
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
    /// [`payload`](Self::payload) and the checksum stop at the length field.
    ///
    /// # Errors
    ///
    /// As [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header fits the buffer and the length field lies
    /// between them.
    ///
    /// # Errors
    ///
    /// - [`Error::Truncated`] if the buffer is shorter than [`HEADER_LEN`] or
    ///   than the length field;
    /// - [`Error::Malformed`] if the length field is below [`HEADER_LEN`]
    ///   (this includes the jumbogram value 0 of RFC 2675, not supported).
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(Error::Malformed("UDP length below 8"));
        }
        if field_len > len {
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

    /// The length field: header plus data, in bytes.
    #[allow(
        clippy::len_without_is_empty,
        reason = "the wire's length field, not a container's size"
    )]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// The checksum field (0 means "no checksum" over IPv4).
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The data: from the end of the header to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum over the IP pseudo-header and the datagram (up
    /// to the length field) is right.
    ///
    /// Over IPv4 a zero checksum field means the sender computed none (RFC
    /// 768) and passes; over IPv6 it fails (RFC 8200 section 8.1). Mixed
    /// address families fail.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4() && dst.is_ipv4();
        }
        let datagram = &self.buffer.as_ref()[..usize::from(self.len())];
        datagram_sum(datagram, src, dst) == Some(!0)
    }
}

/// The sum of the pseudo-header and `datagram`, or `None` for mixed
/// families.
fn datagram_sum(datagram: &[u8], src: IpAddr, dst: IpAddr) -> Option<u16> {
    // The datagram is at most 65535 bytes: its length is a u16 field.
    let len = u32::try_from(datagram.len()).unwrap_or(u32::MAX);
    let pseudo = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            checksum::pseudo_header_v4(src, dst, IpProtocol::Udp, len)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            checksum::pseudo_header_v6(src, dst, IpProtocol::Udp, len)
        }
        _ => return None,
    };
    Some(checksum::combine(&[pseudo, checksum::data(datagram)]))
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

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// The data, mutably: from the end of the header to the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes the checksum over the IP pseudo-header and the datagram (up
    /// to the length field) and writes it; a computed 0 is sent as `0xffff`
    /// (RFC 768), since 0 means "none".
    ///
    /// # Panics
    ///
    /// If `src` and `dst` are of different address families (they come from
    /// one IP header, so that is a bug in the caller), or the length field is
    /// past the buffer.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let datagram = &self.buffer.as_ref()[..usize::from(self.len())];
        let sum = datagram_sum(datagram, src, dst)
            .expect("UDP checksum over addresses of different families");
        let value = !sum;
        self.set_checksum(if value == 0 { 0xffff } else { value });
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Length of the data in bytes.
    pub payload_len: usize,
}

impl Repr {
    /// Reads the header of `packet`, checking its checksum (see
    /// [`Packet::verify_checksum`]).
    ///
    /// # Errors
    ///
    /// - as [`Packet::check_len`];
    /// - [`Error::Checksum`] if the checksum is wrong;
    /// - [`Error::Malformed`] if the destination port is 0.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<Self, Error> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        // RFC 768 lets the source port be 0 ("no reply expected"); a
        // destination port of 0 is reserved.
        if packet.dst_port() == 0 {
            return Err(Error::Malformed("UDP destination port 0"));
        }
        Ok(Self {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.payload().len(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of the whole datagram: header plus data.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header into the start of `packet` and fills the checksum,
    /// so the data must already be in place after the header.
    ///
    /// # Panics
    ///
    /// If the packet's buffer is shorter than
    /// [`buffer_len`](Self::buffer_len), the datagram is longer than 65535
    /// bytes, or `src` and `dst` are of different address families.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) {
        let len = u16::try_from(self.buffer_len()).expect("UDP datagram longer than 65535 bytes");
        assert!(
            packet.buffer.as_ref().len() >= self.buffer_len(),
            "UDP buffer shorter than the datagram"
        );
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests;
