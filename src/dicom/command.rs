//! DIMSE command sets (PS3.7 §6.3, §9.3, Annex E): always Implicit VR Little Endian, group
//! 0000 only, each element `group u16 LE | element u16 LE | length u32 LE | value`. The
//! decoder reads the handful of elements policy needs from a held, bounded command set and
//! builds the gateway's own failure responses. Sans-IO; every length is checked against the
//! bytes that are really there.
//!
//! The grammar is strict because the PACS reads the same bytes with dcmtk, which is
//! lenient in its own way: it keeps the first of two equal tags and sorts the rest
//! (dcitem.cc), ignores the Command Group Length, reads text values as C strings (a NUL
//! ends them) and strips their spaces (dimcmd.cc). Anything two readers could read
//! differently is an error here (the relay aborts the association): tags not in strictly
//! ascending order (PS3.5 §7.1: "ordered by increasing Data Element Tag", so a repeated
//! tag is out of order too), a group other than 0000, an odd value length (PS3.5 §7.1.1),
//! a Command Group Length that is not the byte count after it, a US value that is not 2
//! bytes, a SOP Class UID outside the UID grammar (PS3.5 §9.1), a Move Destination that is
//! not a valid AE title ([`super::ae`]), and trailing bytes that are not an element.

use bytes::{BufMut, Bytes, BytesMut};

use super::ae::{self, AeError};

/// Element header: group, element, value length (PS3.5 §7.1.2, implicit VR).
const ELEMENT_HEADER_LEN: usize = 8;

// Tags of group 0000 (PS3.7 Annex E.1), as the element number.
const GROUP_LENGTH: u16 = 0x0000;
const AFFECTED_SOP_CLASS: u16 = 0x0002;
const REQUESTED_SOP_CLASS: u16 = 0x0003;
const COMMAND_FIELD: u16 = 0x0100;
const MESSAGE_ID: u16 = 0x0110;
const MESSAGE_ID_RESPONDED_TO: u16 = 0x0120;
const MOVE_DESTINATION: u16 = 0x0600;
const DATA_SET_TYPE: u16 = 0x0800;
const STATUS: u16 = 0x0900;
const ERROR_COMMENT: u16 = 0x0902;
const AFFECTED_SOP_INSTANCE: u16 = 0x1000;

/// CommandDataSetType (0000,0800) value meaning "no data set follows" (PS3.7 E.1).
pub const NO_DATA_SET: u16 = 0x0101;
/// Refused: Not Authorized (PS3.7 C.4.x general status).
pub const STATUS_NOT_AUTHORIZED: u16 = 0x0124;

/// Command Field values (PS3.7 E.1); a response is the request | 0x8000.
pub mod field {
    pub const C_STORE: u16 = 0x0001;
    pub const C_GET: u16 = 0x0010;
    pub const C_FIND: u16 = 0x0020;
    pub const C_MOVE: u16 = 0x0021;
    pub const C_ECHO: u16 = 0x0030;
    pub const C_CANCEL: u16 = 0x0FFF;
    pub const RESPONSE: u16 = 0x8000;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command element at offset {0} overruns the command set")]
    Overrun(usize),
    #[error("command element ({0:04x},{1:04x}) is not in group 0000")]
    WrongGroup(u16, u16),
    #[error("command element (0000,{0:04x}) has a bad length")]
    BadLength(u16),
    #[error("command set has no Command Field (0000,0100)")]
    NoCommandField,
    #[error("command element (0000,{0:04x}) is repeated or out of ascending order (PS3.5 §7.1)")]
    OutOfOrder(u16),
    #[error("command element (0000,{0:04x}) has an odd length (PS3.5 §7.1.1)")]
    OddLength(u16),
    #[error("Command Group Length is {said}, but {actual} bytes follow it")]
    GroupLength { said: u32, actual: usize },
    #[error("command element (0000,{0:04x}) is not a valid UID (PS3.5 §9.1)")]
    BadUid(u16),
    #[error("Move Destination (0000,0600): {0}")]
    BadMoveDestination(AeError),
}

/// Longest UID (PS3.5 §9.1), also dcmtk's `DIC_UI_LEN`.
const UID_MAX: usize = 64;

