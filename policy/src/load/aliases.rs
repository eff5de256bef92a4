//! A bound on YAML alias expansion, checked before a document is read into
//! values ("billion laughs").
//!
//! serde_yaml replays an aliased node each time an alias names it, and
//! limits only the number of replays (100 per event of the document): a
//! few kilobytes of anchors nested ten deep are refused, but one anchor of
//! a few thousand nodes named by a few thousand aliases expands to
//! millions of nodes, gigabytes once read into values. So each document is
//! first walked without building anything, counting the nodes the aliases
//! expand to, and refused once the count passes its budget: the
//! document's length in bytes plus [`SLACK`]. Without aliases a document
//! has fewer nodes than bytes (every node takes at least one character),
//! so no alias-free document is refused, and aliases can never make a
//! document cost more than an alias-free one of the same size. This is the
//! check go-yaml added for Kubernetes (excessive aliasing), in a simpler
//! form.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

/// Nodes any document may expand to beyond its length in bytes: room for
/// the anchors of small hand-written files.
pub(super) const SLACK: usize = 10_000;

/// Whether `text` (one YAML document) expands to at most its budget of
/// nodes. `Ok` also when the text is not valid YAML: the read that follows
/// reports that, with its position.
///
/// # Errors
/// The message to report: the budget, and what to do.
pub(super) fn check(text: &str) -> Result<(), String> {
    let budget = text.len().saturating_add(SLACK);
    let mut count = Count { left: budget };
    match count.walk(serde_yaml::Deserializer::from_str(text)) {
        Err(e) if e.to_string().contains(OVER) => Err(format!(
            "YAML aliases expand this document past {budget} nodes (its length in bytes plus {SLACK}): \
             refused before reading it (a \"billion laughs\" alias bomb?); write the repeated parts out \
             or use fewer aliases"
        )),
        _ => Ok(()),
    }
}

const OVER: &str = "causeway: alias expansion over budget";

/// Counts nodes down from `left`; fails when they run out.
struct Count {
    left: usize,
}

impl Count {
    fn walk<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        Walk(self).deserialize(d)
    }

    fn node<E: de::Error>(&mut self) -> Result<(), E> {
        match self.left.checked_sub(1) {
            Some(l) => {
                self.left = l;
                Ok(())
            }
            None => Err(E::custom(OVER)),
        }
    }
}

/// One node and everything under it.
struct Walk<'a>(&'a mut Count);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! scalar {
    ($($f:ident: $t:ty),*) => {$(
        fn $f<E: de::Error>(self, _: $t) -> Result<(), E> {
            self.0.node()
        }
    )*};
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128,
        visit_u128: u128, visit_f64: f64, visit_str: &str, visit_bytes: &[u8]);

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.node()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.0.node()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.0.walk(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.0.walk(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.node()?;
        while seq.next_element_seed(Walk(self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.node()?;
        while map.next_key_seed(Walk(self.0))?.is_some() {
            map.next_value_seed(Walk(self.0))?;
        }
        Ok(())
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged node (`!Tag value`): the tag, then its value.
        use de::VariantAccess as _;
        self.0.node()?;
        let ((), variant) = data.variant_seed(Walk(self.0))?;
        variant.newtype_variant_seed(Walk(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One anchor of `n` scalars named by `n` aliases: n² nodes from about
    /// 5n bytes, which serde_yaml's own repetition limit lets through.
    fn quadratic(n: usize) -> String {
        let items = vec!["x"; n].join(",");
        let aliases = vec!["*a"; n].join(",");
        format!("a: &a [{items}]\nb: [{aliases}]\n")
    }

    #[test]
    fn an_alias_bomb_is_refused_and_ordinary_anchors_pass() {
        let bomb = quadratic(3000);
        let e = check(&bomb).unwrap_err();
        assert!(e.contains("aliases expand"), "{e}");
        let laughs = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n\
                      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n\
                      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n\
                      g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
        assert!(check(laughs).is_err(), "nested billion laughs");
        let anchors =
            "metadata: {name: x, labels: &l {app: web, tier: front}}\nspec:\n  a: *l\n  b: *l\n";
        check(anchors).expect("a few aliases");
        check(&quadratic(50)).expect("small expansion within the slack");
        check("not: [valid").expect("syntax errors are the reader's to report");
    }
}
