//! Failed-authentication throttling, per client network and per user name. Checked before
//! any password hashing, so neither guessing nor argon2's cost can be used at volume:
//! after `failures` failed attempts within `window`, the key is locked out for `window`,
//! doubling with each further lockout up to `max_lockout`. Pure: callers pass the time.

use std::hash::Hash;
use std::time::{Duration, Instant};

use super::table::Table;
pub use crate::config::LockoutPolicy;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: Instant,
    lockouts: u32,
    locked_until: Option<Instant>,
}

/// Lockout state for one kind of key, holding at most `capacity` keys.
pub struct Lockouts<K> {
    table: Table<K, Entry>,
}

impl<K: Hash + Eq + Clone> Lockouts<K> {
    pub fn new(capacity: usize) -> Self {
        Self {
            table: Table::new(capacity),
        }
    }

    /// `Err(wait)` while `key` is locked out.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        self.table
            .get(key, |e| match e.and_then(|e| e.locked_until) {
                Some(until) if until > now => Err(until - now),
                _ => Ok(()),
            })
    }

    /// Record a failed attempt; returns the lockout it started, if any. When the table is
    /// full of keys that are all active, nothing is recorded (memory stays bounded); the
    /// other key kind (network or user) still throttles the attempt.
    pub fn fail(&self, key: &K, policy: &LockoutPolicy, now: Instant) -> Option<Duration> {
        let fresh = Entry {
            failures: 0,
            window_start: now,
            lockouts: 0,
            locked_until: None,
        };
        self.table
            .upsert(
                key,
                |e| active(e, policy, now),
                || fresh,
                |e| count(e, policy, now),
            )
            .flatten()
    }

    /// A correct password clears the record of this key.
    pub fn succeed(&self, key: &K) {
        self.table.remove(key);
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Forget keys that are not locked and have been quiet for two windows.
    pub fn sweep(&self, policy: &LockoutPolicy, now: Instant) {
        self.table.retain(|e| active(e, policy, now));
    }
}

fn active(e: &Entry, policy: &LockoutPolicy, now: Instant) -> bool {
    e.locked_until.is_some_and(|u| u > now)
        || now.saturating_duration_since(e.window_start) < policy.window * 2
}

fn count(e: &mut Entry, policy: &LockoutPolicy, now: Instant) -> Option<Duration> {
    let quiet = now.saturating_duration_since(e.window_start);
    if quiet > policy.window {
        e.failures = 0;
        e.window_start = now;
        if quiet > policy.max_lockout.max(policy.window) * 2 {
            e.lockouts = 0;
        }
    }
    e.failures += 1;
    if e.failures < policy.failures {
        return None;
    }
    let factor = 1u32.checked_shl(e.lockouts.min(16)).unwrap_or(u32::MAX);
    let wait = policy.window.saturating_mul(factor).min(policy.max_lockout);
    e.lockouts = e.lockouts.saturating_add(1);
    e.failures = 0;
    e.window_start = now + wait;
    e.locked_until = Some(now + wait);
    Some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy {
        failures: 3,
        window: Duration::from_secs(60),
        max_lockout: Duration::from_secs(600),
    };

    #[test]
    fn locks_after_n_failures_and_backs_off() {
        let l = Lockouts::new(10);
        let t0 = Instant::now();
        assert_eq!(l.fail(&"a", &POLICY, t0), None);
        assert_eq!(l.fail(&"a", &POLICY, t0), None);
        assert_eq!(l.fail(&"a", &POLICY, t0), Some(Duration::from_secs(60)));
        assert_eq!(
            l.check(&"a", t0 + Duration::from_secs(59)),
            Err(Duration::from_secs(1))
        );
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(l.check(&"a", t1), Ok(()));
        l.fail(&"a", &POLICY, t1);
        l.fail(&"a", &POLICY, t1);
        assert_eq!(l.fail(&"a", &POLICY, t1), Some(Duration::from_secs(120)));
        assert!(l.check(&"b", t1).is_ok(), "other keys are not affected");
    }

    #[test]
    fn backoff_is_capped_and_success_clears() {
        let l = Lockouts::new(10);
        let mut t = Instant::now();
        let mut last = None;
        for _ in 0..10 {
            for _ in 0..3 {
                last = l.fail(&"a", &POLICY, t).or(last);
            }
            t += last.unwrap_or_default() + Duration::from_secs(1);
        }
        assert_eq!(last, Some(Duration::from_secs(600)));
        l.succeed(&"a");
        assert!(l.is_empty());
    }

    #[test]
    fn memory_is_bounded_by_capacity() {
        let l = Lockouts::new(100);
        let t = Instant::now();
        for i in 0..10_000u32 {
            l.fail(&i, &POLICY, t);
        }
        assert!(l.len() <= 100 && l.len() >= 90, "{}", l.len());
        l.sweep(&POLICY, t + Duration::from_secs(3600));
        assert!(l.is_empty());
    }
}