/// The elements of a command set that policy and audit use. No patient data lives in a
/// command set (identifiers travel in the data set), so these may be logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    pub field: u16,
    pub message_id: Option<u16>,
    pub responded_to: Option<u16>,
    /// The SOP Class UID the PACS dispatches on: the Requested one for N-GET, N-SET,
    /// N-ACTION and N-DELETE requests, the Affected one for everything else.
    pub sop_class: Option<String>,
    pub sop_instance: Option<String>,
    pub move_destination: Option<String>,
    pub data_set_type: Option<u16>,
    pub status: Option<u16>,
}

impl Command {
    /// Decode a whole command set (the concatenated command fragments) under the strict
    /// grammar of the module comment.
    pub fn parse(bytes: &[u8]) -> Result<Self, CommandError> {
        let mut cmd = Command::default();
        let (mut field, mut affected, mut requested) = (None, None, None);
        let mut previous: Option<u16> = None;
        let mut pos = 0;
        while pos < bytes.len() {
            let (element, value) = element_at(bytes, pos)?;
            if previous.is_some_and(|p| element <= p) {
                return Err(CommandError::OutOfOrder(element));
            }
            previous = Some(element);
            let end = pos + ELEMENT_HEADER_LEN + value.len();
            match element {
                GROUP_LENGTH => {
                    // Ascending order puts it first; it counts every byte after itself.
                    let said = ul(element, value)?;
                    if said as usize != bytes.len() - end {
                        return Err(CommandError::GroupLength {
                            said,
                            actual: bytes.len() - end,
                        });
                    }
                }
                COMMAND_FIELD => field = Some(us(element, value)?),
                MESSAGE_ID => cmd.message_id = Some(us(element, value)?),
                MESSAGE_ID_RESPONDED_TO => cmd.responded_to = Some(us(element, value)?),
                DATA_SET_TYPE => cmd.data_set_type = Some(us(element, value)?),
                STATUS => cmd.status = Some(us(element, value)?),
                AFFECTED_SOP_CLASS => affected = Some(uid(element, value)?),
                REQUESTED_SOP_CLASS => requested = Some(uid(element, value)?),
                AFFECTED_SOP_INSTANCE => cmd.sop_instance = Some(text(value)),
                MOVE_DESTINATION => {
                    let dest = ae::title(value).map_err(CommandError::BadMoveDestination)?;
                    cmd.move_destination = Some(dest.to_string());
                }
                _ => {}
            }
            pos = end;
        }
        cmd.field = field.ok_or(CommandError::NoCommandField)?;
        // The element the PACS dispatches on (dimcmd.cc): N-GET, N-SET, N-ACTION and
        // N-DELETE requests name the Requested SOP Class, everything else the Affected one
        // (PS3.7 §10.3). The other one, if present, is not read by anyone.
        cmd.sop_class = match cmd.field {
            0x0110 | 0x0120 | 0x0130 | 0x0150 => requested,
            _ => affected,
        };
        Ok(cmd)
    }

    pub fn is_response(&self) -> bool {
        self.field & field::RESPONSE != 0
    }

    /// A data set follows this command (PS3.7 E.1: any value but 0x0101).
    pub fn has_data_set(&self) -> bool {
        self.data_set_type.is_some_and(|t| t != NO_DATA_SET)
    }

    /// Short name for logs and audit records.
    pub fn name(&self) -> &'static str {
        name(self.field)
    }

    /// The final failure response to this request (PS3.7 §9.3: C-xxx-RSP with the
    /// request's SOP class, its Message ID as Message ID Being Responded To, no data set,
    /// the given status and comment). For C-FIND/C-GET/C-MOVE one final response is
    /// enough; C-STORE echoes the SOP instance.
    pub fn failure_response(&self, status: u16, comment: &str) -> Bytes {
        let mut body = BytesMut::with_capacity(256);
        if let Some(uid) = &self.sop_class {
            put_text(&mut body, AFFECTED_SOP_CLASS, uid, 0);
        }
        put_us(&mut body, COMMAND_FIELD, self.field | field::RESPONSE);
        put_us(
            &mut body,
            MESSAGE_ID_RESPONDED_TO,
            self.message_id.unwrap_or(0),
        );
        put_us(&mut body, DATA_SET_TYPE, NO_DATA_SET);
        put_us(&mut body, STATUS, status);
        // ErrorComment is LO: at most 64 characters, space-padded (PS3.5 §6.2).
        let comment: String = comment.chars().take(64).collect();
        put_text(&mut body, ERROR_COMMENT, &comment, b' ');
        if self.field == field::C_STORE {
            if let Some(uid) = &self.sop_instance {
                put_text(&mut body, AFFECTED_SOP_INSTANCE, uid, 0);
            }
        }
        let mut out = BytesMut::with_capacity(12 + body.len());
        out.put_u16_le(0);
        out.put_u16_le(GROUP_LENGTH);
        out.put_u32_le(4);
        out.put_u32_le(body.len() as u32);
        out.put_slice(&body);
        out.freeze()
    }
}

