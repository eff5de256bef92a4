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
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use crate::{
    policy::{
        load::{self, LoadError, Loaded, Source},
        model::Resource,
        normalize::{Normal, PolicySet},
    },
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
    /// [`Normal::of`] the resource, once asked for: a change normalises the
    /// resources it made, not the whole state.
    normal: OnceLock<Result<Normal, String>>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        // `normal` follows from `loaded`.
        self.loaded == other.loaded && self.generation == other.generation
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("loaded", &self.loaded)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// The entry for `loaded`, changed at `generation`.
    pub fn new(loaded: Loaded, generation: u64) -> Self {
        Self {
            loaded,
            generation,
            normal: OnceLock::new(),
        }
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Counts the changes; 0 is the empty state nobody wrote.
    pub generation: u64,
    /// By [`Entry::id`]; shared, so that planning a change copies the map,
    /// not the resources.
    pub entries: BTreeMap<String, Arc<Entry>>,
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
    pub policy: Option<PolicySet>,
}

/// Which stored resources an apply with `replace` removes when the batch
/// does not name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// None: the batch adds and updates only.
    Nothing,
    /// Every resource (the control API's `replace`: the batch is the whole
    /// configuration).
    All,
    /// The policy and endpoint kinds (a SIGHUP reload of the manifest
    /// files: the files are the whole policy; ports, routes and TLS
    /// services stay).
    Policy,
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
    const DEFAULTS_NAMESPACE: [&str; 4] = [
        "NetworkPolicy",
        "NetworkSet",
        "networking.k8s.io/NetworkPolicy",
        "Pod",
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
/// appliance kind).
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
        Resource::Pod { metadata, .. } => metadata.namespace.as_deref(),
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

    /// The appliance kinds.
    pub fn appliance_set(&self) -> ApplianceSet {
        let mut set = ApplianceSet::default();
        for e in self.entries.values() {
            if let Resource::Appliance { metadata, spec } = &e.loaded.resource {
                set.insert(&metadata.name, spec);
            }
        }
        set
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
        self.check_and_build(previous, terminator).0
    }

    /// As [`Self::check_since`], also returning the policy set it built.
    fn check_and_build(
        &self,
        previous: Option<&Self>,
        terminator: Option<&TerminatorConfig>,
    ) -> (Vec<LoadError>, Option<PolicySet>) {
        let all: Vec<&Loaded> = self.entries.values().map(|e| &e.loaded).collect();
        let mut errors = load::validate_refs(&all);
        let mut set = None;
        if errors.is_empty() {
            match self.policy_set() {
                Ok(s) => set = Some(s),
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
        let before = previous.map(Self::appliance_set);
        for p in self
            .appliance_set()
            .validate_since(terminator, before.as_ref())
        {
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
        (errors, set)
    }

    /// Plans applying `files`.
    ///
    /// # Errors
    /// [`Refusal::Conflict`] when `expected` is given and is not the
    /// current generation; [`Refusal::Invalid`] with every mistake of the
    /// files and of the state they lead to.
    pub fn plan_apply(
        &self,
        files: &[InputFile],
        replace: Replace,
        expected: Option<u64>,
        terminator: Option<&TerminatorConfig>,
    ) -> Result<Plan, Refusal> {
        self.expect(expected)?;
        let mut loaded = Vec::new();
        let mut errors = Vec::new();
        for f in files {
            match load::load_str(&f.text, Path::new(&f.name)) {
                Ok(l) => loaded.extend(l),
                Err(e) => errors.extend(e),
            }
        }
        // Within the batch: the same resource twice.
        errors.extend(
            load::validate(&loaded)
                .into_iter()
                .filter(|e| e.message.contains("defined")),
        );
        if !errors.is_empty() {
            return Err(Refusal::Invalid(errors));
        }
        let generation = self.generation + 1;
        let mut next = self.clone();
        let mut changes = Vec::new();
        let named: BTreeSet<String> = loaded.iter().map(|l| l.resource.id()).collect();
        if replace != Replace::Nothing {
            let gone: Vec<String> = next
                .entries
                .iter()
                .filter(|(id, e)| {
                    !named.contains(*id)
                        && (replace == Replace::All || is_policy_kind(&e.loaded.resource))
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                next.entries.remove(&id);
                changes.push((id, Action::Deleted));
            }
        }
        for l in loaded {
            let l = normalise(l);
            let id = l.resource.id();
            let action = match next.entries.get(&id) {
                None => Action::Created,
                Some(e) if e.loaded.manifest == l.manifest => Action::Unchanged,
                Some(_) => Action::Configured,
            };
            if action != Action::Unchanged {
                next.entries
                    .insert(id.clone(), Arc::new(Entry::new(l, generation)));
            }
            changes.push((id, action));
        }
        self.finish(next, changes, terminator)
    }

    /// Plans deleting `ids` (as [`ref_id`] makes them).
    ///
    /// # Errors
    /// [`Refusal::Conflict`], [`Refusal::NotFound`] for ids not stored, or
    /// [`Refusal::Invalid`] when what remains is inconsistent (a TLSService
    /// would lose its Identity, say).
    pub fn plan_delete(
        &self,
        ids: &[String],
        expected: Option<u64>,
        terminator: Option<&TerminatorConfig>,
    ) -> Result<Plan, Refusal> {
        self.expect(expected)?;
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !self.entries.contains_key(*id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Refusal::NotFound(missing));
        }
        let mut next = self.clone();
        let mut changes = Vec::new();
        for id in ids {
            if next.entries.remove(id).is_some() {
                changes.push((id.clone(), Action::Deleted));
            }
        }
        self.finish(next, changes, terminator)
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
        let (errors, policy) = next.check_and_build(Some(self), terminator);
        if !errors.is_empty() {
            return Err(Refusal::Invalid(errors));
        }
        next.generation = self.generation + 1;
        Ok(Plan {
            next,
            changes,
            changed,
            policy,
        })
    }

    /// The state made of `loaded` at generation 1 (the first start's seed
    /// from the configuration file and its manifests).
    pub fn seed(loaded: Vec<Loaded>) -> Self {
        let entries = loaded
            .into_iter()
            .map(|l| {
                let l = normalise(l);
                (l.resource.id(), Arc::new(Entry::new(l, 1)))
            })
            .collect();
        Self {
            generation: 1,
            entries,
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
