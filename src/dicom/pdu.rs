//! Upper Layer PDU framing (PS3.8 §9.3): the 6-byte header, the PDV item header, and the
//! few PDUs the gateway writes itself (A-ASSOCIATE-RJ, A-ABORT, a one-PDV P-DATA-TF).
//! All integers are big-endian; reserved bytes are written as 0 and never checked.

use bytes::{BufMut, Bytes, BytesMut};

/// `type u8 | reserved u8 | length u32` (PS3.8 §9.3.1); `length` excludes these 6 bytes.
pub const PDU_HEADER_LEN: usize = 6;
/// `item-length u32 | pcid u8 | message-control-header u8` (PS3.8 §9.3.5.1, Annex E.2);
/// `item-length` counts pcid and the header byte, hence the fragment is `item-length - 2`.
pub const PDV_HEADER_LEN: usize = 6;

pub const ASSOCIATE_RQ: u8 = 0x01;
pub const ASSOCIATE_AC: u8 = 0x02;
pub const ASSOCIATE_RJ: u8 = 0x03;
pub const P_DATA_TF: u8 = 0x04;
pub const RELEASE_RQ: u8 = 0x05;
pub const RELEASE_RP: u8 = 0x06;
pub const ABORT: u8 = 0x07;

pub fn type_name(pdu_type: u8) -> &'static str {
    match pdu_type {
        ASSOCIATE_RQ => "A-ASSOCIATE-RQ",
        ASSOCIATE_AC => "A-ASSOCIATE-AC",
        ASSOCIATE_RJ => "A-ASSOCIATE-RJ",
        P_DATA_TF => "P-DATA-TF",
        RELEASE_RQ => "A-RELEASE-RQ",
        RELEASE_RP => "A-RELEASE-RP",
        ABORT => "A-ABORT",
        _ => "unknown PDU",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduHeader {
    pub pdu_type: u8,
    pub length: u32,
}

impl PduHeader {
    /// Parse the first 6 bytes of `bytes`; `None` if fewer are available.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let h: &[u8; PDU_HEADER_LEN] = bytes.get(..PDU_HEADER_LEN)?.try_into().ok()?;
        Some(Self {
            pdu_type: h[0],
            length: u32::from_be_bytes([h[2], h[3], h[4], h[5]]),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdvHeader {
    /// Item length: presentation context id + header byte + fragment.
    pub item_length: u32,
    pub pcid: u8,
    /// Message control header: bit 0 command (1) or data set (0), bit 1 last fragment.
    pub control: u8,
}

impl PdvHeader {
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let h: &[u8; PDV_HEADER_LEN] = bytes.get(..PDV_HEADER_LEN)?.try_into().ok()?;
        Some(Self {
            item_length: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
            pcid: h[4],
            control: h[5],
        })
    }

    pub fn is_command(&self) -> bool {
        self.control & 0x01 != 0
    }

    pub fn is_last(&self) -> bool {
        self.control & 0x02 != 0
    }
}

/// A-ASSOCIATE-RJ parameters (PS3.8 §9.3.4, Table 9-21).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// 1 permanent, 2 transient.
    pub result: u8,
    /// 1 service-user, 2 service-provider (ACSE), 3 service-provider (presentation).
    pub source: u8,
    pub reason: u8,
}

impl Rejection {
    /// 1/1/3: calling AE title not recognised.
    pub const CALLING_AE_NOT_RECOGNIZED: Self = Self {
        result: 1,
        source: 1,
        reason: 3,
    };
    /// 1/1/7: called AE title not recognised.
    pub const CALLED_AE_NOT_RECOGNIZED: Self = Self {
        result: 1,
        source: 1,
        reason: 7,
    };
    /// 1/2/2: protocol version not supported.
    pub const PROTOCOL_VERSION: Self = Self {
        result: 1,
        source: 2,
        reason: 2,
    };
    /// 2/3/1: transient, temporary congestion (the PACS is unreachable).
    pub const TEMPORARY_CONGESTION: Self = Self {
        result: 2,
        source: 3,
        reason: 1,
    };
    /// 2/3/2: transient, local limit exceeded (concurrency or rate limits).
    pub const LOCAL_LIMIT_EXCEEDED: Self = Self {
        result: 2,
        source: 3,
        reason: 2,
    };

    pub fn to_pdu(self) -> [u8; 10] {
        [
            ASSOCIATE_RJ,
            0,
            0,
            0,
            0,
            4,
            0,
            self.result,
            self.source,
            self.reason,
        ]
    }
}

/// A-ABORT reasons when the gateway (a service provider, source 2) aborts (PS3.8 Table 9-26).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    Unspecified = 0,
    UnrecognizedPdu = 1,
    UnexpectedPdu = 2,
    UnrecognizedPduParameter = 4,
    UnexpectedPduParameter = 5,
    InvalidPduParameterValue = 6,
}

pub fn abort_pdu(reason: AbortReason) -> [u8; 10] {
    [ABORT, 0, 0, 0, 0, 4, 0, 0, 2, reason as u8]
}

/// A P-DATA-TF with one PDV carrying `payload` (used for the gateway's own responses).
pub fn p_data(pcid: u8, control: u8, payload: &[u8]) -> Bytes {
    let item_length = payload.len() as u32 + 2;
    let mut out = BytesMut::with_capacity(PDU_HEADER_LEN + PDV_HEADER_LEN + payload.len());
    out.put_u8(P_DATA_TF);
    out.put_u8(0);
    out.put_u32(item_length + 4);
    out.put_u32(item_length);
    out.put_u8(pcid);
    out.put_u8(control);
    out.put_slice(payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calling_ae_rejection_matches_the_standard_bytes() {
        // dicom-brief §1: `03 00 00000004 00 01 01 03`.
        assert_eq!(
            Rejection::CALLING_AE_NOT_RECOGNIZED.to_pdu(),
            [0x03, 0, 0, 0, 0, 4, 0, 1, 1, 3]
        );
    }

    #[test]
    fn headers_parse_big_endian_and_need_six_bytes() {
        let h = PduHeader::parse(&[4, 0, 0, 0, 0x40, 0x06]).unwrap();
        assert_eq!((h.pdu_type, h.length), (4, 0x4006));
        assert_eq!(PduHeader::parse(&[4, 0, 0]), None);
        let v = PdvHeader::parse(&[0, 0, 0, 0x0a, 1, 3]).unwrap();
        assert!(v.is_command() && v.is_last() && v.pcid == 1 && v.item_length == 10);
    }

    #[test]
    fn p_data_wraps_one_pdv() {
        let pdu = p_data(41, 3, b"abcd");
        assert_eq!(
            &pdu[..],
            &[4, 0, 0, 0, 0, 10, 0, 0, 0, 6, 41, 3, b'a', b'b', b'c', b'd']
        );
    }
}
