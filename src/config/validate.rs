//! Raw TOML -> validated [`Config`]. Each check names the key it failed on and the fix.

mod address;
mod audit;
mod budget;
mod cluster;
mod paths;
mod proxy;
mod tls_section;
mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use self::address::{host_of, host_port, http_upstream, require_local, socket_addr};
use self::paths::{pair_error, readable, resolve};
use self::tls_section::{listener_client_auth, tls, tls_version};
use super::error::ConfigError;
use super::raw::{RawConfig, RawDicom, RawHttp, RawOutbound};
use super::settings::*;
use super::values::{at_least, duration, positive};

impl Config {
    /// Read and validate the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path.display().to_string(),
                format!("cannot read the configuration file: {e}"),
                "pass an existing file with --config",
            )
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut config = Self::parse(&text, base)?;
        config.source = path.to_path_buf();
        Ok(config)
    }

    /// Validate configuration text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw = deserialize(text)?;
        validate(raw, base)
    }
}

pub(super) fn deserialize(text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| syntax_error(text, &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let message = e.inner().message().to_string();
        let fix = if message.starts_with("unknown field") {
            "remove it or fix its spelling (the commented config.toml lists every key)"
        } else {
            "see the commented config.toml for the expected form"
        };
        ConfigError::new(key, message, fix)
    })
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
        .unwrap_or(1);
    ConfigError::new(
        format!("line {line}"),
        format!("invalid TOML: {}", e.message()),
        "fix the syntax at that line",
    )
}

pub(super) fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let tls = tls(raw.tls, base)?;
    let http = raw
        .http
        .enabled
        .then(|| http(raw.http, &raw.users, &tls, base))
        .transpose()?;
    let outbound = raw
        .dicom
        .outbound
        .iter()
        .enumerate()
        .map(|(i, o)| outbound(i, o, &raw.dicom, base))
        .collect::<Result<Vec<_>, _>>()?;
    let dicom = raw
        .dicom
        .enabled
        .then(|| dicom(raw.dicom, &tls))
        .transpose()?;
    if http.is_none() && dicom.is_none() && outbound.is_empty() {
        return Err(ConfigError::new(
            "http.enabled",
            "every listener is disabled",
            "enable [http] or [dicom], or add a [[dicom.outbound]] tunnel",
        ));
    }
    let format = match raw.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::new(
                "log.format",
                format!("unknown format {other:?}"),
                "use \"text\" or \"json\"",
            ))
        }
    };
    log_level(&raw.log.level)?;
    let public: Vec<SocketAddr> = http
        .iter()
        .map(|h| h.listen)
        .chain(dicom.iter().map(|d| d.listen))
        .chain(outbound.iter().map(|o| o.listen))
        .collect();
    Ok(Config {
        source: PathBuf::new(),
        tls,
        http,
        dicom,
        outbound,
        log: LogConfig {
            format,
            level: raw.log.level,
        },
        shutdown_grace: duration("server.shutdown_grace", &raw.server.shutdown_grace)?,
        worker_threads: raw.server.worker_threads,
        run_as: raw.server.user.as_deref().map(run_as).transpose()?,
        audit: audit::audit(raw.audit, base)?,
        admin: admin(&raw.admin, &public)?,
        cluster: raw
            .cluster
            .as_ref()
            .map(|c| cluster::cluster(c, base))
            .transpose()?,
    })
}

