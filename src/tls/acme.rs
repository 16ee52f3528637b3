//! ACME (RFC 8555) for the primary certificate, with `instant-acme`: on start and every
//! `check_interval`, if `tls.cert` is missing, not from this CA's order yet (self-signed),
//! or expires within `renew_before`, order a certificate for `domains`, answer the HTTP-01
//! challenges (RFC 8555 §8.3) on `http01_listen`, write key and chain atomically, and hot
//! swap them through the TLS reload path (`TlsReloader::reload`). Failures are logged and
//! retried with backoff; the current certificate keeps serving.

pub mod http01;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use self::http01::Challenges;
use super::expiry;
use super::reload::TlsReloader;
use crate::config::{AcmeConfig, KeyPairPaths};

/// Why an issuance failed (logged; the next attempt comes after a backoff).
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("ACME account file {path}: {source}")]
    Account {
        path: String,
        source: std::io::Error,
    },
    #[error("ACME order for {domains:?} ended {status:?}")]
    Order {
        domains: Vec<String>,
        status: OrderStatus,
    },
    #[error("ACME authorization for {0} offers no http-01 challenge")]
    NoHttp01(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

pub struct Acme {
    pub config: AcmeConfig,
    pub pair: KeyPairPaths,
    pub challenges: Challenges,
    pub reloader: Arc<TlsReloader>,
}

impl Acme {
    /// Run until the process ends.
    pub async fn run(self) {
        let mut backoff = Duration::from_secs(5);
        loop {
            let wait = if due(&self.pair.cert, self.config.renew_before) {
                match self.issue().await {
                    Ok(()) => {
                        backoff = Duration::from_secs(5);
                        self.config.check_interval
                    }
                    Err(e) => {
                        tracing::error!(error = %e, retry_s = backoff.as_secs(), "ACME issuance failed; the current certificate keeps serving");
                        let wait = backoff;
                        backoff = (backoff * 2).min(self.config.check_interval);
                        wait
                    }
                }
            } else {
                self.config.check_interval
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn issue(&self) -> Result<(), AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .config
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let mut tokens = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let name = format!("{:?}", authz.identifier());
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or(AcmeError::NoHttp01(name))?;
            let token = challenge.token.clone();
            self.challenges.insert(
                token.clone(),
                challenge.key_authorization().as_str().to_string(),
            );
            tokens.push(token);
            challenge.set_ready().await?;
        }
        let result = self.finish(&mut order).await;
        for token in &tokens {
            self.challenges.remove(token);
        }
        let (key_pem, chain_pem) = result?;
        write_atomically(&self.pair.key, key_pem.as_bytes(), 0o600)?;
        write_atomically(&self.pair.cert, chain_pem.as_bytes(), 0o644)?;
        tracing::info!(domains = ?self.config.domains, cert = %self.pair.cert.display(), "ACME certificate issued");
        if due(&self.pair.cert, self.config.renew_before) {
            tracing::warn!(
                renew_before = %humantime::format_duration(self.config.renew_before),
                "tls.acme.renew_before is longer than the CA's certificate lifetime: renewing at every check_interval"
            );
        }
        let reloader = self.reloader.clone();
        match tokio::task::spawn_blocking(move || reloader.reload(true)).await {
            Ok(Ok(_)) => crate::metrics::METRICS.reloads.inc(("tls", "ok")),
            Ok(Err(e)) => tracing::error!(error = %e, "the ACME certificate did not load"),
            Err(e) => tracing::error!(error = %e, "TLS reload panicked"),
        }
        Ok(())
    }

    async fn finish(&self, order: &mut instant_acme::Order) -> Result<(String, String), AcmeError> {
        let retry = RetryPolicy::default().timeout(Duration::from_secs(120));
        let status = order.poll_ready(&retry).await?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Order {
                domains: self.config.domains.clone(),
                status,
            });
        }
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&retry).await?;
        Ok((key_pem, chain_pem))
    }

    /// The stored account, or a new one (stored 0600 for the next run).
    async fn account(&self) -> Result<Account, AcmeError> {
        let builder = match &self.config.ca {
            Some(ca) => Account::builder_with_root(ca)?,
            None => Account::builder()?,
        };
        let path = &self.config.account;
        let io = |source| AcmeError::Account {
            path: path.display().to_string(),
            source,
        };
        if let Ok(text) = std::fs::read_to_string(path) {
            let credentials: AccountCredentials = serde_json::from_str(&text)
                .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
            return Ok(builder.from_credentials(credentials).await?);
        }
        let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.config.directory.clone(),
                None,
            )
            .await?;
        let json = serde_json::to_vec(&credentials)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        write_atomically(path, &json, 0o600)?;
        tracing::info!(account = %path.display(), "ACME account created");
        Ok(account)
    }
}

/// A new certificate is due when the current one is missing, unreadable, self-signed
/// (issuer = subject: the first-start placeholder) or expires within `renew_before`.
pub fn due(cert: &Path, renew_before: Duration) -> bool {
    let Ok(chain) = super::material::load_chain("tls.cert", cert) else {
        return true;
    };
    let Some(leaf) = chain.first() else {
        return true;
    };
    if is_self_signed(leaf.as_ref()) {
        return true;
    }
    match expiry::window(leaf.as_ref()) {
        Some((_, not_after)) => renewal_due(not_after, expiry::now_unix(), renew_before),
        None => true,
    }
}

pub fn renewal_due(not_after: i64, now: i64, renew_before: Duration) -> bool {
    not_after - now < i64::try_from(renew_before.as_secs()).unwrap_or(i64::MAX)
}

fn is_self_signed(der: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der).is_ok_and(|(_, c)| c.issuer() == c.subject())
}

/// Temp file in the same directory, fsync, rename: a reader (the file watcher, a restart)
/// never sees half a key or a key without its certificate's directory entry.
fn write_atomically(path: &Path, data: &[u8], mode: u32) -> Result<(), AcmeError> {
    let err = |source| AcmeError::Write {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("acme-tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_inside_the_window_only() {
        let day = 86_400;
        let before = Duration::from_secs(30 * 86_400);
        assert!(!renewal_due(100 * day, 0, before));
        assert!(renewal_due(29 * day, 0, before));
        assert!(renewal_due(-1, 0, before));
    }
}
