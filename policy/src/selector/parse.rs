//! Calico's selector tokenizer and recursive-descent parser, with byte
//! positions for errors.
//!
//! The tokenizer mirrors `libcalico-go/lib/selector/tokenizer`: it is
//! context-sensitive in one place only — straight after a key it reads the
//! operator words (`in`, `not in`, `contains`, ...), anywhere else it reads
//! `has(`, `all(`, `global(` or a key. The parser mirrors
//! `.../parser/parser.go`. Tokens are produced on demand, so the error
//! reported is always the first one in the text.

use super::{Node, SelectorError, TestOp};

/// The longest label key a selector may name, in bytes (Calico's
/// `tokenizer.MaxLabelLength`).
pub const MAX_KEY_LEN: usize = 512;

/// How deeply parentheses may nest. Calico has no limit; this bounds the
/// parser's and the evaluator's recursion on untrusted input.
pub const MAX_NESTING: usize = 128;

/// What may follow a key, listed in errors.
const OPERATORS: &str = "`==`, `!=`, `in`, `not in`, `contains`, `starts with` or `ends with`";

/// What may start an operation, listed in errors.
const EXPRESSION: &str =
    "an expression (such as `key == 'value'`, `has(key)`, `all()`, `!` or `(`)";

pub(super) fn parse(text: &str) -> Result<Node, SelectorError> {
    let mut parser = Parser {
        lexer: Lexer {
            src: text,
            pos: 0,
            last_label: None,
        },
        peeked: None,
        depth: 0,
    };
    if parser.peek()?.tok == Tok::Eof {
        return Ok(Node::All);
    }
    let node = parser.or(None)?;
    let end = parser.bump()?;
    match end.tok {
        Tok::Eof => Ok(node),
        Tok::RParen => Err(SelectorError::new(
            end.pos,
            "unmatched `)`: there is no `(` for it to close",
        )),
        other => Err(SelectorError::new(
            end.pos,
            format!(
                "expected `&&`, `||` or the end of the selector{}",
                found(other)
            ),
        )),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok<'a> {
    Label(&'a str),
    Str(&'a str),
    Has(&'a str),
    All,
    Global,
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
    In,
    NotIn,
    Not,
    And,
    Or,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Eof,
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    tok: Tok<'a>,
    /// Byte offset of the token's first character.
    pos: usize,
}

/// `", found X"` for error messages; nothing at the end of the text, where
/// the position already says it.
fn found(tok: Tok<'_>) -> String {
    let what = match tok {
        Tok::Eof => return String::new(),
        Tok::Label(key) => format!("label `{key}`"),
        Tok::Str(value) => {
            let quote = if value.contains('"') { '\'' } else { '"' };
            format!("the string `{quote}{value}{quote}`")
        }
        Tok::Has(key) => format!("`has({key})`"),
        Tok::All => "`all()`".into(),
        Tok::Global => "`global()`".into(),
        Tok::Eq => "`==`".into(),
        Tok::Ne => "`!=`".into(),
        Tok::Contains => "`contains`".into(),
        Tok::StartsWith => "`starts with`".into(),
        Tok::EndsWith => "`ends with`".into(),
        Tok::In => "`in`".into(),
        Tok::NotIn => "`not in`".into(),
        Tok::Not => "`!`".into(),
        Tok::And => "`&&`".into(),
        Tok::Or => "`||`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBrace => "`{`".into(),
        Tok::RBrace => "`}`".into(),
        Tok::Comma => "`,`".into(),
    };
    format!(", found {what}")
}

/// `", found X"` for raw text the tokenizer could not read as a token.
fn found_text(rest: &str) -> String {
    let key = key_len(rest);
    if key > 0 {
        return format!(", found `{}`", &rest[..key]);
    }
    match rest.chars().next() {
        None => String::new(),
        Some('\n' | '\r') => ", found a line break".into(),
        Some(c) if c.is_control() => format!(", found {c:?}"),
        Some(c) => format!(", found `{c}`"),
    }
}

fn expected_operator(key: &str, found: &str) -> String {
    format!("expected an operator after label `{key}` ({OPERATORS}){found}")
}

/// Whether `b` may appear in a label key (Calico's `identifierChar`).
pub(super) fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// Length of the key at the start of `s` (0 if none).
fn key_len(s: &str) -> usize {
    s.bytes().take_while(|&b| is_key_byte(b)).count()
}

/// Whether `s` starts with a byte that can continue a word (a key byte), so
/// that an operator word just before it would really be part of a key.
fn continues_word(s: &str) -> bool {
    s.bytes().next().is_some_and(is_key_byte)
}

fn skip_blanks(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next unread character.
    pos: usize,
    /// The key just read, if the last token was one: operator words are
    /// only recognised there.
    last_label: Option<&'a str>,
}

impl<'a> Lexer<'a> {
    fn next(&mut self) -> Result<Token<'a>, SelectorError> {
        let after_label = self.last_label.take();
        let rest = skip_blanks(&self.src[self.pos..]);
        let start = self.src.len() - rest.len();
        let (tok, len) = token(rest, start, after_label)?;
        self.pos = start + len;
        if let Tok::Label(key) = tok {
            self.last_label = Some(key);
        }
        Ok(Token { tok, pos: start })
    }
}

/// The token at the start of `rest` (at byte `start` of the text) and its
/// length. `after_label` is the key just read, if the last token was one.
fn token<'a>(
    rest: &'a str,
    start: usize,
    after_label: Option<&str>,
) -> Result<(Tok<'a>, usize), SelectorError> {
    let err = |at: usize, message: String| Err(SelectorError::new(at, message));
    let Some(&first) = rest.as_bytes().first() else {
        return Ok((Tok::Eof, 0));
    };
    Ok(match first {
        b'(' => (Tok::LParen, 1),
        b')' => (Tok::RParen, 1),
        b'{' => (Tok::LBrace, 1),
        b'}' => (Tok::RBrace, 1),
        b',' => (Tok::Comma, 1),
        b'"' | b'\'' => {
            let quote = char::from(first);
            let Some(end) = rest[1..].find(quote) else {
                return err(
                    start,
                    format!("unterminated string: this {quote} is never closed"),
                );
            };
            (Tok::Str(&rest[1..=end]), end + 2)
        }
        b'=' if rest.starts_with("==") => (Tok::Eq, 2),
        b'=' => {
            return err(
                start,
                "expected `==`; a single `=` is not an operator".into(),
            );
        }
        b'!' if rest.starts_with("!=") => (Tok::Ne, 2),
        b'!' => (Tok::Not, 1),
        b'&' if rest.starts_with("&&") => (Tok::And, 2),
        b'&' => {
            return err(
                start,
                "expected `&&`; a single `&` is not an operator".into(),
            );
        }
        b'|' if rest.starts_with("||") => (Tok::Or, 2),
        b'|' => {
            return err(
                start,
                "expected `||`; a single `|` is not an operator".into(),
            );
        }
        b'\n' | b'\r' => {
            return err(
                start,
                "unexpected line break: only spaces and tabs may separate the parts of a \
                     selector (in YAML, keep it on one line or fold it with `>-`)"
                    .into(),
            );
        }
        _ => {
            if let Some(key) = after_label {
                return operator(rest, start, key);
            }
            if let Some(args) = rest.strip_prefix("has(") {
                return has(rest, args, start);
            }
            for (name, tok) in [("all(", Tok::All), ("global(", Tok::Global)] {
                if let Some(args) = rest.strip_prefix(name) {
                    let args = skip_blanks(args);
                    let Some(after) = args.strip_prefix(')') else {
                        return err(
                            start + rest.len() - args.len(),
                            format!("expected `)` after `{name}`{}", found_text(args)),
                        );
                    };
                    return Ok((tok, rest.len() - after.len()));
                }
            }
            let len = key_len(rest);
            if len == 0 {
                let c = rest.chars().next().unwrap_or_default();
                let shown = if c.is_control() {
                    format!("{c:?}")
                } else {
                    format!("`{c}`")
                };
                return err(start, format!("unexpected character {shown}"));
            }
            check_key_len(&rest[..len], start)?;
            (Tok::Label(&rest[..len]), len)
        }
    })
}

/// Reads the operator after label `key`: `rest` starts with neither a
/// symbol nor a quote.
fn operator<'a>(rest: &str, start: usize, key: &str) -> Result<(Tok<'a>, usize), SelectorError> {
    const WORDS: [(&[&str], Tok<'static>); 5] = [
        (&["contains"], Tok::Contains),
        (&["starts", "with"], Tok::StartsWith),
        (&["ends", "with"], Tok::EndsWith),
        (&["not", "in"], Tok::NotIn),
        (&["in"], Tok::In),
    ];
    'ops: for (words, tok) in WORDS {
        let mut s = rest;
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                // Calico allows any blanks, or none, between the words.
                s = skip_blanks(s);
            }
            let Some(after) = s.strip_prefix(word) else {
                continue 'ops;
            };
            s = after;
        }
        if !continues_word(s) {
            return Ok((tok, rest.len() - s.len()));
        }
    }
    Err(SelectorError::new(
        start,
        expected_operator(key, &found_text(rest)),
    ))
}

