//! Generated selectors checked against a model, and generated garbage that
//! must fail cleanly. A fixed-seed generator keeps runs reproducible (the
//! control crate has no proptest).

use std::collections::BTreeMap;

use super::super::{Scope, Selector};

/// xorshift64*: small, deterministic, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("fits")
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, in_n: usize) -> bool {
        self.below(in_n) == 0
    }
}

const KEYS: [&str; 4] = ["a", "app.kubernetes.io/name", "in", "x-y_z"];
const VALUES: [&str; 6] = ["", "v", "w", "v w", "it's", "say \"hi\""];

/// The model: what a selector means, written independently of the parser.
#[derive(Debug)]
enum Expr {
    All,
    Global,
    Has(&'static str),
    Cmp(&'static str, &'static str, &'static str),
    Set(&'static str, bool, Vec<&'static str>),
    Not(Box<Self>),
    And(Vec<Self>),
    Or(Vec<Self>),
}

impl Expr {
    fn generate(rng: &mut Rng, depth: usize) -> Self {
        let leaf = depth == 0 || rng.chance(3);
        if leaf {
            let key = rng.pick(&KEYS);
            let value = rng.pick(&VALUES);
            return match rng.below(10) {
                0 => Self::All,
                1 => Self::Global,
                2 | 3 => Self::Has(key),
                4..=7 => Self::Cmp(
                    key,
                    rng.pick(&["==", "!=", "contains", "starts with", "ends with"]),
                    value,
                ),
                _ => {
                    let n = rng.below(4);
                    let values = (0..n).map(|_| rng.pick(&VALUES)).collect();
                    Self::Set(key, rng.chance(2), values)
                }
            };
        }
        match rng.below(3) {
            0 => Self::Not(Box::new(Self::generate(rng, depth - 1))),
            1 => Self::And(
                (0..2 + rng.below(3))
                    .map(|_| Self::generate(rng, depth - 1))
                    .collect(),
            ),
            _ => Self::Or(
                (0..2 + rng.below(3))
                    .map(|_| Self::generate(rng, depth - 1))
                    .collect(),
            ),
        }
    }

    fn eval(&self, labels: &BTreeMap<String, String>, scope: Scope) -> bool {
        match self {
            Self::All => scope != Scope::NonNamespaced,
            Self::Global => scope != Scope::Namespaced,
            Self::Has(k) => labels.contains_key(*k),
            Self::Cmp(k, op, v) => match (labels.get(*k), *op) {
                (None, "!=") => true,
                (None, _) => false,
                (Some(x), "==") => x == v,
                (Some(x), "!=") => x != v,
                (Some(x), "contains") => x.contains(v),
                (Some(x), "starts with") => x.starts_with(v),
                (Some(x), _) => x.ends_with(v),
            },
            Self::Set(k, negated, values) => match labels.get(*k) {
                None => *negated,
                Some(x) => values.contains(&x.as_str()) != *negated,
            },
            Self::Not(e) => !e.eval(labels, scope),
            Self::And(es) => es.iter().all(|e| e.eval(labels, scope)),
            Self::Or(es) => es.iter().any(|e| e.eval(labels, scope)),
        }
    }

    /// Selector text with random spacing, quoting, spelling and redundant
    /// parentheses.
    fn render(&self, rng: &mut Rng, out: &mut String) {
        let space = |rng: &mut Rng, out: &mut String| {
            out.push_str(rng.pick(&["", " ", "  ", "\t", " \t "]));
        };
        let quoted = |rng: &mut Rng, out: &mut String, v: &str| {
            let q = if v.contains('\'') || (!v.contains('"') && rng.chance(2)) {
                '"'
            } else {
                '\''
            };
            out.push(q);
            out.push_str(v);
            out.push(q);
        };
        let paren = rng.chance(6);
        if paren {
            out.push('(');
            space(rng, out);
        }
        match self {
            Self::All => out.push_str(rng.pick(&["all()", "all( )"])),
            Self::Global => out.push_str(rng.pick(&["global()", "global(\t)"])),
            Self::Has(k) => {
                out.push_str("has(");
                space(rng, out);
                out.push_str(k);
                space(rng, out);
                out.push(')');
            }
            Self::Cmp(k, op, v) => {
                out.push_str(k);
                let op = match *op {
                    "starts with" => rng.pick(&["starts with", "startswith", "starts  with"]),
                    "ends with" => rng.pick(&["ends with", "endswith"]),
                    other => other,
                };
                // Word operators need a space after the key; symbols don't.
                if op.starts_with(char::is_alphabetic) {
                    out.push(' ');
                }
                space(rng, out);
                out.push_str(op);
                space(rng, out);
                quoted(rng, out, v);
            }
            Self::Set(k, negated, values) => {
                out.push_str(k);
                out.push(' ');
                out.push_str(if *negated {
                    rng.pick(&["not in", "notin", "not \t in"])
                } else {
                    "in"
                });
                space(rng, out);
                out.push('{');
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    space(rng, out);
                    quoted(rng, out, v);
                }
                if !values.is_empty() && rng.chance(4) {
                    out.push(',');
                }
                space(rng, out);
                out.push('}');
            }
            Self::Not(e) => {
                out.push('!');
                space(rng, out);
                // `!` takes one operation: groups need parentheses.
                let group = matches!(**e, Self::And(_) | Self::Or(_));
                if group {
                    out.push('(');
                }
                e.render(rng, out);
                if group {
                    out.push(')');
                }
            }
            Self::And(es) | Self::Or(es) => {
                let and = matches!(self, Self::And(_));
                for (i, e) in es.iter().enumerate() {
                    if i > 0 {
                        space(rng, out);
                        out.push_str(if and { "&&" } else { "||" });
                        space(rng, out);
                    }
                    // Inside `&&`, an `||` needs parentheses.
                    let group = and && matches!(e, Self::Or(_));
                    if group {
                        out.push('(');
                    }
                    e.render(rng, out);
                    if group {
                        out.push(')');
                    }
                }
            }
        }
        if paren {
            space(rng, out);
            out.push(')');
        }
    }
}

fn random_labels(rng: &mut Rng) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for key in KEYS {
        if rng.chance(2) {
            labels.insert(key.to_owned(), rng.pick(&VALUES).to_owned());
        }
    }
    labels
}

