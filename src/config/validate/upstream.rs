//! The HTTP upstream clocks: `http.upstream_timeout` (response head) and
//! `http.upstream_body_timeout` (gap in the response body).

use std::time::Duration;

use super::super::error::ConfigError;
use super::super::values::duration;

const DEFAULT: Duration = Duration::from_secs(60);

/// One upstream clock. It must run out before `http.idle_timeout`, which would otherwise
/// close a client connection waiting on a stalled PACS first, with no 504 and no reason.
/// Unset: 60 s, or half the idle timeout when that is 60 s or less.
pub(super) fn clock(
    key: &str,
    value: Option<&str>,
    idle: Duration,
) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(if DEFAULT < idle { DEFAULT } else { idle / 2 });
    };
    let d = duration(key, value)?;
    if d >= idle {
        return Err(ConfigError::new(
            key,
            format!("{value:?} is not shorter than http.idle_timeout ({idle:?})"),
            "set it below http.idle_timeout (the idle client connection would be closed first, without a 504), or raise http.idle_timeout",
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(120);

    #[test]
    fn unset_is_sixty_seconds_below_the_idle_timeout() {
        assert_eq!(clock("k", None, IDLE).ok(), Some(DEFAULT));
        let short = Duration::from_secs(40);
        assert_eq!(clock("k", None, short).ok(), Some(Duration::from_secs(20)));
    }

    #[test]
    fn explicit_values_must_be_shorter_than_the_idle_timeout() {
        assert_eq!(
            clock("k", Some("90s"), IDLE).ok(),
            Some(Duration::from_secs(90))
        );
        for bad in ["120s", "5m", "0s", "soon"] {
            let e = clock("http.upstream_timeout", Some(bad), IDLE).unwrap_err();
            assert!(e.to_string().starts_with("http.upstream_timeout: "), "{e}");
        }
    }
}
