//! Hot reload of certificates, keys, client CAs and CRLs: on SIGHUP (forced) and when a
//! watched file changes on disk. New handshakes get the new material; established
//! connections keep theirs; a broken new file is logged and the old material stays.
//!
//! Files are watched through their directories (editors and Kubernetes replace files by
//! rename), and a reload only happens when the bytes actually changed, so a cert written
//! before its key simply fails once and succeeds on the key's event.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use rustls::crypto::CryptoProvider;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::error::TlsError;
use super::material::Material;
use super::server::ReloadableServer;
use crate::config::TlsConfig;

/// The server-side TLS state of every listener, reloaded together.
pub struct TlsReloader {
    config: TlsConfig,
    provider: Arc<CryptoProvider>,
    servers: Vec<Arc<ReloadableServer>>,
    last_digest: Mutex<[u8; 32]>,
}

impl TlsReloader {
    pub fn new(
        config: TlsConfig,
        provider: Arc<CryptoProvider>,
        servers: Vec<Arc<ReloadableServer>>,
    ) -> Self {
        let digest = files_digest(&Material::watched_paths(&config));
        Self {
            config,
            provider,
            servers,
            last_digest: Mutex::new(digest),
        }
    }

    /// Reload if the files changed (or always, if `force`). `Ok(false)`: nothing changed.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let digest = files_digest(&Material::watched_paths(&self.config));
        let mut last = crate::sync::lock(&self.last_digest);
        if !force && *last == digest {
            return Ok(false);
        }
        let material = Material::load(&self.config, &self.provider)?;
        super::expiry::observe(&material, self.config.expiry_warning);
        for server in &self.servers {
            server.reload(&material)?;
        }
        *last = digest;
        for key in &material.keys {
            tracing::info!(
                cert = %key.cert_path.display(),
                fingerprint = %key.fingerprint,
                "TLS material reloaded"
            );
        }
        Ok(true)
    }

    /// Start watching the material's directories; each change sends `()` on the channel.
    /// Keep the returned watcher alive for as long as changes should be seen.
    pub fn watch(&self) -> notify::Result<(RecommendedWatcher, mpsc::UnboundedReceiver<()>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })?;
        let dirs: BTreeSet<PathBuf> = Material::watched_paths(&self.config)
            .iter()
            .filter_map(|p| {
                p.parent().map(|d| {
                    if d.as_os_str().is_empty() {
                        ".".into()
                    } else {
                        d.to_path_buf()
                    }
                })
            })
            .collect();
        for dir in dirs {
            watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        }
        Ok((watcher, rx))
    }
}

/// SHA-256 over the contents of all files (a missing file hashes as empty).
fn files_digest(paths: &[PathBuf]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for path in paths {
        let bytes = std::fs::read(path).unwrap_or_default();
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(&bytes);
    }
    hasher.finalize().into()
}
