//! The policy stage of the pipeline: connection tracking first, the
//! classifier for what it does not know.
//!
//! - A packet of a tracked flow judged under the current policy generation
//!   passes (return traffic of an allowed flow included).
//! - A flow judged under an older generation is judged again (its original
//!   direction); if the new policy denies it, the flow is removed and the
//!   packet dropped: a live policy change cuts established flows it denies.
//! - An ICMP error about a tracked flow passes as related, if it travels
//!   toward the source of the packet it quotes (Linux's
//!   `nf_conntrack_inet_error`); one that goes elsewhere is dropped
//!   ([`DropReason::IcmpMisdirected`]), as Linux's conntrack marks it
//!   invalid and Calico drops invalid packets. Without this, quoting any
//!   allowed flow would carry an ICMP error to any host.
//! - The source check ([`super::source`]) is asked for once per flow
//!   direction and port: conntrack remembers the port each direction
//!   arrived on ([`Conntrack::lookup_on`]); a new flow, a direction's first
//!   packet, a packet on another port and every related ICMP error are
//!   checked, and fail as [`DropReason::Spoofed`] before they touch a flow.
//! - A TCP segment invalid for its tracked flow's state (Linux's `sIV`:
//!   an ACK before the SYN/ACK, a SYN/ACK from the client, bad flags) is
//!   dropped as [`DropReason::TcpInvalid`] and changes nothing: Linux's
//!   conntrack marks it INVALID and Calico drops INVALID packets.
//! - Anything else is judged by the [`PolicyProgram`]; allowed flows are
//!   tracked (unless an untracked doNotTrack rule decided), denied packets
//!   are dropped and counted under the deciding rule.
//! - Only a SYN opens a tracked TCP flow. A segment with bad flags
//!   (SYN+FIN, SYN+RST, none, FIN without ACK; Linux's `tcp_valid_flags`)
//!   is [`DropReason::TcpInvalid`]; any other segment that is not a SYN
//!   and matches no flow (an ACK, data, a FIN, a RST, a SYN/ACK) is
//!   [`DropReason::TcpNoFlow`], before policy counts it, whichever way it
//!   travels. This is Calico's eBPF dataplane (a mid-flow conntrack miss is
//!   dropped) and Linux with `nf_conntrack_tcp_loose = 0`, not Linux's
//!   default mid-stream pickup: picked up, the server's half of a flow that
//!   was evicted or expired would be judged as a new connection from the
//!   server, which policy allowing only the client's way may well admit
//!   (the server's egress is often open). The price is Linux's too with
//!   `tcp_loose = 0`: connections open across an appliance restart must
//!   reconnect. Only a doNotTrack rule, which tracks nothing, lets such a
//!   segment through.
//!
//! - A packet neither of whose addresses an endpoint claims, which no
//!   untracked rule decided, is judged by the filter's [`Unclaimed`]
//!   (`policy.unclaimed`): denied by default ([`DropReason::Unclaimed`]),
//!   so an appliance with no policy at all forwards nothing (it fails
//!   closed, like a Calico host endpoint with no policy).
//!
//! Per-rule counters count the packets and bytes that were judged (new
//! flows, re-judged flows, denied packets), as iptables counters count a
//! connection's first packet.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::info;

use super::DropReason;
use crate::{
    policy::{
        classifier::Key,
        conntrack::{Conntrack, FlowKey, Lookup, NO_PORT, TcpFirst, Timeouts},
        program::{PolicyProgram, RuleId, Unclaimed},
    },
    topology::PortId,
};

/// The facts of a packet the policy stage needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketFacts {
    /// Source address (IPv4 mapped).
    pub src: u128,
    /// Destination address (IPv4 mapped).
    pub dst: u128,
    /// IP protocol.
    pub proto: u8,
    /// Source port; ICMP echo: the identifier; 0 when none.
    pub sport: u16,
    /// Destination port; ICMP echo: the identifier; 0 when none.
    pub dport: u16,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// Raw TCP flags (0 for others).
    pub tcp_flags: u8,
    /// For an ICMP error: the flow of the packet it quotes, as sent.
    pub inner: Option<FlowKey>,
    /// Frame length, for counters.
    pub len: u32,
}

