//! Phase 7 of an association: the log line and the one `dicom.association` audit record,
//! for a refused association and for a relayed one, with their metrics.

use std::sync::Mutex;
use std::time::Instant;

use crate::audit::Audit;
use crate::dicom::access::AssociationRefusal;
use crate::dicom::record::{self, Activity, AssociationRecord, Parties};
use crate::dicom::relay::{self, Report};
use crate::metrics::{DICOM, METRICS, OUTBOUND};

pub fn log_report(report: &Report, started: Instant) {
    let accepted = report.session.ac.is_some();
    tracing::info!(
        accepted,
        ending = ?report.ending,
        bytes.from_requestor = report.bytes_from_requestor,
        bytes.from_acceptor = report.bytes_from_acceptor,
        duration_ms = started.elapsed().as_millis() as u64,
        "association ended"
    );
}

/// One `dicom.association` record for an association pacsgate refused.
pub fn audit_rejection(
    audit: &Audit,
    parties: &Parties,
    refusal: &AssociationRefusal,
    started: Instant,
) {
    let rj = refusal.rejection();
    count_association(parties, "rejected", refusal.code());
    if refusal.is_limit() {
        METRICS
            .rate_limited
            .inc((listener_label(parties), refusal.code()));
    }
    if matches!(refusal, AssociationRefusal::Unreachable(_)) {
        METRICS
            .upstream_errors
            .inc((listener_label(parties), "connect"));
    }
    record::association(
        audit,
        &AssociationRecord {
            parties,
            outcome: "rejected",
            reason: Some(refusal.code().to_string()),
            rejection: Some([rj.result, rj.source, rj.reason]),
            activity: &Activity::default(),
            bytes_from_requestor: 0,
            bytes_from_acceptor: 0,
            duration_ms: started.elapsed().as_millis() as u64,
        },
    );
}

/// One `dicom.association` record for a relayed association.
pub fn audit_report(
    audit: &Audit,
    parties: &Parties,
    activity: &Mutex<Activity>,
    report: &Report,
    started: Instant,
) {
    let (outcome, reason) = match (&report.ending, report.session.ac.is_some()) {
        (relay::Ending::Aborted(a), _) => ("aborted", Some(a.why.clone())),
        (relay::Ending::IdleTimeout, _) => ("aborted", Some("idle timeout".to_string())),
        (relay::Ending::Failed(e), _) => ("failed", Some(e.clone())),
        (relay::Ending::Closed, true) => ("accepted", None),
        (relay::Ending::Closed, false) => ("not_accepted_by_pacs", None),
    };
    let listener = listener_label(parties);
    count_association(parties, outcome, "");
    METRICS
        .bytes
        .add((listener, "in"), report.bytes_from_requestor);
    METRICS
        .bytes
        .add((listener, "out"), report.bytes_from_acceptor);
    let activity = crate::sync::lock(activity);
    record::association(
        audit,
        &AssociationRecord {
            parties,
            outcome,
            reason,
            rejection: None,
            activity: &activity,
            bytes_from_requestor: report.bytes_from_requestor,
            bytes_from_acceptor: report.bytes_from_acceptor,
            duration_ms: started.elapsed().as_millis() as u64,
        },
    );
}

/// `dicom` for the TLS listener, `outbound` for the tunnels (their names are not static).
fn listener_label(parties: &Parties) -> &'static str {
    if parties.listener == DICOM {
        DICOM
    } else {
        OUTBOUND
    }
}

fn count_association(parties: &Parties, result: &'static str, reason: &'static str) {
    METRICS
        .associations
        .inc((listener_label(parties), result, reason));
}
