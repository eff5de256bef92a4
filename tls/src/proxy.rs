//! The PROXY protocol, version 2 (HAProxy's "The PROXY protocol", section
//! 2.2): a binary header a proxy sends before the client's bytes, naming
//! the client's address and, in TLVs, what the proxy learnt of it.
//!
//! The terminator reads one from a trusted load balancer in front
//! ([`decode`]) and sends one to upstreams ([`Header::emit`]). Both are
//! sans-IO: bytes in, a [`Header`] or a clear [`ProxyError`] out.
//!
//! What the terminator sends, and why these numbers:
//!
//! | TLV | type | value |
//! |-----|------|-------|
//! | `PP2_TYPE_ALPN` | `0x01` | the protocol the client negotiated |
//! | `PP2_TYPE_AUTHORITY` | `0x02` | the server name (SNI) the client asked for |
//! | `PP2_TYPE_SSL` | `0x20` | client flags, verify (0: a certificate verified), then sub-TLVs `PP2_SUBTYPE_SSL_VERSION` (`0x21`, e.g. `TLSv1.3`) and `PP2_SUBTYPE_SSL_CIPHER` (`0x23`, rustls's suite name) |
//! | [`tlv::SPIFFE_ID`] | `0xE0` | the client's verified SPIFFE ID (UTF-8), the first type of the spec's custom range `0xE0`–`0xEF`: the spec has no type for a URI SAN, and `PP2_SUBTYPE_SSL_CN` would be a lie |

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

/// The 12 bytes every v2 header starts with (section 2.2).
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part: signature, version and command, family and protocol,
/// length.
pub const FIXED_LEN: usize = 16;

/// The longest header read (fixed part, addresses and TLVs). The spec
/// allows 16 + 65535; load balancers send a few hundred bytes, and a
/// client leg holds one buffer chunk, so more is refused.
pub const MAX_HEADER: usize = 4096;

/// A version 1 (text) header's start.
const V1_PREFIX: &[u8] = b"PROXY ";

/// TLV types (section 2.2.7) and the one this project chose.
pub mod tlv {
    /// The application protocol (ALPN).
    pub const ALPN: u8 = 0x01;
    /// The host name the client asked for (SNI).
    pub const AUTHORITY: u8 = 0x02;
    /// TLS facts, with sub-TLVs.
    pub const SSL: u8 = 0x20;
    /// Sub-TLV of [`SSL`]: the TLS version, e.g. `TLSv1.3`.
    pub const SSL_VERSION: u8 = 0x21;
    /// Sub-TLV of [`SSL`]: the cipher suite.
    pub const SSL_CIPHER: u8 = 0x23;
    /// The client's verified SPIFFE ID: the first custom type
    /// (`PP2_TYPE_MIN_CUSTOM`).
    pub const SPIFFE_ID: u8 = 0xE0;
    /// [`SSL`]'s client field: the client connected over TLS.
    pub const CLIENT_SSL: u8 = 0x01;
    /// [`SSL`]'s client field: it presented a certificate on this
    /// connection.
    pub const CLIENT_CERT_CONN: u8 = 0x02;
    /// [`SSL`]'s client field: it presented one in this TLS session.
    pub const CLIENT_CERT_SESS: u8 = 0x04;
}

/// What the header says the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The proxy's own connection (a health check): use the socket's
    /// addresses.
    Local,
    /// A relayed connection.
    Proxy,
}

/// A type-length-value field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    /// Its type.
    pub kind: u8,
    /// Its value.
    pub value: Vec<u8>,
}

/// A PROXY v2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// LOCAL or PROXY.
    pub command: Command,
    /// The client's (source) and the proxy's listening (destination)
    /// address; `None` for LOCAL, or a PROXY header with `AF_UNSPEC`:
    /// the socket's own addresses stand.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// The TLVs, in order.
    pub tlvs: Vec<Tlv>,
}

