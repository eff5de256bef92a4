//! ICMP for IPv4 (RFC 792).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Identifier / unused / pointer / next-hop MTU              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Data (echo data, or the original IP header + 8 bytes) ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! ICMP has no length field: a view's buffer must be exactly the message
//! (the IP payload), because the data and the checksum run to its end.

use super::{Error, checksum, read_u16, wire_enum, write_u16};

mod field {
    use crate::wire::{Field, Rest};

    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Field = 2..4;
    pub(super) const ECHO_IDENT: Field = 4..6;
    pub(super) const ECHO_SEQNO: Field = 6..8;
    pub(super) const UNUSED: Field = 4..8;
    /// RFC 1191 section 4: the next-hop MTU of "fragmentation needed".
    pub(super) const NEXT_HOP_MTU: Field = 6..8;
    pub(super) const DATA: Rest = 8..;
}

/// Length of the ICMP header: type, code, checksum and the 4-byte rest of
/// the header.
pub const HEADER_LEN: usize = field::DATA.start;

wire_enum! {
    /// An ICMP message type (IANA "ICMP Type Numbers").
    pub enum Message(u8) {
        /// Echo reply.
        EchoReply = 0,
        /// Destination unreachable.
        DstUnreachable = 3,
        /// Redirect.
        Redirect = 5,
        /// Echo request.
        EchoRequest = 8,
        /// Time exceeded.
        TimeExceeded = 11,
        /// Parameter problem.
        ParamProblem = 12,
    }
}

impl Message {
    /// Whether this is an error message, which quotes the datagram that
    /// caused it (RFC 1122 section 3.2.2).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Self::DstUnreachable | Self::Redirect | Self::TimeExceeded | Self::ParamProblem
        )
    }
}

/// Codes of [`Message::DstUnreachable`] (RFC 792, RFC 1122, RFC 1812).
pub mod dst_unreachable {
    /// Net unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set (RFC 1191: carries the next-hop MTU).
    pub const FRAG_NEEDED: u8 = 4;
    /// Communication administratively prohibited (RFC 1812).
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// Codes of [`Message::TimeExceeded`] (RFC 792).
pub mod time_exceeded {
    /// Time to live exceeded in transit.
    pub const TTL: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

/// A view of an ICMP message.
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
    /// After this returns `Ok`, no accessor of the packet panics, whatever
    /// the message type.
    ///
    /// # Errors
    ///
    /// As [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the 8-byte header fits the buffer.
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

    /// The message type.
    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// The message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// The sequence number of an echo request or reply.
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    /// The next-hop MTU of a "fragmentation needed" message (RFC 1191
    /// section 4; 0 from routers that predate it).
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU.start)
    }

    /// The four bytes after the checksum, whatever they mean for this type.
    pub fn rest_of_header(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::UNUSED];
        [b[0], b[1], b[2], b[3]]
    }

    /// The data after the 8-byte header: echo data, or for an error the
    /// quoted datagram.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// The same as [`payload`](Self::payload), under smoltcp's name.
    pub fn data(&self) -> &[u8] {
        self.payload()
    }

    /// Whether the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == !0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: Message) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT.start, value);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQNO.start, value);
    }

    /// Sets the next-hop MTU (and zeroes the unused half-word before it).
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::UNUSED.start, 0);
        write_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU.start, value);
    }

    /// Sets the four bytes after the checksum.
    pub fn set_rest_of_header(&mut self, value: [u8; 4]) {
        self.buffer.as_mut()[field::UNUSED].copy_from_slice(&value);
    }

    /// The data after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// The same as [`payload_mut`](Self::payload_mut), under smoltcp's name.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.payload_mut()
    }

    /// Computes the checksum over the whole message and writes it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of the ICMP messages the gateway receives or sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Repr<'a> {
    /// An echo request ("ping").
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// An echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data, copied from the request.
        data: &'a [u8],
    },
    /// A destination unreachable error.
    DstUnreachable {
        /// Reason (see [`dst_unreachable`]).
        code: u8,
        /// Next-hop MTU for [`dst_unreachable::FRAG_NEEDED`], else 0.
        next_hop_mtu: u16,
        /// The start of the datagram that could not be delivered.
        datagram: &'a [u8],
    },
    /// A time exceeded error.
    TimeExceeded {
        /// Reason (see [`time_exceeded`]).
        code: u8,
        /// The start of the datagram that was dropped: its IP header and at
        /// least 8 bytes of payload (RFC 792), as many as fit in 576 bytes
        /// (RFC 1812 section 4.3.2.3); the caller cuts it.
        datagram: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Reads `packet`, checking its checksum.
    ///
    /// # Errors
    ///
    /// - as [`Packet::check_len`];
    /// - [`Error::Checksum`] if the checksum is wrong;
    /// - [`Error::Unsupported`] for a message type without a variant here
    ///   (the view still reads it).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Self, Error> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let data = &packet.buffer.as_ref()[field::DATA];
        match packet.msg_type() {
            Message::EchoRequest => Ok(Self::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Message::EchoReply => Ok(Self::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Message::DstUnreachable => Ok(Self::DstUnreachable {
                code: packet.msg_code(),
                next_hop_mtu: packet.next_hop_mtu(),
                datagram: data,
            }),
            Message::TimeExceeded => Ok(Self::TimeExceeded {
                code: packet.msg_code(),
                datagram: data,
            }),
            _ => Err(Error::Unsupported("ICMPv4 message type")),
        }
    }

    /// The length of the header [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of the whole message: header plus data.
    pub const fn buffer_len(&self) -> usize {
        let data = match self {
            Self::EchoRequest { data, .. } | Self::EchoReply { data, .. } => data,
            Self::DstUnreachable { datagram, .. } | Self::TimeExceeded { datagram, .. } => datagram,
        };
        HEADER_LEN + data.len()
    }

    /// Writes the message into the start of `packet` and fills the checksum
    /// over [`buffer_len`](Self::buffer_len) bytes.
    ///
    /// # Panics
    ///
    /// If the packet's buffer is shorter than
    /// [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let message = &mut packet.buffer.as_mut()[..self.buffer_len()];
        let mut packet = Packet::new_unchecked(message);
        let (ty, code, rest, data) = match *self {
            Self::EchoRequest {
                ident,
                seq_no,
                data,
            } => (Message::EchoRequest, 0, echo_rest(ident, seq_no), data),
            Self::EchoReply {
                ident,
                seq_no,
                data,
            } => (Message::EchoReply, 0, echo_rest(ident, seq_no), data),
            Self::DstUnreachable {
                code,
                next_hop_mtu,
                datagram,
            } => (
                Message::DstUnreachable,
                code,
                u32::from(next_hop_mtu),
                datagram,
            ),
            Self::TimeExceeded { code, datagram } => (Message::TimeExceeded, code, 0, datagram),
        };
        packet.set_msg_type(ty);
        packet.set_msg_code(code);
        packet.set_rest_of_header(rest.to_be_bytes());
        packet.payload_mut().copy_from_slice(data);
        packet.fill_checksum();
    }
}

/// The identifier and sequence number as the 32-bit rest of the header.
const fn echo_rest(ident: u16, seq_no: u16) -> u32 {
    (ident as u32) << 16 | seq_no as u32
}

#[cfg(test)]
mod tests;
