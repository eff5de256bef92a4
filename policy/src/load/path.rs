//! Paths to fields inside a document, printed as serde_yaml prints them:
//! `spec.ingress[0].source.selector`.

use std::fmt;

/// One step into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    /// A mapping's key.
    Key(String),
    /// A sequence's index.
    Index(usize),
}

/// A path from a document's root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FieldPath(Vec<Seg>);

impl FieldPath {
    /// The document itself.
    pub(super) fn root() -> Self {
        Self::default()
    }

    /// This path, then `key`.
    pub(super) fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    /// This path, then index `i`.
    pub(super) fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// This path, then `rest`.
    pub(super) fn join(&self, rest: &Self) -> Self {
        let mut p = self.clone();
        p.0.extend(rest.0.iter().cloned());
        p
    }

    /// Whether this is the document itself.
    pub(super) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The steps.
    pub(super) fn segs(&self) -> &[Seg] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}
