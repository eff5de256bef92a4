//! The TCP state machine: Linux's `tcp_conntracks` table
//! (`net/netfilter/nf_conntrack_proto_tcp.c`) without sequence tracking.
//!
//! The states describe the connection as a middlebox sees it, not either
//! endpoint's TCB: `FinWait` means "a FIN was seen" from whichever side,
//! `CloseWait` "that FIN was acknowledged", `LastAck` "FINs seen from both
//! sides", `TimeWait` "the last FIN was acknowledged". So both close orders
//! and a simultaneous close walk the same states, as in Linux.
//!
//! Simplifications against Linux, each deliberate:
//!
//! - No window tracking (`tcp_in_window`): sequence and acknowledgment
//!   numbers are not checked, so a RST or FIN with the right addresses and
//!   ports moves the state whatever its sequence number. Linux's
//!   `nf_conntrack_tcp_be_liberal = 1` behaves the same way for
//!   out-of-window segments.
//! - `SYN_SENT2` (simultaneous open: a SYN from each side) is not a state of
//!   its own: it is `SynSent` with a packet counted in the reply direction
//!   (the only reply segment that is counted while in `SynSent` is a SYN).
//!   Its timeout is `syn_sent`'s, as `nf_conntrack_tcp_timeout_syn_sent2`
//!   defaults to the same 120 s.
//! - `sIG` (ignored) segments leave the state alone and, as in Linux, do not
//!   refresh the flow; they are not counted invalid.
//! - No `unacknowledged` or `max_retrans` timeouts.
//! - Reopening from `TimeWait`/`Close` by a SYN: Linux kills the old entry
//!   and looks the packet up again, so the policy judges it as new. Here a
//!   SYN in the original direction restarts the flow in place (same
//!   addresses, same direction, so the verdict still applies; the counters
//!   start again); a SYN in the reply direction on `TimeWait` (the server
//!   reopening towards the client) removes the flow and reports a miss, so
//!   the policy judges the reversed connection.

use crate::wire::tcp::flags;

use super::Direction;

/// The state of a TCP flow, after Linux's `enum tcp_conntrack` (names as
/// `conntrack -L` prints them in [`TcpState::name`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TcpState {
    /// A SYN was seen (from the original side; or SYNs from both sides:
    /// Linux's `SYN_SENT2`).
    SynSent,
    /// The SYN was answered with a SYN/ACK.
    SynRecv,
    /// The handshake completed (or the flow was picked up mid-stream from an
    /// ACK, Linux's `nf_conntrack_tcp_loose`).
    Established,
    /// A FIN was seen from one side.
    FinWait,
    /// That FIN was acknowledged; the other side has not closed yet.
    CloseWait,
    /// FINs were seen from both sides; waiting for the last ACK.
    LastAck,
    /// The last FIN was acknowledged.
    TimeWait,
    /// A RST was seen (or the flow was created from a segment that cannot
    /// start one, see [`super::Conntrack::insert`]).
    Close,
}

impl TcpState {
    /// Every state, in column order of the transition table.
    pub const ALL: [Self; 8] = [
        Self::SynSent,
        Self::SynRecv,
        Self::Established,
        Self::FinWait,
        Self::CloseWait,
        Self::LastAck,
        Self::TimeWait,
        Self::Close,
    ];

    /// The name Linux gives the state (`conntrack -L`).
    pub fn name(self) -> &'static str {
        match self {
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::Established => "ESTABLISHED",
            Self::FinWait => "FIN_WAIT",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
        }
    }
}

/// A segment's class: the row of the transition table (Linux's
/// `get_conntrack_index`, which tests RST, then SYN, FIN, ACK).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Segment {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
}

