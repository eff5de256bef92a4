//! ClassBench filter sets and packet traces: parse, write, and generate
//! look-alikes with a seed.
//!
//! ClassBench (Taylor and Turner, "ClassBench: A Packet Classification
//! Benchmark", INFOCOM 2005) is the common yardstick of packet
//! classifiers. Its `db_generator` writes one filter per line:
//!
//! ```text
//! @192.168.0.0/16  10.0.0.0/8  0 : 65535  1024 : 65535  0x06/0xFF  0x0000/0x0000
//! ```
//!
//! source and destination prefixes, source and destination port ranges
//! (inclusive), protocol `value/mask` (mask `0xFF`: exact, `0x00`: any) and
//! an optional flags `value/mask` that is ignored here (the generator
//! separates fields with tabs). `trace_generator`
//! writes one packet per line: `src dst sport dport proto` with addresses as
//! decimal `u32`s (dotted quads are accepted too) and maybe more columns,
//! which are ignored. Both are IPv4; rules and keys come out IPv4-mapped.
//!
//! [`generate`] makes ClassBench-like sets without the seed files
//! ClassBench needs: prefix lengths, port ranges and protocols drawn from
//! mixes like the ACL, FW and IPC seeds', addresses from a small pool of
//! networks so that prefixes nest and share bits as real sets do.
//! [`generate_trace`] makes packets that mostly hit some rule.

use std::{collections::HashSet, fmt, io, net::Ipv4Addr, str::FromStr};

use super::classifier::{Key, Prefix, Rule, is_v4_mapped, map_v4};

/// A line of a filter set or trace that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub kind: ParseErrorKind,
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The line ends before a field.
    #[error("the {0} field is missing")]
    Missing(&'static str),
    /// An address or prefix does not parse.
    #[error("{field} `{text}` is not an IPv4 prefix (expected a.b.c.d/len, len at most 32)")]
    Prefix {
        /// Which field.
        field: &'static str,
        /// The text found.
        text: String,
    },
    /// A port range does not parse or is empty.
    #[error("{field} `{text}` is not a port range (expected LO : HI with 0 <= LO <= HI <= 65535)")]
    PortRange {
        /// Which field.
        field: &'static str,
        /// The text found.
        text: String,
    },
    /// The protocol is not `0xVV/0xMM`.
    #[error("protocol `{0}` is not VALUE/MASK in hex (e.g. 0x06/0xFF)")]
    Protocol(String),
    /// The protocol mask is neither exact nor any.
    #[error("protocol mask `{0}` is neither 0xFF (exact) nor 0x00 (any)")]
    ProtocolMask(String),
    /// Text after the last field.
    #[error("unexpected `{0}` after the last field")]
    Trailing(String),
    /// A trace column does not parse.
    #[error("{field} `{text}` is not {expected}")]
    Trace {
        /// Which column.
        field: &'static str,
        /// The text found.
        text: String,
        /// What was expected.
        expected: &'static str,
    },
}

fn at(line: usize) -> impl Fn(ParseErrorKind) -> ParseError {
    move |kind| ParseError { line, kind }
}

/// Reads a `db_generator` filter set: rule `i` is the `i`-th filter. Blank
/// lines and lines starting with `#` are skipped; fields may be separated
/// by tabs or spaces.
///
/// # Errors
/// The first line that is not a filter, with its number and the field.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, ParseError> {
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        rules.push(parse_rule(line).map_err(at(n + 1))?);
    }
    Ok(rules)
}

/// One filter line (trimmed, not empty).
pub fn parse_rule(line: &str) -> Result<Rule, ParseErrorKind> {
    let line = line.strip_prefix('@').unwrap_or(line);
    let joined = join_colons(line);
    let mut fields = joined.split_whitespace();
    let mut next = |name| fields.next().ok_or(ParseErrorKind::Missing(name));
    let src = parse_prefix("source prefix", next("source prefix")?)?;
    let dst = parse_prefix("destination prefix", next("destination prefix")?)?;
    let sport = parse_ports("source ports", next("source ports")?)?;
    let dport = parse_ports("destination ports", next("destination ports")?)?;
    let proto = parse_proto(next("protocol")?)?;
    // The flags field is optional and ignored; nothing may follow it.
    let _flags = fields.next();
    if let Some(extra) = fields.next() {
        return Err(ParseErrorKind::Trailing(extra.to_owned()));
    }
    Ok(Rule {
        src,
        dst,
        proto,
        sport,
        dport,
    })
}

