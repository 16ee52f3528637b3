//! Who is on the other end of a TLS connection, from the verified client certificate:
//! subject CN, subject alternative names and the SHA-256 fingerprint of the leaf (DER).
//! Policy (HTTP users, DICOM modalities) matches on these; they travel with the connection.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

pub use crate::config::{CertificateMatch, Fingerprint};

/// The identity of the verified client certificate, if the client presented one.
pub fn peer_identity(conn: &rustls::CommonState) -> Option<Arc<PeerIdentity>> {
    let leaf: &CertificateDer<'_> = conn.peer_certificates()?.first()?;
    PeerIdentity::from_leaf(leaf).map(Arc::new)
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
    /// Whether this peer is the certificate a configuration entry names.
    pub fn matches(&self, wanted: &CertificateMatch) -> bool {
        match wanted {
            CertificateMatch::Fingerprint(fp) => self.fingerprint == *fp,
            CertificateMatch::Name(name) => self.has_name(name),
        }
    }

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
