//! The compiled policy a worker enforces, and the per-packet judgement.
//!
//! The control side ([`causeway_control::policy::compile`]) turns Calico
//! and Kubernetes policy into a [`PolicyProgram`]: for every endpoint
//! address, which program judges its egress and which its ingress; a
//! program is the endpoint's tier walk, one [`Classifier`] per tier whose
//! rules carry an [`Action`]. Endpoints with the same applicable policies
//! share a program.
//!
//! Judging a packet (see [`PolicyProgram::judge`]): the source endpoint's
//! egress program, then the destination endpoint's ingress program; an
//! address with no program has no policy of its own and allows. In a tier,
//! the first matching rule decides: Allow and Deny end the walk, Pass goes
//! to the next tier, Log records and looks further down the same tier. Each
//! tier ends with its default rule (it matches everything the tier's
//! policies apply to: Deny, or Pass). Past the last tier, the endpoint's
//! profile allows.
//!
//! Traffic neither of whose addresses an endpoint claims has no policy at
//! all; [`Unclaimed`] says what becomes of it ([`PolicyProgram::judge_with`]):
//! an edge gateway denies it unless configured otherwise, as a Calico host
//! endpoint with no policy denies.
//!
//! A rule whose peer is a large selector does not list the selected
//! addresses as classifier rules: it is one rule over the rest of its
//! fields, constrained to an address set ([`SetMatch`], an ipset in
//! Calico's iptables dataplane terms). When the classifier finds such a
//! rule and the packet's address is not in the set (or, for a
//! `notSelector`, is), the walk goes on from the next rule, as it does
//! past a Log rule. A pod joining the selector then changes one set, not
//! every program that names it.

use std::{
    collections::{HashMap, HashSet},
    hash::BuildHasherDefault,
    sync::Arc,
};

use rustc_hash::FxHasher;

use super::classifier::{Classifier, Key, RuleIndex};

/// A rule's identity: an index into [`PolicyProgram::rules`].
pub type RuleId = u32;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Allow: the walk ends.
    Allow,
    /// Deny: the walk ends.
    Deny,
    /// Skip to the next tier.
    Pass,
    /// Record a flow log and go on.
    Log,
}

/// Where a rule came from, for counters, logs and explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMeta {
    /// The tier (shared by the rules of a tier: a compile makes one per
    /// rule).
    pub tier: Arc<str>,
    /// The policy (`Kind/ns/name`), or `""` for a tier's default rule
    /// (shared by the rules of a policy).
    pub policy: Arc<str>,
    /// `ingress` or `egress`.
    pub direction: &'static str,
    /// The rule's index in its policy, or `None` for a tier default.
    pub index: Option<usize>,
    /// Its action.
    pub action: Action,
}

impl RuleMeta {
    /// `tier/policy/direction/index` or `tier/default`, for labels and logs.
    pub fn name(&self) -> String {
        match self.index {
            Some(i) => format!("{}/{}/{}/{i}", self.tier, self.policy, self.direction),
            None => format!(
                "{}/default-{}/{}",
                self.tier,
                if self.action == Action::Pass {
                    "pass"
                } else {
                    "deny"
                },
                self.direction
            ),
        }
    }
}

/// A set of host addresses (IPv4 mapped), by [`SetMatch::set`].
pub type AddrSet = HashSet<u128, BuildHasherDefault<FxHasher>>;

/// Which address of a packet a [`SetMatch`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The source address.
    Source,
    /// The destination address.
    Destination,
}

/// A rule's constraint on an address set: the packet's address on `side`
/// must be in set `set` (`member`), or must not be (`!member`, a
/// `notSelector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SetMatch {
    /// An index into [`PolicyProgram::sets`].
    pub set: u32,
    /// The address it reads.
    pub side: Side,
    /// In the set (a selector) or not in it (a notSelector).
    pub member: bool,
}

impl SetMatch {
    /// Whether `key` meets the constraint under `sets`.
    #[inline]
    pub fn matches(&self, sets: &[Arc<AddrSet>], key: &Key) -> bool {
        let addr = match self.side {
            Side::Source => key.src,
            Side::Destination => key.dst,
        };
        sets.get(self.set as usize)
            .is_some_and(|s| s.contains(&addr))
            == self.member
    }
}

/// What a classifier rule of a tier stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TierRule {
    /// What it does when it matches.
    pub action: Action,
    /// The policy rule (or tier default) it stands for.
    pub id: RuleId,
    /// Set constraints the packet must also meet; usually none.
    pub sets: Vec<SetMatch>,
}

impl TierRule {
    /// A rule with no set constraint.
    pub const fn plain(action: Action, id: RuleId) -> Self {
        Self {
            action,
            id,
            sets: Vec::new(),
        }
    }
}

/// One tier of a program: a classifier and, per classifier rule index, the
/// rule it stands for.
#[derive(Debug, Default)]
pub struct TierProgram {
    /// First-match over the tier's rules in order; shared with the
    /// previous compile's program when only the rule ids moved.
    pub classifier: Arc<Classifier>,
    /// Indexed by the classifier's rule index.
    pub rules: Vec<TierRule>,
}

/// An endpoint's walk through the tiers that apply to it, in one direction.
#[derive(Debug, Default)]
pub struct Program {
    /// The tiers, in order.
    pub tiers: Vec<TierProgram>,
}

/// The programs of an endpoint address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointPrograms {
    /// The program judging traffic to it; `None`: no policy, allow.
    pub ingress: Option<u32>,
    /// The program judging traffic from it.
    pub egress: Option<u32>,
}

