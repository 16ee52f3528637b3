//! The plugin's configuration, read from Orthanc's JSON (the plugin gets it from Orthanc,
//! the CLI from the file). Key names inside `StorageEncryption` are the official plugin's,
//! so an existing section can be moved over as it is:
//!
//! ```json
//! "PacsgateStorage": {
//!   "StorageEncryption": {
//!     "Enable": true,
//!     "MasterKey": [2, "/etc/orthanc/keys/2.key"],
//!     "PreviousMasterKeys": [[1, "/etc/orthanc/keys/1.key"]],
//!     "MaxConcurrentInputSize": 1024
//!   },
//! ```
//!
//! Key locations may also be `pkcs11:<RFC 7512 URI>` or `aws-kms:<key id or ARN>` (see
//! [`crate::keys::location`]); an `aws-kms:` key needs `"Kms": {"Region": "eu-west-1",
//! "Endpoint": "https://..."}` in `StorageEncryption`. Remote keys are cached within
//! `DataKeyReuseCount` (objects per data key, default 1000; 1 = none),
//! `DataKeyReuseSeconds` (default 300) and `DataKeyCacheSize` (unwrapped keys kept for
//! reads, default 1000; 0 = none), see [`crate::keys::cache`].
//!
//! ```json
//!   "Location": { "Type": "filesystem", "Root": "/var/lib/orthanc/db" }
//! }
//! ```
//!
//! `Location` may also be `{"Type": "object", "Url": "s3://bucket/prefix", "Options":
//! {...}}` (object_store keys). Without `Location`, objects go to Orthanc's
//! `StorageDirectory`. Everything is validated up front; unknown keys are errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::backend::fs::FsBackend;
use crate::backend::Backend;
use crate::keys::cache::{CachePolicy, CachedKeys};
use crate::keys::location::{KeyLocation, Remotes};
use crate::keys::KeyRing;
use crate::{Error, Store};

mod remote;

use self::remote::{key_entry, kms_settings, vault_settings};

pub const SECTION: &str = "PacsgateStorage";
const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    pub master_key: (u32, KeyLocation),
    pub previous_keys: Vec<(u32, KeyLocation)>,
    /// The `Kms` and `Vault` objects.
    pub remotes: Remotes,
    pub cache: CachePolicy,
    /// `AcceptUnboundFormats` (default true): read v2 and A1 objects, which are not bound
    /// to their name. Set false once `migrate` has upgraded the storage.
    pub accept_unbound: bool,
    /// `MaxConcurrentInputSize` in bytes.
    pub max_input: u64,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Filesystem(PathBuf),
    Object {
        url: String,
        options: Vec<(String, String)>,
    },
}

