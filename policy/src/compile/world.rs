//! What the compiler keeps of the endpoints, network sets and namespaces
//! (the "world" that selectors and named ports read) from one compile to
//! the next, so that a change costs in proportion to what it changed, not
//! to the size of the cluster:
//!
//! - [`World`]: the previous world, and what changed since (which
//!   endpoints, by pointer and then content; whether any network set or
//!   namespace did), so that addresses a rule's selector resolved to are
//!   kept unless a changed endpoint is one the selector would select
//!   before or after the change;
//! - [`Applicability`]: which policies apply to which endpoint, kept per
//!   endpoint, so that a changed endpoint is judged against every policy
//!   and a changed policy's `selector` against every endpoint, but an
//!   unchanged pair is never judged again.
//!
//! With 10 000 endpoints and 1 000 policies, judging every pair is twenty
//! million selector matches a compile; see docs/benchmarks.md ("policy
//! compile at cluster scale").

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use rustc_hash::FxHashMap;

use super::{PolicySet, Selector};
use crate::{
    eval::{applies_to, namespace_labels},
    normalize::{Applies, Endpoint, NAMESPACE_LABEL, NetSet, Policy, Scope, Selected},
};

/// The world of the previous compile.
#[derive(Debug, Default)]
pub(super) struct World {
    /// By id, with the number of the last update that saw it.
    endpoints: FxHashMap<String, (Arc<Endpoint>, u64)>,
    /// The last update's endpoints in the set's order, when their ids were
    /// distinct (else empty): a set with the same ids in the same order
    /// (a store's, after endpoints changed in place) is compared position
    /// by position, by pointer, without hashing 10 000 ids.
    order: Vec<Arc<Endpoint>>,
    updates: u64,
    net_sets: Vec<NetSet>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Bumped whenever an endpoint's addresses or named ports may read
    /// differently (named ports resolve against them).
    pub(super) ports_epoch: u64,
}

/// What changed between two worlds.
#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Every endpoint added or removed (or seen twice: both versions).
    endpoints: Vec<Arc<Endpoint>>,
    /// Every endpoint changed in place: (before, after).
    changed: Vec<(Arc<Endpoint>, Arc<Endpoint>)>,
    /// Whether a network set or a namespace changed (rare: every kept
    /// selector is resolved again).
    everything: bool,
    /// When the set holds the last update's endpoint ids in the same
    /// order: the positions whose endpoint is not the same allocation.
    moved: Option<Vec<usize>>,
}

impl Changes {
    /// Whether a namespace's labels may have changed (or a network set).
    pub(super) fn namespaces_changed(&self) -> bool {
        self.everything
    }

    /// The positions of the endpoints changed in place, when no endpoint
    /// came or went and the order is the last update's.
    pub(super) fn moved(&self) -> Option<&[usize]> {
        self.moved.as_deref()
    }

    /// The endpoints changed in place: (before, after).
    pub(super) fn changed(&self) -> &[(Arc<Endpoint>, Arc<Endpoint>)] {
        &self.changed
    }
}

