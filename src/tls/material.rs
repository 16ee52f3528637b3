//! Certificates and keys from disk: PEM chains and keys (PKCS#8, PKCS#1 RSA, SEC1) through
//! rustls-pki-types, with the key checked against the certificate, and client CA bundles
//! and CRLs. Everything returns a [`ConfigError`] naming the key, so a bad file at start
//! exits 64 and a bad file at reload is logged while the old material keeps serving.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureAlgorithm};

use super::identity::Fingerprint;
use crate::config::{ConfigError, KeyPairPaths, TlsConfig};

/// One certificate chain with its private key, ready to serve.
#[derive(Debug, Clone)]
pub struct ServedKey {
    pub certified: Arc<CertifiedKey>,
    pub algorithm: SignatureAlgorithm,
    pub fingerprint: Fingerprint,
    pub cert_path: std::path::PathBuf,
}

/// Everything the server side of TLS reads from disk, loaded at one moment.
#[derive(Debug, Clone)]
pub struct Material {
    /// The primary pair first, then the optional RSA pair.
    pub keys: Vec<ServedKey>,
    pub client_roots: Option<Arc<RootCertStore>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

impl Material {
    pub fn load(config: &TlsConfig, provider: &Arc<CryptoProvider>) -> Result<Self, ConfigError> {
        let mut keys = vec![load_pair(&config.primary, provider)?];
        if let Some(rsa) = &config.rsa {
            if rsa.cert.exists() || rsa.key.exists() {
                keys.push(load_pair(rsa, provider)?);
            }
        }
        let client_roots = config
            .client_ca
            .as_deref()
            .map(|p| load_roots("tls.client_ca", p))
            .transpose()?;
        let crls = config
            .client_crl
            .iter()
            .map(|p| load_crls(p))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        Ok(Self {
            keys,
            client_roots,
            crls,
        })
    }

    /// Every file the material was read from (watched for hot reload).
    pub fn watched_paths(config: &TlsConfig) -> Vec<std::path::PathBuf> {
        let mut paths = vec![config.primary.cert.clone(), config.primary.key.clone()];
        if let Some(rsa) = &config.rsa {
            paths.extend([rsa.cert.clone(), rsa.key.clone()]);
        }
        paths.extend(config.client_ca.iter().cloned());
        paths.extend(config.client_crl.iter().cloned());
        paths
    }
}

/// Load a certificate chain and its key, and check that they belong together.
pub fn load_pair(
    paths: &KeyPairPaths,
    provider: &Arc<CryptoProvider>,
) -> Result<ServedKey, ConfigError> {
    let chain = load_chain(paths.cert_key, &paths.cert)?;
    let key = load_key(paths.key_key, &paths.key)?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        ConfigError::new(
            paths.key_key,
            format!(
                "{} does not match the certificate in {} ({e})",
                paths.key.display(),
                paths.cert.display()
            ),
            "use the private key that was issued with this certificate",
        )
    })?;
    let fingerprint = Fingerprint::of(certified.cert[0].as_ref());
    Ok(ServedKey {
        algorithm: certified.key.algorithm(),
        certified: Arc::new(certified),
        fingerprint,
        cert_path: paths.cert.clone(),
    })
}

pub fn load_chain(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(key, path, "certificate", e))?;
    if chain.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{} contains no PEM certificate", path.display()),
            "use a PEM file with -----BEGIN CERTIFICATE----- blocks, leaf first",
        ));
    }
    Ok(chain)
}

pub fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    warn_if_readable_by_others(key, path);
    refuse_encrypted(key, path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(key, path, "private key", e))
}

/// An encrypted key (PKCS#8 `ENCRYPTED PRIVATE KEY`, RFC 5958 §3, or OpenSSL's legacy
/// `Proc-Type: 4,ENCRYPTED` PEM) would otherwise read as "no private key". A passphrase
/// would have to sit in a file beside it, which protects nothing a 0600 key does not, so
/// the fix is to decrypt it once.
fn refuse_encrypted(key: &str, path: &Path) -> Result<(), ConfigError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(()); // unreadable or binary: the PEM loader reports it
    };
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        let p = path.display();
        return Err(ConfigError::new(
            key,
            format!("{p} is an encrypted private key (passphrase-protected)"),
            format!(
                "decrypt it once: openssl pkey -in {p} -out {p}.plain && chmod 600 {p}.plain, then point {key} at it"
            ),
        ));
    }
    Ok(())
}

pub fn load_roots(key: &str, path: &Path) -> Result<Arc<RootCertStore>, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in load_chain(key, path)? {
        roots.add(cert).map_err(|e| {
            ConfigError::new(
                key,
                format!("{}: a certificate is not a usable CA: {e}", path.display()),
                "list only CA certificates in this bundle",
            )
        })?;
    }
    Ok(Arc::new(roots))
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, ConfigError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error("tls.client_crl", path, "CRL", e))?;
    if crls.is_empty() {
        return Err(ConfigError::new(
            "tls.client_crl",
            format!("{} contains no PEM X509 CRL", path.display()),
            "use a PEM file with -----BEGIN X509 CRL----- blocks",
        ));
    }
    Ok(crls)
}

fn pem_error(key: &str, path: &Path, what: &str, e: rustls::pki_types::pem::Error) -> ConfigError {
    use rustls::pki_types::pem::Error as E;
    let problem = match e {
        E::Io(io) => format!("cannot read {}: {io}", path.display()),
        E::NoItemsFound => format!("{} contains no PEM {what}", path.display()),
        other => format!("{} is not valid PEM: {other:?}", path.display()),
    };
    ConfigError::new(key, problem, format!("point it at a readable PEM {what}"))
}

/// DESIGN.md: key files readable by others are warned about (not refused: a container may
/// run with a shared group on purpose).
fn warn_if_readable_by_others(key: &str, path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                config.key = key,
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "private key is readable by group or others; chmod 600 it"
            );
        }
    }
}
