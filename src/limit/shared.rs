//! One rate limit that replicas may share: the in-process GCRA (`gcra.rs`), which counts
//! every request all along and decides alone without `[cluster]` or while Redis is
//! unavailable, plus, with `[cluster]`, the shared bucket in Redis (`cluster.rs`).
//!
//! Leases keep Redis off the hot path of generous limits: with a burst of at least
//! `2 * LEASE_DIVISOR`, one call takes up to `burst / LEASE_DIVISOR` requests (at most
//! `MAX_LEASE`) from the shared bucket, charged there at once, and this replica admits
//! them locally for at most `LEASE_LIFE`. The total across replicas therefore never
//! exceeds the configured rate; leased requests a replica does not use within
//! `LEASE_LIFE` are lost (the limit is at most one lease per replica stricter). Small
//! bursts (strict limits, the ones attackers probe) take one request per call: exact.

use std::hash::Hash;
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::gcra::Gcra;
use super::table::Table;
use crate::config::Rate;

const LEASE_DIVISOR: u32 = 16;
const MAX_LEASE: u32 = 256;
const LEASE_LIFE: Duration = Duration::from_secs(1);

struct Lease {
    left: u32,
    until: Instant,
}

pub struct SharedRate<K> {
    kind: &'static str,
    local: Gcra<K>,
    lease: u32,
    leases: Table<K, Lease>,
}

impl<K: Hash + Eq + Clone> SharedRate<K> {
    /// `kind` names the bucket family in Redis (`ip`, `user`, ...); at most `capacity`
    /// keys are tracked locally (and as many leases).
    pub fn new(kind: &'static str, rate: &Rate, capacity: usize) -> Self {
        let burst = rate.burst.get();
        let lease = if burst >= 2 * LEASE_DIVISOR {
            (burst / LEASE_DIVISOR).min(MAX_LEASE)
        } else {
            1
        };
        Self {
            kind,
            local: Gcra::new(rate, capacity),
            lease,
            leases: Table::new(if lease > 1 { capacity } else { 1 }),
        }
    }

    /// One request for `key` (`id`: its bytes for the shared key) at `now`; `Err(wait)`
    /// when refused. No lock is held across the Redis call.
    pub async fn check(
        &self,
        cluster: Option<&Cluster>,
        key: &K,
        id: impl FnOnce() -> Vec<u8>,
        now: Instant,
    ) -> Result<(), Duration> {
        let local = self.local.check(key, now);
        let Some(cluster) = cluster else {
            return local;
        };
        if self.lease > 1 && self.take_leased(key, now) {
            return Ok(());
        }
        match cluster
            .rate(self.kind, &id(), self.local.rate(), self.lease)
            .await
        {
            Ok(Ok(admitted)) => {
                if admitted > 1 {
                    self.store_lease(key, admitted - 1, now);
                }
                Ok(())
            }
            Ok(Err(wait)) => Err(wait),
            // Degraded: this replica's own limiter (see the module and README).
            Err(_) => local,
        }
    }

    fn take_leased(&self, key: &K, now: Instant) -> bool {
        let live = |l: &Lease| l.left > 0 && l.until > now;
        self.leases
            .get(key, |l| l.is_some_and(live))
            .then(|| {
                self.leases.upsert(
                    key,
                    live,
                    || Lease {
                        left: 0,
                        until: now,
                    },
                    |l| {
                        let ok = live(l);
                        if ok {
                            l.left -= 1;
                        }
                        ok
                    },
                )
            })
            .flatten()
            .unwrap_or(false)
    }

    fn store_lease(&self, key: &K, left: u32, now: Instant) {
        let live = |l: &Lease| l.left > 0 && l.until > now;
        let until = now + LEASE_LIFE;
        // A full table drops the lease: those requests are lost (stricter, never looser).
        let _ = self.leases.upsert(
            key,
            live,
            || Lease { left: 0, until },
            // Concurrent refills (requests that all found the lease empty) add up: each
            // was charged in Redis, so none of it may be dropped while still live.
            |l| {
                l.left = if live(l) {
                    l.left.saturating_add(left)
                } else {
                    left
                };
                l.until = until;
            },
        );
    }

    /// The configured rate.
    pub fn rate(&self) -> &Rate {
        self.local.rate()
    }

    /// Keys tracked by the local limiter.
    pub fn len(&self) -> usize {
        self.local.len()
    }

    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_only_for_generous_bursts() {
        let r = |t: &str| Rate::parse(t).unwrap();
        assert_eq!(SharedRate::<()>::new("t", &r("1/s burst 31"), 1).lease, 1);
        assert_eq!(SharedRate::<()>::new("t", &r("1/s burst 32"), 1).lease, 2);
        assert_eq!(
            SharedRate::<()>::new("t", &r("1000000/s"), 1).lease,
            MAX_LEASE
        );
        // Without [cluster] the local limiter decides, as before.
        // Room for both keys whichever shards they hash to (the table has 16 shards).
        let s = SharedRate::new("t", &r("1/h burst 2"), 1024);
        let now = Instant::now();
        let check = |k| futures_util::FutureExt::now_or_never(s.check(None, &k, Vec::new, now));
        assert_eq!(check(1), Some(Ok(())));
        assert_eq!(check(1), Some(Ok(())));
        assert!(matches!(check(1), Some(Err(_))));
        assert_eq!(check(2), Some(Ok(())));
    }
}
