//! Reading one file's text: cutting it into documents, choosing each
//! document's (or List item's) kind, the typed read, and the checks of
//! each resource, with every error placed in the file.

use std::path::Path;

use serde::de::DeserializeSeed;
use serde_yaml::{Mapping, Value};

use super::{
    Batch, LoadError, Loaded, Source, document,
    document::Document,
    files::is_json_name,
    kinds::{self, Kind, ListSeed},
    locate,
    path::FieldPath,
    semantic,
};
use crate::model::Resource;

/// Lists longer than this whose item lines cannot be found by a quick scan
/// report every item at the list's line instead of searching each item.
const MAX_ITEMS_TO_LOCATE: usize = 64;

/// The largest manifest file read: a state of 100 000 rules written as one
/// List is about 20 MiB of YAML, and reading a file costs tens of times
/// its size in memory while it is parsed.
pub(crate) const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// Loads the manifests in `text`, read from `file`, into `batch`.
pub(super) fn load_text(text: &str, file: &Path, batch: &mut Batch) {
    if text.len() > MAX_MANIFEST_BYTES {
        batch.errors.push(LoadError::in_file(
            file,
            format!(
                "is {} bytes, more than the {MAX_MANIFEST_BYTES} a manifest file may be: split it into several files",
                text.len()
            ),
        ));
        return;
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let docs = if is_json_name(file) {
        document::whole(text).into_iter().collect()
    } else {
        document::split_yaml(text)
    };
    for doc in &docs {
        DocLoader { file, doc, batch }.load();
    }
}

/// Loads one document.
struct DocLoader<'a, 'b> {
    file: &'a Path,
    doc: &'a Document<'a>,
    batch: &'b mut Batch,
}

impl DocLoader<'_, '_> {
    fn load(&mut self) {
        // Aliases are bounded before anything is built from them.
        if let Err(message) = super::aliases::check(self.doc.text) {
            let error = self.error_at_start(message);
            self.batch.errors.push(error);
            return;
        }
        // A first, untyped read: syntax, then apiVersion and kind.
        let value: Value = match serde_yaml::from_str(self.doc.text) {
            Ok(v) => v,
            Err(e) => {
                let error = self.syntax_error(&e);
                self.batch.errors.push(error);
                return;
            }
        };
        let map = match &value {
            Value::Mapping(map) => map,
            Value::Null => return,
            other => {
                let error = self.error_at_start(format!(
                    "a manifest must be a mapping with apiVersion, kind, metadata and spec, not {}",
                    value_kind(other)
                ));
                self.batch.errors.push(error);
                return;
            }
        };
        let (api, kind) = match head(map, None) {
            Ok(h) => h,
            Err(message) => {
                let error = self.error_at_start(message);
                self.batch.errors.push(error);
                return;
            }
        };
        if kinds::is_list(kind) {
            self.load_list(map, &value, api, kind);
            return;
        }
        let kind = match Kind::from_type(api, kind) {
            Ok(k) => k,
            Err(message) => {
                let mut error = self.error_at(&FieldPath::root().key("kind"), message);
                error.field = Some("kind".to_owned());
                self.batch.errors.push(error);
                return;
            }
        };
        // The typed read, from the untyped form: the text is scanned once.
        // Only if that fails is the text read again, so that the error
        // carries a position, and so that where the text is more lenient
        // than the untyped form (a number or a boolean where a string is
        // expected) the text decides, as before.
        let typed = kind
            .parse(&value)
            .or_else(|_| kind.parse(serde_yaml::Deserializer::from_str(self.doc.text)));
        match typed {
            Ok(resource) => self.accept(resource, None, self.doc.start_line, &value),
            Err(e) => {
                let mut error = self.serde_error(&e, None, Some(&value));
                error.resource = Some(kinds::value_id(kind, map));
                self.note_unreadable(kind, map);
                self.batch.errors.push(error);
            }
        }
    }

    fn load_list(&mut self, map: &Mapping, root: &Value, list_api: &str, list_kind: &str) {
        let items_path = FieldPath::root().key("items");
        let items = match map.get("items") {
            Some(Value::Sequence(items)) => items,
            Some(Value::Null) | None => {
                let mut error = self.error_at(
                    &FieldPath::root(),
                    format!("a {list_kind} needs `items`: list the resources under `items:`"),
                );
                error.field = Some("items".to_owned());
                self.batch.errors.push(error);
                return;
            }
            Some(other) => {
                let mut error = self.error_at(
                    &items_path,
                    format!(
                        "`items` must be a list of resources, not {}",
                        value_kind(other)
                    ),
                );
                error.field = Some("items".to_owned());
                self.batch.errors.push(error);
                return;
            }
        };
        let lines = document::item_lines(self.doc.text, items.len());
        let item_line = |this: &Self, i: usize| match &lines {
            Some(lines) => this.doc.first_line + lines[i] - 1,
            None if items.len() <= MAX_ITEMS_TO_LOCATE => this
                .locate(&items_path.index(i))
                .map_or(this.doc.start_line, |(line, _)| line),
            None => this.doc.start_line,
        };
        // Choose each item's kind from its untyped form.
        let implied = kinds::implied_item_type(list_api, list_kind);
        let mut plan = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let chosen = match item {
                Value::Mapping(item) => head(item, implied).and_then(|(api, kind)| {
                    if kinds::is_list(kind) {
                        Err(format!(
                            "a {kind} inside a {list_kind} is not supported: put its items in the outer list"
                        ))
                    } else {
                        Kind::from_type(api, kind)
                    }
                }),
                other => Err(format!(
                    "a {list_kind}'s items must be resources (mappings), not {}",
                    value_kind(other)
                )),
            };
            match chosen {
                Ok(kind) => plan.push(Some(kind)),
                Err(message) => {
                    plan.push(None);
                    let line = item_line(self, i);
                    self.batch.errors.push(LoadError {
                        file: self.file.to_owned(),
                        line: Some(line),
                        column: None,
                        resource: None,
                        field: Some(format!("items[{i}]")),
                        message,
                    });
                }
            }
        }
        // The typed read of every item, from the untyped form first (as
        // for one document); if any item fails, from the text, for the
        // positions. serde stops at an item's first error; read again from
        // the next item until the end.
        let mut parsed = Vec::new();
        let seed = ListSeed {
            plan: &plan,
            from: 0,
            current: &mut 0,
            out: &mut parsed,
        };
        if seed.deserialize(root).is_ok() {
            for (i, resource) in parsed {
                let line = item_line(self, i);
                self.accept(resource, Some(i), line, &items[i]);
            }
            return;
        }
        let mut from = 0;
        while from < plan.len() {
            let mut parsed = Vec::new();
            let mut current = 0;
            let seed = ListSeed {
                plan: &plan,
                from,
                current: &mut current,
                out: &mut parsed,
            };
            let result = seed.deserialize(serde_yaml::Deserializer::from_str(self.doc.text));
            for (i, resource) in parsed {
                let line = item_line(self, i);
                let raw = items.get(i).cloned().unwrap_or(Value::Null);
                self.accept(resource, Some(i), line, &raw);
            }
            match result {
                Ok(()) => break,
                Err(e) => {
                    let failed = current;
                    let mut error = self.serde_error(&e, Some(failed), Some(root));
                    if let (Some(Some(kind)), Some(Value::Mapping(item))) =
                        (plan.get(failed), items.get(failed))
                    {
                        error.resource = Some(kinds::value_id(*kind, item));
                        self.note_unreadable(*kind, item);
                    }
                    self.batch.errors.push(error);
                    // `failed` only grows, so this ends.
                    from = failed.max(from) + 1;
                }
            }
        }
    }

    /// Fills defaults, checks the resource on its own and keeps it.
    fn accept(&mut self, mut resource: Resource, item: Option<usize>, line: usize, raw: &Value) {
        semantic::fill_defaults(&mut resource);
        let prefix = match item {
            Some(i) => FieldPath::root().key("items").index(i),
            None => FieldPath::root(),
        };
        for issue in semantic::check(&resource) {
            let (line, column) = self
                .locate(&prefix.join(&issue.path))
                .map_or((Some(line), None), |(l, c)| (Some(l), Some(c)));
            self.batch.errors.push(LoadError {
                file: self.file.to_owned(),
                line,
                column,
                resource: Some(resource.id()),
                field: (!issue.path.is_root()).then(|| issue.path.to_string()),
                message: issue.message,
            });
        }
        let manifest = serde_json::to_value(raw).unwrap_or(serde_json::Value::Null);
        self.batch.loaded.push(Loaded {
            resource,
            manifest,
            source: Source {
                file: self.file.to_owned(),
                document: self.doc.index,
                line,
            },
        });
    }

    fn note_unreadable(&mut self, kind: Kind, map: &Mapping) {
        if kind != Kind::Tier {
            return;
        }
        if let Some(name) = kinds::value_name(map) {
            self.batch.unreadable_tiers.insert(name.to_owned());
        }
    }

    /// The absolute line and column of a field (or its nearest parent).
    fn locate(&self, path: &FieldPath) -> Option<(usize, usize)> {
        locate::locate(self.doc.text, path)
            .map(|(line, column)| (self.doc.first_line + line - 1, column))
    }

    fn error_at(&self, path: &FieldPath, message: String) -> LoadError {
        let (line, column) = self
            .locate(path)
            .map_or((self.doc.start_line, None), |(l, c)| (l, Some(c)));
        LoadError {
            file: self.file.to_owned(),
            line: Some(line),
            column,
            resource: None,
            field: None,
            message,
        }
    }

    fn error_at_start(&self, message: String) -> LoadError {
        LoadError {
            file: self.file.to_owned(),
            line: Some(self.doc.start_line),
            column: None,
            resource: None,
            field: None,
            message,
        }
    }

    /// An error of the untyped read: YAML syntax, or a key given twice.
    fn syntax_error(&self, e: &serde_yaml::Error) -> LoadError {
        let mut error = self.serde_error(e, None, None);
        if let Some(key) = error.message.strip_prefix("duplicate entry with key ") {
            error.message = format!("key {key} is given twice in this mapping: remove one of them");
            return error;
        }
        error.message = format!("syntax error: {}", error.message);
        let at = e.location().and_then(|l| {
            let line = self.doc.text.lines().nth(l.line() - 1)?;
            line.chars().nth(l.column() - 1)
        });
        if at == Some('\t') {
            error
                .message
                .push_str(" (a tab: YAML indents with spaces only)");
        }
        error
    }

    /// A serde_yaml error as a [`LoadError`]; inside a List's item `item`,
    /// the field path is the item's own. `root` is the document's untyped
    /// form, to find a refused value that serde reports at its parent.
    fn serde_error(
        &self,
        e: &serde_yaml::Error,
        item: Option<usize>,
        root: Option<&Value>,
    ) -> LoadError {
        let mut t = locate::translate(e, self.doc.first_line - 1);
        let refined = match (root, &t.field) {
            (Some(root), Some(field)) => locate::refine(root, field, &t.message),
            _ => None,
        };
        if let Some(path) = refined {
            if let Some((line, column)) = self.locate(&path) {
                (t.line, t.column) = (Some(line), Some(column));
            }
            t.field = Some(path.to_string());
        }
        let mut field = t.field;
        if let Some(i) = item {
            let prefix = format!("items[{i}]");
            field = match field.as_deref() {
                Some(f) if f == prefix => None,
                Some(f) => Some(
                    f.strip_prefix(&format!("{prefix}."))
                        .unwrap_or(f)
                        .to_owned(),
                ),
                None => None,
            };
        }
        LoadError {
            file: self.file.to_owned(),
            line: Some(t.line.unwrap_or(self.doc.start_line)),
            column: t.column,
            resource: None,
            field,
            message: t.message,
        }
    }
}

/// A document's (or item's) `apiVersion` and `kind`; a typed List's items
/// may leave them out (`implied`).
fn head<'a>(
    map: &'a Mapping,
    implied: Option<(&'a str, &'a str)>,
) -> Result<(&'a str, &'a str), String> {
    let text = |key: &str| match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(format!(
            "`{key}` must be a string, not {}",
            value_kind(other)
        )),
    };
    let api = text("apiVersion")?.or(implied.map(|i| i.0));
    let kind = text("kind")?.or(implied.map(|i| i.1));
    match (api, kind) {
        (Some(api), Some(kind)) => Ok((api, kind)),
        (None, None) => Err(format!(
            "missing `apiVersion` and `kind`: every manifest needs both, e.g. {}",
            kinds::EXAMPLE
        )),
        (None, Some(kind)) => Err(format!(
            "missing `apiVersion` for kind {kind}: add it ({})",
            kinds::api_hint(kind)
        )),
        (Some(_), None) => Err(format!(
            "missing `kind`: add it; understood are {}",
            kinds::UNDERSTOOD
        )),
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
