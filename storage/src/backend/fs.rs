//! Local filesystem backend, the embedded default: Orthanc's own `root/xx/yy/uuid` layout,
//! so an existing storage directory can be migrated in place.
//!
//! Writes are atomic: a temp file in the target directory, fsync, rename over the name,
//! fsync of the directory. A crash (kill -9, power loss) leaves either the old state or the
//! complete new object, plus at worst a `.tmp-*` file that listing ignores.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{is_object_name, Backend, PendingObject};
use crate::{Error, Result};

const WRITE_BUFFER: usize = 256 * 1024;

pub struct FsBackend {
    root: PathBuf,
}

struct PendingFile {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    dst: PathBuf,
    name: String,
}

// === impl FsBackend ===

impl FsBackend {
    pub fn new(root: impl Into<PathBuf>) -> FsBackend {
        FsBackend { root: root.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `mkdir -p` for the object's directory; fsync each parent of a directory we created
    /// so the new entry survives a crash.
    fn ensure_dir(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.ensure_dir(parent)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => dir.parent().map_or(Ok(()), sync_dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn random_suffix() -> Result<String> {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Crypto)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Backend for FsBackend {
    fn create(&self, name: &str, _len: u64) -> Result<Box<dyn PendingObject + '_>> {
        let dst = self.path(name);
        let dir = dst
            .parent()
            .ok_or_else(|| Error::BadName(name.to_string()))?;
        self.ensure_dir(dir)
            .map_err(|e| Error::io("create directory for", name, e))?;
        let file_name = dst
            .file_name()
            .ok_or_else(|| Error::BadName(name.to_string()))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            file_name.to_string_lossy(),
            random_suffix()?
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("create", name, e))?;
        Ok(Box::new(PendingFile {
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            tmp,
            dst,
            name: name.to_string(),
        }))
    }

    fn open(&self, name: &str, range: Option<Range<u64>>) -> Result<Box<dyn Read + Send + '_>> {
        let mut file = File::open(self.path(name)).map_err(|e| Error::io("open", name, e))?;
        match range {
            None => Ok(Box::new(file)),
            Some(r) => {
                file.seek(SeekFrom::Start(r.start))
                    .map_err(|e| Error::io("seek", name, e))?;
                Ok(Box::new(file.take(r.end.saturating_sub(r.start))))
            }
        }
    }

    fn size(&self, name: &str) -> Result<u64> {
        fs::metadata(self.path(name))
            .map(|m| m.len())
            .map_err(|e| Error::io("stat", name, e))
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("remove", name, e)),
        }
        // Like Orthanc's own storage: drop the yy and xx directories once empty.
        let mut dir = path.parent();
        for _ in 0..2 {
            match dir {
                Some(d) if fs::remove_dir(d).is_ok() => dir = d.parent(),
                _ => break,
            }
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let read =
            |p: &Path| fs::read_dir(p).map_err(|e| Error::io("list", &p.display().to_string(), e));
        for a in read(&self.root)? {
            let a = a.map_err(|e| Error::io("list", "root", e))?;
            if a.file_name().len() != 2 || !a.path().is_dir() {
                continue;
            }
            for b in read(&a.path())? {
                let b = b.map_err(|e| Error::io("list", "dir", e))?;
                if !b.path().is_dir() {
                    continue;
                }
                for f in read(&b.path())? {
                    let f = f.map_err(|e| Error::io("list", "dir", e))?;
                    let name = format!(
                        "{}/{}/{}",
                        a.file_name().to_string_lossy(),
                        b.file_name().to_string_lossy(),
                        f.file_name().to_string_lossy()
                    );
                    if is_object_name(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn check(&self) -> Result<()> {
        let name = format!(".pacsgate-probe-{}", random_suffix()?);
        let root = self.root.display().to_string();
        if !self.root.is_dir() {
            fs::create_dir_all(&self.root).map_err(|e| Error::io("create", &root, e))?;
        }
        let probe = self.root.join(name);
        fs::write(&probe, b"probe").map_err(|e| Error::io("write a probe into", &root, e))?;
        fs::remove_file(&probe).map_err(|e| Error::io("remove a probe from", &root, e))
    }

    fn describe(&self) -> String {
        format!("filesystem {}", self.root.display())
    }
}

// === impl PendingFile ===

impl Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("object already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl PendingObject for PendingFile {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let name = self.name.clone();
        let writer = self.file.take().ok_or(Error::Crypto)?;
        let file = writer
            .into_inner()
            .map_err(|e| Error::io("write", &name, e.into_error()))?;
        keep_owner_and_mode(&file, &self.dst)
            .map_err(|e| Error::io("keep the owner of", &name, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", &name, e))?;
        drop(file);
        fs::rename(&self.tmp, &self.dst).map_err(|e| Error::io("rename", &name, e))?;
        let dir = self.dst.parent().ok_or(Error::Crypto)?;
        sync_dir(dir).map_err(|e| Error::io("fsync directory of", &name, e))
    }
}

/// Replacing an existing object (`storage migrate`/`rekey`, often run as root on Orthanc's
/// directory) must not change who can read it: the new file gets the old one's owner,
/// group and permission bits before the rename. The plugin only creates new names, so it
/// never gets here. If the ownership cannot be given back (not root, another owner), the
/// replacement is refused rather than leaving a file the PACS cannot read.
fn keep_owner_and_mode(file: &File, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let old = match fs::symlink_metadata(dst) {
        Ok(m) if m.file_type().is_file() => m,
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let new = file.metadata()?;
    if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
        std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid()))?;
    }
    // Permission bits only: a set-id bit on a data file is nobody's intent.
    file.set_permissions(fs::Permissions::from_mode(old.mode() & 0o777))
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        // Not committed, or the commit failed before the rename: leave nothing behind.
        // After a successful rename the temp name no longer exists.
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "17dfc0b5-8b18-4a3c-9d2e-0123456789ab";

    #[test]
    fn uncommitted_writes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::new(dir.path());
        let name = super::super::orthanc_name(U).unwrap();
        let mut w = b.create(&name, 3).unwrap();
        w.write_all(b"abc").unwrap();
        drop(w);
        assert!(b.list().unwrap().is_empty());
        assert!(fs::read_dir(dir.path().join("17/df"))
            .unwrap()
            .next()
            .is_none());

        let mut w = b.create(&name, 3).unwrap();
        w.write_all(b"abc").unwrap();
        w.commit().unwrap();
        assert_eq!(b.list().unwrap(), vec![name.clone()]);
        let mut s = String::new();
        b.open(&name, Some(1..10))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "bc");
        b.remove(&name).unwrap();
        b.remove(&name).unwrap();
        assert!(!dir.path().join("17").exists());
        assert!(matches!(b.open(&name, None), Err(Error::NotFound(_))));
    }

    #[test]
    fn replacing_keeps_the_permission_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::new(dir.path());
        let name = super::super::orthanc_name(U).unwrap();
        let mut w = b.create(&name, 3).unwrap();
        w.write_all(b"old").unwrap();
        w.commit().unwrap();
        let path = dir.path().join(&name);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let mut w = b.create(&name, 3).unwrap();
        w.write_all(b"new").unwrap();
        w.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640, "mode {mode:o}");
    }
}
