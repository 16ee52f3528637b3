//! Path patterns of rules, route limits and the deny set, matched against canonical paths.

/// A path pattern: `*` matches one segment, `**` any number (also none), `name*` a
/// segment starting with `name`, anything else a segment literally (ASCII
/// case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `log-level-*`: a segment with this (lower-case) prefix.
    Prefix(String),
    One,
    Any,
}

impl Glob {
    /// Parse a pattern such as `/instances/*/file` or `/app/**`. Segments may not mix `*`
    /// with other characters, and literal segments must be in canonical form.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("{text:?} does not start with /"));
        }
        let mut parts = Vec::new();
        for segment in text.split('/').skip(1).filter(|s| !s.is_empty()) {
            parts.push(match segment {
                "*" => Part::One,
                "**" => Part::Any,
                s if s.ends_with('*') && !s[..s.len() - 1].contains(['*', '%']) => {
                    Part::Prefix(s[..s.len() - 1].to_ascii_lowercase())
                }
                s if s.contains('*') => {
                    return Err(format!(
                        "{text:?}: `*` must be a whole segment (`*` or `**`) or end one (`name*`)"
                    ))
                }
                "." | ".." => return Err(format!("{text:?} has a dot segment")),
                s if s.contains('%') => {
                    return Err(format!("{text:?}: write segments decoded, without %"))
                }
                s => Part::Literal(s.to_ascii_lowercase()),
            });
        }
        // One `**` keeps matching linear in the number of segments.
        if parts.iter().filter(|p| **p == Part::Any).count() > 1 {
            return Err(format!("{text:?}: use `**` at most once"));
        }
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Match against a path already split into segments (`CanonicalPath::segments`).
    pub fn matches(&self, segments: &[&str]) -> bool {
        match_parts(&self.parts, segments)
    }
}

fn match_parts(parts: &[Part], segments: &[&str]) -> bool {
    match parts.split_first() {
        None => segments.is_empty(),
        Some((Part::Any, rest)) => {
            (0..=segments.len()).any(|skip| match_parts(rest, &segments[skip..]))
        }
        Some((part, rest)) => match segments.split_first() {
            None => false,
            Some((seg, more)) => {
                let ok = match part {
                    Part::One => true,
                    Part::Literal(lit) => lit.eq_ignore_ascii_case(seg),
                    Part::Prefix(p) => seg
                        .get(..p.len())
                        .is_some_and(|head| head.eq_ignore_ascii_case(p)),
                    // Matched by the arm above; never reached.
                    Part::Any => false,
                };
                ok && match_parts(rest, more)
            }
        },
    }
}
