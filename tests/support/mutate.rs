//! Seeded generators for the DICOM oracle (tests/dicom_oracle.rs): real DIMSE request
//! command sets (as dcmtk and pynetdicom encode them: implicit VR LE, group 0000, Command
//! Group Length first, even lengths, UIDs NUL-padded, AEs space-padded; PS3.7 Annex E)
//! and mutations of them an attacker would try; 16-byte AE title fields with NUL, control
//! characters, backslash, spaces and high bytes.

use std::fmt;

pub use super::rng::Rng;

/// Bytes that make readers disagree: NUL, controls, space, backslash, DEL, high bytes.
pub const HOSTILE: &[u8] = &[
    0x00, 0x01, 0x09, 0x0a, 0x0d, 0x1f, 0x20, 0x5c, 0x7f, 0x80, 0xff,
];

const VERIFICATION: &[u8] = b"1.2.840.10008.1.1\0";
const FIND_PATIENT: &[u8] = b"1.2.840.10008.5.1.4.1.2.1.1\0";
const MOVE_PATIENT: &[u8] = b"1.2.840.10008.5.1.4.1.2.1.2\0";
const GET_PATIENT: &[u8] = b"1.2.840.10008.5.1.4.1.2.1.3\0";
const WORKLIST: &[u8] = b"1.2.840.10008.5.1.4.31";
const CT_STORAGE: &[u8] = b"1.2.840.10008.5.1.4.1.1.2\0";
const STORAGE_COMMITMENT: &[u8] = b"1.2.840.10008.1.20.1";

/// dcmtk prints known UIDs by name (dcmFindNameOfUID); these are the ones the generator
/// can produce.
pub const UID_NAMES: &[(&str, &str)] = &[
    ("1.2.840.10008.1.1", "VerificationSOPClass"),
    ("1.2.840.10008.1.2", "LittleEndianImplicit"),
    ("1.2.840.10008.1.2.1", "LittleEndianExplicit"),
    ("1.2.840.10008.1.20.1", "StorageCommitmentPushModelSOPClass"),
    (
        "1.2.840.10008.5.1.4.1.2.1.1",
        "FINDPatientRootQueryRetrieveInformationModel",
    ),
    (
        "1.2.840.10008.5.1.4.1.2.1.2",
        "MOVEPatientRootQueryRetrieveInformationModel",
    ),
    (
        "1.2.840.10008.5.1.4.1.2.1.3",
        "GETPatientRootQueryRetrieveInformationModel",
    ),
    (
        "1.2.840.10008.5.1.4.1.2.2.1",
        "FINDStudyRootQueryRetrieveInformationModel",
    ),
    (
        "1.2.840.10008.5.1.4.31",
        "FINDModalityWorklistInformationModel",
    ),
    ("1.2.840.10008.5.1.4.1.1.2", "CTImageStorage"),
    ("1.2.840.10008.5.1.4.1.1.4", "MRImageStorage"),
];

#[derive(Clone, Debug)]
pub struct Element {
    pub group: u16,
    pub element: u16,
    /// Written instead of the value's length when set.
    pub length: Option<u32>,
    pub value: Vec<u8>,
}

pub fn el(element: u16, value: &[u8]) -> Element {
    Element {
        group: 0,
        element,
        length: None,
        value: value.to_vec(),
    }
}

pub fn us(element: u16, v: u16) -> Element {
    el(element, &v.to_le_bytes())
}

/// The unmutated requests: C-ECHO, C-FIND (patient root, worklist), C-MOVE, C-GET,
/// C-STORE, N-ACTION (storage commitment).
pub fn bases() -> Vec<(&'static str, Vec<Element>)> {
    let rq = |sop: &[u8], field: u16, rest: Vec<Element>| {
        let mut v = vec![el(0x0002, sop), us(0x0100, field), us(0x0110, 7)];
        v.extend(rest);
        v
    };
    let q = |extra: Vec<Element>| {
        let mut v = extra;
        v.extend([us(0x0700, 0), us(0x0800, 0x0001)]);
        v
    };
    vec![
        ("C-ECHO", rq(VERIFICATION, 0x0030, vec![us(0x0800, 0x0101)])),
        ("C-FIND", rq(FIND_PATIENT, 0x0020, q(vec![]))),
        ("C-FIND worklist", rq(WORKLIST, 0x0020, q(vec![]))),
        (
            "C-MOVE",
            rq(MOVE_PATIENT, 0x0021, q(vec![el(0x0600, b"WS1 ")])),
        ),
        ("C-GET", rq(GET_PATIENT, 0x0010, q(vec![]))),
        (
            "C-STORE",
            rq(
                CT_STORAGE,
                0x0001,
                vec![
                    us(0x0700, 0),
                    us(0x0800, 0x0000),
                    el(0x1000, b"1.2.826.0.1.3680043.2.1125.1.1"),
                ],
            ),
        ),
        (
            "N-ACTION",
            vec![
                el(0x0003, STORAGE_COMMITMENT),
                us(0x0100, 0x0130),
                us(0x0110, 7),
                us(0x0800, 0x0000),
                el(0x1001, b"1.2.840.10008.1.20.1.1"),
                us(0x1008, 1),
            ],
        ),
    ]
}