pub fn name(command_field: u16) -> &'static str {
    match command_field & !field::RESPONSE {
        field::C_STORE => "C-STORE",
        field::C_GET => "C-GET",
        field::C_FIND => "C-FIND",
        field::C_MOVE => "C-MOVE",
        field::C_ECHO => "C-ECHO",
        field::C_CANCEL => "C-CANCEL",
        0x0100 => "N-EVENT-REPORT",
        0x0110 => "N-GET",
        0x0120 => "N-SET",
        0x0130 => "N-ACTION",
        0x0140 => "N-CREATE",
        0x0150 => "N-DELETE",
        _ => "unknown",
    }
}

/// The element at `pos`: its number and value, the value's length even and within `bytes`.
fn element_at(bytes: &[u8], pos: usize) -> Result<(u16, &[u8]), CommandError> {
    let head = bytes
        .get(pos..pos + ELEMENT_HEADER_LEN)
        .ok_or(CommandError::Overrun(pos))?;
    let group = u16::from_le_bytes([head[0], head[1]]);
    let element = u16::from_le_bytes([head[2], head[3]]);
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if group != 0 {
        return Err(CommandError::WrongGroup(group, element));
    }
    if len % 2 == 1 {
        return Err(CommandError::OddLength(element));
    }
    let start = pos + ELEMENT_HEADER_LEN;
    let value = start
        .checked_add(len)
        .and_then(|end| bytes.get(start..end))
        .ok_or(CommandError::Overrun(pos))?;
    Ok((element, value))
}

fn us(element: u16, value: &[u8]) -> Result<u16, CommandError> {
    let b: [u8; 2] = value
        .try_into()
        .map_err(|_| CommandError::BadLength(element))?;
    Ok(u16::from_le_bytes(b))
}

fn ul(element: u16, value: &[u8]) -> Result<u32, CommandError> {
    let b: [u8; 4] = value
        .try_into()
        .map_err(|_| CommandError::BadLength(element))?;
    Ok(u32::from_le_bytes(b))
}

/// A UID (PS3.5 §9.1): dot-separated non-empty runs of digits, at most 64 characters, and
/// at most one pad byte to the even length (NUL, or the space some peers send; dcmtk strips
/// either). Anything else could read differently as a C string.
fn uid(element: u16, value: &[u8]) -> Result<String, CommandError> {
    let content = match value.split_last() {
        Some((0 | b' ', rest)) => rest,
        _ => value,
    };
    let valid = !content.is_empty()
        && content.len() <= UID_MAX
        && content
            .split(|&b| b == b'.')
            .all(|part| !part.is_empty() && part.iter().all(u8::is_ascii_digit));
    if !valid {
        return Err(CommandError::BadUid(element));
    }
    Ok(content.iter().map(|&b| char::from(b)).collect())
}

/// Values policy does not read (the SOP Instance UID echoed in a C-STORE-RSP): keep
/// printable ASCII only so a hostile value cannot forge log lines.
fn text(value: &[u8]) -> String {
    let s: String = value
        .iter()
        .take(UID_MAX)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    s.trim_matches(|c| c == ' ' || c == '?').to_string()
}

fn put_us(out: &mut BytesMut, element: u16, value: u16) {
    out.put_u16_le(0);
    out.put_u16_le(element);
    out.put_u32_le(2);
    out.put_u16_le(value);
}

/// Values have even length (PS3.5 §7.1): pad with `pad` (NUL for UI, space for LO/AE).
fn put_text(out: &mut BytesMut, element: u16, value: &str, pad: u8) {
    let odd = value.len() % 2;
    out.put_u16_le(0);
    out.put_u16_le(element);
    out.put_u32_le((value.len() + odd) as u32);
    out.put_slice(value.as_bytes());
    if odd == 1 {
        out.put_u8(pad);
    }
}

#[cfg(test)]
mod tests;
