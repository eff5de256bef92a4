//! Selector tests: Calico's own tables first, then each operator, the
//! absent-label rules, precedence, canonical text, equality, scopes, serde.
//! Errors, the Kubernetes conversion and generated round trips have their
//! own files.

use std::collections::{BTreeMap, HashMap};

use super::{Labels, Scope, Selector};

mod errors;
mod k8s;
mod random;

type Pairs<'a> = &'a [(&'a str, &'a str)];

fn btree(pairs: Pairs<'_>) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn parse_ok(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

/// Asserts that `text` parses and matches every label set in `yes` and none
/// in `no`: as a `BTreeMap`, a `HashMap` and a pair list, and again after a
/// trip through its canonical text.
fn check(text: &str, yes: &[Pairs<'_>], no: &[Pairs<'_>]) {
    let sel = parse_ok(text);
    let canonical = sel.to_string();
    let again = parse_ok(&canonical);
    assert_eq!(again, sel, "{text:?} -> {canonical:?} does not round-trip");
    assert_eq!(again.to_string(), canonical);
    let cases = yes
        .iter()
        .map(|l| (l, true))
        .chain(no.iter().map(|l| (l, false)));
    for (&pairs, want) in cases {
        let tree = btree(pairs);
        let hash: HashMap<String, String> = tree.clone().into_iter().collect();
        let list: Vec<(&str, &str)> = pairs.to_vec();
        assert_eq!(sel.matches(&tree), want, "{text:?} on {pairs:?}");
        assert_eq!(sel.matches(&hash), want, "{text:?} on {pairs:?} (HashMap)");
        assert_eq!(sel.matches(&list), want, "{text:?} on {pairs:?} (pairs)");
        assert_eq!(again.matches(&tree), want, "{canonical:?} on {pairs:?}");
    }
}

fn canon(text: &str) -> String {
    parse_ok(text).to_string()
}

// ---------------------------------------------------------------------------
// Calico's tables (libcalico-go/lib/selector/parser/parser_test.go).

#[test]
fn calico_selector_tests() {
    check(
        r#"a == "b""#,
        &[&[("a", "b")], &[("a", "b"), ("c", "d")]],
        &[&[], &[("a", "c")], &[("c", "d")]],
    );
    check(
        r#"a == "b" && c == "d""#,
        &[&[("a", "b"), ("c", "d")]],
        &[
            &[],
            &[("a", "b"), ("c", "e")],
            &[("a", "c"), ("c", "d")],
            &[("c", "d")],
            &[("a", "b")],
        ],
    );
    check(
        r#"a == "b" || c == "d""#,
        &[&[("a", "b"), ("c", "d")], &[("a", "b")], &[("c", "d")]],
        &[&[], &[("a", "e"), ("c", "e")], &[("c", "e")], &[("a", "e")]],
    );
    check(
        r#"a in {"'", '"', "c"}"#,
        &[&[("a", "c")], &[("a", "\"")], &[("a", "'")]],
        &[&[], &[("a", "e")]],
    );
    check(
        r#"a not in {"'", '"', "c"}"#,
        &[&[], &[("a", "e")]],
        &[&[("a", "c")], &[("a", "\"")], &[("a", "'")]],
    );
    check("a == 'a'", &[&[("a", "a")]], &[]);
    check(r#"a == "a""#, &[&[("a", "a")]], &[]);
    check(r#"a != "b""#, &[&[("a", "a")]], &[]);
    check(r#"a != "a""#, &[&[]], &[]);
    check(
        r#"a contains "a""#,
        &[&[("a", "a")], &[("a", "bab")], &[("a", "aaa"), ("b", "c")]],
        &[&[], &[("a", "b")], &[("b", "aaa")]],
    );
    check(
        r#"a starts with "a""#,
        &[&[("a", "a")], &[("a", "abb")], &[("a", "aaa"), ("b", "c")]],
        &[&[], &[("a", "b")], &[("a", "baa")], &[("b", "aaa")]],
    );
    check(
        r#"a ends with "a""#,
        &[&[("a", "a")], &[("a", "bba")], &[("a", "aaa"), ("b", "c")]],
        &[&[], &[("a", "b")], &[("a", "aab")], &[("b", "aaa")]],
    );
    check(r#"a in {"a"}"#, &[&[("a", "a")]], &[]);
    check(r#"!a in {"a"}"#, &[&[("a", "b")]], &[]);
    check(r#"a in {"a", "b"}"#, &[&[("a", "a")], &[("a", "b")]], &[]);
    check(r#"a not in {"d", "e"}"#, &[&[("a", "a")]], &[]);
    check("has(a)", &[&[("a", "b")]], &[]);
    check("!has(a)", &[&[("b", "b")]], &[]);
    check("", &[&[], &[("a", "b")]], &[]);
    check(" ", &[&[]], &[]);
    check("all()", &[&[]], &[]);
    check(" all()", &[&[], &[("a", "b")]], &[]);
    check("global()", &[&[]], &[]);
    check(" global()", &[&[], &[("a", "b")]], &[]);

    check("a == 'a'", &[], &[&[("a", "b")], &[]]);
    check(r#"a != "a""#, &[], &[&[("a", "a")]]);
    check("a != 'a'", &[], &[&[("a", "a")]]);
    check(r#"a in {"a"}"#, &[], &[&[("a", "b")]]);
    check(r#"a not in {"a"}"#, &[], &[&[("a", "a")]]);
    check(r#"a in {"a", "b"}"#, &[], &[&[("a", "c")]]);
    check("has(b)", &[], &[&[("a", "b")]]);
    check("!!has(b)", &[], &[&[("a", "b")]]);
    check("! has(a)", &[], &[&[("a", "b")]]);
    check("!has(a)", &[], &[&[("a", "b")]]);
    check("!!! has(a)", &[], &[&[("a", "b")]]);
    check("!!!has(a)", &[], &[&[("a", "b")]]);
    check("!! ! has(a)", &[], &[&[("a", "b")]]);
    check("! !!has(a)", &[], &[&[("a", "b")]]);

    let ab: Pairs<'_> = &[("a", "a1"), ("b", "b1")];
    check("a == 'a1' && b == 'b1'", &[ab], &[]);
    check("a == 'a1' && b != 'b1'", &[], &[ab]);
    check("a != 'a1' && b == 'b1'", &[], &[ab]);
    check("a != 'a1' && b != 'b1'", &[], &[ab]);
    check("a != 'a1' && !b == 'b1'", &[], &[ab]);
    check("!a == 'a1' && b == 'b1'", &[], &[ab]);
    check("has(a) && !has(b)", &[&[("a", "a")]], &[]);
    check("!has(b) && has(a)", &[&[("a", "a")]], &[]);
    check("!(!has(a) || has(b))", &[&[("a", "a")]], &[]);
    check("!(has(b) || !has(a))", &[&[("a", "a")]], &[]);
    check("a == 'a1' || b == 'b1'", &[ab], &[]);
    check("a == 'a1' || b != 'b1'", &[ab], &[]);
    check("a != 'a1' || b == 'b1'", &[ab], &[]);
    check("a != 'a1' || b != 'b1'", &[], &[ab]);
    check("! a == 'a1' || ! b == 'b1'", &[], &[ab]);
}

#[test]
fn calico_canonicalisation_tests() {
    for (input, expected) in [
        ("", "all()"),
        (" all() ", "all()"),
        (" (all() )", "all()"),
        ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
        (r#"! (a == "b"&&! c != "d")"#, r#"!(a == "b" && !c != "d")"#),
        (r#"a == "'""#, r#"a == "'""#),
        (r#"a == '"'"#, r#"a == '"'"#),
        (r#"a contains '"'"#, r#"a contains '"'"#),
        (r#"a contains "'""#, r#"a contains "'""#),
        (r#"a startswith '"'"#, r#"a starts with '"'"#),
        (r#"a endswith "'""#, r#"a ends with "'""#),
        (r#"a!='"'"#, r#"a != '"'"#),
        (r#"a in {"d"}"#, r#"a in {"d"}"#),
        (r#"a in {"a", "b"}"#, r#"a in {"a", "b"}"#),
        (r#"a in {"d", "a", "b"}"#, r#"a in {"a", "b", "d"}"#),
        (
            r#"a in {"z", "x", "y", "a"}"#,
            r#"a in {"a", "x", "y", "z"}"#,
        ),
        (
            r#"a in {"z", "z", "x", "y", "x", "a"}"#,
            r#"a in {"a", "x", "y", "z"}"#,
        ),
    ] {
        assert_eq!(canon(input), expected, "canonical form of {input:?}");
        assert_eq!(canon(expected), expected, "{expected:?} is not stable");
        assert_eq!(parse_ok(input), parse_ok(expected));
    }
}

/// Calico's visitor tests, without the visitor's key prefix.
#[test]
fn calico_visitor_canonical_forms() {
    for (input, expected) in [
        ("k == 'v'", r#"k == "v""#),
        ("k != 'v'", r#"k != "v""#),
        ("k contains 'v'", r#"k contains "v""#),
        ("k starts with 'v'", r#"k starts with "v""#),
        ("k ends with 'v'", r#"k ends with "v""#),
        ("k == 'v' && x == 'y'", r#"(k == "v" && x == "y")"#),
        ("k == 'v' || has(x)", r#"(k == "v" || has(x))"#),
        ("!(k == 'v')", r#"!k == "v""#),
        ("k in {'v'}", r#"k in {"v"}"#),
        ("k not in {'v'}", r#"k not in {"v"}"#),
        (
            "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
            r#"!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})"#,
        ),
    ] {
        assert_eq!(canon(input), expected, "canonical form of {input:?}");
        assert_eq!(canon(expected), expected);
    }
}

// ---------------------------------------------------------------------------
// Operators, one by one, including the absent label.

#[test]
fn equals() {
    check(
        "app == 'web'",
        &[&[("app", "web")], &[("app", "web"), ("x", "y")]],
        &[
            &[],
            &[("app", "db")],
            &[("app", "Web")],
            &[("app", "web ")],
            &[("app", "")],
            &[("x", "web")],
        ],
    );
}

#[test]
fn not_equals_is_true_when_absent() {
    check(
        "app != 'web'",
        &[&[], &[("app", "db")], &[("app", "")], &[("other", "web")]],
        &[&[("app", "web")]],
    );
}

#[test]
fn in_set() {
    check(
        "env in { 'prod', 'staging' }",
        &[&[("env", "prod")], &[("env", "staging")]],
        &[
            &[],
            &[("env", "dev")],
            &[("env", "")],
            &[("env", "prod ")],
            &[("prod", "env")],
        ],
    );
}

#[test]
fn not_in_set_is_true_when_absent() {
    check(
        "env not in { 'prod', 'staging' }",
        &[&[], &[("env", "dev")], &[("env", "")], &[("other", "prod")]],
        &[&[("env", "prod")], &[("env", "staging")]],
    );
}

#[test]
fn empty_sets() {
    check("k in {}", &[], &[&[], &[("k", "")], &[("k", "v")]]);
    check("k not in {}", &[&[], &[("k", "")], &[("k", "v")]], &[]);
    check("k in { }", &[], &[&[("k", "v")]]);
    assert_eq!(canon("k in { }"), "k in {}");
    assert_eq!(canon("k not in {}"), "k not in {}");
}

#[test]
fn set_with_trailing_comma_and_duplicates() {
    check(
        "k in {'a', 'b',}",
        &[&[("k", "a")], &[("k", "b")]],
        &[&[("k", "c")]],
    );
    assert_eq!(
        parse_ok("k in {'b','a','b',}"),
        parse_ok("k in {\"a\", \"b\"}")
    );
    assert_eq!(canon("k in {'b','a','b',}"), r#"k in {"a", "b"}"#);
}

#[test]
fn has_and_not_has() {
    check(
        "has(k)",
        &[&[("k", "")], &[("k", "v")]],
        &[&[], &[("K", "v")], &[("kk", "v")]],
    );
    check(
        "!has(k)",
        &[&[], &[("K", "v")]],
        &[&[("k", "")], &[("k", "v")]],
    );
}

#[test]
fn contains() {
    check(
        "k contains 'ell'",
        &[&[("k", "hello")], &[("k", "ell")]],
        &[&[], &[("k", "")], &[("k", "he-llo")], &[("k", "ELL")]],
    );
    check("k contains ''", &[&[("k", "")], &[("k", "x")]], &[&[]]);
}

#[test]
fn starts_with() {
    check(
        "k starts with 'pre'",
        &[&[("k", "pre")], &[("k", "prefix")]],
        &[&[], &[("k", "")], &[("k", "xpre")], &[("k", "pr")]],
    );
    check("k startswith 'pre'", &[&[("k", "prefix")]], &[&[]]);
    check("k starts\t  with 'pre'", &[&[("k", "prefix")]], &[&[]]);
}

#[test]
fn ends_with() {
    check(
        "k ends with 'fix'",
        &[&[("k", "fix")], &[("k", "suffix")]],
        &[&[], &[("k", "")], &[("k", "fixx")], &[("k", "ix")]],
    );
    check("k endswith 'fix'", &[&[("k", "suffix")]], &[&[]]);
}

#[test]
fn absent_label_table() {
    let none: Pairs<'_> = &[("unrelated", "v")];
    for (text, want) in [
        ("k == 'v'", false),
        ("k != 'v'", true),
        ("k in {'v'}", false),
        ("k not in {'v'}", true),
        ("has(k)", false),
        ("!has(k)", true),
        ("k contains 'v'", false),
        ("k contains ''", false),
        ("k starts with 'v'", false),
        ("k starts with ''", false),
        ("k ends with 'v'", false),
        ("k ends with ''", false),
        ("!k == 'v'", true),
        ("!k != 'v'", false),
        ("!k contains 'v'", true),
        ("k == ''", false),
        ("k != ''", true),
    ] {
        assert_eq!(
            parse_ok(text).matches(&btree(none)),
            want,
            "{text:?} with k absent"
        );
    }
}

#[test]
fn empty_value_is_not_absent() {
    check("k == ''", &[&[("k", "")]], &[&[], &[("k", "x")]]);
    check("k != ''", &[&[], &[("k", "x")]], &[&[("k", "")]]);
    check("k in {''}", &[&[("k", "")]], &[&[]]);
}

// ---------------------------------------------------------------------------
// Structure: precedence, parentheses, negation, whitespace, quotes, keys.

#[test]
fn and_binds_tighter_than_or() {
    let sel = parse_ok("a == 'x' || b == 'y' && c == 'z'");
    assert_eq!(sel, parse_ok("a == 'x' || (b == 'y' && c == 'z')"));
    assert_ne!(sel, parse_ok("(a == 'x' || b == 'y') && c == 'z'"));
    for bits in 0..8u8 {
        let (a, b, c) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
        let mut pairs = Vec::new();
        for (on, key, value) in [(a, "a", "x"), (b, "b", "y"), (c, "c", "z")] {
            pairs.push((key, if on { value } else { "other" }));
        }
        assert_eq!(sel.matches(&pairs), a || (b && c), "{pairs:?}");
    }
}

#[test]
fn and_or_chains() {
    let sel = parse_ok("has(a) && has(b) || has(c) && has(d) || has(e)");
    assert_eq!(
        sel.to_string(),
        "((has(a) && has(b)) || (has(c) && has(d)) || has(e))"
    );
    assert!(sel.matches(&[("e", "")]));
    assert!(sel.matches(&[("c", ""), ("d", "")]));
    assert!(!sel.matches(&[("a", ""), ("d", "")]));
}

#[test]
fn not_applies_to_one_operation() {
    // `!` binds tighter than `&&`: (!a == 'x') && b == 'y'.
    let sel = parse_ok("!a == 'x' && b == 'y'");
    assert_eq!(sel.to_string(), r#"(!a == "x" && b == "y")"#);
    assert!(sel.matches(&[("a", "z"), ("b", "y")]));
    assert!(sel.matches(&[("b", "y")]));
    assert!(!sel.matches(&[("a", "x"), ("b", "y")]));
    assert!(!sel.matches(&[("a", "z")]));
}

#[test]
fn negated_groups() {
    let sel = parse_ok("!(a == 'x' && b == 'y')");
    assert_eq!(sel.to_string(), r#"!(a == "x" && b == "y")"#);
    let de_morgan = parse_ok("a != 'x' || b != 'y'");
    let labels: [Pairs<'_>; 6] = [
        &[],
        &[("a", "x")],
        &[("b", "y")],
        &[("a", "x"), ("b", "y")],
        &[("a", "x"), ("b", "n")],
        &[("a", "n"), ("b", "y")],
    ];
    for pairs in labels {
        assert_eq!(
            sel.matches(&btree(pairs)),
            de_morgan.matches(&btree(pairs)),
            "{pairs:?}"
        );
    }
    check(
        "!(has(a) || has(b))",
        &[&[], &[("c", "")]],
        &[&[("a", "")], &[("b", "")]],
    );
    check(
        "!!(has(a) || has(b))",
        &[&[("a", "")], &[("b", "")]],
        &[&[]],
    );
    check("!(!(has(a)))", &[&[("a", "")]], &[&[]]);
    check("!all()", &[], &[&[], &[("a", "")]]);
    check("!(all())", &[], &[&[]]);
}

#[test]
fn double_negation_through_parentheses_cancels() {
    // Calico prints `!!has(a)` here (and re-reads it as `has(a)`).
    assert_eq!(canon("!(!has(a))"), "has(a)");
    assert_eq!(canon("!(!(!has(a)))"), "!has(a)");
    assert_eq!(canon("!!(a == 'b' && has(c))"), r#"(a == "b" && has(c))"#);
    assert_eq!(parse_ok("!(!has(a))"), parse_ok("has(a)"));
}

#[test]
fn nested_parentheses() {
    check("((a == 'x'))", &[&[("a", "x")]], &[&[]]);
    assert_eq!(canon("(((has(a))))"), "has(a)");
    assert_eq!(canon("((all()))"), "all()");
    let sel = "((a == 'x' || b == 'y') && (c == 'z' || !(d == 'w' && has(e))))";
    check(
        sel,
        &[
            &[("a", "x"), ("c", "z")],
            &[("b", "y")],
            &[("b", "y"), ("d", "w")],
        ],
        &[&[("a", "x"), ("d", "w"), ("e", "")], &[("c", "z")], &[]],
    );
    assert_eq!(
        canon(sel),
        r#"((a == "x" || b == "y") && (c == "z" || !(d == "w" && has(e))))"#
    );
    // Parentheses group without flattening, as in Calico.
    assert_eq!(
        canon("(has(a) && has(b)) && has(c)"),
        "((has(a) && has(b)) && has(c))"
    );
    assert_eq!(
        canon("has(a) && (has(b) && has(c))"),
        "(has(a) && (has(b) && has(c)))"
    );
}

#[test]
fn whitespace_variants_are_equal() {
    let reference = parse_ok("a == 'x' && has(b) || c in {'1', '2'} && !d != 'y'");
    for text in [
        "a=='x'&&has(b)||c in{'1','2'}&&!d!='y'",
        "  a  ==  'x'  &&  has(  b  )  ||  c  in  {  '1'  ,  '2'  }  &&  !  d  !=  'y'  ",
        "\ta\t==\t'x'\t&&\thas(\tb\t)\t||\tc\tin\t{\t'1'\t,\t'2'\t}\t&&\t!\td\t!=\t'y'\t",
        "a == \"x\" && has(b) || c in {\"2\", \"1\", \"2\"} && ! d != 'y'",
    ] {
        assert_eq!(parse_ok(text), reference, "{text:?}");
    }
    assert_eq!(parse_ok("all( )"), Selector::all());
    assert_eq!(parse_ok("\t"), Selector::all());
    assert_eq!(parse_ok("global(\t)"), Selector::global());
    assert_eq!(parse_ok("k notin{'a'}"), parse_ok("k not   in {'a'}"));
    assert_eq!(parse_ok("k contains'a'"), parse_ok("k contains 'a'"));
}

#[test]
fn quotes() {
    assert_eq!(parse_ok("a == 'x'"), parse_ok("a == \"x\""));
    check(r#"a == "it's""#, &[&[("a", "it's")]], &[&[("a", "its")]]);
    check(r#"a == 'say "hi"'"#, &[&[("a", "say \"hi\"")]], &[]);
    assert_eq!(canon(r#"a == "it's""#), r#"a == "it's""#);
    assert_eq!(canon(r#"a == 'say "hi"'"#), r#"a == 'say "hi"'"#);
    assert_eq!(canon("a in {'x\"', \"y'\"}"), r#"a in {'x"', "y'"}"#);
    // No escapes: a backslash is an ordinary character.
    check(r"a == 'x\'", &[&[("a", "x\\")]], &[]);
}

#[test]
fn values_with_spaces_and_special_characters() {
    for value in [
        "hello world",
        "  padded  ",
        "!@#$%^&*(){}[],;:<>?/|\\`~=+",
        "&& || ! ( ) { }",
        "has(x) && all()",
        "ünï cödé ✓ 日本",
        "tab\there",
        "line\nbreak",
        "",
    ] {
        let quote = if value.contains('\'') { '"' } else { '\'' };
        let text = format!("k == {quote}{value}{quote}");
        check(&text, &[&[("k", value)]], &[&[("k", "other")], &[]]);
        let set = format!("k in {{{quote}{value}{quote}, 'other'}}");
        check(&set, &[&[("k", value)], &[("k", "other")]], &[&[]]);
        let contains = format!("k contains {quote}{value}{quote}");
        let longer = format!("<{value}>");
        check(&contains, &[&[("k", &longer)]], &[&[]]);
    }
}

#[test]
fn keys() {
    for key in [
        "app",
        "projectcalico.org/name",
        "projectcalico.org/namespace",
        "app.kubernetes.io/name",
        "kubernetes.io/metadata.name",
        "k8s-app",
        "under_score",
        "UPPER.case",
        "123",
        "a/b/c",
        "-",
        "./-_",
    ] {
        check(
            &format!("{key} == 'v'"),
            &[&[(key, "v")]],
            &[&[], &[(key, "w")]],
        );
        check(&format!("has({key})"), &[&[(key, "")]], &[&[]]);
        check(&format!("has( {key} )"), &[&[(key, "")]], &[&[]]);
        check(&format!("{key} in {{'v'}}"), &[&[(key, "v")]], &[&[]]);
    }
    check("App == 'v'", &[&[("App", "v")]], &[&[("app", "v")]]);
}

#[test]
fn keys_named_like_keywords() {
    // Operator words are only operators straight after a key, and the
    // functions need their `(`, so all of these are plain keys.
    for key in [
        "has", "all", "global", "in", "not", "contains", "starts", "ends", "with", "notin",
    ] {
        check(&format!("{key} == 'v'"), &[&[(key, "v")]], &[&[]]);
        check(&format!("has({key})"), &[&[(key, "")]], &[&[]]);
    }
    check("not in {'x'}", &[&[("not", "x")]], &[&[("not", "y")]]);
    check("in not in {'x'}", &[&[("in", "y")], &[]], &[&[("in", "x")]]);
    check("contains contains 'x'", &[&[("contains", "axb")]], &[&[]]);
    check(
        "has(has) && all == 'all()'",
        &[&[("has", ""), ("all", "all()")]],
        &[&[]],
    );
    check("instance in {'a'}", &[&[("instance", "a")]], &[]);
}

#[test]
fn operator_words_need_a_boundary() {
    // `inx` is not `in` followed by `x`; `in{` is `in` followed by `{`.
    assert!(Selector::parse("k inx {'a'}").is_err());
    assert!(Selector::parse("k in{'a'}").is_ok());
    assert!(Selector::parse("k containsx 'a'").is_err());
    assert!(Selector::parse("k contains'a'").is_ok());
    assert!(Selector::parse("k not inside {'a'}").is_err());
}

#[test]
fn maximal_key_length() {
    let key = "k".repeat(super::MAX_KEY_LEN);
    check(&format!("{key} == 'v'"), &[&[(key.as_str(), "v")]], &[&[]]);
    check(&format!("has({key})"), &[&[(key.as_str(), "")]], &[&[]]);
}

#[test]
fn deep_but_allowed_nesting() {
    let depth = super::MAX_NESTING;
    let text = format!("{}has(a){}", "(".repeat(depth), ")".repeat(depth));
    assert_eq!(parse_ok(&text), parse_ok("has(a)"));
    let text = format!("{}has(a){}", "!(".repeat(depth), ")".repeat(depth));
    assert_eq!(parse_ok(&text), parse_ok("has(a)"));
    let long = vec!["has(a)"; 20_000].join(" && ");
    assert!(parse_ok(&long).matches(&[("a", "")]));
    let nots = format!("{}has(a)", "!".repeat(100_001));
    assert_eq!(parse_ok(&nots), parse_ok("!has(a)"));
}

// ---------------------------------------------------------------------------
// API: all/global, text, equality, Display, Debug, scopes, Labels.

#[test]
fn is_all() {
    for text in [
        "",
        "   ",
        "\t",
        "all()",
        " all( ) ",
        "(all())",
        "!!all()",
        "!(!all())",
    ] {
        let sel = parse_ok(text);
        assert!(sel.is_all(), "{text:?}");
        assert!(!sel.is_global());
        assert_eq!(sel, Selector::all());
        assert_eq!(sel.to_string(), "all()");
    }
    for text in [
        "all() && all()",
        "all() || has(a)",
        "!all()",
        "global()",
        "has(a)",
    ] {
        assert!(!parse_ok(text).is_all(), "{text:?}");
    }
    assert!(Selector::all().is_all());
    assert!(Selector::default().is_all());
    assert_eq!(Selector::all().text(), "all()");
}

#[test]
fn is_global() {
    for text in ["global()", " global( ) ", "(global())", "!!global()"] {
        let sel = parse_ok(text);
        assert!(sel.is_global(), "{text:?}");
        assert!(!sel.is_all());
        assert_eq!(sel, Selector::global());
        assert_eq!(sel.to_string(), "global()");
    }
    for text in ["global() && has(a)", "!global()", "all()", "global == 'x'"] {
        assert!(!parse_ok(text).is_global(), "{text:?}");
    }
    assert_eq!(Selector::global().text(), "global()");
}

#[test]
fn text_is_kept_verbatim() {
    for text in [
        "",
        "  ",
        "a=='x'",
        "  has( b )  ",
        "k in {'b','a'}",
        "(all())",
    ] {
        assert_eq!(parse_ok(text).text(), text);
    }
    assert_eq!(parse_ok("a=='x'").to_string(), r#"a == "x""#);
}

#[test]
fn equality_and_hash_follow_the_expression() {
    use std::collections::HashSet;
    let variants = [
        "a == 'x' && b in {'2', '1'}",
        "a==\"x\"&&b in{\"1\",\"2\",\"1\"}",
        "(a == 'x') && (b in {'1', '2'})",
        "!!(a == 'x' && b in {'1','2',})",
    ];
    let set: HashSet<Selector> = variants.iter().map(|t| parse_ok(t)).collect();
    assert_eq!(set.len(), 1, "{set:?}");
    for (a, b) in [
        ("a == 'x'", "a != 'x'"),
        ("a == 'x'", "a == 'X'"),
        ("a == 'x'", "A == 'x'"),
        ("a in {'x'}", "a not in {'x'}"),
        ("a in {'x'}", "a == 'x'"),
        ("has(a) && has(b)", "has(b) && has(a)"),
        ("has(a) && has(b)", "has(a) || has(b)"),
        ("all()", "global()"),
        ("all()", "!all()"),
        ("a starts with 'x'", "a ends with 'x'"),
        ("a contains 'x'", "a starts with 'x'"),
    ] {
        assert_ne!(parse_ok(a), parse_ok(b), "{a:?} vs {b:?}");
    }
}

#[test]
fn display_round_trips() {
    for text in [
        "",
        "all()",
        "global()",
        "!global()",
        "has(a)",
        "!has(a)",
        "a == 'b'",
        "a != \"b\"",
        "a contains 'x y'",
        "a starts with '\"'",
        "a ends with \"'\"",
        "a in {}",
        "a not in {'z', 'a', 'm'}",
        "a == 'x' || b == 'y' && c == 'z'",
        "!(a == 'x' || b == 'y') && c == 'z'",
        "((a == 'x' || has(b)) && (c in {'1'} || !d not in {'2'})) || all()",
        "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
        "projectcalico.org/namespace == 'prod' && app.kubernetes.io/name in {'web','api'}",
        "a == '' && b in {'', ' '}",
        "x == 'ünï' || y contains '✓'",
        "global() || has(projectcalico.org/namespace)",
        "(has(a) && has(b)) && (has(c) && (has(d) || has(e)))",
    ] {
        let sel = parse_ok(text);
        let shown = sel.to_string();
        let again = parse_ok(&shown);
        assert_eq!(again, sel, "{text:?} -> {shown:?}");
        assert_eq!(again.to_string(), shown, "{shown:?} is not a fixed point");
    }
}

#[test]
fn debug_shows_the_canonical_form() {
    assert_eq!(format!("{:?}", parse_ok("a=='x'")), r#"Selector(a == "x")"#);
}

#[test]
fn from_str() {
    let sel: Selector = "has(a)".parse().expect("parses");
    assert_eq!(sel, parse_ok("has(a)"));
    assert!("has(".parse::<Selector>().is_err());
}

#[test]
fn scopes_for_all_and_global() {
    let none: [(&str, &str); 0] = [];
    let cases = [
        ("all()", [true, true, false]),
        ("global()", [true, false, true]),
        ("!all()", [false, false, true]),
        ("!global()", [false, true, false]),
        ("global() || all()", [true, true, true]),
        ("global() && all()", [true, false, false]),
        ("has(a)", [false, false, false]),
        ("!has(a)", [true, true, true]),
        ("global() || has(a)", [true, false, true]),
    ];
    for (text, [labels, namespaced, non_namespaced]) in cases {
        let sel = parse_ok(text);
        assert_eq!(sel.matches(&none), labels, "{text:?} plain");
        assert_eq!(
            sel.matches_in(&none, Scope::Labels),
            labels,
            "{text:?} Labels"
        );
        assert_eq!(
            sel.matches_in(&none, Scope::Namespaced),
            namespaced,
            "{text:?} Namespaced"
        );
        assert_eq!(
            sel.matches_in(&none, Scope::NonNamespaced),
            non_namespaced,
            "{text:?} NonNamespaced"
        );
        assert_eq!(sel.matches_namespace(Some(&none)), namespaced, "{text:?}");
        assert_eq!(sel.matches_namespace(None), non_namespaced, "{text:?}");
    }
}

#[test]
fn namespace_selector_semantics() {
    let prod = btree(&[("env", "prod"), ("projectcalico.org/name", "shop")]);
    let dev = btree(&[("env", "dev")]);
    let sel = parse_ok("env == 'prod'");
    assert!(sel.matches_namespace(Some(&prod)));
    assert!(!sel.matches_namespace(Some(&dev)));
    assert!(!sel.matches_namespace(None));
    let sel = parse_ok("global() || env == 'prod'");
    assert!(sel.matches_namespace(Some(&prod)));
    assert!(!sel.matches_namespace(Some(&dev)));
    assert!(sel.matches_namespace(None));
    // As in Calico, a test that holds without labels also holds for
    // non-namespaced resources.
    assert!(parse_ok("env != 'prod'").matches_namespace(None));
}

#[test]
fn labels_implementations() {
    let tree = btree(&[("a", "1")]);
    let hash: HashMap<String, String> = tree.clone().into_iter().collect();
    let array = [("a", "1")];
    let vec = vec![("a".to_owned(), "1".to_owned())];
    let slice: &[(&str, &str)] = &[("a", "1"), ("a", "2")];
    for labels in [&tree as &dyn Labels, &hash, &array, &vec] {
        assert_eq!(labels.get("a"), Some("1"));
        assert_eq!(labels.get("b"), None);
        assert!(parse_ok("a == '1'").matches(labels));
    }
    // First pair wins.
    assert_eq!(Labels::get(slice, "a"), Some("1"));
}

// ---------------------------------------------------------------------------
// Serde.

#[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
struct Holder {
    selector: Selector,
    #[serde(default)]
    other: Option<Selector>,
}

#[test]
fn serde_as_string() {
    let sel: Selector = serde_json::from_str(r#""a=='x' && has(b)""#).expect("json");
    assert_eq!(sel, parse_ok("a == 'x' && has(b)"));
    assert_eq!(sel.text(), "a=='x' && has(b)");
    assert_eq!(
        serde_json::to_string(&sel).expect("json"),
        r#""a=='x' && has(b)""#
    );

    let holder: Holder = serde_yaml::from_str(
        "selector: projectcalico.org/namespace == 'prod' && app in {'web', 'api'}\n",
    )
    .expect("yaml");
    assert_eq!(holder.other, None);
    assert!(
        holder
            .selector
            .matches(&[("projectcalico.org/namespace", "prod"), ("app", "api")])
    );
    let yaml = serde_yaml::to_string(&holder).expect("yaml");
    let back: Holder = serde_yaml::from_str(&yaml).expect("yaml again");
    assert_eq!(back, holder);

    let folded: Holder =
        serde_yaml::from_str("selector: >-\n  has(a) &&\n  has(b)\n").expect("folded");
    assert_eq!(folded.selector, parse_ok("has(a) && has(b)"));
}

#[test]
fn serde_errors_say_where() {
    let err = serde_json::from_str::<Selector>(r#""tier == prod""#).expect_err("invalid");
    let message = err.to_string();
    assert!(
        message.contains(
            r#"invalid selector "tier == prod": at position 8: expected a quoted string after `==`, found label `prod`"#
        ),
        "{message}"
    );
    let err = serde_yaml::from_str::<Holder>("selector: |\n  has(a) &&\n  has(b)\n")
        .expect_err("literal block");
    assert!(err.to_string().contains("line break"), "{err}");
    assert!(serde_json::from_str::<Selector>("42").is_err());
}
