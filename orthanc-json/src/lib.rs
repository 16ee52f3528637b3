//! Orthanc's configuration files are JSON with `//` and `/* */` comments. Shared by the
//! gateway (`pacsgate doctor`) and the storage crate (plugin and `pacsgate-storage`), so
//! both read a file the way Orthanc does; a crate of its own so the internet-facing gateway
//! binary need not link pacsgate-storage (object_store, reqwest, key providers).

/// Orthanc accepts `//` and `/* */` comments in its configuration files; strip them (outside
/// strings) so the storage tool and `pacsgate doctor` read the same files
/// Orthanc reads (Orthanc: `Toolbox::ReadJsonWithoutComments`).
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strip_comments;

    #[test]
    fn comments_go_strings_stay() {
        let text = "{ // c\n \"a\": \"x//y/*z*/\", /* b */ \"b\": \"q\\\"//\" }";
        assert_eq!(
            strip_comments(text),
            "{ \n \"a\": \"x//y/*z*/\",   \"b\": \"q\\\"//\" }"
        );
    }

    #[test]
    fn unterminated_comment_ends_the_text() {
        assert_eq!(strip_comments("{} /* open"), "{}  ");
        assert_eq!(strip_comments("{} // open"), "{} ");
    }
}