/// Drops the blanks around `:` so that `0 : 65535` is one field.
fn join_colons(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut after_colon = false;
    for c in line.chars() {
        if c == ':' {
            out.truncate(out.trim_end().len());
            out.push(c);
            after_colon = true;
        } else if c.is_whitespace() && after_colon {
        } else {
            out.push(c);
            after_colon = false;
        }
    }
    out
}

fn parse_prefix(field: &'static str, text: &str) -> Result<Prefix, ParseErrorKind> {
    let bad = || ParseErrorKind::Prefix {
        field,
        text: text.to_owned(),
    };
    let (addr, len) = text.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > 32 {
        return Err(bad());
    }
    // db_generator may leave host bits set; they mean nothing.
    Ok(Prefix::v4(addr.into(), len))
}

fn parse_ports(field: &'static str, text: &str) -> Result<(u16, u16), ParseErrorKind> {
    let bad = || ParseErrorKind::PortRange {
        field,
        text: text.to_owned(),
    };
    let (lo, hi) = text.split_once(':').ok_or_else(bad)?;
    let lo: u16 = lo.parse().map_err(|_| bad())?;
    let hi: u16 = hi.parse().map_err(|_| bad())?;
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn parse_hex_u8(text: &str) -> Option<u8> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    u8::from_str_radix(digits, 16).ok()
}

fn parse_proto(text: &str) -> Result<Option<u8>, ParseErrorKind> {
    let bad = || ParseErrorKind::Protocol(text.to_owned());
    let (value, mask) = text.split_once('/').ok_or_else(bad)?;
    let value = parse_hex_u8(value).ok_or_else(bad)?;
    match parse_hex_u8(mask).ok_or_else(bad)? {
        0xff => Ok(Some(value)),
        0x00 => Ok(None),
        _ => Err(ParseErrorKind::ProtocolMask(mask.to_owned())),
    }
}

/// Reads a `trace_generator` trace: `src dst sport dport proto` per line,
/// addresses as decimal `u32` or dotted quads; further columns (the
/// generator's filter number) are ignored, as are blank lines.
///
/// # Errors
/// The first line that is not a packet, with its number and the column.
pub fn parse_trace(text: &str) -> Result<Vec<Key>, ParseError> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(parse_packet(line).map_err(at(n + 1))?);
    }
    Ok(keys)
}

/// One trace line (trimmed, not empty).
pub fn parse_packet(line: &str) -> Result<Key, ParseErrorKind> {
    let mut cols = line.split_whitespace();
    let mut next = |name| cols.next().ok_or(ParseErrorKind::Missing(name));
    let src = parse_addr("source address", next("source address")?)?;
    let dst = parse_addr("destination address", next("destination address")?)?;
    let sport = parse_num("source port", next("source port")?, "a port (0..65535)")?;
    let dport = parse_num(
        "destination port",
        next("destination port")?,
        "a port (0..65535)",
    )?;
    let proto = parse_num("protocol", next("protocol")?, "a protocol number (0..255)")?;
    Ok(Key::v4(src, dst, proto, sport, dport))
}

fn parse_addr(field: &'static str, text: &str) -> Result<u32, ParseErrorKind> {
    let parsed = if text.contains('.') {
        text.parse::<Ipv4Addr>().ok().map(u32::from)
    } else {
        text.parse::<u32>().ok()
    };
    parsed.ok_or_else(|| ParseErrorKind::Trace {
        field,
        text: text.to_owned(),
        expected: "an IPv4 address (decimal u32 or a.b.c.d)",
    })
}

