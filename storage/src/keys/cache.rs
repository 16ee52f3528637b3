//! Bounded data-key caching for remote master keys (KMS, HSM), the operator's trade-off made
//! explicit (seeds: the Azure plugin's `KeyDecayCount` / `KeyPoolSize`):
//!
//! - `DataKeyReuseCount` / `DataKeyReuseSeconds`: one data key (and its single wrap call)
//!   serves at most N new objects or T seconds, whichever ends first. Each object still gets
//!   its own segment key, derived with a fresh random salt (FORMAT.md, v3), so reuse never
//!   repeats a (key, nonce) pair. The cost: whoever obtains one data key reads up to N
//!   objects, and a revoked KMS key keeps working for writes until the reuse ends.
//! - `DataKeyCacheSize`: at most M unwrapped data keys kept for reads (0 = none), evicted
//!   oldest first and zeroized on eviction ([`DataKey`] wipes itself when dropped).
//!
//! Local key files are never cached: their wrap costs a microsecond. Counters of the calls
//! that did reach the KMS/HSM are in [`Stats`] (the plugin logs them).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::{data_key_aad, DataKey, KeyRing, KeyWrapper};
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// New objects per data key (1 = a fresh key and a remote call per object).
    pub reuse_count: u32,
    pub reuse_time: Duration,
    /// Unwrapped data keys kept for reads (0 = every read unwraps remotely).
    pub pool_size: usize,
}

impl CachePolicy {
    /// Defaults: ingest with a remote KMS close to local key files (one wrap per 1000
    /// objects or 5 minutes), and reads of recent objects without a call each.
    pub const DEFAULT: CachePolicy = CachePolicy {
        reuse_count: 1000,
        reuse_time: Duration::from_secs(300),
        pool_size: 1000,
    };
    pub const NONE: CachePolicy = CachePolicy {
        reuse_count: 1,
        reuse_time: Duration::ZERO,
        pool_size: 0,
    };
}

/// Calls that reached a remote master key, and the ones the cache saved.
#[derive(Debug, Default)]
pub struct Stats {
    pub wraps: AtomicU64,
    pub unwraps: AtomicU64,
    pub reused: AtomicU64,
    pub pool_hits: AtomicU64,
}

