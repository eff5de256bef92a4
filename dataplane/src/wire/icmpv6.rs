//! ICMP for IPv6 (RFC 4443), and the message types of Neighbor Discovery
//! (RFC 4861).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Identifier / MTU / pointer / reserved                     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Message body ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! ICMPv6 has no length field: a view's buffer must be exactly the message
//! (the upper-layer part of the IPv6 payload), because the body and the
//! checksum run to its end.

use std::net::Ipv6Addr;

use super::{Error, IpProtocol, checksum, read_u16, read_u32, wire_enum, write_u16, write_u32};

mod field {
    use crate::wire::{Field, Rest};

    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Field = 2..4;
    pub(super) const ECHO_IDENT: Field = 4..6;
    pub(super) const ECHO_SEQNO: Field = 6..8;
    /// The MTU of Packet Too Big, the pointer of Parameter Problem, or
    /// unused.
    pub(super) const REST: Field = 4..8;
    pub(super) const BODY: Rest = 8..;
}

/// Length of the ICMPv6 header: type, code, checksum and the 4-byte field
/// every message type has after them.
pub const HEADER_LEN: usize = field::BODY.start;

wire_enum! {
    /// An ICMPv6 message type (IANA "ICMPv6 Type Numbers").
    pub enum Message(u8) {
        /// Destination unreachable (RFC 4443 section 3.1).
        DstUnreachable = 1,
        /// Packet too big (RFC 4443 section 3.2).
        PacketTooBig = 2,
        /// Time exceeded (RFC 4443 section 3.3).
        TimeExceeded = 3,
        /// Parameter problem (RFC 4443 section 3.4).
        ParamProblem = 4,
        /// Echo request (RFC 4443 section 4.1).
        EchoRequest = 128,
        /// Echo reply (RFC 4443 section 4.2).
        EchoReply = 129,
        /// Router solicitation (RFC 4861 section 4.1).
        RouterSolicit = 133,
        /// Router advertisement (RFC 4861 section 4.2).
        RouterAdvert = 134,
        /// Neighbor solicitation (RFC 4861 section 4.3).
        NeighbourSolicit = 135,
        /// Neighbor advertisement (RFC 4861 section 4.4).
        NeighbourAdvert = 136,
        /// Redirect (RFC 4861 section 4.5).
        Redirect = 137,
    }
}

impl Message {
    /// Whether this is a Neighbor Discovery message (types 133 to 137).
    pub fn is_ndp(self) -> bool {
        matches!(u8::from(self), 133..=137)
    }

    /// Whether this is an error message: types 0 to 127 (RFC 4443 section
    /// 2.1).
    pub fn is_error(self) -> bool {
        u8::from(self) < 128
    }
}

/// Codes of [`Message::DstUnreachable`] (RFC 4443 section 3.1).
pub mod dst_unreachable {
    /// No route to destination.
    pub const NO_ROUTE: u8 = 0;
    /// Communication with destination administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 1;
    /// Address unreachable.
    pub const ADDRESS: u8 = 3;
    /// Port unreachable.
    pub const PORT: u8 = 4;
}

/// Codes of [`Message::TimeExceeded`] (RFC 4443 section 3.3).
pub mod time_exceeded {
    /// Hop limit exceeded in transit.
    pub const HOP_LIMIT: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

/// A view of an ICMPv6 message.
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

    /// Whether this is a Neighbor Discovery message (types 133 to 137).
    pub fn is_ndp(&self) -> bool {
        self.msg_type().is_ndp()
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

    /// The MTU of a Packet Too Big message.
    pub fn mtu(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REST.start)
    }

    /// The pointer of a Parameter Problem message: the offset of the
    /// offending byte in the quoted packet.
    pub fn pointer(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REST.start)
    }

    /// The four bytes after the checksum, whatever they mean for this type.
    pub fn rest_of_header(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::REST];
        [b[0], b[1], b[2], b[3]]
    }

    /// The message body after the 8-byte header: echo data, the quoted
    /// packet of an error, or the rest of an NDP message (for a Neighbor
    /// Solicitation, the target address and options).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY]
    }

    /// Whether the checksum over the IPv6 pseudo-header (RFC 8200 section
    /// 8.1) and the whole message is right.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        message_sum(self.buffer.as_ref(), src, dst) == !0
    }
}

