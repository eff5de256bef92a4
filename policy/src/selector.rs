//! Calico v3 label selectors: parsing, evaluation and canonical text.
//!
//! The language is Calico's own (`libcalico-go/lib/selector/tokenizer` and
//! `.../parser`): this module accepts exactly the selectors Calico accepts
//! (apart from the nesting limit below), gives them the same meaning, and
//! prints them the way Calico's `Selector.String()` does.
//!
//! ```text
//! selector  = blank | or                  ; blank text (or none) is all()
//! or        = and { "||" and }
//! and       = operation { "&&" operation }
//! operation = { "!" } ( "all()" | "global()" | "has(" key ")" | "(" or ")"
//!                     | key compare string | key ( "in" | "not in" ) set )
//! compare   = "==" | "!=" | "contains" | "starts with" | "ends with"
//! set       = "{" [ string { "," string } [ "," ] ] "}"
//! key       = 1*512 ( ALPHA / DIGIT / "_" / "." / "/" / "-" )
//! string    = "'" { any but "'" } "'" | '"' { any but '"' } '"'
//! ```
//!
//! Spaces and tabs may separate any two tokens, and may appear inside the
//! parentheses of `all( )`, `global( )` and `has( key )`; the function name
//! must touch its `(`.
//!
//! # Meaning
//!
//! | expression             | label present with value `v`   | label absent |
//! |------------------------|--------------------------------|--------------|
//! | `k == 's'`             | `v == s`                       | false        |
//! | `k != 's'`             | `v != s`                       | **true**     |
//! | `k in {…}`             | `v` is in the set              | false        |
//! | `k not in {…}`         | `v` is not in the set          | **true**     |
//! | `k contains 's'`       | `v` contains `s`               | false        |
//! | `k starts with 's'`    | `v` starts with `s`            | false        |
//! | `k ends with 's'`      | `v` ends with `s`              | false        |
//! | `has(k)`               | true                           | false        |
//!
//! `&&` binds tighter than `||`; `!` applies to the one operation that
//! follows it, so `!a == 'x' && b == 'y'` is `(!(a == 'x')) && b == 'y'`.
//! Comparisons are byte-exact (no case folding, no trimming).
//!
//! # Where Calico is loose, and what this module does
//!
//! * Blank text (`""`, `"  "`) parses to [`Selector::all`], as Calico's
//!   parser does; [`Selector::text`] still returns the blank text.
//! * Strings have no escapes: a value holding `'` is written in `"…"` and
//!   vice versa; no value can hold both.
//! * `k in {}` is accepted and matches nothing; `k not in {}` matches
//!   everything. A trailing comma (`{'a',}`) is accepted. Both as in Calico.
//! * `starts with`, `ends with` and `not in` may also be written without the
//!   space (`startswith`, `endswith`, `notin`), as in Calico. Operator words
//!   are only recognised straight after a key, so a key may be called `in`,
//!   `not`, `has` or `all` (`has == 'x'` tests the label `has`).
//! * Keys are Calico's, not Kubernetes' stricter syntax: any 1..=512 bytes
//!   from `[A-Za-z0-9_./-]` (`projectcalico.org/namespace`, `a/b/c`, `-x`).
//! * Only spaces and tabs separate tokens; a line break outside quotes is an
//!   error, as in Calico (a YAML `|` block keeps line breaks; `>-` folds
//!   them). Inside quotes anything goes.
//! * Parentheses may nest at most [`MAX_NESTING`] deep. Calico has no limit;
//!   this keeps recursion on untrusted input bounded.
//!
//! # `global()`
//!
//! Calico's evaluator treats `global()` like `all()`: both are true for any
//! labels. Their distinct meaning exists only in a rule's
//! `namespaceSelector`, which Calico rewrites before evaluating: `all()`
//! becomes "has a namespace" and `global()` becomes "has no namespace", so
//! `global()` selects the non-namespaced resources (host endpoints, global
//! network sets) that a namespaced policy could not otherwise reach.
//! [`Selector::matches`] follows the evaluator; [`Selector::matches_in`]
//! takes a [`Scope`] that says which of the three readings applies, and
//! [`Selector::matches_namespace`] is the `namespaceSelector` shorthand.
//! [`Selector::is_global`] says whether a selector is exactly `global()`.
//!
//! # Canonical text
//!
//! [`Display`](fmt::Display) prints Calico's canonical form: single spaces
//! around operators, `&&`/`||` groups always parenthesised (even at the top:
//! `(a == "x" && has(b))`), `!` written against its operand, values in `"`
//! unless they contain `"`, set values sorted (by bytes) and deduplicated.
//! The printed form always parses back to an equal selector. One deviation:
//! a double negation through parentheses, `!(!has(a))`, is simplified to
//! `has(a)`, where Calico prints `!!has(a)` (which it then re-reads as
//! `has(a)`); the meaning is the same either way.
//!
//! Equality and hashing compare the parsed expression, not the text:
//! `a=='x'` equals `a == "x"`, and `k in {'b','a','a'}` equals
//! `k in {"a", "b"}`.
#![forbid(unsafe_code)]

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    hash::{BuildHasher, Hash, Hasher},
    str::FromStr,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod k8s;
