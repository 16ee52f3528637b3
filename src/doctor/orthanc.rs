//! Checks of the Orthanc behind the gateway: its configuration (read from its JSON) and
//! what the running process shows (ports reachable from the network, `GET /system`).

use std::net::{IpAddr, SocketAddr};

use base64::Engine;
use serde_json::Value;

use super::finding::Finding;
use super::gateway::secret_file;
use super::orthanc_json::OrthancConfig;
use super::probe;
use crate::config::Config;

pub fn checks(orthanc: Option<&OrthancConfig>, gateway: Option<&Config>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(o) = orthanc {
        out.extend(settings(o, gateway));
        out.extend(storage_keys(o));
    }
    let (http_port, dicom_port) = ports(orthanc, gateway);
    out.push(reachability("orthanc http port", http_port));
    out.push(reachability("orthanc dicom port", dicom_port));
    if let Some(o) = orthanc {
        out.push(storage_plugin(o, http_port, gateway));
    }
    out
}

/// Orthanc's ports: from its configuration (1.10.1 defaults 8042/4242), else from the
/// gateway's upstreams.
fn ports(orthanc: Option<&OrthancConfig>, gateway: Option<&Config>) -> (u16, u16) {
    let port = |s: &str| s.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
    let from_gateway = (
        gateway
            .and_then(|c| c.http.as_ref())
            .and_then(|h| port(&h.upstream.authority)),
        gateway
            .and_then(|c| c.dicom.as_ref())
            .and_then(|d| port(&d.upstream)),
    );
    let from_orthanc = |key: &str, default: u16| {
        orthanc.map(|o| u16::try_from(o.u64_or(key, u64::from(default))).unwrap_or(default))
    };
    (
        from_orthanc("HttpPort", 8042)
            .or(from_gateway.0)
            .unwrap_or(8042),
        from_orthanc("DicomPort", 4242)
            .or(from_gateway.1)
            .unwrap_or(4242),
    )
}

fn settings(o: &OrthancConfig, gateway: Option<&Config>) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(if o.bool_or("RemoteAccessAllowed", false) {
        Finding::fail(
            "RemoteAccessAllowed",
            "true: Orthanc answers REST requests from other machines, around the gateway",
            "set \"RemoteAccessAllowed\": false (pacsgate reaches it on loopback)",
        )
    } else {
        Finding::pass("RemoteAccessAllowed", "false")
    });
    let credentials = gateway
        .and_then(|c| c.http.as_ref())
        .and_then(|h| h.policy.upstream_credentials_file.as_ref());
    out.push(match (o.authentication_enabled(), credentials) {
        (true, Some(_)) => Finding::pass(
            "AuthenticationEnabled",
            "true, and the gateway sends http.upstream_credentials_file",
        ),
        (true, None) => Finding::fail(
            "AuthenticationEnabled",
            "true, but the gateway has no http.upstream_credentials_file: Orthanc answers it 401",
            "write user:password of a RegisteredUsers account to a 0600 file and set http.upstream_credentials_file",
        ),
        (false, _) => Finding::warn(
            "AuthenticationEnabled",
            "false: any local process, and any request Orthanc makes to itself, has full access",
            "set \"AuthenticationEnabled\": true with a RegisteredUsers account only the gateway knows (http.upstream_credentials_file)",
        ),
    });
    for key in ["LimitFindResults", "LimitFindInstances"] {
        out.push(if o.u64_or(key, 0) == 0 {
            Finding::warn(
                key,
                "0 (unlimited): one C-FIND or /tools/find can make Orthanc list everything",
                &format!("set \"{key}\" to a bound such as 100"),
            )
        } else {
            Finding::pass(key, o.u64_or(key, 0).to_string())
        });
    }
    for key in ["DicomAlwaysAllowStore", "DicomAlwaysAllowEcho"] {
        out.push(if o.bool_or(key, true) {
            Finding::warn(
                key,
                "true: any AE title that reaches Orthanc's DICOM port may use it",
                &format!("set \"{key}\": false and list peers in DicomModalities"),
            )
        } else {
            Finding::pass(key, "false")
        });
    }
    out.push(flag(
        o,
        "DicomCheckCalledAet",
        false,
        true,
        "false: Orthanc accepts associations whatever called AE title they name",
        "set \"DicomCheckCalledAet\": true",
    ));
    out.push(flag(o, "WebDavEnabled", true, false,
        "true: WebDAV exposes the archive as a writable file system (denied at the gateway unless allowed)",
        "set \"WebDavEnabled\": false"));
    out.push(flag(o, "ExecuteLuaEnabled", false, false,
        "true: POST /tools/execute-script runs code in Orthanc (denied at the gateway unless allowed)",
        "set \"ExecuteLuaEnabled\": false"));
    out
}

/// PASS when `key` (default `default`) equals `good`, else WARN with `bad` and `fix`.
fn flag(o: &OrthancConfig, key: &str, default: bool, good: bool, bad: &str, fix: &str) -> Finding {
    let v = o.bool_or(key, default);
    if v == good {
        Finding::pass(key, v.to_string())
    } else {
        Finding::warn(key, bad, fix)
    }
}