/// Why bytes are not a PROXY v2 header this terminator accepts; each
/// names the byte at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The first 12 bytes are not the v2 signature.
    #[error("not a PROXY protocol v2 header: the first 12 bytes are not its signature")]
    BadSignature,
    /// A text header (version 1).
    #[error(
        "a PROXY protocol version 1 (text) header: only version 2 is read; have the load balancer send v2 (HAProxy: send-proxy-v2)"
    )]
    Version1,
    /// Byte 13's high nibble is not 2.
    #[error("PROXY protocol version {0} (byte 13, high nibble): only version 2 is read")]
    BadVersion(u8),
    /// Byte 13's low nibble is neither LOCAL nor PROXY.
    #[error("PROXY command {0} (byte 13, low nibble): only LOCAL (0) and PROXY (1) exist")]
    BadCommand(u8),
    /// Byte 14's high nibble is no family the spec defines.
    #[error(
        "address family {0} (byte 14, high nibble): the spec defines AF_UNSPEC (0), AF_INET (1), AF_INET6 (2) and AF_UNIX (3)"
    )]
    UnknownFamily(u8),
    /// `AF_UNIX` addresses, which name no client address.
    #[error("AF_UNIX addresses (byte 14): a TCP client has an IP address")]
    UnixFamily,
    /// A transport other than STREAM.
    #[error("transport {0} (byte 14, low nibble): only STREAM (1) is proxied here")]
    NotStream(u8),
    /// The length (bytes 15–16) cannot hold the family's addresses.
    #[error(
        "length {len} (bytes 15-16) is shorter than the {need} bytes of the family's addresses"
    )]
    ShortAddresses {
        /// The length given.
        len: usize,
        /// What the addresses take.
        need: usize,
    },
    /// The header would be longer than [`MAX_HEADER`].
    #[error("length {len} (bytes 15-16) makes a header longer than the {max} bytes accepted")]
    TooLong {
        /// The length given.
        len: usize,
        /// [`MAX_HEADER`].
        max: usize,
    },
    /// A TLV runs past the header's end.
    #[error("the TLV at byte {at} (type {kind:#04x}) claims {len} bytes where {left} remain")]
    BadTlv {
        /// Its offset from the header's start.
        at: usize,
        /// Its type.
        kind: u8,
        /// The length it claims.
        len: usize,
        /// What the header has left.
        left: usize,
    },
    /// The connection ended inside the header.
    #[error("the connection ended after {have} bytes of a {need}-byte header")]
    Truncated {
        /// Bytes received.
        have: usize,
        /// Bytes the header needs (16 while its length is unknown).
        need: usize,
    },
}

/// What [`decode`] made of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The header is not whole: it is `need` bytes long at least.
    Need(usize),
    /// A whole header, `len` bytes long.
    Header(Header, usize),
}

/// Whether `first` — the first bytes of a connection — start a PROXY
/// header of either version: the whole v2 signature, or as much of it as
/// arrived (no TLS record or text protocol starts with CR), or `PROXY `.
#[must_use]
pub fn looks_like_header(first: &[u8]) -> bool {
    let n = first.len().min(SIGNATURE.len());
    (n > 0 && first[..n] == SIGNATURE[..n]) || first.starts_with(V1_PREFIX)
}

/// Reads a v2 header from the start of `buf`. `ended`: no more bytes
/// will come, so a header that is not whole is [`ProxyError::Truncated`].
///
/// # Errors
///
/// The first thing wrong, as a [`ProxyError`] naming the byte.
pub fn decode(buf: &[u8], ended: bool) -> Result<Decoded, ProxyError> {
    let n = buf.len().min(SIGNATURE.len());
    if buf[..n] != SIGNATURE[..n] {
        let v1 = buf.len().min(V1_PREFIX.len());
        return Err(if buf[..v1] == V1_PREFIX[..v1] && v1 > 0 {
            ProxyError::Version1
        } else {
            ProxyError::BadSignature
        });
    }
    let truncated = |need| {
        if ended {
            Err(ProxyError::Truncated {
                have: buf.len(),
                need,
            })
        } else {
            Ok(Decoded::Need(need))
        }
    };
    if buf.len() < FIXED_LEN {
        return truncated(FIXED_LEN);
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::BadVersion(ver_cmd >> 4));
    }
    let command = match ver_cmd & 0x0f {
        0 => Command::Local,
        1 => Command::Proxy,
        c => return Err(ProxyError::BadCommand(c)),
    };
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if FIXED_LEN + len > MAX_HEADER {
        return Err(ProxyError::TooLong {
            len,
            max: MAX_HEADER,
        });
    }
    let (family, transport) = (fam >> 4, fam & 0x0f);
    let need = match family {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        f => return Err(ProxyError::UnknownFamily(f)),
    };
    if family != 0 && transport != 1 {
        return Err(ProxyError::NotStream(transport));
    }
    if len < need {
        return Err(ProxyError::ShortAddresses { len, need });
    }
    if buf.len() < FIXED_LEN + len {
        return truncated(FIXED_LEN + len);
    }
    let body = &buf[FIXED_LEN..FIXED_LEN + len];
    let addresses = match (command, family) {
        // LOCAL: the receiver "must use the real connection endpoints
        // and discard the protocol block" (section 2.2).
        (Command::Local, _) | (_, 0) => None,
        (_, 3) => return Err(ProxyError::UnixFamily),
        (_, 1) => {
            let ip = |o: usize| IpAddr::from([body[o], body[o + 1], body[o + 2], body[o + 3]]);
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        _ => {
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&body[o..o + 16]);
                IpAddr::from(Ipv6Addr::from(b)).to_canonical()
            };
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
    };
    let tlvs = decode_tlvs(&body[need..], FIXED_LEN + need)?;
    Ok(Decoded::Header(
        Header {
            command,
            addresses,
            tlvs,
        },
        FIXED_LEN + len,
    ))
}

