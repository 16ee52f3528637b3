//! One audit stream for HTTP and DICOM: one JSON object per line, each with `time` (RFC
//! 3339, UTC) and `kind`, then the record's own fields. Records are plain `Serialize`
//! structs defined next to the code that knows the facts (`http`, `dicom`); they must never
//! carry passwords, tokens, query strings or patient data.
//!
//! With `audit.path` set, records are appended to that file (created 0600, reopened on
//! SIGHUP so logrotate can move it); otherwise they go to the log stream as info events
//! with target `audit`. Started as root with `server.user`, the file is opened before the
//! privilege drop (an unwritable path is still exit 64 before binding) and given to that
//! user, so the reopen after rotation, made without root, can append to it.

use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::config::{ConfigError, RunAs};

pub struct Audit {
    path: Option<PathBuf>,
    /// `server.user`'s (uid, gid): files this process opens while root are given to it.
    owner: Option<(u32, u32)>,
    file: Mutex<Option<LineWriter<File>>>,
}

impl Audit {
    /// Open the audit file (if any); an unwritable path is a configuration error.
    pub fn open(path: Option<&Path>, run_as: Option<&RunAs>) -> Result<Self, ConfigError> {
        let owner = run_as.map(|r| (r.uid, r.gid));
        let file = path.map(|p| open_file(p, owner)).transpose()?;
        Ok(Self {
            path: path.map(Path::to_path_buf),
            owner,
            file: Mutex::new(file),
        })
    }

    /// An audit stream that goes to the log (tests, tools).
    pub fn to_log() -> Self {
        Self {
            path: None,
            owner: None,
            file: Mutex::new(None),
        }
    }

    /// Reopen the file after rotation (SIGHUP). On failure the old handle stays.
    pub fn reopen(&self) {
        let Some(path) = &self.path else { return };
        match open_file(path, self.owner) {
            Ok(f) => *self.lock() = Some(f),
            Err(e) => {
                tracing::error!(error = %e, "cannot reopen the audit file; still writing the old one")
            }
        }
    }

    /// Write one record of `kind`.
    pub fn record<T: Serialize>(&self, kind: &'static str, record: &T) {
        if self.path.is_none() && !tracing::enabled!(target: "audit", tracing::Level::INFO) {
            // Going to a log that filters it out: skip the serialisation.
            return;
        }
        let line = match to_line(kind, record) {
            Ok(line) => line,
            Err(e) => return tracing::error!(kind, error = %e, "cannot serialise an audit record"),
        };
        let mut file = self.lock();
        match file.as_mut() {
            Some(f) => {
                if let Err(e) = f.write_all(line.as_bytes()) {
                    tracing::error!(error = %e, "cannot write the audit file");
                }
            }
            None => tracing::info!(target: "audit", "{}", line.trim_end()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<LineWriter<File>>> {
        self.file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    time: String,
    kind: &'static str,
    #[serde(flatten)]
    record: &'a T,
}

fn to_line<T: Serialize>(kind: &'static str, record: &T) -> serde_json::Result<String> {
    let time = time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let mut line = serde_json::to_string(&Envelope { time, kind, record })?;
    line.push('\n');
    Ok(line)
}

fn open_file(path: &Path, owner: Option<(u32, u32)>) -> Result<LineWriter<File>, ConfigError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            ConfigError::new(
                "audit.path",
                format!("cannot open {}: {e}", path.display()),
                "point it at a writable file (its directory must exist)",
            )
        })?;
    if let Some(owner) = owner.filter(|_| nix::unistd::geteuid().is_root()) {
        hand_over(&file, path, owner);
    }
    Ok(LineWriter::new(file))
}

/// Give the open file to `server.user` (fchown on the descriptor, never the path), but only
/// a plain file that is the path itself with one link: the log directory belongs to that
/// user, who could otherwise plant a symlink or a hard link to /etc/shadow there and have
/// root hand it over at the next start.
fn hand_over(file: &File, path: &Path, (uid, gid): (u32, u32)) {
    use std::os::unix::fs::MetadataExt;
    let (Ok(opened), Ok(named)) = (file.metadata(), std::fs::symlink_metadata(path)) else {
        return;
    };
    let same = opened.dev() == named.dev() && opened.ino() == named.ino();
    if !(named.file_type().is_file() && same && opened.nlink() == 1) {
        tracing::warn!(path = %path.display(), "audit.path is not a plain file; not giving it to server.user (reopen after rotation may fail)");
        return;
    }
    if (opened.uid(), opened.gid()) == (uid, gid) {
        return;
    }
    if let Err(e) = std::os::unix::fs::fchown(file, Some(uid), Some(gid)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot give the audit file to server.user");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Sample {
        user: &'static str,
        status: u16,
    }

    #[test]
    fn records_are_one_json_object_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(Some(&path), None).unwrap();
        audit.record(
            "http",
            &Sample {
                user: "alice",
                status: 200,
            },
        );
        audit.record(
            "http",
            &Sample {
                user: "bob",
                status: 403,
            },
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["kind"], "http");
        assert_eq!(lines[1]["user"], "bob");
        assert_eq!(lines[1]["status"], 403);
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