fn parse_num<T: FromStr>(
    field: &'static str,
    text: &str,
    expected: &'static str,
) -> Result<T, ParseErrorKind> {
    text.parse().map_err(|_| ParseErrorKind::Trace {
        field,
        text: text.to_owned(),
        expected,
    })
}

fn v4_prefix_text(rule: usize, p: &Prefix) -> io::Result<String> {
    if p.len == 0 {
        // ::/0 has no IPv4 spelling; over IPv4 traffic it is 0.0.0.0/0.
        return Ok("0.0.0.0/0".to_owned());
    }
    if !p.is_v4() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("rule {rule}: {p} is IPv6; ClassBench filter sets are IPv4 only"),
        ));
    }
    Ok(p.to_string())
}

/// Writes `rules` as a `db_generator` filter set.
///
/// # Errors
/// An IPv6 prefix ([`io::ErrorKind::InvalidInput`]), or the writer's error.
pub fn write_rules(w: &mut impl io::Write, rules: &[Rule]) -> io::Result<()> {
    for (i, r) in rules.iter().enumerate() {
        let (proto, mask) = r.proto.map_or((0, 0), |p| (p, 0xff));
        writeln!(
            w,
            "@{}\t{}\t{} : {}\t{} : {}\t0x{proto:02X}/0x{mask:02X}\t0x0000/0x0000",
            v4_prefix_text(i, &r.src)?,
            v4_prefix_text(i, &r.dst)?,
            r.sport.0,
            r.sport.1,
            r.dport.0,
            r.dport.1,
        )?;
    }
    Ok(())
}

/// Writes `keys` as a trace: `src dst sport dport proto`, addresses as
/// decimal `u32`s, tab-separated.
///
/// # Errors
/// A key that is not IPv4 ([`io::ErrorKind::InvalidInput`]), or the
/// writer's error.
pub fn write_trace(w: &mut impl io::Write, keys: &[Key]) -> io::Result<()> {
    for (i, k) in keys.iter().enumerate() {
        if !is_v4_mapped(k.src) || !is_v4_mapped(k.dst) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("packet {i} is IPv6; ClassBench traces are IPv4 only"),
            ));
        }
        writeln!(
            w,
            "{}\t{}\t{}\t{}\t{}",
            k.src as u32, k.dst as u32, k.sport, k.dport, k.proto
        )?;
    }
    Ok(())
}

// ---- Generation ---------------------------------------------------------

/// Which kind of ClassBench seed a generated set resembles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Access control lists: long prefixes (/16../32, most destinations
    /// /32), exact destination ports, mostly TCP.
    Acl,
    /// Firewalls: many wildcard addresses and protocols, port ranges.
    Fw,
    /// IP chains: between the two.
    Ipc,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Self; 3] = [Self::Acl, Self::Fw, Self::Ipc];

    fn mix(self) -> &'static Mix {
        match self {
            Self::Acl => &ACL,
            Self::Fw => &FW,
            Self::Ipc => &IPC,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Acl => "acl",
            Self::Fw => "fw",
            Self::Ipc => "ipc",
        })
    }
}

/// A profile name other than `acl`, `fw` or `ipc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile `{0}` (expected acl, fw or ipc)")]
pub struct UnknownProfile(String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "acl" => Ok(Self::Acl),
            "fw" => Ok(Self::Fw),
            "ipc" => Ok(Self::Ipc),
            _ => Err(UnknownProfile(s.to_owned())),
        }
    }
}

