//! The seam where DICOM policy plugs into the relay. The relay walks PDU and PDV headers
//! (see `walker`) and asks an [`Inspector`] what to do with each PDV and each complete
//! command; the default methods pass everything through. Inspectors never see data-set
//! bytes: those stream from the TLS buffer to the socket untouched.

use bytes::Bytes;

use super::association::Association;
use super::pdu::{AbortReason, PdvHeader};

/// Which peer sent the bytes being inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The association requestor (the client, e.g. a modality).
    FromRequestor,
    /// The association acceptor (the PACS).
    FromAcceptor,
}

/// What to do with one PDV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdvVerdict {
    /// Pass it on unchanged, as it arrives.
    Forward,
    /// A command fragment: hold its PDU (bounded) until the command is complete, then
    /// [`Inspector::command`] decides.
    Hold,
    /// Drop it (the data set of a refused command).
    Swallow,
}

/// What to do with a complete command set that was held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandVerdict {
    /// Flush the held PDUs unchanged and go on.
    Allow,
    /// Discard the held PDUs; the inspector swallows the data set and queues the response.
    Deny,
}

/// Why the gateway aborts the association (A-ABORT, source 2, to both peers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct Abort {
    pub reason: AbortReason,
    pub why: String,
}

impl Abort {
    pub fn new(reason: AbortReason, why: impl Into<String>) -> Self {
        Self {
            reason,
            why: why.into(),
        }
    }
}

/// Messages an inspector sends back to the peer whose bytes it is inspecting (e.g. a
/// refusal response); the relay writes them at the next PDU boundary of that stream.
#[derive(Debug, Default)]
pub struct Replies {
    pub(crate) queued: Vec<Bytes>,
}

impl Replies {
    pub fn push(&mut self, pdu: Bytes) {
        self.queued.push(pdu);
    }
}

/// Observes and filters one association. Implementations are pure (no IO) and are called
/// with the association's lock held, so they must not block.
pub trait Inspector: Send {
    /// The acceptor accepted the association.
    fn accepted(&mut self, _rq: &Association, _ac: &Association) {}

    /// A PDV header inside a P-DATA-TF.
    fn pdv(
        &mut self,
        _from: Direction,
        _pdv: &PdvHeader,
        _replies: &mut Replies,
    ) -> Result<PdvVerdict, Abort> {
        Ok(PdvVerdict::Forward)
    }

    /// The complete command set (the payload of the held command fragments).
    fn command(
        &mut self,
        _from: Direction,
        _pcid: u8,
        _command: &[u8],
        _replies: &mut Replies,
    ) -> Result<CommandVerdict, Abort> {
        Ok(CommandVerdict::Allow)
    }

    /// A release or abort PDU passed (for accounting).
    fn control(&mut self, _from: Direction, _pdu_type: u8) {}
}

/// Forwards everything; framing is still validated by the walker.
#[derive(Debug, Default)]
pub struct PassThrough;

impl Inspector for PassThrough {}
