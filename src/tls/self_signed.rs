//! First-start certificates: when the configured files do not exist, generate a self-signed
//! pair with rcgen, write the key 0600 (temp file + rename, so a crash never leaves half a
//! key), and reuse it on every later start so its fingerprint can be pinned.
//!
//! Two pairs by default: ECDSA P-256 (fast handshakes, what modern clients choose) and
//! RSA-2048, served to clients that cannot use ECDSA: dcmtk 3.6.7 under TLS 1.2 offers only
//! ECDHE-RSA suites (../reference dicom-brief §3).

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::{TlsError, TlsErrorKind as K};
use crate::config::{KeyPairPaths, TlsConfig};

/// Validity of generated certificates. Long on purpose: peers pin the fingerprint, and a
/// new certificate means re-pinning at every modality.
const VALIDITY_DAYS: i64 = 3650;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    Rsa2048,
}

/// How `generate` may touch the file system.
#[derive(Debug, Clone, Copy)]
pub struct WriteMode {
    /// Replace existing files (`cert self-signed --force`). Without it an existing file is
    /// an error: a new key changes the fingerprint every peer has pinned.
    pub overwrite: bool,
    /// Create missing parent directories (first start, where `tls.cert`'s directory is the
    /// gateway's own); the CLI leaves that to the operator, who chooses owner and mode.
    pub create_dirs: bool,
}

impl WriteMode {
    /// First start: the configured files do not exist; their directory may not either.
    pub const FIRST_START: WriteMode = WriteMode {
        overwrite: false,
        create_dirs: true,
    };
}

/// Generate the configured pairs that do not exist yet. Returns the pairs written.
pub fn ensure(config: &TlsConfig) -> Result<Vec<KeyPairPaths>, TlsError> {
    let mut written = Vec::new();
    if state(&config.primary)? == PairState::Absent {
        generate(
            &config.primary,
            KeyKind::EcdsaP256,
            &config.hostnames,
            WriteMode::FIRST_START,
        )?;
        written.push(config.primary.clone());
    }
    if let Some(rsa) = &config.rsa {
        if state(rsa)? == PairState::Absent {
            if is_self_signed(&config.primary.cert) {
                generate(
                    rsa,
                    KeyKind::Rsa2048,
                    &config.hostnames,
                    WriteMode::FIRST_START,
                )?;
                written.push(rsa.clone());
            } else {
                // The operator brought their own certificate: a self-signed RSA one beside
                // it would silently serve an untrusted certificate to some clients.
                tracing::warn!(
                    path = %rsa.cert.display(),
                    "tls.rsa_cert does not exist and tls.cert is CA-issued; serving tls.cert only"
                );
            }
        }
    }
    Ok(written)
}

#[derive(Debug, PartialEq, Eq)]
enum PairState {
    Present,
    Absent,
}

fn state(paths: &KeyPairPaths) -> Result<PairState, TlsError> {
    match (paths.cert.exists(), paths.key.exists()) {
        (true, true) => Ok(PairState::Present),
        (false, false) => Ok(PairState::Absent),
        (true, false) => Err(half_pair(paths.key_key, &paths.key, paths.cert_key)),
        (false, true) => Err(half_pair(paths.cert_key, &paths.cert, paths.key_key)),
    }
}

fn half_pair(missing_key: &str, missing: &Path, present_key: &str) -> TlsError {
    let kind = K::HalfPair {
        path: missing.to_path_buf(),
        present: present_key.to_string(),
    };
    TlsError::new(missing_key, kind)
}

fn is_self_signed(cert: &Path) -> bool {
    let Ok(pem) = std::fs::read(cert) else {
        return false;
    };
    use rustls::pki_types::pem::PemObject;
    let Ok(der) = rustls::pki_types::CertificateDer::from_pem_slice(&pem) else {
        return false;
    };
    X509Certificate::from_der(der.as_ref())
        .map(|(_, c)| c.subject() == c.issuer())
        .unwrap_or(false)
}

/// Generate one self-signed pair at `paths`.
pub fn generate(
    paths: &KeyPairPaths,
    kind: KeyKind,
    hostnames: &[String],
    mode: WriteMode,
) -> Result<(), TlsError> {
    preflight(paths, mode)?;
    let fail = |what: &'static str, source: rcgen::Error| {
        TlsError::new(paths.cert_key, K::Generate { what, source })
    };
    let key = match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyKind::Rsa2048 => KeyPair::generate_for(&PKCS_RSA_SHA256),
    }
    .map_err(|e| fail("key generation", e))?;
    let cert = params(hostnames, kind)
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| fail("certificate", e))?;
    let unwritable = |key: &str, path: &Path, source| {
        let path = path.to_path_buf();
        TlsError::new(key, K::Write { path, source })
    };
    write_file(&paths.key, key.serialize_pem().as_bytes(), 0o600, mode)
        .map_err(|e| unwritable(paths.key_key, &paths.key, e))?;
    write_file(&paths.cert, cert.pem().as_bytes(), 0o644, mode)
        .map_err(|e| unwritable(paths.cert_key, &paths.cert, e))
}

/// Refuse before generating anything: existing files without `overwrite`, missing
/// directories without `create_dirs`.
fn preflight(paths: &KeyPairPaths, mode: WriteMode) -> Result<(), TlsError> {
    for (key, path) in [(paths.cert_key, &paths.cert), (paths.key_key, &paths.key)] {
        if !mode.overwrite && path.symlink_metadata().is_ok() {
            let path = path.clone();
            return Err(TlsError::new(key, K::Exists { path }));
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir.filter(|d| !mode.create_dirs && !d.is_dir()) {
            let dir = dir.to_path_buf();
            return Err(TlsError::new(key, K::NoDirectory { dir }));
        }
    }
    Ok(())
}

fn params(hostnames: &[String], kind: KeyKind) -> Result<CertificateParams, rcgen::Error> {
    let mut names: Vec<String> = hostnames.to_vec();
    for default in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(default)) {
            names.push(default.to_string());
        }
    }
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].clone());
    dn.push(DnType::OrganizationName, "pacsgate self-signed");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = match kind {
        KeyKind::EcdsaP256 => vec![KeyUsagePurpose::DigitalSignature],
        KeyKind::Rsa2048 => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
    };
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
    Ok(params)
}

/// Write `data` to `path` atomically with `mode`: temp file in the same directory, fsync,
/// then rename (overwrite) or link(2), which fails if the name appeared meanwhile, so a
/// concurrent writer is never silently replaced.
fn write_file(path: &Path, data: &[u8], mode: u32, how: WriteMode) -> std::io::Result<()> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && how.create_dirs)
    {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    if how.overwrite {
        return std::fs::rename(&tmp, path);
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked
}