impl Stats {
    /// Remote calls made and saved; 0 when no remote key was used.
    pub fn total(&self) -> u64 {
        [&self.wraps, &self.unwraps, &self.reused, &self.pool_hits]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn summary(&self) -> String {
        format!(
            "remote key calls: {} wrap, {} unwrap; saved: {} writes reused a data key, {} reads hit the key cache",
            self.wraps.load(Ordering::Relaxed),
            self.unwraps.load(Ordering::Relaxed),
            self.reused.load(Ordering::Relaxed),
            self.pool_hits.load(Ordering::Relaxed)
        )
    }
}

struct Current {
    key_id: u32,
    dek: DataKey,
    blob: Arc<[u8]>,
    uses: u32,
    since: Instant,
}

/// The data key being reused, and the last failed renewal.
#[derive(Default)]
struct Renewal {
    current: Option<Current>,
    failed: Option<(Instant, String)>,
}

/// After a failed renewal, writers fail at once for this long instead of queueing behind
/// the lock for another full round of timeouts each (a hung KMS would otherwise hold every
/// Orthanc writer for attempts x timeout, one after the other).
const FAIL_FAST: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Pool {
    keys: HashMap<(u32, Vec<u8>), DataKey>,
    order: VecDeque<(u32, Vec<u8>)>,
}

pub struct CachedKeys {
    ring: KeyRing,
    policy: CachePolicy,
    current: Mutex<Renewal>,
    pool: Mutex<Pool>,
    stats: Stats,
}

impl CachedKeys {
    pub fn new(ring: KeyRing, policy: CachePolicy) -> CachedKeys {
        CachedKeys {
            ring,
            policy,
            current: Mutex::new(Renewal::default()),
            pool: Mutex::new(Pool::default()),
            stats: Stats::default(),
        }
    }

    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn remember(&self, key_id: u32, blob: &[u8], dek: &DataKey) {
        if self.policy.pool_size == 0 {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let id = (key_id, blob.to_vec());
        if pool.keys.insert(id.clone(), dek.clone()).is_none() {
            pool.order.push_back(id);
        }
        while pool.order.len() > self.policy.pool_size {
            if let Some(old) = pool.order.pop_front() {
                // Dropping the DataKey zeroizes it.
                pool.keys.remove(&old);
            }
        }
    }

    fn count(&self, key_id: u32, counter: &AtomicU64) {
        if self.ring.is_remote(key_id) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl KeyWrapper for CachedKeys {
    fn current_id(&self) -> u32 {
        self.ring.current_id()
    }

    fn wrap(&self, key_id: u32, aad: &[u8], dek: &DataKey) -> Result<Vec<u8>> {
        self.count(key_id, &self.stats.wraps);
        self.ring.wrap(key_id, aad, dek)
    }

    fn unwrap(&self, key_id: u32, aad: &[u8], blob: &[u8]) -> Result<DataKey> {
        self.count(key_id, &self.stats.unwraps);
        self.ring.unwrap(key_id, aad, blob)
    }

    fn kind(&self, key_id: u32) -> Option<&'static str> {
        self.ring.kind(key_id)
    }

    fn a1_keystream(&self, key_id: u32) -> Result<Zeroizing<[u8; 32]>> {
        self.ring.a1_keystream(key_id)
    }

    fn data_key_for_write(&self) -> Result<(u32, DataKey, Arc<[u8]>)> {
        let id = self.current_id();
        let reuse = self.ring.is_remote(id) && self.policy.reuse_count > 1;
        if !reuse {
            let dek = DataKey::generate()?;
            let blob: Arc<[u8]> = self.wrap(id, &data_key_aad(id), &dek)?.into();
            if self.ring.is_remote(id) {
                self.remember(id, &blob, &dek);
            }
            return Ok((id, dek, blob));
        }
        // Held across the remote call on purpose: one wrap per renewal, not one per
        // concurrent writer.
        let mut state = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, why)) = &state.failed {
            if at.elapsed() < FAIL_FAST {
                return Err(crate::Error::Kms(format!(
                    "{why} ({} ms ago; not retried for {} s)",
                    at.elapsed().as_millis(),
                    FAIL_FAST.as_secs()
                )));
            }
        }
        if let Some(c) = state.current.as_mut() {
            if c.key_id == id
                && c.uses < self.policy.reuse_count
                && c.since.elapsed() < self.policy.reuse_time
            {
                c.uses += 1;
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Ok((id, c.dek.clone(), c.blob.clone()));
            }
        }
        state.current = None;
        let dek = DataKey::generate()?;
        let blob: Arc<[u8]> = match self.wrap(id, &data_key_aad(id), &dek) {
            Ok(blob) => blob.into(),
            Err(e) => {
                state.failed = Some((Instant::now(), e.to_string()));
                return Err(e);
            }
        };
        state.failed = None;
        self.remember(id, &blob, &dek);
        state.current = Some(Current {
            key_id: id,
            dek: dek.clone(),
            blob: blob.clone(),
            uses: 1,
            since: Instant::now(),
        });
        Ok((id, dek, blob))
    }

