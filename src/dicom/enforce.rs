//! The policy [`Inspector`]: holds only the requestor's command fragments (the walker
//! bounds them), decodes each complete command, counts it, and checks it against the
//! association's [`Grant`]. A refused request is dropped, its data set swallowed, and a
//! failure response (status 0x0124, PS3.7 C.4) goes back on the same presentation context
//! once the data set has been swallowed; the association goes on. The acceptor's PDVs and
//! all data-set bytes stream through untouched.

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
        Ok(if pdv.is_command() {
            PdvVerdict::Hold
        } else {
            PdvVerdict::Forward
        })
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
            let mut activity = self
                .activity
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            activity.count(cmd.name(), cmd.sop_class.as_deref());
        }
        match self.grant.check(&cmd) {
            Ok(()) => Ok(CommandVerdict::Allow),
            Err(why) => {
                self.activity
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .refused += 1;
                self.refuse(&cmd, pcid, &why, replies);
                Ok(CommandVerdict::Deny)
            }
        }
    }
}
