//! Just enough of Rust's lexical structure for the import graph: code without comments,
//! string/char literals and `#[cfg(test)] mod` blocks; a token stream of identifiers, `::`
//! and braces; and `use` trees expanded into paths.

/// Code without comments, string/char literals and `#[cfg(test)] mod name { .. }` blocks.
pub fn strip(text: &str) -> String {
    without_test_modules(&without_literals(text))
}

fn without_literals(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |n| n + 2);
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|&c| c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            i += rest[body..]
                .find(&close)
                .map_or(rest.len(), |n| body + n + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if let Some(n) = char_literal(rest) {
            i += n;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn without_test_modules(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        let trimmed = after.trim_start();
        if trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ") {
            match after.find(['{', ';']) {
                Some(k) if after.as_bytes()[k] == b'{' => rest = &after[matching_brace(after, k)..],
                Some(k) => rest = &after[k + 1..],
                None => rest = "",
            }
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The length of a char literal at the start of `s` ('x', '\n', '\u{..}', '\''), or None
/// for a lifetime.
fn char_literal(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '\'' {
        return None;
    }
    let (_, c) = chars.next()?;
    if c == '\\' {
        return Some(3 + s.get(3..)?.find('\'')? + 1);
    }
    let (j, close) = chars.next()?;
    (close == '\'').then_some(j + 1)
}

/// The index just past the `}` matching the `{` at `open` (string-free code assumed).
fn matching_brace(text: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (k, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return open + k + 1;
                }
            }
            _ => {}
        }
    }
    text.len()
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Path,
    Open,
    Close,
    Comma,
    Glob,
    Semi,
    Other,
}

pub fn tokens(code: &str) -> Vec<Tok> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(code[start..i].to_string()));
            continue;
        }
        let tok = match c {
            b':' if b.get(i + 1) == Some(&b':') => {
                i += 1;
                Tok::Path
            }
            b'{' => Tok::Open,
            b'}' => Tok::Close,
            b',' => Tok::Comma,
            b'*' => Tok::Glob,
            b';' => Tok::Semi,
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => Tok::Other,
        };
        out.push(tok);
        i += 1;
    }
    out
}

/// Expands a `use` tree (`a::{self, b, c::{d as e, *}}`) into (path, bound name) pairs.
pub fn use_tree(toks: &[Tok], prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let mut path = prefix.to_vec();
    for (i, tok) in toks.iter().enumerate() {
        match tok {
            Tok::Ident(s) if s == "as" => {
                let alias = match toks.get(i + 1) {
                    Some(Tok::Ident(a)) if a != "_" => Some(a.clone()),
                    _ => None,
                };
                out.push((path, alias));
                return;
            }
            // `{self, ..}` names the prefix itself.
            Tok::Ident(s) if s == "self" && i == 0 && !prefix.is_empty() => {}
            Tok::Ident(s) => path.push(s.clone()),
            Tok::Glob => {
                out.push((path, None));
                return;
            }
            Tok::Open => {
                let close = matching(toks, i);
                for part in split_commas(&toks[i + 1..close]) {
                    if !part.is_empty() {
                        use_tree(part, &path, out);
                    }
                }
                return;
            }
            _ => {}
        }
    }
    if !path.is_empty() {
        let name = path.last().cloned();
        out.push((path, name));
    }
}

fn matching(toks: &[Tok], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, t) in toks[open..].iter().enumerate() {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return open + k;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

fn split_commas(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (k, t) in toks.iter().enumerate() {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => depth = depth.saturating_sub(1),
            Tok::Comma if depth == 0 => {
                parts.push(&toks[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    parts
}
