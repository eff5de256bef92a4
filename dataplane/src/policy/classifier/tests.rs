//! Unit tests and the differential property tests against
//! [`classify_linear`].

use proptest::prelude::*;

use super::*;

const TCP: u8 = 6;
const UDP: u8 = 17;

fn v4(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

fn rule(src: Prefix, dst: Prefix, proto: Option<u8>, sport: (u16, u16), dport: (u16, u16)) -> Rule {
    Rule {
        src,
        dst,
        proto,
        sport,
        dport,
    }
}

fn key4(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Key {
    Key::v4(v4(src), v4(dst), proto, sport, dport)
}

const ALL: (u16, u16) = (0, u16::MAX);

#[test]
fn prefix_constructors_clear_host_bits() {
    let p = Prefix::v4(v4([10, 1, 2, 3]), 8);
    assert_eq!(
        p,
        Prefix {
            addr: map_v4(v4([10, 0, 0, 0])),
            len: 104
        }
    );
    assert_eq!(p.to_string(), "10.0.0.0/8");
    let p = Prefix::v6(0xfd00_0000_0000_0000_0000_0000_0000_0001, 64);
    assert_eq!(p.addr, 0xfd00 << 112);
    assert_eq!(p.to_string(), "fd00::/64");
    assert_eq!(Prefix::new(u128::MAX, 0), Prefix::ANY);
    assert_eq!(Prefix::new(u128::MAX, 128).addr, u128::MAX);
    assert!(Prefix::v4(v4([192, 168, 0, 0]), 16).contains(map_v4(v4([192, 168, 7, 9]))));
    assert!(!Prefix::v4(v4([192, 168, 0, 0]), 16).contains(map_v4(v4([192, 169, 0, 0]))));
}

#[test]
fn empty_classifier_matches_nothing() {
    let c = Classifier::new();
    assert!(c.is_empty());
    assert_eq!(c.classify(&Key::default()), None);
    assert_eq!(c.stats().tables, 0);
}

#[test]
fn ports_are_inclusive_ranges() {
    let c = Classifier::build(&[
        rule(Prefix::ANY, Prefix::ANY, Some(TCP), ALL, (80, 80)),
        rule(
            Prefix::ANY,
            Prefix::ANY,
            Some(TCP),
            (1024, 65535),
            (8000, 8080),
        ),
        rule(Prefix::ANY, Prefix::ANY, Some(UDP), (53, 53), ALL),
    ]);
    let k = |proto, sport, dport| key4([1, 1, 1, 1], [2, 2, 2, 2], proto, sport, dport);
    assert_eq!(c.classify(&k(TCP, 5000, 80)), Some(0));
    assert_eq!(c.classify(&k(TCP, 5000, 81)), None);
    assert_eq!(c.classify(&k(TCP, 1024, 8000)), Some(1));
    assert_eq!(c.classify(&k(TCP, 65535, 8080)), Some(1));
    assert_eq!(c.classify(&k(TCP, 1023, 8000)), None);
    assert_eq!(c.classify(&k(TCP, 2000, 8081)), None);
    assert_eq!(c.classify(&k(UDP, 53, 1)), Some(2));
    assert_eq!(c.classify(&k(UDP, 54, 1)), None);
    // Protocol is exact when given.
    assert_eq!(c.classify(&k(UDP, 5000, 80)), None);
}

#[test]
fn empty_port_range_matches_nothing() {
    let c = Classifier::build(&[rule(Prefix::ANY, Prefix::ANY, None, ALL, (10, 9))]);
    assert_eq!(
        c.classify(&key4([1, 1, 1, 1], [2, 2, 2, 2], TCP, 1, 9)),
        None
    );
    assert_eq!(
        c.classify(&key4([1, 1, 1, 1], [2, 2, 2, 2], TCP, 1, 10)),
        None
    );
}

#[test]
fn wildcards_and_longest_prefix_do_not_beat_priority() {
    let c = Classifier::build(&[
        rule(
            Prefix::v4(v4([10, 0, 0, 0]), 8),
            Prefix::ANY,
            None,
            ALL,
            ALL,
        ),
        rule(
            Prefix::v4(v4([10, 1, 2, 3]), 32),
            Prefix::v4(v4([10, 9, 0, 0]), 16),
            Some(TCP),
            ALL,
            (443, 443),
        ),
        Rule::ANY,
    ]);
    // The /32 rule matches too, but rule 0 comes first.
    assert_eq!(
        c.classify(&key4([10, 1, 2, 3], [10, 9, 1, 1], TCP, 1, 443)),
        Some(0)
    );
    assert_eq!(
        c.classify_from(&key4([10, 1, 2, 3], [10, 9, 1, 1], TCP, 1, 443), 1),
        Some(1)
    );
    assert_eq!(
        c.classify_from(&key4([10, 1, 2, 3], [10, 9, 1, 1], TCP, 1, 443), 2),
        Some(2)
    );
    assert_eq!(
        c.classify_from(&key4([10, 1, 2, 3], [10, 9, 1, 1], TCP, 1, 443), 3),
        None
    );
    assert_eq!(
        c.classify(&key4([11, 1, 2, 3], [10, 9, 1, 1], TCP, 1, 443)),
        Some(2)
    );
}

#[test]
fn v4_and_v6_never_cross_except_via_any() {
    let v6 = |a: u128, len| Prefix::v6(a, len);
    let c = Classifier::build(&[
        // IPv4 "everything" is ::ffff:0:0/96: IPv4 only.
        rule(Prefix::v4(0, 0), Prefix::v4(0, 0), None, ALL, (1, 1)),
        // A short IPv6 prefix that would cover the mapped block by its bits.
        rule(v6(0, 8), v6(0, 8), None, ALL, (2, 2)),
        rule(v6(0, 1), Prefix::ANY, None, ALL, (3, 3)),
        // ::/0 covers both.
        rule(Prefix::ANY, Prefix::ANY, None, ALL, (4, 4)),
        rule(v6(0xfd00 << 112, 16), Prefix::ANY, None, ALL, (5, 5)),
    ]);
    let k4 = |dport| key4([10, 0, 0, 1], [10, 0, 0, 2], TCP, 1, dport);
    let k6 = |src: u128, dport| Key {
        src,
        dst: 0x2001 << 112,
        proto: TCP,
        sport: 1,
        dport,
    };
    assert_eq!(c.classify(&k4(1)), Some(0));
    assert_eq!(c.classify(&k4(2)), None);
    assert_eq!(c.classify(&k4(3)), None);
    assert_eq!(c.classify(&k4(4)), Some(3));
    assert_eq!(c.classify(&k6(0xfd00 << 112, 1)), None);
    assert_eq!(c.classify(&k6(1, 2)), None, "dst 2001:: is outside ::/8");
    assert_eq!(
        c.classify(&Key {
            src: 1,
            dst: 1,
            proto: TCP,
            sport: 1,
            dport: 2
        }),
        Some(1)
    );
    assert_eq!(c.classify(&k6(1, 3)), Some(2));
    assert_eq!(c.classify(&k6(0xfd00 << 112, 4)), Some(3));
    assert_eq!(c.classify(&k6(0xfd00 << 112, 5)), Some(4));
    assert!(!v6(0, 8).contains(map_v4(1)));
    assert!(Prefix::ANY.contains(map_v4(1)));
    assert!(!Prefix::v4(0, 0).contains(0xfd00 << 112));
}

#[test]
fn insert_and_remove_online() {
    let mut c = Classifier::new();
    let k = key4([10, 0, 0, 1], [10, 0, 0, 2], TCP, 1000, 80);
    c.insert(10, Rule::ANY);
    assert_eq!(c.classify(&k), Some(10));
    c.insert(
        5,
        rule(
            Prefix::v4(v4([10, 0, 0, 0]), 24),
            Prefix::ANY,
            Some(TCP),
            ALL,
            (80, 80),
        ),
    );
    assert_eq!(c.classify(&k), Some(5));
    c.insert(
        7,
        rule(
            Prefix::ANY,
            Prefix::v4(v4([10, 0, 0, 2]), 32),
            None,
            ALL,
            ALL,
        ),
    );
    assert_eq!(c.classify(&k), Some(5));
    assert_eq!(c.classify_from(&k, 6), Some(7));
    assert_eq!(c.len(), 3);
    assert!(c.remove(5));
    assert!(!c.remove(5));
    assert_eq!(c.classify(&k), Some(7));
    assert!(c.remove(7));
    assert_eq!(c.classify(&k), Some(10));
    // Replacing a rule at an index.
    c.insert(10, rule(Prefix::ANY, Prefix::ANY, Some(UDP), ALL, ALL));
    assert_eq!(c.len(), 1);
    assert_eq!(c.classify(&k), None);
    assert!(c.remove(10));
    assert!(c.is_empty());
    assert_eq!(c.classify(&k), None);
    assert_eq!(c.stats().tables, 0);
}

/// Each short-prefix index reaches, from every /16 block, exactly the
/// rules of its side's /8 and /16 tables that a key of that block may
/// match by that address, in index order: a block with /16 rules of its
/// own reaches those and the /8 rules holding addresses of the block; a
/// block without, every /8 rule of its /8 block. Rules that can match no
/// IPv4 key (an IPv6 prefix, an empty port range) are left to the
/// tables. Pages are given back when empty.
fn short_is_consistent(c: &Classifier) -> bool {
    use std::collections::BTreeMap;
    let v4 = |p: &Prefix| p.len == 0 || p.is_v4();
    c.short.iter().enumerate().all(|(side, index)| {
        let mut sixteen: BTreeMap<u32, Vec<RuleIndex>> = BTreeMap::new();
        let mut eight: BTreeMap<u32, Vec<(RuleIndex, Prefix)>> = BTreeMap::new();
        for (&i, &(r, id)) in &c.rules {
            let Some((s, bits)) = c.tables[id as usize].tuple().short_side() else {
                continue;
            };
            let p = if side == 0 { r.src } else { r.dst };
            let ports = r.sport.0 <= r.sport.1 && r.dport.0 <= r.dport.1;
            if s != side || !(v4(&r.src) && v4(&r.dst) && p.is_v4() && ports) {
                continue;
            }
            let a = p.addr as u32;
            if bits == 16 {
                sixteen.entry(a >> 16).or_default().push(i);
            } else {
                eight.entry(a >> 24).or_default().push((i, p));
            }
        }
        let holds = |p: &Prefix, block: u32| {
            (p.addr as u32 ^ (block << 16)) & mask(p.len) as u32 & 0xffff_0000 == 0
        };
        let mut want: BTreeMap<u32, Vec<RuleIndex>> = BTreeMap::new();
        for (&b, rules) in &eight {
            for block in b << 8..(b + 1) << 8 {
                if !sixteen.contains_key(&block) {
                    want.insert(block, rules.iter().map(|r| r.0).collect());
                }
            }
        }
        for (&block, own) in &sixteen {
            let copies = eight.get(&(block >> 8)).into_iter().flatten();
            let covering = copies.filter(|(_, p)| holds(p, block)).map(|r| r.0);
            want.insert(block, own.iter().copied().chain(covering).collect());
        }
        want.values_mut().for_each(|v| v.sort_unstable());
        let got: BTreeMap<_, _> = index
            .occupied()
            .into_iter()
            .map(|block| (block, index.reachable(block)))
            .collect();
        got == want && index.pages_in_use_are_needed()
    })
}

#[test]
fn short_prefix_tables_are_served_by_their_index_in_step_with_updates() {
    let mut c = Classifier::new();
    let any4 = Prefix::v4(0, 0);
    let k = key4([10, 1, 2, 3], [192, 168, 1, 1], TCP, 1000, 80);
    let elsewhere = key4([10, 2, 0, 1], [192, 168, 1, 1], TCP, 1000, 80);
    let udp = key4([10, 1, 2, 3], [192, 168, 1, 1], UDP, 1000, 80);
    // Tables keyed on a source /16, a source /8 and a destination /16
    // alone; the /8 rule comes later with a lower index, so the /16 leaf
    // takes a copy of it.
    c.insert(
        30,
        rule(Prefix::v4(v4([10, 1, 0, 0]), 16), any4, None, ALL, ALL),
    );
    c.insert(
        20,
        rule(Prefix::v4(v4([10, 0, 0, 0]), 8), any4, Some(TCP), ALL, ALL),
    );
    c.insert(
        10,
        rule(
            any4,
            Prefix::v4(v4([192, 168, 0, 0]), 16),
            Some(UDP),
            ALL,
            ALL,
        ),
    );
    assert_eq!(c.order.iter().filter(|h| h.short).count(), 3);
    assert!(short_is_consistent(&c));
    assert_eq!(c.classify(&k), Some(20));
    assert_eq!(c.classify_from(&k, 21), Some(30));
    assert_eq!(c.classify(&elsewhere), Some(20));
    assert_eq!(c.classify(&udp), Some(10));
    // An IPv6 rule in a table of that shape is left to the table, and an
    // IPv6 key finds it there.
    let v6 = Prefix::v6((0xfd00 << 112) | 0xab0, 124);
    c.insert(40, rule(v6, Prefix::ANY, None, ALL, ALL));
    let k6 = Key {
        src: (0xfd00 << 112) | 0xab5,
        dst: 1,
        proto: TCP,
        sport: 1,
        dport: 2,
    };
    assert_eq!(c.classify(&k6), Some(40));
    assert!(short_is_consistent(&c));
    // Removals in another order than the inserts.
    assert!(c.remove(20));
    assert!(short_is_consistent(&c));
    assert_eq!(c.classify(&k), Some(30));
    assert_eq!(c.classify(&elsewhere), None);
    assert!(c.remove(30));
    assert!(short_is_consistent(&c));
    assert_eq!(c.classify(&k), None);
    assert_eq!(c.classify(&udp), Some(10));
    assert!(c.remove(10));
    assert!(c.remove(40));
    assert!(c.is_empty());
    assert!(c.short.iter().all(ShortIndex::is_empty));
    assert_eq!(c.classify(&udp), None);
}

#[test]
fn u32_max_is_a_valid_index() {
    let mut c = Classifier::new();
    c.insert(u32::MAX, Rule::ANY);
    let k = Key::default();
    assert_eq!(c.classify(&k), Some(u32::MAX));
    assert_eq!(c.classify_from(&k, u32::MAX), Some(u32::MAX));
}

#[test]
fn collisions_split_tables() {
    // 200 rules on one /16 pair that differ in the last bits: the first
    // relaxed table would hold them all in one bucket; splits spread them.
    let rules: Vec<Rule> = (0..200u32)
        .map(|i| {
            let len = 24 + (i % 9) as u8;
            rule(
                Prefix::v4(v4([10, 1, 0, 0]) | (i << 4), len),
                Prefix::v4(v4([10, 2, 0, 0]), 16),
                Some(TCP),
                ALL,
                (i as u16 % 7, 1000),
            )
        })
        .collect();
    let c = Classifier::build(&rules);
    let stats = c.stats();
    assert!(stats.max_bucket <= COLLISION_LIMIT, "{stats:?}");
    assert!(stats.tables < 20, "{stats:?}");
    let indexed: Vec<_> = (0..).zip(rules.iter().copied()).collect();
    for i in 0..200u32 {
        let k = key4([10, 1, 0, 0], [10, 2, 3, 4], TCP, 9, 500);
        let k = Key {
            src: map_v4(v4([10, 1, 0, 0]) | (i << 4) | 1),
            ..k
        };
        assert_eq!(c.classify(&k), classify_linear(&indexed, &k));
    }
}

#[test]
fn identical_rules_stay_correct() {
    // Nothing to split on: the bucket grows past the limit and still works.
    let rules = vec![Rule::ANY; 50];
    let mut c = Classifier::build(&rules);
    assert_eq!(c.classify(&Key::default()), Some(0));
    for i in 0..49 {
        assert!(c.remove(i));
        assert_eq!(c.classify(&Key::default()), Some(i + 1));
    }
    assert_eq!(c.stats().max_bucket, 1);
}

#[test]
fn stats_count_rules_and_memory() {
    let rules: Vec<Rule> = (0..1000u32)
        .map(|i| {
            rule(
                Prefix::v4(i << 8, 24),
                Prefix::ANY,
                Some(TCP),
                ALL,
                (80, 80),
            )
        })
        .collect();
    let s = Classifier::build(&rules).stats();
    assert_eq!(s.rules, 1000);
    assert!(s.tables >= 1 && s.buckets >= 100, "{s:?}");
    assert!(s.memory_bytes > 1000 * 48, "{s:?}");
}

#[test]
fn an_early_catch_all_is_probed_first_and_a_default_rule_is_not() {
    let specific = |i: u8, dport| {
        rule(
            Prefix::v4(v4([10, 0, i, 0]), 24),
            Prefix::v4(v4([192, 168, i, 0]), 24),
            Some(TCP),
            ALL,
            (dport, dport),
        )
    };
    // Rule 10 leaves both addresses open: a match there bounds the rest.
    let ssh = rule(Prefix::ANY, Prefix::ANY, Some(TCP), ALL, (22, 22));
    let mut rules: Vec<Rule> = (0..100).map(|i| specific(i, 80)).collect();
    rules[10] = ssh;
    let c = Classifier::build(&rules);
    assert_eq!(c.first, 1);
    assert!(c.order[0].first);
    assert!(c.tables[c.order[0].id as usize].tuple().is_catch_all());
    assert!(c.order[1..].iter().all(|h| !h.first));
    let all = indexed(&rules);
    let keys = [
        (
            key4([10, 0, 5, 1], [192, 168, 5, 9], TCP, 1000, 80),
            Some(5),
        ),
        (
            key4([10, 0, 50, 1], [192, 168, 50, 9], TCP, 1000, 22),
            Some(10),
        ),
        (
            key4([10, 0, 5, 1], [192, 168, 5, 9], TCP, 1000, 22),
            Some(10),
        ),
        (
            key4([10, 0, 50, 1], [192, 168, 50, 9], TCP, 1000, 80),
            Some(50),
        ),
        (key4([10, 0, 50, 1], [192, 168, 50, 9], UDP, 1000, 22), None),
    ];
    for (k, want) in keys {
        assert_eq!(c.classify(&k), want, "{k:?}");
        assert_eq!(c.classify(&k), classify_linear(&all, &k));
    }
    assert_eq!(c.classify_from(&keys[1].0, 11), None);

    // Online: it goes when the rule does, and comes back with it.
    let mut c = c;
    c.remove(10);
    assert_eq!(c.first, 0);
    assert_eq!(c.classify(&keys[1].0), None);
    c.insert(10, ssh);
    assert_eq!(c.first, 1);
    assert_eq!(c.classify(&keys[1].0), Some(10));

    // A tier's default rule, last and matching everything, bounds
    // nothing: it is probed in its turn.
    let mut tier: Vec<Rule> = (0..100).map(|i| specific(i, 80)).collect();
    tier.push(Rule::ANY);
    let c = Classifier::build(&tier);
    assert_eq!(c.first, 0);
    assert_eq!(c.classify(&keys[1].0), Some(100));
    assert_eq!(c.classify(&keys[0].0), Some(5));
}

// ---- Differential property tests ----------------------------------------

/// A few networks so that random prefixes nest and collide.
const NETS4: [u32; 4] = [0x0a00_0000, 0x0a01_0000, 0xc0a8_0100, 0xac10_0000];
const NETS6: [u128; 2] = [0xfd00 << 112, 0x2001_0db8 << 96];

fn prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        2 => Just(Prefix::ANY),
        1 => Just(Prefix::v4(0, 0)),
        6 => (0..NETS4.len(), any::<u32>(), 0u8..=32)
            .prop_map(|(n, bits, len)| Prefix::v4(NETS4[n] | (bits & 0x0000_ffff), len)),
        2 => (0..NETS6.len(), any::<u128>(), 0u8..=128)
            .prop_map(|(n, bits, len)| Prefix::v6(NETS6[n] | (bits & u128::from(u64::MAX)), len)),
    ]
}

