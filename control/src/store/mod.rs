//! The desired state: every resource the appliance was told to enforce, and
//! the generation that counts the changes.
//!
//! Changes are planned against the current state without touching it
//! ([`Desired::plan_apply`], [`Desired::plan_delete`]): the plan validates
//! the whole resulting state (each resource, references across resources,
//! the policy set, the appliance kinds) and either fails with every problem
//! found or yields the next state. The caller persists the next state
//! ([`persist::save`]) before it acknowledges it, then publishes it.

pub mod persist;

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeSet, HashMap, hash_map},
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use causeway_policy::{
    load::{self, LoadError, Loaded, Source},
    model::Resource,
    normalize::{Normal, PolicySet},
    resources::ApplianceSet,
};
use causeway_tls::config::TerminatorConfig;

/// One stored resource. Immutable once made (states share it by `Arc`):
/// its policy normal form is computed from `loaded` at first use and kept.
#[derive(Clone)]
pub struct Entry {
    /// The resource, its manifest (namespace filled in) and where it came
    /// from.
    pub loaded: Loaded,
    /// The generation at which it last changed.
    pub generation: u64,
    /// Who holds it ([`OWNER_CONFIG`], [`OWNER_CTL`], `sync/<name>`; empty
    /// for a resource stored before owners existed, which any writer
    /// takes over).
    pub owner: Arc<str>,
    /// [`Normal::of`] the resource, once asked for: a change normalises the
    /// resources it made, not the whole state.
    normal: OnceLock<Result<Normal, String>>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        // `normal` follows from `loaded`.
        self.loaded == other.loaded
            && self.generation == other.generation
            && self.owner == other.owner
    }
}

/// An entry equals itself (its numbers are finite: the loader refuses a
/// NaN order). Being `Eq` lets `Arc<Entry>` compare by pointer first, so the
/// journal's diff of two states ([`persist::changed`]) does not compare
/// in full the dozens of unchanged entries that share a node with a
/// changed one.
impl Eq for Entry {}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("loaded", &self.loaded)
            .field("generation", &self.generation)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// The entry for `loaded`, changed at `generation` by `owner`.
    pub fn new(loaded: Loaded, generation: u64, owner: Arc<str>) -> Self {
        Self {
            loaded,
            generation,
            owner,
            normal: OnceLock::new(),
        }
    }

    /// Whether `writer` may change or delete it without forcing: it holds
    /// it, or nobody does.
    fn writable_by(&self, writer: &str) -> bool {
        self.owner.is_empty() || &*self.owner == writer
    }

    /// The resource's policy normal form ([`Normal::of`]), computed once.
    ///
    /// # Errors
    /// As [`Normal::of`].
    pub fn normal(&self) -> Result<&Normal, &str> {
        self.normal
            .get_or_init(|| Normal::of(&self.loaded.resource))
            .as_ref()
            .map_err(String::as_str)
    }

    /// `Kind/namespace/name` or `Kind/name`.
    pub fn id(&self) -> String {
        self.loaded.resource.id()
    }

    /// (apiVersion, kind, namespace, name) as the manifest has them.
    pub fn head(&self) -> (String, String, String, String) {
        let m = &self.loaded.manifest;
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        (
            s(&m["apiVersion"]),
            s(&m["kind"]),
            s(&m["metadata"]["namespace"]),
            s(&m["metadata"]["name"]),
        )
    }
}

/// The whole desired state.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Counts the changes; 0 is the empty state nobody wrote.
    pub generation: u64,
    /// By [`Entry::id`]. A persistent map: planning a change copies it in
    /// O(1) and changes it in O(log n), sharing every untouched node (and
    /// every resource, by `Arc`) with the current state, so that a change
    /// costs what it changes, not the 10 000 entries a cluster holds.
    /// Private: only a plan (or a load) changes it, and with it
    /// `addresses` and `set`; [`Desired::entries`] reads it.
    entries: imbl::OrdMap<String, Arc<Entry>>,
    /// Which endpoint holds each address, as the check of this state found
    /// it (so the next change is checked against it instead of against
    /// every endpoint); `None` for a state not made by a plan (loaded from
    /// disk, seeded), whose first change's check walks every endpoint.
    addresses: Option<AddressIndex>,
    /// The policy set of this state, as its check built it (the next
    /// change's check patches it instead of assembling every resource);
    /// `None` for a state not made by a plan.
    set: Option<Arc<PolicySet>>,
}

