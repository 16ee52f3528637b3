//! The pacsgate object format, version 2 (byte by byte in `storage/FORMAT.md`).
//!
//! ```text
//! 0   4   magic 89 50 47 45 ("\x89PGE")
//! 4   1   version 0x02
//! 5   1   suite 0x01: AES-256-GCM segments, AES-256-GCM key wrap
//! 6   1   log2 of the segment size: 16 (64 KiB)
//! 7   1   reserved, 0
//! 8   8   plaintext length, u64 big-endian
//! 16  7   STREAM nonce prefix (random)
//! 23  1   reserved, 0                    -- bytes 0..24: AAD of every segment
//! 24  4   master key id, u32 big-endian  -- bytes 0..28: AAD of the key wrap
//! 28  12  wrap nonce (random)
//! 40  48  AES-256-GCM(master key, data key) || tag
//! 88  ..  segments: ciphertext (64 KiB, the last one shorter) || 16-byte tag
//! ```
//!
//! Segment `i` is sealed with the data key and the nonce
//! `prefix(7) || i (u32 BE) || last (0x01 on the final segment, else 0x00)`: the STREAM
//! construction (Hoang, Reyhanitabar, Rogaway, Vizar 2015), so segments cannot be
//! reordered, dropped or truncated without a tag failure. Every header byte is
//! authenticated: 0..28 by the wrap tag, 0..24 again by every segment tag, the nonce and
//! wrapped key by the wrap tag. Rekeying rewrites bytes 24..88 only.

mod whole;

use std::io::{self, Read};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::keys::{DataKey, KeyWrapper, WrappedKey, WRAPPED_LEN, WRAP_NONCE_LEN};
use crate::{Error, Result};

pub use self::whole::{open_stream, seal_slice, seal_stream, seal_to_slice, PlainBuffer};

pub const MAGIC: [u8; 4] = [0x89, b'P', b'G', b'E'];
pub const VERSION: u8 = 2;
pub const SUITE_AES256GCM: u8 = 1;
pub const SEGMENT_LOG2: u8 = 16;
pub const SEGMENT_LEN: usize = 1 << SEGMENT_LOG2;
pub const TAG_LEN: usize = 16;
pub const HEADER_LEN: usize = 88;
const SEGMENT_AAD_LEN: usize = 24;
const WRAP_AAD_LEN: usize = 28;
const PREFIX_LEN: usize = 7;
/// Segment indices are 32 bits in the nonce.
const MAX_SEGMENTS: u64 = 1 << 32;

/// The parsed 88-byte header.
#[derive(Clone, Copy)]
pub struct Header {
    pub plaintext_len: u64,
    pub nonce_prefix: [u8; PREFIX_LEN],
    pub key_id: u32,
    pub wrapped: WrappedKey,
}

/// The data key of one object, ready to seal or open its segments.
pub struct SegmentKey {
    key: LessSafeKey,
    header: Header,
    aad: [u8; SEGMENT_AAD_LEN],
}

