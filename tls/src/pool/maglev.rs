//! Maglev consistent hashing: client IP → endpoint, stable across workers
//! and minimally disrupted when endpoints come and go.
//!
//! The lookup table is the one of the Maglev paper (Eisenbud et al.,
//! "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
//! §3.4): each endpoint `i` gets a permutation of the `M` table slots,
//! `offset_i = h1(addr_i) mod M`, `skip_i = h2(addr_i) mod (M − 1) + 1`,
//! `perm_i[j] = (offset_i + j·skip_i) mod M`, and the endpoints take turns
//! claiming their next free preferred slot until the table is full. With
//! `M = 65537` (prime, so every skip generates the whole table) each
//! endpoint owns `M/N` slots give or take one, and removing one of `N`
//! endpoints moves little more than its own `1/N` of the keys.
//!
//! Two choices beyond the paper:
//!
//! - **Same table on every worker.** The hashes are fixed (no per-pool
//!   seed) and the endpoints are placed in address order, so every worker
//!   and every process that sees the same endpoint set builds the same
//!   table: a client keeps its endpoint whichever worker accepts it.
//! - **Ejection walks, it does not rebuild.** The table covers every
//!   configured endpoint and is rebuilt only when that set changes. When a
//!   key's slot names an endpoint that may not be used now (ejected, its
//!   probe in flight, or already tried by this connection), the lookup
//!   walks forward slot by slot to the first usable one. Slots are
//!   interleaved pseudo-randomly, so an ejected endpoint's clients spread
//!   evenly over the others, nobody else's client moves, and they all come
//!   home when it recovers. Rebuilding on ejection would instead shuffle a
//!   few keys of healthy endpoints twice per outage.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

/// The table size: the prime from the paper's evaluation.
pub(super) const TABLE_SIZE: usize = 65537;

/// A Maglev lookup table over endpoint ids: 256 KiB per pool.
#[derive(Clone)]
pub(super) struct Maglev {
    /// `TABLE_SIZE` endpoint ids, or empty when there are no endpoints.
    table: Box<[u32]>,
}

impl fmt::Debug for Maglev {
    // The table itself is 65537 numbers: show its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Maglev")
            .field("slots", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl Maglev {
    /// Builds the table for `(address, id)` members; the ids may come in any
    /// order, placement follows address order. Duplicated addresses must
    /// have been removed.
    pub(super) fn build(members: &[(SocketAddr, u32)]) -> Self {
        if members.is_empty() {
            return Self {
                table: Box::new([]),
            };
        }
        let mut members = members.to_vec();
        members.sort_unstable_by_key(|(addr, _)| *addr);
        let m = TABLE_SIZE as u64;
        // (offset, skip, next index j) per member.
        let mut perms: Vec<(u64, u64, u64)> = members
            .iter()
            .map(|(addr, _)| {
                let words = addr_words(addr);
                let offset = hash(&words, H1_SEED) % m;
                let skip = hash(&words, H2_SEED) % (m - 1) + 1;
                (offset, skip, 0)
            })
            .collect();
        let mut table = vec![u32::MAX; TABLE_SIZE];
        let mut filled = 0;
        'fill: loop {
            for (perm, (_, id)) in perms.iter_mut().zip(&members) {
                let (offset, skip, next) = perm;
                let mut slot = ((*offset + *next * *skip) % m) as usize;
                while table[slot] != u32::MAX {
                    *next += 1;
                    slot = ((*offset + *next * *skip) % m) as usize;
                }
                table[slot] = *id;
                *next += 1;
                filled += 1;
                if filled == TABLE_SIZE {
                    break 'fill;
                }
            }
        }
        Self {
            table: table.into_boxed_slice(),
        }
    }

    /// The endpoint ids from `client`'s home slot onward, wrapping once
    /// around the table; empty for an empty table.
    pub(super) fn walk(&self, client: IpAddr) -> impl Iterator<Item = u32> + '_ {
        let len = self.table.len();
        let home = if len == 0 {
            0
        } else {
            (hash(&ip_words(client), KEY_SEED) % len as u64) as usize
        };
        (0..len).map(move |step| self.table[(home + step) % len])
    }
}

const H1_SEED: u64 = 0x6d61_676c_6576_0001;
const H2_SEED: u64 = 0x6d61_676c_6576_0002;
const KEY_SEED: u64 = 0x6d61_676c_6576_0003;

/// An IP as hash words: the family, then the address. IPv4-mapped IPv6
/// addresses count as the IPv4 address, so dual-stack sockets agree.
fn ip_words(ip: IpAddr) -> [u64; 3] {
    match ip.to_canonical() {
        IpAddr::V4(a) => [4, u64::from(u32::from(a)), 0],
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            [6, (bits >> 64) as u64, bits as u64]
        }
    }
}

fn addr_words(addr: &SocketAddr) -> [u64; 4] {
    let [family, hi, lo] = ip_words(addr.ip());
    [family, hi, lo, u64::from(addr.port())]
}

/// Hashes words with murmur3's 64-bit finaliser after each one: fixed,
/// portable and well mixed, which is all Maglev needs (not DoS-resistant;
/// the keys are client IPs mapped onto a fixed table, not a hash map).
fn hash(words: &[u64], seed: u64) -> u64 {
    words
        .iter()
        .fold(seed, |h, w| fmix64(h ^ fmix64(w.wrapping_add(seed))))
}

const fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn members(n: u32) -> Vec<(SocketAddr, u32)> {
        (0..n)
            .map(|i| (SocketAddr::from(([10, 0, 0, i as u8 + 1], 8080)), i))
            .collect()
    }

    fn owner(t: &Maglev, ip: IpAddr) -> u32 {
        t.walk(ip).next().expect("non-empty table")
    }

    #[test]
    fn each_endpoint_owns_a_fair_share_of_slots() {
        for n in [1u32, 2, 3, 7, 100] {
            let t = Maglev::build(&members(n));
            let mut counts = vec![0usize; n as usize];
            for id in t.table.iter() {
                counts[*id as usize] += 1;
            }
            let fair = TABLE_SIZE / n as usize;
            for c in counts {
                assert!(c.abs_diff(fair) <= 1, "n={n}: {c} vs {fair}");
            }
        }
    }

    #[test]
    fn placement_ignores_member_order_and_ids_follow_addresses() {
        let fwd = members(5);
        let mut rev = fwd.clone();
        rev.reverse();
        assert_eq!(Maglev::build(&fwd).table, Maglev::build(&rev).table);
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let t = Maglev::build(&members(7));
        for i in 0..100u8 {
            let v4 = Ipv4Addr::new(192, 0, 2, i);
            assert_eq!(
                owner(&t, IpAddr::V4(v4)),
                owner(&t, IpAddr::V6(v4.to_ipv6_mapped()))
            );
        }
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(owner(&t, v6) < 7);
    }

    #[test]
    fn empty_table_walks_nowhere() {
        let t = Maglev::build(&[]);
        assert_eq!(t.walk(IpAddr::V4(Ipv4Addr::LOCALHOST)).count(), 0);
    }
}
