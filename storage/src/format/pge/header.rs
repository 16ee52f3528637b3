//! Parsing, encoding and geometry of v2 and v3 headers (FORMAT.md, "Header").

use std::io::Read;

use super::{
    read_exact, Header, Identity, MAGIC, MAX_SEGMENTS, SALT_LEN, SEGMENT_LEN, SEGMENT_LOG2,
    SUITE_V2, SUITE_V3, TAG_LEN, V2_HEADER_LEN, V3_AAD_LEN, V3_FIXED_LEN, VERSION, VERSION_2,
};
use crate::keys::MAX_BLOB_LEN;
use crate::{Error, Result};

// === impl Header ===

impl Header {
    /// Header length in bytes (where the segments start).
    pub fn header_len(&self) -> usize {
        match self.version {
            VERSION_2 => V2_HEADER_LEN,
            _ => V3_FIXED_LEN + self.wrapped.len(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(self.header_len());
        h.extend_from_slice(&self.fixed());
        match self.version {
            VERSION_2 => h.extend_from_slice(&self.key_id.to_be_bytes()),
            _ => {
                h.extend_from_slice(&self.salt);
                h.extend_from_slice(&self.content_type.to_be_bytes());
                h.extend_from_slice(&self.key_id.to_be_bytes());
                // The blob length was checked against MAX_BLOB_LEN when made or parsed.
                h.extend_from_slice(&(self.wrapped.len() as u16).to_be_bytes());
            }
        }
        h.extend_from_slice(&self.wrapped);
        h
    }

    /// Parse a header from the start of `bytes` (which may hold more); the constant fields
    /// are checked here, the rest by the tags.
    pub fn parse(bytes: &[u8]) -> Result<Header> {
        let need = |n: usize| bytes.get(..n).ok_or(Error::Truncated);
        if !bytes.starts_with(&MAGIC) {
            return Err(match MAGIC.starts_with(bytes) {
                true => Error::Truncated,
                false => Error::UnknownFormat,
            });
        }
        let h = need(24)?;
        let (version, suite) = (h[4], h[5]);
        match (version, suite) {
            (VERSION, SUITE_V3) | (VERSION_2, SUITE_V2) => {}
            (VERSION | VERSION_2, _) => return Err(Error::BadHeader("unsupported suite")),
            _ => return Err(Error::BadHeader("unsupported version")),
        }
        if h[6] != SEGMENT_LOG2 {
            return Err(Error::BadHeader("unsupported segment size"));
        }
        if h[7] != 0 || h[23] != 0 {
            return Err(Error::BadHeader("reserved byte set"));
        }
        let mut header = Header {
            version,
            plaintext_len: u64::from_be_bytes(field(h, 8)),
            nonce_prefix: field(h, 16),
            salt: [0; SALT_LEN],
            content_type: 0,
            key_id: 0,
            wrapped: Vec::new(),
        };
        if version == VERSION_2 {
            let h = need(V2_HEADER_LEN)?;
            header.key_id = u32::from_be_bytes(field(h, 24));
            header.wrapped = h[28..V2_HEADER_LEN].to_vec();
        } else {
            let h = need(V3_FIXED_LEN)?;
            header.salt = field(h, 24);
            header.content_type = u32::from_be_bytes(field(h, 40));
            header.key_id = u32::from_be_bytes(field(h, 44));
            let w = usize::from(u16::from_be_bytes(field(h, 48)));
            if w == 0 || w > MAX_BLOB_LEN {
                return Err(Error::BadHeader("wrapped key length out of range"));
            }
            header.wrapped = need(V3_FIXED_LEN + w)?[V3_FIXED_LEN..].to_vec();
        }
        if header.segments() > MAX_SEGMENTS {
            return Err(Error::BadHeader("plaintext length too large"));
        }
        Ok(header)
    }

    /// Read exactly one header from `src`.
    pub fn read_from(src: &mut dyn Read) -> Result<Header> {
        let mut buf = vec![0u8; V3_FIXED_LEN];
        read_exact(src, &mut buf)?;
        let rest = match (buf.starts_with(&MAGIC), buf[4]) {
            (true, VERSION_2) => V2_HEADER_LEN - V3_FIXED_LEN,
            (true, VERSION) => usize::from(u16::from_be_bytes(field(&buf, 48))).min(MAX_BLOB_LEN),
            _ => 0,
        };
        let mut tail = vec![0u8; rest];
        read_exact(src, &mut tail)?;
        buf.extend_from_slice(&tail);
        Header::parse(&buf)
    }

    /// Bytes 0..24, common to both versions.
    pub(super) fn fixed(&self) -> [u8; 24] {
        let mut a = [0u8; 24];
        a[..4].copy_from_slice(&MAGIC);
        a[4] = self.version;
        a[5] = if self.version == VERSION_2 {
            SUITE_V2
        } else {
            SUITE_V3
        };
        a[6] = SEGMENT_LOG2;
        a[8..16].copy_from_slice(&self.plaintext_len.to_be_bytes());
        a[16..23].copy_from_slice(&self.nonce_prefix);
        a
    }

    /// v2: bytes 0..24. v3: bytes 0..44 (constants, length, prefix, salt, content type)
    /// then `u16 BE length || uuid`, which is not stored but supplied by the reader.
    pub(super) fn segment_aad(&self, id: &Identity) -> Vec<u8> {
        let mut aad = self.fixed().to_vec();
        if self.version != VERSION_2 {
            aad.extend_from_slice(&self.salt);
            aad.extend_from_slice(&self.content_type.to_be_bytes());
            debug_assert_eq!(aad.len(), V3_AAD_LEN);
            let uuid = id.uuid.as_bytes();
            let len = u16::try_from(uuid.len()).unwrap_or(u16::MAX);
            aad.extend_from_slice(&len.to_be_bytes());
            aad.extend_from_slice(&uuid[..usize::from(len)]);
        }
        aad
    }

    /// v2 key wrap AAD: bytes 0..28.
    pub(super) fn v2_wrap_aad(&self) -> Vec<u8> {
        let mut aad = self.fixed().to_vec();
        aad.extend_from_slice(&self.key_id.to_be_bytes());
        aad
    }

    /// Number of segments; an empty plaintext still has one (empty, final) segment.
    pub fn segments(&self) -> u64 {
        self.plaintext_len.div_ceil(SEGMENT_LEN as u64).max(1)
    }

    /// Total object size: header, plaintext and one tag per segment.
    pub fn object_len(&self) -> u64 {
        self.header_len() as u64 + self.plaintext_len + self.segments() * TAG_LEN as u64
    }

    pub fn segment_plain_len(&self, index: u64) -> usize {
        let start = index * SEGMENT_LEN as u64;
        // At most SEGMENT_LEN, so the cast cannot truncate.
        self.plaintext_len
            .saturating_sub(start)
            .min(SEGMENT_LEN as u64) as usize
    }

    pub fn segment_offset(&self, index: u64) -> u64 {
        self.header_len() as u64 + index * (SEGMENT_LEN + TAG_LEN) as u64
    }

    /// Covering segments of `start..start+len` and the byte range of the object that holds
    /// them. `len` must be > 0.
    pub fn span(&self, start: u64, len: u64) -> Result<(u64, u64, std::ops::Range<u64>)> {
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.plaintext_len && len > 0)
            .ok_or(Error::Range {
                start,
                len,
                size: self.plaintext_len,
            })?;
        let first = start / SEGMENT_LEN as u64;
        let last = (end - 1) / SEGMENT_LEN as u64;
        let bytes_end = self.segment_offset(last) + (self.segment_plain_len(last) + TAG_LEN) as u64;
        Ok((first, last, self.segment_offset(first)..bytes_end))
    }
}

fn field<const N: usize>(h: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[at..at + N]);
    out
}