/// Endpoint ids by the addresses they hold.
type AddressIndex = imbl::HashMap<IpAddr, Arc<str>>;

/// Equal when they hold the same resources at the same generation; the
/// address index is derived from the entries.
impl PartialEq for Desired {
    fn eq(&self, other: &Self) -> bool {
        self.generation == other.generation && self.entries == other.entries
    }
}

/// What [`Desired::check_and_build`] found.
struct Checked {
    /// Every problem.
    errors: Vec<LoadError>,
    /// The policy set, when the checks before it passed.
    set: Option<Arc<PolicySet>>,
    /// Who holds each address, when no two endpoints share one.
    addresses: Option<AddressIndex>,
}

/// What a change did to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It is new.
    Created,
    /// It was there and is different now.
    Configured,
    /// It was there, the same.
    Unchanged,
    /// It is gone.
    Deleted,
}

/// A planned change.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The state after it (the same generation when nothing changed).
    pub next: Desired,
    /// What happens to each resource named or removed.
    pub changes: Vec<(String, Action)>,
    /// Whether anything changes.
    pub changed: bool,
    /// The policy set of `next`, built while checking it (so publishing
    /// need not build it again); `None` when nothing changed.
    pub policy: Option<Arc<PolicySet>>,
}

/// The owner of what the configuration file seeds and SIGHUP reloads.
pub const OWNER_CONFIG: &str = "config";
/// The owner of API writes that name none (an operator's `causeway ctl`).
pub const OWNER_CTL: &str = "ctl";

/// Which stored resources an apply with `replace` removes when the batch
/// does not name them. Only ever the writer's own: a sync, an operator and
/// the configuration file each replace what they wrote, never each other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// None: the batch adds and updates only.
    Nothing,
    /// Every resource the writer holds (the control API's `replace`: the
    /// batch is the whole of what this writer configures).
    Owned,
    /// The policy and endpoint kinds the writer holds (a SIGHUP reload of
    /// the manifest files: the files are the whole of the file's policy;
    /// ports, routes and TLS services stay).
    OwnedPolicy,
}

/// Who makes a change, and what it may do beyond creating and updating
/// resources nobody else holds.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// The owner the written resources get (and whose resources `replace`
    /// removes).
    pub owner: &'a str,
    /// What the batch replaces.
    pub replace: Replace,
    /// Write (or delete) resources another owner holds, taking them over.
    pub force: bool,
    /// Refuse unless the state is at this generation.
    pub expected: Option<u64>,
    /// Allow a change that leaves no policy where there was one (see
    /// [`Refusal::NoPolicyLeft`]).
    pub allow_no_policy: bool,
}

impl<'a> Writer<'a> {
    /// A plain write by `owner`: no replace, no force, no expectation.
    pub fn new(owner: &'a str) -> Self {
        Self {
            owner,
            replace: Replace::Nothing,
            force: false,
            expected: None,
            allow_no_policy: false,
        }
    }
}

/// A resource another owner holds, named by a write that did not force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its id.
    pub id: String,
    /// Who holds it.
    pub owner: String,
}

