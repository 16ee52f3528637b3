//! Certificate lifetime: when each serving certificate stops being valid, a warning when
//! that is closer than `tls.expiry_warning` (start, reload, `check`, `doctor`), and the
//! `pacsgate_certificate_not_after_seconds` gauges.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::prelude::{FromDer, X509Certificate};

use super::material::{Material, ServedKey};
use crate::metrics::METRICS;

/// How a certificate's validity looks now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid for longer than the warning window.
    Fine {
        days_left: i64,
    },
    /// Valid, but expires within the warning window.
    ExpiresSoon {
        days_left: i64,
    },
    Expired,
    NotYetValid,
}

/// (not before, not after) of a DER certificate, unix seconds.
pub fn window(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub fn classify((not_before, not_after): (i64, i64), now: i64, warn: Duration) -> Validity {
    let warn = i64::try_from(warn.as_secs()).unwrap_or(i64::MAX);
    let days_left = (not_after - now).div_euclid(86_400);
    if now < not_before {
        Validity::NotYetValid
    } else if now > not_after {
        Validity::Expired
    } else if not_after - now < warn {
        Validity::ExpiresSoon { days_left }
    } else {
        Validity::Fine { days_left }
    }
}

fn leaf_window(key: &ServedKey) -> Option<(i64, i64)> {
    key.certified.cert.first().and_then(|c| window(c.as_ref()))
}

/// After a load or reload: set the gauges and warn about certificates close to expiry.
pub fn observe(material: &Material, warn: Duration) {
    let now = now_unix();
    let mut gauges = Vec::new();
    for key in &material.keys {
        let Some(w) = leaf_window(key) else { continue };
        let path = key.cert_path.display().to_string();
        gauges.push((path.clone(), w.1));
        match classify(w, now, warn) {
            Validity::Fine { .. } => {}
            Validity::ExpiresSoon { days_left } => tracing::warn!(
                cert = %path,
                days_left,
                "certificate expires soon; renew it (the new file is picked up without a restart)"
            ),
            Validity::Expired => {
                tracing::error!(cert = %path, "certificate has expired; clients will refuse it")
            }
            Validity::NotYetValid => {
                tracing::error!(cert = %path, "certificate is not valid yet; check the clock")
            }
        }
    }
    METRICS.set_certificates(gauges);
}

/// The serving certificates whose not-after has passed (for `/readyz`).
pub fn expired_now() -> Vec<String> {
    let now = now_unix();
    METRICS
        .certificates()
        .into_iter()
        .filter(|(_, not_after)| *not_after < now)
        .map(|(path, _)| path)
        .collect()
}

/// A one-line description for `check`, or `None` when the certificate is fine.
pub fn warning(key: &ServedKey, warn: Duration) -> Option<String> {
    let w = leaf_window(key)?;
    let path = key.cert_path.display();
    match classify(w, now_unix(), warn) {
        Validity::Fine { .. } => None,
        Validity::ExpiresSoon { days_left } => Some(format!(
            "warning: {path} expires in {days_left} day(s) (tls.expiry_warning = {}); renew it",
            humantime::format_duration(warn)
        )),
        Validity::Expired => Some(format!("warning: {path} has expired; renew it")),
        Validity::NotYetValid => Some(format!("warning: {path} is not valid yet; check the clock")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn classifies_against_the_window() {
        let warn = Duration::from_secs(30 * DAY as u64);
        let now = 1_000 * DAY;
        assert_eq!(
            classify((0, now + 90 * DAY), now, warn),
            Validity::Fine { days_left: 90 }
        );
        assert_eq!(
            classify((0, now + DAY + 5), now, warn),
            Validity::ExpiresSoon { days_left: 1 }
        );
        assert_eq!(classify((0, now - 1), now, warn), Validity::Expired);
        assert_eq!(
            classify((now + 1, now + DAY), now, warn),
            Validity::NotYetValid
        );
    }
}
