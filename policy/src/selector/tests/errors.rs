//! Bad selectors: each must fail at the offending token with a message that
//! says what was expected.

use super::super::{MAX_KEY_LEN, MAX_NESTING, Selector, SelectorError};

const EXPR: &str =
    "expected an expression (such as `key == 'value'`, `has(key)`, `all()`, `!` or `(`)";
const OPS: &str = "(`==`, `!=`, `in`, `not in`, `contains`, `starts with` or `ends with`)";

#[track_caller]
fn check_err(text: &str, position: usize, message: &str) {
    let err = match Selector::parse(text) {
        Ok(sel) => panic!("{text:?} parsed as {sel}"),
        Err(err) => err,
    };
    assert_eq!(
        (err.position, err.message.as_str()),
        (position, message),
        "{text:?}\n{}",
        err.annotate(text)
    );
}

/// Calico's `badSelectors` table, with the positions and messages here.
#[test]
fn calico_bad_selectors() {
    check_err(
        "b == b",
        5,
        "expected a quoted string after `==`, found label `b`",
    );
    check_err(
        "b contains b",
        11,
        "expected a quoted string after `contains`, found label `b`",
    );
    check_err(
        "b starts with b",
        14,
        "expected a quoted string after `starts with`, found label `b`",
    );
    check_err(
        "b ends with b",
        12,
        "expected a quoted string after `ends with`, found label `b`",
    );
    check_err(
        "'b1' == b",
        0,
        &format!("{EXPR}, found the string `\"b1\"`"),
    );
    check_err(
        "b",
        1,
        &format!("expected an operator after label `b` {OPS}"),
    );
    check_err(
        "a b",
        2,
        &format!("expected an operator after label `a` {OPS}, found `b`"),
    );
    check_err("!", 1, &format!("{EXPR} after `!`"));
    check_err(
        r#"foo == "bar" &"#,
        13,
        "expected `&&`; a single `&` is not an operator",
    );
    check_err(
        r#"foo == "bar" |"#,
        13,
        "expected `||`; a single `|` is not an operator",
    );
    check_err(
        "foo != ||",
        7,
        "expected a quoted string after `!=`, found `||`",
    );
    check_err(
        r#"foo in {"", ||"#,
        12,
        "expected a quoted string or `}` in the set opened at position 7, found `||`",
    );
    check_err(
        r#"foo in """#,
        7,
        "expected `{` to start the set of values after `in`, found the string `\"\"`",
    );
    check_err(r#""FOO"#, 0, "unterminated string: this \" is never closed");
    check_err(
        r#""FOO'"#,
        0,
        "unterminated string: this \" is never closed",
    );
    check_err("'FOO", 0, "unterminated string: this ' is never closed");
    check_err("(", 1, &format!("{EXPR} after `(`"));
    check_err(
        r#"(a == "foo""#,
        11,
        "expected `)` to close the `(` at position 0",
    );
    check_err(")", 0, &format!("{EXPR}, found `)`"));
    check_err("()", 1, &format!("{EXPR} after `(`, found `)`"));
    check_err("%", 0, "unexpected character `%`");
    check_err(r#"a == "b" && %"#, 12, "unexpected character `%`");
    check_err(r#"a == "b" || %"#, 12, "unexpected character `%`");
    check_err(
        "a ",
        2,
        &format!("expected an operator after label `a` {OPS}"),
    );
    check_err("has(foo) &&", 11, &format!("{EXPR} after `&&`"));
}

#[test]
fn display_format() {
    let err = Selector::parse("tier ==").expect_err("missing value");
    assert_eq!(
        err.to_string(),
        "at position 7: expected a quoted string after `==`"
    );
    let err: SelectorError = Selector::parse("a = 'b'").expect_err("single =");
    assert_eq!(
        err.to_string(),
        "at position 2: expected `==`; a single `=` is not an operator"
    );
}

#[test]
fn missing_operand() {
    check_err("tier ==", 7, "expected a quoted string after `==`");
    check_err("tier ==   ", 10, "expected a quoted string after `==`");
    check_err(
        "a == 'x' && b !=",
        16,
        "expected a quoted string after `!=`",
    );
    check_err(
        "a ==== 'x'",
        4,
        "expected a quoted string after `==`, found `==`",
    );
    check_err(
        "a == has(b)",
        5,
        "expected a quoted string after `==`, found `has(b)`",
    );
    check_err(
        "a == ('x')",
        5,
        "expected a quoted string after `==`, found `(`",
    );
    check_err(
        "a startswith",
        12,
        "expected a quoted string after `starts with`",
    );
    check_err("a == 'x' ||", 11, &format!("{EXPR} after `||`"));
    check_err("a == 'x' || ", 12, &format!("{EXPR} after `||`"));
    check_err(
        "a == 'x' && && has(b)",
        12,
        &format!("{EXPR} after `&&`, found `&&`"),
    );
    check_err("&& has(b)", 0, &format!("{EXPR}, found `&&`"));
    check_err("a == 'x' && !", 13, &format!("{EXPR} after `!`"));
    check_err("!!", 2, &format!("{EXPR} after `!`"));
    check_err("has(a) && )", 10, &format!("{EXPR} after `&&`, found `)`"));
}

#[test]
fn bad_operators() {
    check_err(
        "a = 'b'",
        2,
        "expected `==`; a single `=` is not an operator",
    );
    check_err(
        "a == 'x' & b == 'y'",
        9,
        "expected `&&`; a single `&` is not an operator",
    );
    check_err(
        "a == 'x' | b == 'y'",
        9,
        "expected `||`; a single `|` is not an operator",
    );
    check_err(
        "a ! = 'x'",
        2,
        &format!("expected an operator after label `a` {OPS}, found `!`"),
    );
    check_err(
        "a starts 'x'",
        2,
        &format!("expected an operator after label `a` {OPS}, found `starts`"),
    );
    check_err(
        "a not 'x'",
        2,
        &format!("expected an operator after label `a` {OPS}, found `not`"),
    );
    check_err(
        "a containsx 'y'",
        2,
        &format!("expected an operator after label `a` {OPS}, found `containsx`"),
    );
    check_err(
        "a inx {'y'}",
        2,
        &format!("expected an operator after label `a` {OPS}, found `inx`"),
    );
    check_err(
        "a 'x'",
        2,
        &format!("expected an operator after label `a` {OPS}, found the string `\"x\"`"),
    );
    check_err(
        "a && b",
        2,
        &format!("expected an operator after label `a` {OPS}, found `&&`"),
    );
    check_err(
        "a ~= 'x'",
        2,
        &format!("expected an operator after label `a` {OPS}, found `~`"),
    );
    check_err(
        "a == 'x' && b",
        13,
        &format!("expected an operator after label `b` {OPS}"),
    );
}

#[test]
fn unknown_functions() {
    let known = "the functions are `all()`, `global()` and `has(label)`";
    check_err("foo()", 0, &format!("unknown function `foo()`; {known}"));
    check_err(
        "a == 'x' && foo(a)",
        12,
        &format!("unknown function `foo()`; {known}"),
    );
    check_err("HAS(a)", 0, &format!("unknown function `HAS()`; {known}"));
    check_err("hasx(a)", 0, &format!("unknown function `hasx()`; {known}"));
    check_err("none ()", 0, &format!("unknown function `none()`; {known}"));
    check_err("has (a)", 3, "no space is allowed between `has` and `(`");
    check_err("all ()", 3, "no space is allowed between `all` and `(`");
    check_err(
        "!global\t()",
        7,
        "no space is allowed between `global` and `(`",
    );
}

#[test]
fn bad_function_arguments() {
    check_err("has()", 4, "expected a label name in `has(...)`, found `)`");
    check_err(
        "has( )",
        5,
        "expected a label name in `has(...)`, found `)`",
    );
    check_err(
        "has('a')",
        4,
        "expected a label name in `has(...)`, found `'`",
    );
    check_err("has(", 4, "expected a label name in `has(...)`");
    check_err("has(a b)", 6, "expected `)` to close `has(a`, found `b`");
    check_err("has(a", 5, "expected `)` to close `has(a`");
    check_err("has(a, b)", 5, "expected `)` to close `has(a`, found `,`");
    check_err("all(x)", 4, "expected `)` after `all(`, found `x`");
    check_err("all(", 4, "expected `)` after `all(`");
    check_err("global( a )", 8, "expected `)` after `global(`, found `a`");
}

#[test]
fn unbalanced_parentheses() {
    check_err(
        "a == 'x')",
        8,
        "unmatched `)`: there is no `(` for it to close",
    );
    check_err(
        "(a == 'x'))",
        10,
        "unmatched `)`: there is no `(` for it to close",
    );
    check_err(
        "((a == 'x')",
        11,
        "expected `)` to close the `(` at position 0",
    );
    check_err(
        "(has(a) && (has(b)",
        18,
        "expected `)` to close the `(` at position 11",
    );
    check_err(
        "(has(a) has(b))",
        8,
        "expected `)` to close the `(` at position 0, found `has(b)`",
    );
    check_err(
        "(has(a) }",
        8,
        "expected `)` to close the `(` at position 0, found `}`",
    );
    check_err(
        "has(a) (has(b))",
        7,
        "expected `&&`, `||` or the end of the selector, found `(`",
    );
}

#[test]
fn bad_sets() {
    check_err(
        "a in",
        4,
        "expected `{` to start the set of values after `in`",
    );
    check_err(
        "a in 'x'",
        5,
        "expected `{` to start the set of values after `in`, found the string `\"x\"`",
    );
    check_err(
        "a not in ('x')",
        9,
        "expected `{` to start the set of values after `not in`, found `(`",
    );
    check_err(
        "a in {",
        6,
        "expected a quoted string or `}` in the set opened at position 5",
    );
    check_err(
        "a in {'x',",
        10,
        "expected a quoted string or `}` in the set opened at position 5",
    );
    check_err(
        "a in {'x'",
        9,
        "expected `,` or `}` after a value in the set opened at position 5",
    );
    check_err(
        "a in {'x' 'y'}",
        10,
        "expected `,` or `}` after a value in the set opened at position 5, found the string `\"y\"`",
    );
    check_err(
        "a in {,}",
        6,
        "expected a quoted string or `}` in the set opened at position 5, found `,`",
    );
    check_err(
        "a in {'x',,}",
        10,
        "expected a quoted string or `}` in the set opened at position 5, found `,`",
    );
    check_err(
        "a in {x}",
        6,
        "expected a quoted string or `}` in the set opened at position 5, found label `x`",
    );
    check_err(
        "a in {'x')",
        9,
        "expected `,` or `}` after a value in the set opened at position 5, found `)`",
    );
}

#[test]
fn trailing_garbage() {
    check_err(
        "a == 'x' b == 'y'",
        9,
        "expected `&&`, `||` or the end of the selector, found label `b`",
    );
    check_err(
        "has(a) has(b)",
        7,
        "expected `&&`, `||` or the end of the selector, found `has(b)`",
    );
    check_err(
        "a == 'x' 'y'",
        9,
        "expected `&&`, `||` or the end of the selector, found the string `\"y\"`",
    );
    check_err(
        "a in {} b",
        8,
        "expected `&&`, `||` or the end of the selector, found label `b`",
    );
    check_err(
        "all() all()",
        6,
        "expected `&&`, `||` or the end of the selector, found `all()`",
    );
    check_err(
        "all() !",
        6,
        "expected `&&`, `||` or the end of the selector, found `!`",
    );
    check_err(
        "all() }",
        6,
        "expected `&&`, `||` or the end of the selector, found `}`",
    );
}

#[test]
fn unterminated_strings() {
    check_err("a == 'x", 5, "unterminated string: this ' is never closed");
    check_err(
        "a == \"x' && b == 'y'",
        5,
        "unterminated string: this \" is never closed",
    );
    check_err(
        "a in {'x', \"y}",
        11,
        "unterminated string: this \" is never closed",
    );
}

#[test]
fn garbage_characters() {
    check_err("a == 'x' && é == 'y'", 12, "unexpected character `é`");
    check_err("é", 0, "unexpected character `é`");
    check_err("a == 'x' \0", 9, "unexpected character '\\0'");
    check_err("a == 'x' && $x", 12, "unexpected character `$`");
    check_err("a == 'x' ; b == 'y'", 9, "unexpected character `;`");
    check_err("[a == 'x']", 0, "unexpected character `[`");
    check_err("a == 'x' # comment", 9, "unexpected character `#`");
    check_err(
        "a\u{a0}== 'x'",
        1,
        &format!("expected an operator after label `a` {OPS}, found `\u{a0}`"),
    );
}

#[test]
fn line_breaks_are_rejected() {
    let message = "unexpected line break: only spaces and tabs may separate the parts of a selector \
                   (in YAML, keep it on one line or fold it with `>-`)";
    check_err("a == 'x'\n&& b == 'y'", 8, message);
    check_err("a == 'x' &&\r\nb == 'y'", 11, message);
    check_err("\nhas(a)", 0, message);
    check_err("has(a)\n", 6, message);
    check_err("a\n== 'x'", 1, message);
    // Inside quotes a line break is part of the value.
    assert!(Selector::parse("a == 'x\ny'").is_ok());
}

#[test]
fn limits() {
    let key = "k".repeat(MAX_KEY_LEN + 1);
    let long = format!(
        "label `{}...` is {} bytes long; a label in a selector may have at most {MAX_KEY_LEN}",
        "k".repeat(40),
        MAX_KEY_LEN + 1
    );
    check_err(&format!("{key} == 'v'"), 0, &long);
    check_err(&format!("has({key})"), 4, &long);
    check_err(&format!("a == 'x' && has( {key} )"), 17, &long);
    let depth = MAX_NESTING + 1;
    let text = format!("{}has(a){}", "(".repeat(depth), ")".repeat(depth));
    check_err(
        &text,
        MAX_NESTING,
        &format!("parentheses nest more than {MAX_NESTING} deep"),
    );
    let text = format!("{}has(a){}", "!(".repeat(depth), ")".repeat(depth));
    check_err(
        &text,
        2 * MAX_NESTING + 1,
        &format!("parentheses nest more than {MAX_NESTING} deep"),
    );
}

#[test]
fn the_first_error_is_reported() {
    // The tokenizer runs on demand, so a later bad character does not hide
    // an earlier mistake.
    check_err(
        "a == b %",
        5,
        "expected a quoted string after `==`, found label `b`",
    );
    check_err(") 'unterminated", 0, &format!("{EXPR}, found `)`"));
}

#[test]
fn annotate() {
    let text = "tier == prod";
    let err = Selector::parse(text).expect_err("bad");
    assert_eq!(
        err.annotate(text),
        "tier == prod\n        ^ expected a quoted string after `==`, found label `prod`"
    );
    let text = "a == 'x' &&\n\tb == c";
    let err = SelectorError::new(18, "here");
    assert_eq!(err.annotate(text), "\tb == c\n\t     ^ here");
    // Multi-byte characters take one column: the text is 12 bytes long.
    let text = "a == 'é' &&";
    let err = Selector::parse(text).expect_err("bad");
    assert_eq!(
        err.annotate(text),
        format!("{text}\n{}^ {}", " ".repeat(11), err.message)
    );
    let text = "a == 'x' && é";
    let err = Selector::parse(text).expect_err("bad");
    assert_eq!(
        err.annotate(text),
        format!("{text}\n{}^ unexpected character `é`", " ".repeat(12))
    );
    // Wrong text or position: no panic.
    let _ = SelectorError::new(100, "x").annotate("short");
    let _ = SelectorError::new(1, "x").annotate("é");
}
