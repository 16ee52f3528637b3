//! The one spelling of a request path that policy checks and the PACS receives.
//!
//! What matters is what Orthanc executes, not what RFC 3986 says. Orthanc 1.10.1's HTTP
//! server (CivetWeb 1.15, `handle_request` -> `mg_url_decode` -> `remove_dot_segments`)
//! decodes every `%XX` of the path, turns `\` into `/`, removes `.`/`..` segments, then
//! strips every run of dots at the end of a segment and folds `//`; Orthanc then splits on
//! `/` and ignores a trailing slash. So `/tools/execute-script.`, `/tools./execute-script`
//! and `/tools/.../execute-script` all run Lua there.
//!
//! The grammar accepted here is the part of that language where both readings are the
//! same, and nothing else: unreserved escapes (RFC 3986 §2.3) are decoded, empty segments
//! and the trailing slash are folded (CivetWeb and Orthanc do the same), and these are
//! refused with 400 instead of guessed: a segment ending in `.` (which covers `.`, `..`
//! and dot suffixes), encoded `/` or `\`, raw `\`, control characters and NUL, double
//! encoding, invalid UTF-8, and over-long paths. Every canonical path is a fixed point of
//! CivetWeb's normalisation, so the path checked is the path Orthanc routes on; the result
//! is forwarded as is. `tests/http_oracle.rs` checks this against the real Orthanc.

use std::fmt;

/// Longer paths are refused; Orthanc's longest routes are far below this.
pub const MAX_PATH_BYTES: usize = 4096;

/// A request path in canonical form: starts with `/`, no empty segments, no segment ending
/// in `.`, no trailing slash (except the root), only unreserved characters decoded, other
/// escapes upper-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath(String);

/// Why a request target was refused (all become 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("request target is not a path (authority-form or `*`)")]
    NotAPath,
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("encoded `/` or `\\` in the path")]
    EncodedSeparator,
    #[error("backslash in the path")]
    Backslash,
    #[error("control character or NUL in the path")]
    ControlCharacter,
    #[error("double percent-encoding in the path")]
    DoubleEncoding,
    #[error("malformed percent-encoding in the path")]
    BadEscape,
    #[error("path is not valid UTF-8 once decoded")]
    InvalidUtf8,
    #[error("path segment ending in `.` (the PACS strips trailing dots and dot segments)")]
    DotSegment,
}

impl CanonicalPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Segments between slashes (none for the root).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').skip(1).filter(|s| !s.is_empty())
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Canonicalize the path of a request target (`uri.path()`; for absolute-form targets
/// hyper has already split off scheme and authority).
pub fn canonicalize(raw: &str) -> Result<CanonicalPath, PathRefusal> {
    if !raw.starts_with('/') {
        return Err(PathRefusal::NotAPath);
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathRefusal::TooLong);
    }
    let decoded = decode_unreserved(raw.as_bytes())?;
    let mut path = String::with_capacity(decoded.len());
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        // `.`, `..`, `...` and `name.`: CivetWeb would drop or rewrite them after us.
        if segment.ends_with('.') {
            return Err(PathRefusal::DotSegment);
        }
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() {
        path.push('/');
    }
    Ok(CanonicalPath(path))
}

/// Decode `%XX` escapes of unreserved characters; keep the others (upper-cased) after
/// checking that everything they encode is allowed and forms valid UTF-8.
fn decode_unreserved(raw: &[u8]) -> Result<String, PathRefusal> {
    let mut out = String::with_capacity(raw.len());
    // The bytes that escapes encode, to check UTF-8 of the fully decoded path.
    let mut fully_decoded: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hi = raw.get(i + 1).and_then(|c| hex_value(*c));
            let lo = raw.get(i + 2).and_then(|c| hex_value(*c));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathRefusal::BadEscape);
            };
            let v = hi << 4 | lo;
            check_decoded(v)?;
            fully_decoded.push(v);
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(hi)]));
                out.push(char::from(HEX[usize::from(lo)]));
            }
            i += 3;
            continue;
        }
        match b {
            b'\\' => return Err(PathRefusal::Backslash),
            0..=0x1f | 0x7f => return Err(PathRefusal::ControlCharacter),
            // hyper only admits visible ASCII in the target; anything else is not ours
            // to reinterpret.
            0x80..=0xff => return Err(PathRefusal::InvalidUtf8),
            _ => {}
        }
        fully_decoded.push(b);
        out.push(char::from(b));
        i += 1;
    }
    if std::str::from_utf8(&fully_decoded).is_err() {
        return Err(PathRefusal::InvalidUtf8);
    }
    // `%25` then two hex digits (written plainly or themselves encoded): a second decoding
    // pass would change the path.
    let b = out.as_bytes();
    if (0..b.len().saturating_sub(4)).any(|i| {
        &b[i..i + 3] == b"%25" && b[i + 3].is_ascii_hexdigit() && b[i + 4].is_ascii_hexdigit()
    }) {
        return Err(PathRefusal::DoubleEncoding);
    }
    Ok(out)
}

/// Refuse decoded bytes whose meaning depends on the decoder: separators and controls.
fn check_decoded(v: u8) -> Result<(), PathRefusal> {
    match v {
        b'/' | b'\\' => Err(PathRefusal::EncodedSeparator),
        0..=0x1f | 0x7f => Err(PathRefusal::ControlCharacter),
        _ => Ok(()),
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests;
