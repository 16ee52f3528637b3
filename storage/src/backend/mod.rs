//! Where ciphertext lives. Backends see opaque bytes and names of the form `xx/yy/uuid`
//! (Orthanc's own filesystem layout); they never see plaintext or keys.

use std::io::{Read, Write};
use std::ops::Range;

use crate::{Error, Result};

pub mod fs;
#[cfg(feature = "object-store")]
pub mod object;

/// A storage location for encrypted objects. Implementations are thread-safe: Orthanc calls
/// the plugin from many threads at once.
pub trait Backend: Send + Sync {
    /// Start writing `name` (`len` bytes expected). Nothing is visible under `name` until
    /// [`PendingObject::commit`]; dropping the writer discards it.
    fn create(&self, name: &str, len: u64) -> Result<Box<dyn PendingObject + '_>>;
    /// Read `name`, whole or a byte range. A range past the end yields fewer bytes.
    fn open(&self, name: &str, range: Option<Range<u64>>) -> Result<Box<dyn Read + Send + '_>>;
    /// Size of `name` in bytes.
    fn size(&self, name: &str) -> Result<u64>;
    /// Remove `name`; removing a missing object succeeds.
    fn remove(&self, name: &str) -> Result<()>;
    /// Names of all stored objects (CLI: verify, migrate, rekey).
    fn list(&self) -> Result<Vec<String>>;
    /// Prove the location is usable (write and delete a probe); run at plugin start.
    fn check(&self) -> Result<()>;
    fn describe(&self) -> String;
    /// Largest object [`Backend::put_whole`] should be given (0: always stream through
    /// [`Backend::create`]). Object stores take small objects in one PUT, sealed in memory
    /// in one pass; files are better streamed.
    fn whole_put_limit(&self) -> u64 {
        0
    }
    /// Store the complete (encrypted) `object` as `name`, replacing any previous one.
    fn put_whole(&self, name: &str, object: Vec<u8>) -> Result<()> {
        let mut pending = self.create(name, object.len() as u64)?;
        pending
            .write_all(&object)
            .map_err(|e| Error::io("write", name, e))?;
        pending.commit()
    }
}

/// An object being written.
pub trait PendingObject: Write + Send {
    /// Make the object visible atomically (rename, or completed upload).
    fn commit(self: Box<Self>) -> Result<()>;
}

/// `xx/yy/uuid` for an Orthanc attachment uuid (36 lowercase hex digits and dashes). The
/// check also keeps names free of path separators and dots.
pub fn orthanc_name(uuid: &str) -> Result<String> {
    if !is_uuid(uuid) {
        return Err(Error::BadName(uuid.to_string()));
    }
    Ok(format!("{}/{}/{}", &uuid[..2], &uuid[2..4], uuid))
}

pub(crate) fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Whether `name` is an `xx/yy/uuid` object name (listing filters out everything else,
/// e.g. Orthanc's SQLite index when it shares the directory, or our temp files).
pub(crate) fn is_object_name(name: &str) -> bool {
    let mut parts = name.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(uuid), None) => {
            is_uuid(uuid) && uuid.get(..2) == Some(a) && uuid.get(2..4) == Some(b)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_orthanc_and_refuse_traversal() {
        let u = "17dfc0b5-8b18-4a3c-9d2e-0123456789ab";
        assert_eq!(orthanc_name(u).unwrap(), format!("17/df/{u}"));
        assert!(is_object_name(&format!("17/df/{u}")));
        assert!(!is_object_name(&format!("17/de/{u}")));
        assert!(!is_object_name("index"));
        for bad in [
            "../../etc/passwd",
            "",
            "17DFC0B5-8B18-4A3C-9D2E-0123456789AB",
            "17dfc0b5/8b18-4a3c-9d2e-0123456789ab",
        ] {
            assert!(orthanc_name(bad).is_err(), "{bad}");
        }
    }
}
