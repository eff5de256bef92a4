//! Calico and Kubernetes network policy: the selector language, the
//! resource model as users write it (with causeway's own kinds, in
//! [`resources`]), loading manifests, the normal form, the reference
//! evaluator that says what a packet's verdict is and why, and the
//! compiler to the dataplane's classifier.
//!
//! The modules build on each other in one direction: `selector` and
//! `resources` need nothing here; `model` names them; `load` reads text
//! into `model`; `normalize` makes the policy set; `eval` and `compile`
//! read it.
#![forbid(unsafe_code)]

pub mod check;
pub mod compile;
pub mod eval;
pub mod explain;
pub mod load;
pub mod model;
pub mod normalize;
pub mod resources;
pub mod selector;

use std::path::PathBuf;

use self::{load::LoadError, normalize::PolicySet};

/// Loads, validates and normalises the manifests at `paths`: the policy a
/// `causeway run` enforces and `causeway policy explain` explains.
///
/// # Errors
/// Every error found (all or nothing: no partial policy).
pub fn load_set(paths: &[PathBuf]) -> Result<PolicySet, Vec<LoadError>> {
    let checked = load::check_paths(paths);
    if !checked.errors.is_empty() {
        return Err(checked.errors);
    }
    PolicySet::build(checked.loaded.iter().map(|l| &l.resource)).map_err(|message| {
        vec![LoadError {
            file: paths.first().cloned().unwrap_or_default(),
            line: None,
            column: None,
            resource: None,
            field: None,
            message,
        }]
    })
}