fn http(
    raw: RawHttp,
    users: &std::collections::BTreeMap<String, super::raw::RawUser>,
    tls: &TlsConfig,
    base: &Path,
) -> Result<HttpConfig, ConfigError> {
    let policy = super::policy::policy(&raw, users, base, &tls.primary.cert)?;
    let listen = socket_addr("http.listen", &raw.listen)?;
    let upstream = http_upstream(&raw.upstream, raw.allow_remote_upstream)?;
    let client_auth = listener_client_auth("http.client_auth", raw.client_auth, tls)?;
    if let Some(u) = policy.users.iter().find(|u| u.certificate.is_some()) {
        if client_auth == ClientAuth::None {
            return Err(ConfigError::new(
                format!("users.{}.certificate", u.name),
                "the HTTPS listener does not ask for client certificates",
                "set tls.client_ca (client_auth then defaults to \"optional\")",
            ));
        }
    }
    let max_connections = positive("http.max_connections", raw.max_connections)?;
    let idle_timeout = duration("http.idle_timeout", &raw.idle_timeout)?;
    let upstream_clock =
        |key, value: &Option<String>| upstream::clock(key, value.as_deref(), idle_timeout);
    Ok(HttpConfig {
        listen,
        upstream,
        client_auth,
        max_connections,
        budget: budget::budget(
            "http",
            (raw.max_pending_per_ip, raw.max_connections_per_ip),
            &raw.pending_timeout,
            max_connections,
        )?,
        proxy_protocol: proxy::proxy_protocol("http", &raw.proxy_protocol)?,
        max_header_bytes: at_least("http.max_header_bytes", raw.max_header_bytes, 8192)?,
        handshake_timeout: duration("http.handshake_timeout", &raw.handshake_timeout)?,
        header_timeout: duration("http.header_timeout", &raw.header_timeout)?,
        upstream_connect_timeout: duration(
            "http.upstream_connect_timeout",
            &raw.upstream_connect_timeout,
        )?,
        upstream_timeout: upstream_clock("http.upstream_timeout", &raw.upstream_timeout)?,
        upstream_body_timeout: upstream_clock(
            "http.upstream_body_timeout",
            &raw.upstream_body_timeout,
        )?,
        idle_timeout,
        policy,
    })
}

fn dicom(raw: RawDicom, tls: &TlsConfig) -> Result<DicomConfig, ConfigError> {
    let listen = socket_addr("dicom.listen", &raw.listen)?;
    let upstream = host_port("dicom.upstream", &raw.upstream)?;
    require_local(
        "dicom.upstream",
        "dicom.allow_remote_upstream",
        &upstream,
        raw.allow_remote_upstream,
    )?;
    let client_auth = listener_client_auth("dicom.client_auth", raw.client_auth.clone(), tls)?;
    let policy = super::dicom_policy::policy(&raw)?;
    let max_associations = positive("dicom.max_associations", raw.max_associations)?;
    Ok(DicomConfig {
        budget: budget::budget(
            "dicom",
            (raw.max_pending_per_ip, raw.max_connections_per_ip),
            &raw.pending_timeout,
            max_associations,
        )?,
        proxy_protocol: proxy::proxy_protocol("dicom", &raw.proxy_protocol)?,
        policy,
        listen,
        upstream,
        client_auth,
        max_associations,
        max_pdu_length: pdu_length("dicom.max_pdu_length", raw.max_pdu_length)?,
        handshake_timeout: duration("dicom.handshake_timeout", &raw.handshake_timeout)?,
        artim_timeout: duration("dicom.artim_timeout", &raw.artim_timeout)?,
        upstream_connect_timeout: duration(
            "dicom.upstream_connect_timeout",
            &raw.upstream_connect_timeout,
        )?,
        idle_timeout: duration("dicom.idle_timeout", &raw.idle_timeout)?,
    })
}

