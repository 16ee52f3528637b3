//! Lockout checks of concurrent requests share Redis round trips. Every password login
//! must read the shared lock state before a cached password may answer (issue 9: while a
//! key is locked every attempt gets the same 429, on every replica), so this is on the
//! hot path of HTTP Basic. A check is no script: the failure script writes each lock as a
//! plain key with a TTL (`cluster/lockout_fail.lua`), and one `TIME` + `MGET` pipeline
//! reads the lock flags of a whole batch of requests.
//!
//! Batching never serves a state older than the request: a batch is sent after every
//! request in it arrived, so a lock written (on any replica) before the request arrived is
//! always seen. Nothing is cached between batches, and no pub/sub-fed local copy exists (it
//! would open a window in which a locked key answers a right password).
//!
//! Who sends: a *sender* task holds one of `MAX_IN_FLIGHT` slots. It collects (lets the
//! tasks that are ready queue their checks first), takes the queue, sends it and answers
//! it; then, if checks arrived meanwhile and nobody collects them, it goes round again,
//! else it ends. A check queued when no sender collects starts one if a slot is free;
//! otherwise the next sender to finish takes it. With two slots a check arriving while a
//! batch is in flight does not wait for that batch to come back first.
//!
//! Bounds: at most `MAX_BATCH` requests per `MGET` (the rest wait for the following one);
//! each round trip is bounded by `cluster.timeout` (a failure is degraded mode, which fails
//! password logins closed); a sender answers or drops every waiter it took (a dropped
//! answer fails closed as well), and one that dies abnormally drops the queue if no other
//! sender is left to take it. So a check waits at most for the batch in flight and its
//! own, each bounded, and callers need no timer of their own.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::health::Unavailable;

/// Requests per `MGET` (two keys each): bounds the command Redis runs at once.
pub const MAX_BATCH: usize = 256;
/// Batches in flight at once (see the module comment).
pub const MAX_IN_FLIGHT: usize = 2;

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
struct State {
    queue: Vec<Waiter>,
    /// A sender is collecting: it will take whatever is queued when it sends.
    collecting: bool,
    /// Senders alive (collecting, or with a batch in flight).
    senders: usize,
}

impl State {
    /// Take a free slot for a new collecting sender if one is needed.
    fn start_sender(&mut self) -> bool {
        if self.collecting || self.senders >= MAX_IN_FLIGHT || self.queue.is_empty() {
            return false;
        }
        self.collecting = true;
        self.senders += 1;
        true
    }
}

impl Batches {
    fn state(&self) -> MutexGuard<'_, State> {
        // Only plain pushes and drains happen under the lock: a poisoned one is still sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a check. `Some(slot)`: the caller must run a sender with it.
    pub(super) fn push(self: &Arc<Self>, waiter: Waiter) -> Option<Slot> {
        let mut s = self.state();
        s.queue.push(waiter);
        s.start_sender().then(|| Slot {
            batches: Arc::clone(self),
            collecting: true,
            released: false,
        })
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.state().queue.len()
    }
}

/// A sender's place among the `MAX_IN_FLIGHT`. A sender gives it back in the same
/// critical section in which it finds nothing left to do (`take`, `again`), so a check
/// queued meanwhile either finds a free slot or a sender that will still look.
pub(super) struct Slot {
    batches: Arc<Batches>,
    collecting: bool,
    released: bool,
}

impl Slot {
    /// The next batch; another sender may collect from now. Empty: nothing was left to
    /// send and the slot is given back.
    pub(super) fn take(&mut self) -> Vec<Waiter> {
        let mut s = self.batches.state();
        let n = s.queue.len().min(MAX_BATCH);
        let batch: Vec<Waiter> = s.queue.drain(..n).collect();
        s.collecting = false;
        self.collecting = false;
        if batch.is_empty() {
            s.senders = s.senders.saturating_sub(1);
            self.released = true;
        }
        batch
    }

    /// After a batch was answered: collect again if checks wait and nobody collects them,
    /// else give the slot back.
    pub(super) fn again(&mut self) -> bool {
        let mut s = self.batches.state();
        if s.collecting || s.queue.is_empty() {
            s.senders = s.senders.saturating_sub(1);
            self.released = true;
            return false;
        }
        s.collecting = true;
        self.collecting = true;
        true
    }
}

impl Drop for Slot {
    /// Only a sender that ended abnormally (a panic, its task dropped at shutdown) gets
    /// here with its slot: give it back, and if no sender is left to look at the queue,
    /// drop the waiting checks, which fails them closed, rather than strand them.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let mut s = self.batches.state();
        if self.collecting {
            s.collecting = false;
        }
        s.senders = s.senders.saturating_sub(1);
        if s.senders == 0 {
            s.queue.clear();
        }
    }
}

/// A lock flag's value is the end of the lock in Redis TIME microseconds; the flag's own
/// TTL is rounded up to whole ms, so a flag may outlive its lock by < 1 ms: compare.
pub fn remaining(now_us: u64, until_us: Option<u64>) -> Option<Duration> {
    let left = until_us?.checked_sub(now_us)?;
    (left > 0).then(|| Duration::from_micros(left))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter() -> (Waiter, oneshot::Receiver<Answer>) {
        let (tx, rx) = oneshot::channel();
        (Waiter { keys: vec![], tx }, rx)
    }

    #[test]
    fn one_collector_and_at_most_two_senders() {
        let b = Arc::new(Batches::default());
        let mut first = b.push(waiter().0).expect("the first check starts a sender");
        assert!(b.push(waiter().0).is_none(), "a collector already exists");
        assert_eq!(first.take().len(), 2);
        let mut second = b.push(waiter().0).expect("a second slot is free");
        assert_eq!(second.take().len(), 1);
        assert!(b.push(waiter().0).is_none(), "both slots are in flight");
        // The first to come back takes what waits; the other gives its slot back.
        assert!(first.again());
        assert!(!second.again(), "the first one collects it already");
        assert_eq!(first.take().len(), 1);
        assert!(!first.again());
        assert!(first.take().is_empty());
        assert!(b.push(waiter().0).is_some(), "both slots were given back");
    }

    #[test]
    fn a_check_queued_while_the_last_sender_finishes_is_not_stranded() {
        let b = Arc::new(Batches::default());
        let mut first = b.push(waiter().0).expect("starts");
        assert_eq!(first.take().len(), 1);
        let mut second = b.push(waiter().0).expect("second slot");
        assert_eq!(second.take().len(), 1);
        // Both in flight; both find nothing waiting and end...
        assert!(!first.again());
        // ...and a check arriving between the two endings still finds a slot.
        let mut third = b.push(waiter().0).expect("a free slot");
        assert!(!second.again(), "the new sender collects it");
        assert_eq!(third.take().len(), 1);
    }

    #[test]
    fn a_sender_that_dies_fails_what_it_leaves_closed() {
        let b = Arc::new(Batches::default());
        let slot = b.push(waiter().0).expect("starts");
        let (w, mut rx) = waiter();
        assert!(b.push(w).is_none());
        drop(slot); // e.g. a panic while collecting
        assert!(
            matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)),
            "the waiter is answered (closed), not left waiting"
        );
        assert!(b.push(waiter().0).is_some(), "the slot is free again");
    }

    #[test]
    fn batches_are_bounded() {
        let b = Arc::new(Batches::default());
        let mut slot = b.push(waiter().0).expect("starts");
        for _ in 0..MAX_BATCH + 5 {
            let _ = b.push(waiter().0);
        }
        assert_eq!(slot.take().len(), MAX_BATCH);
        assert_eq!(b.queued(), 6);
    }
}
