//! On-disk formats. Objects are recognised by their first bytes: [`pge::MAGIC`] and the
//! version byte for ours (v3 written, v2 read), `"A1"` for the official Orthanc plugin's.
//! Anything else is not an encrypted object.

pub mod a1;
pub mod pge;

/// What the first bytes of an object say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// pacsgate format v3: bound to its uuid and content type.
    V3,
    /// pacsgate format v2 (read only; `migrate` and `rekey` upgrade it to v3).
    V2,
    A1,
    /// Neither: plaintext (for example Orthanc's own storage) or garbage.
    Other,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::V3 => "v3",
            Kind::V2 => "v2",
            Kind::A1 => "A1",
            Kind::Other => "not encrypted",
        }
    }
}

pub fn detect(prefix: &[u8]) -> Kind {
    if prefix.starts_with(&pge::MAGIC) {
        // A short or unknown version is reported by the v3 parser.
        match prefix.get(4) {
            Some(&pge::VERSION_2) => Kind::V2,
            _ => Kind::V3,
        }
    } else if prefix.starts_with(&a1::MAGIC) {
        Kind::A1
    } else {
        Kind::Other
    }
}