#[test]
fn generated_selectors_match_the_model() {
    let mut rng = Rng(0x5EED_CA11_C0DE_0001);
    for case in 0..3000 {
        let expr = Expr::generate(&mut rng, 4);
        let mut text = String::new();
        expr.render(&mut rng, &mut text);
        let sel = Selector::parse(&text).unwrap_or_else(|e| panic!("case {case}: {text:?}: {e}"));
        let canonical = Selector::parse(&sel.to_string())
            .unwrap_or_else(|e| panic!("case {case}: canonical {sel}: {e}"));
        assert_eq!(canonical, sel, "case {case}: {text:?}");
        assert_eq!(canonical.to_string(), sel.to_string());
        for _ in 0..8 {
            let labels = random_labels(&mut rng);
            for scope in [Scope::Labels, Scope::Namespaced, Scope::NonNamespaced] {
                let want = expr.eval(&labels, scope);
                assert_eq!(
                    sel.matches_in(&labels, scope),
                    want,
                    "case {case}: {text:?} ({sel}) on {labels:?} in {scope:?}"
                );
                assert_eq!(canonical.matches_in(&labels, scope), want);
            }
            assert_eq!(sel.matches(&labels), expr.eval(&labels, Scope::Labels));
        }
    }
}

#[test]
fn garbage_fails_cleanly() {
    const PIECES: [&str; 30] = [
        "a",
        "b",
        " ",
        "\t",
        "'",
        "\"",
        "(",
        ")",
        "{",
        "}",
        ",",
        "=",
        "==",
        "!",
        "!=",
        "&",
        "&&",
        "|",
        "||",
        "has(",
        "all()",
        "global()",
        " in ",
        " not in ",
        " contains ",
        "starts with",
        "é",
        "\n",
        "%",
        "x'v'",
    ];
    let mut rng = Rng(0xBAD_5E1E_C70B);
    let mut parsed = 0;
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..rng.below(12) {
            text.push_str(rng.pick(&PIECES));
        }
        match Selector::parse(&text) {
            Ok(sel) => {
                parsed += 1;
                let again = Selector::parse(&sel.to_string())
                    .unwrap_or_else(|e| panic!("{text:?} -> {sel}: {e}"));
                assert_eq!(again, sel, "{text:?}");
            }
            Err(err) => {
                assert!(err.position <= text.len(), "{text:?}: {err}");
                assert!(text.is_char_boundary(err.position), "{text:?}: {err}");
                assert!(!err.message.is_empty());
                let _ = err.annotate(&text);
            }
        }
    }
    assert!(parsed > 100, "only {parsed} generated selectors parsed");
}
