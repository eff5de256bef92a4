//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Every function here returns the ones'-complement *sum* folded to 16 bits,
//! not its complement, except [`update`], which returns a checksum field
//! value. A header's checksum field holds `!combine(&[...])`; a header whose
//! checksum is right sums (checksum field included) to `0xffff`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::IpProtocol;

/// Folds a wide ones'-complement accumulator to 16 bits with end-around carry.
///
/// `2^16 ≡ 1 (mod 2^16 - 1)`, so adding the high part to the low part keeps
/// the value modulo `0xffff`; a non-zero input never folds to zero.
#[inline]
const fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The ones'-complement sum of `bytes` taken as big-endian 16-bit words, an
/// odd final byte padded with a zero byte (RFC 1071 section 4.1), folded to
/// 16 bits and **not** inverted.
///
/// This is on the per-packet path, so it adds eight bytes at a time into a
/// 64-bit accumulator with end-around carry (RFC 1071 section 2(C), "parallel
/// summation"), in native byte order, and swaps once at the end: the sum is
/// independent of byte order up to that swap (RFC 1071 section 2(B)).
pub fn data(bytes: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let (sum, carry) = acc.overflowing_add(u64::from_ne_bytes(word));
        acc = sum + u64::from(carry);
    }
    // Fold to at most 33 bits so that the tail cannot overflow the
    // accumulator (after the loop it may be as large as `u64::MAX`).
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    let mut rest = chunks.remainder();
    if rest.len() >= 4 {
        acc += u64::from(u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc += u64::from(u16::from_ne_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        acc += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    // The native-order sum is the big-endian sum with its bytes swapped on a
    // little-endian machine; `from_be` swaps them back (and is a no-op on a
    // big-endian machine).
    u16::from_be(fold(acc))
}

/// The ones'-complement sum of partial sums (from [`data`] or the
/// pseudo-header functions), folded to 16 bits and not inverted.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The sum of the IPv4 pseudo-header for TCP and UDP (RFC 9293 section 3.1,
/// RFC 768): source address, destination address, zero, protocol, and the
/// TCP or UDP length (header plus data).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, len: u32) -> u16 {
    let src = u32::from(src);
    let dst = u32::from(dst);
    let acc = u64::from(src >> 16)
        + u64::from(src & 0xffff)
        + u64::from(dst >> 16)
        + u64::from(dst & 0xffff)
        + u64::from(u8::from(proto))
        + u64::from(len >> 16)
        + u64::from(len & 0xffff);
    fold(acc)
}

/// The sum of the IPv6 pseudo-header (RFC 8200 section 8.1): source address,
/// destination address, the 32-bit upper-layer packet length, three zero
/// bytes and the next-header value of the upper-layer protocol.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: IpProtocol, len: u32) -> u16 {
    let mut acc: u64 = 0;
    for segment in src.segments().into_iter().chain(dst.segments()) {
        acc += u64::from(segment);
    }
    acc += u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(u8::from(proto));
    fold(acc)
}

