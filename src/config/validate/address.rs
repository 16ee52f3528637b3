//! Listen addresses and upstreams: `IP:PORT` to bind, `HOST:PORT` to reach, and the rule
//! that the PACS is only reached on loopback unless the configuration says otherwise.

use std::net::{IpAddr, SocketAddr};

use super::super::error::ConfigError;
use super::super::settings::HttpUpstream;

pub(super) fn socket_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::new(
            key,
            format!("{value:?} is not an IP address with a port"),
            "write it as IP:PORT, e.g. \"0.0.0.0:443\" or \"[::]:443\"",
        )
    })
}

/// `host:port` where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
pub(super) fn host_port(key: &str, value: &str) -> Result<String, ConfigError> {
    let bad = || {
        ConfigError::new(
            key,
            format!("{value:?} is not HOST:PORT"),
            "write it as HOST:PORT, e.g. \"127.0.0.1:4242\"",
        )
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        }
    };
    if !host_ok || port == 0 {
        return Err(bad());
    }
    Ok(value.to_string())
}

pub(super) fn host_of(host_port: &str) -> &str {
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn is_loopback_host(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The PACS behind the gateway must listen on loopback only, unless `allow_key` says the
/// network between is trusted.
pub(super) fn require_local(
    key: &str,
    allow_key: &str,
    host_port: &str,
    allow_remote: bool,
) -> Result<(), ConfigError> {
    if allow_remote || is_loopback_host(host_of(host_port)) {
        return Ok(());
    }
    Err(ConfigError::new(
        key,
        "is not a loopback address; the PACS should only listen on localhost",
        format!("use 127.0.0.1, or set {allow_key} = true if the network between is trusted"),
    ))
}

pub(super) fn http_upstream(value: &str, allow_remote: bool) -> Result<HttpUpstream, ConfigError> {
    let rest = value.strip_prefix("http://").ok_or_else(|| {
        ConfigError::new(
            "http.upstream",
            format!("{value:?} is not a plain http:// URL"),
            "use the PACS's local REST address, e.g. \"http://127.0.0.1:8042\"",
        )
    })?;
    let authority = rest.trim_end_matches('/');
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    host_port("http.upstream", &with_port).map_err(|_| {
        ConfigError::new(
            "http.upstream",
            format!("{value:?} must be http://HOST:PORT with no path"),
            "e.g. \"http://127.0.0.1:8042\"",
        )
    })?;
    require_local(
        "http.upstream",
        "http.allow_remote_upstream",
        &with_port,
        allow_remote,
    )?;
    Ok(HttpUpstream {
        authority: with_port,
    })
}