/// The `StorageEncryption` section: pacsgate's plugin keeps it under `PacsgateStorage`,
/// Orthanc's official plugin at the top level (same names, DESIGN.md).
fn encryption(o: &OrthancConfig) -> Option<&Value> {
    o.get("PacsgateStorage")
        .and_then(|p| p.get("StorageEncryption"))
        .or_else(|| o.get("StorageEncryption"))
}

/// `StorageEncryption.MasterKey` / `PreviousMasterKeys` entries that are files.
fn storage_keys(o: &OrthancConfig) -> Vec<Finding> {
    let Some(enc) = encryption(o) else {
        return Vec::new();
    };
    let mut entries: Vec<&Value> = enc.get("MasterKey").into_iter().collect();
    if let Some(Value::Array(prev)) = enc.get("PreviousMasterKeys") {
        entries.extend(prev);
    }
    entries
        .iter()
        .filter_map(|e| e.get(1).and_then(Value::as_str))
        .filter(|loc| !loc.starts_with("pkcs11:") && !loc.starts_with("aws-kms:"))
        // Orthanc's account owns these (it reads them); root or doctor's user is fine too.
        .map(|loc| {
            let path = std::path::Path::new(loc);
            let owner = std::fs::metadata(path)
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m));
            secret_file(
                "StorageEncryption master key",
                path,
                owner.filter(|_| orthanc_user_owns(path)),
            )
        })
        .collect()
}

/// True when the file belongs to the `orthanc` account (Debian's package user).
fn orthanc_user_owns(path: &std::path::Path) -> bool {
    let uid = std::fs::metadata(path).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    let orthanc = nix::unistd::User::from_name("orthanc").ok().flatten();
    matches!((uid, orthanc), (Ok(u), Some(o)) if o.uid.as_raw() == u)
}

fn reachability(check: &str, port: u16) -> Finding {
    let addrs = probe::non_loopback_addresses();
    if addrs.is_empty() {
        return Finding::warn(
            check,
            format!(
                "cannot tell: this machine has no non-loopback address to try port {port} from"
            ),
            "check from another machine: nc -vz <this host> PORT must fail",
        );
    }
    let open: Vec<String> = addrs
        .iter()
        .map(|ip| SocketAddr::new(*ip, port))
        .filter(|a| probe::connects(*a))
        .map(|a| a.to_string())
        .collect();
    if open.is_empty() {
        let tried: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
        Finding::pass(check, format!("{port} refused on {}", tried.join(", ")))
    } else {
        Finding::fail(
            check,
            format!("reachable on {} around the gateway (Orthanc 1.10.1 binds 0.0.0.0)", open.join(", ")),
            &format!("block it for everyone but loopback: nft add rule inet filter input iif != lo tcp dport {port} drop"),
        )
    }
}

/// The storage plugin: every configured plugin path exists (Orthanc silently starts
/// without a missing one), and `GET /system` says `StorageAreaPlugin` when reachable.
fn storage_plugin(o: &OrthancConfig, http_port: u16, gateway: Option<&Config>) -> Finding {
    let check = "storage plugin";
    let encryption = encryption(o).is_some();
    let plugins: Vec<&str> = match o.get("Plugins") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(missing) = plugins.iter().find(|p| !std::path::Path::new(p).exists()) {
        return Finding::fail(
            check,
            format!("plugin path {missing} does not exist; Orthanc starts without it"),
            "install the plugin (/usr/lib/pacsgate) or fix the path in \"Plugins\"",
        );
    }
    if !encryption {
        return Finding::warn(
            check,
            "no StorageEncryption section: files at rest are plaintext",
            "load pacsgate's storage plugin and configure StorageEncryption (README: encrypted storage)",
        );
    }
    let cache = o.u64_or("MaximumStorageCacheSize", 128);
    if cache != 0 {
        return Finding::warn(
            check,
            format!("MaximumStorageCacheSize is {cache} MB: decrypted files are kept in Orthanc's memory"),
            "set \"MaximumStorageCacheSize\": 0",
        );
    }
    let auth = gateway
        .and_then(|c| c.http.as_ref())
        .and_then(|h| h.policy.upstream_credentials_file.as_ref())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| t.lines().next().map(str::trim).map(str::to_string))
        .map(|line| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(line)
            )
        });
    let addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    match probe::http_get(addr, "/system", auth.as_deref()) {
        Ok((200, body)) => {
            let system: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            match system.get("StorageAreaPlugin") {
                Some(Value::String(p)) => Finding::pass(check, format!("loaded: {p}")),
                _ => Finding::fail(
                    check,
                    "GET /system shows no StorageAreaPlugin: Orthanc writes plaintext",
                    "check Orthanc's log for the plugin and its \"Plugins\" entry",
                ),
            }
        }
        Ok((status, _)) => Finding::warn(
            check,
            format!("configured, but GET /system answered {status}; cannot confirm it is loaded"),
            "set http.upstream_credentials_file to an account Orthanc accepts",
        ),
        Err(e) => Finding::warn(
            check,
            format!("configured, but Orthanc is not reachable on {addr} ({e})"),
            "start Orthanc, then run doctor again",
        ),
    }
}
