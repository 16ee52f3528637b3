//! Audit records of the DICOM edge (kinds `dicom.association` and `dicom.refusal`). They
//! carry who (address, certificate fingerprint, AE titles, modality), what (command
//! counts, SOP class UIDs, move destinations) and how much; never data-set content, so no
//! patient data.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::audit::Audit;
use crate::tls::PeerIdentity;

/// SOP classes listed per association, at most.
const MAX_SOP_CLASSES: usize = 32;

/// Who is on the association; fixed once the RQ has been judged.
#[derive(Debug, Clone, Serialize)]
pub struct Parties {
    pub listener: String,
    pub peer_ip: IpAddr,
    /// The load balancer's address when `peer_ip` came from its PROXY header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cn: Option<String>,
    pub calling_ae: String,
    pub called_ae: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
}

impl Parties {
    pub fn new(listener: &str, peer_ip: IpAddr, identity: Option<&PeerIdentity>) -> Self {
        Self {
            listener: listener.to_string(),
            peer_ip,
            via: None,
            tls_fingerprint: identity.map(|i| i.fingerprint.to_string()),
            tls_cn: identity.and_then(|i| i.common_name.clone()),
            calling_ae: String::new(),
            called_ae: String::new(),
            modality: None,
        }
    }
}

/// What passed on an association, filled in by the enforcer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Activity {
    /// Requests from the requestor, by command name (refused ones included).
    pub commands: BTreeMap<&'static str, u64>,
    pub refused: u64,
    pub sop_classes: BTreeSet<String>,
}

impl Activity {
    pub fn count(&mut self, command: &'static str, sop_class: Option<&str>) {
        *self.commands.entry(command).or_insert(0) += 1;
        if let Some(uid) = sop_class {
            let new = !uid.is_empty() && !self.sop_classes.contains(uid);
            if new && self.sop_classes.len() < MAX_SOP_CLASSES {
                self.sop_classes.insert(uid.to_string());
            }
        }
    }
}

#[derive(Serialize)]
pub struct AssociationRecord<'a> {
    #[serde(flatten)]
    pub parties: &'a Parties,
    /// `accepted`, `rejected` (by pacsgate), `not_accepted_by_pacs`, `aborted`, `failed`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<[u8; 3]>,
    #[serde(flatten)]
    pub activity: &'a Activity,
    pub bytes_from_requestor: u64,
    pub bytes_from_acceptor: u64,
    pub duration_ms: u64,
}

#[derive(Serialize)]
pub struct RefusalRecord<'a> {
    #[serde(flatten)]
    pub parties: &'a Parties,
    pub command: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sop_class: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub move_destination: Option<&'a str>,
    pub status: String,
    pub reason: &'static str,
}

pub fn association(audit: &Audit, record: &AssociationRecord<'_>) {
    audit.record("dicom.association", record);
}

pub fn refusal(audit: &Audit, record: &RefusalRecord<'_>) {
    audit.record("dicom.refusal", record);
}
