//! Loading policy manifests: files, directories and stdin, YAML (many
//! documents per file) and JSON (one object, or a `List`), into typed
//! [`Resource`]s, with every mistake reported at once and each error saying
//! where it is (file, line, column, resource, field) and what to do.
//!
//! The stages, in order:
//!
//! 1. gather inputs: files as given, directories walked for `*.yaml`,
//!    `*.yml` and `*.json` in path order, `-` for stdin;
//! 2. split each YAML file into documents on `---` lines, remembering the
//!    line each document starts on so that every error line is absolute;
//! 3. read each document's `apiVersion` and `kind` and choose the typed
//!    form (a `List` chooses one per item);
//! 4. deserialize the typed form from the document's text, so serde reports
//!    the field path and position of a typo or a bad value;
//! 5. check each resource on its own (names, CIDRs, ports and protocols,
//!    Calico's rule and policy constraints, Kubernetes' peer and port rules)
//!    and point at the offending field's line;
//! 6. [`validate`]: checks across resources (duplicates, undefined tiers).
//!
//! serde stops at the first bad field of what it reads, so a document (or a
//! List's item) reports at most one error of stages 3 and 4; the checks of
//! stages 5 and 6 report everything. Documents are independent: an error in
//! one never hides another's.
//!
//! Decisions, where Calico and Kubernetes leave room:
//!
//! - A namespaced kind (Calico NetworkPolicy and NetworkSet, Kubernetes
//!   NetworkPolicy, Pod) without `metadata.namespace` is in namespace
//!   `default`, as `kubectl` and `calicoctl` would put it. A StaticEndpoint
//!   may have no namespace (it is then not in any). Cluster-wide kinds with a
//!   namespace are refused: the writer thinks they are namespaced.
//! - Policy names in a tier other than `default` may, but need not, start
//!   with `<tier>.`: Calico open source required the prefix from v3.29,
//!   when tiers arrived, and dropped the requirement in v3.32
//!   (projectcalico/calico#11232). Policy names follow Calico's rule (a DNS
//!   label, or two joined by one dot); Tier and namespace names are DNS
//!   labels; other names DNS-1123 subdomains.
//! - A bare address is a /32 or /128 wherever a CIDR is expected (Calico
//!   accepts this); host bits beyond the prefix are ignored, as Calico and
//!   Kubernetes do. Pod IPs must be plain addresses.
//! - A tier other than `default` must be defined by a Tier resource among
//!   the inputs, even Calico's built-in ones, since the tier's order decides
//!   evaluation.
//! - Directories skip entries whose names start with `.`, so that a
//!   Kubernetes ConfigMap volume (`..data/` beside symlinks to it) is read
//!   once, and the same file reached twice is read once.

mod aliases;
mod document;
mod files;
mod kinds;
mod locate;
mod path;
mod reader;
mod semantic;

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, hash_map::Entry},
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

pub use self::files::manifests_in;
/// The largest manifest file the loader reads, in bytes.
pub const MAX_MANIFEST_BYTES: usize = reader::MAX_MANIFEST_BYTES;
use self::{files::load_into, reader::load_text};
use crate::{model, model::Resource};

/// The name a file of `-` (stdin) is reported under.
pub const STDIN_NAME: &str = "<stdin>";

/// One resource and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The resource (namespaced kinds have their namespace filled in).
    pub resource: Resource,
    /// The manifest as written (YAML read into JSON's data model), what the
    /// control API stores and returns.
    pub manifest: serde_json::Value,
    /// Where it came from.
    pub source: Source,
}

/// Where a resource was read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    /// The file, or `<stdin>`.
    pub file: PathBuf,
    /// The document's index in the file, from 0, counting documents that
    /// hold something (not empty ones or ones of only comments).
    pub document: usize,
    /// The line (from 1) the resource starts on: its document's first line
    /// of content, or its item's line in a `List`.
    pub line: usize,
}

/// A mistake in a manifest, with where it is and what to do about it.
///
/// Displays as `file:line:column: resource: field: message`, leaving out
/// what is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file, or `<stdin>`.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: Option<usize>,
    /// The column, from 1.
    pub column: Option<usize>,
    /// The resource, as [`Resource::id`] prints it, e.g.
    /// `GlobalNetworkPolicy/deny-ssh`.
    pub resource: Option<String>,
    /// The field path, e.g. `spec.ingress[0].source.selector`.
    pub field: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(resource) = &self.resource {
            write!(f, ": {resource}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    fn in_file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            resource: None,
            field: None,
            message: message.into(),
        }
    }
}