fn port_range() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        3 => Just(ALL),
        3 => (0u16..100).prop_map(|p| (p, p)),
        1 => Just((1024, 65535)),
        2 => (0u16..100, 0u16..20).prop_map(|(lo, w)| (lo, lo.saturating_add(w))),
        1 => (0u16..100, 0u16..100),
    ]
}

fn rule_strategy() -> impl Strategy<Value = Rule> {
    (
        prefix(),
        prefix(),
        prop_oneof![
            Just(None),
            Just(Some(TCP)),
            Just(Some(UDP)),
            Just(Some(1u8))
        ],
        port_range(),
        port_range(),
    )
        .prop_map(|(src, dst, proto, sport, dport)| Rule {
            src,
            dst,
            proto,
            sport,
            dport,
        })
}

/// A random point of a prefix, v4 for `::/0` half of the time.
fn point(p: &Prefix, bits: u128) -> u128 {
    let base = if p.len == 0 && bits & 1 == 0 {
        map_v4(bits as u32)
    } else {
        p.addr
    };
    let len = if p.len == 0 && bits & 1 == 0 {
        96
    } else {
        p.len
    };
    base | (bits & !mask(len))
}

fn port_in(r: (u16, u16), x: u16) -> u16 {
    if r.0 > r.1 {
        x
    } else {
        r.0 + (u32::from(x) % (u32::from(r.1 - r.0) + 1)) as u16
    }
}

