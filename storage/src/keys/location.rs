//! Where a master key lives: the second element of a `MasterKey` / `PreviousMasterKeys`
//! entry (DESIGN.md, "Storage keys"):
//!
//! - a key file path (the default, as in the official plugin);
//! - `pkcs11:<RFC 7512 URI>`: an AES key in a PKCS#11 token, e.g.
//!   `pkcs11:token=pacsgate;object=master-2?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pacsgate/pin`;
//! - `aws-kms:<key id, ARN or alias>`, with endpoint and region from the `Kms` object beside
//!   the keys and credentials from the usual AWS environment variables or files;
//! - `vault-transit:<key name>`: a HashiCorp Vault / OpenBao Transit key, with the server
//!   from the `Vault` object beside the keys and the token from `VAULT_TOKEN`.

use std::path::PathBuf;

use super::pkcs11::{Pkcs11Key, Pkcs11Uri};
use super::{MasterKey, MasterKeyProvider};
use crate::Result;

/// The `Kms` object beside the keys: `{"Endpoint": "https://kms.eu-west-1.amazonaws.com",
/// "Region": "eu-west-1"}`. The endpoint defaults to AWS's for the region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsSettings {
    pub endpoint: Option<String>,
    pub region: String,
}

/// The `Vault` object beside the keys: `{"Address": "https://vault:8200", "Mount": "transit"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSettings {
    pub address: String,
    pub mount: String,
}

/// Where remote keys are reached (the `Kms` and `Vault` objects).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remotes {
    pub kms: Option<KmsSettings>,
    pub vault: Option<VaultSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum KeyLocation {
    File(PathBuf),
    Pkcs11(Pkcs11Uri),
    AwsKms(String),
    VaultTransit(String),
}

impl KeyLocation {
    /// Parse a configured location; the error says what a valid one looks like.
    pub fn parse(text: &str) -> std::result::Result<KeyLocation, String> {
        if let Some(uri) = text.strip_prefix("aws-kms:") {
            let ok = !uri.is_empty()
                && uri.len() <= 2048
                && uri.bytes().all(|b| b.is_ascii_graphic() && b != b'"');
            return match ok {
                true => Ok(KeyLocation::AwsKms(uri.to_string())),
                false => Err(format!(
                    "{text:?}: expected aws-kms:<key id, key ARN or alias/NAME>"
                )),
            };
        }
        if let Some(name) = text.strip_prefix("vault-transit:") {
            let ok = !name.is_empty()
                && name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !name.starts_with('.');
            return match ok {
                true => Ok(KeyLocation::VaultTransit(name.to_string())),
                false => Err(format!(
                    "{text:?}: expected vault-transit:<key name> (letters, digits, - _ .)"
                )),
            };
        }
        if text.starts_with("pkcs11:") {
            return Pkcs11Uri::parse(text).map(KeyLocation::Pkcs11);
        }
        if text.is_empty() {
            return Err(
                "empty key location: give a key file path, pkcs11:... or aws-kms:...".into(),
            );
        }
        Ok(KeyLocation::File(PathBuf::from(text)))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            KeyLocation::File(_) => "file",
            KeyLocation::Pkcs11(_) => "pkcs11",
            KeyLocation::AwsKms(_) => "aws-kms",
            KeyLocation::VaultTransit(_) => "vault-transit",
        }
    }

    /// Load or connect to the key. Network and token errors surface here or in the
    /// start-up probe ([`super::KeyRing::probe`]), never as a fallback.
    pub fn open(&self, id: u32, remotes: &Remotes) -> Result<Box<dyn MasterKeyProvider>> {
        let (kms, vault) = (remotes.kms.as_ref(), remotes.vault.as_ref());
        Ok(match self {
            KeyLocation::File(path) => Box::new(MasterKey::load(id, path)?),
            KeyLocation::Pkcs11(uri) => Box::new(Pkcs11Key::open(uri)?),
            #[cfg(feature = "object-store")]
            KeyLocation::AwsKms(key) => Box::new(super::aws_kms::AwsKms::new(key, kms)?),
            #[cfg(feature = "object-store")]
            KeyLocation::VaultTransit(key) => {
                Box::new(super::vault_transit::VaultTransit::new(key, vault)?)
            }
            #[cfg(not(feature = "object-store"))]
            KeyLocation::AwsKms(_) | KeyLocation::VaultTransit(_) => {
                let _ = (kms, vault);
                return Err(crate::Error::Unsupported(
                    "aws-kms: and vault-transit: keys need the object-store feature (its HTTP client)",
                ));
            }
        })
    }
}

impl std::fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyLocation::File(p) => write!(f, "{}", p.display()),
            KeyLocation::Pkcs11(uri) => write!(f, "{}", uri.text),
            KeyLocation::AwsKms(k) => write!(f, "aws-kms:{k}"),
            KeyLocation::VaultTransit(k) => write!(f, "vault-transit:{k}"),
        }
    }
}

/// `http://` to this host only: data keys travel in the request bodies (KMS `Encrypt`,
/// Transit `encrypt`), so cleartext HTTP to another host would put them on the network.
pub fn loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
