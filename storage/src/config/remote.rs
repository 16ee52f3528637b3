//! Key entries and the remote key services' settings (`Kms`, `Vault`) of
//! `StorageEncryption`.

use serde_json::Value;

use super::{bad, object, only_keys, ConfigError};
use crate::keys::location::{loopback_http, KeyLocation, KmsSettings, VaultSettings};

/// `[id, location]` with id an unsigned 32-bit integer, as in the official plugin, and the
/// location a key file path, `pkcs11:...` or `aws-kms:...`.
pub(super) fn key_entry(v: &Value, what: &str) -> Result<(u32, KeyLocation), ConfigError> {
    let fix = || {
        bad(format!(
            "{what} must be [id, \"/path/to/key\" | \"pkcs11:...\" | \"aws-kms:...\"] with id in 0..=4294967295"
        ))
    };
    match v.as_array().map(Vec::as_slice) {
        Some([id, Value::String(text)]) => {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(fix)?;
            let location = KeyLocation::parse(text).map_err(|e| bad(format!("{what}: {e}")))?;
            Ok((id, location))
        }
        _ => Err(fix()),
    }
}

/// `"Vault": {"Address": "https://vault:8200", "Mount": "transit"}` (Mount optional).
pub(super) fn vault_settings(v: &Value) -> Result<VaultSettings, ConfigError> {
    let map = object(v, "StorageEncryption.Vault")?;
    only_keys(map, "StorageEncryption.Vault", &["Address", "Mount"])?;
    let address = map
        .get("Address")
        .and_then(Value::as_str)
        .filter(|a| a.starts_with("https://") || loopback_http(a))
        .ok_or_else(|| {
            bad("StorageEncryption.Vault.Address must be an https:// URL (http:// only to a loopback address)")
        })?;
    let mount = match map.get("Mount") {
        None => "transit",
        Some(Value::String(m))
            if !m.is_empty()
                && m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b))
                && !m.starts_with('/') =>
        {
            m.as_str()
        }
        Some(_) => {
            return Err(bad(
                "StorageEncryption.Vault.Mount must be a mount path, e.g. \"transit\"",
            ))
        }
    };
    Ok(VaultSettings {
        address: address.to_string(),
        mount: mount.to_string(),
    })
}

/// `"Kms": {"Region": "...", "Endpoint": "https://..."}`.
pub(super) fn kms_settings(v: &Value) -> Result<KmsSettings, ConfigError> {
    let map = object(v, "StorageEncryption.Kms")?;
    only_keys(map, "StorageEncryption.Kms", &["Region", "Endpoint"])?;
    let region = map
        .get("Region")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .ok_or_else(|| {
            bad("StorageEncryption.Kms.Region must be an AWS region, e.g. \"eu-west-1\"")
        })?;
    let endpoint = match map.get("Endpoint") {
        None => None,
        Some(Value::String(e)) if e.starts_with("https://") || loopback_http(e) => Some(e.clone()),
        Some(_) => {
            return Err(bad(
                "StorageEncryption.Kms.Endpoint must be an https:// URL (http:// only to a loopback address)",
            ))
        }
    };
    Ok(KmsSettings {
        endpoint,
        region: region.to_string(),
    })
}
