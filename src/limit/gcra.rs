//! The generic cell rate algorithm (ITU-T I.371 §4.4.2, the "virtual scheduling" form) per
//! key: each key has a theoretical arrival time (TAT); a request at `now` is admitted when
//! `max(TAT, now) - now + T <= tau`, where `T = period / count` is the emission interval
//! and `tau = T * burst` the tolerance, and then moves the TAT on by `T`. One `Instant` per
//! key, and a key whose TAT has passed is a full bucket, the same as an absent one, so
//! those are what a sweep drops.

use std::hash::Hash;
use std::time::{Duration, Instant};

use super::table::Table;
use crate::config::Rate;

pub struct Gcra<K> {
    rate: Rate,
    interval: Duration,
    tolerance: Duration,
    table: Table<K, Instant>,
}

impl<K: Hash + Eq + Clone> Gcra<K> {
    /// A limiter for `rate` tracking at most `capacity` keys.
    pub fn new(rate: &Rate, capacity: usize) -> Self {
        let interval = rate.interval();
        Self {
            rate: *rate,
            interval,
            tolerance: interval.saturating_mul(rate.burst.get()),
            table: Table::new(capacity),
        }
    }

    /// `Ok` admits one request for `key` at `now`; `Err(wait)` says when the next one would
    /// be admitted. When the table is full of keys still inside their burst, a new key is
    /// refused for one interval: memory stays bounded whatever the number of addresses.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let (interval, tolerance) = (self.interval, self.tolerance);
        self.table
            .upsert(
                key,
                |tat| *tat > now,
                || now,
                |tat| {
                    let ahead = (*tat).max(now) - now;
                    if ahead + interval > tolerance {
                        return Err(ahead + interval - tolerance);
                    }
                    *tat = now + ahead + interval;
                    Ok(())
                },
            )
            .unwrap_or(Err(interval))
    }

    /// The configured rate (what a shared store applies to the same key).
    pub fn rate(&self) -> &Rate {
        &self.rate
    }

    /// Forget keys whose bucket is full again (their state equals no state).
    pub fn sweep(&self, now: Instant) {
        self.table.retain(|tat| *tat > now);
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        Rate::parse(text).unwrap()
    }

    #[test]
    fn burst_then_one_per_interval_with_the_wait_named() {
        let g = Gcra::new(&rate("1/s burst 3"), 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(g.check(&"a", t0), Ok(()));
        }
        assert_eq!(g.check(&"a", t0), Err(Duration::from_secs(1)));
        assert_eq!(g.check(&"b", t0), Ok(()), "keys are independent");
        let t1 = t0 + Duration::from_millis(400);
        assert_eq!(g.check(&"a", t1), Err(Duration::from_millis(600)));
        let t2 = t0 + Duration::from_secs(1);
        assert_eq!(g.check(&"a", t2), Ok(()));
        assert!(g.check(&"a", t2).is_err());
        // After a long quiet spell the whole burst is back, not more.
        let t3 = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert_eq!(g.check(&"a", t3), Ok(()));
        }
        assert!(g.check(&"a", t3).is_err());
    }

    #[test]
    fn burst_one_admits_exactly_the_rate() {
        let g = Gcra::new(&rate("10/s burst 1"), 10);
        let t0 = Instant::now();
        let admitted = (0..100)
            .filter(|i| g.check(&(), t0 + Duration::from_millis(10 * i)).is_ok())
            .count();
        assert_eq!(admitted, 10, "one per 100 ms over one second");
    }

    #[test]
    fn a_flood_of_keys_stays_bounded_and_full_buckets_are_swept() {
        let g = Gcra::new(&rate("1/h"), 1000);
        let t0 = Instant::now();
        let refused = (0..50_000u32).filter(|k| g.check(k, t0).is_err()).count();
        assert_eq!(g.len(), g.capacity());
        assert_eq!(refused, 50_000 - g.capacity());
        g.sweep(t0 + Duration::from_secs(3601));
        assert!(g.is_empty());
        assert_eq!(g.check(&7, t0 + Duration::from_secs(3601)), Ok(()));
    }
}
