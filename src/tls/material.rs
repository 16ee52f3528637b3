//! Certificates and keys from disk: PEM chains and keys (PKCS#8, PKCS#1 RSA, SEC1) through
//! rustls-pki-types, with the key checked against the certificate, and client CA bundles
//! and CRLs. Everything returns a [`TlsError`] naming the key, so a bad file at start
//! exits 64 and a bad file at reload is logged while the old material keeps serving.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureAlgorithm};

use super::error::{TlsError, TlsErrorKind as K};
use super::identity::Fingerprint;
use crate::config::{KeyPairPaths, TlsConfig};

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
    pub fn load(config: &TlsConfig, provider: &Arc<CryptoProvider>) -> Result<Self, TlsError> {
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
) -> Result<ServedKey, TlsError> {
    let chain = load_chain(paths.cert_key, &paths.cert)?;
    let key = load_key(paths.key_key, &paths.key)?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|source| {
        let kind = K::KeyMismatch {
            key: paths.key.clone(),
            cert: paths.cert.clone(),
            source,
        };
        TlsError::new(paths.key_key, kind)
    })?;
    let fingerprint = Fingerprint::of(certified.cert[0].as_ref());
    Ok(ServedKey {
        algorithm: certified.key.algorithm(),
        certified: Arc::new(certified),
        fingerprint,
        cert_path: paths.cert.clone(),
    })
}

pub fn load_chain(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(key, path, "certificate", e))?;
    if chain.is_empty() {
        let kind = K::Empty {
            path: path.to_path_buf(),
            block: "certificate",
            fix: "use a PEM file with -----BEGIN CERTIFICATE----- blocks, leaf first",
        };
        return Err(TlsError::new(key, kind));
    }
    Ok(chain)
}

pub fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    warn_if_readable_by_others(key, path);
    refuse_encrypted(key, path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(key, path, "private key", e))
}

/// An encrypted key (PKCS#8 `ENCRYPTED PRIVATE KEY`, RFC 5958 §3, or OpenSSL's legacy
/// `Proc-Type: 4,ENCRYPTED` PEM) would otherwise read as "no private key". A passphrase
/// would have to sit in a file beside it, which protects nothing a 0600 key does not, so
/// the fix is to decrypt it once.
fn refuse_encrypted(key: &str, path: &Path) -> Result<(), TlsError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(()); // unreadable or binary: the PEM loader reports it
    };
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        let kind = K::Encrypted {
            path: path.to_path_buf(),
        };
        return Err(TlsError::new(key, kind));
    }
    Ok(())
}

pub fn load_roots(key: &str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_chain(key, path)? {
        roots.add(cert).map_err(|source| {
            let kind = K::NotCa {
                path: path.to_path_buf(),
                source,
            };
            TlsError::new(key, kind)
        })?;
    }
    Ok(Arc::new(roots))
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error("tls.client_crl", path, "CRL", e))?;
    if crls.is_empty() {
        let kind = K::Empty {
            path: path.to_path_buf(),
            block: "X509 CRL",
            fix: "use a PEM file with -----BEGIN X509 CRL----- blocks",
        };
        return Err(TlsError::new("tls.client_crl", kind));
    }
    Ok(crls)
}

fn pem_error(
    key: &str,
    path: &Path,
    what: &'static str,
    e: rustls::pki_types::pem::Error,
) -> TlsError {
    use rustls::pki_types::pem::Error as E;
    let path = path.to_path_buf();
    let kind = match e {
        E::Io(source) => K::Read { path, what, source },
        E::NoItemsFound => K::NoPem { path, what },
        source => K::BadPem { path, what, source },
    };
    TlsError::new(key, kind)
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
