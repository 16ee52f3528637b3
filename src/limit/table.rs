//! A bounded map from client keys to limiter state. Split into shards so that connections
//! on different worker threads rarely wait on one another; each shard holds at most
//! `capacity / SHARDS` keys. A full shard is swept with the owner's `keep` predicate first;
//! if it is still full, the new key is not admitted and the caller decides what that means
//! (rates refuse the request: memory stays bounded under a flood of distinct addresses).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard, PoisonError};

const SHARDS: usize = 16;

pub struct Table<K, V> {
    shards: Box<[Mutex<HashMap<K, V>>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl<K: Hash + Eq + Clone, V> Table<K, V> {
    /// A table holding at most `capacity` keys (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: (capacity / SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    /// The most keys the table holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, V>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A panic while a shard was held left plain data behind; keep using it.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `f` on the state of `key`, `None` if the key is not in the table.
    pub fn get<R>(&self, key: &K, f: impl FnOnce(Option<&V>) -> R) -> R {
        f(self.shard(key).get(key))
    }

    /// `f` on the state of `key`, inserting `new()` first if the key is absent. `None` when
    /// the key is absent and its shard is full even after dropping the entries `keep`
    /// rejects.
    pub fn upsert<R>(
        &self,
        key: &K,
        keep: impl FnMut(&V) -> bool,
        new: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> Option<R> {
        let mut shard = self.shard(key);
        if let Some(v) = shard.get_mut(key) {
            return Some(f(v));
        }
        if shard.len() >= self.per_shard {
            let mut keep = keep;
            shard.retain(|_, v| keep(v));
            if shard.len() >= self.per_shard {
                return None;
            }
        }
        Some(f(shard.entry(key.clone()).or_insert_with(new)))
    }

    pub fn remove(&self, key: &K) {
        self.shard(key).remove(key);
    }

    /// Drop every entry `keep` rejects.
    pub fn retain(&self, mut keep: impl FnMut(&V) -> bool) {
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, v| keep(v));
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_shards_sweep_then_refuse_new_keys() {
        let t: Table<u32, u32> = Table::new(64);
        let mut admitted = 0;
        for k in 0..10_000u32 {
            admitted += t.upsert(&k, |_| true, || k, |_| ()).map_or(0, |_| 1);
        }
        assert_eq!(admitted, t.capacity());
        assert_eq!(t.len(), t.capacity());
        // Known keys are still served when their shard is full.
        let known = (0..10_000u32).find(|k| t.get(k, |v| v.is_some())).unwrap();
        assert_eq!(t.upsert(&known, |_| true, || 0, |v| *v), Some(known));
        // A sweep that drops everything makes room again.
        assert!(t.upsert(&20_000, |_| false, || 1, |_| ()).is_some());
        t.retain(|_| false);
        assert!(t.is_empty());
    }
}