impl World {
    /// Takes `set`'s world; what changed.
    pub(super) fn update(&mut self, set: &PolicySet) -> Changes {
        if let Some(changes) = self.update_in_place(set) {
            return changes;
        }
        let mut changes = Changes {
            everything: self.net_sets != set.net_sets || self.namespaces != set.namespaces,
            ..Changes::default()
        };
        let mut ports = false;
        self.updates += 1;
        let now = self.updates;
        let mut seen = 0;
        for ep in &set.endpoints {
            match self.endpoints.get_mut(ep.id.as_str()) {
                // Seen already in this update: an id twice (not from a
                // store); judged as changed, to be safe.
                Some((old, mark)) if *mark == now => {
                    ports = true;
                    changes.endpoints.push(old.clone());
                    changes.endpoints.push(ep.clone());
                }
                Some((old, mark)) => {
                    *mark = now;
                    seen += 1;
                    if !Arc::ptr_eq(old, ep) && **old != **ep {
                        ports |= (old.ips != ep.ips || old.ports != ep.ports)
                            && !(old.ports.is_empty() && ep.ports.is_empty());
                        let before = std::mem::replace(old, ep.clone());
                        changes.changed.push((before, ep.clone()));
                    } else {
                        *old = ep.clone();
                    }
                }
                None => {
                    ports |= !ep.ports.is_empty();
                    seen += 1;
                    changes.endpoints.push(ep.clone());
                    self.endpoints.insert(ep.id.clone(), (ep.clone(), now));
                }
            }
        }
        self.order = if seen == set.endpoints.len() {
            set.endpoints.clone()
        } else {
            Vec::new()
        };
        if seen < self.endpoints.len() {
            self.endpoints.retain(|_, (gone, mark)| {
                if *mark == now {
                    return true;
                }
                ports |= !gone.ports.is_empty();
                changes.endpoints.push(gone.clone());
                false
            });
        }
        if changes.everything {
            self.net_sets.clone_from(&set.net_sets);
            self.namespaces.clone_from(&set.namespaces);
        }
        if ports {
            self.ports_epoch += 1;
        }
        changes
    }
}

impl World {
    /// [`World::update`] when `set` holds the last update's endpoint ids in
    /// the same order: a pointer compare per endpoint, and the work of an
    /// update only for those that changed. `None` otherwise (an endpoint
    /// came or went, or the order differs).
    fn update_in_place(&mut self, set: &PolicySet) -> Option<Changes> {
        if self.order.is_empty() || self.order.len() != set.endpoints.len() {
            return None;
        }
        let moved: Vec<usize> = (0..self.order.len())
            .filter(|&i| !Arc::ptr_eq(&self.order[i], &set.endpoints[i]))
            .collect();
        if moved
            .iter()
            .any(|&i| self.order[i].id != set.endpoints[i].id)
        {
            return None;
        }
        let mut changes = Changes {
            everything: self.net_sets != set.net_sets || self.namespaces != set.namespaces,
            ..Changes::default()
        };
        let mut ports = false;
        for &i in &moved {
            let ep = &set.endpoints[i];
            let old = std::mem::replace(&mut self.order[i], ep.clone());
            if let Some((kept, _)) = self.endpoints.get_mut(ep.id.as_str()) {
                *kept = ep.clone();
            }
            if *old != **ep {
                ports |= (old.ips != ep.ips || old.ports != ep.ports)
                    && !(old.ports.is_empty() && ep.ports.is_empty());
                changes.changed.push((old, ep.clone()));
            }
        }
        if changes.everything {
            self.net_sets.clone_from(&set.net_sets);
            self.namespaces.clone_from(&set.namespaces);
        }
        if ports {
            self.ports_epoch += 1;
        }
        changes.moved = Some(moved);
        Some(changes)
    }
}

/// Keeps of `kept` (what the previous compile's selectors resolved to)
/// what `changes` cannot have changed in `set`, and hands it to `set`'s
/// memo, where the compile looks first. Whether it kept every one: then
/// every selector the previous compile resolved resolves to the same
/// allocation now.
pub(super) fn carry_selected(
    set: &PolicySet,
    changes: &Changes,
    mut kept: HashMap<String, Selected>,
) -> bool {
    // A bulk change (a first sync, a namespace relabelled): resolving
    // afresh is cheaper than testing each kept selector against it.
    let changed = changes.endpoints.len() + 2 * changes.changed.len();
    if changes.everything || changed > set.endpoints.len() / 4 + 16 {
        return false;
    }
    let before = kept.len();
    // A selector's addresses stay while no endpoint it selects came or
    // went, and every changed endpoint is selected before and after alike,
    // with the same addresses if so (a pod's `version` flipped leaves the
    // `tier == 'frontend'` it is in alone).
    kept.retain(|_, s| {
        let sel = |ep: &Endpoint| selects(set, &s.selector, s.scope.as_ref(), ep);
        !changes.endpoints.iter().any(|ep| sel(ep))
            && changes.changed.iter().all(|(before, after)| {
                let now = sel(after);
                now == sel(before) && (!now || before.ips == after.ips)
            })
    });
    let all = kept.len() == before;
    let mut memo = set.memo.selected.lock().expect("not poisoned");
    for (key, s) in kept {
        memo.entry(key).or_insert(s);
    }
    all
}

