//! The inventory: what every source says the cluster holds, as causeway
//! resources, and what each object it could not take was wrong with.
//!
//! Each source owns a map from its own keys (an etcd key, a Kubernetes
//! object path, a file) to the resource that key stands for. A source
//! changes its map one key at a time (a watch event) or whole (a list or a
//! relist, which is diffed against what it held: a relist that finds what
//! was there changes nothing). Every change that alters the desired
//! resources bumps the inventory's version; pushers wait on it.
//!
//! An object that does not translate, or whose resource the policy loader
//! refuses (an invalid selector, say), is kept as a problem of its key and
//! left out: the rest of the inventory still syncs, and since nothing
//! stands for that key, what the appliance holds for it is decided by the
//! pusher (a resource the appliance already enforces under that id is not
//! deleted because its new version is bad; see [`Inventory::desired`]).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    path::Path,
    sync::Arc,
    time::{Instant, SystemTime},
};

use serde_json::Value;

use causeway_control::store::loaded_from_manifest;

/// One object a source holds, as the resource it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The causeway resource id ([`causeway_control::store::Entry::id`]).
    pub id: String,
    /// Its manifest.
    pub manifest: Arc<Value>,
    /// A pod's addresses (sorted, distinct) and whether it is terminating,
    /// read once when it arrives ([`hand_over_addresses`] needs them at
    /// every push).
    pub pod: Option<(Vec<String>, bool)>,
}

/// What a source's key reads as.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A resource.
    Object(Object),
    /// Something wrong with it, for the operator.
    Problem(String),
}

/// The annotation that names the source key a pushed resource was read
/// from (`<source>:<key>`), so that a sync that restarts knows which of
/// the appliance's resources stands for which key.
pub const SOURCE_ANNOTATION: &str = "causeway.dev/sync-source";

