//! Association state shared by both directions of the relay: which phase the association
//! is in (so an out-of-place PDU is an abort, PS3.8 §9.2 state machine), the negotiated
//! maximum P-DATA lengths, and the inspector.

use super::association::Association;
use super::inspect::{Abort, Direction, Inspector, Replies};
use super::pdu::{self, AbortReason};

/// Non-P-DATA PDUs are held whole; none is legitimately larger than this (an AC with 128
/// presentation contexts is under 10 KiB).
pub const CONTROL_PDU_MAX: u32 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// RQ forwarded, waiting for the acceptor's AC, RJ or ABORT.
    AwaitingAccept,
    Established,
    /// An RJ or ABORT passed: nothing more may follow.
    Closed,
}

pub struct Session {
    pub rq: Association,
    pub ac: Option<Association>,
    phase: Phase,
    cap: u32,
    /// Largest P-DATA-TF length field the requestor accepts (its RQ's Maximum Length).
    max_to_requestor: u32,
    /// Largest P-DATA-TF length field the acceptor accepts (its AC's Maximum Length).
    max_to_acceptor: u32,
    inspector: Box<dyn Inspector>,
}

impl Session {
    /// `cap` bounds every PDU whatever was negotiated (0 = "unlimited" is capped too).
    pub fn new(rq: Association, cap: u32, inspector: Box<dyn Inspector>) -> Self {
        let max_to_requestor = negotiated(rq.user.max_length, cap);
        Self {
            rq,
            ac: None,
            phase: Phase::AwaitingAccept,
            cap,
            max_to_requestor,
            max_to_acceptor: cap,
            inspector,
        }
    }

    /// Still waiting for the acceptor's A-ASSOCIATE-AC, -RJ or A-ABORT.
    pub fn awaiting_accept(&self) -> bool {
        self.phase == Phase::AwaitingAccept
    }

    pub fn inspector(&mut self) -> &mut dyn Inspector {
        self.inspector.as_mut()
    }

    /// Check a PDU header before any of its bytes are forwarded.
    pub fn check_header(&self, from: Direction, pdu_type: u8, length: u32) -> Result<(), Abort> {
        match pdu_type {
            pdu::P_DATA_TF => {
                if self.phase != Phase::Established {
                    return Err(unexpected(pdu_type, "before the association was accepted"));
                }
                let max = match from {
                    Direction::FromRequestor => self.max_to_acceptor,
                    Direction::FromAcceptor => self.max_to_requestor,
                };
                if length > max {
                    return Err(Abort::new(
                        AbortReason::InvalidPduParameterValue,
                        format!("P-DATA-TF of {length} bytes exceeds the negotiated maximum {max}"),
                    ));
                }
                if (length as usize) < pdu::PDV_HEADER_LEN {
                    return Err(Abort::new(
                        AbortReason::InvalidPduParameterValue,
                        "P-DATA-TF without a PDV",
                    ));
                }
                Ok(())
            }
            // PS3.8 §9.3.4, 9.3.6-9.3.8: these carry exactly 4 bytes.
            pdu::ASSOCIATE_RJ | pdu::RELEASE_RQ | pdu::RELEASE_RP | pdu::ABORT if length != 4 => {
                Err(Abort::new(
                    AbortReason::InvalidPduParameterValue,
                    format!("{} with length {length}", pdu::type_name(pdu_type)),
                ))
            }
            pdu::ASSOCIATE_RQ..=pdu::ABORT if length > CONTROL_PDU_MAX => Err(Abort::new(
                AbortReason::InvalidPduParameterValue,
                format!("{} of {length} bytes is too long", pdu::type_name(pdu_type)),
            )),
            pdu::ASSOCIATE_RQ..=pdu::ABORT => Ok(()),
            other => Err(Abort::new(
                AbortReason::UnrecognizedPdu,
                format!("unrecognised PDU type {other:#04x}"),
            )),
        }
    }

    /// A whole non-P-DATA PDU: advance the phase; the AC fixes the acceptor's maximum.
    pub fn control_pdu(
        &mut self,
        from: Direction,
        pdu: &[u8],
        _replies: &mut Replies,
    ) -> Result<(), Abort> {
        let pdu_type = pdu.first().copied().unwrap_or(0);
        match (pdu_type, from, self.phase) {
            (pdu::ASSOCIATE_AC, Direction::FromAcceptor, Phase::AwaitingAccept) => {
                let ac = Association::parse_ac(pdu).map_err(|e| {
                    Abort::new(
                        AbortReason::InvalidPduParameterValue,
                        format!("bad A-ASSOCIATE-AC: {e}"),
                    )
                })?;
                self.max_to_acceptor = negotiated(ac.user.max_length, self.cap);
                self.phase = Phase::Established;
                self.inspector.accepted(&self.rq, &ac);
                self.ac = Some(ac);
            }
            (pdu::ASSOCIATE_RJ, Direction::FromAcceptor, Phase::AwaitingAccept) => {
                self.phase = Phase::Closed;
            }
            (pdu::RELEASE_RQ | pdu::RELEASE_RP, _, Phase::Established) => {
                self.inspector.control(from, pdu_type);
            }
            (pdu::ABORT, _, Phase::AwaitingAccept | Phase::Established) => {
                self.phase = Phase::Closed;
                self.inspector.control(from, pdu_type);
            }
            (t, _, _) => return Err(unexpected(t, "at this point of the association")),
        }
        Ok(())
    }
}

fn negotiated(declared: Option<u32>, cap: u32) -> u32 {
    match declared {
        Some(0) | None => cap,
        Some(n) => n.min(cap),
    }
}

fn unexpected(pdu_type: u8, when: &str) -> Abort {
    Abort::new(
        AbortReason::UnexpectedPdu,
        format!("unexpected {} {when}", pdu::type_name(pdu_type)),
    )
}
