//! Request rate limits (GCRA, via governor): per client network, per user, and per route
//! (e.g. `/tools/find`, which can keep Orthanc busy). Keyed state is swept of idle keys
//! regularly and capped, so a flood of distinct addresses cannot grow memory without bound.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use http::Method;

pub use crate::config::{LimitsConfig, Rate, RouteLimit};
pub use crate::server::IpKey;

/// Keys kept per limiter at most; beyond that (after a sweep) new keys are throttled.
const MAX_KEYS: usize = 100_000;
/// Sweep idle keys every this many checks.
const SWEEP_EVERY: u64 = 4096;

fn quota(rate: &Rate) -> Option<Quota> {
    Quota::with_period(rate.interval()).map(|q| q.allow_burst(rate.burst))
}

/// Which limit refused a request, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub limit: &'static str,
    pub retry_after: Duration,
}

pub struct RateLimits {
    clock: DefaultClock,
    per_ip: Option<DefaultKeyedRateLimiter<IpKey>>,
    per_user: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    routes: Vec<(RouteLimit, DefaultDirectRateLimiter)>,
    checks: AtomicU64,
}

impl RateLimits {
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            clock: DefaultClock::default(),
            per_ip: config
                .per_ip
                .and_then(|r| quota(&r))
                .map(governor::RateLimiter::keyed),
            per_user: config
                .per_user
                .and_then(|r| quota(&r))
                .map(governor::RateLimiter::keyed),
            routes: config
                .routes
                .iter()
                .filter_map(|r| Some((r.clone(), governor::RateLimiter::direct(quota(&r.rate)?))))
                .collect(),
            checks: AtomicU64::new(0),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Throttled> {
        let Some(l) = &self.per_ip else { return Ok(()) };
        self.maybe_sweep();
        if l.len() >= MAX_KEYS {
            l.retain_recent();
            if l.len() >= MAX_KEYS {
                return Err(self.throttled("per_ip", Duration::from_secs(1)));
            }
        }
        l.check_key(&IpKey::of(ip))
            .map_err(|n| self.throttled("per_ip", n.wait_time_from(self.clock.now())))
    }

    /// Users are bounded by the configuration, so this map needs no cap.
    pub fn check_user(&self, user: &Arc<str>) -> Result<(), Throttled> {
        let Some(l) = &self.per_user else {
            return Ok(());
        };
        l.check_key(user)
            .map_err(|n| self.throttled("per_user", n.wait_time_from(self.clock.now())))
    }

    pub fn check_route(&self, method: &Method, segments: &[&str]) -> Result<(), Throttled> {
        for (route, limiter) in &self.routes {
            let method_ok = route.methods.is_empty() || route.methods.contains(method);
            if method_ok && route.paths.iter().any(|g| g.matches(segments)) {
                limiter
                    .check()
                    .map_err(|n| self.throttled("route", n.wait_time_from(self.clock.now())))?;
            }
        }
        Ok(())
    }

    fn throttled(&self, limit: &'static str, wait: Duration) -> Throttled {
        Throttled {
            limit,
            retry_after: wait,
        }
    }

    fn maybe_sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            if let Some(l) = &self.per_ip {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_limit_refuses_beyond_burst_and_keys_ipv6_by_64() {
        let limits = RateLimits::new(&LimitsConfig {
            per_ip: Rate::parse("1/h burst 2"),
            ..Default::default()
        });
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(limits.check_ip(a).is_ok());
        assert!(limits.check_ip(b).is_ok());
        let t = limits.check_ip(a).unwrap_err();
        assert!(t.retry_after > Duration::from_secs(60), "{t:?}");
        assert!(limits.check_ip(other).is_ok());
    }

    #[test]
    fn flood_of_distinct_addresses_stays_bounded() {
        let limits = RateLimits::new(&LimitsConfig {
            per_ip: Rate::parse("1000/s"),
            ..Default::default()
        });
        for i in 0..(MAX_KEYS as u32 + 5000) {
            let _ = limits.check_ip(IpAddr::from(i.to_be_bytes()));
        }
        let len = limits.per_ip.as_ref().map_or(0, |l| l.len());
        assert!(len <= MAX_KEYS, "{len}");
    }
}