/// Checks that `manifest` loads as a causeway resource and has a policy
/// normal form (selectors parse, addresses are addresses), as the
/// appliance will check it, and marks it as read from `source` (see
/// [`SOURCE_ANNOTATION`]).
///
/// # Errors
/// Every problem, in one line each.
pub fn check(mut manifest: Value, source: &str) -> Result<Object, String> {
    if let Some(meta) = manifest.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(SOURCE_ANNOTATION.into(), Value::String(source.to_owned()));
        }
    }
    let loaded = loaded_from_manifest(&manifest, Path::new("-")).map_err(|errors| {
        errors
            .iter()
            .map(|e| {
                let field = e
                    .field
                    .as_deref()
                    .map(|f| format!("{f}: "))
                    .unwrap_or_default();
                format!("{field}{}", e.message)
            })
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    causeway_policy::normalize::Normal::of(&loaded.resource)?;
    let pod = (manifest["kind"] == "Pod").then(|| {
        let mut ips: Vec<String> = manifest["status"]["podIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["ip"].as_str().map(str::to_owned))
            .chain(manifest["status"]["podIP"].as_str().map(str::to_owned))
            .collect();
        ips.sort();
        ips.dedup();
        (ips, !manifest["metadata"]["deletionTimestamp"].is_null())
    });
    Ok(Object {
        id: loaded.resource.id(),
        manifest: Arc::new(manifest),
        pod,
    })
}

/// What a source reports about itself.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    /// Its name in the configuration.
    pub name: String,
    /// `etcdv3`, `kubernetes` or `manifests`.
    pub kind: &'static str,
    /// Its first complete list is in.
    pub synced: bool,
    /// Connected to its datastore now.
    pub connected: bool,
    /// The datastore revision the inventory reflects.
    pub revision: String,
    /// When the last event (or list) arrived.
    pub last_event: Option<SystemTime>,
    /// The last error talking to the datastore (cleared on success).
    pub error: Option<String>,
    /// Lists (the first, and relists after a compaction).
    pub lists: u64,
    /// Watches that could not resume because their revision was
    /// compacted.
    pub compactions: u64,
    /// Events by kind of resource and type (`ADDED`, `MODIFIED`,
    /// `DELETED`).
    pub events: BTreeMap<(String, &'static str), u64>,
}

/// One source's part.
#[derive(Debug, Default)]
struct Part {
    status: SourceStatus,
    items: BTreeMap<String, Item>,
}

/// The inventory of every source.
///
/// The desired resources are kept change by change: a change of one key
/// whose id no other key stands for, and whose pod addresses no other pod
/// claims, changes that one resource and nothing else, which is what a
/// relabelled pod or an edited policy is. A change whose effect reaches
/// other keys (a second key for an id, a shared address, an object that
/// became or stopped being a problem) marks the desired resources stale,
/// to be rebuilt whole when next read. Every change is logged by id, so
/// that a pusher compares only what changed since its last push
/// ([`Self::changed_since`]).
#[derive(Debug)]
pub struct Inventory {
    parts: Vec<Part>,
    /// Bumped by every change to the desired resources.
    version: u64,
    /// When each recent version arrived (oldest first, at most
    /// [`ARRIVALS`]): a pusher's lag is measured from the arrival of the
    /// first version it had not pushed yet.
    arrivals: VecDeque<(u64, Instant)>,
    /// The desired resources, as of `version` unless `stale`.
    desired: Desired,
    /// `desired` must be rebuilt before it is read.
    stale: bool,
    /// How many keys (of every source) stand for each id.
    by_id: HashMap<String, u32>,
    /// How many pods claim each address.
    by_ip: HashMap<String, u32>,
    /// The ids each version changed, oldest first (at most [`LOG`]);
    /// `None`: any may have.
    log: VecDeque<(u64, Option<String>)>,
    /// The newest version whose log entries were dropped.
    forgotten: u64,
}

/// How many arrivals are kept for lag measurements.
const ARRIVALS: usize = 4096;

/// How many changed ids are logged for pushers; one that falls further
/// behind compares everything.
const LOG: usize = 65_536;

/// The resources to push, and the problems to report, at one version.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// The inventory's version.
    pub version: u64,
    /// By resource id: the manifest, and the source key it came from.
    /// (Hashed: with 11 000 resources a push spent most of its time
    /// comparing ids in a tree.)
    pub resources: HashMap<String, (Arc<Value>, String)>,
    /// Source key → problem (including two keys that stand for one id).
    pub problems: BTreeMap<String, String>,
}

impl Inventory {
    /// An inventory of sources with these names and kinds, all unsynced.
    pub fn new(sources: &[(String, &'static str)]) -> Self {
        Self {
            parts: sources
                .iter()
                .map(|(name, kind)| Part {
                    status: SourceStatus {
                        name: name.clone(),
                        kind,
                        ..SourceStatus::default()
                    },
                    items: BTreeMap::new(),
                })
                .collect(),
            version: 0,
            arrivals: VecDeque::new(),
            desired: Desired::default(),
            stale: false,
            by_id: HashMap::new(),
            by_ip: HashMap::new(),
            log: VecDeque::new(),
            forgotten: 0,
        }
    }

    /// Its version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether every source has its first complete list in.
    pub fn synced(&self) -> bool {
        self.parts.iter().all(|p| p.status.synced)
    }

    /// Every source's status.
    pub fn statuses(&self) -> Vec<SourceStatus> {
        self.parts.iter().map(|p| p.status.clone()).collect()
    }

    /// The status of source `i`, to update.
    pub fn status_mut(&mut self, i: usize) -> &mut SourceStatus {
        &mut self.parts[i].status
    }

    /// Source `i` now holds exactly `items` (a list or a relist), at
    /// `revision`, and is synced. Returns how many keys changed.
    pub fn replace(&mut self, i: usize, items: BTreeMap<String, Item>, revision: String) -> usize {
        let changed = self.replace_within(i, "", items, revision);
        self.parts[i].status.synced = true;
        changed
    }

    /// The keys of source `i` that start with `prefix` are now exactly
    /// `items` (a list of one kind of a source that lists kinds apart), at
    /// `revision`. Unlike [`Self::replace`] it leaves `synced` to the
    /// source. Returns how many keys changed.
    pub fn replace_within(
        &mut self,
        i: usize,
        prefix: &str,
        items: BTreeMap<String, Item>,
        revision: String,
    ) -> usize {
        let old: Vec<String> = self.parts[i]
            .items
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .filter(|k| !items.contains_key(k))
            .collect();
        let mut changed = 0;
        for key in old {
            changed += usize::from(self.put(i, &key, None));
        }
        for (key, item) in items {
            changed += usize::from(self.put(i, &key, Some(item)));
        }
        let part = &mut self.parts[i];
        part.status.revision = revision;
        part.status.lists += 1;
        part.status.last_event = Some(SystemTime::now());
        if changed > 0 {
            self.mark_changed();
        }
        changed
    }

    /// Source `i`'s `key` now reads as `item` (`None`: deleted), at
    /// `revision`; counted as an event of `kind` and `kind_of_event`.
    pub fn set(
        &mut self,
        i: usize,
        key: &str,
        item: Option<Item>,
        revision: String,
        kind: &str,
        event: &'static str,
    ) {
        let changed = self.put(i, key, item);
        let part = &mut self.parts[i];
        part.status.revision = revision;
        part.status.last_event = Some(SystemTime::now());
        *part
            .status
            .events
            .entry((kind.to_owned(), event))
            .or_default() += 1;
        if changed {
            self.mark_changed();
        }
    }

    /// Source `i`'s `key` now reads as `item`: the item, the counts and
    /// the desired resources (or `stale`), and the log for the coming
    /// version. Returns whether anything changed.
    fn put(&mut self, i: usize, key: &str, item: Option<Item>) -> bool {
        let items = &mut self.parts[i].items;
        let old = match &item {
            Some(new) if items.get(key) == Some(new) => return false,
            Some(new) => items.insert(key.to_owned(), new.clone()),
            None => items.remove(key),
        };
        if old.is_none() && item.is_none() {
            return false;
        }
        // Alone: no other key stands for either id, no other pod claims
        // any of either's addresses, and neither is a problem.
        let mut alone =
            !matches!(old, Some(Item::Problem(_))) && !matches!(item, Some(Item::Problem(_)));
        // The old item is ours (taken out of the map), the new one a copy.
        let object = |i: Option<Item>| match i {
            Some(Item::Object(o)) => Some(o),
            _ => None,
        };
        let (old_object, new_object) = (object(old), object(item));
        if let Some(o) = &old_object {
            alone &= self.by_id.get(&o.id) == Some(&1);
            for ip in o.pod.iter().flat_map(|(ips, _)| ips) {
                alone &= self.by_ip.get(ip) == Some(&1);
            }
            count(&mut self.by_id, &o.id, false);
            for ip in o.pod.iter().flat_map(|(ips, _)| ips) {
                count(&mut self.by_ip, ip, false);
            }
        }
        if let Some(o) = &new_object {
            count(&mut self.by_id, &o.id, true);
            alone &= self.by_id.get(&o.id) == Some(&1);
            for ip in o.pod.iter().flat_map(|(ips, _)| ips) {
                count(&mut self.by_ip, ip, true);
                alone &= self.by_ip.get(ip) == Some(&1);
            }
        }
        let version = self.version + 1;
        if !alone || self.stale {
            self.stale = true;
            self.log(version, None);
            return true;
        }
        if let Some(o) = old_object {
            self.desired.resources.remove(&o.id);
            self.log(version, Some(o.id));
        }
        if let Some(o) = new_object {
            let key = format!("{}:{key}", self.parts[i].status.name);
            self.desired
                .resources
                .insert(o.id.clone(), (o.manifest.clone(), key));
            self.log(version, Some(o.id));
        }
        true
    }

    fn log(&mut self, version: u64, id: Option<String>) {
        if self.log.len() == LOG
            && let Some((v, _)) = self.log.pop_front()
        {
            self.forgotten = v;
        }
        self.log.push_back((version, id));
    }

    /// The ids changed by the versions after `since`, for a pusher that
    /// pushed `since`; `None` when that is not known (the log does not
    /// reach back so far, or a change reached other keys): compare
    /// everything.
    pub fn changed_since(&self, since: u64) -> Option<BTreeSet<&str>> {
        if self.forgotten > since {
            return None;
        }
        let mut ids = BTreeSet::new();
        for (v, id) in self.log.iter().rev() {
            if *v <= since {
                break;
            }
            ids.insert(id.as_deref()?);
        }
        Some(ids)
    }

    /// Notes a change: a new version, and when it arrived.
    fn mark_changed(&mut self) {
        self.version += 1;
        if self.arrivals.len() == ARRIVALS {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back((self.version, Instant::now()));
    }

    /// When the first version after `pushed` arrived (the oldest change a
    /// pusher that pushed `pushed` has not carried yet); `None` when there
    /// is none, or it is too old to be remembered.
    pub fn arrived_after(&self, pushed: u64) -> Option<Instant> {
        self.arrivals
            .iter()
            .find(|(v, _)| *v > pushed)
            .map(|(_, t)| *t)
    }

    /// Brings the desired resources up to date (see [`Self::desired`]).
    pub fn refresh(&mut self) {
        if self.stale {
            self.desired = self.rebuilt();
            self.stale = false;
        }
        self.desired.version = self.version;
    }

    /// The desired resources as of the last [`Self::refresh`]: every
    /// object of every source, the first key (by source, then key) winning
    /// when two stand for one id.
    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// The desired resources built whole.
    fn rebuilt(&self) -> Desired {
        let mut d = Desired {
            version: self.version,
            ..Desired::default()
        };
        let mut pods = Vec::new();
        for part in &self.parts {
            for (key, item) in &part.items {
                let key = format!("{}:{key}", part.status.name);
                match item {
                    Item::Problem(p) => {
                        d.problems.insert(key, p.clone());
                    }
                    Item::Object(o) => {
                        if let Some((_, first)) = d.resources.get(&o.id) {
                            d.problems.insert(
                                key,
                                format!("{} is also read from {first}; that one is used", o.id),
                            );
                        } else {
                            if let Some((ips, terminating)) = &o.pod {
                                pods.push(Claim {
                                    key: key.clone(),
                                    id: &o.id,
                                    terminating: *terminating,
                                    ips,
                                });
                            }
                            d.resources.insert(o.id.clone(), (o.manifest.clone(), key));
                        }
                    }
                }
            }
        }
        hand_over_addresses(&mut d, pods);
        d
    }
}

/// One more (`up`) or one less of `key` in `counts`.
fn count(counts: &mut HashMap<String, u32>, key: &str, up: bool) {
    if up {
        *counts.entry(key.to_owned()).or_default() += 1;
    } else if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// A pod's claim on its addresses, for [`hand_over_addresses`].
struct Claim<'a> {
    key: String,
    id: &'a str,
    terminating: bool,
    ips: &'a [String],
}

/// Two pods that claim one address: the appliance refuses such a state
/// (which pod's policy judges the address would be a guess). In a live
/// cluster it happens when a terminating pod's address was released by its
/// CNI and given to a new pod while the old object still shows it, so, as
/// Calico's CNI does, the pod that is not terminating keeps the address
/// and the terminating one is left out (reported); between two that are
/// not terminating, the first (by source key) keeps it.
fn hand_over_addresses(d: &mut Desired, mut pods: Vec<Claim<'_>>) {
    // Who keeps each address: not terminating first, then by key.
    pods.sort_by(|a, b| (a.terminating, &a.key).cmp(&(b.terminating, &b.key)));
    let mut owner: HashMap<&str, &str> = HashMap::new();
    let mut losers = Vec::new();
    for pod in &pods {
        match pod
            .ips
            .iter()
            .find_map(|ip| owner.get(ip.as_str()).map(|o| (ip, *o)))
        {
            Some((ip, winner)) => losers.push((pod.id.to_owned(), ip.clone(), winner.to_owned())),
            None => {
                for ip in pod.ips {
                    owner.insert(ip, pod.id);
                }
            }
        }
    }
    for (id, ip, winner) in losers {
        if let Some((_, key)) = d.resources.remove(&id) {
            d.problems.insert(
                key,
                format!("{id} is left out: its address {ip} belongs to {winner}, which is not terminating"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn gns(name: &str, net: &str) -> Item {
        Item::Object(
            check(
                json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
                       "metadata": {"name": name}, "spec": {"nets": [net]}}),
                "etcd:k",
            )
            .unwrap(),
        )
    }

    #[test]
    fn a_relist_that_finds_the_same_changes_nothing() {
        let mut inv = Inventory::new(&[("etcd".into(), "etcdv3")]);
        assert!(!inv.synced());
        let items: BTreeMap<String, Item> = [("a".to_owned(), gns("a", "10.0.0.0/8"))].into();
        assert_eq!(inv.replace(0, items.clone(), "5".into()), 1);
        assert!(inv.synced());
        let v = inv.version();
        assert_eq!(inv.replace(0, items, "9".into()), 0);
        assert_eq!(inv.version(), v);
        // A watch event that changes nothing does not bump it either.
        inv.set(
            0,
            "a",
            Some(gns("a", "10.0.0.0/8")),
            "10".into(),
            "GlobalNetworkSet",
            "MODIFIED",
        );
        assert_eq!(inv.version(), v);
        let before = Instant::now();
        inv.set(0, "a", None, "11".into(), "GlobalNetworkSet", "DELETED");
        assert_eq!(inv.version(), v + 1);
        // A pusher that pushed `v` is behind from the deletion on.
        assert!(inv.arrived_after(v).unwrap() >= before);
        assert!(inv.arrived_after(v + 1).is_none());
        inv.refresh();
        assert!(inv.desired().resources.is_empty());
    }

    fn pod(name: &str, ip: &str, terminating: bool) -> Item {
        let mut m = json!({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "namespace": "shop"},
                           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
        if terminating {
            m["metadata"]["deletionTimestamp"] = json!("2026-12-06T10:00:00Z");
        }
        Item::Object(check(m, &format!("k8s:pods/shop/{name}")).unwrap())
    }

    #[test]
    fn a_terminating_pod_hands_its_address_over() {
        let mut inv = Inventory::new(&[("k8s".into(), "kubernetes")]);
        inv.replace(
            0,
            [
                // The old pod sorts first but is terminating.
                ("pods/shop/a-old".to_owned(), pod("a-old", "10.2.0.7", true)),
                (
                    "pods/shop/b-new".to_owned(),
                    pod("b-new", "10.2.0.7", false),
                ),
                ("pods/shop/c".to_owned(), pod("c", "10.2.0.8", false)),
                ("pods/shop/d".to_owned(), pod("d", "10.2.0.8", false)),
            ]
            .into(),
            "1".into(),
        );
        inv.refresh();
        let d = inv.desired();
        let mut ids: Vec<&str> = d.resources.keys().map(String::as_str).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["Pod/shop/b-new", "Pod/shop/c"]);
        assert!(d.problems["k8s:pods/shop/a-old"].contains("belongs to Pod/shop/b-new"));
        assert!(d.problems["k8s:pods/shop/d"].contains("belongs to Pod/shop/c"));
    }

    #[test]
    fn a_bad_object_is_a_problem_and_the_rest_is_desired() {
        let bad = check(
            json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                               "metadata": {"name": "bad"}, "spec": {"selector": "app == "}}),
            "etcd:k1",
        )
        .unwrap_err();
        assert!(bad.contains("selector"), "{bad}");
        let mut inv = Inventory::new(&[("etcd".into(), "etcdv3")]);
        inv.replace(
            0,
            [
                ("k1".to_owned(), Item::Problem(bad)),
                ("k2".to_owned(), gns("a", "10.0.0.0/8")),
                ("k3".to_owned(), gns("a", "10.9.0.0/16")),
            ]
            .into(),
            "1".into(),
        );
        inv.refresh();
        let d = inv.desired();
        assert_eq!(d.resources.len(), 1);
        assert_eq!(
            d.resources["GlobalNetworkSet/a"].0["metadata"]["annotations"][SOURCE_ANNOTATION],
            "etcd:k"
        );
        assert_eq!(d.resources["GlobalNetworkSet/a"].1, "etcd:k2");
        assert!(d.problems["etcd:k1"].contains("selector"));
        assert!(d.problems["etcd:k3"].contains("also read from etcd:k2"));
    }

    /// What the inventory keeps change by change is what a whole rebuild
    /// makes, through random changes that share ids and addresses, go bad,
    /// terminate and come back; and the log names every id that changed
    /// (or says it cannot).
    #[test]
    fn the_desired_resources_kept_change_by_change_are_the_rebuilt_ones() {
        let mut seed: u64 = 0x5eed_1234_abcd_0001;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut inv = Inventory::new(&[("a".into(), "etcdv3"), ("b".into(), "kubernetes")]);
        inv.replace(0, BTreeMap::new(), "0".into());
        inv.replace(1, BTreeMap::new(), "0".into());
        let mut lone = 0;
        for step in 0..4000 {
            let source = next(2) as usize;
            // Mostly, as in a cluster, a key stands for its own id and a
            // pod has its own address; one change in ten collides.
            let n = next(100);
            let key = format!("k{n}");
            let mut own = |n: u64| if next(10) == 0 { next(100) } else { n };
            let (name, ip) = (own(n), own(n));
            // And one in twenty names the other source's object.
            let source_of_name = if next(20) == 0 { 1 - source } else { source };
            let item = match next(10) {
                0 => None,
                1 => Some(Item::Problem(format!("bad {step}"))),
                2 | 3 => Some(gns(&format!("s{source_of_name}-{name}"), "10.0.0.0/8")),
                _ => Some(pod(
                    &format!("p{source_of_name}-{name}"),
                    &format!("10.2.{source}.{ip}"),
                    next(4) == 0,
                )),
            };
            let before = inv.version();
            let held = inv.desired().resources.clone();
            if step % 7 == 0 {
                // A relist of this source with one key changed.
                let mut items = inv.parts[source].items.clone();
                match item {
                    Some(i) => items.insert(key, i),
                    None => items.remove(&key),
                };
                inv.replace(source, items, step.to_string());
            } else {
                inv.set(source, &key, item, step.to_string(), "K", "MODIFIED");
            }
            let changed = inv.changed_since(before).map(|ids| {
                ids.into_iter()
                    .map(str::to_owned)
                    .collect::<BTreeSet<String>>()
            });
            inv.refresh();
            let rebuilt = inv.rebuilt();
            let kept = inv.desired();
            assert_eq!(kept.version, rebuilt.version);
            assert_eq!(kept.resources, rebuilt.resources, "step {step}");
            assert_eq!(kept.problems, rebuilt.problems, "step {step}");
            // Every id whose resource differs is in the log's answer.
            if let Some(changed) = changed {
                lone += 1;
                let ids: BTreeSet<&String> = held.keys().chain(kept.resources.keys()).collect();
                for id in ids {
                    if held.get(id) != kept.resources.get(id) {
                        assert!(changed.contains(id), "step {step}: {id} changed unlogged");
                    }
                }
            }
        }
        // Most changes are lone ones: the log is used, not given up on.
        assert!(lone > 2000, "only {lone} of 4000 changes were lone");
    }

    #[test]
    fn the_log_forgets_what_is_too_old_and_says_so() {
        let mut inv = Inventory::new(&[("a".into(), "etcdv3")]);
        inv.replace(0, BTreeMap::new(), "0".into());
        let start = inv.version();
        inv.set(
            0,
            "k",
            Some(gns("x", "10.0.0.0/8")),
            "1".into(),
            "K",
            "ADDED",
        );
        assert_eq!(
            inv.changed_since(start)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["GlobalNetworkSet/x"]
        );
        assert!(inv.changed_since(inv.version()).unwrap().is_empty());
        for i in 0..LOG {
            let net = format!("10.{}.{}.0/24", i / 256 % 256, i % 256);
            inv.set(0, "k", Some(gns("x", &net)), "2".into(), "K", "MODIFIED");
        }
        assert!(inv.changed_since(start).is_none());
        assert!(inv.changed_since(inv.version() - 1).is_some());
        // A problem reaches other keys (a held resource kept for it): the
        // log cannot name what changed.
        let v = inv.version();
        inv.set(
            0,
            "k",
            Some(Item::Problem("bad".into())),
            "3".into(),
            "K",
            "MODIFIED",
        );
        assert!(inv.changed_since(v).is_none());
    }
}
