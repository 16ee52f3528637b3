//! `max_pending_per_ip`, `max_connections_per_ip` and `pending_timeout` of a listener.
//! Unset caps scale with the listener's own limit, so a small `max_connections` still
//! cannot be filled from one address: a quarter of it per address in all, a sixteenth
//! per address before authenticating (at least 1 each).

use super::super::error::ConfigError;
use super::super::settings::ConnectionBudget;
use super::super::values::{duration, positive};

pub(super) fn budget(
    section: &str,
    (pending, total): (Option<usize>, Option<usize>),
    pending_timeout: &str,
    limit: usize,
) -> Result<ConnectionBudget, ConfigError> {
    let key = |k: &str| format!("{section}.{k}");
    let total = match total {
        Some(n) => positive(&key("max_connections_per_ip"), n)?,
        None => (limit / 4).max(1),
    };
    let pending = match pending {
        Some(n) => positive(&key("max_pending_per_ip"), n)?,
        None => (limit / 16).clamp(1, total),
    };
    if pending > total {
        return Err(ConfigError::new(
            key("max_pending_per_ip"),
            format!("{pending} is more than {section}.max_connections_per_ip ({total})"),
            format!("lower it, or raise {section}.max_connections_per_ip"),
        ));
    }
    Ok(ConnectionBudget {
        max_pending_per_ip: pending,
        max_connections_per_ip: total,
        pending_timeout: duration(&key("pending_timeout"), pending_timeout)?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn unset_caps_scale_with_the_listener_limit() {
        let b = budget("http", (None, None), "10s", 1024).unwrap();
        assert_eq!((b.max_pending_per_ip, b.max_connections_per_ip), (64, 256));
        assert_eq!(b.pending_timeout, Duration::from_secs(10));
        let b = budget("dicom", (None, None), "5s", 2).unwrap();
        assert_eq!((b.max_pending_per_ip, b.max_connections_per_ip), (1, 1));
        let b = budget("http", (None, Some(8)), "5s", 1024).unwrap();
        assert_eq!(
            b.max_pending_per_ip, 8,
            "the default never exceeds the total cap"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = |r: Result<ConnectionBudget, ConfigError>| r.unwrap_err().key;
        let l = 64;
        assert_eq!(
            err(budget("http", (Some(0), None), "1s", l)),
            "http.max_pending_per_ip"
        );
        assert_eq!(
            err(budget("dicom", (None, Some(0)), "1s", l)),
            "dicom.max_connections_per_ip"
        );
        assert_eq!(
            err(budget("http", (Some(9), Some(8)), "1s", l)),
            "http.max_pending_per_ip"
        );
        assert_eq!(
            err(budget("http", (None, None), "0s", l)),
            "http.pending_timeout"
        );
        assert_eq!(
            err(budget("http", (None, None), "soon", l)),
            "http.pending_timeout"
        );
    }
}