/// Reads `has( key )`; `args` is what follows `has(`.
fn has<'a>(rest: &'a str, args: &'a str, start: usize) -> Result<(Tok<'a>, usize), SelectorError> {
    let at = |s: &str| start + rest.len() - s.len();
    let args = skip_blanks(args);
    let len = key_len(args);
    if len == 0 {
        return Err(SelectorError::new(
            at(args),
            format!("expected a label name in `has(...)`{}", found_text(args)),
        ));
    }
    let key = &args[..len];
    check_key_len(key, at(args))?;
    let after_key = skip_blanks(&args[len..]);
    let Some(after) = after_key.strip_prefix(')') else {
        return Err(SelectorError::new(
            at(after_key),
            format!("expected `)` to close `has({key}`{}", found_text(after_key)),
        ));
    };
    Ok((Tok::Has(key), rest.len() - after.len()))
}

fn check_key_len(key: &str, pos: usize) -> Result<(), SelectorError> {
    if key.len() <= MAX_KEY_LEN {
        return Ok(());
    }
    let head: String = key.chars().take(40).collect();
    Err(SelectorError::new(
        pos,
        format!(
            "label `{head}...` is {} bytes long; a label in a selector may have at most \
             {MAX_KEY_LEN}",
            key.len()
        ),
    ))
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token<'a>>,
    /// Parentheses currently open.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&mut self) -> Result<Token<'a>, SelectorError> {
        if let Some(token) = self.peeked {
            return Ok(token);
        }
        let token = self.lexer.next()?;
        self.peeked = Some(token);
        Ok(token)
    }

    fn bump(&mut self) -> Result<Token<'a>, SelectorError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next(),
        }
    }

    /// One or more `&&` groups separated by `||`. `after` names the token
    /// before, for errors.
    fn or(&mut self, after: Option<&'static str>) -> Result<Node, SelectorError> {
        let mut nodes = vec![self.and(after)?];
        while self.peek()?.tok == Tok::Or {
            self.bump()?;
            nodes.push(self.and(Some("`||`"))?);
        }
        Ok(if nodes.len() == 1 {
            nodes.swap_remove(0)
        } else {
            Node::Or(nodes)
        })
    }

    /// One or more operations separated by `&&`.
    fn and(&mut self, after: Option<&'static str>) -> Result<Node, SelectorError> {
        let mut nodes = vec![self.operation(after)?];
        while self.peek()?.tok == Tok::And {
            self.bump()?;
            nodes.push(self.operation(Some("`&&`"))?);
        }
        Ok(if nodes.len() == 1 {
            nodes.swap_remove(0)
        } else {
            Node::And(nodes)
        })
    }

    /// A possibly negated label test, function or parenthesised group.
    fn operation(&mut self, mut after: Option<&'static str>) -> Result<Node, SelectorError> {
        let mut negated = false;
        while self.peek()?.tok == Tok::Not {
            self.bump()?;
            negated = !negated;
            after = Some("`!`");
        }
        let token = self.bump()?;
        let node = match token.tok {
            Tok::Has(key) => Node::Has(key.into()),
            Tok::All => Node::All,
            Tok::Global => Node::Global,
            Tok::Label(key) => self.label_test(key, token.pos)?,
            Tok::LParen => {
                if self.depth == MAX_NESTING {
                    return Err(SelectorError::new(
                        token.pos,
                        format!("parentheses nest more than {MAX_NESTING} deep"),
                    ));
                }
                self.depth += 1;
                let inner = self.or(Some("`(`"))?;
                self.depth -= 1;
                let close = self.bump()?;
                if close.tok != Tok::RParen {
                    return Err(SelectorError::new(
                        close.pos,
                        format!(
                            "expected `)` to close the `(` at position {}{}",
                            token.pos,
                            found(close.tok)
                        ),
                    ));
                }
                inner
            }
            other => {
                let after = after.map(|a| format!(" after {a}")).unwrap_or_default();
                return Err(SelectorError::new(
                    token.pos,
                    format!("expected {EXPRESSION}{after}{}", found(other)),
                ));
            }
        };
        Ok(if negated { node.negate() } else { node })
    }

    /// What follows label `key` (at byte `key_pos`): an operator and its
    /// operand.
    fn label_test(&mut self, key: &'a str, key_pos: usize) -> Result<Node, SelectorError> {
        let op = self.bump()?;
        let test = match op.tok {
            Tok::Eq => TestOp::Eq,
            Tok::Ne => TestOp::Ne,
            Tok::Contains => TestOp::Contains,
            Tok::StartsWith => TestOp::StartsWith,
            Tok::EndsWith => TestOp::EndsWith,
            Tok::In | Tok::NotIn => return self.set(key, op),
            Tok::LParen if matches!(key, "has" | "all" | "global") => {
                return Err(SelectorError::new(
                    key_pos + key.len(),
                    format!("no space is allowed between `{key}` and `(`"),
                ));
            }
            Tok::LParen => {
                return Err(SelectorError::new(
                    key_pos,
                    format!(
                        "unknown function `{key}()`; the functions are `all()`, `global()` and \
                         `has(label)`"
                    ),
                ));
            }
            other => {
                return Err(SelectorError::new(
                    op.pos,
                    expected_operator(key, &found(other)),
                ));
            }
        };
        let operand = self.bump()?;
        let Tok::Str(value) = operand.tok else {
            return Err(SelectorError::new(
                operand.pos,
                format!(
                    "expected a quoted string after `{}`{}",
                    test.as_str(),
                    found(operand.tok)
                ),
            ));
        };
        Ok(Node::Test {
            key: key.into(),
            op: test,
            value: value.into(),
        })
    }

    /// The `{ 'a', 'b' }` after `in` / `not in` (the token `op`).
    fn set(&mut self, key: &str, op: Token<'a>) -> Result<Node, SelectorError> {
        let op_text = if op.tok == Tok::In { "in" } else { "not in" };
        let open = self.bump()?;
        if open.tok != Tok::LBrace {
            return Err(SelectorError::new(
                open.pos,
                format!(
                    "expected `{{` to start the set of values after `{op_text}`{}",
                    found(open.tok)
                ),
            ));
        }
        let mut values: Vec<Box<str>> = Vec::new();
        loop {
            let item = self.bump()?;
            match item.tok {
                Tok::RBrace => break,
                Tok::Str(value) => values.push(value.into()),
                other => {
                    return Err(SelectorError::new(
                        item.pos,
                        format!(
                            "expected a quoted string or `}}` in the set opened at position {}{}",
                            open.pos,
                            found(other)
                        ),
                    ));
                }
            }
            let sep = self.bump()?;
            match sep.tok {
                Tok::Comma => {}
                Tok::RBrace => break,
                other => {
                    return Err(SelectorError::new(
                        sep.pos,
                        format!(
                            "expected `,` or `}}` after a value in the set opened at position \
                             {}{}",
                            open.pos,
                            found(other)
                        ),
                    ));
                }
            }
        }
        values.sort_unstable();
        values.dedup();
        let key = key.into();
        let values = values.into_boxed_slice();
        Ok(if op.tok == Tok::In {
            Node::In { key, values }
        } else {
            Node::NotIn { key, values }
        })
    }
}
