//! What an admitted peer may do, and the one place where refusals become protocol answers:
//! association refusals -> A-ASSOCIATE-RJ (PS3.8 §9.3.4), command refusals -> DIMSE status
//! (PS3.7 C.4). Pure functions over the decoded command.

use std::sync::Arc;

use super::ae;
use super::command::{field, Command, STATUS_NOT_AUTHORIZED};
use super::pdu::Rejection;
use crate::config::Services;

/// Modality Worklist Information Model - FIND (PS3.4 K.6.1.2).
const WORKLIST_FIND: &str = "1.2.840.10008.5.1.4.31";
/// Storage Commitment Push Model SOP Class (PS3.4 J.3).
const STORAGE_COMMITMENT: &str = "1.2.840.10008.1.20.1";

/// Why an association is refused. Each maps to exactly one A-ASSOCIATE-RJ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssociationRefusal {
    #[error("called AE title {0:?} is not a valid AE title")]
    CalledAeInvalid(String),
    #[error("calling AE title {0:?} is not a valid AE title")]
    CallingAeInvalid(String),
    #[error("called AE title {0:?} is not this PACS")]
    CalledAeUnknown(String),
    #[error("calling AE title {0:?} is not a known modality")]
    CallingAeUnknown(String),
    #[error("calling AE title {0:?} is bound to another certificate")]
    CertificateMismatch(String),
    #[error("this certificate may not claim AE title {0:?}")]
    CertificateNotForAe(String),
    #[error("calling AE title {0:?} is not allowed from this address")]
    HostNotAllowed(String),
    #[error("too many associations ({0})")]
    LimitExceeded(&'static str),
    #[error("the peer behind the gateway is unreachable ({0})")]
    Unreachable(&'static str),
    #[error("the audit cannot be written (audit.on_full = \"refuse\")")]
    AuditUnavailable,
}

impl AssociationRefusal {
    /// Refused by the association limits (a flood, not a misconfigured peer).
    pub fn is_limit(&self) -> bool {
        matches!(self, Self::LimitExceeded(_))
    }

    pub fn rejection(&self) -> Rejection {
        match self {
            Self::CalledAeInvalid(_) | Self::CalledAeUnknown(_) => {
                Rejection::CALLED_AE_NOT_RECOGNIZED
            }
            Self::CallingAeInvalid(_)
            | Self::CallingAeUnknown(_)
            | Self::CertificateMismatch(_)
            | Self::CertificateNotForAe(_)
            | Self::HostNotAllowed(_) => Rejection::CALLING_AE_NOT_RECOGNIZED,
            Self::LimitExceeded(_) => Rejection::LOCAL_LIMIT_EXCEEDED,
            Self::Unreachable(_) | Self::AuditUnavailable => Rejection::TEMPORARY_CONGESTION,
        }
    }

    /// Short machine-readable reason for audit records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::CalledAeInvalid(_) => "called_ae_invalid",
            Self::CallingAeInvalid(_) => "calling_ae_invalid",
            Self::CalledAeUnknown(_) => "called_ae_unknown",
            Self::CallingAeUnknown(_) => "calling_ae_unknown",
            Self::CertificateMismatch(_) => "certificate_mismatch",
            Self::CertificateNotForAe(_) => "certificate_not_for_ae",
            Self::HostNotAllowed(_) => "host_not_allowed",
            Self::LimitExceeded(what) | Self::Unreachable(what) => what,
            Self::AuditUnavailable => "audit_unavailable",
        }
    }
}

/// Why a command is refused. Each maps to a DIMSE failure status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRefusal {
    #[error("{0} is not allowed for this modality")]
    NotAllowed(&'static str),
    #[error("C-MOVE destination {0:?} is not allowed")]
    MoveDestination(String),
}

impl CommandRefusal {
    /// 0x0124 Refused: Not Authorized, a general status valid for every service.
    pub fn status(&self) -> u16 {
        STATUS_NOT_AUTHORIZED
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAllowed(_) => "service_not_allowed",
            Self::MoveDestination(_) => "move_destination_not_allowed",
        }
    }
}

/// The rights of one admitted association.
#[derive(Debug, Clone)]
pub struct Grant {
    /// `None`: no command policy (no modalities configured).
    pub rules: Option<Rules>,
    /// The matched modality's table name, if any.
    pub modality: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Rules {
    pub allow: Services,
    pub move_destinations: Option<Arc<[String]>>,
    pub strict_aet: bool,
}

impl Grant {
    pub fn everything() -> Self {
        Self {
            rules: None,
            modality: None,
        }
    }