/// One change to a command set; `Display` says what it did, for minimal failing cases.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Insert a copy of element `i` with another value at `at`.
    Duplicate {
        i: usize,
        at: usize,
        value: Vec<u8>,
    },
    Swap(usize, usize),
    Remove(usize),
    Length(usize, u32),
    /// Overwrite or insert byte `b` at `pos` of element `i`'s value.
    Byte {
        i: usize,
        pos: usize,
        b: u8,
        insert: bool,
    },
    SetValue(usize, Vec<u8>),
    Foreign {
        at: usize,
        group: u16,
        element: u16,
        value: Vec<u8>,
    },
    GroupLength(GroupLength),
    Trailing(Vec<u8>),
    Truncate(usize),
    /// Another Command Field value, well-formed (the element dcmtk dispatches on).
    Field(u16),
}

#[derive(Clone, Copy, Debug)]
pub enum GroupLength {
    Omit,
    Off(i64),
    Twice,
    Last,
    Short,
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Alternative values an attacker would put in a repeated element.
fn alternative(rng: &mut Rng, element: u16) -> Vec<u8> {
    match element {
        0x0100 => rng
            .pick(&[
                0x0030u16, 0x0020, 0x0021, 0x0010, 0x0001, 0x0130, 0x8030, 0x0fff,
            ])
            .to_le_bytes()
            .to_vec(),
        0x0002 | 0x0003 => rng
            .pick(&[
                VERIFICATION,
                FIND_PATIENT,
                WORKLIST,
                MOVE_PATIENT,
                STORAGE_COMMITMENT,
            ])
            .to_vec(),
        0x0600 => rng
            .pick(&[&b"EVIL"[..], b"WS1 ", b"ws1 ", b"\0WS1"])
            .to_vec(),
        0x0800 => rng.pick(&[0x0101u16, 0x0001]).to_le_bytes().to_vec(),
        _ => (rng.next() as u16).to_le_bytes().to_vec(),
    }
}

pub fn random_mutation(rng: &mut Rng, len: usize) -> Mutation {
    let i = rng.below(len);
    match rng.below(14) {
        12 | 13 => Mutation::Field(*rng.pick(&[
            0x0001, 0x0010, 0x0020, 0x0021, 0x0030, 0x0130, 0x0fff, 0x8030, 0x8020, 0x0100,
        ])),
        0 | 1 => Mutation::Duplicate {
            i,
            at: rng.below(len + 1),
            value: Vec::new(),
        },
        2 => Mutation::Swap(i, rng.below(len)),
        3 => Mutation::Remove(i),
        4 => Mutation::Length(
            i,
            *rng.pick(&[0, 1, 3, 5, 0xff, 0xfffe, 0xffff_fffe, 0xffff_ffff]),
        ),
        5 | 6 => Mutation::Byte {
            i,
            pos: rng.below(40),
            b: *rng.pick(HOSTILE),
            insert: rng.below(2) == 0,
        },
        7 => Mutation::SetValue(i, {
            let mut v = alternative(rng, 0x0100);
            v.extend_from_slice(&alternative(rng, 0x0100));
            v.truncate(*rng.pick(&[0usize, 1, 2, 4]));
            v
        }),
        8 => Mutation::Foreign {
            at: rng.below(len + 1),
            group: *rng.pick(&[0x0001, 0x0002, 0x0008, 0xfffe, 0x8000]),
            element: *rng.pick(&[0x0000, 0x0100, 0x0010, 0xe000, 0x0600]),
            value: alternative(rng, 0x0100),
        },
        9 => Mutation::GroupLength(*rng.pick(&[
            GroupLength::Omit,
            GroupLength::Off(2),
            GroupLength::Off(-2),
            GroupLength::Off(-8),
            GroupLength::Off(1 << 20),
            GroupLength::Twice,
            GroupLength::Last,
            GroupLength::Short,
        ])),
        10 => Mutation::Trailing((0..1 + rng.below(10)).map(|_| rng.next() as u8).collect()),
        _ => Mutation::Truncate(rng.below(120)),
    }
}

/// Fill in the values `random_mutation` leaves to the element it lands on.
pub fn settle(rng: &mut Rng, m: Mutation, elements: &[Element]) -> Mutation {
    match m {
        Mutation::Duplicate { i, at, .. } => Mutation::Duplicate {
            i,
            at,
            value: alternative(rng, elements[i].element),
        },
        other => other,
    }
}

/// The command set `elements` with `mutations` applied, as bytes on the wire.
pub fn build(base: &[Element], mutations: &[Mutation]) -> Vec<u8> {
    let mut els = base.to_vec();
    let mut gl = None;
    let mut trailing = Vec::new();
    let mut truncate = None;
    for m in mutations {
        let n = els.len();
        match m.clone() {
            Mutation::Duplicate { i, at, value } if i < n => {
                let mut copy = els[i].clone();
                copy.value = value;
                els.insert(at.min(n), copy);
            }
            Mutation::Swap(i, j) if i < n && j < n => els.swap(i, j),
            Mutation::Remove(i) if i < n => {
                els.remove(i);
            }
            Mutation::Length(i, l) if i < n => els[i].length = Some(l),
            Mutation::Byte { i, pos, b, insert } if i < n => {
                let v = &mut els[i].value;
                let pos = pos.min(v.len());
                if insert || pos == v.len() {
                    v.insert(pos, b);
                } else {
                    v[pos] = b;
                }
            }
            Mutation::SetValue(i, v) if i < n => els[i].value = v,
            Mutation::Foreign {
                at,
                group,
                element,
                value,
            } => els.insert(
                at.min(n),
                Element {
                    group,
                    element,
                    length: None,
                    value,
                },
            ),
            Mutation::GroupLength(g) => gl = Some(g),
            Mutation::Trailing(t) => trailing = t,
            Mutation::Truncate(t) => truncate = Some(t),
            Mutation::Field(f) => {
                for e in els
                    .iter_mut()
                    .filter(|e| e.group == 0 && e.element == 0x0100)
                {
                    e.value = f.to_le_bytes().to_vec();
                }
            }
            _ => {}
        }
    }
    let mut body = Vec::new();
    for e in &els {
        body.extend_from_slice(&e.group.to_le_bytes());
        body.extend_from_slice(&e.element.to_le_bytes());
        let len = e.length.unwrap_or(e.value.len() as u32);
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&e.value);
    }
    let said = body.len() as i64;
    let gl_el = |v: i64| {
        let mut out = vec![0, 0, 0, 0, 4, 0, 0, 0];
        out.extend_from_slice(&(v as u32).to_le_bytes());
        out
    };
    let mut out = match gl {
        None => [gl_el(said), body].concat(),
        Some(GroupLength::Omit) => body,
        Some(GroupLength::Off(d)) => [gl_el(said + d), body].concat(),
        Some(GroupLength::Twice) => [gl_el(said + 12), gl_el(said), body].concat(),
        Some(GroupLength::Last) => [body, gl_el(0)].concat(),
        Some(GroupLength::Short) => [vec![0, 0, 0, 0, 2, 0, 0, 0, 0, 0], body].concat(),
    };
    out.extend_from_slice(&trailing);
    if let Some(t) = truncate {
        out.truncate(out.len().saturating_sub(t));
    }
    out
}

/// AE title fields: `valid` with one hostile byte at each position, then random fields
/// over an alphabet of letters, digits, spaces and hostile bytes.
pub fn ae_fields(rng: &mut Rng, valid: &[u8], random: usize) -> Vec<[u8; 16]> {
    let mut base = [b' '; 16];
    base[..valid.len()].copy_from_slice(valid);
    let mut out = vec![base];
    for &b in HOSTILE {
        for pos in 0..16 {
            let mut f = base;
            f[pos] = b;
            out.push(f);
        }
    }
    let alphabet: Vec<u8> = [b'A', b'z', b'1', b'_', b' ', b' ', b' ']
        .iter()
        .chain(HOSTILE)
        .copied()
        .collect();
    for _ in 0..random {
        let mut f = base;
        let n = 1 + rng.below(4);
        for _ in 0..n {
            f[rng.below(16)] = *rng.pick(&alphabet);
        }
        out.push(f);
    }
    out
}
