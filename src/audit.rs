//! One audit stream for HTTP and DICOM: one JSON object per line, each with `time` (RFC
//! 3339, UTC) and `kind`, then the record's own fields. Records are plain `Serialize`
//! structs defined next to the code that knows the facts (`http`, `dicom`); they must never
//! carry passwords, tokens, query strings or patient data.
//!
//! Off the hot path: a connection task serialises its record into a reused per-thread
//! buffer and appends it to a bounded in-memory queue (`queue`), never touching the disk;
//! one writer thread (`writer`) drains the queue in batches, one write(2) each. When the
//! queue is full (the disk is slow, full or failing), `audit.on_full` decides: `drop`
//! counts each lost record (`pacsgate_audit_records_lost_total`, plus a rate-limited error
//! line), `refuse` makes the listeners refuse new requests and associations
//! ([`Audit::admits`]) until records can be written again. Shutdown drains the queue.
//!
//! With `audit.path` set, records are appended to that file (created 0600, reopened on
//! SIGHUP so logrotate can move it); otherwise they go to the log stream as info events
//! with target `audit`, emitted by the writer thread. Started as root with `server.user`,
//! the file is opened before the privilege drop (an unwritable path is still exit 64
//! before binding) and given to that user, so the reopen after rotation, made without
//! root, can append to it.

mod queue;
mod writer;

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use self::queue::{Queue, UNSERIALISABLE};
use self::writer::Sink;
use crate::config::{AuditConfig, AuditOnFull, RunAs};

/// A per-thread line buffer larger than this (one huge record) is not kept.
const KEEP_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the audit writer thread: {0}")]
    Thread(std::io::Error),
}

pub struct Audit {
    queue: Arc<Queue>,
    path: Option<PathBuf>,
    /// `server.user`'s (uid, gid): files this process opens while root are given to it.
    owner: Option<(u32, u32)>,
    on_full: AuditOnFull,
    /// Signalled by the writer thread when it has drained and exited.
    done: Mutex<Option<Receiver<()>>>,
}

/// Records written and lost so far by this stream (the metrics hold the process's sums).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub written: u64,
    pub lost: u64,
}

impl Audit {
    /// Open the audit file (if any) and start the writer thread.
    pub fn open(config: &AuditConfig, run_as: Option<&RunAs>) -> Result<Self, AuditError> {
        let owner = run_as.map(|r| (r.uid, r.gid));
        let sink = match &config.path {
            Some(p) => Sink::File(open_file(p, owner)?),
            None => Sink::Log,
        };
        let queue = Arc::new(Queue::new(config.queue, config.flush));
        let (tx, rx) = mpsc::channel();
        let q = queue.clone();
        std::thread::Builder::new()
            .name("pacsgate-audit".into())
            .spawn(move || {
                writer::run(q, sink);
                let _ = tx.send(());
            })
            .map_err(AuditError::Thread)?;
        Ok(Self {
            queue,
            path: config.path.clone(),
            owner,
            on_full: config.on_full,
            done: Mutex::new(Some(rx)),
        })
    }

    /// An audit stream that goes to the log with the default queue (tests, tools).
    pub fn to_log() -> Result<Self, AuditError> {
        Self::open(
            &AuditConfig {
                path: None,
                queue: 8192,
                flush: Duration::from_millis(5),
                on_full: AuditOnFull::Drop,
            },
            None,
        )
    }

    /// Reopen the file after rotation (SIGHUP): records queued until now still go to the
    /// old file, later ones to the new. On failure the old handle stays.
    pub fn reopen(&self) {
        let Some(path) = &self.path else { return };
        match open_file(path, self.owner) {
            Ok(f) => self.queue.reopen(f),
            Err(e) => {
                tracing::error!(error = %e, "cannot reopen the audit file; still writing the old one")
            }
        }
    }

    /// Queue one record of `kind`; never blocks on IO. A record that does not fit in the
    /// queue is counted as lost.
    pub fn record<T: Serialize>(&self, kind: &'static str, record: &T) {
        if self.path.is_none() && !tracing::enabled!(target: "audit", tracing::Level::INFO) {
            // Going to a log that filters it out: skip the serialisation.
            return;
        }
        thread_local! {
            static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let push = |line: &mut Vec<u8>| {
            line.clear();
            match encode(line, kind, record) {
                Ok(()) => self.queue.push(line),
                Err(e) => {
                    tracing::error!(kind, error = %e, "cannot serialise an audit record");
                    self.queue.lose(UNSERIALISABLE, 1);
                }
            }
            if line.capacity() > KEEP_LINE {
                *line = Vec::new();
            }
        };
        // The thread-local is gone while its thread exits (a record from a destructor).
        if LINE.try_with(|l| push(&mut l.borrow_mut())).is_err() {
            push(&mut Vec::new());
        }
    }

    /// Whether a new request or association may start: always with `on_full = "drop"`;
    /// with `"refuse"`, only while records can be queued and written.
    pub fn admits(&self) -> bool {
        self.on_full == AuditOnFull::Drop || self.queue.healthy()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            written: self.queue.written.load(Relaxed),
            lost: self.queue.lost.load(Relaxed),
        }
    }

    /// Shutdown: stop taking records, let the writer drain the queue for up to `timeout`
    /// (blocking: call it from a blocking context). Records it cannot write by then are
    /// counted as lost (`shutdown`); later records too.
    pub fn close(&self, timeout: Duration) {
        let Some(done) = crate::sync::lock(&self.done).take() else {
            return;
        };
        self.queue.close(Instant::now() + timeout);
        // The writer gives up at the deadline unless a write(2) itself hangs (a dead
        // network file system): then exit anyway, saying so.
        if done.recv_timeout(timeout + Duration::from_secs(2)).is_err() {
            tracing::error!("the audit writer did not finish; records still queued are lost");
        }
    }
}

/// `{"time":"…","kind":"…",` then the record's own fields: the record is serialised after
/// the envelope and its opening brace turned into a comma (no intermediate map, no
/// allocation once the buffer has grown).
fn encode<T: Serialize>(out: &mut Vec<u8>, kind: &str, record: &T) -> Result<(), EncodeError> {
    out.extend_from_slice(b"{\"time\":\"");
    time::OffsetDateTime::now_utc().format_into(out, &Rfc3339)?;
    out.extend_from_slice(b"\",\"kind\":");
    serde_json::to_writer(&mut *out, kind)?;
    let start = out.len();
    serde_json::to_writer(&mut *out, record)?;
    match out.get(start..start + 2) {
        Some(b"{}") => {
            out.truncate(start);
            out.push(b'}');
        }
        Some([b'{', _]) => out[start] = b',',
        _ => return Err(EncodeError::NotAnObject),
    }
    out.push(b'\n');
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum EncodeError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Time(#[from] time::error::Format),
    #[error("a record must serialise to a JSON object")]
    NotAnObject,
}

fn open_file(path: &Path, owner: Option<(u32, u32)>) -> Result<File, AuditError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| AuditError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    if let Some(owner) = owner.filter(|_| nix::unistd::geteuid().is_root()) {
        hand_over(&file, path, owner);
    }
    Ok(file)
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
mod tests;