/// A tunnel's association phases share `[dicom]`'s PDU cap, ARTIM and TLS handshake
/// timeouts with the inbound listener (`dicom::flow`); connect and idle are per tunnel.
fn outbound(
    index: usize,
    raw: &RawOutbound,
    dicom: &RawDicom,
    base: &Path,
) -> Result<OutboundConfig, ConfigError> {
    let max_pdu_length = dicom.max_pdu_length;
    let name = format!("dicom.outbound[{index}]");
    let key = |k: &str| format!("{name}.{k}");
    let listen = socket_addr(&key("listen"), &raw.listen)?;
    let remote = host_port(&key("remote"), &raw.remote)?;
    let server_name = raw
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(&remote).to_string());
    rustls::pki_types::ServerName::try_from(server_name.clone()).map_err(|_| {
        ConfigError::new(
            key("server_name"),
            format!("{server_name:?} is not a DNS name or IP address"),
            "set server_name to the name in the remote peer's certificate",
        )
    })?;
    let ca = raw.ca.as_ref().map(|p| resolve(base, p)).ok_or_else(|| {
        ConfigError::new(
            key("ca"),
            "is missing: the remote peer's certificate must be verified",
            "set it to the PEM bundle of the CA that issued the remote peer's certificate",
        )
    })?;
    readable(&key("ca"), &ca)?;
    let client_identity = match (&raw.client_cert, &raw.client_key) {
        (Some(cert), Some(k)) => {
            let pair = KeyPairPaths {
                cert: resolve(base, cert),
                key: resolve(base, k),
                cert_key: "dicom.outbound.client_cert",
                key_key: "dicom.outbound.client_key",
            };
            readable(&key("client_cert"), &pair.cert)?;
            readable(&key("client_key"), &pair.key)?;
            Some(pair)
        }
        (None, None) => None,
        (Some(_), None) => return Err(pair_error(&key("client_key"), &key("client_cert"))),
        (None, Some(_)) => return Err(pair_error(&key("client_cert"), &key("client_key"))),
    };
    let opt_duration = |k: &str, v: &Option<String>, default: &str| {
        duration(&key(k), v.as_deref().unwrap_or(default))
    };
    Ok(OutboundConfig {
        listen,
        remote,
        server_name,
        ca,
        client_identity,
        min_version: tls_version(
            &key("min_version"),
            raw.min_version.as_deref().unwrap_or("1.2"),
        )?,
        handshake_timeout: duration("dicom.handshake_timeout", &dicom.handshake_timeout)?,
        artim_timeout: duration("dicom.artim_timeout", &dicom.artim_timeout)?,
        connect_timeout: opt_duration("connect_timeout", &raw.connect_timeout, "10s")?,
        idle_timeout: opt_duration("idle_timeout", &raw.idle_timeout, "300s")?,
        max_pdu_length,
        remote_aets: raw
            .remote_aets
            .iter()
            .map(|a| super::dicom_policy::ae_title(&key("remote_aets"), a))
            .collect::<Result<_, _>>()?,
        name,
    })
}

fn run_as(name: &str) -> Result<RunAs, ConfigError> {
    let user = nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .ok_or_else(|| {
            ConfigError::new(
                "server.user",
                format!("no such user {name:?}"),
                format!("create it (useradd --system {name}) or remove the key"),
            )
        })?;
    Ok(RunAs {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

// === shared by the sections ===

fn pdu_length(key: &str, value: u32) -> Result<u32, ConfigError> {
    // PS3.8 §9.3.1: P-DATA-TF PDUs of at least a few KiB are needed by every peer; Orthanc
    // and dcmtk default to 16 KiB.
    const MIN: u32 = 4096;
    const MAX: u32 = 64 * 1024 * 1024;
    if !(MIN..=MAX).contains(&value) {
        return Err(ConfigError::new(
            key,
            format!("{value} is out of range"),
            format!("use a length between {MIN} and {MAX} bytes"),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;

/// `log.level`: a level, or comma-separated `target=level` directives. tracing's own filter
/// syntax takes a bare word as a target name, so a typo such as "verbose" would silently
/// turn every log line off (the open-mode warning included): only level names are taken.
fn log_level(value: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |l: &str| LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l.trim()));
    let is_target = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
    };
    let ok = !value.trim().is_empty()
        && value
            .split(',')
            .all(|directive| match directive.split_once('=') {
                None => is_level(directive),
                Some((target, level)) => is_target(target.trim()) && is_level(level),
            })
        && tracing_subscriber::EnvFilter::try_new(value).is_ok();
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "log.level",
            format!("unknown level or filter {value:?}"),
            "use off, error, warn, info, debug or trace, or directives such as \"info,pacsgate=debug\"",
        ))
    }
}

/// `[admin]`: off unless `listen` is set; loopback unless `allow_remote = true`.
fn admin(
    raw: &super::raw::RawAdmin,
    public: &[SocketAddr],
) -> Result<Option<AdminConfig>, ConfigError> {
    let Some(listen) = &raw.listen else {
        return Ok(None);
    };
    let listen = socket_addr("admin.listen", listen)?;
    if public.iter().any(|p| p.port() == listen.port()) {
        return Err(ConfigError::new(
            "admin.listen",
            format!("port {} is also a public listener's", listen.port()),
            "give the admin listener its own port, e.g. 127.0.0.1:9090",
        ));
    }
    if !listen.ip().is_loopback() && !raw.allow_remote {
        return Err(ConfigError::new(
            "admin.listen",
            format!("{listen} is not a loopback address; the admin listener has no authentication"),
            "use 127.0.0.1:9090, or set admin.allow_remote = true and firewall the port",
        ));
    }
    Ok(Some(AdminConfig { listen }))
}
