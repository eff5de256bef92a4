//! The desired state on disk: `DIR/desired.json`, replaced atomically.
//!
//! A save writes `desired.json.tmp`, fsyncs it, renames it over
//! `desired.json` and fsyncs the directory, so that after a crash at any
//! moment (a kill -9, or the power) the file holds either the previous
//! state or the new one, whole. An apply is acknowledged only after its
//! save returned.
//!
//! The file is JSON: `{"format": 1, "generation": N, "resources": [{
//! "generation": G, "source": FILE, "manifest": {...}}]}`. Reading it back
//! goes through the same loader as an apply, so a file edited by hand is
//! checked as strictly as an apply, and a state that does not load stops
//! the appliance from starting (fail closed) with the file named.

use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{Desired, Entry, loaded_from_manifest};

/// The file's name in the state directory.
pub const FILE: &str = "desired.json";

const FORMAT: u32 = 1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    format: u32,
    generation: u64,
    resources: Vec<StoredResource>,
}

/// [`OnDisk`], borrowed from the state, for saving.
#[derive(Serialize)]
struct OnDiskRef<'a> {
    format: u32,
    generation: u64,
    resources: Vec<StoredRef<'a>>,
}

#[derive(Serialize)]
struct StoredRef<'a> {
    generation: u64,
    source: &'a Path,
    manifest: &'a serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredResource {
    generation: u64,
    source: PathBuf,
    manifest: serde_json::Value,
}

/// The path of the state file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes `state` into `dir` atomically and durably.
///
/// # Errors
/// The directory cannot be made or written, or a sync fails.
pub fn save(dir: &Path, state: &Desired) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Borrowed and compact: a 10k-rule state is megabytes, and copying
    // then pretty-printing it cost more than the disk.
    let disk = OnDiskRef {
        format: FORMAT,
        generation: state.generation,
        resources: state
            .entries
            .values()
            .map(|e| StoredRef {
                generation: e.generation,
                source: &e.loaded.source.file,
                manifest: &e.loaded.manifest,
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&disk).context("serialising the state")?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let target = path(dir);
    {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
    }
    fs::rename(&tmp, &target)
        .with_context(|| format!("renaming {} to {}", tmp.display(), target.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing the directory {}", dir.display()))?;
    Ok(())
}

/// Reads the state saved in `dir`; `None` when there is none yet.
///
/// # Errors
/// The file exists but cannot be read, is not this format, or a resource
/// in it does not load: every problem, with the file named.
pub fn load(dir: &Path) -> Result<Option<Desired>> {
    let file = path(dir);
    let bytes = match fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let disk: OnDisk = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a causeway state file", file.display()))?;
    if disk.format != FORMAT {
        bail!(
            "{}: format {} is not one this causeway reads ({FORMAT})",
            file.display(),
            disk.format
        );
    }
    let mut state = Desired {
        generation: disk.generation,
        ..Desired::default()
    };
    let mut problems = Vec::new();
    for (i, r) in disk.resources.into_iter().enumerate() {
        match loaded_from_manifest(&r.manifest, &r.source) {
            Ok(loaded) => {
                let id = loaded.resource.id();
                state
                    .entries
                    .insert(id, std::sync::Arc::new(Entry::new(loaded, r.generation)));
            }
            Err(errors) => {
                for e in errors {
                    problems.push(format!("resources[{i}]: {e}"));
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "{}: the stored state does not load; the appliance will not start on it:\n  {}",
            file.display(),
            problems.join("\n  ")
        );
    }
    Ok(Some(state))
}
