//! How the configuration names a certificate: a SHA-256 fingerprint or a name. Matching a
//! connection's peer against one is `tls::PeerIdentity::matches`.

use std::fmt;

use sha2::{Digest, Sha256};

/// SHA-256 over a certificate's DER encoding: what `openssl x509 -fingerprint -sha256` shows.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Parse `sha256:` + 64 hex digits; colons optional, any case (the config's format).
    pub fn parse(text: &str) -> Option<Self> {
        let hex: String = text
            .trim()
            .strip_prefix("sha256:")
            .or_else(|| text.trim().strip_prefix("SHA256:"))?
            .chars()
            .filter(|c| *c != ':')
            .collect();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }

    /// Colon-separated upper-case hex, as openssl prints it.
    pub fn colon_hex(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// `sha256:` + 64 lower-case hex digits: the form to paste into the configuration.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// How the configuration names a certificate (HTTP users, DICOM modalities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateMatch {
    Fingerprint(Fingerprint),
    /// The subject CN or one of the subject alternative names.
    Name(String),
}