/// Why a change was refused; nothing changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The batch, or the state it leads to, has mistakes: every one.
    Invalid(Vec<LoadError>),
    /// The expected generation is not the current one.
    Conflict {
        /// What the writer expected.
        expected: u64,
        /// What it is.
        current: u64,
    },
    /// Resources to delete that do not exist.
    NotFound(Vec<String>),
    /// Resources another owner holds, written without force.
    Held {
        /// Who tried.
        writer: String,
        /// What they touched.
        held: Vec<Held>,
    },
    /// The change deletes the last policy (a replace with no policies in
    /// it, a reload of an emptied directory, deleting them one by one):
    /// with no policy at all an appliance judges nothing, so this needs
    /// the writer to say so ([`Writer::allow_no_policy`]).
    NoPolicyLeft {
        /// The policies it would delete.
        deleted: Vec<String>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(errors) => {
                write!(f, "{} error(s); nothing was applied", errors.len())?;
                for e in errors {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
            Self::Conflict { expected, current } => write!(
                f,
                "the configuration is at generation {current}, not {expected}: another writer changed it; read it again and retry"
            ),
            Self::NotFound(ids) => write!(f, "not found: {}", ids.join(", ")),
            Self::NoPolicyLeft { deleted } => write!(
                f,
                "this change deletes every policy ({}) and leaves none: an appliance with \
                 no policy judges no traffic; nothing was changed (say so explicitly to do \
                 it: --allow-no-policy, or allow_no_policy in the request)",
                deleted.join(", ")
            ),
            Self::Held { writer, held } => {
                let list: Vec<String> = held
                    .iter()
                    .map(|h| format!("{} (held by {})", h.id, h.owner))
                    .collect();
                write!(
                    f,
                    "{} held by another owner, so {writer} may not change it: {}; nothing was applied. \
                     Change it through its owner, or force the write to take it over",
                    if held.len() == 1 {
                        "a resource is"
                    } else {
                        "resources are"
                    },
                    list.join(", ")
                )
            }
        }
    }
}

/// An input file of an apply.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Its name, for errors (`.json` means JSON).
    pub name: String,
    /// Its text.
    pub text: String,
}

/// The id a reference names: `kind/name` or `kind/namespace/name`; a
/// namespaced kind without a namespace is in `default`.
pub fn ref_id(kind: &str, namespace: &str, name: &str) -> String {
    const DEFAULTS_NAMESPACE: [&str; 6] = [
        "NetworkPolicy",
        "NetworkSet",
        "networking.k8s.io/NetworkPolicy",
        "Pod",
        "Service",
        "EndpointSlice",
    ];
    let ns = if namespace.is_empty() && DEFAULTS_NAMESPACE.contains(&kind) {
        "default"
    } else {
        namespace
    };
    if ns.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{ns}/{name}")
    }
}

/// Whether a resource is of the policy and endpoint kinds (not an
/// appliance kind). Services and EndpointSlices come with the cluster's
/// endpoints, so they count as such.
/// Whether a resource is a policy (what judges traffic), as opposed to
/// what policy reads (endpoints, sets, namespaces, tiers).
fn is_policy(r: &Resource) -> bool {
    matches!(
        r,
        Resource::GlobalNetworkPolicy { .. }
            | Resource::NetworkPolicy { .. }
            | Resource::K8sNetworkPolicy { .. }
    )
}

impl Desired {
    /// Every resource, by [`Entry::id`].
    pub fn entries(&self) -> &imbl::OrdMap<String, Arc<Entry>> {
        &self.entries
    }

    /// Whether the state holds at least one policy.
    pub fn has_policy(&self) -> bool {
        self.entries.values().any(|e| is_policy(&e.loaded.resource))
    }
}

fn is_policy_kind(r: &Resource) -> bool {
    !matches!(r, Resource::Appliance { .. })
}

/// The namespace a resource is in, if any.
fn namespace_of(r: &Resource) -> Option<&str> {
    match r {
        Resource::NetworkPolicy { metadata, .. }
        | Resource::NetworkSet { metadata, .. }
        | Resource::K8sNetworkPolicy { metadata, .. }
        | Resource::StaticEndpoint { metadata, .. } => metadata.namespace.as_deref(),
        Resource::Pod { metadata, .. } | Resource::ServiceDiscovery { metadata, .. } => {
            metadata.namespace.as_deref()
        }
        _ => None,
    }
}