mod parse;
#[cfg(test)]
mod tests;

pub use k8s::{LabelSelectorError, LabelSelectorRequirement, from_match_labels};
pub use parse::{MAX_KEY_LEN, MAX_NESTING};

/// A parsed Calico selector.
///
/// Cheap to evaluate: [`matches`](Self::matches) walks the expression and
/// looks labels up, without allocating.
#[derive(Clone)]
pub struct Selector {
    /// The text it was parsed from (canonical text when built otherwise).
    text: Box<str>,
    root: Node,
}

/// A resource's labels, as a selector sees them.
///
/// Implemented for the usual maps and for slices, arrays and vectors of
/// `(key, value)` pairs (first match wins). Implement it for label sets
/// that are computed or layered, such as an endpoint's own labels over the
/// labels its profiles apply.
pub trait Labels {
    /// The value of label `key`, or `None` when the label is absent.
    fn get(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        Self::get(self, key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        Self::get(self, key).map(String::as_str)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Labels for [(K, V)] {
    fn get(&self, key: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Labels for [(K, V); N] {
    fn get(&self, key: &str) -> Option<&str> {
        Labels::get(self.as_slice(), key)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Labels for Vec<(K, V)> {
    fn get(&self, key: &str) -> Option<&str> {
        Labels::get(self.as_slice(), key)
    }
}

/// The labels of a resource without any.
struct NoLabels;

impl Labels for NoLabels {
    fn get(&self, _key: &str) -> Option<&str> {
        None
    }
}

/// What `all()` and `global()` mean during one evaluation (see the module
/// docs). Label tests behave the same in every scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Plain label matching, as Calico's evaluator does it: `all()` and
    /// `global()` are both true. For a policy's `selector`, a rule's
    /// `selector` or `notSelector`, a `serviceAccountSelector`, and so on.
    Labels,
    /// A rule's `namespaceSelector`, asked about a resource that lives in a
    /// namespace; the labels are that namespace's. `all()` is true,
    /// `global()` is false.
    Namespaced,
    /// A rule's `namespaceSelector`, asked about a non-namespaced resource
    /// (host endpoint, global network set); the labels should be empty, as
    /// such a resource has no namespace labels. `all()` is false, `global()`
    /// is true, so `namespaceSelector: global()` selects exactly these.
    NonNamespaced,
}

/// A selector that does not parse.
///
/// `Display` gives `at position N: what is wrong`; use
/// [`annotate`](Self::annotate) to point at the spot for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
#[non_exhaustive]
pub struct SelectorError {
    /// Byte offset (0-based) of the offending token in the selector text;
    /// the text's length when the selector ends too early.
    pub position: usize,
    /// What is wrong there and, where it helps, what was expected.
    pub message: String,
}

impl SelectorError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        Self {
            position,
            message: message.into(),
        }
    }

    /// The line of `text` holding the error, with a caret under the
    /// offending position and the message after it:
    ///
    /// ```text
    /// tier == prod
    ///         ^ expected a quoted string after `==`, found label `prod`
    /// ```
    ///
    /// `text` should be the selector that failed; any other text gives a
    /// best-effort picture and never panics.
    #[must_use]
    pub fn annotate(&self, text: &str) -> String {
        let mut pos = self.position.min(text.len());
        while !text.is_char_boundary(pos) {
            pos -= 1;
        }
        let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let pad: String = text[line_start..pos]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!("{}\n{pad}^ {}", &text[line_start..line_end], self.message)
    }
}

impl Selector {
    /// Parses Calico selector text. Blank text means `all()`.
    ///
    /// # Errors
    /// The text is not a Calico selector; the error has the byte position of
    /// the offending token and says what was expected there.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        Ok(Self {
            root: parse::parse(text)?,
            text: text.into(),
        })
    }

    /// `all()`: matches everything.
    #[must_use]
    pub fn all() -> Self {
        Self::from_root(Node::All)
    }

    /// `global()`: see the module docs and [`Scope`].
    #[must_use]
    pub fn global() -> Self {
        Self::from_root(Node::Global)
    }

    /// A selector whose text is the canonical form of `root`.
    fn from_root(root: Node) -> Self {
        Self {
            text: root.to_string().into(),
            root,
        }
    }

    /// Whether `labels` match, with Calico's evaluator semantics (`all()`
    /// and `global()` both true): [`matches_in`](Self::matches_in) with
    /// [`Scope::Labels`].
    #[must_use]
    pub fn matches(&self, labels: &dyn Labels) -> bool {
        self.root.eval(labels, Scope::Labels)
    }

    /// Whether `labels` match, reading `all()` and `global()` as `scope`
    /// says.
    #[must_use]
    pub fn matches_in(&self, labels: &dyn Labels, scope: Scope) -> bool {
        self.root.eval(labels, scope)
    }

    /// For a rule's `namespaceSelector`: whether it selects a resource in a
    /// namespace with `namespace_labels`, or (`None`) a non-namespaced
    /// resource.
    #[must_use]
    pub fn matches_namespace(&self, namespace_labels: Option<&dyn Labels>) -> bool {
        match namespace_labels {
            Some(labels) => self.root.eval(labels, Scope::Namespaced),
            None => self.root.eval(&NoLabels, Scope::NonNamespaced),
        }
    }

    /// Whether this is exactly `all()` (which blank text parses to),
    /// possibly parenthesised or doubly negated. `all() && all()` is not.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.root == Node::All
    }

