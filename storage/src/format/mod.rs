//! On-disk formats. Objects are recognised by their first bytes: [`v2::MAGIC`] for ours,
//! `"A1"` for the official Orthanc plugin's. Anything else is not an encrypted object.

pub mod a1;
pub mod v2;

/// What the first bytes of an object say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    V2,
    A1,
    /// Neither: plaintext (for example Orthanc's own storage) or garbage.
    Other,
}

pub fn detect(prefix: &[u8]) -> Kind {
    if prefix.starts_with(&v2::MAGIC) {
        Kind::V2
    } else if prefix.starts_with(&a1::MAGIC) {
        Kind::A1
    } else {
        Kind::Other
    }
}