/// Puts the namespace the loader filled in into the manifest, so that the
/// stored manifest names the same resource when it is read back.
fn normalise(mut l: Loaded) -> Loaded {
    if let Some(ns) = namespace_of(&l.resource).map(str::to_owned)
        && let Some(meta) = l
            .manifest
            .get_mut("metadata")
            .and_then(|m| m.as_object_mut())
    {
        meta.insert("namespace".into(), ns.into());
    }
    l
}

impl Desired {
    /// The policy and endpoints, normalised for the compiler and explain.
    ///
    /// # Errors
    /// As [`PolicySet::build`] (a validated state never fails).
    pub fn policy_set(&self) -> Result<PolicySet, String> {
        let parts = self
            .entries
            .values()
            .map(|e| e.normal())
            .collect::<Result<Vec<_>, _>>()
            .map_err(str::to_owned)?;
        Ok(PolicySet::assemble(parts))
    }

    /// [`Self::policy_set`], made by patching `previous`'s set with
    /// `changed` where it can be ([`PolicySet::patched`]).
    fn policy_set_since(
        &self,
        since: Option<(&Self, &[(String, Action)])>,
    ) -> Result<PolicySet, String> {
        if let Some((previous, changed)) = since
            && let Some(set) = &previous.set
        {
            let pairs: Option<Vec<(&Normal, &Normal)>> = changed
                .iter()
                .filter(|(_, a)| *a != Action::Unchanged)
                .map(|(id, _)| {
                    let before = previous.entries.get(id)?.normal().ok()?;
                    let after = self.entries.get(id)?.normal().ok()?;
                    Some((before, after))
                })
                .collect();
            if let Some(set) = pairs.and_then(|p| set.patched(p)) {
                return Ok(set);
            }
        }
        self.policy_set()
    }

    /// The appliance kinds, and the Kubernetes Services and EndpointSlices
    /// TLS services may name.
    /// Whether a change from `previous` to this state, naming `changed`,
    /// can change [`Self::appliance_set`]: whether it touches an appliance
    /// resource, a Service or an EndpointSlice. A sync's stream of pod and
    /// policy changes does not, and need not walk the whole state twice to
    /// find that out.
    pub fn touches_appliance(&self, previous: &Self, changed: &[(String, Action)]) -> bool {
        changed.iter().any(|(id, action)| {
            *action != Action::Unchanged
                && [previous.entries.get(id), self.entries.get(id)]
                    .into_iter()
                    .flatten()
                    .any(|e| {
                        matches!(
                            e.loaded.resource,
                            Resource::Appliance { .. } | Resource::ServiceDiscovery { .. }
                        )
                    })
        })
    }