    /// Whether this is exactly `global()` (possibly parenthesised).
    #[must_use]
    pub fn is_global(&self) -> bool {
        self.root == Node::Global
    }

    /// The text this selector was parsed from, unchanged. For selectors not
    /// parsed from text ([`all`](Self::all), [`from_match_labels`]) it is
    /// the canonical form.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl Default for Selector {
    /// `all()`, which is what Calico makes of a missing selector.
    fn default() -> Self {
        Self::all()
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, SelectorError> {
        Self::parse(text)
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl Eq for Selector {}

impl Hash for Selector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.root.hash(state);
    }
}

impl fmt::Display for Selector {
    /// Calico's canonical form (see the module docs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Selector")
            .field(&format_args!("{}", self.root))
            .finish()
    }
}

impl Serialize for Selector {
    /// As the original text.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Selector {
    /// From a string, which must parse.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid selector {text:?}: {e}")))
    }
}

/// The expression tree. Invariants (kept by the parser and by
/// [`from_match_labels`]): keys are valid selector keys, no value holds both
/// quote characters, set values are sorted and unique, `And`/`Or` have at
/// least two operands, and `Not` never wraps a `Not`. These make the
/// canonical text parse back to an equal tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Node {
    All,
    Global,
    Has(Box<str>),
    Test {
        key: Box<str>,
        op: TestOp,
        value: Box<str>,
    },
    In {
        key: Box<str>,
        values: Box<[Box<str>]>,
    },
    NotIn {
        key: Box<str>,
        values: Box<[Box<str>]>,
    },
    Not(Box<Self>),
    And(Vec<Self>),
    Or(Vec<Self>),
}

