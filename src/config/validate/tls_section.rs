//! `[tls]`: the serving key pairs (ECDSA and the optional RSA companion), hostnames for a
//! self-signed certificate, client-certificate CA/CRLs and mode, minimum version; and the
//! per-listener `client_auth` overrides checked against it.

use std::path::{Path, PathBuf};

use super::super::error::ConfigError;
use super::super::raw::RawTls;
use super::super::settings::{AcmeConfig, ClientAuth, KeyPairPaths, TlsConfig, TlsVersion};
use super::paths::{pair_error, readable, resolve};

pub(super) fn tls(raw: RawTls, base: &Path) -> Result<TlsConfig, ConfigError> {
    let primary = KeyPairPaths {
        cert: resolve(base, &raw.cert),
        key: resolve(base, &raw.key),
        cert_key: "tls.cert",
        key_key: "tls.key",
    };
    let rsa = match (raw.rsa_cert, raw.rsa_key) {
        (Some(cert), Some(key)) => Some(KeyPairPaths {
            cert: resolve(base, &cert),
            key: resolve(base, &key),
            cert_key: "tls.rsa_cert",
            key_key: "tls.rsa_key",
        }),
        (None, None) => None,
        (Some(_), None) => return Err(pair_error("tls.rsa_key", "tls.rsa_cert")),
        (None, Some(_)) => return Err(pair_error("tls.rsa_cert", "tls.rsa_key")),
    };
    if rsa
        .as_ref()
        .is_some_and(|r| r.cert == primary.cert || r.key == primary.key)
    {
        return Err(ConfigError::new(
            "tls.rsa_cert",
            "names the same file as tls.cert or tls.key",
            "give the RSA pair its own files (e.g. certs/server-rsa.crt and certs/server-rsa.key)",
        ));
    }
    if raw.hostnames.iter().any(|h| h.trim().is_empty()) {
        return Err(ConfigError::new(
            "tls.hostnames",
            "contains an empty name",
            "list DNS names or IP addresses, e.g. [\"pacs.example.org\"]",
        ));
    }
    let client_ca = raw.client_ca.map(|p| resolve(base, &p));
    if let Some(ca) = &client_ca {
        readable("tls.client_ca", ca)?;
    }
    let client_crl: Vec<PathBuf> = raw.client_crl.iter().map(|p| resolve(base, p)).collect();
    for crl in &client_crl {
        readable("tls.client_crl", crl)?;
    }
    let default_auth = if client_ca.is_some() {
        ClientAuth::Optional
    } else {
        ClientAuth::None
    };
    let client_auth = match raw.client_auth {
        Some(v) => client_auth("tls.client_auth", &v)?,
        None => default_auth,
    };
    check_client_ca("tls.client_auth", client_auth, client_ca.is_some())?;
    let min_version = tls_version("tls.min_version", &raw.min_version)?;
    let primary_cert = primary.cert.clone();
    Ok(TlsConfig {
        primary,
        rsa,
        hostnames: raw.hostnames,
        client_ca,
        client_crl,
        client_auth,
        min_version,
        watch: raw.watch,
        expiry_warning: super::super::values::duration("tls.expiry_warning", &raw.expiry_warning)?,
        acme: raw.acme.map(|a| acme(a, base, &primary_cert)).transpose()?,
    })
}

pub(super) fn client_auth(key: &str, value: &str) -> Result<ClientAuth, ConfigError> {
    match value {
        "none" => Ok(ClientAuth::None),
        "optional" => Ok(ClientAuth::Optional),
        "required" => Ok(ClientAuth::Required),
        other => Err(ConfigError::new(
            key,
            format!("unknown mode {other:?}"),
            "use \"none\", \"optional\" or \"required\"",
        )),
    }
}

pub(super) fn check_client_ca(
    key: &str,
    auth: ClientAuth,
    has_ca: bool,
) -> Result<(), ConfigError> {
    if auth != ClientAuth::None && !has_ca {
        return Err(ConfigError::new(
            key,
            "client certificates are enabled but tls.client_ca is not set",
            "set tls.client_ca to a PEM bundle of the CAs that issue client certificates",
        ));
    }
    Ok(())
}

pub(super) fn listener_client_auth(
    key: &str,
    value: Option<String>,
    tls: &TlsConfig,
) -> Result<ClientAuth, ConfigError> {
    let Some(v) = value else {
        return Ok(tls.client_auth);
    };
    let auth = client_auth(key, &v)?;
    check_client_ca(key, auth, tls.client_ca.is_some())?;
    Ok(auth)
}

pub(super) fn tls_version(key: &str, value: &str) -> Result<TlsVersion, ConfigError> {
    match value {
        "1.2" => Ok(TlsVersion::V1_2),
        "1.3" => Ok(TlsVersion::V1_3),
        other => Err(ConfigError::new(
            key,
            format!("unsupported TLS version {other:?}"),
            "use \"1.2\" or \"1.3\" (older versions are not offered, per BCP 195)",
        )),
    }
}

fn acme(
    raw: super::super::raw::RawAcme,
    base: &Path,
    cert: &Path,
) -> Result<AcmeConfig, ConfigError> {
    use super::super::values::duration;
    if !raw.directory.starts_with("https://") {
        return Err(ConfigError::new(
            "tls.acme.directory",
            format!("{:?} is not an https:// URL", raw.directory),
            "use the CA's directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory",
        ));
    }
    if raw.domains.is_empty() || raw.domains.iter().any(|d| d.trim().is_empty()) {
        return Err(ConfigError::new(
            "tls.acme.domains",
            "is empty or contains an empty name",
            "list the DNS names clients use, e.g. [\"pacs.example.org\"]",
        ));
    }
    let ca = raw.ca.map(|p| resolve(base, &p));
    if let Some(ca) = &ca {
        readable("tls.acme.ca", ca)?;
    }
    let account = raw.account.map(|p| resolve(base, &p)).unwrap_or_else(|| {
        cert.parent()
            .unwrap_or(Path::new("."))
            .join("acme-account.json")
    });
    Ok(AcmeConfig {
        directory: raw.directory,
        contact: raw.contact,
        domains: raw.domains,
        ca,
        renew_before: duration("tls.acme.renew_before", &raw.renew_before)?,
        http01_listen: super::address::socket_addr("tls.acme.http01_listen", &raw.http01_listen)?,
        account,
        check_interval: duration("tls.acme.check_interval", &raw.check_interval)?,
    })
}
