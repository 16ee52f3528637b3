//! The association decision: given the A-ASSOCIATE-RQ, the peer address and the verified
//! client certificate, admit (with a [`Grant`]) or refuse. Pure; same semantics as
//! Orthanc's DicomCheckCalledAet, DicomAlwaysAllow*, DicomCheckModalityHost, plus the
//! certificate binding Orthanc cannot do:
//!
//! - both AE titles must be valid AE values (`access::check_titles`: no NUL, control
//!   character, backslash or leading space), else A-ASSOCIATE-RJ reason 7 / 3;
//! - a modality that names a certificate can only be claimed with that certificate;
//! - a certificate named by modalities can only claim those modalities' AE titles;
//! - an unknown calling AE gets only the `always_allow_*` services, and is refused
//!   (A-ASSOCIATE-RJ reason 3) when there are none;
//! - with no modalities configured, commands are not filtered (the PACS decides).

use std::net::IpAddr;
use std::sync::Arc;

use super::access::{aet_eq, check_titles, AssociationRefusal, Grant, Rules};
use crate::config::{DicomPolicy, Modality};
use crate::tls::PeerIdentity;

pub struct Policy {
    pub config: DicomPolicy,
}

/// What the decision looks at besides the RQ.
pub struct Peer<'a> {
    pub ip: IpAddr,
    pub identity: Option<&'a PeerIdentity>,
}

impl Policy {
    pub fn new(config: DicomPolicy) -> Self {
        Self { config }
    }

    pub fn admit(
        &self,
        calling: &str,
        called: &str,
        peer: &Peer<'_>,
    ) -> Result<Grant, AssociationRefusal> {
        check_titles(calling, called)?;
        let cfg = &self.config;
        let strict = cfg.strict_aet_comparison;
        if let Some(ours) = &cfg.called_aet {
            if !aet_eq(ours, called, strict) {
                return Err(AssociationRefusal::CalledAeUnknown(called.to_string()));
            }
        }
        if cfg.modalities.is_empty() {
            return Ok(Grant::everything());
        }
        // A certificate that modalities name is limited to their AE titles.
        let owned: Vec<&Modality> = cfg
            .modalities
            .iter()
            .filter(|m| cert_matches(m, peer.identity) == Some(true))
            .collect();
        if !owned.is_empty() && !owned.iter().any(|m| aet_eq(&m.aet, calling, strict)) {
            return Err(AssociationRefusal::CertificateNotForAe(calling.to_string()));
        }
        let claimed: Vec<&Modality> = cfg
            .modalities
            .iter()
            .filter(|m| aet_eq(&m.aet, calling, strict))
            .collect();
        if claimed.is_empty() {
            if cfg.always_allow.is_empty() {
                return Err(AssociationRefusal::CallingAeUnknown(calling.to_string()));
            }
            return Ok(Grant {
                rules: Some(Rules {
                    allow: cfg.always_allow,
                    move_destinations: None,
                    strict_aet: strict,
                }),
                modality: None,
            });
        }
        let by_cert: Vec<&Modality> = claimed
            .into_iter()
            .filter(|m| cert_matches(m, peer.identity) != Some(false))
            .collect();
        if by_cert.is_empty() {
            return Err(AssociationRefusal::CertificateMismatch(calling.to_string()));
        }
        let modality = by_cert
            .into_iter()
            .find(|m| !cfg.check_modality_host || m.hosts.iter().any(|h| h.contains(&peer.ip)))
            .ok_or_else(|| AssociationRefusal::HostNotAllowed(calling.to_string()))?;
        Ok(Grant {
            rules: Some(Rules {
                allow: modality.allow.union(cfg.always_allow),
                move_destinations: modality
                    .move_destinations
                    .as_ref()
                    .map(|d| Arc::from(d.as_slice())),
                strict_aet: strict,
            }),
            modality: Some(modality.name.clone()),
        })
    }

    /// The per-modality concurrency limit for an admitted association.
    pub fn modality_limit(&self, modality: &str) -> Option<usize> {
        self.config
            .modalities
            .iter()
            .find(|m| m.name == modality)
            .and_then(|m| m.max_associations)
            .or(self.config.max_associations_per_modality)
    }
}

/// `None`: the modality names no certificate. `Some(matched)` otherwise; no certificate at
/// all never matches.
fn cert_matches(m: &Modality, identity: Option<&PeerIdentity>) -> Option<bool> {
    let wanted = m.certificate.as_ref()?;
    let Some(id) = identity else {
        return Some(false);
    };
    Some(id.matches(wanted))
}

#[cfg(test)]
mod tests;
