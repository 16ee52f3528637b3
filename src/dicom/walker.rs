//! The sans-IO core of the relay: walks PDU and PDV headers (PS3.8 §9.3.1, §9.3.5) in one
//! direction's byte stream and says which byte ranges to forward, without copying them.
//!
//! Framing is validated before any byte of a PDU leaves: PDU types and phases (through the
//! [`Session`]), PDU lengths against the negotiated maximum, PDV lengths against their PDU.
//! P-DATA-TF bodies stream: once the PDU header and its first PDV header are judged, the
//! fragment bytes are forwarded as they arrive. Only command fragments are held (bounded),
//! and only when the inspector asks. Non-P-DATA PDUs (at most 64 KiB) are collected whole.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::inspect::{Abort, CommandVerdict, Direction, PdvVerdict, Replies};
use super::pdu::{AbortReason, PduHeader, PdvHeader, PDU_HEADER_LEN, PDV_HEADER_LEN, P_DATA_TF};
use super::session::Session;

/// Command sets are a dozen elements; 64 KiB is far more than any real one needs.
const COMMAND_MAX: usize = 64 * 1024;
/// Held raw PDUs: the command plus its PDU and PDV headers.
const HOLD_MAX: usize = 2 * COMMAND_MAX;

/// What the pump must do, in order, after a `feed`.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes of the fed input to the other peer.
    Forward(Range<usize>),
    /// Write these bytes (released hold, or a collected control PDU) to the other peer.
    Send(Bytes),
}

#[derive(Debug, Default)]
pub struct Outbox {
    pub actions: Vec<Action>,
    /// Messages back to the peer whose bytes were fed.
    pub replies: Replies,
}

impl Outbox {
    fn forward(&mut self, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        if let Some(Action::Forward(last)) = self.actions.last_mut() {
            if last.end == range.start {
                last.end = range.end;
                return;
            }
        }
        self.actions.push(Action::Forward(range));
    }

    pub fn clear(&mut self) {
        self.actions.clear();
        self.replies.queued.clear();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stream,
    Hold,
    Drop,
}

#[derive(Debug, Clone, Copy)]
enum State {
    PduStart,
    Control {
        remaining: usize,
    },
    PdvStart {
        pdu_remaining: usize,
        mode: Mode,
    },
    Fragment {
        pdu_remaining: usize,
        frag_remaining: usize,
        mode: Mode,
        pdv: PdvHeader,
    },
}

pub struct Walker {
    from: Direction,
    state: State,
    /// Raw bytes of held PDUs, released unchanged if the command is allowed.
    hold: BytesMut,
    /// Payload of the held command fragments, for the inspector.
    command: BytesMut,
    /// A non-P-DATA PDU being collected.
    control: BytesMut,
}

impl Walker {
    pub fn new(from: Direction) -> Self {
        Self {
            from,
            state: State::PduStart,
            hold: BytesMut::new(),
            command: BytesMut::new(),
            control: BytesMut::new(),
        }
    }

    /// At a PDU boundary with nothing held: the output stream is between PDUs too, so
    /// the gateway may insert a PDU of its own here.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::PduStart) && self.hold.is_empty()
    }