impl PacketFacts {
    fn flow_key(&self) -> FlowKey {
        FlowKey {
            src: self.src,
            dst: self.dst,
            proto: self.proto,
            sport: self.sport,
            dport: self.dport,
        }
    }

    /// The classifier's key: ICMP type and code ride in the port fields.
    fn class_key(&self) -> Key {
        match self.icmp {
            Some((ty, code)) => Key {
                src: self.src,
                dst: self.dst,
                proto: self.proto,
                sport: u16::from(ty),
                dport: u16::from(code),
            },
            None => Key {
                src: self.src,
                dst: self.dst,
                proto: self.proto,
                sport: self.sport,
                dport: self.dport,
            },
        }
    }
}

/// The classifier key of a tracked flow's original direction.
fn flow_class_key(k: &FlowKey) -> Key {
    match k.proto {
        // An ICMP flow is an echo exchange: judge it as the request.
        1 => Key {
            src: k.src,
            dst: k.dst,
            proto: 1,
            sport: 8,
            dport: 0,
        },
        58 => Key {
            src: k.src,
            dst: k.dst,
            proto: 58,
            sport: 128,
            dport: 0,
        },
        _ => Key {
            src: k.src,
            dst: k.dst,
            proto: k.proto,
            sport: k.sport,
            dport: k.dport,
        },
    }
}

/// The IP protocol number of TCP.
const TCP: u8 = 6;

/// Flow log records per second per worker.
const LOG_RATE: u32 = 100;

/// A worker's policy state.
#[derive(Debug)]
pub struct Filter {
    policy: Arc<PolicyProgram>,
    conntrack: Conntrack,
    /// (packets, bytes) per rule id of `policy`, since the last take.
    rule_deltas: Vec<(u64, u64)>,
    log_tokens: u32,
    log_second: Option<Instant>,
    /// When [`Filter::expire`] last swept.
    last_expiry: Option<Instant>,
    /// What becomes of traffic no endpoint claims.
    unclaimed: Unclaimed,
}

/// How often [`Filter::expire_due`] sweeps the flow table.
pub const EXPIRE_EVERY: Duration = Duration::from_millis(10);

/// The most flows one sweep removes.
pub const EXPIRE_BUDGET: usize = 256;

impl Filter {
    /// A filter enforcing `policy`, tracking at most `capacity` flows.
    pub fn new(policy: Arc<PolicyProgram>, capacity: usize) -> Self {
        let rule_deltas = vec![(0, 0); policy.rules.len()];
        Self {
            policy,
            conntrack: Conntrack::new(capacity, Timeouts::default()),
            rule_deltas,
            log_tokens: LOG_RATE,
            log_second: None,
            last_expiry: None,
            unclaimed: Unclaimed::Allow,
        }
    }

    /// Sets what becomes of traffic between addresses no endpoint claims
    /// ([`Unclaimed::Allow`] for a filter made by [`Self::new`]; the
    /// dataplane sets the configured one, [`Unclaimed::Deny`] by default).
    pub fn set_unclaimed(&mut self, unclaimed: Unclaimed) {
        self.unclaimed = unclaimed;
    }

    /// The policy in force.
    pub fn policy(&self) -> &Arc<PolicyProgram> {
        &self.policy
    }

    /// The flow table.
    pub fn conntrack(&self) -> &Conntrack {
        &self.conntrack
    }

    /// Adopts a new policy; returns the counters of the old one (their rule
    /// ids only mean something with it).
    pub fn set_policy(
        &mut self,
        policy: Arc<PolicyProgram>,
    ) -> (Arc<PolicyProgram>, Vec<(u64, u64)>) {
        let deltas = std::mem::replace(&mut self.rule_deltas, vec![(0, 0); policy.rules.len()]);
        (std::mem::replace(&mut self.policy, policy), deltas)
    }

    /// Takes the per-rule counters accumulated since the last take.
    pub fn take_rule_deltas(&mut self) -> (Arc<PolicyProgram>, Vec<(u64, u64)>) {
        let n = self.rule_deltas.len();
        (
            self.policy.clone(),
            std::mem::replace(&mut self.rule_deltas, vec![(0, 0); n]),
        )
    }

