//! Finding the manifests: files as given, directories walked in path
//! order, stdin once.

use std::{
    collections::BTreeSet,
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use super::{Batch, LoadError, STDIN_NAME, reader::load_text};

/// Reads every path into `batch`; errors of one path do not stop the
/// others.
pub(super) fn load_into(paths: &[PathBuf], batch: &mut Batch) {
    let mut seen_files = BTreeSet::new();
    let mut stdin_read = false;
    for path in paths {
        if path.as_os_str() == "-" {
            let name = Path::new(STDIN_NAME);
            if stdin_read {
                batch.errors.push(LoadError::in_file(
                    name,
                    "`-` (stdin) is given more than once: give it once",
                ));
                continue;
            }
            stdin_read = true;
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => load_text(&text, name, batch),
                Err(e) => batch
                    .errors
                    .push(LoadError::in_file(name, format!("cannot read stdin: {e}"))),
            }
            continue;
        }
        let files = match gather(path) {
            Ok(files) => files,
            Err(e) => {
                batch.errors.push(*e);
                continue;
            }
        };
        for file in files {
            let key = fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            if !seen_files.insert(key) {
                continue;
            }
            match fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => load_text(&text, &file, batch),
                    Err(e) => batch.errors.push(LoadError::in_file(
                        &file,
                        format!("is not UTF-8 text ({e}): manifests must be UTF-8 YAML or JSON"),
                    )),
                },
                Err(e) => batch.errors.push(LoadError::in_file(
                    &file,
                    format!("cannot read: {e}; check the path and its permissions"),
                )),
            }
        }
    }
}

/// The files a path names: itself, or a directory's manifests in order.
fn gather(path: &Path) -> Result<Vec<PathBuf>, Box<LoadError>> {
    let meta = fs::metadata(path).map_err(|e| {
        Box::new(LoadError::in_file(
            path,
            format!("cannot read: {e}; check the path and its permissions"),
        ))
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let files = manifests_in(path)?;
    if files.is_empty() {
        return Err(Box::new(LoadError::in_file(
            path,
            "holds no *.yaml, *.yml or *.json files: name the manifests' directory or the files",
        )));
    }
    Ok(files)
}

/// A directory's `*.yaml`, `*.yml` and `*.json` files, recursively,
/// skipping names that start with `.`, in sorted path order (what an apply
/// of the directory reads; the control API's clients send the same files).
///
/// # Errors
/// A directory cannot be read.
pub fn manifests_in(dir: &Path) -> Result<Vec<PathBuf>, Box<LoadError>> {
    let mut files = Vec::new();
    walk(dir, &mut files, &mut BTreeSet::new())?;
    files.sort();
    Ok(files)
}

fn walk(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    visited: &mut BTreeSet<PathBuf>,
) -> Result<(), Box<LoadError>> {
    // Symlinks may loop back up: read each real directory once.
    if !visited.insert(fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned())) {
        return Ok(());
    }
    let cannot = |e: std::io::Error| {
        Box::new(LoadError::in_file(
            dir,
            format!("cannot read the directory: {e}; check its permissions"),
        ))
    };
    for entry in fs::read_dir(dir).map_err(cannot)? {
        let entry = entry.map_err(cannot)?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks; a dangling one is skipped like other non-files.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, files, visited)?;
        } else if meta.is_file() && is_manifest_name(&path) {
            files.push(path);
        }
    }
    Ok(())
}

fn is_manifest_name(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["yaml", "yml", "json"]
            .iter()
            .any(|m| e.eq_ignore_ascii_case(m))
    })
}

/// Whether a file is read as JSON (else YAML).
pub(super) fn is_json_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}
