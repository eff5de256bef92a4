//! Cutting a file into documents, and finding a List's items' lines,
//! without parsing: both need line numbers serde_yaml does not hand out.

/// One document of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Document<'a> {
    /// Its text, without the `---` lines around it.
    pub(super) text: &'a str,
    /// The file line (from 1) of the text's first line.
    pub(super) first_line: usize,
    /// The file line of its first line of content (not blank, not a
    /// comment): where the resource is said to start.
    pub(super) start_line: usize,
    /// Its index among the file's documents that hold content.
    pub(super) index: usize,
}

/// Splits YAML into documents on lines that are `---` or `...` (the end
/// marker), maybe followed by spaces or a comment. Documents that are empty
/// or only comments are left out.
pub(super) fn split_yaml(text: &str) -> Vec<Document<'_>> {
    // (text, its first line) of every document, empty ones too.
    let mut chunks = Vec::new();
    let mut start = 0; // byte offset of the current document
    let mut first_line = 1;
    let mut offset = 0;
    for (line_no, line) in (1..).zip(text.split_inclusive('\n')) {
        if is_separator(line) {
            chunks.push((&text[start..offset], first_line));
            start = offset + line.len();
            first_line = line_no + 1;
        }
        offset += line.len();
    }
    chunks.push((&text[start..], first_line));
    let mut docs = Vec::new();
    for (chunk, first_line) in chunks {
        if let Some(doc) = document(chunk, first_line, docs.len()) {
            docs.push(doc);
        }
    }
    docs
}

/// The whole text as one document (JSON), if it holds anything.
pub(super) fn whole(text: &str) -> Option<Document<'_>> {
    document(text, 1, 0)
}

fn document(text: &str, first_line: usize, index: usize) -> Option<Document<'_>> {
    let content = text.lines().position(is_content)?;
    Some(Document {
        text,
        first_line,
        start_line: first_line + content,
        index,
    })
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

fn is_separator(line: &str) -> bool {
    let line = line.trim_end();
    let Some(rest) = line
        .strip_prefix("---")
        .or_else(|| line.strip_prefix("..."))
    else {
        return false;
    };
    rest.is_empty() || (rest.starts_with([' ', '\t']) && rest.trim_start().starts_with('#'))
}

/// The lines (from 1, in the document's text) where a List's `n` items
/// start, found by scanning for a block sequence under a top-level
/// `items:` key or, in JSON, the objects of the top-level `"items"` array.
/// `None` when the scan does not find exactly `n`.
pub(super) fn item_lines(text: &str, n: usize) -> Option<Vec<usize>> {
    let found = block_items(text).filter(|l| l.len() == n);
    found.or_else(|| json_items(text).filter(|l| l.len() == n))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn block_items(text: &str) -> Option<Vec<usize>> {
    let lines: Vec<&str> = text.lines().collect();
    let root = lines.iter().find(|l| is_content(l)).map(|l| indent(l))?;
    let key = lines.iter().position(|l| {
        indent(l) == root && {
            let rest = l.trim_start().strip_prefix("items:");
            rest.is_some_and(|r| r.trim().is_empty() || r.trim_start().starts_with('#'))
        }
    })?;
    let is_dash = |l: &str| {
        let t = l.trim_start();
        t == "-" || t.starts_with("- ")
    };
    let mut items = Vec::new();
    let mut seq_indent = None;
    for (i, line) in lines.iter().enumerate().skip(key + 1) {
        if !is_content(line) {
            continue;
        }
        let ind = indent(line);
        let want = *seq_indent.get_or_insert(ind);
        if ind < want || ind < root || (ind == want && !is_dash(line)) {
            break;
        }
        if ind == want {
            items.push(i + 1);
        }
    }
    Some(items)
}

fn json_items(text: &str) -> Option<Vec<usize>> {
    let mut line = 1;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut string = String::new();
    let mut last_key = String::new();
    let mut after_items_colon = false;
    let mut in_items = false;
    let mut found = false;
    let mut items = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                if depth == 1 {
                    last_key = std::mem::take(&mut string);
                }
            } else if depth == 1 {
                string.push(c);
            }
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        if after_items_colon {
            after_items_colon = false;
            if c == '[' && depth == 1 {
                in_items = true;
                found = true;
            }
        }
        match c {
            '"' => {
                in_string = true;
                string.clear();
            }
            ':' if depth == 1 && last_key == "items" => after_items_colon = true,
            '{' | '[' => {
                if in_items && depth == 2 && c == '{' {
                    items.push(line);
                }
                depth += 1;
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                if in_items && depth < 2 {
                    in_items = false;
                }
            }
            _ => {}
        }
        if c != '"' && c != ':' {
            last_key.clear();
        }
    }
    found.then_some(items)
}