/// Everything read from some inputs: the resources that could be read and
/// every error, of loading and of [`validate`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    /// Resources read, including those with errors in their values (a
    /// resource that did not deserialize is missing).
    pub loaded: Vec<Loaded>,
    /// Every error, in input order; those of [`validate`] last.
    pub errors: Vec<LoadError>,
}

/// Loads files and directories (`-` is stdin).
///
/// Directories are walked recursively for `*.yaml`, `*.yml` and `*.json`
/// (case-insensitively), in path order; files named explicitly are read
/// whatever their extension (`.json` as JSON, anything else as YAML).
///
/// # Errors
/// Every error of every file, not only the first: unreadable paths, YAML
/// syntax, unknown kinds, unknown fields, bad values, and the checks each
/// resource must pass on its own. Checks across resources are
/// [`validate`]'s.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Loaded>, Vec<LoadError>> {
    let mut batch = Batch::default();
    load_into(paths, &mut batch);
    batch.finish()
}

/// Loads the manifests in `text`, reporting them as from `file` (whose
/// extension `.json` means JSON, anything else YAML).
///
/// # Errors
/// As [`load_paths`], for this one text.
pub fn load_str(text: &str, file: &Path) -> Result<Vec<Loaded>, Vec<LoadError>> {
    let mut batch = Batch::default();
    load_text(text, file, &mut batch);
    batch.finish()
}

/// Loads and validates, keeping every error of both: what `causeway policy
/// check` reports.
pub fn check_paths(paths: &[PathBuf]) -> Checked {
    let mut batch = Batch::default();
    load_into(paths, &mut batch);
    let mut errors = batch.errors;
    let refs: Vec<&Loaded> = batch.loaded.iter().collect();
    errors.extend(cross_checks(&refs, &batch.unreadable_tiers));
    Checked {
        loaded: batch.loaded,
        errors,
    }
}

/// The checks that look at several resources at once:
///
/// - the same kind, namespace and name defined twice (the error names both
///   places);
/// - a Calico policy in a tier other than `default` that no Tier defines.
///
/// The checks of single resources are done by [`load_paths`] and
/// [`load_str`], where the text is at hand to point at the field's line.
pub fn validate(all: &[Loaded]) -> Vec<LoadError> {
    let refs: Vec<&Loaded> = all.iter().collect();
    cross_checks(&refs, &BTreeSet::new())
}

/// As [`validate`], over references (no copies of large resources).
pub fn validate_refs(all: &[&Loaded]) -> Vec<LoadError> {
    cross_checks(all, &BTreeSet::new())
}

/// The same kind, namespace and name defined twice among `all` (each error
/// names both places). An apply checks its batch with this alone: the
/// other cross checks need the whole state the batch leads to.
pub fn duplicates(all: &[Loaded]) -> Vec<LoadError> {
    let refs: Vec<&Loaded> = all.iter().collect();
    duplicates_refs(&refs)
}

fn duplicates_refs(all: &[&Loaded]) -> Vec<LoadError> {
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, &Source> = BTreeMap::new();
    for l in all {
        let id = l.resource.id();
        if let Some(first) = seen.get(&id) {
            errors.push(LoadError {
                file: l.source.file.clone(),
                line: Some(l.source.line),
                column: None,
                resource: Some(id),
                field: Some("metadata.name".to_owned()),
                message: format!(
                    "defined twice: first at {}:{}; remove one of them or give one another name",
                    first.file.display(),
                    first.line
                ),
            });
        } else {
            seen.insert(id, &l.source);
        }
    }
    errors
}

fn cross_checks(all: &[&Loaded], unreadable_tiers: &BTreeSet<String>) -> Vec<LoadError> {
    let mut errors = duplicates_refs(all);
    errors.extend(shared_addresses(all));
    errors.extend(undefined_tiers_except(all, unreadable_tiers));
    errors
}

/// The Calico policies among `all` in a tier other than `default` that no
/// Tier among `all` defines. With [`address_shared`], the cross checks of
/// a state whose resources are keyed by id (the store), where a resource
/// cannot be defined twice.
pub fn undefined_tiers(all: &[&Loaded]) -> Vec<LoadError> {
    undefined_tiers_except(all, &BTreeSet::new())
}

