//! The policy [`Inspector`]: holds only the requestor's command fragments (the walker
//! bounds them), decodes each complete command, counts it, and checks it against the
//! association's [`Grant`]. A refused request is dropped, its data set swallowed, and a
//! failure response (status 0x0124, PS3.7 C.4) goes back on the same presentation context
//! once the data set has been swallowed; the association goes on. The acceptor's PDVs and
//! all data-set bytes stream through untouched. The refusal's audit record is only queued
//! (`audit::Audit::record`: serialise and enqueue, no IO): this runs under the session lock.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::access::Grant;
use super::command::Command;
use super::inspect::{Abort, CommandVerdict, Direction, Inspector, PdvVerdict, Replies};
use super::pdu::{p_data, AbortReason, PdvHeader};
use super::record::{self, Activity, Parties, RefusalRecord};
use crate::audit::Audit;

/// Message control header of a last (or only) command fragment (PS3.8 E.2).
const COMMAND_LAST: u8 = 0x03;
const REFUSAL_COMMENT: &str = "Refused by pacsgate policy";

pub struct Enforcer {
    grant: Grant,
    parties: Arc<Parties>,
    audit: Arc<Audit>,
    activity: Arc<Mutex<Activity>>,
    /// A refused command's data set is being swallowed; send this response after its
    /// last fragment.
    swallowing: Option<Bytes>,
    /// Presentation context of the command being held.
    holding: Option<u8>,
    /// Presentation context on which an allowed command's data set is due (PS3.7 §6.3.1:
    /// a data set follows iff CommandDataSetType is not 0x0101). Data anywhere else is
    /// refused, so no data set can reach the PACS without the command it belongs to.
    expect_data: Option<u8>,
}

impl Enforcer {
    pub fn new(
        grant: Grant,
        parties: Arc<Parties>,
        audit: Arc<Audit>,
        activity: Arc<Mutex<Activity>>,
    ) -> Self {
        Self {
            grant,
            parties,
            audit,
            activity,
            swallowing: None,
            holding: None,
            expect_data: None,
        }
    }

    fn refuse(
        &mut self,
        cmd: &Command,
        pcid: u8,
        why: &super::access::CommandRefusal,
        replies: &mut Replies,
    ) {
        tracing::info!(command = cmd.name(), sop_class = ?cmd.sop_class, reason = %why, "command refused");
        record::refusal(
            &self.audit,
            &RefusalRecord {
                parties: &self.parties,
                command: cmd.name(),
                message_id: cmd.message_id,
                sop_class: cmd.sop_class.as_deref(),
                move_destination: cmd.move_destination.as_deref(),
                status: format!("{:#06x}", why.status()),
                reason: why.code(),
            },
        );
        let rsp = cmd.failure_response(why.status(), REFUSAL_COMMENT);
        let pdu = p_data(pcid, COMMAND_LAST, &rsp);
        if cmd.has_data_set() {
            self.swallowing = Some(pdu);
        } else {
            replies.push(pdu);
        }
    }
}

impl Inspector for Enforcer {
    fn pdv(
        &mut self,
        from: Direction,
        pdv: &PdvHeader,
        replies: &mut Replies,
    ) -> Result<PdvVerdict, Abort> {
        if from == Direction::FromAcceptor {
            return Ok(PdvVerdict::Forward);
        }
        if self.swallowing.is_some() {
            if pdv.is_command() {
                return Err(Abort::new(
                    AbortReason::UnexpectedPduParameter,
                    "a command where the refused command's data set was due",
                ));
            }
            if pdv.is_last() {
                if let Some(pdu) = self.swallowing.take() {
                    replies.push(pdu);
                }
            }
            return Ok(PdvVerdict::Swallow);
        }
        if pdv.is_command() {
            // A command set is made of whole even-length elements; dcmtk stops reading a
            // command at an odd-length fragment and parses what came before (dimse.cc
            // DIMSE_receiveCommand), so the PACS would read less than we judge.
            if pdv.item_length % 2 == 1 {
                return Err(Abort::new(
                    AbortReason::InvalidPduParameterValue,
                    "command fragment of odd length",
                ));
            }
            if self.expect_data.is_some() || self.holding.is_some_and(|p| p != pdv.pcid) {
                return Err(Abort::new(
                    AbortReason::UnexpectedPduParameter,
                    "command fragment out of place (PS3.7 §6.3.1)",
                ));
            }
            self.holding = Some(pdv.pcid);
            return Ok(PdvVerdict::Hold);
        }
        if self.expect_data != Some(pdv.pcid) {
            return Err(Abort::new(
                AbortReason::UnexpectedPduParameter,
                "data set without its command",
            ));
        }
        if pdv.is_last() {
            self.expect_data = None;
        }
        Ok(PdvVerdict::Forward)
    }