/// Keys aimed at `rules` (a random point of a random rule, with a field
/// sometimes nudged) plus some entirely random ones.
fn keys_for(rules: &[Rule], seeds: &[(usize, u128, u128, u16, u16, u8, u8)]) -> Vec<Key> {
    seeds
        .iter()
        .map(|&(pick, a, b, sp, dp, proto, nudge)| {
            if rules.is_empty() || nudge % 8 == 7 {
                let src = if a & 2 == 0 { map_v4(a as u32) } else { a };
                return Key {
                    src,
                    dst: map_v4(b as u32),
                    proto: proto % 20,
                    sport: sp % 200,
                    dport: dp % 200,
                };
            }
            let r = &rules[pick % rules.len()];
            let mut k = Key {
                src: point(&r.src, a),
                dst: point(&r.dst, b),
                proto: r.proto.unwrap_or(proto % 20),
                sport: port_in(r.sport, sp),
                dport: port_in(r.dport, dp),
            };
            match nudge % 8 {
                0 => k.dport = k.dport.wrapping_add(1),
                1 => k.sport = k.sport.wrapping_sub(1),
                2 => k.proto ^= 1,
                3 => k.src ^= 1 << (a % 128),
                _ => {}
            }
            k
        })
        .collect()
}

type KeySeed = (usize, u128, u128, u16, u16, u8, u8);