/// Whether `sel` in `scope` selects endpoint `ep` (namespace labels as
/// `set` has them), as [`super::select`] decides it for each endpoint.
pub(super) fn selects(
    set: &PolicySet,
    sel: &Selector,
    scope: Option<&Scope>,
    ep: &Endpoint,
) -> bool {
    let ns = ep
        .labels
        .get(NAMESPACE_LABEL)
        .map_or(ep.namespace.as_str(), String::as_str);
    visible(set, scope, Some(ns)) && sel.matches(&ep.labels)
}

/// Whether a selector in `scope` sees things of namespace `ns` (`None`:
/// global network sets).
pub(super) fn visible(set: &PolicySet, scope: Option<&Scope>, ns: Option<&str>) -> bool {
    let policy_ns = scope.and_then(|s| s.policy_namespace.as_deref());
    let ns_sel = scope.and_then(|s| s.namespace_selector.as_ref());
    match (ns_sel, ns) {
        (Some(s), ns) if s.is_global() => ns.is_none(),
        (Some(_), None) => false,
        (Some(s), Some(ns)) => s.is_all() || s.matches(&namespace_labels(set, ns)),
        (None, Some(ns)) => policy_ns.is_none_or(|p| p == ns),
        (None, None) => policy_ns.is_none(),
    }
}

/// Which policies apply to which endpoint, kept between compiles.
///
/// Each distinct `applies` (selector, namespace, namespaceSelector,
/// serviceAccountSelector, pods only) gets an id the first time it is
/// seen; ids only grow. Each endpoint keeps the ids it was judged against
/// (all below `seen`) and those that matched. A compile judges an endpoint
/// only against ids it has not seen (a new or changed policy), or against
/// all of them when the endpoint is new or changed what `applies` reads
/// (its labels, namespace, service account, its namespace's labels).
#[derive(Debug, Default)]
pub(super) struct Applicability {
    specs: Vec<Applies>,
    ids: HashMap<String, u32>,
    /// The last compile's policies by allocation, with their ids (holding
    /// the policy keeps the address from being reused).
    by_policy: FxHashMap<usize, (Arc<Policy>, u32)>,
    endpoints: FxHashMap<String, Judged>,
    /// Compiles so far (a [`Judged`] not seen by the last is dropped).
    compiles: u64,
    /// The last compile's policies: each one's id and whether it is
    /// doNotTrack. While it stays, an endpoint judged alike keeps its list.
    layout: Vec<(u32, bool)>,
    /// Every list handed out since the layout last changed, one allocation
    /// per content: endpoints with the same policies share it, and the
    /// compile works out a list's programs once.
    lists: HashSet<Arc<[usize]>, rustc_hash::FxBuildHasher>,
    /// The lists the last compile handed out, in the set's order, when
    /// its endpoint ids were distinct (else empty). Shared with the
    /// compile it was handed to, which lets go of it before the next.
    last: Arc<Vec<Arc<[usize]>>>,
    /// The number of ids when `last` was handed out.
    last_n: u32,
    /// Whether the last compile judged only the endpoints that moved, so
    /// that every other endpoint's list is the same allocation as before.
    in_place: bool,
}

/// What judging one endpoint in a compile reads besides the endpoint.
struct Judge<'a> {
    set: &'a PolicySet,
    /// The set's tracked policies' indices by `applies` id.
    by_spec: &'a HashMap<u32, Vec<usize>>,
    /// Ids below this exist.
    n: u32,
    /// This compile's number.
    now: u64,
    /// Whether the policies' ids and order are the last compile's.
    same_layout: bool,
    /// Whether a namespace's labels may have changed.
    namespaces_changed: bool,
}

