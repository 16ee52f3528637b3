//! The safe half of the plugin: start-up and the storage operations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use pacsgate_storage::backend::orthanc_name;
use pacsgate_storage::config::StorageConfig;
use pacsgate_storage::format::pge::PlainBuffer;
use pacsgate_storage::keys::cache::CachedKeys;
use pacsgate_storage::{Error, Store};

pub const NAME: &str = "pacsgate-storage";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// RegisterStorageArea2 and CreateMemoryBuffer64 arrived in Orthanc 1.9.0.
pub const MINIMAL_ORTHANC: (u32, u32, u32) = (1, 9, 0);

/// Orthanc error codes we return (OrthancCPlugin.h, `OrthancPluginErrorCode`).
pub const ERROR_INEXISTENT_FILE: i32 = 13;
pub const ERROR_STORAGE_AREA_PLUGIN: i32 = 32;

static STORE: RwLock<Option<Arc<Store>>> = RwLock::new(None);
static KEYS: RwLock<Option<Arc<CachedKeys>>> = RwLock::new(None);
/// Unix second of the last counters line; at most one every [`STATS_EVERY`] seconds.
static STATS_LOGGED: AtomicU64 = AtomicU64::new(0);
const STATS_EVERY: u64 = 60;

/// Parse Orthanc's configuration, load the keys and probe the backend. On success the
/// store is installed for the callbacks; the returned text is for the log.
pub fn start(orthanc_version: &str, configuration_json: &str) -> Result<String, String> {
    if !version_at_least(orthanc_version, MINIMAL_ORTHANC) {
        return Err(format!(
            "Orthanc {orthanc_version} is too old: this plugin needs 1.9.0 or later"
        ));
    }
    let json: serde_json::Value = serde_json::from_str(configuration_json)
        .map_err(|e| format!("cannot parse Orthanc's configuration: {e}"))?;
    let config = StorageConfig::from_orthanc(&json).map_err(|e| e.to_string())?;
    let (store, keys) = config.open().map_err(|e| e.to_string())?;
    let cache = config.cache;
    let summary = format!(
        "encrypting storage (format v3) on {} with master key {} ({}, {} previous); remote keys: one data key per {} objects or {} s, {} unwrapped keys cached",
        store.backend().describe(),
        config.master_key.0,
        config.master_key.1.kind(),
        config.previous_keys.len(),
        cache.reuse_count,
        cache.reuse_time.as_secs(),
        cache.pool_size
    );
    *STORE.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(store));
    *KEYS.write().unwrap_or_else(|p| p.into_inner()) = Some(keys);
    Ok(summary)
}

/// Remove the store; returns the final counters line for the log.
pub fn stop() -> Option<String> {
    *STORE.write().unwrap_or_else(|p| p.into_inner()) = None;
    let keys = KEYS.write().unwrap_or_else(|p| p.into_inner()).take();
    keys.filter(|k| k.stats().total() > 0)
        .map(|k| k.stats().summary())
}

/// The counters line, when [`STATS_EVERY`] seconds have passed since the last one.
pub fn stats_due() -> Option<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = STATS_LOGGED.load(Ordering::Relaxed);
    if now < last + STATS_EVERY
        || STATS_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return None;
    }
    let keys = KEYS.read().unwrap_or_else(|p| p.into_inner()).clone()?;
    // Key files only: nothing to report.
    (keys.stats().total() > 0).then(|| keys.stats().summary())
}

fn store() -> Result<Arc<Store>, Error> {
    STORE
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or(Error::Unsupported("the plugin is not initialised"))
}

/// Orthanc's content type (OrthancPluginContentType) as stored in v3 headers. Negative
/// values do not exist in the SDK; refuse them rather than wrap around.
fn content_type(kind: i32) -> Result<u32, Error> {
    u32::try_from(kind).map_err(|_| Error::BadHeader("negative content type"))
}

pub fn create(uuid: &str, kind: i32, data: &[u8]) -> Result<(), Error> {
    store()?.put(&orthanc_name(uuid)?, content_type(kind)?, data)
}

pub fn read_whole(uuid: &str, kind: i32, buffer: &mut dyn PlainBuffer) -> Result<(), Error> {
    store()?.read_whole(&orthanc_name(uuid)?, Some(content_type(kind)?), buffer)
}

pub fn read_range(uuid: &str, kind: i32, start: u64, out: &mut [u8]) -> Result<(), Error> {
    store()?.read_range(&orthanc_name(uuid)?, Some(content_type(kind)?), start, out)
}

pub fn remove(uuid: &str) -> Result<(), Error> {
    store()?.remove(&orthanc_name(uuid)?)
}

/// The Orthanc error code for a failure: a missing object is "inexistent file" (HTTP 404);
/// everything else, tampering and unknown keys included, is a storage-area error (500).
pub fn error_code(e: &Error) -> i32 {
    match e {
        Error::NotFound(_) => ERROR_INEXISTENT_FILE,
        _ => ERROR_STORAGE_AREA_PLUGIN,
    }
}

/// `"mainline"` or `major.minor.revision` at least `min` (OrthancPluginCheckVersionAdvanced).
pub fn version_at_least(version: &str, min: (u32, u32, u32)) -> bool {
    if version == "mainline" {
        return true;
    }
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (
        parts.next().flatten(),
        parts.next().flatten(),
        parts.next().flatten(),
    ) {
        (Some(a), Some(b), Some(c)) => (a, b, c) >= min,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(version_at_least("1.10.1", MINIMAL_ORTHANC));
        assert!(version_at_least("1.9.0", MINIMAL_ORTHANC));
        assert!(version_at_least("mainline", MINIMAL_ORTHANC));
        assert!(!version_at_least("1.8.2", MINIMAL_ORTHANC));
        assert!(!version_at_least("garbage", MINIMAL_ORTHANC));
    }

    #[test]
    fn start_fails_closed_on_missing_keys() {
        let err = start(
            "1.10.1",
            r#"{"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "/nonexistent/key"]}}}"#,
        )
        .unwrap_err();
        assert!(err.contains("/nonexistent/key"), "{err}");
        assert!(start("1.10.1", "{}").is_err());
        assert!(start("1.8.0", "{}").unwrap_err().contains("too old"));
        assert!(matches!(
            create("01234567-89ab-cdef-0123-456789abcdef", 1, b"x"),
            Err(Error::Unsupported(_))
        ));
    }
}
