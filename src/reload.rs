//! Live reconfiguration. SIGHUP re-reads the configuration file and the TLS material;
//! a file change reloads the TLS material. Parts that take the new configuration
//! (policies, users, limits) implement [`Reloadable`]: all of them validate first, and
//! only if every one succeeds do they all switch, so a bad file changes nothing.
//! Listener addresses, `proxy_protocol` lists and TLS file paths need a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::audit::Audit;
use crate::config::{Config, ConfigError};
use crate::metrics::METRICS;
use crate::tls::reload::TlsReloader;

/// A prepared switch to a new configuration, applied only if every part prepared fine.
pub type Commit = Box<dyn FnOnce() + Send>;

pub trait Reloadable: Send + Sync {
    /// Validate what this part needs from `config`; return the switch to apply.
    fn prepare(&self, config: &Config) -> Result<Commit, ConfigError>;
}

pub struct Reloader {
    pub config_path: PathBuf,
    pub tls: Option<Arc<TlsReloader>>,
    pub watch_tls: bool,
    pub audit: Arc<Audit>,
    pub parts: Vec<Arc<dyn Reloadable>>,
}

impl Reloader {
    /// Run until the process ends.
    pub async fn run(self) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => s,
            Err(e) => return tracing::error!(error = %e, "cannot listen for SIGHUP"),
        };
        let (_watcher, mut changes) = self.watch();
        loop {
            tokio::select! {
                s = hangup.recv() => {
                    if s.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading");
                    crate::notify::reloading();
                    self.audit.reopen();
                    self.reload_tls(true).await;
                    self.reload_config().await;
                    crate::notify::ready();
                }
                Some(()) = recv(&mut changes) => {
                    // Let a burst of events (cert, then key) settle before reading files.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Some(rx) = changes.as_mut() {
                        while rx.try_recv().is_ok() {}
                    }
                    self.reload_tls(false).await;
                }
            }
        }
    }

    fn watch(
        &self,
    ) -> (
        Option<notify::RecommendedWatcher>,
        Option<mpsc::UnboundedReceiver<()>>,
    ) {
        match self
            .tls
            .as_ref()
            .filter(|_| self.watch_tls)
            .map(|t| t.watch())
        {
            Some(Ok((w, rx))) => (Some(w), Some(rx)),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot watch certificate files; reload with SIGHUP");
                (None, None)
            }
            None => (None, None),
        }
    }

    async fn reload_tls(&self, force: bool) {
        let Some(tls) = self.tls.clone() else { return };
        match tokio::task::spawn_blocking(move || tls.reload(force)).await {
            Ok(Ok(changed)) => {
                if changed {
                    METRICS.reloads.inc(("tls", "ok"));
                }
            }
            Ok(Err(e)) => {
                METRICS.reloads.inc(("tls", "failed"));
                tracing::error!(error = %e, "TLS reload failed; keeping the current certificates")
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload panicked; keeping the current certificates")
            }
        }
    }

    async fn reload_config(&self) {
        if self.parts.is_empty() {
            return;
        }
        let path = self.config_path.clone();
        let parts = self.parts.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let config = Config::load(&path)?;
            parts
                .iter()
                .map(|p| p.prepare(&config))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        match prepared {
            Ok(Ok(commits)) => {
                METRICS.reloads.inc(("config", "ok"));
                commits.into_iter().for_each(|commit| commit());
                tracing::info!("configuration reloaded");
            }
            Ok(Err(e)) => {
                METRICS.reloads.inc(("config", "failed"));
                tracing::error!(error = %e, "configuration reload failed; keeping the current configuration")
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload panicked; keeping the current configuration")
            }
        }
    }
}

async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match rx.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