    /// Walk `input`, appending actions to `out`. Returns how many bytes were consumed; the
    /// rest (at most an incomplete PDU header plus PDV header, 11 bytes) must be fed again
    /// with more input after it.
    pub fn feed(
        &mut self,
        input: &[u8],
        session: &mut Session,
        out: &mut Outbox,
    ) -> Result<usize, Abort> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            let step = match self.state {
                State::PduStart => self.pdu_start(rest, pos, session, out)?,
                State::Control { remaining } => self.control(rest, remaining, session, out)?,
                State::PdvStart {
                    pdu_remaining,
                    mode,
                } => {
                    if pdu_remaining == 0 {
                        self.state = State::PduStart;
                        Some(0)
                    } else {
                        self.pdv_start(rest, pos, pdu_remaining, mode, session, out)?
                    }
                }
                State::Fragment {
                    pdu_remaining,
                    frag_remaining,
                    mode,
                    pdv,
                } => self.fragment(
                    rest,
                    pos,
                    pdu_remaining,
                    frag_remaining,
                    mode,
                    pdv,
                    session,
                    out,
                )?,
            };
            match step {
                Some(n) => pos += n,
                None => return Ok(pos),
            }
        }
    }

    /// `None`: need more input.
    fn pdu_start(
        &mut self,
        rest: &[u8],
        pos: usize,
        session: &mut Session,
        out: &mut Outbox,
    ) -> Result<Option<usize>, Abort> {
        let Some(header) = PduHeader::parse(rest) else {
            return Ok(None);
        };
        session.check_header(self.from, header.pdu_type, header.length)?;
        let length = header.length as usize;
        if header.pdu_type != P_DATA_TF {
            self.control.clear();
            self.control.extend_from_slice(&rest[..PDU_HEADER_LEN]);
            self.state = State::Control { remaining: length };
            return Ok(Some(PDU_HEADER_LEN));
        }
        // The PDU header is judged together with its first PDV (check_header guaranteed
        // room for one PDV header).
        let Some(pdv) = PdvHeader::parse(&rest[PDU_HEADER_LEN..]) else {
            return Ok(None);
        };
        let frag = fragment_len(&pdv, length)?;
        let verdict = session.inspector().pdv(self.from, &pdv, &mut out.replies)?;
        let mode = self.first_mode(verdict, &pdv)?;
        let both = PDU_HEADER_LEN + PDV_HEADER_LEN;
        self.emit(mode, &rest[..both], pos..pos + both, out)?;
        self.state = State::Fragment {
            pdu_remaining: length - PDV_HEADER_LEN - frag,
            frag_remaining: frag,
            mode,
            pdv,
        };
        Ok(Some(both))
    }

    fn control(
        &mut self,
        rest: &[u8],
        remaining: usize,
        session: &mut Session,
        out: &mut Outbox,
    ) -> Result<Option<usize>, Abort> {
        let take = remaining.min(rest.len());
        self.control.extend_from_slice(&rest[..take]);
        if take < remaining {
            self.state = State::Control {
                remaining: remaining - take,
            };
            return Ok(if take == 0 { None } else { Some(take) });
        }
        session.control_pdu(self.from, &self.control, &mut out.replies)?;
        out.actions
            .push(Action::Send(self.control.split().freeze()));
        self.state = State::PduStart;
        Ok(Some(take))
    }

    #[allow(clippy::too_many_arguments)]
    fn pdv_start(
        &mut self,
        rest: &[u8],
        pos: usize,
        pdu_remaining: usize,
        mode: Mode,
        session: &mut Session,
        out: &mut Outbox,
    ) -> Result<Option<usize>, Abort> {
        let Some(pdv) = PdvHeader::parse(rest) else {
            if pdu_remaining < PDV_HEADER_LEN {
                return Err(overrun());
            }
            return Ok(None);
        };
        let frag = fragment_len(&pdv, pdu_remaining)?;
        let verdict = session.inspector().pdv(self.from, &pdv, &mut out.replies)?;
        let consistent = matches!(
            (mode, verdict),
            (Mode::Stream, PdvVerdict::Forward)
                | (Mode::Drop, PdvVerdict::Swallow)
                | (Mode::Hold, PdvVerdict::Hold)
        );
        if !consistent || (verdict == PdvVerdict::Hold && !pdv.is_command()) {
            // With the asynchronous operations window at 1 (what Orthanc negotiates), a
            // new message never starts inside a PDU that carries the previous one.
            return Err(Abort::new(
                AbortReason::UnexpectedPduParameter,
                "PDVs of different messages in one P-DATA-TF",
            ));
        }
        self.emit(
            mode,
            &rest[..PDV_HEADER_LEN],
            pos..pos + PDV_HEADER_LEN,
            out,
        )?;
        self.state = State::Fragment {
            pdu_remaining: pdu_remaining - PDV_HEADER_LEN - frag,
            frag_remaining: frag,
            mode,
            pdv,
        };
        Ok(Some(PDV_HEADER_LEN))
    }

    #[allow(clippy::too_many_arguments)]
    fn fragment(
        &mut self,
        rest: &[u8],
        pos: usize,
        pdu_remaining: usize,
        frag_remaining: usize,
        mut mode: Mode,
        pdv: PdvHeader,
        session: &mut Session,
        out: &mut Outbox,
    ) -> Result<Option<usize>, Abort> {
        let take = frag_remaining.min(rest.len());
        self.emit(mode, &rest[..take], pos..pos + take, out)?;
        if mode == Mode::Hold {
            if self.command.len() + take > COMMAND_MAX {
                return Err(Abort::new(
                    AbortReason::InvalidPduParameterValue,
                    "command set too long",
                ));
            }
            self.command.extend_from_slice(&rest[..take]);
        }
        if take < frag_remaining {
            self.state = State::Fragment {
                pdu_remaining,
                frag_remaining: frag_remaining - take,
                mode,
                pdv,
            };
            return Ok(if take == 0 { None } else { Some(take) });
        }
        if mode == Mode::Hold && pdv.is_last() {
            let verdict = session.inspector().command(
                self.from,
                pdv.pcid,
                &self.command,
                &mut out.replies,
            )?;
            self.command.clear();
            mode = match verdict {
                CommandVerdict::Allow => {
                    out.actions.push(Action::Send(self.hold.split().freeze()));
                    Mode::Stream
                }
                CommandVerdict::Deny => {
                    self.hold.clear();
                    Mode::Drop
                }
            };
        }
        self.state = State::PdvStart {
            pdu_remaining,
            mode,
        };
        Ok(Some(take))
    }

    /// The first PDV sets the mode of its PDU. A command still being held from earlier
    /// PDUs must continue with command fragments.
    fn first_mode(&self, verdict: PdvVerdict, pdv: &PdvHeader) -> Result<Mode, Abort> {
        let holding = !self.hold.is_empty();
        match verdict {
            PdvVerdict::Hold if pdv.is_command() => Ok(Mode::Hold),
            PdvVerdict::Forward if !holding => Ok(Mode::Stream),
            PdvVerdict::Swallow if !holding => Ok(Mode::Drop),
            _ => Err(Abort::new(
                AbortReason::UnexpectedPduParameter,
                "command fragments interrupted by a data set",
            )),
        }
    }

    fn emit(
        &mut self,
        mode: Mode,
        bytes: &[u8],
        range: Range<usize>,
        out: &mut Outbox,
    ) -> Result<(), Abort> {
        match mode {
            Mode::Stream => out.forward(range),
            Mode::Hold => {
                if self.hold.len() + bytes.len() > HOLD_MAX {
                    return Err(Abort::new(
                        AbortReason::InvalidPduParameterValue,
                        "command PDUs too long",
                    ));
                }
                self.hold.extend_from_slice(bytes);
            }
            Mode::Drop => {}
        }
        Ok(())
    }
}

/// Fragment length of a PDV that must fit in `available` bytes of its PDU (PS3.8 §9.3.5.1:
/// the item length counts the pcid and control bytes).
fn fragment_len(pdv: &PdvHeader, available: usize) -> Result<usize, Abort> {
    let item = pdv.item_length as usize;
    if item < 2 {
        return Err(Abort::new(
            AbortReason::InvalidPduParameterValue,
            "PDV item length below 2",
        ));
    }
    if available < 4 + item {
        return Err(overrun());
    }
    Ok(item - 2)
}

fn overrun() -> Abort {
    Abort::new(
        AbortReason::InvalidPduParameterValue,
        "PDV overruns its P-DATA-TF",
    )
}

#[cfg(test)]
mod tests;
