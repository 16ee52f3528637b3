//! Generated spellings of Orthanc routes for the differential HTTP oracle
//! (tests/http_oracle.rs): each spelling is a route's path with one to three mutations of
//! its segments and separators, chosen by a seeded PRNG so that a run can be repeated and
//! a failing case shrunk to the mutations that matter.

pub use super::rng::Rng;

/// One change to a route's spelling. `at` selects a segment or byte (taken modulo what
/// exists), so any subset of a spelling's mutations still applies: that is what shrinking
/// relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Percent-encode one byte of a segment (`lower`: lower-case hex).
    Encode { at: usize, lower: bool },
    /// Encode one byte twice (`%25` + hex).
    DoubleEncode { at: usize },
    /// Append to a segment (dot suffixes, `;params`, controls, lookalikes...).
    Suffix { at: usize, text: &'static [u8] },
    /// Insert a whole segment before segment `at` (dot segments, empty ones...).
    Insert { at: usize, text: &'static [u8] },
    /// Replace the separator before segment `at`.
    Separator { at: usize, text: &'static [u8] },
    /// Upper-case one byte, or the whole segment.
    Case { at: usize, whole: bool },
    /// Append a query or fragment to the target.
    Tail(&'static [u8]),
    /// Send in absolute-form (`http://host:port/...`).
    Absolute,
    /// Send the method in lower case.
    LowerMethod,
}

const SUFFIXES: &[&[u8]] = &[
    b".",
    b"..",
    b"...",
    b"%2E",
    b"%2e",
    b".%2E",
    b"%2E%2E",
    b". ",
    b".%20",
    b";",
    b";x",
    b";jsessionid=1",
    b"%3B",
    b" ",
    b"%20",
    b"\t",
    b"%09",
    b"%00",
    b"\x00",
    b"%0A",
    b"%0D",
    b"\x01",
    b"\x7f",
    b"%7F",
    b"\x0b",
    b"\x0c",
    b"%C0%AE",
    b"%E0%80%AE",
    b"%EF%BC%8E",
    b"%E2%80%A4",
    b"\xc0\xae",
    b"\xff",
    b"%FF",
    b"%",
    b"%%",
    b"%g0",
    b"%2",
    b"~",
    b"%7E",
    b"/",
    b"//",
    b"\\",
    b"%5C",
    b"%5c",
    b"%2F",
    b"%2f",
    b"%C0%AF",
    b"%C1%9C",
    b"%EF%BC%8F",
    b"%252E",
    b"%25",
    b"+",
    b"%2B",
    b"*",
    b"?",
    b"#",
    b"%3F",
    b"%23",
    b"%3f",
    b".json",
    b"%u002e",
];

const SEGMENTS: &[&[u8]] = &[
    b".",
    b"..",
    b"...",
    b"....",
    b"%2E",
    b"%2e%2E",
    b".%2e",
    b"",
    b"x/..",
    b"%2E%2E%2E",
    b"%C0%AE%C0%AE",
    b";",
    b" ",
    b"%20",
    b"%00",
    b"\\",
    b"%5C",
    b"~",
    b"%7E",
];

const SEPARATORS: &[&[u8]] = &[
    b"//",
    b"///",
    b"\\",
    b"%5C",
    b"%5c",
    b"%2F",
    b"%2f",
    b"/./",
    b"/../",
    b"/.../",
    b"/%2E/",
    b"%C0%AF",
    b"%E0%80%AF",
    b"\\/",
    b"/\\",
    b";/",
    b"/;/",
    b"%252F",
];

const TAILS: &[&[u8]] = &[
    b"?",
    b"?x=1",
    b"#",
    b"#frag",
    b"/?",
    b"/#",
    b"?/../../tools/execute-script",
    b"#/../tools/execute-script",
    b"?_method=DELETE",
    b"?%5Fmethod=PUT",
    b"?x=1;_method=DELETE",
    b"?_method%00=DELETE",
    b"?_method[]=DELETE",
    b"?%255Fmethod=PUT",
    b"?expand",
    b"%3Fx",
    b"%23x",
    b"&x",
    b";?x",
];

/// Draw one to three mutations.
pub fn mutations(rng: &mut Rng) -> Vec<Mutation> {
    let count = 1 + rng.below(3);
    (0..count)
        .map(|_| {
            let at = rng.below(64);
            match rng.below(20) {
                0..=2 => Mutation::Encode {
                    at,
                    lower: rng.below(2) == 0,
                },
                3 => Mutation::DoubleEncode { at },
                4..=8 => Mutation::Suffix {
                    at,
                    text: rng.choose(SUFFIXES),
                },
                9..=11 => Mutation::Insert {
                    at,
                    text: rng.choose(SEGMENTS),
                },
                12..=13 => Mutation::Separator {
                    at,
                    text: rng.choose(SEPARATORS),
                },
                14..=15 => Mutation::Case {
                    at,
                    whole: rng.below(2) == 0,
                },
                16..=17 => Mutation::Tail(rng.choose(TAILS)),
                18 => Mutation::Absolute,
                _ => Mutation::LowerMethod,
            }
        })
        .collect()
}

/// A request as sent: method and target bytes; `absolute` asks the sender to prefix its
/// own scheme and authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spelling {
    pub method: String,
    pub target: Vec<u8>,
    pub absolute: bool,
}

/// Apply `muts` to `path` (a route's canonical path such as `/tools/find`).
pub fn spell(method: &str, path: &str, muts: &[Mutation]) -> Spelling {
    // Segments as byte strings, and the separator written before each.
    let mut segs: Vec<Vec<u8>> = path
        .split('/')
        .skip(1)
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let mut seps: Vec<Vec<u8>> = vec![b"/".to_vec(); segs.len()];
    let mut tail = Vec::new();
    let mut method = method.to_string();
    let mut absolute = false;
    for m in muts {
        let n = segs.len().max(1);
        match m {
            Mutation::Encode { at, lower } => {
                let seg = &mut segs[at % n];
                if !seg.is_empty() {
                    let i = at % seg.len();
                    let hex = if *lower {
                        format!("%{:02x}", seg[i])
                    } else {
                        format!("%{:02X}", seg[i])
                    };
                    seg.splice(i..=i, hex.into_bytes());
                }
            }
            Mutation::DoubleEncode { at } => {
                let seg = &mut segs[at % n];
                if !seg.is_empty() {
                    let i = at % seg.len();
                    let hex = format!("%25{:02X}", seg[i]);
                    seg.splice(i..=i, hex.into_bytes());
                }
            }
            Mutation::Suffix { at, text } => segs[at % n].extend_from_slice(text),
            Mutation::Insert { at, text } => {
                let i = at % (segs.len() + 1);
                segs.insert(i, text.to_vec());
                seps.insert(i, b"/".to_vec());
            }
            Mutation::Separator { at, text } => seps[at % n] = text.to_vec(),
            Mutation::Case { at, whole } => {
                let seg = &mut segs[at % n];
                if *whole {
                    seg.make_ascii_uppercase();
                } else if !seg.is_empty() {
                    let i = at % seg.len();
                    seg[i] = seg[i].to_ascii_uppercase();
                }
            }
            Mutation::Tail(text) => tail.extend_from_slice(text),
            Mutation::Absolute => absolute = true,
            Mutation::LowerMethod => method = method.to_ascii_lowercase(),
        }
    }
    let mut target = Vec::new();
    for (sep, seg) in seps.iter().zip(&segs) {
        target.extend_from_slice(sep);
        target.extend_from_slice(seg);
    }
    if target.is_empty() {
        target.push(b'/');
    }
    target.extend_from_slice(&tail);
    Spelling {
        method,
        target,
        absolute,
    }
}

/// Printable form of a target for failure messages (`\xNN` for other bytes).
pub fn show(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if (0x21..0x7f).contains(&b) {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// Smallest subset of `muts` (removing one at a time while `fails` holds) for a report.
pub fn shrink(muts: &[Mutation], mut fails: impl FnMut(&[Mutation]) -> bool) -> Vec<Mutation> {
    let mut current = muts.to_vec();
    let mut i = 0;
    while i < current.len() {
        let mut fewer = current.clone();
        fewer.remove(i);
        if fails(&fewer) {
            current = fewer;
        } else {
            i += 1;
        }
    }
    current
}
