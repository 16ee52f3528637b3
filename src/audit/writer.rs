//! The one writer thread: takes a batch from the queue, writes it with one write(2) (more
//! only on a short write), and repeats. A failed write keeps the unwritten bytes and is
//! retried every second (a full disk that gets space again loses nothing it held); the
//! queue meanwhile fills up to its bound and then counts what it drops. No fsync per
//! batch: records reach the kernel within `audit.flush`, and the file is synced when it is
//! rotated away from and at shutdown (README "Audit when the disk is full").

use std::fs::File;
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::{Queue, SHUTDOWN};
use crate::metrics::METRICS;

/// Delay between retries of a failed write.
const RETRY: Duration = Duration::from_secs(1);
/// While writes keep failing, one error line per this interval.
const LOG_EVERY: Duration = Duration::from_secs(30);
/// A buffer that grew past this (a burst) is given back after its batch.
const KEEP: usize = 1 << 20;

pub enum Sink {
    File(File),
    /// The log stream (no `audit.path`): one info event with target `audit` per record.
    Log,
}

pub fn run(queue: Arc<Queue>, mut sink: Sink) {
    let mut batch = Vec::new();
    let mut failure = Failure::default();
    while let Some(taken) = queue.take(&mut batch) {
        let mut rest: &[u8] = &batch;
        if let Some((split, file)) = taken.reopen {
            let (old, new) = rest.split_at(split.min(rest.len()));
            write(&queue, &mut sink, old, &mut failure);
            sync(&sink);
            sink = Sink::File(file);
            rest = new;
        }
        write(&queue, &mut sink, rest, &mut failure);
        batch.clear();
        if batch.capacity() > KEEP {
            batch = Vec::new();
        }
    }
    sync(&sink);
}

#[derive(Default)]
struct Failure {
    since: Option<Instant>,
    logged: Option<Instant>,
}

/// Write `bytes` (whole lines) completely, retrying on failure; gives up only when the
/// shutdown drain's deadline has passed, counting the records it could not finish.
fn write(queue: &Queue, sink: &mut Sink, mut bytes: &[u8], failure: &mut Failure) {
    while !bytes.is_empty() {
        match sink.write(bytes) {
            Ok(n) => {
                let (done, left) = bytes.split_at(n.min(bytes.len()));
                let records = lines(done);
                queue.written.fetch_add(records, Relaxed);
                METRICS.audit_written.fetch_add(records, Relaxed);
                bytes = left;
                if let Some(since) = failure.since.take() {
                    queue.failing.store(false, Relaxed);
                    failure.logged = None;
                    tracing::warn!(
                        failed_for_s = since.elapsed().as_secs(),
                        lost_total = queue.lost.load(Relaxed),
                        "the audit file is writable again"
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                METRICS.audit_write_errors.fetch_add(1, Relaxed);
                queue.failing.store(true, Relaxed);
                failure.since.get_or_insert_with(Instant::now);
                if failure.logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    failure.logged = Some(Instant::now());
                    tracing::error!(
                        error = %e,
                        held = lines(bytes),
                        lost_total = queue.lost.load(Relaxed),
                        "cannot write the audit file; holding the batch and retrying every second (new records are lost once audit.queue is full)"
                    );
                }
                let (reopened, closing) = queue.pause(RETRY);
                if let Some(file) = reopened {
                    *sink = Sink::File(file);
                }
                if closing.is_some_and(|deadline| Instant::now() >= deadline) {
                    // A partly written line may stay at the end of the file; its record
                    // is counted here, and a reader skips the fragment.
                    let left = lines(bytes);
                    queue.lose(SHUTDOWN, left);
                    tracing::error!(error = %e, lost = left, "shutdown: audit records could not be written");
                    return;
                }
            }
        }
    }
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f.write(bytes),
            Sink::Log => {
                for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    tracing::info!(target: "audit", "{}", String::from_utf8_lossy(line));
                }
                Ok(bytes.len())
            }
        }
    }
}

fn sync(sink: &Sink) {
    if let Sink::File(f) = sink {
        if let Err(e) = f.sync_data() {
            tracing::warn!(error = %e, "cannot sync the audit file");
        }
    }
}

/// Records are JSON objects, which escape every newline: one `\n` per record.
fn lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}
