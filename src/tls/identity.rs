//! Who is on the other end of a TLS connection, from the verified client certificate:
//! subject CN, subject alternative names and the SHA-256 fingerprint of the leaf (DER).
//! Policy (HTTP users, DICOM modalities) matches on these; they travel with the connection.

use std::fmt;
use std::net::IpAddr;

use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

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

impl CertificateMatch {
    pub fn matches(&self, id: &PeerIdentity) -> bool {
        match self {
            CertificateMatch::Fingerprint(fp) => id.fingerprint == *fp,
            CertificateMatch::Name(name) => id.has_name(name),
        }
    }
}

/// The verified identity of a TLS client (or server, for outbound tunnels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub subject: String,
    pub common_name: Option<String>,
    /// DNS names, IP addresses, e-mail addresses and URIs, in certificate order.
    pub sans: Vec<String>,
    pub fingerprint: Fingerprint,
}

impl PeerIdentity {
    /// Identity of the leaf certificate; `None` if it cannot be parsed (rustls has verified
    /// it already, so this only happens for exotic encodings x509-parser refuses).
    pub fn from_leaf(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        Some(Self {
            subject: cert.subject().to_string(),
            common_name: common_name(&cert),
            sans: subject_alt_names(&cert),
            fingerprint: Fingerprint::of(der.as_ref()),
        })
    }

    /// True if `name` is the subject CN or one of the SANs (exact, case-insensitive for DNS).
    pub fn has_name(&self, name: &str) -> bool {
        self.common_name.as_deref() == Some(name)
            || self.sans.iter().any(|s| s.eq_ignore_ascii_case(name))
    }
}

pub(crate) fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

pub(crate) fn subject_alt_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                Some((*s).to_string())
            }
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trips_in_every_accepted_spelling() {
        let fp = Fingerprint::of(b"certificate");
        let plain = fp.to_string();
        assert_eq!(Fingerprint::parse(&plain), Some(fp));
        let upper = format!("SHA256:{}", fp.colon_hex());
        assert_eq!(Fingerprint::parse(&upper), Some(fp));
        assert_eq!(
            Fingerprint::parse(&format!("sha256:{}", fp.colon_hex())),
            Some(fp)
        );
    }

    #[test]
    fn fingerprint_refuses_wrong_lengths_and_prefixes() {
        let fp = Fingerprint::of(b"x").to_string();
        assert_eq!(Fingerprint::parse(&fp[..fp.len() - 1]), None);
        assert_eq!(Fingerprint::parse(&fp["sha256:".len()..]), None);
        assert_eq!(Fingerprint::parse("sha256:zz"), None);
    }
}
