//! AE titles: one grammar and one normalisation for every title the gateway judges: the
//! called and calling AE of an A-ASSOCIATE-RQ (PS3.8 §9.3.2: 16 bytes, space-padded), the
//! Move Destination (0000,0600) of a C-MOVE (PS3.7 E.1, VR AE), and the titles of the
//! modality registry they are compared with.
//!
//! PS3.5 §6.2 Table 6.2-1 (AE): at most 16 characters of the default repertoire without
//! backslash (5CH) or control characters; leading and trailing spaces are not significant;
//! a value of spaces only shall not be used.
//!
//! Orthanc reads titles with dcmtk, which is stricter about fewer things: the UL parser
//! copies the field with `strncpy` and trims trailing spaces only (dulparse.cc), DIMSE
//! reads a value as a C string (dimcmd.cc `getString`). So a NUL ends the title for the
//! PACS (`CT1\0SPOOF` is `CT1` there) and a leading space stays significant. Where our
//! reading and the PACS's could differ the title is refused, never normalised: a NUL, any
//! control character, a backslash, a byte above 7EH, or a leading space is an error.
//! Trailing spaces are padding and removed.

use std::fmt::Write;

/// Longest AE title (PS3.5 §6.2) and the size of the A-ASSOCIATE-RQ fields (PS3.8 §9.3.2).
pub const AE_MAX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AeError {
    #[error("AE title is empty or only spaces")]
    Empty,
    #[error("AE title is longer than 16 characters")]
    TooLong,
    #[error("AE title starts with a space")]
    LeadingSpace,
    #[error("AE title has byte {byte:#04x} at offset {at} (control, backslash or not ASCII)")]
    BadByte { byte: u8, at: usize },
}

/// The title `bytes` stand for, trailing spaces removed; an error unless every reader
/// (dcmtk's UL and DIMSE parsers, Orthanc, this gateway) reads the same characters.
pub fn title(bytes: &[u8]) -> Result<&str, AeError> {
    if bytes.len() > AE_MAX {
        return Err(AeError::TooLong);
    }
    let end = bytes.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    let value = &bytes[..end];
    match value.first() {
        None => return Err(AeError::Empty),
        Some(b' ') => return Err(AeError::LeadingSpace),
        Some(_) => {}
    }
    if let Some(at) = value.iter().position(|&b| !in_repertoire(b)) {
        return Err(AeError::BadByte {
            byte: value[at],
            at,
        });
    }
    // Every byte is printable ASCII (checked above), hence valid UTF-8.
    std::str::from_utf8(value).map_err(|_| AeError::BadByte { byte: 0, at: 0 })
}

/// How a title appears in logs and audit records: the title when it is valid, else the
/// bytes with trailing spaces removed and every byte outside the repertoire written `\xNN`.
/// An invalid title never shows as a valid one: an escape adds a backslash, which the
/// repertoire excludes, and the other errors (empty, leading space) survive unchanged.
pub fn shown(bytes: &[u8]) -> String {
    if let Ok(t) = title(bytes) {
        return t.to_string();
    }
    let end = bytes.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    let mut out = String::with_capacity(end);
    for &b in &bytes[..end] {
        if in_repertoire(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Two titles name the same AE: both valid, equal exactly when `strict`, else ignoring
/// ASCII case (Orthanc's `StrictAetComparison`, default false). An invalid title equals
/// nothing, so a caller that forgot to validate still cannot match a registry entry.
pub fn same(a: &str, b: &str, strict: bool) -> bool {
    match (title(a.as_bytes()), title(b.as_bytes())) {
        (Ok(a), Ok(b)) if strict => a == b,
        (Ok(a), Ok(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// Default repertoire without control characters and backslash (PS3.5 §6.2, §6.1.2.1).
fn in_repertoire(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'\\'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_goes_and_everything_ambiguous_is_refused() {
        assert_eq!(title(b"CT1             "), Ok("CT1"));
        assert_eq!(title(b"MY AE"), Ok("MY AE"));
        assert_eq!(title(b"ABCDEFGHIJKLMNOP"), Ok("ABCDEFGHIJKLMNOP"));
        assert_eq!(title(b"                "), Err(AeError::Empty));
        assert_eq!(title(b""), Err(AeError::Empty));
        assert_eq!(title(b" CT1"), Err(AeError::LeadingSpace));
        assert_eq!(title(b"ABCDEFGHIJKLMNOPQ"), Err(AeError::TooLong));
        assert_eq!(
            title(b"CT1\0SPOOF       "),
            Err(AeError::BadByte { byte: 0, at: 3 })
        );
        for bad in [
            &b"\0WS1"[..],
            b"CT1\0",
            b"A\\B",
            b"A\tB",
            b"A\x7fB",
            b"\xc3\xa9",
            b"A\nB",
        ] {
            assert!(title(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_invalid_title_never_shows_as_a_valid_one() {
        // Every 2-byte pattern, in each position of a 16-byte field, plus padding.
        for a in 0..=255u8 {
            for b in [0u8, b' ', b'\\', b'A', 0x7f, 0xff, a] {
                for at in [0, 3, 14] {
                    let mut field = *b"CT1             ";
                    field[at] = a;
                    field[at + 1] = b;
                    let shown = shown(&field);
                    assert_eq!(title(&field).is_ok(), title(shown.as_bytes()).is_ok());
                    assert!(shown.bytes().all(|c| (0x20..0x7f).contains(&c)), "{shown}");
                }
            }
        }
        assert_eq!(shown(b"CT1\0SPOOF       "), "CT1\\x00SPOOF");
    }

    #[test]
    fn comparison_needs_two_valid_titles() {
        assert!(same("ws1", "WS1", false));
        assert!(!same("ws1", "WS1", true));
        assert!(!same("WS1\0", "WS1", false));
        assert!(!same(" WS1", " WS1", false));
        assert!(!same("", "", true));
    }
}
