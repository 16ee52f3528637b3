//! Association limits: concurrent associations per source IP and per modality (RAII
//! guards, released when the association ends) and an association rate per source IP
//! (`crate::limit::Gcra`, the clock passed in). Exceeding one is a transient A-ASSOCIATE-RJ
//! (2/3/2, local limit exceeded). Limits are checked after the TLS handshake and the RQ,
//! because the RJ needs the TLS channel; the accept loop's global bound comes first.
//! With `[cluster]` the association rate is shared by the replicas through Redis
//! (`crate::limit::cluster`; the local bucket decides while Redis is unavailable); the
//! concurrent counts stay per process (they are released by this process's guards).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::Rate;
use crate::limit::cluster::Cluster;
use crate::limit::shared::SharedRate;
use crate::server::IpKey;

/// Rate state is kept for at most this many addresses (`crate::limit::Gcra`: full
/// buckets are dropped first, then new addresses are refused).
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
struct State {
    per_ip: HashMap<IpKey, usize>,
    per_modality: HashMap<String, usize>,
}

pub struct Limits {
    per_ip: Option<usize>,
    rate: Option<SharedRate<IpKey>>,
    cluster: Option<Arc<Cluster>>,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("association rate per IP")]
    Rate,
    #[error("concurrent associations per IP")]
    PerIp,
    #[error("concurrent associations per modality")]
    PerModality,
}

impl LimitExceeded {
    pub fn code(self) -> &'static str {
        match self {
            Self::Rate => "rate_per_ip",
            Self::PerIp => "concurrent_per_ip",
            Self::PerModality => "concurrent_per_modality",
        }
    }
}

/// Holds one slot; dropping it releases the slot.
pub struct Guard {
    limits: Arc<Limits>,
    key: Key,
}

enum Key {
    Ip(IpKey),
    Modality(String),
}

impl Limits {
    pub fn new(
        per_ip: Option<usize>,
        rate: Option<Rate>,
        cluster: Option<Arc<Cluster>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            per_ip,
            rate: rate.map(|r| SharedRate::new("dicom-assoc", &r, MAX_TRACKED)),
            cluster,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Count one association from `ip` against the rate and the per-IP limit.
    /// IPv6 clients count per /64 (as for the HTTP limits): rotating addresses inside
    /// one's own network does not buy more associations.
    /// No lock is held across the shared (awaited) rate decision.
    pub async fn admit_ip(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Guard, LimitExceeded> {
        let ip = IpKey::of(ip);
        if let Some(rate) = &self.rate {
            rate.check(self.cluster.as_deref(), &ip, || ip.id_bytes(), now)
                .await
                .map_err(|_| LimitExceeded::Rate)?;
        }
        let mut state = self.lock();
        let n = state.per_ip.entry(ip).or_insert(0);
        if self.per_ip.is_some_and(|max| *n >= max) {
            return Err(LimitExceeded::PerIp);
        }
        *n += 1;
        Ok(Guard {
            limits: self.clone(),
            key: Key::Ip(ip),
        })
    }

    /// Count one association of `modality` against `max`.
    pub fn admit_modality(
        self: &Arc<Self>,
        modality: &str,
        max: Option<usize>,
    ) -> Result<Option<Guard>, LimitExceeded> {
        let Some(max) = max else { return Ok(None) };
        let mut state = self.lock();
        let n = state.per_modality.entry(modality.to_string()).or_insert(0);
        if *n >= max {
            return Err(LimitExceeded::PerModality);
        }
        *n += 1;
        Ok(Some(Guard {
            limits: self.clone(),
            key: Key::Modality(modality.to_string()),
        }))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut state = self.limits.lock();
        match &self.key {
            Key::Ip(ip) => release(&mut state.per_ip, ip),
            Key::Modality(m) => release(&mut state.per_modality, m),
        }
    }
}

fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// Without `[cluster]` nothing awaits: the decision is ready at once.
    fn admit(limits: &Arc<Limits>, ip: IpAddr, now: Instant) -> Result<Guard, LimitExceeded> {
        futures_util::FutureExt::now_or_never(limits.admit_ip(ip, now))
            .expect("no shared store, no await")
    }

    #[test]
    fn concurrent_slots_are_released_on_drop() {
        let limits = Limits::new(Some(2), None, None);
        let now = Instant::now();
        let a = admit(&limits, IP, now).unwrap();
        let _b = admit(&limits, IP, now).unwrap();
        assert_eq!(admit(&limits, IP, now).err(), Some(LimitExceeded::PerIp));
        drop(a);
        assert!(admit(&limits, IP, now).is_ok());
        let m = limits.admit_modality("ct1", Some(1)).unwrap();
        assert_eq!(
            limits.admit_modality("ct1", Some(1)).err(),
            Some(LimitExceeded::PerModality)
        );
        drop(m);
        assert!(limits.admit_modality("ct1", Some(1)).is_ok());
        assert!(limits.lock().per_modality.is_empty());
    }

    #[test]
    fn rate_allows_a_burst_then_refills() {
        let rate = Rate::parse("1/s burst 3").unwrap();
        let limits = Limits::new(None, Some(rate), None);
        let t0 = Instant::now();
        for _ in 0..3 {
            drop(admit(&limits, IP, t0).unwrap());
        }
        assert_eq!(admit(&limits, IP, t0).err(), Some(LimitExceeded::Rate));
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert!(admit(&limits, other, t0).is_ok());
        assert!(admit(&limits, IP, t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(
            admit(&limits, IP, t0 + Duration::from_secs(1)).err(),
            Some(LimitExceeded::Rate)
        );
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let limits = Limits::new(Some(1), None, None);
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_net: IpAddr = "2001:db8:1:2:ffff::7".parse().unwrap();
        let other_net: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _held = admit(&limits, a, now).unwrap();
        assert_eq!(
            admit(&limits, same_net, now).err(),
            Some(LimitExceeded::PerIp)
        );
        assert!(admit(&limits, other_net, now).is_ok());
        let _v4 = admit(&limits, IP, now).unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            admit(&limits, mapped, now).err(),
            Some(LimitExceeded::PerIp)
        );
    }
}
