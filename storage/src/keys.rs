//! Master keys (key-encryption keys) and data keys.
//!
//! A master key is 32 random bytes with a numeric id (`u32`, as in the official plugin's
//! `MasterKey: [id, path]`). The current key wraps new data keys; previous keys only unwrap.
//! Key material lives in `Zeroizing` buffers, has no `Debug`, and never reaches a log line.
//! Wrapping goes through [`KeyWrapper`] so a KMS or Vault can hold the master key instead.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use aes::cipher::{BlockEncrypt, KeyInit};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::Engine;
use zeroize::Zeroizing;

use crate::{Error, Result};

pub const KEY_LEN: usize = 32;
/// Random nonce of the AES-256-GCM key wrap (FORMAT.md, "wrapped data key").
pub const WRAP_NONCE_LEN: usize = 12;
/// Wrapped data key: ciphertext (32) || GCM tag (16).
pub const WRAPPED_LEN: usize = KEY_LEN + 16;
/// A key file is a line of base64; anything much longer is not a key file.
const KEY_FILE_MAX: u64 = 4096;

/// A per-object data key (DEK). Fresh for every object, never stored unwrapped.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

/// A data key wrapped under a master key: `nonce || AES-256-GCM(kek, dek, aad) || tag`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WrappedKey {
    pub nonce: [u8; WRAP_NONCE_LEN],
    pub sealed: [u8; WRAPPED_LEN],
}

/// Holds master keys and wraps/unwraps data keys with them.
///
/// `aad` is the object header up to and including the key id (FORMAT.md), so a wrapped key
/// cannot be moved to another object or relabelled with another key id.
pub trait KeyWrapper: Send + Sync {
    /// Id of the master key new objects are written under.
    fn current_id(&self) -> u32;
    fn wrap(&self, key_id: u32, aad: &[u8], dek: &DataKey) -> Result<WrappedKey>;
    fn unwrap(&self, key_id: u32, aad: &[u8], wrapped: &WrappedKey) -> Result<DataKey>;
    /// The 32-byte AES-256-CTR keystream (zero counter) under master key `key_id`, which is
    /// all the legacy A1 format needs to recover its IV and data key (a1-format.md). Only
    /// possible where the raw master key is local.
    fn a1_keystream(&self, key_id: u32) -> Result<Zeroizing<[u8; 32]>> {
        let _ = key_id;
        Err(Error::Unsupported(
            "A1 objects need a local master key, not a remote key wrapper",
        ))
    }
}

// === impl DataKey ===

impl DataKey {
    /// A fresh random data key from the system CSPRNG.
    pub fn generate() -> Result<DataKey> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| Error::Crypto)?;
        Ok(DataKey(bytes))
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> DataKey {
        DataKey(Zeroizing::new(bytes))
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

// === impl MasterKey ===

/// One master key. `Debug` shows the id only.
pub struct MasterKey {
    id: u32,
    bytes: Zeroizing<[u8; KEY_LEN]>,
    aead: LessSafeKey,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn from_bytes(id: u32, bytes: [u8; KEY_LEN]) -> Result<MasterKey> {
        let bytes = Zeroizing::new(bytes);
        let unbound = UnboundKey::new(&AES_256_GCM, bytes.as_ref()).map_err(|_| Error::Crypto)?;
        Ok(MasterKey {
            id,
            bytes,
            aead: LessSafeKey::new(unbound),
        })
    }

    /// Load a key file: base64 of exactly 32 bytes, surrounding whitespace allowed, not
    /// readable or writable by group or others.
    pub fn load(id: u32, path: &Path) -> Result<MasterKey> {
        let bad = |reason: String| Error::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| bad(format!("cannot open: {e}")))?;
        let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(bad(format!(
                "permissions {:o} give group or others access; run chmod 600",
                meta.mode() & 0o777
            )));
        }
        let mut text = Zeroizing::new(Vec::new());
        file.take(KEY_FILE_MAX + 1)
            .read_to_end(&mut text)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        if text.len() as u64 > KEY_FILE_MAX {
            return Err(bad("too long for a key file".into()));
        }
        let bytes = parse_key_text(&text).map_err(bad)?;
        MasterKey::from_bytes(id, *bytes)
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

/// Strict parse of key file content: standard base64 (with padding) of exactly 32 bytes.
/// Unlike the official plugin we refuse longer or shorter keys instead of truncating them.
pub fn parse_key_text(text: &[u8]) -> std::result::Result<Zeroizing<[u8; KEY_LEN]>, String> {
    let trimmed = text.trim_ascii();
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .map_err(|_| "not base64 (expected `openssl rand -base64 32` output)".to_string())?,
    );
    let bytes: [u8; KEY_LEN] = decoded
        .as_slice()
        .try_into()
        .map_err(|_| format!("decodes to {} bytes, expected 32", decoded.len()))?;
    Ok(Zeroizing::new(bytes))
}