fn undefined_tiers_except(all: &[&Loaded], unreadable_tiers: &BTreeSet<String>) -> Vec<LoadError> {
    let tiers: BTreeSet<&str> = all
        .iter()
        .filter_map(|l| match &l.resource {
            Resource::Tier { metadata, .. } => Some(metadata.name.as_str()),
            _ => None,
        })
        .collect();
    all.iter()
        .filter_map(|l| {
            undefined_tier(l, |tier| {
                tiers.contains(tier) || unreadable_tiers.contains(tier)
            })
        })
        .collect()
}

/// The error of a policy whose tier is neither the default tier nor one
/// `defined` says exists (a check of one changed policy against a state
/// whose tiers are known); `None` for any other resource.
pub fn undefined_tier(l: &Loaded, defined: impl Fn(&str) -> bool) -> Option<LoadError> {
    let (Resource::GlobalNetworkPolicy { spec, .. } | Resource::NetworkPolicy { spec, .. }) =
        &l.resource
    else {
        return None;
    };
    let tier = spec.tier.as_deref()?;
    if tier == semantic::DEFAULT_TIER || defined(tier) {
        return None;
    }
    Some(LoadError {
        file: l.source.file.clone(),
        line: Some(l.source.line),
        column: None,
        resource: Some(l.resource.id()),
        field: Some("spec.tier".to_owned()),
        message: format!(
            "tier `{tier}` is not defined: add a Tier named `{tier}` (apiVersion projectcalico.org/v3, \
             kind Tier), or remove spec.tier to use the default tier"
        ),
    })
}

/// An address of two endpoints (pods that are endpoints, static
/// endpoints): which endpoint's policy would judge its packets is then
/// a guess, so the state is refused, naming both. Kubernetes never gives
/// one address to two running pods; finished pods keep theirs in their
/// status, and are not endpoints (see [`model::pod_is_endpoint`]).
fn shared_addresses(all: &[&Loaded]) -> Vec<LoadError> {
    let mut errors = Vec::new();
    let mut owners: HashMap<IpAddr, &Loaded> = HashMap::new();
    for l in all {
        let texts: Vec<&str> = match &l.resource {
            Resource::Pod { spec, status, .. } if model::pod_is_endpoint(spec, status) => status
                .pod_ips
                .iter()
                .map(|p| p.ip.as_str())
                .chain(status.pod_ip.as_deref())
                .collect(),
            Resource::StaticEndpoint { spec, .. } => spec.ips.iter().map(String::as_str).collect(),
            _ => continue,
        };
        let mut own: Vec<IpAddr> = texts.iter().filter_map(|t| t.parse().ok()).collect();
        own.sort_unstable();
        own.dedup();
        for ip in own {
            match owners.entry(ip) {
                Entry::Vacant(v) => {
                    v.insert(l);
                }
                Entry::Occupied(first) => errors.push(address_shared(l, ip, first.get())),
            }
        }
    }
    errors
}

/// The error of endpoint `l` whose address `ip` is also endpoint
/// `first`'s (see [`shared_addresses`]).
pub fn address_shared(l: &Loaded, ip: IpAddr, first: &Loaded) -> LoadError {
    let field = match l.resource {
        Resource::StaticEndpoint { .. } => "spec.ips",
        _ => "status.podIPs",
    };
    LoadError {
        file: l.source.file.clone(),
        line: Some(l.source.line),
        column: None,
        resource: Some(l.resource.id()),
        field: Some(field.to_owned()),
        message: format!(
            "address {ip} is also {}'s (at {}:{}): an address belongs to one endpoint; \
             remove it from one of them",
            first.resource.id(),
            first.source.file.display(),
            first.source.line
        ),
    }
}

/// What loading has produced so far.
#[derive(Default)]
struct Batch {
    loaded: Vec<Loaded>,
    errors: Vec<LoadError>,
    /// Names of Tier documents that did not deserialize: policies naming
    /// them are not also told their tier is undefined.
    unreadable_tiers: BTreeSet<String>,
}

impl Batch {
    fn finish(self) -> Result<Vec<Loaded>, Vec<LoadError>> {
        if self.errors.is_empty() {
            Ok(self.loaded)
        } else {
            Err(self.errors)
        }
    }
}