    fn data_key_for_read(&self, key_id: u32, blob: &[u8]) -> Result<DataKey> {
        if !self.ring.is_remote(key_id) || self.policy.pool_size == 0 {
            return self.unwrap(key_id, &data_key_aad(key_id), blob);
        }
        {
            let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(dek) = pool.keys.get(&(key_id, blob.to_vec())) {
                self.stats.pool_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(dek.clone());
            }
        }
        let dek = self.unwrap(key_id, &data_key_aad(key_id), blob)?;
        self.remember(key_id, blob, &dek);
        Ok(dek)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{MasterKey, MasterKeyProvider};

    /// A local key that pretends to be remote and counts its calls.
    struct Remote(MasterKey, Arc<AtomicU64>);

    impl MasterKeyProvider for Remote {
        fn kind(&self) -> &'static str {
            "test-remote"
        }
        fn remote(&self) -> bool {
            true
        }
        fn wrap(&self, aad: &[u8], dek: &DataKey) -> Result<Vec<u8>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.wrap(aad, dek)
        }
        fn unwrap(&self, aad: &[u8], blob: &[u8]) -> Result<DataKey> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.unwrap(aad, blob)
        }
    }

    fn cached(policy: CachePolicy) -> (CachedKeys, Arc<AtomicU64>) {
        let calls = Arc::new(AtomicU64::new(0));
        let key = Remote(MasterKey::from_bytes(5, [5; 32]).unwrap(), calls.clone());
        let ring = KeyRing::from_providers((5, Box::new(key)), []);
        (CachedKeys::new(ring, policy), calls)
    }

    #[test]
    fn reuse_is_bounded_by_count() {
        let policy = CachePolicy {
            reuse_count: 3,
            reuse_time: Duration::from_secs(60),
            pool_size: 0,
        };
        let (keys, calls) = cached(policy);
        let blobs: Vec<_> = (0..7)
            .map(|_| keys.data_key_for_write().unwrap().2)
            .collect();
        assert_eq!(calls.load(Ordering::Relaxed), 3, "7 objects, 3 per key");
        assert!(blobs[0] == blobs[2] && blobs[2] != blobs[3] && blobs[5] != blobs[6]);
    }

    #[test]
    fn reuse_is_bounded_by_time_and_off_means_a_call_per_object() {
        let policy = CachePolicy {
            reuse_count: 100,
            reuse_time: Duration::ZERO,
            pool_size: 0,
        };
        let (keys, calls) = cached(policy);
        for _ in 0..4 {
            keys.data_key_for_write().unwrap();
        }
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        let (keys, calls) = cached(CachePolicy::NONE);
        let (id, _, blob) = keys.data_key_for_write().unwrap();
        keys.data_key_for_read(id, &blob).unwrap();
        keys.data_key_for_read(id, &blob).unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert!(keys.stats().summary().contains("1 wrap, 2 unwrap"));
    }

    /// A master key whose service is down.
    struct Down(Arc<AtomicU64>);

    impl MasterKeyProvider for Down {
        fn kind(&self) -> &'static str {
            "test-down"
        }
        fn remote(&self) -> bool {
            true
        }
        fn wrap(&self, _: &[u8], _: &DataKey) -> Result<Vec<u8>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(crate::Error::Kms("unreachable".into()))
        }
        fn unwrap(&self, _: &[u8], _: &[u8]) -> Result<DataKey> {
            Err(crate::Error::Kms("unreachable".into()))
        }
    }

    #[test]
    fn a_failed_renewal_fails_the_next_writers_fast() {
        let calls = Arc::new(AtomicU64::new(0));
        let ring = KeyRing::from_providers((5, Box::new(Down(calls.clone()))), []);
        let keys = CachedKeys::new(ring, CachePolicy::DEFAULT);
        for _ in 0..3 {
            let err = keys.data_key_for_write().err().expect("no key while down");
            assert!(err.to_string().contains("unreachable"), "{err}");
        }
        assert_eq!(
            calls.load(Ordering::Relaxed),
            1,
            "one remote attempt, then fail fast"
        );
    }

    #[test]
    fn the_read_pool_is_bounded() {
        let policy = CachePolicy {
            reuse_count: 1,
            reuse_time: Duration::ZERO,
            pool_size: 2,
        };
        let (keys, calls) = cached(policy);
        let written: Vec<_> = (0..3).map(|_| keys.data_key_for_write().unwrap()).collect();
        calls.store(0, Ordering::Relaxed);
        for (id, dek, blob) in written.iter().rev() {
            assert_eq!(
                keys.data_key_for_read(*id, blob).unwrap().expose(),
                dek.expose()
            );
        }
        // The two newest came from the pool, the oldest had been evicted: one call.
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert!(keys.pool.lock().unwrap().keys.len() <= 2);
    }
}
