//! The TCP state machine, sequence by sequence.

use std::time::Duration;

use super::{
    ACK, Close, CloseWait, Direction, Established, FIN, FINACK, FinWait, LastAck, Original, PSH,
    RST, Reply, SYN, SYNACK, SynRecv, SynSent, TcpState, TimeWait, Timeouts, URG, at, established,
    send, state_after, table, tcp_key, udp_key,
};

#[test]
fn handshake_reaches_established() {
    let mut ct = table();
    let k = tcp_key();
    let flow = ct.insert(k, SYN, 60, 9, 3, at(0));
    assert_eq!(flow.tcp, Some(SynSent));
    assert_eq!((flow.verdict, flow.generation), (9, 3));
    let (dir, flow) = send(&mut ct, k.reversed(), SYNACK, at(1)).unwrap();
    assert_eq!((dir, flow.tcp), (Reply, Some(SynRecv)));
    let (dir, flow) = send(&mut ct, k, ACK, at(2)).unwrap();
    assert_eq!((dir, flow.tcp), (Original, Some(Established)));
    assert_eq!(flow.packets, [2, 1]);
    assert_eq!(flow.bytes, [160, 100]);
    assert_eq!((flow.created, flow.last_seen), (at(0), at(2)));
    assert_eq!(flow.key, k);
    // Data with PSH (and ECN bits) keeps it there.
    let ecn = PSH | ACK | 0x40 | 0x80;
    assert_eq!(state_after(&mut ct, k.reversed(), ecn, at(3)), Established);
    assert_eq!(ct.stats().invalid, 0);
}

#[test]
fn client_closes_first() {
    let (mut ct, k) = established();
    assert_eq!(state_after(&mut ct, k, FINACK, at(1)), FinWait);
    assert_eq!(state_after(&mut ct, k.reversed(), ACK, at(1)), CloseWait);
    // The server may keep sending before its own FIN.
    assert_eq!(
        state_after(&mut ct, k.reversed(), PSH | ACK, at(1)),
        CloseWait
    );
    assert_eq!(state_after(&mut ct, k.reversed(), FINACK, at(2)), LastAck);
    assert_eq!(state_after(&mut ct, k, ACK, at(2)), TimeWait);
    assert_eq!(state_after(&mut ct, k.reversed(), ACK, at(3)), TimeWait);
    assert_eq!(ct.stats().invalid, 0);
}

#[test]
fn server_closes_first() {
    let (mut ct, k) = established();
    assert_eq!(state_after(&mut ct, k.reversed(), FINACK, at(1)), FinWait);
    assert_eq!(state_after(&mut ct, k, ACK, at(1)), CloseWait);
    assert_eq!(state_after(&mut ct, k, FINACK, at(2)), LastAck);
    // A retransmitted FIN stays.
    assert_eq!(state_after(&mut ct, k, FINACK, at(2)), LastAck);
    assert_eq!(state_after(&mut ct, k.reversed(), ACK, at(2)), TimeWait);
}

#[test]
fn simultaneous_close() {
    let (mut ct, k) = established();
    assert_eq!(state_after(&mut ct, k, FINACK, at(1)), FinWait);
    assert_eq!(state_after(&mut ct, k.reversed(), FINACK, at(1)), LastAck);
    assert_eq!(state_after(&mut ct, k, ACK, at(1)), TimeWait);
    assert_eq!(state_after(&mut ct, k.reversed(), ACK, at(1)), TimeWait);
}

#[test]
fn rst_closes_from_every_state() {
    // Reach each state, then RST from either side.
    let paths: &[&[(Direction, u8)]] = &[
        &[],
        &[(Reply, SYNACK)],
        &[(Reply, SYNACK), (Original, ACK)],
        &[(Reply, SYNACK), (Original, ACK), (Original, FINACK)],
        &[
            (Reply, SYNACK),
            (Original, ACK),
            (Original, FINACK),
            (Reply, ACK),
        ],
        &[
            (Reply, SYNACK),
            (Original, ACK),
            (Original, FINACK),
            (Reply, FINACK),
        ],
        &[
            (Reply, SYNACK),
            (Original, ACK),
            (Original, FINACK),
            (Reply, FINACK),
            (Original, ACK),
        ],
    ];
    let expected = [
        SynSent,
        SynRecv,
        Established,
        FinWait,
        CloseWait,
        LastAck,
        TimeWait,
    ];
    for (path, want) in paths.iter().zip(expected) {
        for (rst_dir, rst) in [(Original, RST), (Reply, RST | ACK)] {
            let mut ct = table();
            let k = tcp_key();
            ct.insert(k, SYN, 60, 0, 0, at(0));
            let mut state = SynSent;
            for &(dir, flags) in *path {
                let pk = if dir == Original { k } else { k.reversed() };
                state = state_after(&mut ct, pk, flags, at(0));
            }
            assert_eq!(state, want);
            let pk = if rst_dir == Original { k } else { k.reversed() };
            assert_eq!(
                state_after(&mut ct, pk, rst, at(1)),
                Close,
                "RST in {want:?}"
            );
            // Close stays Close for anything but a new SYN.
            assert_eq!(state_after(&mut ct, k, ACK, at(1)), Close);
            assert_eq!(state_after(&mut ct, k.reversed(), FINACK, at(1)), Close);
            assert_eq!(ct.stats().invalid, 0);
        }
    }
}

