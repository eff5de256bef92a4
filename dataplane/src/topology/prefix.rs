//! IP prefixes (`10.0.0.0/8`, `fd00::/64`) as they appear in configuration.

use std::{fmt, net::IpAddr, str::FromStr};

/// An IPv4 or IPv6 prefix whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrefixError {
    /// The text is not `ADDRESS/LENGTH` or `ADDRESS`.
    #[error("`{0}` is not an IP prefix (expected ADDRESS/LENGTH, e.g. 10.0.0.0/8 or fd00::/64)")]
    Syntax(String),
    /// The length is longer than the address.
    #[error("prefix length {len} is too long for {addr} (at most {max})")]
    Length { addr: IpAddr, len: u8, max: u8 },
    /// Bits beyond the length are set, as `ip route` refuses them.
    #[error("{addr}/{len} has host bits set; did you mean {masked}/{len}?")]
    HostBits {
        addr: IpAddr,
        len: u8,
        masked: IpAddr,
    },
}

impl IpPrefix {
    /// A prefix; host bits must be zero.
    ///
    /// # Errors
    /// [`PrefixError::Length`] or [`PrefixError::HostBits`].
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(PrefixError::Length { addr, len, max });
        }
        let masked = mask(addr, len);
        if masked != addr {
            return Err(PrefixError::HostBits { addr, len, masked });
        }
        Ok(Self { addr, len })
    }

    /// The prefix of `len` bits that contains `addr` (host bits cleared).
    ///
    /// # Panics
    /// If `len` is longer than the address.
    pub fn containing(addr: IpAddr, len: u8) -> Self {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        assert!(len <= max, "prefix length {len} > {max}");
        Self {
            addr: mask(addr, len),
            len,
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    #[allow(
        clippy::len_without_is_empty,
        reason = "a prefix length, not a collection"
    )]
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether `addr` lies inside the prefix.
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4() && mask(addr, self.len) == self.addr
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

impl FromStr for IpPrefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || PrefixError::Syntax(s.to_owned());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| syntax())?;
        let len = match len {
            Some(l) => l.trim().parse().map_err(|_| syntax())?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, len)
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl serde::Serialize for IpPrefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let p: IpPrefix = "10.1.0.0/24".parse().unwrap();
        assert_eq!(p.to_string(), "10.1.0.0/24");
        assert!(p.contains("10.1.0.77".parse().unwrap()));
        assert!(!p.contains("10.1.1.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        let p: IpPrefix = "fd00:a::/64".parse().unwrap();
        assert_eq!(p.len(), 64);
        let host: IpPrefix = "10.0.0.1".parse().unwrap();
        assert_eq!(host.len(), 32);
    }

    #[test]
    fn refuses_bad_prefixes_with_a_reason() {
        assert!(matches!(
            "10.1.0.1/24".parse::<IpPrefix>(),
            Err(PrefixError::HostBits { .. })
        ));
        assert!(matches!(
            "10.1.0.0/33".parse::<IpPrefix>(),
            Err(PrefixError::Length { .. })
        ));
        assert!(matches!(
            "banana/3".parse::<IpPrefix>(),
            Err(PrefixError::Syntax(_))
        ));
        let e = "10.1.0.1/24".parse::<IpPrefix>().unwrap_err().to_string();
        assert!(e.contains("10.1.0.0/24"), "{e}");
    }
}