/// New key file content: base64 of 32 random bytes and a newline.
pub fn generate_key_text() -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| Error::Crypto)?;
    let mut text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()));
    text.push('\n');
    Ok(text)
}

// === impl KeyRing ===

/// Local master keys: one current, any number of previous ones.
#[derive(Debug)]
pub struct KeyRing {
    current: u32,
    keys: BTreeMap<u32, MasterKey>,
}

impl KeyRing {
    /// If a previous key repeats the current id, the current key wins (as in the official
    /// plugin); a repeated previous id keeps the later entry.
    pub fn new(current: MasterKey, previous: impl IntoIterator<Item = MasterKey>) -> KeyRing {
        let mut keys = BTreeMap::new();
        for key in previous {
            keys.insert(key.id, key);
        }
        let id = current.id;
        keys.insert(id, current);
        KeyRing { current: id, keys }
    }

    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    fn key(&self, id: u32) -> Result<&MasterKey> {
        self.keys.get(&id).ok_or(Error::UnknownKey(id))
    }
}

impl KeyWrapper for KeyRing {
    fn current_id(&self) -> u32 {
        self.current
    }

    fn wrap(&self, key_id: u32, aad: &[u8], dek: &DataKey) -> Result<WrappedKey> {
        let kek = self.key(key_id)?;
        let mut nonce = [0u8; WRAP_NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::Crypto)?;
        let mut sealed = [0u8; WRAPPED_LEN];
        sealed[..KEY_LEN].copy_from_slice(dek.expose());
        let tag = kek
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed[..KEY_LEN],
            )
            .map_err(|_| Error::Crypto)?;
        sealed[KEY_LEN..].copy_from_slice(tag.as_ref());
        Ok(WrappedKey { nonce, sealed })
    }

    fn unwrap(&self, key_id: u32, aad: &[u8], wrapped: &WrappedKey) -> Result<DataKey> {
        let kek = self.key(key_id)?;
        let mut buf = Zeroizing::new(wrapped.sealed);
        let plain = kek
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(wrapped.nonce),
                Aad::from(aad),
                buf.as_mut(),
            )
            .map_err(|_| Error::Integrity)?;
        let bytes: [u8; KEY_LEN] = (*plain).try_into().map_err(|_| Error::Crypto)?;
        Ok(DataKey::from_bytes(bytes))
    }

    fn a1_keystream(&self, key_id: u32) -> Result<Zeroizing<[u8; 32]>> {
        let kek = self.key(key_id)?;
        // KS = AES-256-ECB_KEK(0^128) || AES-256-ECB_KEK(0^127 1): CTR mode with an
        // all-zero initial counter block (a1-format.md, "Layout").
        let cipher = aes::Aes256::new_from_slice(kek.bytes.as_ref()).map_err(|_| Error::Crypto)?;
        let mut ks = Zeroizing::new([0u8; 32]);
        let (b0, b1) = ks.split_at_mut(16);
        b1[15] = 1;
        cipher.encrypt_block(b0.into());
        cipher.encrypt_block(b1.into());
        Ok(ks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(
            MasterKey::from_bytes(2, [2; 32]).unwrap(),
            [MasterKey::from_bytes(1, [1; 32]).unwrap()],
        )
    }

    #[test]
    fn key_text_must_be_exactly_32_bytes_of_base64() {
        let ok = b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
        assert_eq!(parse_key_text(ok).unwrap()[31], 0x1f);
        assert!(parse_key_text(b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==").is_err());
        assert!(parse_key_text(b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==").is_err());
        assert!(parse_key_text(b"not base64 at all!").is_err());
        assert!(parse_key_text(b"").is_err());
        let generated = generate_key_text().unwrap();
        assert!(parse_key_text(generated.as_bytes()).is_ok());
    }

    #[test]
    fn wrap_binds_key_id_and_header() {
        let ring = ring();
        let dek = DataKey::from_bytes([7; 32]);
        let w = ring.wrap(2, b"header", &dek).unwrap();
        assert_eq!(ring.unwrap(2, b"header", &w).unwrap().expose(), &[7; 32]);
        assert!(matches!(
            ring.unwrap(2, b"other", &w),
            Err(Error::Integrity)
        ));
        assert!(matches!(
            ring.unwrap(1, b"header", &w),
            Err(Error::Integrity)
        ));
        assert!(matches!(
            ring.unwrap(9, b"header", &w),
            Err(Error::UnknownKey(9))
        ));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let text = format!("{:?}", ring());
        assert!(text.contains("id: 2") && !text.contains("[2, 2"), "{text}");
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, generate_key_text().unwrap().as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load(1, &path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(MasterKey::load(1, &path).unwrap().id(), 1);
    }
}