#[test]
fn syn_retransmit_stays_syn_sent() {
    let mut ct = table();
    let k = tcp_key();
    ct.insert(k, SYN, 60, 0, 0, at(0));
    let (_, flow) = send(&mut ct, k, SYN, at(1)).unwrap();
    assert_eq!(flow.tcp, Some(SynSent));
    assert_eq!(flow.packets, [2, 0]);
    assert_eq!(flow.last_seen, at(1));
    // The SYN/ACK comes, and is retransmitted: ignored, not counted.
    assert_eq!(state_after(&mut ct, k.reversed(), SYNACK, at(2)), SynRecv);
    let (_, flow) = send(&mut ct, k.reversed(), SYNACK, at(3)).unwrap();
    assert_eq!(flow.tcp, Some(SynRecv));
    assert_eq!(flow.packets, [2, 1]);
    assert_eq!(flow.last_seen, at(2));
    // A late retransmitted SYN on the established flow is ignored too.
    assert_eq!(state_after(&mut ct, k, ACK, at(4)), Established);
    let (_, flow) = send(&mut ct, k, SYN, at(5)).unwrap();
    assert_eq!(flow.tcp, Some(Established));
    assert_eq!(flow.last_seen, at(4));
    assert_eq!(ct.stats().invalid, 0);
}

#[test]
fn simultaneous_open() {
    let mut ct = table();
    let k = tcp_key();
    ct.insert(k, SYN, 60, 0, 0, at(0));
    // A SYN from the other side (Linux's SYN_SENT2).
    assert_eq!(state_after(&mut ct, k.reversed(), SYN, at(0)), SynSent);
    assert_eq!(state_after(&mut ct, k, SYNACK, at(0)), SynRecv);
    assert_eq!(state_after(&mut ct, k.reversed(), SYNACK, at(0)), SynRecv);
    assert_eq!(state_after(&mut ct, k, ACK, at(0)), Established);
    assert_eq!(ct.stats().invalid, 0);
}

#[test]
fn client_cannot_complete_the_handshake_alone() {
    let mut ct = table();
    let k = tcp_key();
    ct.insert(k, SYN, 60, 0, 0, at(0));
    // SYN then SYN/ACK or ACK from the same side: sIV.
    assert_eq!(state_after(&mut ct, k, SYNACK, at(1)), SynSent);
    assert_eq!(state_after(&mut ct, k, ACK, at(1)), SynSent);
    // A FIN before the handshake.
    assert_eq!(state_after(&mut ct, k.reversed(), FINACK, at(1)), SynSent);
    assert_eq!(ct.stats().invalid, 3);
    let flow = ct.iter().next().unwrap();
    assert_eq!((flow.packets, flow.last_seen), ([1, 0], at(0)));
}

#[test]
fn invalid_flag_combinations_change_nothing() {
    let (mut ct, k) = established();
    let before = ct.iter().next().unwrap().clone();
    for bad in [
        SYN | FIN,
        SYN | RST,
        0,
        FIN,
        PSH,
        URG,
        SYN | FIN | ACK,
        SYN | ACK | URG,
    ] {
        let (dir, flow) = send(&mut ct, k, bad, at(5)).unwrap();
        assert_eq!(dir, Original);
        assert_eq!(flow, before, "flags {bad:#04x}");
    }
    assert_eq!(ct.stats().invalid, 8);
}

#[test]
fn syn_reopens_after_time_wait_and_close() {
    for last in [TimeWait, Close] {
        let (mut ct, k) = established();
        if last == TimeWait {
            state_after(&mut ct, k, FINACK, at(1));
            state_after(&mut ct, k.reversed(), FINACK, at(1));
            assert_eq!(state_after(&mut ct, k, ACK, at(1)), TimeWait);
        } else {
            assert_eq!(state_after(&mut ct, k, RST, at(1)), Close);
        }
        let flow = ct.related(&k, at(1)).unwrap();
        flow.verdict = 42;
        // The client reuses its port: the flow starts again.
        let (dir, flow) = send(&mut ct, k, SYN, at(2)).unwrap();
        assert_eq!((dir, flow.tcp), (Original, Some(SynSent)));
        assert_eq!((flow.packets, flow.bytes), ([1, 0], [100, 0]));
        assert_eq!((flow.created, flow.verdict), (at(2), 42));
        assert_eq!(state_after(&mut ct, k.reversed(), SYNACK, at(2)), SynRecv);
        assert_eq!(state_after(&mut ct, k, ACK, at(2)), Established);
        assert_eq!(ct.len(), 1);
    }
}

