//! The pacsgate object formats ("\x89PGE"): version 3, which we write, and version 2, which
//! we still read (byte by byte in `storage/FORMAT.md`).
//!
//! ```text
//!  v3 (written)                                   v2 (read only)
//! 0   4   magic 89 50 47 45                        same
//! 4   1   version 0x03                             0x02
//! 5   1   suite 0x02                               0x01
//! 6   1   log2 of the segment size: 16             same
//! 7   1   reserved, 0                              same
//! 8   8   plaintext length, u64 BE                 same
//! 16  7   STREAM nonce prefix (random)             same
//! 23  1   reserved, 0                              same
//! 24  16  object salt (random)                     24 4 master key id
//! 40  4   content type, u32 BE (0 = not known)     28 12 wrap nonce
//! 44  4   master key id, u32 BE                    40 48 wrapped data key
//! 48  2   W, length of the wrapped data key        88 .. segments
//! 50  W   wrapped data key (the provider's blob)
//! 50+W .. segments: ciphertext (64 KiB, the last one shorter) || 16-byte tag
//! ```
//!
//! v3 segment `i` is sealed with the object key `HKDF-SHA256(salt, data key)` (RFC 5869),
//! nonce `prefix(7) || i (u32 BE) || last flag`, and AAD = header bytes 0..44 followed by the
//! object's identity (`u16 BE length || uuid`): a swapped, renamed or replayed object fails
//! its first tag. The data key is wrapped independently of the object (so one wrap can
//! serve several objects, see `keys::cache`); rekeying rewrites bytes 44.. of the header only.
//! v2 segments use the data key directly with AAD = bytes 0..24, and are not bound to a name.

mod header;
mod whole;

use std::io::{self, Read};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::hkdf;

use crate::keys::{data_key_aad, DataKey, KeyWrapper, KEY_LEN, MAX_BLOB_LEN};
#[cfg(test)]
use crate::keys::{WRAPPED_LEN, WRAP_NONCE_LEN};
use crate::{Error, Result};

pub use self::whole::{open_stream, seal_slice, seal_stream, seal_to_slice, PlainBuffer};

pub const MAGIC: [u8; 4] = [0x89, b'P', b'G', b'E'];
pub const VERSION: u8 = 3;
pub const VERSION_2: u8 = 2;
const SUITE_V2: u8 = 1;
const SUITE_V3: u8 = 2;
pub const SEGMENT_LOG2: u8 = 16;
pub const SEGMENT_LEN: usize = 1 << SEGMENT_LOG2;
pub const TAG_LEN: usize = 16;
pub const V2_HEADER_LEN: usize = 88;
/// v3 header without the wrapped key.
pub const V3_FIXED_LEN: usize = 50;
/// Enough bytes for any header (and so for format detection).
pub const HEADER_MAX: usize = V3_FIXED_LEN + MAX_BLOB_LEN;
const V3_AAD_LEN: usize = 44;
const PREFIX_LEN: usize = 7;
pub const SALT_LEN: usize = 16;
/// Segment indices are 32 bits in the nonce.
const MAX_SEGMENTS: u64 = 1 << 32;
/// HKDF `info` of the v3 object key.
const OBJECT_KEY_INFO: &[u8] = b"pacsgate-storage v3 object key";

/// What an object is bound to (v3): the attachment uuid Orthanc names it by (the last
/// component of the object name) and its content type (`None` on read: accept the stored one).
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub uuid: &'a str,
    pub content_type: Option<u32>,
}

impl<'a> Identity<'a> {
    /// The identity of the object stored as `name` (`xx/yy/uuid`, or a file name).
    pub fn of(name: &'a str, content_type: Option<u32>) -> Identity<'a> {
        Identity {
            uuid: name.rsplit('/').next().unwrap_or(name),
            content_type,
        }
    }
}

/// A parsed header (v2 or v3).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub plaintext_len: u64,
    pub nonce_prefix: [u8; PREFIX_LEN],
    /// v3 only (zero in v2).
    pub salt: [u8; SALT_LEN],
    /// v3 only: Orthanc's content type (OrthancPluginContentType), 0 when not known.
    pub content_type: u32,
    pub key_id: u32,
    /// v3: the provider's blob; v2: wrap nonce (12) || sealed data key (48).
    pub wrapped: Vec<u8>,
}

/// The key of one object, ready to seal or open its segments.
pub struct SegmentKey {
    key: LessSafeKey,
    header: Header,
    aad: Vec<u8>,
}

/// HKDF output length for the object key.
struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

