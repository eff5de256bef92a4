//! Kubernetes `LabelSelector` conversion.

use std::collections::BTreeMap;

use super::super::{LabelSelectorError, LabelSelectorRequirement, Selector, from_match_labels};
use super::{btree, parse_ok};

fn req(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: values.iter().map(|&v| v.into()).collect(),
    }
}

fn convert(labels: &[(&str, &str)], exprs: &[LabelSelectorRequirement]) -> Selector {
    from_match_labels(&btree(labels), exprs).unwrap_or_else(|e| panic!("{labels:?} {exprs:?}: {e}"))
}

#[test]
fn empty_selector_matches_everything() {
    let sel = convert(&[], &[]);
    assert!(sel.is_all());
    assert_eq!(sel.text(), "all()");
    assert!(sel.matches(&[("anything", "at all")]));
    assert!(sel.matches(&BTreeMap::new()));
}

#[test]
fn match_labels() {
    let sel = convert(&[("app", "web")], &[]);
    assert_eq!(sel.to_string(), r#"app == "web""#);
    assert_eq!(sel.text(), r#"app == "web""#);
    let sel = convert(&[("tier", "fe"), ("app", "web")], &[]);
    // Keys in order, as Calico's conversion sorts them.
    assert_eq!(sel.to_string(), r#"(app == "web" && tier == "fe")"#);
    assert!(sel.matches(&[("app", "web"), ("tier", "fe"), ("x", "y")]));
    assert!(!sel.matches(&[("app", "web")]));
    assert!(!sel.matches(&[("app", "web"), ("tier", "be")]));
    assert!(!sel.matches(&[("tier", "fe")]));
}

#[test]
fn operators() {
    let sel = convert(&[], &[req("env", "In", &["prod", "staging"])]);
    assert_eq!(sel.to_string(), r#"env in {"prod", "staging"}"#);
    assert!(sel.matches(&[("env", "prod")]));
    assert!(!sel.matches(&[("env", "dev")]));
    assert!(!sel.matches(&[("other", "prod")]));

    let sel = convert(&[], &[req("env", "NotIn", &["prod"])]);
    assert_eq!(sel.to_string(), r#"env not in {"prod"}"#);
    assert!(sel.matches(&[("env", "dev")]));
    assert!(
        sel.matches(&[("other", "prod")]),
        "NotIn holds when the key is absent"
    );
    assert!(!sel.matches(&[("env", "prod")]));

    let sel = convert(&[], &[req("canary", "Exists", &[])]);
    assert_eq!(sel.to_string(), "has(canary)");
    assert!(sel.matches(&[("canary", "")]));
    assert!(!sel.matches(&[("other", "")]));

    let sel = convert(&[], &[req("canary", "DoesNotExist", &[])]);
    assert_eq!(sel.to_string(), "!has(canary)");
    assert!(!sel.matches(&[("canary", "")]));
    assert!(sel.matches(&[("other", "")]));
}

#[test]
fn same_as_calicos_conversion() {
    // What libcalico-go's k8sSelectorToCalico writes for the same selector.
    let sel = convert(
        &[("role", "db"), ("app", "shop")],
        &[
            req("env", "In", &["staging", "prod", "prod"]),
            req("track", "NotIn", &["canary"]),
            req("app.kubernetes.io/name", "Exists", &[]),
            req("legacy", "DoesNotExist", &[]),
        ],
    );
    let calico = parse_ok(
        "app == 'shop' && role == 'db' && env in { 'staging', 'prod', 'prod' } && track not in { \
         'canary' } && has(app.kubernetes.io/name) && ! has(legacy)",
    );
    assert_eq!(sel, calico);
    assert_eq!(sel.to_string(), calico.to_string());
    assert_eq!(sel.text(), sel.to_string());
    assert_eq!(parse_ok(sel.text()), sel);
    let yes = [
        ("app", "shop"),
        ("role", "db"),
        ("env", "prod"),
        ("app.kubernetes.io/name", "x"),
    ];
    assert!(sel.matches(&yes));
    let mut no = yes.to_vec();
    no.push(("legacy", "1"));
    assert!(!sel.matches(&no));
    let mut no = yes.to_vec();
    no.push(("track", "canary"));
    assert!(!sel.matches(&no));
}

#[test]
fn conversions_agree_with_kubernetes_semantics() {
    // An independent reading of each requirement, checked over label sets.
    let exprs = [
        req("a", "In", &["1", "2"]),
        req("b", "NotIn", &["1"]),
        req("c", "Exists", &[]),
        req("d", "DoesNotExist", &[]),
    ];
    let values = [None, Some("1"), Some("2"), Some("3")];
    for (i, expr) in exprs.iter().enumerate() {
        let sel = convert(&[], std::slice::from_ref(expr));
        for value in values {
            let labels: Vec<(&str, &str)> =
                value.map(|v| (expr.key.as_str(), v)).into_iter().collect();
            let want = match (expr.operator.as_str(), value) {
                ("In", Some(v)) => expr.values.iter().any(|x| x == v),
                ("In", None) => false,
                ("NotIn", Some(v)) => !expr.values.iter().any(|x| x == v),
                ("NotIn", None) | ("Exists", Some(_)) | ("DoesNotExist", None) => true,
                _ => false,
            };
            assert_eq!(sel.matches(&labels), want, "expression {i} on {labels:?}");
        }
    }
}

#[test]
fn unusual_but_representable_values() {
    let sel = convert(&[("k", "it's")], &[req("q", "In", &["say \"hi\"", "x"])]);
    assert_eq!(
        sel.to_string(),
        r#"(k == "it's" && q in {'say "hi"', "x"})"#
    );
    assert_eq!(parse_ok(&sel.to_string()), sel);
    assert!(sel.matches(&[("k", "it's"), ("q", "say \"hi\"")]));
    let sel = convert(&[("k", "")], &[]);
    assert!(sel.matches(&[("k", "")]));
    assert!(!sel.matches(&[("j", "")]));
}

#[test]
fn errors() {
    let none = BTreeMap::new();
    let err = from_match_labels(&none, &[req("a", "In", &["x"]), req("b", "Equals", &["x"])])
        .expect_err("unknown");
    assert_eq!(
        err,
        LabelSelectorError::UnknownOperator {
            index: 1,
            key: "b".into(),
            operator: "Equals".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "matchExpressions[1] (key `b`): unknown operator `Equals`; Kubernetes allows In, NotIn, \
         Exists and DoesNotExist"
    );
    // Operators are case-sensitive, as in Kubernetes.
    assert!(matches!(
        from_match_labels(&none, &[req("a", "in", &["x"])]),
        Err(LabelSelectorError::UnknownOperator { .. })
    ));
    let err = from_match_labels(&none, &[req("a", "NotIn", &[])]).expect_err("no values");
    assert_eq!(
        err.to_string(),
        "matchExpressions[0] (key `a`): NotIn needs at least one value"
    );
    let err = from_match_labels(&none, &[req("a", "Exists", &["x", "y"])]).expect_err("values");
    assert_eq!(
        err.to_string(),
        "matchExpressions[0] (key `a`): Exists takes no values, but 2 given"
    );
    let err = from_match_labels(&btree(&[("bad key", "v")]), &[]).expect_err("key");
    assert_eq!(
        err.to_string(),
        "matchLabels: `bad key` cannot be a label key in a selector (only letters, digits, `_`, \
         `.`, `/` and `-` are allowed)"
    );
    let err = from_match_labels(&none, &[req("", "Exists", &[])]).expect_err("empty key");
    assert!(
        matches!(err, LabelSelectorError::InvalidKey { ref field, .. } if field == "matchExpressions[0]"),
        "{err}"
    );
    let long = "k".repeat(513);
    let err = from_match_labels(&none, &[req(&long, "Exists", &[])]).expect_err("long key");
    assert!(err.to_string().contains("longer than 512 bytes"), "{err}");
    let err = from_match_labels(&btree(&[("k", "'\"")]), &[]).expect_err("quotes");
    assert!(
        matches!(err, LabelSelectorError::UnquotableValue { .. }),
        "{err}"
    );
    let err = from_match_labels(&none, &[req("k", "In", &["ok", "'\""])]).expect_err("quotes");
    assert!(
        err.to_string()
            .starts_with("matchExpressions[0]: the value"),
        "{err}"
    );
}

#[test]
fn requirement_serde() {
    let exprs: Vec<LabelSelectorRequirement> = serde_yaml::from_str(
        "- key: env\n  operator: In\n  values: [prod, staging]\n- key: canary\n  operator: DoesNotExist\n",
    )
    .expect("yaml");
    assert_eq!(
        exprs,
        [
            req("env", "In", &["prod", "staging"]),
            req("canary", "DoesNotExist", &[])
        ]
    );
    let sel = from_match_labels(&BTreeMap::new(), &exprs).expect("converts");
    assert_eq!(sel, parse_ok("env in {'prod', 'staging'} && !has(canary)"));
    assert_eq!(
        serde_json::to_string(&exprs[1]).expect("json"),
        r#"{"key":"canary","operator":"DoesNotExist"}"#
    );
    assert!(
        serde_yaml::from_str::<LabelSelectorRequirement>("key: a\noperator: In\nvalue: [x]\n")
            .is_err()
    );
}
