//! Request rate limits: per client network, per user, and per route (e.g. `/tools/find`,
//! which can keep Orthanc busy), each a `crate::limit::Gcra` (the same limiter DICOM's
//! association rate uses). Keyed state is capped and full buckets are dropped first, so a
//! flood of distinct addresses cannot grow memory without bound.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;

pub use crate::config::{LimitsConfig, Rate, RouteLimit};
use crate::limit::cluster::Cluster;
use crate::limit::shared::SharedRate;
pub use crate::server::IpKey;

/// Keys kept per limiter at most; beyond that (after a sweep) new keys are throttled.
const MAX_KEYS: usize = 100_000;

/// Which limit refused a request, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub limit: &'static str,
    pub retry_after: Duration,
}

/// The request-rate limits of one policy (`crate::limit::Gcra` each).
pub struct RateLimits {
    per_ip: Option<SharedRate<IpKey>>,
    /// Users are bounded by the configuration.
    per_user: Option<SharedRate<Arc<str>>>,
    /// One shared budget per route entry, with its name in the shared store.
    routes: Vec<(RouteLimit, SharedRate<()>, Vec<u8>)>,
}

impl RateLimits {
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            per_ip: config.per_ip.map(|r| SharedRate::new("ip", &r, MAX_KEYS)),
            per_user: config
                .per_user
                .map(|r| SharedRate::new("user", &r, MAX_KEYS)),
            routes: config
                .routes
                .iter()
                .map(|r| (r.clone(), SharedRate::new("route", &r.rate, 1), route_id(r)))
                .collect(),
        }
    }

    /// IPv6 clients count per /64 (`IpKey`). With `cluster`, the shared bucket decides
    /// (the local one still counts, and decides while Redis is unavailable).
    pub async fn check_ip(
        &self,
        cluster: Option<&Cluster>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), Throttled> {
        let Some(l) = &self.per_ip else { return Ok(()) };
        let key = IpKey::of(ip);
        l.check(cluster, &key, || key.id_bytes(), now)
            .await
            .map_err(throttled("per_ip"))
    }

    pub async fn check_user(
        &self,
        cluster: Option<&Cluster>,
        user: &Arc<str>,
        now: Instant,
    ) -> Result<(), Throttled> {
        let Some(l) = &self.per_user else {
            return Ok(());
        };
        l.check(cluster, user, || user.as_bytes().to_vec(), now)
            .await
            .map_err(throttled("per_user"))
    }

    pub async fn check_route(
        &self,
        cluster: Option<&Cluster>,
        method: &Method,
        segments: &[&str],
        now: Instant,
    ) -> Result<(), Throttled> {
        for (route, limiter, id) in &self.routes {
            let method_ok = route.methods.is_empty() || route.methods.contains(method);
            if method_ok && route.paths.iter().any(|g| g.matches(segments)) {
                limiter
                    .check(cluster, &(), || id.clone(), now)
                    .await
                    .map_err(throttled("route"))?;
            }
        }
        Ok(())
    }
}

/// A route's name in the shared store is what it limits (methods, paths, rate), not its
/// place in `[[http.rate_limits.routes]]`: a reload that inserts a route, or a replica
/// with the entries in another order, must not hand one route's budget to another.
fn route_id(route: &RouteLimit) -> Vec<u8> {
    let methods: Vec<&str> = route.methods.iter().map(|m| m.as_str()).collect();
    let paths: Vec<&str> = route.paths.iter().map(|g| g.as_str()).collect();
    format!("{methods:?} {paths:?} {:?}", route.rate).into_bytes()
}

fn throttled(limit: &'static str) -> impl Fn(Duration) -> Throttled {
    move |retry_after| Throttled { limit, retry_after }
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
        let now = Instant::now();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let check = |ip| futures_util::FutureExt::now_or_never(limits.check_ip(None, ip, now));
        assert!(check(a).unwrap().is_ok());
        assert!(check(b).unwrap().is_ok());
        let t = check(a).unwrap().unwrap_err();
        assert!(t.retry_after > Duration::from_secs(60), "{t:?}");
        assert_eq!(t.limit, "per_ip");
        assert!(check(other).unwrap().is_ok());
    }

    #[test]
    fn flood_of_distinct_addresses_stays_bounded() {
        let limits = RateLimits::new(&LimitsConfig {
            per_ip: Rate::parse("1000/s"),
            ..Default::default()
        });
        let now = Instant::now();
        for i in 0..(MAX_KEYS as u32 + 5000) {
            let check = limits.check_ip(None, IpAddr::from(i.to_be_bytes()), now);
            let _ = futures_util::FutureExt::now_or_never(check);
        }
        let len = limits.per_ip.as_ref().map_or(0, |l| l.len());
        assert!(len <= MAX_KEYS, "{len}");
    }

    #[test]
    fn routes_are_named_by_what_they_limit_not_their_place() {
        let route = |methods: &[Method], path: &str, rate: &str| RouteLimit {
            methods: methods.to_vec(),
            paths: vec![crate::config::Glob::parse(path).unwrap()],
            rate: Rate::parse(rate).unwrap(),
        };
        let find = route(&[Method::POST], "/tools/find", "5/s");
        let studies = route(&[Method::GET], "/studies/**", "5/s");
        let ids = |routes: Vec<RouteLimit>| -> Vec<Vec<u8>> {
            let limits = RateLimits::new(&LimitsConfig {
                routes,
                ..Default::default()
            });
            limits.routes.iter().map(|(_, _, id)| id.clone()).collect()
        };
        let one = ids(vec![find.clone(), studies.clone()]);
        let other_order = ids(vec![studies.clone(), find.clone()]);
        assert_eq!(one[0], other_order[1]);
        assert_eq!(one[1], other_order[0]);
        assert_ne!(one[0], one[1]);
        assert_ne!(
            one[0],
            ids(vec![route(&[Method::POST], "/tools/find", "6/s")])[0]
        );
    }
}
