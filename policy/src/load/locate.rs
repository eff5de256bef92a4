//! Positions: turning serde_yaml's errors into file positions, field paths
//! and messages, and finding the line of a field that a check found wrong.
//!
//! serde_yaml hands out positions only with errors. To find a field, this
//! walks the document with a visitor that fails on reaching it; the error
//! carries the position of the node it failed in.

use std::fmt;

use serde::{
    Deserializer,
    de::{self, DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_yaml::Value;

use super::path::{FieldPath, Seg};

/// The (line, column), from 1 and within `text`, of the node at `path`,
/// or of its deepest ancestor that exists.
pub(super) fn locate(text: &str, path: &FieldPath) -> Option<(usize, usize)> {
    let err = Walk(path.segs())
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .err()?;
    err.location().map(|l| (l.line(), l.column()))
}

/// Walks to the node at a path and fails there.
struct Walk<'a>(&'a [Seg]);

const HERE: &str = "here";

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // Every node is entered through a Deserializer method, so the error
        // raised inside gets the node's position.
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(key), rest)) = self.0.split_first() else {
            return Err(A::Error::custom(HERE));
        };
        while let Some(k) = map.next_key::<Value>()? {
            if k.as_str() == Some(key.as_str()) {
                return map.next_value_seed(Walk(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(A::Error::custom(HERE))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((&Seg::Index(want), rest)) = self.0.split_first() else {
            return Err(A::Error::custom(HERE));
        };
        for _ in 0..want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(A::Error::custom(HERE));
            }
        }
        // The walk fails inside the element if there is one.
        seq.next_element_seed(Walk(rest))?;
        Err(A::Error::custom(HERE))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(A::Error::custom(HERE))
    }
}

/// A serde_yaml error, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Translated {
    /// The file line.
    pub(super) line: Option<usize>,
    /// The column.
    pub(super) column: Option<usize>,
    /// The field path, with the unknown or missing field at its end.
    pub(super) field: Option<String>,
    /// The message, without the position (and with other positions moved
    /// to file lines).
    pub(super) message: String,
}

/// Takes a serde_yaml error apart; its lines are of a document whose first
/// line is file line `line_offset + 1`.
pub(super) fn translate(e: &serde_yaml::Error, line_offset: usize) -> Translated {
    let location = e.location();
    let mut text = e.to_string();
    if let Some(l) = &location {
        let at = format!(" at line {} column {}", l.line(), l.column());
        if let Some(i) = text.find(&at) {
            text.replace_range(i..i + at.len(), "");
        }
    }
    let text = shift_lines(&text, line_offset);
    let (field, message) = match text.split_once(": ") {
        Some((path, rest)) if is_path(path) => (Some(path.to_owned()), rest.to_owned()),
        _ => (None, text.clone()),
    };
    let (field, message) = explain(field, message);
    Translated {
        line: location.as_ref().map(|l| l.line() + line_offset),
        column: location.as_ref().map(|l| l.column()),
        field,
        message,
    }
}

/// Whether serde_yaml would print this as a path (`spec.ingress[0]`).
fn is_path(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains(['`', '"', '\'', ','])
}

/// Rewrites "line N column" as "line N+offset column" (libyaml's messages
/// name a second position, of what it was parsing).
fn shift_lines(text: &str, offset: usize) -> String {
    if offset == 0 {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("line ") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let shifted = rest[..digits]
            .parse::<usize>()
            .ok()
            .filter(|_| rest[digits..].starts_with(" column"));
        if let Some(n) = shifted {
            out.push_str(&(n + offset).to_string());
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// Puts the unknown or missing field on the path and says what to do.
fn explain(field: Option<String>, message: String) -> (Option<String>, String) {
    let join = |name: &str| match &field {
        Some(f) => format!("{f}.{name}"),
        None => name.to_owned(),
    };
    if let Some(name) = backticked_after(&message, "unknown field `") {
        return (
            Some(join(name)),
            format!("{message}; fix its spelling or remove it"),
        );
    }
    if let Some(name) = backticked_after(&message, "missing field `") {
        return (Some(join(name)), format!("{message}: add it"));
    }
    let message = message
        .replace("expected u8", "expected a number from 0 to 255")
        .replace("expected u16", "expected a number from 0 to 65535")
        .replace("expected u32", "expected a number from 0 to 4294967295");
    (field, message)
}

fn backticked_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(name, _)| name)
}

/// serde reports a value that a type's own `Deserialize` refused after
/// serde had buffered it (ports, protocols, selectors) at the enclosing
/// mapping or list, not at the value. This finds the one entry of that
/// mapping or list whose value the message quotes, if exactly one does.
pub(super) fn refine(root: &Value, field: &str, message: &str) -> Option<FieldPath> {
    let path = parse_path(field)?;
    let mut node = root;
    for seg in path.segs() {
        node = match seg {
            Seg::Key(k) => node.as_mapping()?.get(k.as_str())?,
            Seg::Index(i) => node.as_sequence()?.get(*i)?,
        };
    }
    let mut found = None;
    let mut check = |next: FieldPath, v: &Value| {
        if quotes(message, v) {
            found = match found {
                None => Some(Some(next)),
                Some(_) => Some(None), // ambiguous
            };
        }
    };
    match node {
        Value::Mapping(map) => {
            for (k, v) in map {
                if let Some(k) = k.as_str() {
                    check(path.key(k), v);
                }
            }
        }
        Value::Sequence(seq) => {
            for (i, v) in seq.iter().enumerate() {
                check(path.index(i), v);
            }
        }
        _ => return None,
    }
    found.flatten()
}

/// Whether `message` quotes the scalar `v`: a string as `` `s` `` or
/// `"s"`, a number as a word of its own.
fn quotes(message: &str, v: &Value) -> bool {
    match v {
        Value::String(s) => {
            message.contains(&format!("`{s}`")) || message.contains(&format!("{s:?}"))
        }
        Value::Number(n) => {
            let n = n.to_string();
            message
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-')
                .any(|word| word == n)
        }
        _ => false,
    }
}

/// Reads a path as serde_yaml prints it; `None` if it is not one (keys
/// holding `.` or `[` cannot be told apart and give `None` or a path that
/// leads nowhere).
fn parse_path(field: &str) -> Option<FieldPath> {
    let mut path = FieldPath::root();
    for part in field.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            path = path.key(key);
        }
        while let Some(r) = rest.strip_prefix('[') {
            let (n, after) = r.split_once(']')?;
            path = path.index(n.parse().ok()?);
            rest = after;
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(path)
}