#[test]
fn reply_syn_on_time_wait_is_a_new_connection() {
    let (mut ct, k) = established();
    state_after(&mut ct, k, FINACK, at(1));
    state_after(&mut ct, k.reversed(), FINACK, at(1));
    state_after(&mut ct, k, ACK, at(1));
    // The server opens towards the client's port: judged as new.
    assert!(send(&mut ct, k.reversed(), SYN, at(2)).is_none());
    assert!(ct.is_empty());
    let flow = ct.insert(k.reversed(), SYN, 60, 0, 2, at(2));
    assert_eq!((flow.key, flow.tcp), (k.reversed(), Some(SynSent)));

    // On a Close flow a reply SYN is invalid.
    let mut ct = table();
    ct.insert(k, SYN, 60, 0, 0, at(0));
    state_after(&mut ct, k, RST, at(0));
    assert_eq!(state_after(&mut ct, k.reversed(), SYN, at(1)), Close);
    assert_eq!(ct.stats().invalid, 1);
}

#[test]
fn insert_states_follow_the_first_segment() {
    let cases = [
        (SYN, SynSent, false),
        (ACK, Established, false),
        (PSH | ACK, Established, false),
        (SYNACK, Close, true),
        (FINACK, Close, true),
        (RST, Close, true),
        (SYN | FIN, Close, true),
        (0, Close, true),
    ];
    for (flags, want, invalid) in cases {
        let mut ct = table();
        let flow = ct.insert(tcp_key(), flags, 60, 0, 0, at(0));
        assert_eq!(flow.tcp, Some(want), "flags {flags:#04x}");
        assert_eq!(flow.packets, [1, 0]);
        assert_eq!(ct.stats().invalid, u64::from(invalid));
    }
    // Not TCP: no state, flags ignored.
    let mut ct = table();
    assert_eq!(ct.insert(udp_key(), SYN | FIN, 60, 0, 0, at(0)).tcp, None);
    assert_eq!(ct.stats().invalid, 0);
}

#[test]
fn each_tcp_state_expires_at_its_timeout() {
    let t = Timeouts::default();
    let paths: &[(&[(Direction, u8)], TcpState)] = &[
        (&[], SynSent),
        (&[(Reply, SYNACK)], SynRecv),
        (&[(Reply, SYNACK), (Original, ACK)], Established),
        (
            &[(Reply, SYNACK), (Original, ACK), (Original, FINACK)],
            FinWait,
        ),
        (
            &[
                (Reply, SYNACK),
                (Original, ACK),
                (Original, FINACK),
                (Reply, ACK),
            ],
            CloseWait,
        ),
        (
            &[
                (Reply, SYNACK),
                (Original, ACK),
                (Original, FINACK),
                (Reply, FINACK),
            ],
            LastAck,
        ),
        (
            &[
                (Reply, SYNACK),
                (Original, ACK),
                (Original, FINACK),
                (Reply, FINACK),
                (Original, ACK),
            ],
            TimeWait,
        ),
        (&[(Original, RST)], Close),
    ];
    for &(path, state) in paths {
        let mut ct = table();
        let k = tcp_key();
        ct.insert(k, SYN, 60, 0, 0, at(1));
        for &(dir, flags) in path {
            let pk = if dir == Original { k } else { k.reversed() };
            send(&mut ct, pk, flags, at(1)).unwrap();
        }
        let flow = ct.related(&k, at(1)).unwrap();
        assert_eq!(flow.tcp, Some(state));
        let deadline = at(1) + t.tcp(state);
        assert_eq!(ct.deadline(ct.iter().next().unwrap()), deadline);
        assert!(
            ct.related(&k, deadline - Duration::from_nanos(1)).is_some(),
            "{state:?}"
        );
        assert!(ct.related(&k, deadline).is_none(), "{state:?}");
        assert!(ct.is_empty());
        assert_eq!(ct.stats().expired, 1);
    }
}

#[test]
fn default_timeouts_are_linuxs() {
    let t = Timeouts::default();
    let secs = [
        t.tcp_syn_sent,
        t.tcp_syn_recv,
        t.tcp_established,
        t.tcp_fin_wait,
        t.tcp_close_wait,
        t.tcp_last_ack,
        t.tcp_time_wait,
        t.tcp_close,
        t.udp,
        t.udp_stream,
        t.icmp,
        t.other,
    ]
    .map(|d| d.as_secs());
    assert_eq!(
        secs,
        [120, 60, 432_000, 120, 60, 30, 120, 10, 30, 120, 30, 600]
    );
}