/// A port range shape.
#[derive(Debug, Clone, Copy)]
enum Ports {
    Any,
    Exact,
    /// 1024 : 65535.
    High,
    /// 0 : 1023.
    Low,
    /// A short range, as `6000 : 6063`.
    Small,
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

/// Weights of prefix length ranges (weight, shortest, longest), of
/// protocols and of port shapes. A destination is a wildcard with its own
/// odds when the source is one: real sets seldom leave both open.
struct Mix {
    src_len: &'static [(u32, u8, u8)],
    dst_len: &'static [(u32, u8, u8)],
    /// Per mille: a wildcard destination given a wildcard source.
    both_wild: u64,
    proto: &'static [(u32, Option<u8>)],
    sport: &'static [(u32, Ports)],
    dport: &'static [(u32, Ports)],
}

const ACL: Mix = Mix {
    src_len: &[
        (15, 0, 0),
        (5, 8, 15),
        (20, 16, 23),
        (20, 24, 24),
        (15, 25, 31),
        (25, 32, 32),
    ],
    dst_len: &[
        (5, 0, 0),
        (5, 8, 15),
        (15, 16, 23),
        (15, 24, 24),
        (15, 25, 31),
        (45, 32, 32),
    ],
    both_wild: 20,
    proto: &[(70, Some(TCP)), (18, Some(UDP)), (4, Some(ICMP)), (8, None)],
    sport: &[
        (88, Ports::Any),
        (6, Ports::High),
        (3, Ports::Exact),
        (3, Ports::Small),
    ],
    dport: &[
        (45, Ports::Exact),
        (20, Ports::Any),
        (12, Ports::High),
        (8, Ports::Low),
        (15, Ports::Small),
    ],
};

const FW: Mix = Mix {
    src_len: &[
        (40, 0, 0),
        (10, 8, 15),
        (15, 16, 23),
        (10, 24, 24),
        (5, 25, 31),
        (20, 32, 32),
    ],
    dst_len: &[
        (30, 0, 0),
        (10, 8, 15),
        (15, 16, 23),
        (10, 24, 24),
        (5, 25, 31),
        (30, 32, 32),
    ],
    both_wild: 100,
    proto: &[
        (45, Some(TCP)),
        (20, Some(UDP)),
        (5, Some(ICMP)),
        (30, None),
    ],
    sport: &[
        (70, Ports::Any),
        (15, Ports::High),
        (5, Ports::Exact),
        (10, Ports::Small),
    ],
    dport: &[
        (30, Ports::Any),
        (35, Ports::Exact),
        (15, Ports::High),
        (5, Ports::Low),
        (15, Ports::Small),
    ],
};

const IPC: Mix = Mix {
    src_len: &[
        (25, 0, 0),
        (5, 8, 15),
        (20, 16, 23),
        (15, 24, 24),
        (10, 25, 31),
        (25, 32, 32),
    ],
    dst_len: &[
        (20, 0, 0),
        (5, 8, 15),
        (20, 16, 23),
        (15, 24, 24),
        (10, 25, 31),
        (30, 32, 32),
    ],
    both_wild: 50,
    proto: &[
        (55, Some(TCP)),
        (25, Some(UDP)),
        (5, Some(ICMP)),
        (15, None),
    ],
    sport: &[
        (80, Ports::Any),
        (10, Ports::High),
        (5, Ports::Exact),
        (5, Ports::Small),
    ],
    dport: &[
        (35, Ports::Any),
        (40, Ports::Exact),
        (10, Ports::High),
        (5, Ports::Low),
        (10, Ports::Small),
    ],
};

/// Ports that exact-port rules favour.
const WELL_KNOWN: [u16; 16] = [
    80, 443, 53, 22, 25, 110, 143, 123, 161, 389, 3306, 5432, 6379, 8080, 8443, 9090,
];

/// SplitMix64: small, seedable and good enough for test data.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(u64::from(hi - lo) + 1) as u32
    }

    /// An index into `0..n` skewed toward the start (a few networks hold
    /// most rules, as in real sets).
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n as u64);
        let b = self.below(n as u64);
        a.min(b) as usize
    }

    fn weighted<T: Copy>(&mut self, choices: &[(u32, T)]) -> T {
        let total: u32 = choices.iter().map(|c| c.0).sum();
        let mut x = self.below(u64::from(total)) as u32;
        for &(w, v) in choices {
            if x < w {
                return v;
            }
            x -= w;
        }
        choices[choices.len() - 1].1
    }
}

/// Networks that addresses are drawn from: a few hundred /16s and, under
/// each, a few /24s, so that prefixes nest and collide.
struct Pool {
    nets16: Vec<u32>,
}

impl Pool {
    fn new(rng: &mut Rng, count: usize) -> Self {
        let n = (count / 40).clamp(8, 4096);
        Self {
            nets16: (0..n).map(|_| rng.next_u32() & 0xffff_0000).collect(),
        }
    }

