//! `[audit]`: the file, the in-memory queue in front of its writer, and what happens when
//! records cannot be written (README "Audit when the disk is full").

use std::path::Path;
use std::time::Duration;

use super::super::error::ConfigError;
use super::super::raw::RawAudit;
use super::super::settings::{AuditConfig, AuditOnFull};
use super::super::values::duration;
use super::paths::resolve;

/// 8192 records of ~350 bytes: a few MiB, and at the bench's 25k requests/s a third of a
/// second of a stalled disk before records are lost.
const DEFAULT_QUEUE: usize = 8192;
/// Bounds: below 16 a burst of one client's keep-alive requests overflows it; above a
/// million the memory bound (1 KiB per record) stops meaning anything.
const QUEUE_RANGE: std::ops::RangeInclusive<usize> = 16..=1_000_000;
const DEFAULT_FLUSH: &str = "5ms";
const MAX_FLUSH: Duration = Duration::from_secs(10);

pub(super) fn audit(raw: RawAudit, base: &Path) -> Result<AuditConfig, ConfigError> {
    let queue = raw.queue.unwrap_or(DEFAULT_QUEUE);
    if !QUEUE_RANGE.contains(&queue) {
        return Err(ConfigError::new(
            "audit.queue",
            format!("{queue} records is out of range"),
            format!(
                "use {} to {} records (default {DEFAULT_QUEUE})",
                QUEUE_RANGE.start(),
                QUEUE_RANGE.end()
            ),
        ));
    }
    let flush = duration("audit.flush", raw.flush.as_deref().unwrap_or(DEFAULT_FLUSH))?;
    if flush > MAX_FLUSH {
        return Err(ConfigError::new(
            "audit.flush",
            format!("{flush:?} is too long: records of the last seconds would sit in memory"),
            "use at most \"10s\" (default \"5ms\")",
        ));
    }
    let on_full = match raw.on_full.as_deref().unwrap_or("drop") {
        "drop" => AuditOnFull::Drop,
        "refuse" => AuditOnFull::Refuse,
        other => {
            return Err(ConfigError::new(
                "audit.on_full",
                format!("unknown choice {other:?}"),
                "use \"drop\" (serve, count lost records) or \"refuse\" (503 / A-ASSOCIATE-RJ until records can be written)",
            ))
        }
    };
    Ok(AuditConfig {
        path: raw.path.map(|p| resolve(base, &p)),
        queue,
        flush,
        on_full,
    })
}

#[cfg(test)]
mod tests {
    use super::super::super::settings::Config;

    fn parse(text: &str) -> Result<Config, super::ConfigError> {
        Config::parse(text, std::path::Path::new("/etc/pacsgate"))
    }

    #[test]
    fn defaults_and_bad_values_name_their_key() {
        let c = parse("").unwrap();
        assert_eq!(c.audit.queue, super::DEFAULT_QUEUE);
        assert_eq!(c.audit.on_full, super::AuditOnFull::Drop);
        assert_eq!(c.audit.flush, std::time::Duration::from_millis(5));
        let c = parse("[audit]\non_full = \"refuse\"\nqueue = 100\npath = \"a.jsonl\"").unwrap();
        assert_eq!(c.audit.on_full, super::AuditOnFull::Refuse);
        assert_eq!(c.audit.queue, 100);
        assert_eq!(
            c.audit.path.as_deref(),
            Some(std::path::Path::new("/etc/pacsgate/a.jsonl"))
        );
        for (bad, key) in [
            ("queue = 0", "audit.queue"),
            ("queue = 2000000", "audit.queue"),
            ("flush = \"0s\"", "audit.flush"),
            ("flush = \"1m\"", "audit.flush"),
            ("on_full = \"block\"", "audit.on_full"),
        ] {
            let e = parse(&format!("[audit]\n{bad}")).unwrap_err();
            assert_eq!(e.key, key, "{bad}");
        }
    }
}