#[derive(Debug)]
struct Judged {
    endpoint: Arc<Endpoint>,
    namespace_labels: Option<BTreeMap<String, String>>,
    /// Ids below this were judged.
    seen: u32,
    /// Those that apply.
    matched: Vec<u32>,
    /// The last compile that saw the endpoint.
    mark: u64,
    /// The indices of the policies that apply, as last handed out.
    list: Option<Arc<[usize]>>,
}

impl Applicability {
    /// For each endpoint of `set`, in order, the indices of the tracked
    /// (not doNotTrack) policies that apply to it, ascending; the same
    /// allocation for the same list. `namespaces_changed`: whether a
    /// namespace's labels may differ from the last compile's; `moved`:
    /// [`Changes::moved`] of this compile's world update.
    pub(super) fn applicable(
        &mut self,
        set: &PolicySet,
        namespaces_changed: bool,
        moved: Option<&[usize]>,
    ) -> Arc<Vec<Arc<[usize]>>> {
        let mut spec_of = self.intern(set);
        let live: HashSet<&u32> = spec_of.iter().collect();
        // Ids of policies long gone: start again rather than judge every
        // new endpoint against them.
        if self.specs.len() > 2 * live.len() + 64 {
            *self = Self::default();
            spec_of = self.intern(set);
        }
        let layout: Vec<(u32, bool)> = spec_of
            .iter()
            .zip(&set.policies)
            .map(|(id, p)| (*id, p.do_not_track))
            .collect();
        let same_layout = layout == self.layout;
        let lists_cleared = !same_layout || self.lists.len() > 4 * set.endpoints.len() + 64;
        if lists_cleared {
            self.lists.clear();
        }
        self.layout = layout;
        let mut by_spec: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, (p, id)) in set.policies.iter().zip(&spec_of).enumerate() {
            if !p.do_not_track {
                by_spec.entry(*id).or_default().push(i);
            }
        }
        let n = self.specs.len() as u32;
        self.compiles += 1;
        let now = self.compiles;
        let judge = Judge {
            set,
            by_spec: &by_spec,
            n,
            now,
            same_layout,
            namespaces_changed,
        };
        // The same endpoint ids in the same order as the last compile
        // (`moved`, from the world's update), the same policies and
        // namespaces: only the endpoints that are not the same allocation as
        // before are judged (a pod relabelled).
        if let Some(moved) = moved
            && !lists_cleared
            && !namespaces_changed
            && self.last_n == n
            && self.last.len() == set.endpoints.len()
        {
            self.in_place = true;
            let mut last = std::mem::take(&mut self.last);
            let lists = Arc::make_mut(&mut last);
            for &i in moved {
                lists[i] = self.judge(&judge, &set.endpoints[i]).0;
            }
            self.last = last;
            return self.last.clone();
        }
        self.in_place = false;
        let mut seen = 0;
        let mut out = Vec::with_capacity(set.endpoints.len());
        for ep in &set.endpoints {
            let (list, first) = self.judge(&judge, ep);
            seen += usize::from(first);
            out.push(list);
        }
        if seen < self.endpoints.len() {
            self.endpoints.retain(|_, j| j.mark == now);
        }
        // Kept for the next compile when every id was distinct.
        let out = Arc::new(out);
        self.last = if seen == set.endpoints.len() {
            out.clone()
        } else {
            Arc::default()
        };
        self.last_n = n;
        out
    }

    /// Whether the last [`Applicability::applicable`] judged only the
    /// endpoints that moved: every other endpoint's list is the allocation
    /// the compile before had.
    pub(super) fn in_place(&self) -> bool {
        self.in_place
    }

    /// The list of `ep`, judged against every policy id it has not been
    /// judged against, and whether this is the compile's first sight of
    /// its id.
    fn judge(&mut self, judge: &Judge<'_>, ep: &Arc<Endpoint>) -> (Arc<[usize]>, bool) {
        let (set, n, now) = (judge.set, judge.n, judge.now);
        // The common case: the same endpoint, namespaces, policies and
        // ids as the last compile; its list stands.
        if let Some(j) = self.endpoints.get_mut(ep.id.as_str())
            && j.mark + 1 == now
            && judge.same_layout
            && !judge.namespaces_changed
            && j.seen == n
            && Arc::ptr_eq(&j.endpoint, ep)
            && let Some(list) = &j.list
        {
            j.mark = now;
            return (list.clone(), true);
        }
        let ns_labels = set.namespaces.get(&ep.namespace);
        if !self.endpoints.contains_key(ep.id.as_str()) {
            let fresh = Judged {
                endpoint: ep.clone(),
                namespace_labels: ns_labels.cloned(),
                seen: 0,
                matched: Vec::new(),
                mark: 0,
                list: None,
            };
            self.endpoints.insert(ep.id.clone(), fresh);
        }
        let j = self
            .endpoints
            .get_mut(ep.id.as_str())
            .expect("inserted above");
        let same = j.mark != now
            && (Arc::ptr_eq(&j.endpoint, ep) || same_applies_inputs(&j.endpoint, ep))
            && j.namespace_labels.as_ref() == ns_labels;
        if !same {
            j.namespace_labels = ns_labels.cloned();
            j.seen = 0;
            j.matched.clear();
        }
        let first = j.mark != now;
        j.mark = now;
        j.endpoint = ep.clone();
        // Every id not judged yet, live or not: one dead now (its
        // policy deleted) may live again with a policy alike.
        for id in j.seen..n {
            if applies_to(set, &self.specs[id as usize], ep) {
                j.matched.push(id);
            }
        }
        j.seen = n;
        let mut policies: Vec<usize> = j
            .matched
            .iter()
            .filter_map(|id| judge.by_spec.get(id))
            .flatten()
            .copied()
            .collect();
        policies.sort_unstable();
        let list = match self.lists.get(policies.as_slice()) {
            Some(l) => l.clone(),
            None => {
                let l: Arc<[usize]> = policies.into();
                self.lists.insert(l.clone());
                l
            }
        };
        j.list = Some(list.clone());
        (list, first)
    }

    /// The id of each policy's `applies`, in order (new ones get the next
    /// ids).
    fn intern(&mut self, set: &PolicySet) -> Vec<u32> {
        let mut by_policy =
            FxHashMap::with_capacity_and_hasher(set.policies.len(), Default::default());
        let ids = set
            .policies
            .iter()
            .map(|p| {
                let at = Arc::as_ptr(p) as usize;
                if let Some((_, id)) = self.by_policy.get(&at) {
                    by_policy.insert(at, (p.clone(), *id));
                    return *id;
                }
                let a = &p.applies;
                let key = format!(
                    "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
                    a.selector,
                    a.namespace.as_deref().unwrap_or("\u{1}"),
                    a.namespace_selector
                        .as_ref()
                        .map_or_else(|| "\u{1}".to_owned(), ToString::to_string),
                    a.service_account_selector
                        .as_ref()
                        .map_or_else(|| "\u{1}".to_owned(), ToString::to_string),
                    a.pods_only,
                );
                let id = *self.ids.entry(key).or_insert_with(|| {
                    self.specs.push(a.clone());
                    (self.specs.len() - 1) as u32
                });
                by_policy.insert(at, (p.clone(), id));
                id
            })
            .collect();
        self.by_policy = by_policy;
        ids
    }
}

/// Whether two versions of an endpoint read alike to `applies`.
fn same_applies_inputs(a: &Endpoint, b: &Endpoint) -> bool {
    a.labels == b.labels
        && a.namespace == b.namespace
        && a.service_account == b.service_account
        && a.pod == b.pod
}
