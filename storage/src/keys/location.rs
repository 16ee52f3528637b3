//! Where a master key lives: the second element of a `MasterKey` / `PreviousMasterKeys`
//! entry (DESIGN.md, "Storage keys"):
//!
//! - a key file path (the default, as in the official plugin);
//! - `pkcs11:<RFC 7512 URI>`: an AES key in a PKCS#11 token, e.g.
//!   `pkcs11:token=pacsgate;object=master-2?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pacsgate/pin`;
//! - `aws-kms:<key id, ARN or alias>`, with endpoint and region from the `Kms` object beside
//!   the keys and credentials from the usual AWS environment variables or files.

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

#[derive(Debug, Clone, PartialEq)]
pub enum KeyLocation {
    File(PathBuf),
    Pkcs11(Pkcs11Uri),
    AwsKms(String),
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
        }
    }

    /// Load or connect to the key. Network and token errors surface here or in the
    /// start-up probe ([`super::KeyRing::probe`]), never as a fallback.
    pub fn open(&self, id: u32, kms: Option<&KmsSettings>) -> Result<Box<dyn MasterKeyProvider>> {
        Ok(match self {
            KeyLocation::File(path) => Box::new(MasterKey::load(id, path)?),
            KeyLocation::Pkcs11(uri) => Box::new(Pkcs11Key::open(uri)?),
            #[cfg(feature = "object-store")]
            KeyLocation::AwsKms(key) => Box::new(super::aws_kms::AwsKms::new(key, kms)?),
            #[cfg(not(feature = "object-store"))]
            KeyLocation::AwsKms(_) => {
                let _ = kms;
                return Err(crate::Error::Unsupported(
                    "aws-kms: keys need the object-store feature (its HTTP client and signer)",
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
        }
    }
}