/// What becomes of traffic between addresses no endpoint claims
/// (`policy.unclaimed` in the configuration file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unclaimed {
    /// Dropped (counted as `unclaimed`): nothing crosses that no policy
    /// can speak for. An appliance with no policy at all forwards nothing.
    #[default]
    Deny,
    /// Forwarded: the appliance is a plain router for addresses it knows
    /// nothing about (causeway before issue 19).
    Allow,
}

/// A decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    /// Allowed?
    pub allow: bool,
    /// The rule (or tier default) that decided the source's egress, if any.
    pub egress: Option<RuleId>,
    /// The rule that decided the destination's ingress, if judged.
    pub ingress: Option<RuleId>,
    /// A Log rule passed on the way, if any.
    pub logged: Option<RuleId>,
    /// Decided by an untracked (doNotTrack) rule: no flow is tracked.
    pub untracked: Option<RuleId>,
    /// Denied because neither address is an endpoint's
    /// ([`Unclaimed::Deny`]).
    pub unclaimed: bool,
}

impl Judgement {
    /// The rule to blame for a deny (or credit for an allow): ingress when
    /// it was judged, else egress.
    pub fn deciding(&self) -> Option<RuleId> {
        if self.untracked.is_some() {
            return self.untracked;
        }
        if !self.allow && self.ingress.is_none() {
            self.egress
        } else {
            self.ingress.or(self.egress)
        }
    }
}

/// Everything a worker needs to judge packets. Immutable; a new one is
/// published for every policy change.
#[derive(Debug, Default)]
pub struct PolicyProgram {
    /// Bumped for every change: flows judged under an older generation are
    /// judged again at their next packet.
    pub generation: u64,
    /// Endpoint address (IPv4 mapped) → its programs.
    pub endpoints: HashMap<u128, EndpointPrograms, BuildHasherDefault<FxHasher>>,
    /// The programs, shared between endpoints with the same policies.
    pub programs: Vec<Arc<Program>>,
    /// Every rule, by [`RuleId`]; shared, so that a compile which changes
    /// only which endpoint runs which program keeps the table as it is.
    pub rules: Arc<[RuleMeta]>,
    /// The appliance's own (doNotTrack) programs, judged first for every
    /// packet: its ingress, then its egress. No match falls through.
    pub untracked: Vec<u32>,
    /// The address sets rules are constrained to, by [`SetMatch::set`]
    /// (an unused index holds an empty set).
    pub sets: Vec<Arc<AddrSet>>,
}

impl PolicyProgram {
    /// No policy at all: everything is allowed.
    pub fn allow_all(generation: u64) -> Self {
        Self {
            generation,
            ..Self::default()
        }
    }

    /// Judges a packet: the source's egress, then the destination's
    /// ingress; traffic between unclaimed addresses is allowed (the
    /// reference evaluator's semantics; the dataplane uses
    /// [`Self::judge_with`]).
    #[inline]
    pub fn judge(&self, key: &Key) -> Judgement {
        self.judge_with(key, Unclaimed::Allow)
    }

    /// Whether an endpoint claims `addr` (IPv4 mapped).
    #[inline]
    pub fn claims(&self, addr: u128) -> bool {
        self.endpoints.contains_key(&addr)
    }

    /// Judges a packet as [`Self::judge`] does, except that a packet
    /// neither of whose addresses an endpoint claims, and which no
    /// untracked (doNotTrack, `all()`) rule decided, is judged by
    /// `unclaimed`.
    #[inline]
    pub fn judge_with(&self, key: &Key, unclaimed: Unclaimed) -> Judgement {
        let mut j = Judgement {
            allow: true,
            egress: None,
            ingress: None,
            logged: None,
            untracked: None,
            unclaimed: false,
        };
        for p in &self.untracked {
            if let Some((allow, rule)) =
                walk(&self.programs[*p as usize], &self.sets, key, &mut j.logged)
            {
                j.allow = allow;
                j.untracked = Some(rule);
                return j;
            }
        }
        if unclaimed == Unclaimed::Deny && !self.claims(key.src) && !self.claims(key.dst) {
            j.allow = false;
            j.unclaimed = true;
            return j;
        }
        if let Some(p) = self.endpoints.get(&key.src).and_then(|e| e.egress) {
            let (allow, rule) = walk(&self.programs[p as usize], &self.sets, key, &mut j.logged)
                .map_or((true, None), |(a, r)| (a, Some(r)));
            j.egress = rule;
            if !allow {
                j.allow = false;
                return j;
            }
        }
        if let Some(p) = self.endpoints.get(&key.dst).and_then(|e| e.ingress) {
            let (allow, rule) = walk(&self.programs[p as usize], &self.sets, key, &mut j.logged)
                .map_or((true, None), |(a, r)| (a, Some(r)));
            j.ingress = rule;
            j.allow = allow;
        }
        j
    }
}

/// One direction's tier walk: (allowed, deciding rule), or `None` when no
/// rule decided (past the last tier: the profile allows; for untracked
/// programs, normal policy goes on).
#[inline]
fn walk(
    program: &Program,
    sets: &[Arc<AddrSet>],
    key: &Key,
    logged: &mut Option<RuleId>,
) -> Option<(bool, RuleId)> {
    'tiers: for tier in &program.tiers {
        let mut from: RuleIndex = 0;
        while let Some(i) = tier.classifier.classify_from(key, from) {
            let rule = &tier.rules[i as usize];
            if !rule.sets.iter().all(|m| m.matches(sets, key)) {
                from = i + 1;
                continue;
            }
            let (action, id) = (rule.action, rule.id);
            match action {
                Action::Allow => return Some((true, id)),
                Action::Deny => return Some((false, id)),
                Action::Pass => continue 'tiers,
                Action::Log => {
                    logged.get_or_insert(id);
                    from = i + 1;
                }
            }
        }
        // Tracked tiers end with their default rule; untracked ones fall
        // through to the next tier.
    }
    None
}
