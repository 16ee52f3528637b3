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

use super::health::Unavailable;

/// Requests per `MGET` (two keys each): bounds the command Redis runs at once.
pub const MAX_BATCH: usize = 256;

pub(super) type Answer = Result<Option<Duration>, Unavailable>;

pub(super) struct Waiter {
    pub(super) keys: Vec<String>,
    pub(super) tx: oneshot::Sender<Answer>,
}

#[derive(Default)]
pub struct Batches {
    state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) queue: Vec<Waiter>,
    /// A task is sending batches; it takes whatever is queued when its batch returns.
    pub(super) flushing: bool,
}

impl Batches {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // Only plain pushes and drains happen under the lock: a poisoned one is still sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Clears `flushing` however the flushing task ends (even by a panic), so a later check
/// starts a new one instead of waiting forever.
pub(super) struct Flushing<'a>(pub(super) &'a Batches);

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        self.0.state().flushing = false;
    }
}

/// A lock flag's value is the end of the lock in Redis TIME microseconds; the flag's own
/// TTL is rounded up to whole ms, so a flag may outlive its lock by < 1 ms: compare.
pub fn remaining(now_us: u64, until_us: Option<u64>) -> Option<Duration> {
    let left = until_us?.checked_sub(now_us)?;
    (left > 0).then(|| Duration::from_micros(left))
}