fn message_sum(message: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
    // A message longer than u32::MAX bytes cannot be in an IPv6 packet;
    // saturate rather than wrap.
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, len);
    checksum::combine(&[pseudo, checksum::data(message)])
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

    /// Sets the MTU of a Packet Too Big message.
    pub fn set_mtu(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::REST.start, value);
    }

    /// Sets the pointer of a Parameter Problem message.
    pub fn set_pointer(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::REST.start, value);
    }

    /// Sets the four bytes after the checksum.
    pub fn set_rest_of_header(&mut self, value: [u8; 4]) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&value);
    }

    /// The message body, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::BODY]
    }

    /// Computes the checksum over the IPv6 pseudo-header and the whole
    /// message and writes it.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let sum = message_sum(self.buffer.as_ref(), src, dst);
        self.set_checksum(!sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of the ICMPv6 messages the gateway answers or sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Repr<'a> {
    /// An echo request.
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
        /// As much of the packet that could not be delivered as fits in the
        /// minimum MTU of 1280 bytes (RFC 4443 section 2.4 (c)); the caller
        /// cuts it.
        datagram: &'a [u8],
    },
    /// A packet too big error.
    PacketTooBig {
        /// The MTU of the next hop.
        mtu: u32,
        /// The start of the packet that was too big.
        datagram: &'a [u8],
    },
    /// A time exceeded error.
    TimeExceeded {
        /// Reason (see [`time_exceeded`]).
        code: u8,
        /// The start of the packet that was dropped.
        datagram: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Reads `packet`, checking its checksum against the addresses of the
    /// IPv6 header that carried it.
    ///
    /// # Errors
    ///
    /// - as [`Packet::check_len`];
    /// - [`Error::Checksum`] if the checksum is wrong;
    /// - [`Error::Unsupported`] for a message type without a variant here,
    ///   NDP included (the view still reads it).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Result<Self, Error> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        let body = &packet.buffer.as_ref()[field::BODY];
        match packet.msg_type() {
            Message::EchoRequest => Ok(Self::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: body,
            }),
            Message::EchoReply => Ok(Self::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: body,
            }),
            Message::DstUnreachable => Ok(Self::DstUnreachable {
                code: packet.msg_code(),
                datagram: body,
            }),
            Message::PacketTooBig => Ok(Self::PacketTooBig {
                mtu: packet.mtu(),
                datagram: body,
            }),
            Message::TimeExceeded => Ok(Self::TimeExceeded {
                code: packet.msg_code(),
                datagram: body,
            }),
            _ => Err(Error::Unsupported("ICMPv6 message type")),
        }
    }

    /// The length of the header [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of the whole message: header plus body.
    pub const fn buffer_len(&self) -> usize {
        let body = match self {
            Self::EchoRequest { data, .. } | Self::EchoReply { data, .. } => data,
            Self::DstUnreachable { datagram, .. }
            | Self::PacketTooBig { datagram, .. }
            | Self::TimeExceeded { datagram, .. } => datagram,
        };
        HEADER_LEN + body.len()
    }

    /// Writes the message into the start of `packet` and fills the checksum
    /// over [`buffer_len`](Self::buffer_len) bytes with the addresses of the
    /// IPv6 header that will carry it.
    ///
    /// # Panics
    ///
    /// If the packet's buffer is shorter than
    /// [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) {
        let message = &mut packet.buffer.as_mut()[..self.buffer_len()];
        let mut packet = Packet::new_unchecked(message);
        let (ty, code, rest, body) = match *self {
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
            Self::DstUnreachable { code, datagram } => (Message::DstUnreachable, code, 0, datagram),
            Self::PacketTooBig { mtu, datagram } => (Message::PacketTooBig, 0, mtu, datagram),
            Self::TimeExceeded { code, datagram } => (Message::TimeExceeded, code, 0, datagram),
        };
        packet.set_msg_type(ty);
        packet.set_msg_code(code);
        packet.set_rest_of_header(rest.to_be_bytes());
        packet.payload_mut().copy_from_slice(body);
        packet.fill_checksum(src, dst);
    }
}

/// The identifier and sequence number as the 32-bit rest of the header.
const fn echo_rest(ident: u16, seq_no: u16) -> u32 {
    (ident as u32) << 16 | seq_no as u32
}

#[cfg(test)]
mod tests;