// === impl Header ===

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..WRAP_AAD_LEN].copy_from_slice(&self.wrap_aad());
        h[28..40].copy_from_slice(&self.wrapped.nonce);
        h[40..88].copy_from_slice(&self.wrapped.sealed);
        h
    }

    /// Parse and check the constant fields; the rest is checked by the tags.
    pub fn parse(bytes: &[u8]) -> Result<Header> {
        if !bytes.starts_with(&MAGIC) {
            return Err(if MAGIC.starts_with(bytes) {
                Error::Truncated
            } else {
                Error::UnknownFormat
            });
        }
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(Error::Truncated)?;
        if h[4] != VERSION {
            return Err(Error::BadHeader("unsupported version"));
        }
        if h[5] != SUITE_AES256GCM || h[6] != SEGMENT_LOG2 {
            return Err(Error::BadHeader("unsupported suite or segment size"));
        }
        if h[7] != 0 || h[23] != 0 {
            return Err(Error::BadHeader("reserved byte set"));
        }
        let header = Header {
            plaintext_len: u64::from_be_bytes(field(h, 8)),
            nonce_prefix: field(h, 16),
            key_id: u32::from_be_bytes(field(h, 24)),
            wrapped: WrappedKey {
                nonce: field(h, 28),
                sealed: field(h, 40),
            },
        };
        if header.segments() > MAX_SEGMENTS {
            return Err(Error::BadHeader("plaintext length too large"));
        }
        Ok(header)
    }

    fn segment_aad(&self) -> [u8; SEGMENT_AAD_LEN] {
        let mut a = [0u8; SEGMENT_AAD_LEN];
        a[..4].copy_from_slice(&MAGIC);
        a[4] = VERSION;
        a[5] = SUITE_AES256GCM;
        a[6] = SEGMENT_LOG2;
        a[8..16].copy_from_slice(&self.plaintext_len.to_be_bytes());
        a[16..23].copy_from_slice(&self.nonce_prefix);
        a
    }

    fn wrap_aad(&self) -> [u8; WRAP_AAD_LEN] {
        let mut a = [0u8; WRAP_AAD_LEN];
        a[..SEGMENT_AAD_LEN].copy_from_slice(&self.segment_aad());
        a[24..28].copy_from_slice(&self.key_id.to_be_bytes());
        a
    }

    /// Number of segments; an empty plaintext still has one (empty, final) segment.
    pub fn segments(&self) -> u64 {
        self.plaintext_len.div_ceil(SEGMENT_LEN as u64).max(1)
    }

    /// Total object size: header, plaintext and one tag per segment.
    pub fn object_len(&self) -> u64 {
        object_len(self.plaintext_len)
    }

    pub fn segment_plain_len(&self, index: u64) -> usize {
        let start = index * SEGMENT_LEN as u64;
        // At most SEGMENT_LEN, so the cast cannot truncate.
        self.plaintext_len
            .saturating_sub(start)
            .min(SEGMENT_LEN as u64) as usize
    }

    pub fn segment_offset(&self, index: u64) -> u64 {
        HEADER_LEN as u64 + index * (SEGMENT_LEN + TAG_LEN) as u64
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

fn field<const N: usize>(h: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[at..at + N]);
    out
}

// === impl SegmentKey ===

impl SegmentKey {
    /// A new object of `plaintext_len` bytes under the current master key.
    pub fn create(keys: &dyn KeyWrapper, plaintext_len: u64) -> Result<SegmentKey> {
        let mut nonce_prefix = [0u8; PREFIX_LEN];
        aws_lc_rs::rand::fill(&mut nonce_prefix).map_err(|_| Error::Crypto)?;
        let mut header = Header {
            plaintext_len,
            nonce_prefix,
            key_id: keys.current_id(),
            wrapped: WrappedKey {
                nonce: [0; WRAP_NONCE_LEN],
                sealed: [0; WRAPPED_LEN],
            },
        };
        if header.segments() > MAX_SEGMENTS {
            return Err(Error::TooLarge(plaintext_len));
        }
        let dek = DataKey::generate()?;
        header.wrapped = keys.wrap(header.key_id, &header.wrap_aad(), &dek)?;
        SegmentKey::with_key(header, &dek)
    }

    /// Unwrap the data key of a stored object.
    pub fn open(keys: &dyn KeyWrapper, header: Header) -> Result<SegmentKey> {
        let dek = keys.unwrap(header.key_id, &header.wrap_aad(), &header.wrapped)?;
        SegmentKey::with_key(header, &dek)
    }