impl Segment {
    /// The class of a segment with these flags, or `None` for a combination
    /// Linux's `tcp_valid_flags` rejects (SYN+FIN, SYN+RST, FIN without ACK,
    /// no flags, ...). PSH, ECE and CWR are ignored, as there.
    pub(super) fn classify(tcp_flags: u8) -> Option<Self> {
        use flags::{ACK, FIN, RST, SYN, URG};
        match tcp_flags & !(flags::PSH | flags::ECE | flags::CWR) {
            f if f == SYN || f == SYN | URG => Some(Self::Syn),
            f if f == SYN | ACK => Some(Self::SynAck),
            f if f == RST || f == RST | ACK => Some(Self::Rst),
            f if f == FIN | ACK || f == FIN | ACK | URG => Some(Self::Fin),
            f if f == ACK || f == ACK | URG => Some(Self::Ack),
            _ => None,
        }
    }
}

/// What a segment does to a tracked flow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Step {
    /// Move to this state (possibly the same one) and count the packet.
    To(TcpState),
    /// Linux's `sIG`: leave the flow alone (no state change, no refresh).
    Ignore,
    /// Linux's `sIV`: count `invalid`, leave the flow alone.
    Invalid,
    /// A SYN from the original side on a closed flow: start it again in place.
    Restart,
    /// A SYN from the reply side on `TimeWait`: forget the flow so the packet
    /// is judged as a new connection the other way round.
    Reopen,
}

use Step::{Ignore as IG, Invalid as IV, Reopen as RO, Restart as RS};
use TcpState::{Close, CloseWait, Established, FinWait, LastAck, SynRecv, SynSent, TimeWait};

const SS: Step = Step::To(SynSent);
const SR: Step = Step::To(SynRecv);
const ES: Step = Step::To(Established);
const FW: Step = Step::To(FinWait);
const CW: Step = Step::To(CloseWait);
const LA: Step = Step::To(LastAck);
const TW: Step = Step::To(TimeWait);
const CL: Step = Step::To(Close);

/// `TABLE[direction][segment][state]`, Linux's `tcp_conntracks` without the
/// `sNO` column (see [`initial`]) and with `sS2` folded into `SynSent`
/// (the one cell where they differ is patched in [`step`]).
#[rustfmt::skip]
const TABLE: [[[Step; 8]; 5]; 2] = [
    // Original direction.
    [
        //        SynSent SynRecv Estab FinWait CloseWait LastAck TimeWait Close
        /* syn */    [SS, IG, IG, IG, IG, IG, RS, RS],
        /* synack */ [IV, SR, IV, IV, IV, IV, IV, IV],
        /* fin */    [IV, FW, FW, LA, LA, LA, TW, CL],
        /* ack */    [IV, ES, ES, CW, CW, TW, TW, CL],
        /* rst */    [CL, CL, CL, CL, CL, CL, CL, CL],
    ],
    // Reply direction.
    [
        /* syn */    [SS, IV, IV, IV, IV, IV, RO, IV],
        /* synack */ [SR, IG, IG, IG, IG, IG, IG, IG],
        /* fin */    [IV, FW, FW, LA, LA, LA, TW, CL],
        /* ack */    [IG, SR, ES, CW, CW, TW, TW, CL],
        /* rst */    [CL, CL, CL, CL, CL, CL, CL, CL],
    ],
];

/// The effect of a segment of class `segment` travelling in `dir` on a flow
/// in `state`. `seen_reply` says whether the flow has counted a packet in the
/// reply direction (in `SynSent`: Linux's `SYN_SENT2`).
pub(super) fn step(state: TcpState, dir: Direction, segment: Segment, seen_reply: bool) -> Step {
    // sS2 -> sSR on a SYN/ACK from the original side (simultaneous open);
    // sSS -> sIV: a client cannot send SYN then SYN/ACK.
    if state == SynSent && dir == Direction::Original && segment == Segment::SynAck {
        return if seen_reply { SR } else { IV };
    }
    TABLE[dir.index()][segment as usize][state as usize]
}

/// The state of a flow created from a segment of class `segment` (Linux's
/// `sNO` column and `tcp_new`): a SYN opens, an ACK picks up an established
/// connection mid-stream (`nf_conntrack_tcp_loose = 1`); anything else
/// cannot start a flow (`None`).
pub(super) fn initial(segment: Segment) -> Option<TcpState> {
    match segment {
        Segment::Syn => Some(SynSent),
        Segment::Ack => Some(Established),
        Segment::SynAck | Segment::Fin | Segment::Rst => None,
    }
}