/// v3 object key: HKDF-SHA256 (RFC 5869) with the object's salt, the data key as input
/// keying material and [`OBJECT_KEY_INFO`].
pub fn object_key(dek: &DataKey, salt: &[u8; SALT_LEN]) -> Result<DataKey> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(dek.expose());
    let okm = prk
        .expand(&[OBJECT_KEY_INFO], KeyLen)
        .map_err(|_| Error::Crypto)?;
    let mut out = [0u8; KEY_LEN];
    okm.fill(&mut out).map_err(|_| Error::Crypto)?;
    let key = DataKey::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    Ok(key)
}

// === impl SegmentKey ===

impl SegmentKey {
    /// A new v3 object of `plaintext_len` bytes under the current master key, bound to `id`.
    pub fn create(keys: &dyn KeyWrapper, id: Identity, plaintext_len: u64) -> Result<SegmentKey> {
        let mut nonce_prefix = [0u8; PREFIX_LEN];
        let mut salt = [0u8; SALT_LEN];
        aws_lc_rs::rand::fill(&mut nonce_prefix).map_err(|_| Error::Crypto)?;
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| Error::Crypto)?;
        let mut header = Header {
            version: VERSION,
            plaintext_len,
            nonce_prefix,
            salt,
            content_type: id.content_type.unwrap_or(0),
            key_id: 0,
            wrapped: Vec::new(),
        };
        if header.segments() > MAX_SEGMENTS {
            return Err(Error::TooLarge(plaintext_len));
        }
        let (key_id, dek, blob) = keys.data_key_for_write()?;
        if blob.is_empty() || blob.len() > MAX_BLOB_LEN {
            return Err(Error::Crypto);
        }
        header.key_id = key_id;
        header.wrapped = blob.to_vec();
        let key = object_key(&dek, &header.salt)?;
        SegmentKey::with_key(header, &key, &id)
    }

    /// The key of a stored object. v3: the stored content type must be the one asked for
    /// (or 0, written without one); the uuid goes into the AAD.
    pub fn open(keys: &dyn KeyWrapper, header: Header, id: Identity) -> Result<SegmentKey> {
        if header.version == VERSION_2 {
            let dek = keys.unwrap(header.key_id, &header.v2_wrap_aad(), &header.wrapped)?;
            return SegmentKey::with_key(header, &dek, &id);
        }
        if let Some(asked) = id.content_type {
            if header.content_type != 0 && header.content_type != asked {
                return Err(Error::WrongContentType {
                    stored: header.content_type,
                    asked,
                });
            }
        }
        let dek = keys.data_key_for_read(header.key_id, &header.wrapped)?;
        let key = object_key(&dek, &header.salt)?;
        SegmentKey::with_key(header, &key, &id)
    }

    /// A v2 object (tests only: v2 is no longer written).
    #[cfg(test)]
    pub(crate) fn create_v2(keys: &dyn KeyWrapper, plaintext_len: u64) -> Result<SegmentKey> {
        let mut header = Header {
            version: VERSION_2,
            plaintext_len,
            nonce_prefix: [3; PREFIX_LEN],
            salt: [0; SALT_LEN],
            content_type: 0,
            key_id: keys.current_id(),
            wrapped: Vec::new(),
        };
        let dek = DataKey::generate()?;
        header.wrapped = keys.wrap(header.key_id, &header.v2_wrap_aad(), &dek)?;
        assert_eq!(header.wrapped.len(), WRAP_NONCE_LEN + WRAPPED_LEN);
        SegmentKey::with_key(header, &dek, &Identity::of("", None))
    }

    fn with_key(header: Header, key: &DataKey, id: &Identity) -> Result<SegmentKey> {
        let unbound = UnboundKey::new(&AES_256_GCM, key.expose()).map_err(|_| Error::Crypto)?;
        Ok(SegmentKey {
            key: LessSafeKey::new(unbound),
            aad: header.segment_aad(id),
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

/// Rekey a v3 object: the same data key wrapped under the current master key (which `keys`
/// must hold along with the object's key); salt, content type and segments stay valid.
pub fn rewrap(keys: &dyn KeyWrapper, header: &Header) -> Result<Header> {
    if header.version != VERSION {
        return Err(Error::Unsupported(
            "only v3 objects are rewrapped; v2 is re-encrypted",
        ));
    }
    let dek = keys.unwrap(header.key_id, &data_key_aad(header.key_id), &header.wrapped)?;
    let id = keys.current_id();
    let blob = keys.wrap(id, &data_key_aad(id), &dek)?;
    if blob.is_empty() || blob.len() > MAX_BLOB_LEN {
        return Err(Error::Crypto);
    }
    let mut new = header.clone();
    new.key_id = id;
    new.wrapped = blob;
    Ok(new)
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
