//! Read-only support for the official Orthanc object-storage plugin's `A1` format
//! (reference/a1-format.md, "Layout"):
//!
//! ```text
//! 0    2   "A1"
//! 2    4   master key id, u32 little-endian (raw host order of the writer)
//! 6    32  EIV  = IV  xor KS      KS = AES-256-CTR keystream under the master key,
//! 38   32  EDEK = DEK xor KS           zero counter, the same 32 bytes for both
//! 70   n   AES-256-GCM(DEK, IV (all 32 bytes), AAD = bytes 0..70) ciphertext
//! 70+n 16  GCM tag
//! ```
//!
//! The whole object is one GCM message, so it is decrypted in memory; callers bound the
//! size. We accept exactly 86 bytes (empty plaintext), which the official reader refuses.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{AesGcm, KeyInit};
use zeroize::Zeroizing;

use crate::keys::KeyWrapper;
use crate::{Error, Result};

pub const MAGIC: [u8; 2] = *b"A1";
pub const PREFIX_LEN: usize = 70;
pub const TAG_LEN: usize = 16;
pub const OVERHEAD: usize = PREFIX_LEN + TAG_LEN;

/// GCM with a 32-byte IV: J0 is GHASH(IV), per NIST SP 800-38D section 7.1.
type A1Gcm = AesGcm<aes::Aes256, U32>;

/// The master key id of an A1 object.
pub fn key_id(blob: &[u8]) -> Result<u32> {
    if !blob.starts_with(&MAGIC) {
        return Err(Error::UnknownFormat);
    }
    let raw: [u8; 4] = blob
        .get(2..6)
        .and_then(|b| b.try_into().ok())
        .ok_or(Error::Truncated)?;
    Ok(u32::from_le_bytes(raw))
}

/// Decrypt an A1 object in place and return its plaintext (the same allocation).
pub fn decrypt(keys: &dyn KeyWrapper, mut blob: Vec<u8>) -> Result<Vec<u8>> {
    let id = key_id(&blob)?;
    if blob.len() < OVERHEAD {
        return Err(Error::Truncated);
    }
    let ks = keys.a1_keystream(id)?;
    let mut iv = Zeroizing::new([0u8; 32]);
    let mut dek = Zeroizing::new([0u8; 32]);
    for i in 0..32 {
        iv[i] = blob[6 + i] ^ ks[i];
        dek[i] = blob[38 + i] ^ ks[i];
    }
    let cipher = A1Gcm::new_from_slice(dek.as_ref()).map_err(|_| Error::Crypto)?;
    let tag_at = blob.len() - TAG_LEN;
    let tag = aes_gcm::Tag::clone_from_slice(&blob[tag_at..]);
    let (prefix, rest) = blob.split_at_mut(PREFIX_LEN);
    let body = &mut rest[..tag_at - PREFIX_LEN];
    cipher
        .decrypt_in_place_detached(iv.as_ref().into(), prefix, body, &tag)
        .map_err(|_| Error::Integrity)?;
    blob.truncate(tag_at);
    blob.drain(..PREFIX_LEN);
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyRing, MasterKey};

    /// Vector 1 of a1-vectors.json; the full set is in tests/a1_vectors.rs.
    const BLOB: &str = "41310100000072118235aecc1957217a10e151a3f90f60cce43dde2c09723e6f01aad45fa8a2b2d142f56e0cd997e1bad021916339cfa00c24fd1eecc9b2feafc16a149f68628f0a107147c368ef4494068901933839fc62184b96b3fb8d8ee2ec4de51751a3e317";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn ring() -> KeyRing {
        let kek: [u8; 32] = core::array::from_fn(|i| i as u8);
        KeyRing::new(MasterKey::from_bytes(1, kek).unwrap(), [])
    }

    #[test]
    fn decrypts_vector_and_refuses_every_flipped_bit_region() {
        let blob = hex(BLOB);
        assert_eq!(
            decrypt(&ring(), blob.clone()).unwrap(),
            b"Plain text message"
        );
        for at in [0usize, 2, 6, 40, 70, 87, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[at] ^= 1;
            assert!(decrypt(&ring(), bad).is_err(), "flip at {at}");
        }
        assert!(matches!(
            decrypt(&ring(), blob[..85].to_vec()),
            Err(Error::Truncated)
        ));
        assert!(matches!(
            decrypt(&ring(), blob[..blob.len() - 1].to_vec()),
            Err(Error::Integrity)
        ));
    }
}