    /// May the requestor issue `cmd`? Responses (e.g. the C-STORE-RSP of a C-GET
    /// sub-operation) and C-CANCEL always pass.
    pub fn check(&self, cmd: &Command) -> Result<(), CommandRefusal> {
        let Some(rules) = &self.rules else {
            return Ok(());
        };
        if cmd.is_response() || cmd.field == field::C_CANCEL {
            return Ok(());
        }
        let sop = cmd.sop_class.as_deref().unwrap_or("");
        let needed = match cmd.field {
            field::C_ECHO => Services::ECHO,
            field::C_STORE => Services::STORE,
            field::C_FIND if sop == WORKLIST_FIND => Services::FIND_WORKLIST,
            field::C_FIND => Services::FIND,
            field::C_MOVE => Services::MOVE,
            field::C_GET => Services::GET,
            // N-ACTION (request) / N-EVENT-REPORT of Storage Commitment (PS3.4 J.3).
            0x0130 | 0x0100 if sop == STORAGE_COMMITMENT => Services::STORAGE_COMMITMENT,
            _ => return Err(CommandRefusal::NotAllowed(cmd.name())),
        };
        if !rules.allow.contains(needed) {
            return Err(CommandRefusal::NotAllowed(cmd.name()));
        }
        if cmd.field == field::C_MOVE {
            if let Some(allowed) = &rules.move_destinations {
                let dest = cmd.move_destination.as_deref().unwrap_or("");
                if !allowed.iter().any(|a| aet_eq(a, dest, rules.strict_aet)) {
                    return Err(CommandRefusal::MoveDestination(dest.to_string()));
                }
            }
        }
        Ok(())
    }
}

/// AE titles compare exactly when strict, else case-insensitively (Orthanc's
/// `StrictAetComparison`, default false); an invalid title equals nothing ([`ae::same`]).
pub fn aet_eq(a: &str, b: &str, strict: bool) -> bool {
    ae::same(a, b, strict)
}

/// Both titles of an A-ASSOCIATE-RQ must be valid AE values (PS3.5 §6.2, [`ae::title`])
/// before anything compares them: the PACS would read an invalid one differently.
/// PS3.8 §9.3.4: called AE -> reason 7, calling AE -> reason 3, both permanent.
pub fn check_titles(calling: &str, called: &str) -> Result<(), AssociationRefusal> {
    if ae::title(called.as_bytes()).is_err() {
        return Err(AssociationRefusal::CalledAeInvalid(called.to_string()));
    }
    if ae::title(calling.as_bytes()).is_err() {
        return Err(AssociationRefusal::CallingAeInvalid(calling.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(allow: Services, dests: Option<&[&str]>) -> Grant {
        Grant {
            rules: Some(Rules {
                allow,
                move_destinations: dests.map(|d| d.iter().map(|s| s.to_string()).collect()),
                strict_aet: false,
            }),
            modality: Some("ct1".into()),
        }
    }

    fn cmd(field: u16, sop: &str) -> Command {
        Command {
            field,
            sop_class: Some(sop.into()),
            ..Command::default()
        }
    }

    #[test]
    fn services_map_to_command_fields() {
        let g = grant(Services::STORE, None);
        assert_eq!(g.check(&cmd(field::C_STORE, "1.2")), Ok(()));
        assert!(g.check(&cmd(field::C_FIND, "1.2")).is_err());
        assert!(g.check(&cmd(field::C_ECHO, "1.2")).is_err());
        assert!(g.check(&cmd(0x0140, "1.2")).is_err());
        // Responses and C-CANCEL always pass.
        assert_eq!(g.check(&cmd(0x8001, "1.2")), Ok(()));
        assert_eq!(g.check(&cmd(field::C_CANCEL, "")), Ok(()));
        let wl = grant(Services::FIND_WORKLIST, None);
        assert_eq!(wl.check(&cmd(field::C_FIND, WORKLIST_FIND)), Ok(()));
        assert!(wl
            .check(&cmd(field::C_FIND, "1.2.840.10008.5.1.4.1.2.1.1"))
            .is_err());
        assert_eq!(Grant::everything().check(&cmd(0x0150, "")), Ok(()));
    }

    #[test]
    fn move_destinations_are_policed() {
        let g = grant(Services::MOVE, Some(&["WS1"]));
        let mut m = cmd(field::C_MOVE, "1.2");
        m.move_destination = Some("ws1".into());
        assert_eq!(g.check(&m), Ok(()));
        m.move_destination = Some("EVIL".into());
        assert_eq!(
            g.check(&m),
            Err(CommandRefusal::MoveDestination("EVIL".into()))
        );
        m.move_destination = None;
        assert!(g.check(&m).is_err());
        // The registry comparison uses the one AE grammar: nothing invalid matches.
        let g = grant(Services::MOVE, Some(&["WS1"]));
        m.move_destination = Some("WS1\0".into());
        assert!(g.check(&m).is_err());
    }

    #[test]
    fn refusals_map_to_standard_rejections() {
        let r = AssociationRefusal::CallingAeUnknown("X".into()).rejection();
        assert_eq!((r.result, r.source, r.reason), (1, 1, 3));
        let r = AssociationRefusal::CalledAeUnknown("X".into()).rejection();
        assert_eq!((r.result, r.source, r.reason), (1, 1, 7));
        let r = AssociationRefusal::CallingAeInvalid("CT1\\x00".into()).rejection();
        assert_eq!((r.result, r.source, r.reason), (1, 1, 3));
        let r = AssociationRefusal::CalledAeInvalid(" X".into()).rejection();
        assert_eq!((r.result, r.source, r.reason), (1, 1, 7));
        let r = AssociationRefusal::LimitExceeded("per_ip").rejection();
        assert_eq!((r.result, r.source, r.reason), (2, 3, 2));
    }
}
