//! `[cluster]`: the Redis that holds rates and lockouts shared by replicas. Only plain
//! `redis://HOST:PORT[/DB]` is accepted: credentials inside the URL would end up in `ps`,
//! in logs and in `pacsgate check`'s output, so they are refused in favour of
//! `redis_password_file`; `rediss://` (TLS) is refused because this build has no TLS
//! client for Redis (keep Redis on loopback or a private network).

use std::path::Path;
use std::time::Duration;

use super::super::error::ConfigError;
use super::super::raw::RawCluster;
use super::super::settings::ClusterConfig;
use super::super::values::duration;
use super::address::host_port;
use super::paths::resolve;

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_PREFIX: &str = "pacsgate";
/// A decision that waits longer than this on Redis holds every request it guards.
const MAX_TIMEOUT: Duration = Duration::from_secs(2);

pub(in super::super) fn cluster(
    raw: &RawCluster,
    base: &Path,
) -> Result<ClusterConfig, ConfigError> {
    let Some(url) = raw.redis.as_deref() else {
        return Err(ConfigError::new(
            "cluster.redis",
            "is missing: [cluster] needs the Redis that holds the shared limits",
            "set cluster.redis = \"redis://127.0.0.1:6379\", or remove [cluster] for in-process limits",
        ));
    };
    let (host, port, db) = redis_url(url)?;
    let timeout = match raw.timeout.as_deref() {
        None => DEFAULT_TIMEOUT,
        Some(t) => duration("cluster.timeout", t)?,
    };
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(ConfigError::new(
            "cluster.timeout",
            format!("{timeout:?} is outside 1ms..2s"),
            "every guarded request may wait this long on Redis: keep it short, e.g. \"50ms\"",
        ));
    }
    let key_prefix = raw
        .key_prefix
        .as_deref()
        .unwrap_or(DEFAULT_PREFIX)
        .to_string();
    let prefix_ok = !key_prefix.is_empty()
        && key_prefix.len() <= 64
        && key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if !prefix_ok {
        return Err(ConfigError::new(
            "cluster.key_prefix",
            format!("{key_prefix:?} is not 1-64 characters of A-Z a-z 0-9 - _ . :"),
            "use a short name for this deployment, e.g. \"pacsgate-prod\"",
        ));
    }
    Ok(ClusterConfig {
        redis: url.to_string(),
        host,
        port,
        db,
        password_file: raw.redis_password_file.as_ref().map(|p| resolve(base, p)),
        timeout,
        key_prefix,
    })
}

/// `redis://HOST:PORT[/DB]` -> (host, port, db).
fn redis_url(url: &str) -> Result<(String, u16, i64), ConfigError> {
    const KEY: &str = "cluster.redis";
    // Before anything that echoes the URL: an error must not print the password.
    if url.contains('@') {
        return Err(ConfigError::new(
            KEY,
            "holds credentials (user:password@): they would show in process lists, logs and `pacsgate check`",
            "remove them from the URL and put the password in a 0600 file named by cluster.redis_password_file",
        ));
    }
    let Some(rest) = url.strip_prefix("redis://") else {
        let fix = if url.starts_with("rediss://") {
            "TLS to Redis is not supported: use redis:// on loopback or a private network"
        } else {
            "write it as redis://HOST:PORT, e.g. \"redis://127.0.0.1:6379\""
        };
        return Err(ConfigError::new(
            KEY,
            format!("{url:?} is not a redis:// URL"),
            fix,
        ));
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if url.contains(['?', '#']) {
        return Err(ConfigError::new(
            KEY,
            format!("{url:?} has a query or fragment"),
            "write it as redis://HOST:PORT[/DB]",
        ));
    }
    let hostport = host_port(KEY, authority)?;
    let (host, port) = hostport
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)))
        .ok_or_else(|| {
            ConfigError::new(
                KEY,
                format!("{url:?} has no port"),
                "write redis://HOST:PORT",
            )
        })?;
    let db = if path.is_empty() {
        0
    } else {
        path.parse::<u16>().map(i64::from).map_err(|_| {
            ConfigError::new(
                KEY,
                format!("{path:?} is not a database number"),
                "write redis://HOST:PORT/N with N a number, or leave /N out",
            )
        })?
    };
    Ok((host, port, db))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str) -> RawCluster {
        RawCluster {
            redis: Some(url.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn urls_without_credentials_only() {
        let c = cluster(&raw("redis://127.0.0.1:6379/2"), Path::new("/etc")).unwrap();
        assert_eq!((c.host.as_str(), c.port, c.db), ("127.0.0.1", 6379, 2));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.key_prefix, "pacsgate");
        let v6 = cluster(&raw("redis://[::1]:6380"), Path::new("/")).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 6380));
        for (bad, key_word) in [
            ("redis://:secret@127.0.0.1:6379", "credentials"),
            ("redis://user:pw@127.0.0.1:6379", "credentials"),
            ("redis://u@h:1", "credentials"),
            ("rediss://127.0.0.1:6379", "not a redis://"),
            ("rediss://:secret@127.0.0.1:6379", "credentials"),
            ("http://127.0.0.1:6379", "not a redis://"),
            ("redis://127.0.0.1", "HOST:PORT"),
            ("redis://127.0.0.1:6379/x", "database"),
            ("redis://127.0.0.1:6379?password=x", "query"),
        ] {
            let e = cluster(&raw(bad), Path::new("/")).unwrap_err().to_string();
            assert!(
                e.contains("cluster.redis") && e.contains(key_word),
                "{bad}: {e}"
            );
            assert!(
                !e.contains("secret") && !e.contains("pw@"),
                "secret echoed: {e}"
            );
        }
    }

    #[test]
    fn timeout_and_prefix_are_bounded() {
        let mut r = raw("redis://127.0.0.1:6379");
        r.timeout = Some("10s".into());
        assert!(cluster(&r, Path::new("/"))
            .unwrap_err()
            .to_string()
            .contains("cluster.timeout"));
        r.timeout = Some("20ms".into());
        r.key_prefix = Some("a b".into());
        let e = cluster(&r, Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("cluster.key_prefix"), "{e}");
        assert!(cluster(&RawCluster::default(), Path::new("/"))
            .unwrap_err()
            .to_string()
            .contains("cluster.redis"));
    }
}