/// A configuration mistake, naming the key and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{SECTION}: {0}")]
pub struct ConfigError(String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

// === impl StorageConfig ===

impl StorageConfig {
    /// Parse from the whole Orthanc configuration object.
    pub fn from_orthanc(root: &Value) -> Result<StorageConfig, ConfigError> {
        let section = root.get(SECTION).ok_or_else(|| {
            bad("section missing; the plugin refuses to store anything without its keys")
        })?;
        let section = object(section, SECTION)?;
        only_keys(section, SECTION, &["StorageEncryption", "Location"])?;
        let enc = section
            .get("StorageEncryption")
            .ok_or_else(|| bad("StorageEncryption missing (MasterKey is required)"))?;
        let enc = object(enc, "StorageEncryption")?;
        only_keys(
            enc,
            "StorageEncryption",
            &[
                "Enable",
                "MasterKey",
                "PreviousMasterKeys",
                "MaxConcurrentInputSize",
                "Kms",
                "Vault",
                "AcceptUnboundFormats",
                "DataKeyReuseCount",
                "DataKeyReuseSeconds",
                "DataKeyCacheSize",
            ],
        )?;
        if enc.get("Enable").is_some_and(|v| v != &Value::Bool(true)) {
            return Err(bad("StorageEncryption.Enable must be true: this plugin never stores plaintext (remove it from Plugins instead)"));
        }
        let master_key = key_entry(
            enc.get("MasterKey").ok_or_else(|| {
                bad("StorageEncryption.MasterKey missing: [id, \"/path/to/key\"]")
            })?,
            "StorageEncryption.MasterKey",
        )?;
        let previous_keys = match enc.get("PreviousMasterKeys") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| key_entry(v, "StorageEncryption.PreviousMasterKeys[]"))
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(bad(
                    "StorageEncryption.PreviousMasterKeys must be [[id, path], ...]",
                ))
            }
        };
        let max_input = match enc.get("MaxConcurrentInputSize") {
            None => 1024 * MIB,
            Some(v) => v
                .as_u64()
                .filter(|&mb| mb > 0)
                .and_then(|mb| mb.checked_mul(MIB))
                .ok_or_else(|| {
                    bad("StorageEncryption.MaxConcurrentInputSize must be a positive number of MB")
                })?,
        };
        let kms = enc.get("Kms").map(kms_settings).transpose()?;
        let uses_kms = std::iter::once(&master_key)
            .chain(&previous_keys)
            .any(|(_, l)| matches!(l, KeyLocation::AwsKms(_)));
        if uses_kms && kms.is_none() {
            return Err(bad(
                "StorageEncryption.Kms missing: an aws-kms: key needs {\"Region\": ..., \"Endpoint\": ...}",
            ));
        }
        let vault = enc.get("Vault").map(vault_settings).transpose()?;
        let uses_vault = std::iter::once(&master_key)
            .chain(&previous_keys)
            .any(|(_, l)| matches!(l, KeyLocation::VaultTransit(_)));
        if uses_vault && vault.is_none() {
            return Err(bad(
                "StorageEncryption.Vault missing: a vault-transit: key needs {\"Address\": \"https://...\"}",
            ));
        }
        let number = |key: &str, default: u64, min: u64| match enc.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|&n| n >= min && n <= u64::from(u32::MAX))
                .ok_or_else(|| {
                    bad(format!(
                        "StorageEncryption.{key} must be an integer from {min} to 4294967295"
                    ))
                }),
        };
        let accept_unbound = match enc.get("AcceptUnboundFormats") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(bad(
                    "StorageEncryption.AcceptUnboundFormats must be true or false",
                ))
            }
        };
        let default = CachePolicy::DEFAULT;
        let cache = CachePolicy {
            reuse_count: number("DataKeyReuseCount", default.reuse_count.into(), 1)? as u32,
            reuse_time: Duration::from_secs(number(
                "DataKeyReuseSeconds",
                default.reuse_time.as_secs(),
                0,
            )?),
            pool_size: number("DataKeyCacheSize", default.pool_size as u64, 0)? as usize,
        };
        let location = match section.get("Location") {
            None => Location::Filesystem(PathBuf::from(
                root.get("StorageDirectory")
                    .and_then(Value::as_str)
                    .unwrap_or("OrthancStorage"),
            )),
            Some(v) => location(v)?,
        };
        Ok(StorageConfig {
            master_key,
            previous_keys,
            remotes: Remotes { kms, vault },
            cache,
            accept_unbound,
            max_input,
            location,
        })
    }

    /// Load or connect to every key; the current one must wrap and unwrap (a probe).
    pub fn key_ring(&self) -> Result<KeyRing, Error> {
        let remotes = &self.remotes;
        let current = self.master_key.1.open(self.master_key.0, remotes)?;
        let previous = self
            .previous_keys
            .iter()
            .map(|(id, loc)| Ok((*id, loc.open(*id, remotes)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let ring = KeyRing::from_providers((self.master_key.0, current), previous);
        ring.probe()?;
        Ok(ring)
    }

    /// Load the keys, build the backend and prove both work (fail closed).
    pub fn open(&self) -> Result<(Store, Arc<CachedKeys>), Error> {
        let keys = Arc::new(CachedKeys::new(self.key_ring()?, self.cache));
        let backend = self.location.backend()?;
        backend.check()?;
        let store =
            Store::new(keys.clone(), backend, self.max_input).refuse_unbound(!self.accept_unbound);
        Ok((store, keys))
    }
}

impl Location {
    pub fn backend(&self) -> Result<Box<dyn Backend>, Error> {
        match self {
            Location::Filesystem(root) => Ok(Box::new(FsBackend::new(root))),
            #[cfg(feature = "object-store")]
            Location::Object { url, options } => Ok(Box::new(
                crate::backend::object::ObjectBackend::new(url, options.clone())?,
            )),
            #[cfg(not(feature = "object-store"))]
            Location::Object { .. } => {
                Err(Error::Unsupported("built without the object-store feature"))
            }
        }
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what} must be a JSON object")))
}

fn only_keys(map: &Map<String, Value>, what: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "{what}: unknown key {k:?} (expected one of {allowed:?})"
        ))),
        None => Ok(()),
    }
}

fn location(v: &Value) -> Result<Location, ConfigError> {
    let map = object(v, "Location")?;
    match map.get("Type").and_then(Value::as_str) {
        Some("filesystem") => {
            only_keys(map, "Location", &["Type", "Root"])?;
            let root = map
                .get("Root")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("Location.Root (a directory) is required for filesystem"))?;
            Ok(Location::Filesystem(PathBuf::from(root)))
        }
        Some("object") => {
            only_keys(map, "Location", &["Type", "Url", "Options"])?;
            let url = map
                .get("Url")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("Location.Url is required, e.g. \"s3://bucket/prefix\""))?;
            let mut options = Vec::new();
            if let Some(opts) = map.get("Options") {
                for (k, v) in object(opts, "Location.Options")? {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        _ => return Err(bad(format!("Location.Options.{k} must be a string"))),
                    };
                    options.push((k.clone(), v));
                }
            }
            Ok(Location::Object {
                url: url.to_string(),
                options,
            })
        }
        _ => Err(bad("Location.Type must be \"filesystem\" or \"object\"")),
    }
}

/// Orthanc accepts `//` and `/* */` comments in its configuration files; the stripper is
/// shared with the gateway (`doctor`) through a crate without dependencies.
pub use pacsgate_orthanc_json::strip_comments as strip_json_comments;

#[cfg(test)]
mod tests;