    fn command(
        &mut self,
        _from: Direction,
        pcid: u8,
        command: &[u8],
        replies: &mut Replies,
    ) -> Result<CommandVerdict, Abort> {
        let cmd = Command::parse(command)
            .map_err(|e| Abort::new(AbortReason::InvalidPduParameterValue, e.to_string()))?;
        if !cmd.is_response() {
            crate::metrics::METRICS.dimse_commands.inc(cmd.name());
            let mut activity = crate::sync::lock(&self.activity);
            activity.count(cmd.name(), cmd.sop_class.as_deref());
        }
        self.holding = None;
        match self.grant.check(&cmd) {
            Ok(()) => {
                if cmd.has_data_set() {
                    self.expect_data = Some(pcid);
                }
                Ok(CommandVerdict::Allow)
            }
            Err(why) => {
                crate::metrics::METRICS.dimse_refusals.inc(cmd.name());
                crate::sync::lock(&self.activity).refused += 1;
                self.refuse(&cmd, pcid, &why, replies);
                Ok(CommandVerdict::Deny)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Services;
    use crate::dicom::access::Rules;
    use crate::dicom::association::Association;
    use crate::dicom::command::STATUS_NOT_AUTHORIZED;
    use crate::dicom::session::Session;
    use crate::dicom::walker::{Action, Outbox, Walker};

    const RQ: &[u8] = include_bytes!("../../tests/fixtures/pdu/dcmtk-echoscu-A-ASSOCIATE-RQ.bin");
    const AC: &[u8] = include_bytes!("../../tests/fixtures/pdu/orthanc-A-ASSOCIATE-AC.bin");
    const STORE: &[u8] =
        include_bytes!("../../tests/fixtures/pdu/dcmtk-C-STORE-RQ-command.P-DATA-TF.bin");

    fn session(allow: Services) -> (Session, Arc<Mutex<Activity>>) {
        let grant = Grant {
            rules: Some(Rules {
                allow,
                move_destinations: None,
                strict_aet: false,
            }),
            modality: Some("ct1".into()),
        };
        let activity = Arc::new(Mutex::new(Activity::default()));
        let parties = Arc::new(Parties::new("dicom", [127, 0, 0, 1].into(), None));
        let enforcer = Enforcer::new(
            grant,
            parties,
            Arc::new(Audit::to_log().unwrap()),
            activity.clone(),
        );
        let rq = Association::parse_rq(RQ).unwrap();
        let mut s = Session::new(rq, 1 << 20, Box::new(enforcer));
        let mut w = Walker::new(Direction::FromAcceptor);
        assert_eq!(w.feed(AC, &mut s, &mut Outbox::default()), Ok(AC.len()));
        (s, activity)
    }

    /// The C-STORE command PDU, then its data set in two P-DATA-TFs.
    fn store_message() -> Vec<u8> {
        let mut input = STORE.to_vec();
        input.extend_from_slice(&p_data(41, 0x00, &[7u8; 100]));
        input.extend_from_slice(&p_data(41, 0x02, &[8u8; 50]));
        input
    }

    fn feed(s: &mut Session, input: &[u8]) -> (Vec<u8>, Vec<Bytes>) {
        let mut w = Walker::new(Direction::FromRequestor);
        let mut out = Outbox::default();
        assert_eq!(w.feed(input, s, &mut out), Ok(input.len()));
        let mut sent = Vec::new();
        for a in &out.actions {
            match a {
                Action::Forward(r) => sent.extend_from_slice(&input[r.clone()]),
                Action::Send(b) => sent.extend_from_slice(b),
            }
        }
        (sent, out.replies.queued)
    }

    #[test]
    fn allowed_store_passes_byte_for_byte() {
        let (mut s, activity) = session(Services::STORE);
        let input = store_message();
        let (sent, replies) = feed(&mut s, &input);
        assert_eq!(sent, input);
        assert!(replies.is_empty());
        assert_eq!(activity.lock().unwrap().commands["C-STORE"], 1);
    }

    #[test]
    fn data_without_its_command_aborts() {
        let (mut s, _) = session(Services::STORE);
        let mut w = Walker::new(Direction::FromRequestor);
        let stray = p_data(41, 0x02, &[1u8; 10]);
        assert!(w.feed(&stray, &mut s, &mut Outbox::default()).is_err());
        // A command set that says "no data set" followed by data.
        let (mut s, _) = session(Services::ECHO);
        let echo = include_bytes!("../../tests/fixtures/pdu/dcmtk-C-ECHO-RQ.P-DATA-TF.bin");
        let mut input = echo.to_vec();
        input.extend_from_slice(&p_data(echo[10], 0x02, &[1u8; 10]));
        let mut w = Walker::new(Direction::FromRequestor);
        assert!(w.feed(&input, &mut s, &mut Outbox::default()).is_err());
    }

    #[test]
    fn an_odd_command_fragment_aborts() {
        // A valid C-ECHO split at an odd offset: whole, it decodes; dcmtk would stop at
        // the first (odd) fragment and parse what it had before it.
        let (mut s, _) = session(Services::ECHO);
        let echo = include_bytes!("../../tests/fixtures/pdu/dcmtk-C-ECHO-RQ.P-DATA-TF.bin");
        let (head, tail) = echo[12..].split_at(11);
        let mut input = p_data(echo[10], 0x01, head).to_vec();
        input.extend_from_slice(&p_data(echo[10], 0x03, tail));
        let mut w = Walker::new(Direction::FromRequestor);
        assert!(w.feed(&input, &mut s, &mut Outbox::default()).is_err());
    }

    #[test]
    fn refused_store_is_swallowed_and_answered_after_its_data_set() {
        let (mut s, activity) = session(Services::ECHO);
        let (sent, replies) = feed(&mut s, &store_message());
        assert!(
            sent.is_empty(),
            "nothing of a refused message goes upstream"
        );
        assert_eq!(replies.len(), 1);
        let rsp = Command::parse(&replies[0][12..]).unwrap();
        assert_eq!(rsp.field, 0x8001);
        assert_eq!(rsp.status, Some(STATUS_NOT_AUTHORIZED));
        assert_eq!(replies[0][10], 41, "same presentation context");
        assert_eq!(activity.lock().unwrap().refused, 1);
        // The association goes on: the next allowed-or-not message is judged afresh.
        let (sent, replies) = feed(&mut s, &store_message());
        assert!(sent.is_empty() && replies.len() == 1);
    }
}
