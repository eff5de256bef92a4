//! Kubernetes `metav1.LabelSelector` as a Calico selector.
//!
//! Built the way Calico converts a Kubernetes NetworkPolicy
//! (`libcalico-go/lib/backend/k8s/conversion`, `k8sSelectorToCalico`):
//! `matchLabels` in key order as `k == 'v'`, then `matchExpressions` in
//! order, all joined with `&&`. Calico's pod-selector extra term
//! (`projectcalico.org/orchestrator == 'k8s'`) is the caller's business.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Node, Selector, TestOp, parse};

/// One `matchExpressions` entry of a Kubernetes label selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist` (case matters).
    pub operator: String,
    /// The values for `In` and `NotIn`; empty for the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A Kubernetes label selector that cannot become a Calico selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelSelectorError {
    /// The operator is not one Kubernetes defines.
    #[error(
        "matchExpressions[{index}] (key `{key}`): unknown operator `{operator}`; Kubernetes \
         allows In, NotIn, Exists and DoesNotExist"
    )]
    UnknownOperator {
        /// Position in `matchExpressions`.
        index: usize,
        /// The requirement's key.
        key: String,
        /// The operator as written.
        operator: String,
    },
    /// `In` or `NotIn` without values (Kubernetes rejects these).
    #[error("matchExpressions[{index}] (key `{key}`): {operator} needs at least one value")]
    MissingValues {
        /// Position in `matchExpressions`.
        index: usize,
        /// The requirement's key.
        key: String,
        /// `In` or `NotIn`.
        operator: String,
    },
    /// `Exists` or `DoesNotExist` with values (Kubernetes rejects these).
    #[error(
        "matchExpressions[{index}] (key `{key}`): {operator} takes no values, but {count} \
         given"
    )]
    UnexpectedValues {
        /// Position in `matchExpressions`.
        index: usize,
        /// The requirement's key.
        key: String,
        /// `Exists` or `DoesNotExist`.
        operator: String,
        /// How many values were given.
        count: usize,
    },
    /// A key a selector cannot name: empty, longer than
    /// [`MAX_KEY_LEN`](super::MAX_KEY_LEN), or holding a byte outside
    /// `[A-Za-z0-9_./-]`.
    #[error("{field}: `{key}` cannot be a label key in a selector ({reason})")]
    InvalidKey {
        /// `matchLabels` or `matchExpressions[i]`.
        field: String,
        /// The key as written.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value holding both `'` and `"`, which selector text cannot quote.
    #[error(
        "{field}: the value {value:?} of key `{key}` holds both ' and \", which a selector \
         cannot quote"
    )]
    UnquotableValue {
        /// `matchLabels` or `matchExpressions[i]`.
        field: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

/// The Calico selector for a Kubernetes `LabelSelector` with these
/// `matchLabels` and `matchExpressions`, with Kubernetes semantics: every
/// term must hold; `In` needs the label present with one of the values;
/// `NotIn` holds when the label is absent or has none of them; `Exists` and
/// `DoesNotExist` test presence. No terms at all gives `all()`, which
/// matches everything. The selector's text is its canonical form.
///
/// # Errors
/// An unknown operator (the error names it), `In`/`NotIn` without values,
/// `Exists`/`DoesNotExist` with values, or a key or value the selector
/// language cannot express. Kubernetes' finer label syntax rules are not
/// checked here.
pub fn from_match_labels(
    match_labels: &BTreeMap<String, String>,
    match_expressions: &[LabelSelectorRequirement],
) -> Result<Selector, LabelSelectorError> {
    let mut terms = Vec::with_capacity(match_labels.len() + match_expressions.len());
    for (key, value) in match_labels {
        let field = || "matchLabels".to_owned();
        check_key(key, field)?;
        check_value(key, value, field)?;
        terms.push(Node::Test {
            key: key.as_str().into(),
            op: TestOp::Eq,
            value: value.as_str().into(),
        });
    }
    for (index, req) in match_expressions.iter().enumerate() {
        let field = || format!("matchExpressions[{index}]");
        let key = req.key.as_str();
        let needs_values = match req.operator.as_str() {
            "In" | "NotIn" => true,
            "Exists" | "DoesNotExist" => false,
            _ => {
                return Err(LabelSelectorError::UnknownOperator {
                    index,
                    key: key.to_owned(),
                    operator: req.operator.clone(),
                });
            }
        };
        if needs_values && req.values.is_empty() {
            return Err(LabelSelectorError::MissingValues {
                index,
                key: key.to_owned(),
                operator: req.operator.clone(),
            });
        }
        if !needs_values && !req.values.is_empty() {
            return Err(LabelSelectorError::UnexpectedValues {
                index,
                key: key.to_owned(),
                operator: req.operator.clone(),
                count: req.values.len(),
            });
        }
        check_key(key, field)?;
        let mut values = Vec::with_capacity(req.values.len());
        for value in &req.values {
            check_value(key, value, field)?;
            values.push(Box::<str>::from(value.as_str()));
        }
        values.sort_unstable();
        values.dedup();
        let values = values.into_boxed_slice();
        let key: Box<str> = key.into();
        terms.push(match req.operator.as_str() {
            "In" => Node::In { key, values },
            "NotIn" => Node::NotIn { key, values },
            "Exists" => Node::Has(key),
            _ => Node::Has(key).negate(),
        });
    }
    let root = match terms.len() {
        0 => Node::All,
        1 => terms.swap_remove(0),
        _ => Node::And(terms),
    };
    Ok(Selector::from_root(root))
}

fn check_key(key: &str, field: impl Fn() -> String) -> Result<(), LabelSelectorError> {
    let reason = if key.is_empty() {
        "it is empty"
    } else if key.len() > parse::MAX_KEY_LEN {
        "it is longer than 512 bytes"
    } else if !key.bytes().all(parse::is_key_byte) {
        "only letters, digits, `_`, `.`, `/` and `-` are allowed"
    } else {
        return Ok(());
    };
    Err(LabelSelectorError::InvalidKey {
        field: field(),
        key: key.to_owned(),
        reason,
    })
}

fn check_value(
    key: &str,
    value: &str,
    field: impl Fn() -> String,
) -> Result<(), LabelSelectorError> {
    if value.contains('\'') && value.contains('"') {
        return Err(LabelSelectorError::UnquotableValue {
            field: field(),
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(())
}
