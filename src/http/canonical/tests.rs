use proptest::prelude::*;

use super::*;

fn canon(p: &str) -> Result<String, PathRefusal> {
    canonicalize(p).map(|c| c.as_str().to_string())
}

#[test]
fn spellings_of_one_path_become_one() {
    for p in [
        "/tools/execute-script",
        "//tools/execute-script",
        "/tools//execute-script",
        "/tools/execute-script/",
        "/tools/%65xecute-script",
        "/tools/execute%2Dscript",
        "/%74%6F%6F%6C%73/execute-script",
        "/tools/execute-script//",
    ] {
        assert_eq!(canon(p).as_deref(), Ok("/tools/execute-script"), "{p}");
    }
}

#[test]
fn root_and_reserved_escapes() {
    assert_eq!(canon("/").as_deref(), Ok("/"));
    assert_eq!(canon("/a.b/.c/..d").as_deref(), Ok("/a.b/.c/..d"));
    assert_eq!(canon("//").as_deref(), Ok("/"));
    assert_eq!(canon("/a%3bb").as_deref(), Ok("/a%3Bb"));
    assert_eq!(canon("/caf%C3%A9").as_deref(), Ok("/caf%C3%A9"));
    assert_eq!(canon("/100%25").as_deref(), Ok("/100%25"));
}

#[test]
fn ambiguous_spellings_are_refused() {
    assert_eq!(
        canon("/tools%2Fexecute-script"),
        Err(PathRefusal::EncodedSeparator)
    );
    assert_eq!(
        canon("/tools%2fexecute-script"),
        Err(PathRefusal::EncodedSeparator)
    );
    assert_eq!(
        canon("/tools%5Cexecute-script"),
        Err(PathRefusal::EncodedSeparator)
    );
    assert_eq!(canon("/tools\\execute-script"), Err(PathRefusal::Backslash));
    assert_eq!(canon("/tools/%00"), Err(PathRefusal::ControlCharacter));
    assert_eq!(canon("/tools/%0a"), Err(PathRefusal::ControlCharacter));
    assert_eq!(
        canon("/tools/%252e%252e/x"),
        Err(PathRefusal::DoubleEncoding)
    );
    assert_eq!(canon("/tools/%25%32%65"), Err(PathRefusal::DoubleEncoding));
    assert_eq!(canon("/a%zz"), Err(PathRefusal::BadEscape));
    assert_eq!(canon("/a%4"), Err(PathRefusal::BadEscape));
    assert_eq!(canon("/a%C3"), Err(PathRefusal::InvalidUtf8));
    assert_eq!(canon("/a%FF%FE"), Err(PathRefusal::InvalidUtf8));
    for dotted in [
        "/tools/execute-script.",
        "/tools/execute-script..",
        "/tools./execute-script",
        "/tools/.../execute-script",
        "/tools/./execute-script",
        "/tools/execute-script/.",
        "/x/../tools/execute-script",
        "/..",
        "/tools/execute-script%2E",
        "/tools/%2e/execute-script",
        "/tools/%2E%2E/tools/execute-script",
        "/webdav./",
    ] {
        assert_eq!(canon(dotted), Err(PathRefusal::DotSegment), "{dotted}");
    }
    assert_eq!(canon("*"), Err(PathRefusal::NotAPath));
    assert_eq!(canon(""), Err(PathRefusal::NotAPath));
    assert_eq!(
        canon(&format!("/{}", "a".repeat(MAX_PATH_BYTES))),
        Err(PathRefusal::TooLong)
    );
}

/// Percent-encode every byte of `s` that `mask` selects (upper or lower hex).
fn encode(s: &str, mask: &[bool], lower: &[bool]) -> String {
    let mut out = String::new();
    for (i, b) in s.bytes().enumerate() {
        if mask.get(i).copied().unwrap_or(false) && b != b'/' {
            if lower.get(i).copied().unwrap_or(false) {
                out.push_str(&format!("%{b:02x}"));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(char::from(b));
        }
    }
    out
}

proptest! {
    #[test]
    fn canonical_form_is_a_fixed_point(p in "/[a-zA-Z0-9._~%/-]{0,60}") {
        if let Ok(c) = canonicalize(&p) {
            let again = canonicalize(c.as_str());
            prop_assert_eq!(again.as_ref(), Ok(&c));
            prop_assert!(!c.as_str().contains("//"));
            prop_assert!(c.segments().all(|s| !s.ends_with('.')));
        }
    }

    #[test]
    fn encodings_and_empty_segments_do_not_change_the_path(
        segs in proptest::collection::vec("[a-z0-9-]{1,8}", 1..6),
        mask in proptest::collection::vec(any::<bool>(), 64),
        lower in proptest::collection::vec(any::<bool>(), 64),
        noise in proptest::collection::vec(0u8..4, 6),
        trailing in any::<bool>(),
    ) {
        let plain = format!("/{}", segs.join("/"));
        let mut spelled = String::new();
        for (i, s) in segs.iter().enumerate() {
            if noise[i] > 1 {
                spelled.push('/');
            }
            spelled.push('/');
            spelled.push_str(s);
        }
        if trailing {
            spelled.push('/');
        }
        let spelled = encode(&spelled, &mask, &lower);
        prop_assert_eq!(canon(&spelled), Ok(plain));
    }

    #[test]
    fn never_panics(p in "\\PC{0,80}") {
        let _ = canonicalize(&p);
    }
}

proptest! {
    /// Any segment that ends in a dot, however spelled, is refused: CivetWeb would strip it.
    #[test]
    fn dot_suffixes_are_refused_in_every_spelling(
        segs in proptest::collection::vec("[a-z0-9-]{1,8}", 1..5),
        at in 0usize..5,
        dots in 1usize..4,
        mask in proptest::collection::vec(any::<bool>(), 64),
        lower in proptest::collection::vec(any::<bool>(), 64),
    ) {
        let mut segs = segs;
        let at = at % segs.len();
        segs[at].push_str(&".".repeat(dots));
        let spelled = encode(&format!("/{}", segs.join("/")), &mask, &lower);
        prop_assert_eq!(canon(&spelled), Err(PathRefusal::DotSegment));
    }
}
