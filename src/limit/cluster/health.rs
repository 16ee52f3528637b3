//! Degraded mode of the shared limit store: after a failed or late call, decisions skip
//! Redis for `PROBE` (so a Redis that hangs costs one timeout per `PROBE`, not one per
//! request), then calls try again; the first success ends degraded mode. Exposed as
//! `pacsgate_cluster_degraded` (gauge) and `pacsgate_cluster_redis_failures_total`; the
//! log line is rate-limited to one per `LOG_EVERY`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::METRICS;

/// Redis could not decide in time (unreachable, slower than the timeout, or an answer
/// that is not what the script returns); the caller applies the degraded policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared limit store (Redis) is unavailable")]
pub struct Unavailable;

const PROBE: Duration = Duration::from_millis(250);
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Health {
    start: Instant,
    degraded: AtomicBool,
    /// Milliseconds since `start` before which calls do not try Redis.
    retry_at: AtomicU64,
    /// Milliseconds since `start` of the last warning (0: none yet).
    logged_at: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            degraded: AtomicBool::new(false),
            retry_at: AtomicU64::new(0),
            logged_at: AtomicU64::new(0),
        }
    }
}

impl Health {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Whether a call should go to Redis now.
    pub fn should_try(&self) -> bool {
        !self.degraded() || self.now_ms() >= self.retry_at.load(Ordering::Relaxed)
    }

    pub fn succeeded(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            METRICS.cluster_degraded.store(0, Ordering::Relaxed);
            tracing::warn!("shared limits: Redis answers again; shared rates and lockouts resume");
        }
    }

    /// Count a failed call (`reason`: `error` or `timeout`) and enter degraded mode.
    pub fn failed(&self, reason: &'static str, detail: &str) -> Unavailable {
        METRICS.cluster_failures.inc(reason);
        let now = self.now_ms();
        self.retry_at.store(
            now + u64::try_from(PROBE.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let newly = !self.degraded.swap(true, Ordering::Relaxed);
        if newly {
            METRICS.cluster_degraded.store(1, Ordering::Relaxed);
        }
        let last = self.logged_at.load(Ordering::Relaxed);
        let due = newly || last == 0 || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if due
            && self
                .logged_at
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                reason,
                detail,
                "shared limits degraded: Redis unavailable; rates use this replica's own limiter, \
                 password logins are refused (429) until Redis answers"
            );
        }
        Unavailable
    }
}