    fn with_key(header: Header, dek: &DataKey) -> Result<SegmentKey> {
        let unbound = UnboundKey::new(&AES_256_GCM, dek.expose()).map_err(|_| Error::Crypto)?;
        Ok(SegmentKey {
            key: LessSafeKey::new(unbound),
            aad: header.segment_aad(),
            header,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    fn nonce(&self, index: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[..PREFIX_LEN].copy_from_slice(&self.header.nonce_prefix);
        // index < MAX_SEGMENTS (checked when the header was made or parsed).
        n[7..11].copy_from_slice(&(index as u32).to_be_bytes());
        n[11] = u8::from(index + 1 == self.header.segments());
        Nonce::assume_unique_for_key(n)
    }

    /// Seal segment `index` in place; `buf` holds its plaintext followed by TAG_LEN spare
    /// bytes that receive the tag.
    pub fn seal(&self, index: u64, buf: &mut [u8]) -> Result<()> {
        let split = buf.len().checked_sub(TAG_LEN).ok_or(Error::Crypto)?;
        let (data, tag_out) = buf.split_at_mut(split);
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(index), Aad::from(&self.aad), data)
            .map_err(|_| Error::Crypto)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Seal segment `index` from `plain` into `sealed` (ciphertext || tag, exactly
    /// `plain.len() + TAG_LEN` bytes).
    fn seal_from(&self, index: u64, plain: &[u8], sealed: &mut [u8]) -> Result<()> {
        let (ct, tag) = sealed.split_at_mut(plain.len());
        self.key
            .seal_out_of_place_scatter(self.nonce(index), Aad::from(&self.aad), plain, ct, &[], tag)
            .map_err(|_| Error::Crypto)
    }

    /// Open segment `index` (ciphertext || tag) in place; returns the plaintext.
    pub fn open_segment<'a>(&self, index: u64, buf: &'a mut [u8]) -> Result<&'a mut [u8]> {
        self.key
            .open_in_place(self.nonce(index), Aad::from(&self.aad), buf)
            .map_err(|_| Error::Integrity)
    }

    /// Open segments `first..=last` read in order from `src`, handing each plaintext (with
    /// its index) to `sink`. Nothing is handed on before its tag verified.
    pub fn open_segments(
        &self,
        src: &mut dyn Read,
        first: u64,
        last: u64,
        sink: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut buf = vec![0u8; SEGMENT_LEN + TAG_LEN];
        for index in first..=last {
            let n = self.header.segment_plain_len(index) + TAG_LEN;
            read_exact(src, &mut buf[..n])?;
            let plain = self.open_segment(index, &mut buf[..n])?;
            sink(index, plain)?;
        }
        Ok(())
    }
}

/// Short reads mean a truncated object.
fn read_exact(src: &mut dyn Read, buf: &mut [u8]) -> Result<()> {
    src.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::Truncated,
        _ => Error::io("read", "object", e),
    })
}

// === whole objects and ranges ===

/// Rekey: the same data key wrapped under master key `key_id` (which `keys` must hold along
/// with the object's current key); the segments stay valid as they are.
pub fn rewrap(keys: &dyn KeyWrapper, header: &Header, key_id: u32) -> Result<Header> {
    let dek = keys.unwrap(header.key_id, &header.wrap_aad(), &header.wrapped)?;
    let mut new = *header;
    new.key_id = key_id;
    new.wrapped = keys.wrap(key_id, &new.wrap_aad(), &dek)?;
    Ok(new)
}

/// Object length (header, segments, tags) of a `plaintext_len`-byte plaintext.
pub fn object_len(plaintext_len: u64) -> u64 {
    let segments = plaintext_len.div_ceil(SEGMENT_LEN as u64).max(1);
    HEADER_LEN as u64 + plaintext_len + segments * TAG_LEN as u64
}

/// Copy `plain` (segment `index`) into `out`, which receives object bytes
/// `start..start+out.len()`.
pub fn copy_overlap(index: u64, plain: &[u8], start: u64, out: &mut [u8]) {
    let seg_start = index * SEGMENT_LEN as u64;
    let from = start.max(seg_start);
    let to = (start + out.len() as u64).min(seg_start + plain.len() as u64);
    if from < to {
        let src = &plain[(from - seg_start) as usize..(to - seg_start) as usize];
        out[(from - start) as usize..(to - start) as usize].copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests;
