//! Lockout checks of concurrent requests share Redis round trips. Every password login
//! must read the shared lock state before a cached password may answer (issue 9: while a
//! key is locked every attempt gets the same 429, on every replica), so this is on the
//! hot path of HTTP Basic. A check is no script: the failure script writes each lock as a
//! plain key with a TTL (`cluster/lockout_fail.lua`), and one `TIME` + `MGET` pipeline
//! reads the lock flags of a whole batch of requests.
//!
//! Batching never serves a state older than the request: a request that arrives while a
//! batch is in flight waits for the NEXT batch, which is sent after it arrived, so a lock
//! written (on any replica) before the request arrived is always seen. Nothing is cached
//! between batches, and no pub/sub-fed local copy exists (it would open a window in which
//! a locked key answers a right password).
//!
//! Bounds: at most `MAX_BATCH` requests per `MGET` (the rest wait for the following one);
//! each round trip is bounded by `cluster.timeout` (a failure is degraded mode, which fails
//! password logins closed); a caller waits at most `2 * cluster.timeout` (the batch in
//! flight, then its own) and otherwise gets `Unavailable` as well.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Cluster, Unavailable};

/// Requests per `MGET` (two keys each): bounds the command Redis runs at once.
pub const MAX_BATCH: usize = 256;

type Answer = Result<Option<Duration>, Unavailable>;

struct Waiter {
    keys: Vec<String>,
    tx: oneshot::Sender<Answer>,
}

#[derive(Default)]
pub struct Batches {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: Vec<Waiter>,
    /// A task is sending batches; it takes whatever is queued when its batch returns.
    flushing: bool,
}

impl Batches {
    fn state(&self) -> MutexGuard<'_, State> {
        // Only plain pushes and drains happen under the lock: a poisoned one is still sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Clears `flushing` however the flushing task ends (even by a panic), so a later check
/// starts a new one instead of waiting forever.
struct Flushing<'a>(&'a Batches);

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        self.0.state().flushing = false;
    }
}

impl Cluster {
    /// The longest lock on any of `keys` (`(kind, id)`), `None` when none is locked.
    pub async fn locked(&self, keys: &[(&str, &[u8])]) -> Answer {
        if !self.health.should_try() {
            return Err(Unavailable);
        }
        let keys = keys.iter().map(|(k, id)| self.lock_key(k, id)).collect();
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.batches.state();
            s.queue.push(Waiter { keys, tx });
            !std::mem::replace(&mut s.flushing, true)
        };
        if start {
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(async move { me.flush().await });
            } else {
                // Shutting down: nothing will answer.
                self.batches.state().flushing = false;
            }
        }
        match tokio::time::timeout(self.config.timeout * 2, rx).await {
            Ok(Ok(answer)) => answer,
            // Dropped sender (the task panicked) or no answer in time: fail closed.
            _ => Err(Unavailable),
        }
    }

    /// Send batches until the queue is empty.
    async fn flush(&self) {
        let _flushing = Flushing(&self.batches);
        loop {
            // Let the tasks that are ready now (requests already read, whose checks are
            // on their way) queue theirs first: larger batches, no added wait when idle.
            // Whatever joins is still sent after it arrived.
            tokio::task::yield_now().await;
            let batch: Vec<Waiter> = {
                let mut s = self.batches.state();
                if s.queue.is_empty() {
                    return;
                }
                let n = s.queue.len().min(MAX_BATCH);
                s.queue.drain(..n).collect()
            };
            let keys: Vec<&str> = batch
                .iter()
                .flat_map(|w| w.keys.iter().map(String::as_str))
                .collect();
            let reply = self.read_locks(&keys).await;
            let mut offset = 0;
            for w in batch {
                let n = w.keys.len();
                let answer = match &reply {
                    Ok(waits) => waits
                        .get(offset..offset + n)
                        .map(|w| w.iter().flatten().max().copied())
                        // Cannot happen (the length is checked); never an open door.
                        .ok_or(Unavailable),
                    Err(e) => Err(*e),
                };
                offset += n;
                // A caller that gave up (timeout, cancelled request) does not matter.
                let _ = w.tx.send(answer);
            }
        }
    }

    /// One round trip: Redis's clock and every flag; per key the time left on its lock.
    async fn read_locks(&self, keys: &[&str]) -> Result<Vec<Option<Duration>>, Unavailable> {
        let mut conn = self.connection()?;
        let mut pipe = redis::pipe();
        pipe.cmd("TIME").cmd("MGET").arg(keys);
        let ((secs, us), until): ((u64, u64), Vec<Option<u64>>) =
            self.bounded(pipe.query_async(&mut conn)).await?;
        if until.len() != keys.len() {
            return Err(self
                .health
                .failed("error", "MGET answered another number of values"));
        }
        let now = secs.saturating_mul(1_000_000).saturating_add(us);
        Ok(until.into_iter().map(|u| remaining(now, u)).collect())
    }
}

/// A lock flag's value is the end of the lock in Redis TIME microseconds; the flag's own
/// TTL is rounded up to whole ms, so a flag may outlive its lock by < 1 ms: compare.
pub fn remaining(now_us: u64, until_us: Option<u64>) -> Option<Duration> {
    let left = until_us?.checked_sub(now_us)?;
    (left > 0).then(|| Duration::from_micros(left))
}
