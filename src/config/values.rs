//! Value types and parsers every section shares (durations, addresses, certificates,
//! rates, counts): one wording per kind of mistake, whichever table it is in. Each parser
//! takes the dotted key for the error and returns a validated value or a [`ConfigError`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use ipnet::IpNet;

use super::certificate::{CertificateMatch, Fingerprint};
use super::error::ConfigError;

/// `N/s`, `N/min` or `N/h`, optionally `burst M` (default: N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
    pub burst: NonZeroU32,
}

impl Rate {
    pub fn parse(text: &str) -> Option<Rate> {
        let mut words = text.split_whitespace();
        let (count, unit) = words.next()?.split_once('/')?;
        let count: NonZeroU32 = count.parse().ok()?;
        let period = match unit {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return None,
        };
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => count,
            (Some("burst"), Some(n), None) => n.parse().ok()?,
            _ => return None,
        };
        Some(Rate {
            count,
            period,
            burst,
        })
    }

    /// The steady-state gap between two events.
    pub fn interval(&self) -> Duration {
        self.period / self.count.get()
    }
}

pub fn rate(key: &str, value: &str) -> Result<Rate, ConfigError> {
    Rate::parse(value).ok_or_else(|| {
        ConfigError::new(
            key,
            format!("{value:?} is not a rate"),
            "write N/s, N/min or N/h, optionally followed by `burst M`, e.g. \"20/s burst 40\"",
        )
    })
}

pub fn duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    match humantime::parse_duration(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(ConfigError::new(
            key,
            format!("{value:?} is not a positive duration"),
            "write it like \"30s\", \"500ms\" or \"15m\"",
        )),
    }
}

/// An address or a CIDR block; host names are not resolved (policy must not depend on DNS).
pub fn cidr(key: &str, value: &str) -> Result<IpNet, ConfigError> {
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            ConfigError::new(
                key,
                format!("{value:?} is not an IP address or CIDR"),
                "write e.g. \"127.0.0.1\", \"10.0.0.0/8\" or \"::1\" (host names are not resolved)",
            )
        })
}

/// `sha256:<fingerprint>`, else a subject CN or SAN.
pub fn certificate(key: &str, value: &str) -> Result<CertificateMatch, ConfigError> {
    let v = value.trim();
    if v.to_ascii_lowercase().starts_with("sha256:") {
        return Fingerprint::parse(v)
            .map(CertificateMatch::Fingerprint)
            .ok_or_else(|| {
                ConfigError::new(
                    key,
                    format!("{value:?} is not a SHA-256 fingerprint"),
                    "write sha256: and 64 hex digits (`pacsgate cert inspect FILE` prints it)",
                )
            });
    }
    if v.is_empty() {
        return Err(ConfigError::new(
            key,
            "is empty",
            "write a sha256: fingerprint or the certificate's subject CN or a SAN",
        ));
    }
    Ok(CertificateMatch::Name(v.to_string()))
}

pub fn positive(key: &str, value: usize) -> Result<usize, ConfigError> {
    at_least(key, value, 1)
}

pub fn at_least(key: &str, value: usize, min: usize) -> Result<usize, ConfigError> {
    if value < min {
        return Err(ConfigError::new(
            key,
            format!("{value} is too small"),
            format!("use at least {min}"),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let r = Rate::parse("20/s burst 40").unwrap();
        assert_eq!(
            (r.count.get(), r.period, r.burst.get()),
            (20, Duration::from_secs(1), 40)
        );
        assert_eq!(r.interval(), Duration::from_millis(50));
        let r = Rate::parse("5/min").unwrap();
        assert_eq!(
            (r.count.get(), r.period, r.burst.get()),
            (5, Duration::from_secs(60), 5)
        );
        for bad in [
            "",
            "5",
            "0/s",
            "5/day",
            "5/s burst",
            "5/s burst 0",
            "5/s bust 3",
        ] {
            assert!(Rate::parse(bad).is_none(), "{bad}");
            assert_eq!(rate("k.r", bad).unwrap_err().key, "k.r");
        }
    }

    #[test]
    fn certificates_are_fingerprints_or_names() {
        let fp = format!("sha256:{}", "ab".repeat(32));
        assert!(matches!(
            certificate("k", &fp),
            Ok(CertificateMatch::Fingerprint(_))
        ));
        assert_eq!(
            certificate("k", " ct1.example ").unwrap(),
            CertificateMatch::Name("ct1.example".into())
        );
        assert!(certificate("k", "sha256:12").is_err());
        assert!(certificate("k", "  ").is_err());
    }

    #[test]
    fn addresses_durations_and_counts() {
        assert_eq!(cidr("k", "10.0.0.1").unwrap().prefix_len(), 32);
        assert_eq!(cidr("k", "10.0.0.0/8").unwrap().prefix_len(), 8);
        assert!(cidr("k", "ct.example.org").is_err());
        assert_eq!(duration("k", "1m").unwrap(), Duration::from_secs(60));
        assert!(duration("k", "0s").is_err() && duration("k", "soon").is_err());
        assert!(positive("k", 0).is_err() && positive("k", 1).is_ok());
    }
}