fn key_seeds(n: usize) -> impl Strategy<Value = Vec<KeySeed>> {
    prop::collection::vec(
        (
            any::<usize>(),
            any::<u128>(),
            any::<u128>(),
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
        ),
        n,
    )
}

/// The probe order is sorted (tables probed first at its head, each part
/// by smallest index) and names every non-empty table once. IPv4 keys
/// walk the same order past the first tables, with the tables
/// the short-prefix indices serve left out but the first.
fn order_is_consistent(c: &Classifier) -> bool {
    let rest = &c.order[c.first..];
    let first_short = rest.iter().position(|h| h.short);
    let walk4: Vec<Hot> = (0..)
        .zip(rest)
        .filter(|&(i, h)| !h.short || Some(i) == first_short)
        .map(|(_, h)| *h)
        .collect();
    c.order.is_sorted_by_key(rank)
        && c.first == c.order.iter().filter(|h| h.first).count()
        && c.order.len() == c.tables.iter().filter(|t| !t.is_empty()).count()
        && c.walk4 == walk4
}

fn indexed(rules: &[Rule]) -> Vec<(RuleIndex, Rule)> {
    (0..).zip(rules.iter().copied()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn classify_matches_linear(
        rules in prop::collection::vec(rule_strategy(), 0..300),
        seeds in key_seeds(64),
        limit in prop_oneof![Just(COLLISION_LIMIT), 1usize..4],
    ) {
        let mut c = Classifier::with_collision_limit(limit);
        for (i, r) in rules.iter().enumerate() {
            c.insert(i as RuleIndex, *r);
        }
        let all = indexed(&rules);
        prop_assert_eq!(c.len(), rules.len());
        prop_assert!(order_is_consistent(&c));
        prop_assert!(short_is_consistent(&c));
        for k in keys_for(&rules, &seeds) {
            let want = classify_linear(&all, &k);
            prop_assert_eq!(c.classify(&k), want, "key {:?}", k);
            // classify_from: against the linear scan over indices >= min.
            if let Some(w) = want {
                for min in [w, w + 1, w + 7, w / 2] {
                    let above: Vec<_> = all.iter().filter(|(i, _)| *i >= min).copied().collect();
                    prop_assert_eq!(c.classify_from(&k, min), classify_linear(&above, &k), "key {:?} min {}", k, min);
                }
            }
        }
        prop_assert_eq!(Classifier::build(&rules).stats().rules, rules.len());
    }

    #[test]
    fn online_updates_match_linear(
        rules in prop::collection::vec(rule_strategy(), 0..300),
        ops in prop::collection::vec((any::<bool>(), 0u32..400, rule_strategy()), 0..200),
        seeds in key_seeds(48),
    ) {
        let mut c = Classifier::build(&rules);
        let mut model: std::collections::BTreeMap<RuleIndex, Rule> = indexed(&rules).into_iter().collect();
        for (i, (insert, index, r)) in ops.iter().enumerate() {
            if *insert {
                c.insert(*index, *r);
                model.insert(*index, *r);
            } else {
                prop_assert_eq!(c.remove(*index), model.remove(index).is_some());
            }
            // Check now and then, not only at the end.
            if i % 50 == 49 {
                prop_assert!(order_is_consistent(&c));
                prop_assert!(short_is_consistent(&c));
                let all: Vec<_> = model.iter().map(|(i, r)| (*i, *r)).collect();
                let live: Vec<Rule> = model.values().copied().collect();
                for k in keys_for(&live, &seeds[..8]) {
                    prop_assert_eq!(c.classify(&k), classify_linear(&all, &k));
                }
            }
        }
        prop_assert_eq!(c.len(), model.len());
        let all: Vec<_> = model.iter().map(|(i, r)| (*i, *r)).collect();
        let live: Vec<Rule> = model.values().copied().collect();
        for k in keys_for(&live, &seeds) {
            let want = classify_linear(&all, &k);
            prop_assert_eq!(c.classify(&k), want, "key {:?}", k);
            let min = want.map_or(0, |w| w + 1);
            let above: Vec<_> = all.iter().filter(|(i, _)| *i >= min).copied().collect();
            prop_assert_eq!(c.classify_from(&k, min), classify_linear(&above, &k));
        }
        // Removing everything leaves nothing behind.
        for i in model.keys() {
            prop_assert!(c.remove(*i));
        }
        prop_assert!(c.is_empty());
        prop_assert_eq!(c.stats().tables, 0);
        prop_assert!(c.short.iter().all(ShortIndex::is_empty));
    }
}
