//! The bounded queue between connection tasks and the writer thread: one byte buffer of
//! whole JSON lines behind a mutex, swapped with the writer's (double buffering: no
//! allocation per record once both buffers have grown). A sender holds the lock for one
//! `memcpy` and wakes the writer only when it sleeps idle (or at the high-water mark while
//! it gathers a batch), so a busy gateway pays about one futex wake per batch, not per
//! record. A record that does not fit is counted as lost, never waited for.

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::metrics::METRICS;
pub use crate::metrics::{
    AUDIT_QUEUE_FULL as QUEUE_FULL, AUDIT_SHUTDOWN as SHUTDOWN,
    AUDIT_UNSERIALISABLE as UNSERIALISABLE,
};

/// A batch this large is written without waiting out `flush`.
const HIGH_WATER: usize = 64 * 1024;
/// At most one "records lost" error line per this interval (the counter is exact).
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Asleep until a record arrives: the first sender wakes it.
    Idle,
    /// Gathering a batch for up to `flush`: woken early only at the high-water mark.
    Gathering,
    /// Writing; it looks at the queue again before sleeping.
    Busy,
}

struct Pending {
    buf: Vec<u8>,
    records: usize,
    writer: Writer,
    /// Reopened file (SIGHUP) and how many bytes of `buf` still belong to the old one.
    reopen: Option<(usize, File)>,
    /// Set by `close`: the writer drains and exits; later records are lost (`shutdown`).
    closing: Option<Instant>,
}

/// What the writer takes in one go.
pub struct Batch {
    pub reopen: Option<(usize, File)>,
}

pub struct Queue {
    pending: Mutex<Pending>,
    wake: Condvar,
    max_records: usize,
    max_bytes: usize,
    flush: Duration,
    /// The writer's last write failed and has not succeeded since.
    pub failing: AtomicBool,
    /// The queue is at its bound (set by senders, cleared when the writer takes a batch).
    full: AtomicBool,
    pub written: AtomicU64,
    pub lost: AtomicU64,
    /// Next time (ms since `epoch`) a "records lost" line may be logged.
    next_log_ms: AtomicU64,
    epoch: Instant,
}

impl Queue {
    /// `records` bounds the count; bytes are bounded at 1 KiB per record (at least 4 MiB,
    /// above the largest record `http.max_header_bytes` allows) so a flood of long paths
    /// cannot grow it either. Memory: at most twice that (one batch being written).
    pub fn new(records: usize, flush: Duration) -> Self {
        Self {
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                records: 0,
                writer: Writer::Busy,
                reopen: None,
                closing: None,
            }),
            wake: Condvar::new(),
            max_records: records,
            max_bytes: records.saturating_mul(1024).max(4 << 20),
            flush,
            failing: AtomicBool::new(false),
            full: AtomicBool::new(false),
            written: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            next_log_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        crate::sync::lock(&self.pending)
    }

    /// Queue one line (a whole JSON object and its `\n`) or count it as lost.
    pub fn push(&self, line: &[u8]) {
        let mut p = self.lock();
        if p.closing.is_some() {
            drop(p);
            return self.lose(SHUTDOWN, 1);
        }
        if p.records >= self.max_records || p.buf.len() + line.len() > self.max_bytes {
            self.full.store(true, Relaxed);
            drop(p);
            return self.lose(QUEUE_FULL, 1);
        }
        p.buf.extend_from_slice(line);
        p.records += 1;
        METRICS.audit_queued.store(p.records as u64, Relaxed);
        if p.records >= self.max_records {
            self.full.store(true, Relaxed);
        }
        let wake = match p.writer {
            Writer::Idle => true,
            Writer::Gathering => p.buf.len() >= HIGH_WATER,
            Writer::Busy => false,
        };
        if wake {
            p.writer = Writer::Busy;
            drop(p);
            self.wake.notify_one();
        }
    }

    /// Whether a record queued now would be kept and written soon.
    pub fn healthy(&self) -> bool {
        !self.failing.load(Relaxed) && !self.full.load(Relaxed)
    }

    pub fn lose(&self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        let total = self.lost.fetch_add(n, Relaxed) + n;
        METRICS.audit_lost.add(reason, n);
        // Rate-limited: a full disk under load would otherwise log once per request.
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_log_ms.load(Relaxed);
        let every = u64::try_from(LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now >= next
            && self
                .next_log_ms
                .compare_exchange(next, now.saturating_add(every), Relaxed, Relaxed)
                .is_ok()
        {
            tracing::error!(
                reason,
                lost_total = total,
                "audit records lost (pacsgate_audit_records_lost_total counts each one)"
            );
        }
    }

    /// Writer side: wait for records, gather for up to `flush`, then swap `into` (empty)
    /// with the pending buffer. Returns `None` once closing and nothing is left.
    pub fn take(&self, into: &mut Vec<u8>) -> Option<Batch> {
        let mut p = self.lock();
        while p.buf.is_empty() && p.reopen.is_none() {
            if p.closing.is_some() {
                return None;
            }
            p.writer = Writer::Idle;
            p = self.wake.wait(p).unwrap_or_else(PoisonError::into_inner);
        }
        if p.closing.is_none() && p.buf.len() < HIGH_WATER {
            p.writer = Writer::Gathering;
            let deadline = Instant::now() + self.flush;
            while p.closing.is_none() && p.buf.len() < HIGH_WATER {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                p = self
                    .wake
                    .wait_timeout(p, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        p.writer = Writer::Busy;
        std::mem::swap(&mut p.buf, into);
        p.records = 0;
        let batch = Batch {
            reopen: p.reopen.take(),
        };
        self.full.store(false, Relaxed);
        METRICS.audit_queued.store(0, Relaxed);
        Some(batch)
    }

    /// Wait up to `pause` (a failed write's retry delay); returns early on close or reopen.
    /// Yields a reopened file, which takes over from the failing one.
    pub fn pause(&self, pause: Duration) -> (Option<File>, Option<Instant>) {
        let mut p = self.lock();
        // Closing: retry until the drain's deadline, not past it.
        let wait = p.closing.map_or(pause, |deadline| {
            pause.min(deadline.saturating_duration_since(Instant::now()))
        });
        if p.reopen.is_none() && !wait.is_zero() {
            p = self
                .wake
                .wait_timeout(p, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        // Bytes already queued were meant for the old file; with it failing, the new one
        // gets them.
        (p.reopen.take().map(|(_, f)| f), p.closing)
    }

    /// SIGHUP: records queued so far still go to the old file, later ones to `file`.
    pub fn reopen(&self, file: File) {
        let mut p = self.lock();
        let split = match p.reopen.take() {
            // A second reopen before the writer saw the first: keep the first split.
            Some((split, _)) => split,
            None => p.buf.len(),
        };
        p.reopen = Some((split, file));
        drop(p);
        self.wake.notify_one();
    }

    /// Stop accepting records and let the writer drain until `deadline`.
    pub fn close(&self, deadline: Instant) {
        let mut p = self.lock();
        p.closing.get_or_insert(deadline);
        drop(p);
        self.wake.notify_one();
    }
}