/// The new checksum field value after one 16-bit word covered by the checksum
/// changed from `old_word` to `new_word`, without summing the packet again.
///
/// RFC 1624 section 3, "Discussion":
///
/// > ```text
/// > HC  - old checksum in header
/// > HC' - new checksum in header
/// > m   - old value of a 16-bit field
/// > m'  - new value of a 16-bit field
/// >
/// >     HC' = ~(C + (-m) + m')    --    [Eqn. 3]
/// >         = ~(~HC + ~m + m')
/// > ```
///
/// Eqn. 3 is the form that does not turn a checksum into `-0` (`0xffff`)
/// when the sum of the header is `+0`, the fault of RFC 1141's eqn. 2. For a
/// field that is not aligned to a 16-bit word of the checksummed data (the
/// IPv4 TTL is the high byte of the TTL/protocol word) pass the whole word.
pub const fn update(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    let sum = (!old_checksum) as u64 + (!old_word) as u64 + new_word as u64;
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// RFC 1071 section 4.1 done the slow way: big-endian byte pairs into a
    /// 32-bit accumulator, folded at the end.
    fn naive(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < bytes.len() {
            sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
            i += 2;
        }
        if i < bytes.len() {
            sum += u32::from(bytes[i]) << 8;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(data(&bytes[..7]), naive(&bytes[..7]));
    }

    #[test]
    fn empty_and_zero_sum_to_zero() {
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0; 13]), 0);
        assert_eq!(combine(&[]), 0);
    }

    #[test]
    fn all_ones_is_negative_zero() {
        assert_eq!(data(&[0xff; 64]), 0xffff);
        assert_eq!(data(&[0xff; 3]), naive(&[0xff; 3]));
    }

    #[test]
    fn tail_after_a_full_accumulator() {
        // Found by the fuzzer: eight bytes of nearly all ones leave the
        // 64-bit accumulator close to `u64::MAX` before the tail is added.
        let bytes = [254, 255, 255, 255, 255, 255, 255, 255, 184, 16];
        assert_eq!(data(&bytes), naive(&bytes));
        for len in 0..40 {
            assert_eq!(
                data(&[0xff; 40][..len]),
                naive(&[0xff; 40][..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn combine_is_sum_of_parts() {
        let bytes: Vec<u8> = (0..=255).collect();
        let (a, b) = bytes.split_at(100);
        assert_eq!(combine(&[data(a), data(b)]), data(&bytes));
    }

    #[test]
    fn captured_ipv4_header() {
        // A real IPv4 header (ICMP echo request captured on a veth); its
        // checksum field 0x71bc makes the whole header sum to 0xffff.
        let header = [
            0x45, 0x00, 0x00, 0x54, 0x44, 0xe9, 0x40, 0x00, 0x40, 0x01, 0x71, 0xbc, 0xc0, 0x00,
            0x02, 0x01, 0xc0, 0x00, 0x02, 0x02,
        ];
        assert_eq!(data(&header), 0xffff);
        let mut zeroed = header;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(!data(&zeroed), 0x71bc);
    }

    #[test]
    fn update_rfc1624_corner_case() {
        // RFC 1624 section 4 (Examples): HC = 0xdd2f, m = 0x5555, m' = 0x3285
        // gives HC' = 0x0000 with eqn. 3, where eqn. 2 gave 0xffff.
        assert_eq!(update(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn pseudo_header_v4_known_value() {
        // 192.0.2.1 -> 192.0.2.2, TCP, length 40:
        // c000 + 0201 + c000 + 0202 + 0006 + 0028 = 1_8431 -> 8432.
        let sum = pseudo_header_v4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            IpProtocol::Tcp,
            40,
        );
        assert_eq!(sum, 0x8432);
    }

    #[test]
    fn pseudo_header_v6_counts_32_bit_length() {
        let a = Ipv6Addr::LOCALHOST;
        let small = pseudo_header_v6(a, a, IpProtocol::Udp, 8);
        let jumbo = pseudo_header_v6(a, a, IpProtocol::Udp, 0x0001_0008);
        assert_eq!(combine(&[small, 1]), jumbo);
    }

    proptest! {
        #[test]
        fn data_matches_naive(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            prop_assert_eq!(data(&bytes), naive(&bytes));
        }

        #[test]
        fn data_matches_naive_on_bytes_near_all_ones(
            bytes in proptest::collection::vec(
                prop_oneof![4 => Just(0xffu8), 1 => 0xf0u8..=0xff, 1 => any::<u8>()],
                0..256,
            ),
        ) {
            prop_assert_eq!(data(&bytes), naive(&bytes));
        }

        #[test]
        fn data_matches_naive_on_every_alignment(
            bytes in proptest::collection::vec(any::<u8>(), 0..96),
            skip in 0usize..8,
        ) {
            let skip = skip.min(bytes.len());
            prop_assert_eq!(data(&bytes[skip..]), naive(&bytes[skip..]));
        }

        #[test]
        fn data_of_split_is_combine(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            at in any::<prop::sample::Index>(),
        ) {
            // Splitting at an even offset keeps word boundaries.
            let at = at.index(bytes.len() / 2 + 1) * 2;
            let at = at.min(bytes.len());
            let (a, b) = bytes.split_at(at);
            prop_assert_eq!(combine(&[data(a), data(b)]), data(&bytes));
        }

        #[test]
        fn update_matches_recomputation_for_any_word(
            words in proptest::collection::vec(any::<u16>(), 1..32),
            index in any::<prop::sample::Index>(),
            new_word in any::<u16>(),
        ) {
            // A non-zero word keeps the data away from the all-zero sum, which
            // a real header (version nibble) never has.
            let mut words = words;
            words[0] |= 1;
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            let checksum = !data(&bytes);
            let i = index.index(words.len());
            let old_word = words[i];
            words[i] = if i == 0 { new_word | 1 } else { new_word };
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            prop_assert_eq!(update(checksum, old_word, words[i]), !data(&bytes));
        }
    }
}
