//! Lock-free counters for the hot path: a fixed table of label keys (set once, by the
//! first event that needs them) beside atomic values. Recording is a short scan and one
//! relaxed `fetch_add`; it never allocates and never takes a lock, so a request pays a
//! few nanoseconds whether or not anyone scrapes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Up to `N` label keys with one value each. Keys are small `Copy` values (status codes,
/// `&'static str` tuples): the set of label values is closed by construction, so a
/// client cannot mint new series. A key beyond `N` lands in `overflow`.
pub struct Counters<K: 'static, const N: usize> {
    keys: [OnceLock<K>; N],
    values: [AtomicU64; N],
    overflow: AtomicU64,
}

impl<K: Copy + PartialEq + Send + Sync + 'static, const N: usize> Counters<K, N> {
    pub const fn new() -> Self {
        Self {
            keys: [const { OnceLock::new() }; N],
            values: [const { AtomicU64::new(0) }; N],
            overflow: AtomicU64::new(0),
        }
    }

    pub fn inc(&self, key: K) {
        self.add(key, 1);
    }

    pub fn add(&self, key: K, n: u64) {
        match self.slot(key) {
            Some(v) => v.fetch_add(n, Ordering::Relaxed),
            None => self.overflow.fetch_add(n, Ordering::Relaxed),
        };
    }

    /// For gauges: the matching `add` happened first, so the value does not wrap.
    pub fn sub(&self, key: K, n: u64) {
        if let Some(v) = self.slot(key) {
            v.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// The value for `key` (0 if it never happened).
    pub fn value(&self, key: K) -> u64 {
        self.snapshot()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, v)| v)
    }

    /// Every key seen so far with its value, in first-seen order.
    pub fn snapshot(&self) -> impl Iterator<Item = (K, u64)> + '_ {
        self.keys
            .iter()
            .zip(&self.values)
            .filter_map(|(k, v)| k.get().map(|k| (*k, v.load(Ordering::Relaxed))))
    }

    pub fn overflow(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }

    fn slot(&self, key: K) -> Option<&AtomicU64> {
        for (k, v) in self.keys.iter().zip(&self.values) {
            // A free slot is claimed by whoever gets there first; if another key won
            // the race, keep scanning.
            if *k.get_or_init(|| key) == key {
                return Some(v);
            }
        }
        None
    }
}

impl<K: Copy + PartialEq + Send + Sync + 'static, const N: usize> Default for Counters<K, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Upper bounds (seconds) of the request latency buckets: from a cached 1 ms answer to a
/// minute-long study download.
pub const LATENCY_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0,
];

/// A fixed-bucket histogram with atomic buckets (prometheus-client's own takes a lock
/// per observation).
pub struct Histogram {
    /// One per bound, then the `+Inf` bucket; not cumulative (the encoder sums them).
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; LATENCY_BOUNDS.len() + 1],
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (sum in seconds, count, non-cumulative buckets with their upper bounds).
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets = LATENCY_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.buckets)
            .map(|(b, c)| (b, c.load(Ordering::Relaxed)))
            .collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, self.count.load(Ordering::Relaxed), buckets)
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_get_their_own_slots_and_overflow_is_counted() {
        let c: Counters<u16, 2> = Counters::new();
        c.inc(200);
        c.add(404, 3);
        c.inc(200);
        c.inc(500);
        assert_eq!(c.snapshot().collect::<Vec<_>>(), vec![(200, 2), (404, 3)]);
        assert_eq!(c.overflow(), 1);
        assert_eq!(c.value(404), 3);
    }

    #[test]
    fn concurrent_first_use_of_a_key_is_one_series() {
        let c: std::sync::Arc<Counters<&'static str, 4>> = std::sync::Arc::new(Counters::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.inc("x")))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.snapshot().collect::<Vec<_>>(), vec![("x", 4000)]);
    }

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_secs(120));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert_eq!(buckets[0], (0.001, 2));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((sum - 120.0015).abs() < 1e-9);
    }
}