    /// The appliance resources (ports, routes, TLS services, identities)
    /// and the Services and EndpointSlices they may name. Walks every
    /// resource.
    pub fn appliance_set(&self) -> ApplianceSet {
        use causeway_policy::resources::{SERVICE_NAME_LABEL, ServiceDiscovery};
        let mut set = ApplianceSet::default();
        for e in self.entries.values() {
            match &e.loaded.resource {
                Resource::Appliance { metadata, spec } => set.insert(&metadata.name, spec),
                Resource::ServiceDiscovery { metadata, spec } => {
                    let ns = metadata.namespace.clone().unwrap_or_default();
                    match spec {
                        ServiceDiscovery::Service(ports) => {
                            set.views
                                .services
                                .insert((ns, metadata.name.clone()), ports.clone());
                        }
                        ServiceDiscovery::EndpointSlice(slice) => {
                            if let Some(service) = metadata.labels.get(SERVICE_NAME_LABEL) {
                                set.views
                                    .slices
                                    .entry((ns, service.clone()))
                                    .or_default()
                                    .push(slice.clone());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        set
    }

    /// Addresses of two endpoints (see [`load::address_shared`]), and the
    /// index of who holds each address when there are none. Among all
    /// endpoints; or, when `since` gives a state that had none, with its
    /// index, and what changed since, between a created or changed
    /// endpoint and any other, looked up in that index (the error names
    /// the changed one: that is the resource the writer can fix). Read
    /// from the kept normal forms, so no address is parsed again.
    fn shared_addresses(
        &self,
        since: Option<(&Self, &[(String, Action)])>,
    ) -> (Vec<LoadError>, Option<AddressIndex>) {
        fn ips(e: &Entry) -> &[IpAddr] {
            match e.normal() {
                Ok(Normal::Endpoint(ep)) => &ep.ips,
                _ => &[],
            }
        }
        let mut errors = Vec::new();
        let Some((previous, changed, mut index)) =
            since.and_then(|(p, c)| Some((p, c, p.addresses.clone()?)))
        else {
            let mut owners: HashMap<IpAddr, (&str, &Entry)> = HashMap::new();
            for (id, e) in &self.entries {
                for &ip in ips(e) {
                    match owners.entry(ip) {
                        hash_map::Entry::Vacant(v) => {
                            v.insert((id, e));
                        }
                        hash_map::Entry::Occupied(first) => {
                            errors.push(load::address_shared(&e.loaded, ip, &first.get().1.loaded));
                        }
                    }
                }
            }
            let index = errors.is_empty().then(|| {
                owners
                    .into_iter()
                    .map(|(ip, (id, _))| (ip, Arc::from(id)))
                    .collect()
            });
            return (errors, index);
        };
        // What the changed endpoints held is free; then each claims what
        // it holds now, in id order.
        for (id, action) in changed {
            if matches!(action, Action::Configured | Action::Deleted)
                && let Some(old) = previous.entries.get(id)
            {
                for ip in ips(old) {
                    if index.get(ip).is_some_and(|holder| **holder == **id) {
                        index.remove(ip);
                    }
                }
            }
        }
        let mut claims: Vec<(&str, &Entry)> = changed
            .iter()
            .filter(|(_, a)| matches!(a, Action::Created | Action::Configured))
            .filter_map(|(id, _)| Some((id.as_str(), &**self.entries.get(id)?)))
            .collect();
        claims.sort_unstable_by_key(|(id, _)| *id);
        claims.dedup_by_key(|(id, _)| *id);
        for (id, e) in claims {
            let id: Arc<str> = Arc::from(id);
            for &ip in ips(e) {
                match index.get(&ip) {
                    None => {
                        index.insert(ip, id.clone());
                    }
                    Some(holder) => {
                        let first = self.entries.get(&**holder).map_or(&e.loaded, |h| &h.loaded);
                        errors.push(load::address_shared(&e.loaded, ip, first));
                    }
                }
            }
        }
        let index = errors.is_empty().then_some(index);
        (errors, index)
    }

    /// Every problem of a whole state: checks across resources, the policy
    /// set, and the appliance kinds against the terminator's settings.
    pub fn check(&self, terminator: Option<&TerminatorConfig>) -> Vec<LoadError> {
        self.check_since(None, terminator)
    }

    /// As [`Self::check`], loading the files only of identities that
    /// differ from `previous`.
    pub fn check_since(
        &self,
        previous: Option<&Self>,
        terminator: Option<&TerminatorConfig>,
    ) -> Vec<LoadError> {
        self.check_and_build(previous, None, terminator).errors
    }

    /// As [`Self::check_since`], also returning the policy set it built.
    /// `changed`, when given, names every resource that differs from
    /// `previous`, a state that passed these checks: the checks that pair
    /// resources then pair only the changed ones with the rest (a pod
    /// relabelled in a state of 10 000 endpoints is not compared with
    /// every other pair).
    fn check_and_build(
        &self,
        previous: Option<&Self>,
        changed: Option<&[(String, Action)]>,
        terminator: Option<&TerminatorConfig>,
    ) -> Checked {
        // Keyed by id, a state cannot hold one resource twice: of the
        // cross checks, the tiers and the addresses are left.
        let mut errors = self.undefined_tiers(previous.zip(changed));
        let (shared, addresses) = self.shared_addresses(previous.zip(changed));
        errors.extend(shared);
        let mut set = None;
        if errors.is_empty() {
            match self.policy_set_since(previous.zip(changed)) {
                Ok(s) => {
                    errors.extend(self.prefilter_fits(&s));
                    set = Some(Arc::new(s));
                }
                Err(message) => errors.push(LoadError {
                    file: PathBuf::new(),
                    line: None,
                    column: None,
                    resource: None,
                    field: None,
                    message,
                }),
            }
        }
        // A state that passed these checks, changed only in resources that
        // are not the appliance's, has the same appliance set: nothing to
        // check again.
        let same_appliance = previous
            .zip(changed)
            .is_some_and(|(p, c)| !self.touches_appliance(p, c));
        let before = previous
            .filter(|_| !same_appliance)
            .map(Self::appliance_set);
        let problems = if same_appliance {
            Vec::new()
        } else {
            self.appliance_set()
                .validate_since(terminator, before.as_ref())
        };
        for p in problems {
            let source = self.entries.get(&p.resource).map(|e| &e.loaded.source);
            errors.push(LoadError {
                file: source.map(|s| s.file.clone()).unwrap_or_default(),
                line: source.map(|s| s.line),
                column: None,
                resource: Some(p.resource),
                field: Some(p.field),
                message: p.message,
            });
        }
        Checked {
            errors,
            set,
            addresses,
        }
    }

    /// Policies whose tier is not defined: among all, or, when `since`
    /// gives a state that passed this check and what changed since, among
    /// the created and changed policies, unless a tier changed.
    fn undefined_tiers(&self, since: Option<(&Self, &[(String, Action)])>) -> Vec<LoadError> {
        let is_tier = |e: Option<&Arc<Entry>>| {
            e.is_some_and(|e| matches!(e.loaded.resource, Resource::Tier { .. }))
        };
        let changed = since.and_then(|(previous, changed)| {
            let tiers_changed = changed.iter().any(|(id, action)| {
                *action != Action::Unchanged
                    && (is_tier(previous.entries.get(id)) || is_tier(self.entries.get(id)))
            });
            (!tiers_changed).then_some(changed)
        });
        let Some(changed) = changed else {
            let all: Vec<&Loaded> = self.entries.values().map(|e| &e.loaded).collect();
            return load::undefined_tiers(&all);
        };
        changed
            .iter()
            .filter(|(_, a)| matches!(a, Action::Created | Action::Configured))
            .filter_map(|(id, _)| self.entries.get(id))
            .filter_map(|e| {
                load::undefined_tier(&e.loaded, |tier| {
                    self.entries.contains_key(&ref_id("Tier", "", tier))
                })
            })
            .collect()
    }

    /// A refusal when `set` needs more XDP prefilter entries (source nets of
    /// doNotTrack deny rules) than the dataplane's map holds: committed, it
    /// would fail at publish and stop the next start.
    fn prefilter_fits(&self, set: &PolicySet) -> Option<LoadError> {
        let (id, rule, total) = causeway_policy::compile::prefilter_overflow(set)?;
        let source = self.entries.get(&id).map(|e| &e.loaded.source);
        Some(LoadError {
            file: source.map(|s| s.file.clone()).unwrap_or_default(),
            line: source.map(|s| s.line),
            column: None,
            resource: Some(id),
            field: Some(format!("spec.ingress[{rule}].source.nets")),
            message: format!(
                "doNotTrack deny rules need {total} source nets in the XDP prefilter, which holds {}: \
                 the dataplane could not enforce this; merge nets into wider prefixes or move some \
                 into a policy without doNotTrack",
                causeway_policy::compile::PREFILTER_CAPACITY
            ),
        })
    }

    /// Plans applying `files` and deleting `delete` (ids as [`ref_id`]
    /// makes them) as one change, written by `writer`: there is no state
    /// between the deletions and the additions (a sync that replaces a
    /// resource by another never leaves a moment without either). Deleting
    /// an id that is not stored changes nothing.
    ///
    /// # Errors
    /// [`Refusal::Conflict`] when `writer.expected` is given and is not the
    /// current generation; [`Refusal::Held`] when the change touches a
    /// resource another owner holds and `writer.force` is not set;
    /// [`Refusal::Invalid`] with every mistake of the files and of the
    /// state they lead to.
    pub fn plan_apply(
        &self,
        files: &[InputFile],
        delete: &[String],
        writer: Writer<'_>,
        terminator: Option<&TerminatorConfig>,
    ) -> Result<Plan, Refusal> {
        self.expect(writer.expected)?;
        let mut loaded = Vec::new();
        let mut errors = Vec::new();
        for f in files {
            match load::load_str(&f.text, Path::new(&f.name)) {
                Ok(l) => loaded.extend(l),
                Err(e) => errors.extend(e),
            }
        }
        // Within the batch: the same resource twice. (What the batch
        // refers to, a tier say, may be stored already: the whole state is
        // checked once it is planned.)
        errors.extend(load::duplicates(&loaded));
        if !errors.is_empty() {
            return Err(Refusal::Invalid(errors));
        }
        self.plan_loaded(loaded, delete, writer, terminator)
    }

    /// As [`Self::plan_apply`], with resources already loaded (a sync hands
    /// typed resources over without printing and parsing them again).
    ///
    /// # Errors
    /// As [`Self::plan_apply`]; the batch is not checked for duplicates.
    pub fn plan_loaded(
        &self,
        loaded: Vec<Loaded>,
        delete: &[String],
        writer: Writer<'_>,
        terminator: Option<&TerminatorConfig>,
    ) -> Result<Plan, Refusal> {
        self.expect(writer.expected)?;
        let generation = self.generation + 1;
        let owner: Arc<str> = Arc::from(writer.owner);
        let mut next = self.clone();
        let mut changes = Vec::new();
        let mut held = Vec::new();
        let named: BTreeSet<String> = loaded.iter().map(|l| l.resource.id()).collect();
        let mut gone: BTreeSet<String> = delete
            .iter()
            .filter(|id| !named.contains(*id) && self.entries.contains_key(*id))
            .cloned()
            .collect();
        if writer.replace != Replace::Nothing {
            gone.extend(
                self.entries
                    .iter()
                    .filter(|(id, e)| {
                        !named.contains(*id)
                            && *e.owner == *writer.owner
                            && (writer.replace == Replace::Owned
                                || is_policy_kind(&e.loaded.resource))
                    })
                    .map(|(id, _)| id.clone()),
            );
        }
        for id in gone {
            let e = next.entries.remove(&id).expect("listed from the state");
            if !writer.force && !e.writable_by(writer.owner) {
                held.push(Held {
                    id: id.clone(),
                    owner: e.owner.to_string(),
                });
            }
            changes.push((id, Action::Deleted));
        }
        for l in loaded {
            let l = normalise(l);
            let id = l.resource.id();
            let action = match next.entries.get(&id) {
                None => Action::Created,
                Some(e) => {
                    if !writer.force && !e.writable_by(writer.owner) {
                        held.push(Held {
                            id: id.clone(),
                            owner: e.owner.to_string(),
                        });
                    }
                    if e.loaded.manifest == l.manifest && e.owner == owner {
                        Action::Unchanged
                    } else {
                        Action::Configured
                    }
                }
            };
            if action != Action::Unchanged {
                next.entries.insert(
                    id.clone(),
                    Arc::new(Entry::new(l, generation, owner.clone())),
                );
            }
            changes.push((id, action));
        }
        if !held.is_empty() {
            return Err(Refusal::Held {
                writer: writer.owner.to_owned(),
                held,
            });
        }
        self.finish(next, changes, writer, terminator)
    }

    /// Plans deleting `ids` (as [`ref_id`] makes them), by `writer` (its
    /// `replace` is not used).
    ///
    /// # Errors
    /// [`Refusal::Conflict`], [`Refusal::NotFound`] for ids not stored,
    /// [`Refusal::Held`] for ids another owner holds (without force), or
    /// [`Refusal::Invalid`] when what remains is inconsistent (a TLSService
    /// would lose its Identity, say).
    pub fn plan_delete(
        &self,
        ids: &[String],
        writer: Writer<'_>,
        terminator: Option<&TerminatorConfig>,
    ) -> Result<Plan, Refusal> {
        self.expect(writer.expected)?;
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !self.entries.contains_key(*id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Refusal::NotFound(missing));
        }
        let held: Vec<Held> = ids
            .iter()
            .filter_map(|id| {
                let e = &self.entries[id];
                (!writer.force && !e.writable_by(writer.owner)).then(|| Held {
                    id: id.clone(),
                    owner: e.owner.to_string(),
                })
            })
            .collect();
        if !held.is_empty() {
            return Err(Refusal::Held {
                writer: writer.owner.to_owned(),
                held,
            });
        }
        let mut next = self.clone();
        let mut changes = Vec::new();
        for id in ids {
            if next.entries.remove(id).is_some() {
                changes.push((id.clone(), Action::Deleted));
            }
        }
        self.finish(next, changes, writer, terminator)
    }

    fn expect(&self, expected: Option<u64>) -> Result<(), Refusal> {
        match expected {
            Some(g) if g != self.generation => Err(Refusal::Conflict {
                expected: g,
                current: self.generation,
            }),
            _ => Ok(()),
        }
    }

    fn finish(
        &self,
        mut next: Self,
        changes: Vec<(String, Action)>,
        writer: Writer<'_>,
        terminator: Option<&TerminatorConfig>,
    ) -> Result<Plan, Refusal> {
        let changed = changes.iter().any(|(_, a)| *a != Action::Unchanged);
        if !changed {
            return Ok(Plan {
                next: self.clone(),
                changes,
                changed,
                policy: None,
            });
        }
        if !writer.allow_no_policy && !next.has_policy() && self.has_policy() {
            return Err(Refusal::NoPolicyLeft {
                deleted: self
                    .entries
                    .iter()
                    .filter(|(_, e)| is_policy(&e.loaded.resource))
                    .map(|(id, _)| id.clone())
                    .collect(),
            });
        }
        let checked = next.check_and_build(Some(self), Some(&changes), terminator);
        if !checked.errors.is_empty() {
            return Err(Refusal::Invalid(checked.errors));
        }
        next.generation = self.generation + 1;
        next.addresses = checked.addresses;
        next.set.clone_from(&checked.set);
        Ok(Plan {
            next,
            changes,
            changed,
            policy: checked.set,
        })
    }

    /// The state made of `loaded` at generation 1 (the first start's seed
    /// from the configuration file and its manifests), held by
    /// [`OWNER_CONFIG`].
    pub fn seed(loaded: Vec<Loaded>) -> Self {
        let owner: Arc<str> = Arc::from(OWNER_CONFIG);
        let entries = loaded
            .into_iter()
            .map(|l| {
                let l = normalise(l);
                (l.resource.id(), Arc::new(Entry::new(l, 1, owner.clone())))
            })
            .collect();
        Self {
            generation: 1,
            entries,
            addresses: None,
            set: None,
        }
    }
}

/// A resource an appliance kind was seeded from: a [`Loaded`] made from
/// its manifest, reported as read from `file`.
///
/// # Errors
/// The manifest does not read back (a bug, reported with its id).
pub fn loaded_from_manifest(
    manifest: &serde_json::Value,
    file: &Path,
) -> Result<Loaded, Vec<LoadError>> {
    let text = serde_json::to_string(manifest).expect("a JSON value serialises");
    let mut l = load::load_str(&text, file)?;
    if l.len() != 1 {
        return Err(vec![LoadError {
            file: file.to_owned(),
            line: None,
            column: None,
            resource: None,
            field: None,
            message: format!("expected one resource, read {}", l.len()),
        }]);
    }
    let mut one = l.remove(0);
    one.source = Source {
        file: file.to_owned(),
        document: 0,
        line: 1,
    };
    Ok(one)
}