/// The TLVs of `bytes`, which start at byte `base` of the header.
///
/// # Errors
///
/// A TLV that runs past the end.
pub fn decode_tlvs(mut bytes: &[u8], base: usize) -> Result<Vec<Tlv>, ProxyError> {
    let mut out = Vec::new();
    let mut at = base;
    while !bytes.is_empty() {
        let kind = bytes[0];
        if bytes.len() < 3 {
            return Err(ProxyError::BadTlv {
                at,
                kind,
                len: 3,
                left: bytes.len(),
            });
        }
        let len = usize::from(u16::from_be_bytes([bytes[1], bytes[2]]));
        let left = bytes.len() - 3;
        if len > left {
            return Err(ProxyError::BadTlv {
                at,
                kind,
                len,
                left,
            });
        }
        out.push(Tlv {
            kind,
            value: bytes[3..3 + len].to_vec(),
        });
        bytes = &bytes[3 + len..];
        at += 3 + len;
    }
    Ok(out)
}

impl Header {
    /// A PROXY header for a connection from `source` to `destination`.
    #[must_use]
    pub fn proxy(source: SocketAddr, destination: SocketAddr) -> Self {
        Self {
            command: Command::Proxy,
            addresses: Some((source, destination)),
            tlvs: Vec::new(),
        }
    }

    /// Adds a TLV (an empty value is left out).
    #[must_use]
    pub fn with(mut self, kind: u8, value: impl Into<Vec<u8>>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.tlvs.push(Tlv { kind, value });
        }
        self
    }

    /// Appends the header to `out`. Addresses of two families are both
    /// written as IPv6 (an IPv4 one mapped, RFC 4291 section 2.5.5.2).
    ///
    /// # Panics
    ///
    /// The TLVs make it longer than the 65535 bytes the length field
    /// holds (values come from a TLS session: far shorter).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&SIGNATURE);
        out.push(
            0x20 | match self.command {
                Command::Local => 0,
                Command::Proxy => 1,
            },
        );
        let mut body = Vec::new();
        let family = match self.addresses {
            None => 0x00,
            Some((SocketAddr::V4(s), SocketAddr::V4(d))) => {
                body.extend_from_slice(&s.ip().octets());
                body.extend_from_slice(&d.ip().octets());
                body.extend_from_slice(&s.port().to_be_bytes());
                body.extend_from_slice(&d.port().to_be_bytes());
                0x11
            }
            Some((s, d)) => {
                let v6 = |a: SocketAddr| match a.ip() {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                body.extend_from_slice(&v6(s).octets());
                body.extend_from_slice(&v6(d).octets());
                body.extend_from_slice(&s.port().to_be_bytes());
                body.extend_from_slice(&d.port().to_be_bytes());
                0x21
            }
        };
        out.push(family);
        for t in &self.tlvs {
            emit_tlv(&mut body, t.kind, &t.value);
        }
        let len = u16::try_from(body.len()).expect("a PROXY header under 64 KiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
    }

    /// The value of the first TLV of `kind`.
    #[must_use]
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.value.as_slice())
    }
}

/// Appends one TLV.
///
/// # Panics
///
/// `value` is longer than 65535 bytes.
pub fn emit_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    out.push(kind);
    let len = u16::try_from(value.len()).expect("a TLV under 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// The value of a `PP2_TYPE_SSL` TLV: `client` flags, `verified` (the
/// `verify` field is 0 when a client certificate was verified, 1
/// otherwise), then `subs` as sub-TLVs.
#[must_use]
pub fn ssl_value(client: u8, verified: bool, subs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut v = vec![client];
    v.extend_from_slice(&u32::from(!verified).to_be_bytes());
    for (kind, value) in subs {
        if !value.is_empty() {
            emit_tlv(&mut v, *kind, value);
        }
    }
    v
}

/// An IP prefix such as `10.1.0.0/16` or `2001:db8::/32` (a bare address
/// is a /32 or /128): the sources trusted to send PROXY headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as its
    /// IPv4 address).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
        let net: IpAddr = addr.parse().map_err(|_| {
            format!("`{s}` is not an address or prefix (write 10.1.0.0/16 or 2001:db8::/32)")
        })?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        let c = Self { net, len };
        let masked = match net {
            IpAddr::V4(n) => IpAddr::V4(
                (u32::from(n) & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)).into(),
            ),
            IpAddr::V6(n) => IpAddr::V6(
                (u128::from(n) & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)).into(),
            ),
        };
        if masked != net {
            return Err(format!("`{s}` has host bits set: write {masked}/{len}"));
        }
        Ok(c)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

#[cfg(test)]
mod tests;
