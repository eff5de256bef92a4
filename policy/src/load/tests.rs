mod bad;
mod checks;
mod documents;
mod files;
mod good;

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{
    super::model::{Action, PolicyType, Port, Protocol, Resource},
    *,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

fn ids(all: &[Loaded]) -> Vec<String> {
    all.iter().map(|l| l.resource.id()).collect()
}

fn find<'a>(all: &'a [Loaded], id: &str) -> &'a Loaded {
    all.iter()
        .find(|l| l.resource.id() == id)
        .unwrap_or_else(|| panic!("{id} not loaded; loaded: {:?}", ids(all)))
}

fn list(errors: &[LoadError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}

/// The one error at `file` (a path suffix) and `line` with exactly this
/// resource and field, whose message holds `fragment`.
#[track_caller]
fn expect<'a>(
    errors: &'a [LoadError],
    file: &str,
    line: usize,
    resource: Option<&str>,
    field: Option<&str>,
    fragment: &str,
) -> &'a LoadError {
    let found: Vec<&LoadError> = errors
        .iter()
        .filter(|e| {
            e.file.ends_with(file)
                && e.line == Some(line)
                && e.resource.as_deref() == resource
                && e.field.as_deref() == field
                && e.message.contains(fragment)
        })
        .collect();
    assert!(
        found.len() == 1,
        "expected one error {file}:{line}: {resource:?}: {field:?}: …{fragment}…, found {}; all errors:{}",
        found.len(),
        list(errors)
    );
    found[0]
}

/// Loads `text` as `test.yaml`, keeping resources and errors both.
fn load_both(text: &str) -> Batch {
    let mut batch = Batch::default();
    load_text(text, Path::new("test.yaml"), &mut batch);
    batch
}

/// The errors of `text`, which must have some.
#[track_caller]
fn errors_of(text: &str) -> Vec<LoadError> {
    let errors = load_both(text).errors;
    assert!(!errors.is_empty(), "no errors for:\n{text}");
    errors
}

/// `text` must load without errors.
#[track_caller]
fn ok(text: &str) -> Vec<Loaded> {
    load_str(text, Path::new("test.yaml")).unwrap_or_else(|e| panic!("errors:{}", list(&e)))
}

fn gnp(spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n{spec}"
    )
}

/// A scratch directory, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("causeway-load-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}