    /// Whether the stage judges anything: with no policy and unclaimed
    /// traffic allowed it is skipped; with unclaimed traffic denied it
    /// never is (no policy then forwards nothing).
    #[inline]
    pub fn active(&self) -> bool {
        self.unclaimed == Unclaimed::Deny
            || !(self.policy.endpoints.is_empty() && self.policy.untracked.is_empty())
    }

    /// Expires idle flows, a few at a time (at most [`EXPIRE_BUDGET`]).
    pub fn expire(&mut self, now: Instant) -> usize {
        self.last_expiry = Some(now);
        self.conntrack.expire(now, EXPIRE_BUDGET)
    }

    /// Expires idle flows if [`EXPIRE_EVERY`] passed since the last sweep;
    /// how many it removed. A worker calls it on every turn of its loop,
    /// busy or idle: expiry must not wait for a quiet moment, which a
    /// flood never leaves (Linux's conntrack GC worker runs on a timer
    /// too). At most [`EXPIRE_BUDGET`] flows per sweep, so at most
    /// 100 × 256 = 25 600 removals a second on top of the lazy expiry of
    /// every lookup and the reclaim of every insert into a full table.
    #[inline]
    pub fn expire_due(&mut self, now: Instant) -> usize {
        match self.last_expiry {
            Some(last) if now.saturating_duration_since(last) < EXPIRE_EVERY => 0,
            _ => self.expire(now),
        }
    }

    /// Judges a packet that arrived on `ingress`: `Ok` forwards it; `Err`
    /// drops it for [`DropReason::Policy`] (counted under the deciding
    /// rule, if one decided), [`DropReason::Spoofed`] (`source_valid`, the
    /// reverse-path check, said no; it is asked only when conntrack has not
    /// bound the packet's flow direction to `ingress`),
    /// [`DropReason::IcmpMisdirected`], [`DropReason::TcpInvalid`] or
    /// [`DropReason::TcpNoFlow`] (see the module docs).
    #[inline]
    pub fn check(
        &mut self,
        p: &PacketFacts,
        ingress: PortId,
        source_valid: impl FnOnce() -> bool,
        now: Instant,
    ) -> Result<(), DropReason> {
        if !self.active() {
            return if source_valid() {
                Ok(())
            } else {
                Err(DropReason::Spoofed)
            };
        }
        let generation = self.policy.generation;
        if let Some(inner) = &p.inner
            && self.conntrack.related(inner, now).is_some()
        {
            // RFC 792 / RFC 4443 §2.4: an error goes back to the source of
            // what it quotes; Linux's nf_conntrack_inet_error checks it.
            if p.dst != inner.src {
                return Err(DropReason::IcmpMisdirected);
            }
            return if source_valid() {
                Ok(())
            } else {
                Err(DropReason::Spoofed)
            };
        }
        let key = p.flow_key();
        // Ports past u8 are never bound: their packets are always checked.
        let port = u8::try_from(ingress.0).unwrap_or(NO_PORT);
        let mut source_valid = Some(source_valid);
        let mut verified = false;
        let rejudge = loop {
            match self
                .conntrack
                .lookup_on(&key, port, verified, p.tcp_flags, p.len, now)
            {
                Lookup::Hit { flow, .. } if flow.generation == generation => return Ok(()),
                Lookup::Hit { flow, .. } => break Some(flow.key),
                Lookup::Invalid { .. } => return Err(DropReason::TcpInvalid),
                Lookup::Miss => break None,
                Lookup::Unbound if !verified => {
                    if !source_valid.take().is_some_and(|valid| valid()) {
                        return Err(DropReason::Spoofed);
                    }
                    verified = true;
                }
                Lookup::Unbound => break None,
            }
        };
        if let Some(original) = rejudge {
            let j = self
                .policy
                .judge_with(&flow_class_key(&original), self.unclaimed);
            self.count(j.deciding(), p.len);
            self.log(j.logged, p, j.allow, now);
            if !j.allow {
                if crate::flows::TAP.is_on() {
                    self.tap(j.deciding(), p, false);
                }
                self.conntrack.remove(&original);
                return Err(if j.unclaimed {
                    DropReason::Unclaimed
                } else {
                    DropReason::Policy
                });
            }
            // Found again without counting the packet a second time.
            if let Some(flow) = self.conntrack.related(&key, now) {
                flow.generation = generation;
                flow.verdict = j.deciding().unwrap_or(RuleId::MAX);
            }
            return Ok(());
        }
        if let Some(valid) = source_valid.take()
            && !valid()
        {
            return Err(DropReason::Spoofed);
        }
        // Only a SYN may open a tracked connection (see the module docs);
        // only a doNotTrack rule lets another segment of no flow through,
        // so without doNotTrack programs it is dropped unjudged (an ACK
        // flood walks no classifier).
        let refused = if p.proto == TCP {
            match TcpFirst::of(p.tcp_flags) {
                TcpFirst::Syn => None,
                TcpFirst::NotSyn => Some(DropReason::TcpNoFlow),
                TcpFirst::BadFlags => Some(DropReason::TcpInvalid),
            }
        } else {
            None
        };
        if let Some(reason) = refused
            && self.policy.untracked.is_empty()
        {
            return Err(reason);
        }
        let j = self.policy.judge_with(&p.class_key(), self.unclaimed);
        if let Some(reason) = refused
            && j.untracked.is_none()
        {
            return Err(reason);
        }
        self.count(j.deciding(), p.len);
        self.log(j.logged, p, j.allow, now);
        if crate::flows::TAP.is_on() {
            self.tap(j.deciding(), p, j.allow);
        }
        if !j.allow {
            return Err(if j.unclaimed {
                DropReason::Unclaimed
            } else {
                DropReason::Policy
            });
        }
        if j.untracked.is_none() {
            let flow = self.conntrack.insert(
                key,
                p.tcp_flags,
                p.len,
                j.deciding().unwrap_or(RuleId::MAX),
                generation,
                now,
            );
            flow.ingress[0] = port;
        }
        Ok(())
    }