/// A comparison between a label's value and a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TestOp {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
}

impl TestOp {
    /// The operator as Calico prints it.
    fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Contains => "contains",
            Self::StartsWith => "starts with",
            Self::EndsWith => "ends with",
        }
    }
}

impl Node {
    /// `!self`, cancelling a double negation.
    fn negate(self) -> Self {
        match self {
            Self::Not(inner) => *inner,
            other => Self::Not(Box::new(other)),
        }
    }

    fn eval(&self, labels: &dyn Labels, scope: Scope) -> bool {
        match self {
            Self::All => scope != Scope::NonNamespaced,
            Self::Global => scope != Scope::Namespaced,
            Self::Has(key) => labels.get(key).is_some(),
            Self::Test { key, op, value } => match labels.get(key) {
                // Of the comparisons, only `!=` holds for an absent label.
                None => *op == TestOp::Ne,
                Some(actual) => match op {
                    TestOp::Eq => actual == &**value,
                    TestOp::Ne => actual != &**value,
                    TestOp::Contains => actual.contains(&**value),
                    TestOp::StartsWith => actual.starts_with(&**value),
                    TestOp::EndsWith => actual.ends_with(&**value),
                },
            },
            Self::In { key, values } => labels.get(key).is_some_and(|v| set_contains(values, v)),
            Self::NotIn { key, values } => labels.get(key).is_none_or(|v| !set_contains(values, v)),
            Self::Not(inner) => !inner.eval(labels, scope),
            Self::And(nodes) => nodes.iter().all(|n| n.eval(labels, scope)),
            Self::Or(nodes) => nodes.iter().any(|n| n.eval(labels, scope)),
        }
    }
}

/// Whether the sorted `values` hold `value`.
fn set_contains(values: &[Box<str>], value: &str) -> bool {
    values.binary_search_by(|v| (**v).cmp(value)).is_ok()
}

/// Writes `value` quoted the way Calico does: in `"` unless it holds `"`.
fn write_quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let quote = if value.contains('"') { '\'' } else { '"' };
    write!(f, "{quote}{value}{quote}")
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let write_set = |f: &mut fmt::Formatter<'_>, key: &str, op: &str, values: &[Box<str>]| {
            write!(f, "{key} {op} {{")?;
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_quoted(f, value)?;
            }
            f.write_str("}")
        };
        let write_group = |f: &mut fmt::Formatter<'_>, sep: &str, nodes: &[Self]| {
            f.write_str("(")?;
            for (i, node) in nodes.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                node.fmt(f)?;
            }
            f.write_str(")")
        };
        match self {
            Self::All => f.write_str("all()"),
            Self::Global => f.write_str("global()"),
            Self::Has(key) => write!(f, "has({key})"),
            Self::Test { key, op, value } => {
                write!(f, "{key} {} ", op.as_str())?;
                write_quoted(f, value)
            }
            Self::In { key, values } => write_set(f, key, "in", values),
            Self::NotIn { key, values } => write_set(f, key, "not in", values),
            Self::Not(inner) => {
                f.write_str("!")?;
                inner.fmt(f)
            }
            Self::And(nodes) => write_group(f, " && ", nodes),
            Self::Or(nodes) => write_group(f, " || ", nodes),
        }
    }
}