    fn address(&self, rng: &mut Rng) -> u32 {
        let net = self.nets16[rng.skewed(self.nets16.len())];
        // Third octet from a few values per /16; the host byte random.
        let third = (rng.skewed(16) as u32 * 37 + (net >> 16)) & 0xff;
        net | (third << 8) | (rng.next_u32() & 0xff)
    }
}

fn ports(rng: &mut Rng, shape: Ports) -> (u16, u16) {
    match shape {
        Ports::Any => (0, u16::MAX),
        Ports::Exact => {
            let p = if rng.below(10) < 7 {
                WELL_KNOWN[rng.below(WELL_KNOWN.len() as u64) as usize]
            } else {
                rng.between(1, 65535) as u16
            };
            (p, p)
        }
        Ports::High => (1024, u16::MAX),
        Ports::Low => (0, 1023),
        Ports::Small => {
            let lo = rng.between(1, 65000) as u16;
            let width = [1u16, 3, 7, 15, 63, 255][rng.below(6) as usize];
            (lo, lo.saturating_add(width))
        }
    }
}

/// `count` distinct ClassBench-like IPv4 rules from `seed` (the same seed
/// gives the same set).
pub fn generate(count: usize, seed: u64, profile: Profile) -> Vec<Rule> {
    let mut rng = Rng::new(seed);
    let mix = profile.mix();
    let src_pool = Pool::new(&mut rng, count);
    let dst_pool = Pool::new(&mut rng, count);
    let mut seen = HashSet::with_capacity(count);
    let mut rules = Vec::with_capacity(count);
    while rules.len() < count {
        let src_len = pick_len(&mut rng, mix.src_len);
        let dst_len = if src_len == 0 && rng.below(1000) >= mix.both_wild {
            // Not both open: draw the destination from the specific ranges.
            pick_len(&mut rng, &mix.dst_len[1..])
        } else {
            pick_len(&mut rng, mix.dst_len)
        };
        let proto = rng.weighted(mix.proto);
        let (sport, dport) = if proto == Some(ICMP) {
            ((0, u16::MAX), (0, u16::MAX))
        } else {
            let s = rng.weighted(mix.sport);
            let d = rng.weighted(mix.dport);
            (ports(&mut rng, s), ports(&mut rng, d))
        };
        let rule = Rule {
            src: Prefix::v4(src_pool.address(&mut rng), src_len),
            dst: Prefix::v4(dst_pool.address(&mut rng), dst_len),
            proto,
            sport,
            dport,
        };
        if seen.insert(rule) {
            rules.push(rule);
        }
    }
    rules
}

/// A prefix length from weighted ranges.
fn pick_len(rng: &mut Rng, choices: &[(u32, u8, u8)]) -> u8 {
    let total: u32 = choices.iter().map(|c| c.0).sum();
    let mut x = rng.below(u64::from(total)) as u32;
    for &(w, lo, hi) in choices {
        if x < w {
            return rng.between(u32::from(lo), u32::from(hi)) as u8;
        }
        x -= w;
    }
    0
}

/// A random IPv4 address inside `p` (any IPv4 address for `::/0`).
fn point_in(rng: &mut Rng, p: &Prefix) -> u32 {
    let len = p.len.saturating_sub(96);
    let host = if len == 32 { 0 } else { u32::MAX >> len };
    (p.addr as u32 & !host) | (rng.next_u32() & host)
}

fn port_in(rng: &mut Rng, (lo, hi): (u16, u16)) -> u16 {
    if lo > hi {
        lo
    } else {
        rng.between(u32::from(lo), u32::from(hi)) as u16
    }
}

