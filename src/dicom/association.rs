//! A-ASSOCIATE-RQ and -AC bodies (PS3.8 §9.3.2-9.3.3): AE titles, presentation contexts and
//! user information. Sans-IO and bounds-checked: every length is checked against the bytes
//! that are really there before it is used. The gateway forwards the original bytes and
//! never re-encodes these PDUs; this is only for policy and logs.

use super::ae::{self, AE_MAX};
use super::pdu::{PduHeader, ASSOCIATE_AC, ASSOCIATE_RQ, PDU_HEADER_LEN};

/// Offsets within the PDU, header included (PS3.8 Table 9-11).
const PROTOCOL_VERSION_AT: usize = 6;
const CALLED_AE_AT: usize = 10;
const CALLING_AE_AT: usize = 26;
const ITEMS_AT: usize = 74;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssociationError {
    #[error("{0} is shorter than its fixed part")]
    TooShort(&'static str),
    #[error("expected {expected}, got PDU type {got:#04x}")]
    WrongType { expected: &'static str, got: u8 },
    #[error("PDU length field disagrees with the bytes received")]
    LengthMismatch,
    #[error("item {item:#04x} at offset {offset} overruns its container")]
    ItemOverrun { item: u8, offset: usize },
    #[error("item {item:#04x} has an invalid value")]
    InvalidItem { item: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationContext {
    pub id: u8,
    /// RQ: always 0. AC: 0 accepted, 1-4 rejected (PS3.8 Table 9-18).
    pub result: u8,
    /// RQ only (an AC item carries no abstract syntax).
    pub abstract_syntax: Option<String>,
    pub transfer_syntaxes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInformation {
    /// Largest P-DATA-TF length the sender receives; 0 = unlimited (PS3.8 D.1).
    pub max_length: Option<u32>,
    pub implementation_class_uid: Option<String>,
    pub implementation_version: Option<String>,
    /// User Identity type (PS3.7 D.3.3.7): 1 user, 2 user+password, 3 Kerberos, 4 SAML, 5 JWT.
    /// The credentials themselves are never kept.
    pub user_identity_type: Option<u8>,
}

/// An A-ASSOCIATE-RQ or -AC: they share the fixed part (the AC echoes bytes 10-73).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub pdu_type: u8,
    pub protocol_version: u16,
    /// The titles as [`ae::shown`] renders them: the title itself when it is valid, else an
    /// escaped form that is never valid. Policy refuses invalid ones ([`ae::title`]).
    pub called_ae: String,
    pub calling_ae: String,
    pub application_context: Option<String>,
    pub contexts: Vec<PresentationContext>,
    pub user: UserInformation,
}

impl Association {
    /// Parse a whole A-ASSOCIATE-RQ (header included).
    pub fn parse_rq(pdu: &[u8]) -> Result<Self, AssociationError> {
        Self::parse(pdu, ASSOCIATE_RQ, "A-ASSOCIATE-RQ")
    }

    /// Parse a whole A-ASSOCIATE-AC (header included).
    pub fn parse_ac(pdu: &[u8]) -> Result<Self, AssociationError> {
        Self::parse(pdu, ASSOCIATE_AC, "A-ASSOCIATE-AC")
    }

    fn parse(pdu: &[u8], pdu_type: u8, name: &'static str) -> Result<Self, AssociationError> {
        let header = PduHeader::parse(pdu).ok_or(AssociationError::TooShort(name))?;
        if header.pdu_type != pdu_type {
            return Err(AssociationError::WrongType {
                expected: name,
                got: header.pdu_type,
            });
        }
        if header.length as usize != pdu.len() - PDU_HEADER_LEN {
            return Err(AssociationError::LengthMismatch);
        }
        if pdu.len() < ITEMS_AT {
            return Err(AssociationError::TooShort(name));
        }
        let mut assoc = Self {
            pdu_type,
            protocol_version: u16::from_be_bytes([
                pdu[PROTOCOL_VERSION_AT],
                pdu[PROTOCOL_VERSION_AT + 1],
            ]),
            called_ae: ae::shown(&pdu[CALLED_AE_AT..CALLED_AE_AT + AE_MAX]),
            calling_ae: ae::shown(&pdu[CALLING_AE_AT..CALLING_AE_AT + AE_MAX]),
            application_context: None,
            contexts: Vec::new(),
            user: UserInformation::default(),
        };
        for (item, value) in Items::new(&pdu[ITEMS_AT..], ITEMS_AT) {
            let (item, value) = (item?, value);
            match item {
                0x10 => assoc.application_context = Some(uid(value)),
                0x20 | 0x21 => assoc.contexts.push(presentation_context(item, value)?),
                0x50 => assoc.user = user_information(value)?,
                _ => {}
            }
        }
        Ok(assoc)
    }

    /// Presentation context ids the acceptor accepted (result 0), from an AC.
    pub fn accepted_contexts(&self) -> impl Iterator<Item = &PresentationContext> {
        self.contexts.iter().filter(|c| c.result == 0)
    }
}

/// UIDs in UL items are not padded, but strip trailing NUL/space anyway.
fn uid(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches(['\0', ' '])
        .to_string()
}

fn presentation_context(item: u8, v: &[u8]) -> Result<PresentationContext, AssociationError> {
    // id u8, reserved, result/reason u8 (AC) or reserved (RQ), reserved (PS3.8 §9.3.2.2).
    let fixed = v.get(..4).ok_or(AssociationError::InvalidItem { item })?;
    let mut ctx = PresentationContext {
        id: fixed[0],
        result: if item == 0x21 { fixed[2] } else { 0 },
        abstract_syntax: None,
        transfer_syntaxes: Vec::new(),
    };
    for (sub, value) in Items::new(&v[4..], 0) {
        match sub? {
            0x30 => ctx.abstract_syntax = Some(uid(value)),
            0x40 => ctx.transfer_syntaxes.push(uid(value)),
            _ => {}
        }
    }
    Ok(ctx)
}

fn user_information(v: &[u8]) -> Result<UserInformation, AssociationError> {
    let mut user = UserInformation::default();
    for (sub, value) in Items::new(v, 0) {
        match sub? {
            0x51 => {
                let b: [u8; 4] = value
                    .try_into()
                    .map_err(|_| AssociationError::InvalidItem { item: 0x51 })?;
                user.max_length = Some(u32::from_be_bytes(b));
            }
            0x52 => user.implementation_class_uid = Some(uid(value)),
            0x55 => user.implementation_version = Some(uid(value)),
            0x58 => user.user_identity_type = value.first().copied(),
            _ => {}
        }
    }
    Ok(user)
}

/// Iterator over `type u8 | reserved u8 | length u16 | value` items (PS3.8 §9.3.2). Yields
/// an error (once, then stops) if an item overruns the buffer.
struct Items<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    failed: bool,
}

impl<'a> Items<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self {
            buf,
            pos: 0,
            base,
            failed: false,
        }
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = (Result<u8, AssociationError>, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let overrun = |item| AssociationError::ItemOverrun {
            item,
            offset: self.base + self.pos,
        };
        let Some(head) = rest.get(..4) else {
            self.failed = true;
            return Some((Err(overrun(rest[0])), &[]));
        };
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let Some(value) = rest.get(4..4 + len) else {
            self.failed = true;
            return Some((Err(overrun(head[0])), &[]));
        };
        self.pos += 4 + len;
        Some((Ok(head[0]), value))
    }
}

#[cfg(test)]
mod tests;