    #[inline]
    fn count(&mut self, rule: Option<RuleId>, len: u32) {
        if let Some(c) = rule.and_then(|r| self.rule_deltas.get_mut(r as usize)) {
            c.0 += 1;
            c.1 += u64::from(len);
        }
    }

    /// A record for the control API's flow stream.
    #[cold]
    fn tap(&self, rule: Option<RuleId>, p: &PacketFacts, allow: bool) {
        let ip = |a: u128| std::net::Ipv6Addr::from(a).to_canonical();
        crate::flows::TAP.push(crate::flows::FlowRecord {
            at: std::time::SystemTime::now(),
            src: ip(p.src),
            dst: ip(p.dst),
            sport: p.sport,
            dport: p.dport,
            proto: p.proto,
            allow,
            rule: rule
                .and_then(|r| self.policy.rules.get(r as usize))
                .map(|r| r.name())
                .unwrap_or_default(),
            bytes: p.len,
            generation: self.policy.generation,
        });
    }

    /// A flow record for a Log rule, at most [`LOG_RATE`] a second.
    fn log(&mut self, rule: Option<RuleId>, p: &PacketFacts, allow: bool, now: Instant) {
        let Some(rule) = rule else { return };
        let second = *self.log_second.get_or_insert(now);
        if now.saturating_duration_since(second).as_secs() >= 1 {
            self.log_second = Some(now);
            self.log_tokens = LOG_RATE;
        }
        if self.log_tokens == 0 {
            return;
        }
        self.log_tokens -= 1;
        let ip = |a: u128| std::net::Ipv6Addr::from(a).to_canonical();
        let name = self
            .policy
            .rules
            .get(rule as usize)
            .map(|r| r.name())
            .unwrap_or_default();
        info!(
            target: "causeway::flowlog",
            rule = %name,
            src = %ip(p.src),
            dst = %ip(p.dst),
            proto = p.proto,
            sport = p.sport,
            dport = p.dport,
            verdict = if allow { "allow" } else { "deny" },
            "flow"
        );
    }
}