/// `count` IPv4 packets from `seed`: nine in ten are a random point of a
/// random rule of `rules` (which may still match an earlier rule first),
/// the rest random addresses, ports and TCP/UDP/ICMP.
pub fn generate_trace(rules: &[Rule], count: usize, seed: u64) -> Vec<Key> {
    let mut rng = Rng::new(seed.rotate_left(17) ^ 0x7ace);
    (0..count)
        .map(|_| {
            if rules.is_empty() || rng.below(10) == 0 {
                let proto = [TCP, UDP, ICMP][rng.below(3) as usize];
                return Key::v4(
                    rng.next_u32(),
                    rng.next_u32(),
                    proto,
                    rng.next_u32() as u16,
                    rng.next_u32() as u16,
                );
            }
            let r = &rules[rng.below(rules.len() as u64) as usize];
            let proto = r
                .proto
                .unwrap_or_else(|| [TCP, UDP, ICMP, 47][rng.below(4) as usize]);
            let src = point_in(&mut rng, &r.src);
            let dst = point_in(&mut rng, &r.dst);
            let sport = port_in(&mut rng, r.sport);
            let dport = port_in(&mut rng, r.dport);
            Key {
                src: map_v4(src),
                dst: map_v4(dst),
                proto,
                sport,
                dport,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::classifier::{Classifier, RuleIndex, classify_linear};

    const SAMPLE: &str = "@192.168.0.0/16\t10.0.0.0/8\t0 : 65535\t1024 : 65535\t0x06/0xFF\t0x0000/0x0000\n\
        @0.0.0.0/0  1.2.3.4/32  53 : 53  0 : 65535  0x11/0xFF\n\
        \n\
        # a comment\n\
        @10.1.2.3/24 0.0.0.0/0 0:65535 80:80 0x00/0x00 0x1000/0x1000\n";

    #[test]
    fn parses_filters_with_tabs_or_spaces() {
        let rules = parse_rules(SAMPLE).unwrap();
        assert_eq!(
            rules,
            vec![
                Rule {
                    src: Prefix::v4(0xc0a8_0000, 16),
                    dst: Prefix::v4(0x0a00_0000, 8),
                    proto: Some(6),
                    sport: (0, 65535),
                    dport: (1024, 65535),
                },
                Rule {
                    src: Prefix::v4(0, 0),
                    dst: Prefix::v4(0x0102_0304, 32),
                    proto: Some(17),
                    sport: (53, 53),
                    dport: (0, 65535),
                },
                Rule {
                    src: Prefix::v4(0x0a01_0200, 24),
                    dst: Prefix::v4(0, 0),
                    proto: None,
                    sport: (0, 65535),
                    dport: (80, 80),
                },
            ]
        );
    }

    fn err(text: &str) -> String {
        parse_rules(text).unwrap_err().to_string()
    }

    #[test]
    fn filter_errors_name_line_and_field() {
        let good = "@1.0.0.0/8\t2.0.0.0/8\t0 : 65535\t0 : 65535\t0x06/0xFF\n";
        assert_eq!(
            err(&format!(
                "{good}@1.0.0.0/8 2.0.0.0/33 0 : 1 0 : 1 0x06/0xFF"
            )),
            "line 2: destination prefix `2.0.0.0/33` is not an IPv4 prefix (expected a.b.c.d/len, len at most 32)"
        );
        assert_eq!(
            err("@1.0.0.0 2.0.0.0/8 0 : 1 0 : 1 0x06/0xFF"),
            "line 1: source prefix `1.0.0.0` is not an IPv4 prefix (expected a.b.c.d/len, len at most 32)"
        );
        assert_eq!(
            err(&format!(
                "{good}\n{good}@1.0.0.0/8 2.0.0.0/8 0 : 1 9 : 8 0x06/0xFF"
            )),
            "line 4: destination ports `9:8` is not a port range (expected LO : HI with 0 <= LO <= HI <= 65535)"
        );
        assert_eq!(
            err("@1.0.0.0/8 2.0.0.0/8 0 : 70000 0 : 1 0x06/0xFF"),
            "line 1: source ports `0:70000` is not a port range (expected LO : HI with 0 <= LO <= HI <= 65535)"
        );
        assert_eq!(
            err("@1.0.0.0/8 2.0.0.0/8 0 : 1 0 : 1"),
            "line 1: the protocol field is missing"
        );
        assert_eq!(
            err("@1.0.0.0/8 2.0.0.0/8 0 : 1 0 : 1 6/0xFF"),
            "line 1: protocol `6/0xFF` is not VALUE/MASK in hex (e.g. 0x06/0xFF)"
        );
        assert_eq!(
            err("@1.0.0.0/8 2.0.0.0/8 0 : 1 0 : 1 0x06/0x0F"),
            "line 1: protocol mask `0x0F` is neither 0xFF (exact) nor 0x00 (any)"
        );
        assert_eq!(
            err("@1.0.0.0/8 2.0.0.0/8 0 : 1 0 : 1 0x06/0xFF 0x0/0x0 junk"),
            "line 1: unexpected `junk` after the last field"
        );
        let e = parse_rules("@x").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(matches!(
            e.kind,
            ParseErrorKind::Prefix {
                field: "source prefix",
                ..
            }
        ));
    }

    #[test]
    fn parses_traces_decimal_and_dotted() {
        let keys =
            parse_trace("3232235777\t167772161\t1024\t80\t6\t3\n\n10.0.0.1 192.168.1.1 53 53 17\n")
                .unwrap();
        assert_eq!(
            keys,
            vec![
                Key::v4(0xc0a8_0101, 0x0a00_0001, 6, 1024, 80),
                Key::v4(0x0a00_0001, 0xc0a8_0101, 17, 53, 53),
            ]
        );
        let e = parse_trace("1 2 3 4 6\n1 2 3 70000 6\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: destination port `70000` is not a port (0..65535)"
        );
        let e = parse_trace("1 2 3 4\n").unwrap_err();
        assert_eq!(e.to_string(), "line 1: the protocol field is missing");
        let e = parse_trace("1.2.3 2 3 4 5\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: source address `1.2.3` is not an IPv4 address (decimal u32 or a.b.c.d)"
        );
    }

    #[test]
    fn write_then_parse_round_trips() {
        for profile in Profile::ALL {
            let rules = generate(500, 7, profile);
            let mut text = Vec::new();
            write_rules(&mut text, &rules).unwrap();
            assert_eq!(
                parse_rules(std::str::from_utf8(&text).unwrap()).unwrap(),
                rules
            );
            let trace = generate_trace(&rules, 500, 8);
            let mut text = Vec::new();
            write_trace(&mut text, &trace).unwrap();
            assert_eq!(
                parse_trace(std::str::from_utf8(&text).unwrap()).unwrap(),
                trace
            );
        }
    }

    #[test]
    fn writing_ipv6_is_refused() {
        let mut rule = Rule::ANY;
        rule.dst = Prefix::v6(0xfd00 << 112, 64);
        let e = write_rules(&mut Vec::new(), &[Rule::ANY, rule]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("rule 1: fd00::/64 is IPv6"), "{e}");
        let e = write_trace(&mut Vec::new(), &[Key::default()]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn generation_is_seeded_and_profiles_differ() {
        assert_eq!(
            generate(100, 1, Profile::Acl),
            generate(100, 1, Profile::Acl)
        );
        assert_ne!(
            generate(100, 1, Profile::Acl),
            generate(100, 2, Profile::Acl)
        );
        let wild = |p| {
            generate(2000, 3, p)
                .iter()
                .filter(|r| r.src.len == 96 || r.proto.is_none())
                .count()
        };
        assert!(wild(Profile::Fw) > 2 * wild(Profile::Acl));
        assert_eq!("FW".parse::<Profile>(), Ok(Profile::Fw));
        assert!("x".parse::<Profile>().is_err());
    }

    #[test]
    fn traces_mostly_hit() {
        let rules = generate(2000, 5, Profile::Acl);
        let trace = generate_trace(&rules, 2000, 6);
        let c = Classifier::build(&rules);
        let hits = trace.iter().filter(|k| c.classify(k).is_some()).count();
        assert!(hits > 1700, "{hits}");
        let indexed: Vec<(RuleIndex, Rule)> = (0..).zip(rules.iter().copied()).collect();
        for k in &trace {
            assert_eq!(c.classify(k), classify_linear(&indexed, k));
        }
    }
}
