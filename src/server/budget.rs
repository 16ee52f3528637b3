//! Connections per client address, counted from accept. A connection is *pending* until
//! its listener says the client has shown what it came for (HTTP: a complete request head;
//! DICOM: an admitted A-ASSOCIATE-RQ). Pending connections cost the attacker nothing but
//! a socket, so they get their own per-address cap and a deadline shorter than the
//! protocol timeouts; a second cap bounds all connections of one address, so idle
//! keep-alive or HTTP/2 connections cannot hold every slot either. Clients are keyed by
//! [`IpKey`] (IPv4 address, IPv6 /64): rotating addresses inside one's own network buys
//! nothing.
//!
//! Memory: one map entry per address with a live connection, so at most the listener's
//! connection limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::client_key::IpKey;
use crate::config::ConnectionBudget;

/// Why a new connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverBudget {
    #[error("too many unauthenticated connections from this address")]
    Pending,
    #[error("too many connections from this address")]
    Connections,
}

#[derive(Debug, Default)]
struct Counts {
    pending: usize,
    total: usize,
}

/// The per-address counts of one listener.
pub struct ClientBudget {
    config: ConnectionBudget,
    counts: Mutex<HashMap<IpKey, Counts>>,
}

impl ClientBudget {
    pub fn new(config: ConnectionBudget) -> Arc<Self> {
        Arc::new(Self {
            config,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Count a new connection from `ip` as pending, or refuse it if that address is at
    /// either cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, OverBudget> {
        let key = IpKey::of(ip);
        let mut counts = self.lock();
        let c = counts.entry(key).or_default();
        if c.total >= self.config.max_connections_per_ip {
            drop_if_empty(&mut counts, &key);
            return Err(OverBudget::Connections);
        }
        if c.pending >= self.config.max_pending_per_ip {
            drop_if_empty(&mut counts, &key);
            return Err(OverBudget::Pending);
        }
        c.pending += 1;
        c.total += 1;
        Ok(Admission {
            slot: Some((self.clone(), key)),
            pending: AtomicBool::new(true),
            deadline: Instant::now() + self.config.pending_timeout,
        })
    }

    /// (pending, total) connections of `ip` now.
    pub fn counts(&self, ip: IpAddr) -> (usize, usize) {
        self.lock()
            .get(&IpKey::of(ip))
            .map_or((0, 0), |c| (c.pending, c.total))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpKey, Counts>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn drop_if_empty(counts: &mut HashMap<IpKey, Counts>, key: &IpKey) {
    if counts.get(key).is_some_and(|c| c.total == 0) {
        counts.remove(key);
    }
}

/// One admitted connection's place in the budget; released when dropped.
pub struct Admission {
    /// `None` for listeners without a budget (the local outbound tunnels).
    slot: Option<(Arc<ClientBudget>, IpKey)>,
    pending: AtomicBool,
    deadline: Instant,
}

impl Admission {
    /// No budget: never pending, never expires.
    pub fn unlimited() -> Self {
        Self {
            slot: None,
            pending: AtomicBool::new(false),
            deadline: Instant::now(),
        }
    }

    /// The client has authenticated (or at least sent a whole first request): the
    /// connection no longer counts as pending and its deadline is lifted. Idempotent.
    pub fn authenticated(&self) {
        // Cheap on every request after the first: a relaxed load, no lock.
        if self.pending.load(Ordering::Relaxed) && self.pending.swap(false, Ordering::AcqRel) {
            self.release_pending();
        }
    }

    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Resolves when the pending deadline passes with the connection still pending;
    /// never once it has authenticated.
    pub async fn pending_expired(&self) {
        if self.is_pending() {
            tokio::time::sleep_until(self.deadline).await;
            if self.is_pending() {
                return;
            }
        }
        std::future::pending().await
    }

    fn release_pending(&self) {
        if let Some((budget, key)) = &self.slot {
            if let Some(c) = budget.lock().get_mut(key) {
                c.pending = c.pending.saturating_sub(1);
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let Some((budget, key)) = &self.slot else {
            return;
        };
        let was_pending = self.pending.swap(false, Ordering::AcqRel);
        let mut counts = budget.lock();
        if let Some(c) = counts.get_mut(key) {
            if was_pending {
                c.pending = c.pending.saturating_sub(1);
            }
            c.total = c.total.saturating_sub(1);
        }
        drop_if_empty(&mut counts, key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budget(pending: usize, total: usize) -> Arc<ClientBudget> {
        ClientBudget::new(ConnectionBudget {
            max_pending_per_ip: pending,
            max_connections_per_ip: total,
            pending_timeout: Duration::from_secs(10),
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn pending_cap_is_per_address_and_freed_by_authenticating_or_closing() {
        let b = budget(2, 3);
        let first = b.admit(A).unwrap();
        let second = b.admit(A).unwrap();
        assert_eq!(b.admit(A).err(), Some(OverBudget::Pending));
        assert!(b.admit(B).is_ok(), "another address is not affected");
        first.authenticated();
        first.authenticated();
        assert_eq!(b.counts(A), (1, 2));
        let third = b.admit(A).unwrap();
        assert_eq!(b.admit(A).err(), Some(OverBudget::Connections));
        drop((second, third));
        assert_eq!(b.counts(A), (0, 1));
        drop(first);
        assert_eq!(b.counts(A), (0, 0));
        assert!(b.lock().is_empty(), "no entry is kept for idle addresses");
    }

    #[test]
    fn an_ipv6_network_counts_as_one_client() {
        let b = budget(1, 1);
        let _held = b.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert!(b.admit("2001:db8::ffff:2".parse().unwrap()).is_err());
        assert!(b.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_only_fires_while_pending() {
        let b = budget(2, 2);
        let waiting = b.admit(A).unwrap();
        let done = b.admit(A).unwrap();
        done.authenticated();
        let started = Instant::now();
        waiting.pending_expired().await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let never = tokio::time::timeout(Duration::from_secs(3600), done.pending_expired());
        assert!(never.await.is_err());
    }

    #[test]
    fn unlimited_admissions_are_never_pending() {
        let a = Admission::unlimited();
        assert!(!a.is_pending());
        a.authenticated();
    }
}
